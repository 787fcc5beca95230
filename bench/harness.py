"""Runs methods side by side, each in its own process: wall time, rows/s, peak RSS, output size,
the longest single statement on the server, and ratios to rivet."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

HERE = Path(__file__).parent


@dataclass
class Measurement:
    """One run of one method on one table."""

    method: str
    table: str
    seconds: float
    rows: int
    bytes: int
    peak_rss_mb: float
    longest_statement_s: float
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0  # the machine's busy CPU during the run minus the client's
    ok: bool = True
    error: str = ""


class StatementWatch:
    """Samples the server's activity every 50 ms for the longest-running active statement
    (pg_stat_activity on PostgreSQL, the process list on MariaDB)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatementWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        if self.url.startswith("mysql"):
            self._run_mysql()
            return
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                row = conn.execute(
                    "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - query_start)), 0) "
                    "FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
                    "AND datname = current_database() AND backend_type = 'client backend'"
                ).fetchone()
                self.longest = max(self.longest, float(row[0]) if row else 0.0)
                self._stop.wait(0.05)

    def _run_mysql(self) -> None:
        from bench.fixtures import _mysql_connect

        with _mysql_connect() as conn, conn.cursor() as cur:
            while not self._stop.is_set():
                cur.execute(
                    "SELECT coalesce(max(TIME_MS), 0) / 1000 FROM information_schema.PROCESSLIST "
                    "WHERE COMMAND IN ('Query', 'Execute') AND ID <> CONNECTION_ID() AND INFO NOT LIKE '%PROCESSLIST%'"
                )
                row = cur.fetchone()
                self.longest = max(self.longest, float(row[0]) if row else 0.0)
                self._stop.wait(0.05)


# Other checkouts to run methods against, by label: ``METHOD@LABEL`` runs METHOD with that
# checkout's rivet (bench/run.py --baseline DIR registers it as "base").
BASELINES: dict[str, str] = {}


def busy_cpu_seconds() -> float:
    """CPU-seconds the whole machine has spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def compile_bytecode(*packages: Path) -> None:
    """Compile the packages' modules once, as ``pip install`` does for an installed rivet.

    An editable checkout has no ``.pyc`` files, and where ``PYTHONDONTWRITEBYTECODE`` is set
    none are ever written: every run would compile the whole package again (0.15-0.2 s
    here) before its first row, which no installed rivet does.
    """
    import compileall

    for package in packages:
        if not compileall.compile_dir(str(package), quiet=1, workers=1):
            raise RuntimeError(f"compiling {package} failed")


def measure(method: str, url: str, table: str) -> Measurement:
    """Run one method in a child process, which reports its own peak RSS and CPU.

    The database server is co-located, so the machine's busy CPU during the run, less
    the client's, is what the server spent on it (plus the 50 ms activity sampling).
    """
    out = Path(tempfile.mkdtemp(prefix=f"rivet-bench-{method.replace('@', '-')}-"))
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    name, _, against = method.partition("@")
    package = HERE.parent / "python" / "rivet"
    if against:
        # The same method with the rivet package of another checkout (its python/ folder first).
        env["PYTHONPATH"] = os.pathsep.join([str(Path(BASELINES[against]) / "python"), str(HERE.parent)])
        package = Path(BASELINES[against]) / "python" / "rivet"
    compile_bytecode(package, HERE)
    busy_before = busy_cpu_seconds()
    with StatementWatch(url) as watch:
        proc = subprocess.run(
            [sys.executable, str(HERE / "methods.py"), name, url, table, str(out)],
            capture_output=True,
            env=env,
            check=False,
        )
    stdout, stderr = proc.stdout, proc.stderr
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        print(f"{method} on {table} failed (exit {proc.returncode}): {tail[0]}", file=sys.stderr, flush=True)
        return Measurement(method, table, 0, 0, 0, 0, watch.longest, ok=False, error=tail[0])
    busy = busy_cpu_seconds() - busy_before
    doc = json.loads(stdout)
    client = doc["client_cpu_s"]
    return Measurement(
        method,
        table,
        doc["seconds"],
        doc["rows"],
        doc["bytes"],
        doc["peak_rss_mb"],
        watch.longest,
        client_cpu_s=client,
        server_cpu_s=max(0.0, busy - client),
    )


@dataclass
class Summary:
    """Median of the repeats of one method on one table."""

    method: str
    table: str
    seconds: float
    rows: int
    bytes: int
    peak_rss_mb: float
    longest_statement_s: float
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    runs: list[float] = field(default_factory=list)
    error: str = ""
    failures: list[str] = field(default_factory=list)  # errors of the runs that failed

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def compare(methods: list[str], url: str, table: str, repeat: int) -> list[Summary]:
    """Run every method ``repeat`` times, interleaved, so drift hits them alike."""
    runs: dict[str, list[Measurement]] = {m: [] for m in methods}
    for _ in range(repeat):
        for m in methods:
            runs[m].append(measure(m, url, table))
    out = []
    for m in methods:
        good = [r for r in runs[m] if r.ok]
        if not good:
            out.append(Summary(m, table, 0, 0, 0, 0, 0, error=runs[m][0].error))
            continue
        out.append(
            Summary(
                m,
                table,
                statistics.median(r.seconds for r in good),
                good[0].rows,
                good[0].bytes,
                max(r.peak_rss_mb for r in good),
                max(r.longest_statement_s for r in good),
                statistics.median(r.client_cpu_s for r in good),
                statistics.median(r.server_cpu_s for r in good),
                [round(r.seconds, 3) for r in good],
                failures=[r.error for r in runs[m] if not r.ok],
            )
        )
    return out


def render(summaries: list[Summary], baseline: str | None = None) -> str:
    """A markdown table; 'time vs rivet' > 1 means the method is slower than rivet (the first
    rivet method measured, unless ``baseline`` names one)."""
    methods = [s.method for s in summaries]
    baseline = baseline or ("rivet" if "rivet" in methods else next((m for m in methods if m.startswith("rivet")), ""))
    base = {s.table: s.seconds for s in summaries if s.method == baseline and s.seconds}
    lines = [
        f"| table | method | wall s | rows/s | peak RSS MiB | output (in memory: result) MiB | longest stmt s "
        "| client CPU s/M rows "
        f"| server CPU s/M rows | time vs {baseline} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        if s.error:
            lines.append(f"| {s.table} | {s.method} | failed: {s.error} | | | | | | | |")
            continue
        ratio = s.seconds / base[s.table] if base.get(s.table) else float("nan")
        millions = s.rows / 1e6 if s.rows else float("nan")
        lines.append(
            f"| {s.table} | {s.method} | {s.seconds:.2f} | {s.rows_per_s:,.0f} | {s.peak_rss_mb:.0f} | "
            f"{s.bytes / 2**20:.1f} | {s.longest_statement_s:.2f} | {s.client_cpu_s / millions:.2f} | "
            f"{s.server_cpu_s / millions:.2f} | {ratio:.2f} |"
        )
    lines += [
        f"\n{s.method} on {s.table}: {len(s.failures)} run(s) failed: {s.failures[0]}" for s in summaries if s.failures
    ]
    return "\n".join(lines)


def to_json(summaries: list[Summary]) -> list[dict[str, object]]:
    return [{**asdict(s), "rows_per_s": s.rows_per_s} for s in summaries]
