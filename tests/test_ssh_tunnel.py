"""source.ssh: exports through an SSH bastion (Debian's sshd, started here on a free port with new keys)."""

from __future__ import annotations

import collections
import getpass
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import ConfigError, SourceConnectionError, SourceError
from rivet.sources import tunnel
from tests.chunkrun import rows_in_files, slow_chunked_export, wait_for_done_chunks, wait_until
from tests.conftest import free_port, listening, pg_url
from tests.outputs import run_rivet, start_rivet, write_config
from tests.sources import Source

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class Bastion:
    """A running sshd: its port, the client's key, a known_hosts that trusts it, and its log."""

    port: int
    key_file: Path
    known_hosts: Path
    log: Path
    process: subprocess.Popen[bytes]

    def ssh(self, **changes: Any) -> dict[str, Any]:
        """A ``source.ssh`` block that reaches this bastion."""
        block = {"host": "127.0.0.1", "port": self.port, "user": getpass.getuser(), "key_file": str(self.key_file),
                 "known_hosts": str(self.known_hosts)}  # fmt: skip
        return block | changes

    def forwards(self) -> list[int]:
        """The target port of every forwarded connection sshd has logged."""
        pattern = r"server_request_direct_tcpip: .* target \S+ port (\d+)"
        return [int(p) for p in re.findall(pattern, self.log.read_text())]

    def logins(self) -> int:
        """How many SSH connections sshd has let in (each process opens its own tunnel)."""
        return len(re.findall(r"Accepted publickey for ", self.log.read_text()))

    def drop_connections(self) -> int:
        """Kill the sshd processes serving logged-in clients (the listener stays); how many."""
        children = psutil.Process(self.process.pid).children(recursive=True)
        for child in children:
            child.kill()
        return len(children)


def _keygen(path: Path) -> tuple[str, str]:
    """A new Ed25519 key pair at ``path``; the public key's type and base64 text."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    kind, text = path.with_name(path.name + ".pub").read_text().split()[0:2]
    return kind, text


@pytest.fixture(scope="module")
def bastion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    if not os.access(SSHD, os.X_OK):
        pytest.fail("sshd is missing: apt-get install openssh-server (scripts/ensure-services installs it)")
    home = tmp_path_factory.mktemp("bastion")
    host_type, host_key = _keygen(home / "host_key")
    _keygen(home / "client_key")
    (home / "authorized_keys").write_text((home / "client_key.pub").read_text())
    port = free_port()
    (home / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_type} {host_key}\n")
    (home / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {home / 'host_key'}\nPidFile {home / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {home / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        "AllowTcpForwarding yes\nLogLevel DEBUG1\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    log = home / "sshd.log"
    with log.open("wb") as out:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(home / "sshd_config")], stdout=out, stderr=out)
    try:
        wait_until(lambda: listening(port), "sshd listens", process)
        yield Bastion(port, home / "client_key", home / "known_hosts", log, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _block(source: Source, ssh: dict[str, Any]) -> dict[str, Any]:
    return source.block | {"ssh": ssh}


@pytest.mark.parametrize("parallel", [1, 2])
def test_an_export_reads_through_the_bastion(database_server, bastion, out, parallel):
    source = database_server
    table = source.numbered_table(5000)
    before = len(bastion.forwards())
    options = {"mode": "chunked", "chunk_column": "id", "chunk_size": 1000, "parallel": 2} if parallel > 1 else {}
    result = rivet.export(_block(source, bastion.ssh()), table=table, destination=str(out), **options)
    assert rows_in_files(result.files, ["id", "h"]) == source.rows(f"SELECT id, h FROM {table}")
    # The connections went through sshd, to the database's own port.
    database_port = 5432 if source.kind == "postgres" else 3306
    forwarded = bastion.forwards()[before:]
    assert forwarded and set(forwarded) == {database_port}, forwarded


def test_a_bastion_whose_key_is_not_the_known_one_is_refused(database_server, bastion, tmp_path, out):
    source = database_server
    table = source.numbered_table(10)
    other_type, other_key = _keygen(tmp_path / "other_key")
    forged = tmp_path / "known_hosts"
    forged.write_text(f"[127.0.0.1]:{bastion.port} {other_type} {other_key}\n")
    before = len(bastion.forwards())
    with pytest.raises(SourceError, match="differs from the one in"):
        rivet.export(_block(source, bastion.ssh(known_hosts=str(forged))), table=table, destination=str(out))
    assert len(bastion.forwards()) == before and not list(out.rglob("*.parquet"))


def test_an_unknown_bastion_is_trusted_only_when_asked(database_server, bastion, tmp_path, out):
    source = database_server
    table = source.numbered_table(10)
    empty = tmp_path / "ssh" / "known_hosts"
    with pytest.raises(ConfigError, match=r"is not in .*ssh-keyscan -p"):
        rivet.export(_block(source, bastion.ssh(known_hosts=str(empty))), table=table, destination=str(out))
    ssh = bastion.ssh(known_hosts=str(empty), accept_new_host_key=True)
    result = rivet.export(_block(source, ssh), table=table, destination=str(out))
    assert result.rows == 10
    # Trusted from now on: the key it offered is the one sshd has.
    assert empty.read_text().split()[1:] == bastion.known_hosts.read_text().split()[1:]


def test_the_key_can_come_from_an_environment_variable(database_server, bastion, out, monkeypatch):
    source = database_server
    table = source.numbered_table(10)
    monkeypatch.setenv("RIVET_TEST_BASTION_KEY", bastion.key_file.read_text())
    ssh = bastion.ssh(key_file=None, key_env="RIVET_TEST_BASTION_KEY")
    assert rivet.export(_block(source, ssh), table=table, destination=str(out)).rows == 10


def test_a_dropped_tunnel_is_opened_again_and_the_run_completes(database_server, bastion, tmp_path):
    source = database_server
    table = source.numbered_table(6000)
    config = write_config(tmp_path, _block(source, bastion.ssh()), slow_chunked_export(table, source.slowly("id")))
    proc = start_rivet("run", "-c", str(config))
    try:
        wait_for_done_chunks(tmp_path / ".rivet_state.db", 2, proc=proc)
        assert bastion.drop_connections() >= 1
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "the SSH connection to" in stderr and "opening it again" in stderr, stderr
    files = [str(p) for p in (tmp_path / "out").glob("*.parquet")]
    assert rows_in_files(files, ["id", "h"]) == source.rows(f"SELECT id, h FROM {table}")


def test_connectorx_reads_through_a_tunnel_of_its_own_process(database_server, bastion, out, monkeypatch):
    # connectorx holds the GIL while it connects: its tunnel runs in a child process, which logs in itself.
    source = database_server
    table = source.numbered_table(5000)
    monkeypatch.setattr(tunnel, "_tunnels", {})  # tunnels earlier tests left open here log in again
    forwards, logins = len(bastion.forwards()), bastion.logins()
    block = _block(source, bastion.ssh()) | {"engine": "connectorx"}
    result = rivet.export(block, table=table, destination=str(out), mode="chunked", chunk_column="id",
                          chunk_size=1000, parallel=2)  # fmt: skip
    assert result.engine == "connectorx"
    assert rows_in_files(result.files, ["id", "h"]) == source.rows(f"SELECT id, h FROM {table}")
    # The planning connection's tunnel and the child's: two logins; every chunk through the bastion.
    assert bastion.logins() - logins == 2
    forwarded = bastion.forwards()[forwards:]
    assert len(forwarded) > 5 and set(forwarded) == {5432 if source.kind == "postgres" else 3306}
    # Asked for nothing, a tunnelled export reads natively: its tunnel needs no process of its own.
    auto = rivet.export(block | {"engine": "auto"}, table=table, destination=str(out), mode="chunked",
                        chunk_column="id", parallel=2)  # fmt: skip
    assert auto.rows == 5000 and auto.engine == "native"


def test_the_tunnel_process_ends_with_the_process_that_started_it(bastion):
    settings = {**bastion.ssh(), "key_env": None, "passphrase_env": None, "accept_new_host_key": False}
    script = (
        "import json, sys\nfrom rivet.sources import forwarder\nfrom rivet.sources.tunnel import SshSettings\n"
        f"forwarder.forwarded_apart(SshSettings(**json.loads({json.dumps(json.dumps(settings))})), '127.0.0.1', 5432)\n"
        "print(*(c.process.pid for c in forwarder._children.values()), flush=True)\nsys.stdin.read()\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as parent:
        try:
            assert parent.stdout is not None
            child = psutil.Process(int(parent.stdout.readline()))
            assert child.is_running() and child.ppid() == parent.pid
            parent.kill()  # no chance to clean up: the child sees its stdin close
            parent.wait()
            wait_until(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, "it ends")
        finally:
            parent.kill()


@pytest.mark.postgres
def test_a_first_connection_the_tunnel_closes_is_retried_not_taken_for_a_wrong_address(bastion, out):
    # A wrong address fails at once without a tunnel; through one, the local end is always there and
    # a closed first connection is the bastion failing to reach the database: retried, then reported.
    closed = free_port()
    source = {"type": "postgres", "url": f"postgresql://postgres@127.0.0.1:{closed}/test?sslmode=disable",
              "ssh": bastion.ssh(), "tuning": {"max_retries": 2, "retry_backoff_ms": 10}}  # fmt: skip
    before = len(bastion.forwards())
    with pytest.raises(SourceConnectionError):
        rivet.export(source, query="SELECT 1 AS x", destination=str(out))
    # One while planning (the channel the reader would take), then the read and its two retries.
    assert bastion.forwards()[before:] == [closed] * 4


def test_exports_run_as_child_processes_each_open_their_own_tunnel(database_server, bastion, tmp_path):
    source = database_server
    tables = [source.numbered_table(300), source.numbered_table(400)]
    exports = [{"name": f"e{i}", "table": t, "destination": f"out{i}"} for i, t in enumerate(tables)]
    config = write_config(tmp_path, _block(source, bastion.ssh()), exports, extra="parallel_export_processes: true\n")
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    for i, table in enumerate(tables):
        files = [str(p) for p in (tmp_path / f"out{i}").glob("*.parquet")]
        assert rows_in_files(files, ["id", "h"]) == source.rows(f"SELECT id, h FROM {table}")


@pytest.mark.postgres
def test_chunks_read_on_a_dask_cluster_go_through_each_workers_own_tunnel(pg, pg_table, bastion, tmp_path):
    import distributed

    table = pg_table("CREATE TABLE {t} AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 3000) g")
    export = {"name": "t", "table": table, "mode": "chunked", "chunk_column": "id", "chunk_size": 250,
              "parallel": 2, "destination": str(tmp_path / "out")}  # fmt: skip
    config = write_config(tmp_path, {"type": "postgres", "url": pg_url(), "ssh": bastion.ssh()}, [export])
    logins, forwards = bastion.logins(), len(bastion.forwards())
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local,
        distributed.Client(local, set_as_default=False) as client,
    ):
        result = rivet.run(config, dask_client=client)
        workers = len(client.scheduler_info()["workers"])
    exported = result.exports[0]
    assert result.ok, exported.error
    assert exported.engine == "native@dask"
    files = [str(p) for p in (tmp_path / "out").glob("*.parquet")]
    assert rows_in_files(files, ["id", "h"]) == collections.Counter(
        tuple(r) for r in pg.execute(f"SELECT id, h FROM {table}").fetchall()
    )
    # The coordinator logged in once; each worker process that read a chunk opened its own tunnel.
    assert 2 <= bastion.logins() - logins <= 1 + workers
    assert set(bastion.forwards()[forwards:]) == {5432}


@pytest.mark.postgres
def test_tls_through_the_tunnel_checks_the_database_host_name(auth_server, bastion, tmp_path):
    # The connection is dialled to the tunnel's local port; the certificate is still checked against
    # the host the config names (the test certificate is issued for localhost, not 127.0.0.1).
    def source(host: str) -> dict[str, Any]:
        tls = {"mode": "verify-full", "ca_file": str(auth_server.ca)}
        return {"type": "postgres", "host": host, "port": auth_server.port, "user": "postgres",
                "password": "scram-secret", "database": "postgres", "tls": tls, "ssh": bastion.ssh()}  # fmt: skip

    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    before = len(bastion.forwards())
    result = rivet.export(source("localhost"), query=query, destination=str(tmp_path / "a"))
    assert pq.read_table(result.files[0]).column("ssl").to_pylist() == [True]
    assert auth_server.port in bastion.forwards()[before:]
    refusal = r"TLS handshake with 127\.0\.0\.1 failed: invalid peer certificate"
    with pytest.raises(SourceConnectionError, match=refusal):
        rivet.export(source("127.0.0.1"), query=query, destination=str(tmp_path / "b"))
    # connectorx would check the certificate against the tunnel's local end: refused by name.
    with pytest.raises(ConfigError, match=r"source\.ssh with TLS verify-full: connectorx would check"):
        rivet.export(source("localhost") | {"engine": "connectorx"}, query=query, destination=str(tmp_path / "c"),
                     mode="chunked", chunk_column="ssl")  # fmt: skip


def test_known_hosts_as_openssh_writes_it(database_server, bastion, tmp_path, out):
    source = database_server
    table = source.numbered_table(10)
    line = bastion.known_hosts.read_text().strip()
    # Hashed names (ssh-keygen -H), a certificate authority line rivet does not use, and no final newline.
    hashed = tmp_path / "hashed"
    hashed.write_text(f"@cert-authority *.example.com {line.split(' ', 1)[1]}\n{line}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(hashed)], check=True, capture_output=True)
    assert f"127.0.0.1]:{bastion.port}" not in hashed.read_text()
    assert rivet.export(_block(source, bastion.ssh(known_hosts=str(hashed))), table=table,
                        destination=str(out / "a")).rows == 10  # fmt: skip
    # A key marked @revoked is refused even beside a line that trusts it.
    revoked = tmp_path / "revoked"
    revoked.write_text(f"{line}\n@revoked {line}\n")
    with pytest.raises(SourceError, match="marks @revoked"):
        rivet.export(_block(source, bastion.ssh(known_hosts=str(revoked))), table=table, destination=str(out / "b"))
    # Trusting on first use appends a line of its own to a file that does not end with a newline.
    other_type, other_key = _keygen(tmp_path / "unrelated")
    partial = tmp_path / "partial"
    partial.write_text(f"unrelated.example.com {other_type} {other_key}")
    ssh = bastion.ssh(known_hosts=str(partial), accept_new_host_key=True)
    for run in ("c", "d"):
        assert rivet.export(_block(source, ssh), table=table, destination=str(out / run)).rows == 10
    assert len(partial.read_text().splitlines()) == 2, partial.read_text()


def test_doctor_logs_in_through_the_bastion(database_server, bastion, tmp_path):
    source = database_server
    config = write_config(tmp_path, _block(source, bastion.ssh()), [{"name": "q", "query": "SELECT 1 AS x",
                                                                      "destination": "out"}])  # fmt: skip
    checked = run_rivet("doctor", "-c", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "through the SSH bastion" in checked.stdout, checked.stdout
