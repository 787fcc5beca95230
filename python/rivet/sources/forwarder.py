"""The SSH tunnel in a process of its own, for connectorx.

connectorx holds the GIL while it connects, so a tunnel whose pumps are Python threads of the
same process could not carry its connections. This module runs the same tunnel
(:mod:`rivet.sources.tunnel`) in a child interpreter: the child reads the tunnel's settings as
one JSON line on stdin (paths and variable names, never a key), logs in to the bastion with
the host key checked, answers with its local port (or the error) as one JSON line on stdout,
and serves until its stdin closes, which happens when the process that started it ends,
however it ends (a copy forked from it closes its own end of the pipe).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Any

from rivet import errors
from rivet.errors import RivetError, SourceConnectionError
from rivet.sources.tunnel import SshSettings, Tunnel

log = logging.getLogger("rivet")
# The errors a child reports by name, raised again in the process that started it.
REPORTED = {cls.__name__: cls for cls in (errors.ConfigError, errors.SourceError, errors.SourceConnectionError)}


def forwarded_apart(settings: SshSettings, target_host: str, target_port: int) -> tuple[str, int]:
    """The local address a child process forwards to ``target_host:target_port`` through the bastion.

    One child per tunnel in each process, started the first time it is asked for, again if it died.
    """
    key = (settings, target_host, target_port)
    with _lock:
        starting = _starting.setdefault(key, threading.Lock())
    with starting:  # one slow bastion holds up only its own tunnel's callers
        child = _children.get(key)
        if child is None or child.process.poll() is not None:
            child = _children[key] = _Child.start(settings, target_host, target_port)
    return "127.0.0.1", child.port


_lock = threading.Lock()
_starting: dict[tuple[Any, ...], threading.Lock] = {}
# Run as ``-c`` rather than ``-m``, which would put the working directory first on the child's path.
CHILD_CODE = "import sys; del sys.path[0]; from rivet.sources.forwarder import _serve; sys.exit(_serve())"


@dataclasses.dataclass(frozen=True)
class _Child:
    process: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls, settings: SshSettings, target_host: str, target_port: int) -> _Child:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        try:
            reply = _ask(process, settings, target_host, target_port)
            if isinstance(reply.get("port"), int):
                return cls(process, reply["port"])
        except BaseException:
            _stop(process)
            raise
        _stop(process)
        kind = REPORTED.get(str(reply.get("kind")), SourceConnectionError)
        raise kind(str(reply.get("error") or f"the SSH tunnel's process for {settings.shown} did not start"))


def _ask(process: subprocess.Popen[bytes], settings: SshSettings, host: str, port: int) -> dict[str, Any]:
    """Send the child its settings; its one-line answer (empty: none in time, or not one it could give)."""
    assert process.stdin is not None and process.stdout is not None
    request = {"ssh": dataclasses.asdict(settings), "host": host, "port": port}
    try:
        process.stdin.write(json.dumps(request).encode() + b"\n")
        process.stdin.flush()
    except OSError:
        return {}
    lines: queue.Queue[bytes] = queue.Queue()
    stdout = process.stdout
    # A thread, as select() takes no pipes on every system. Logging in takes at most the connect
    # timeout three times (TCP, SSH, the key's exchange), and the child starts Python first.
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        reply = json.loads(lines.get(timeout=3 * settings.connect_timeout_s + 30) or b"{}")
    except (queue.Empty, ValueError):
        return {}
    return reply if isinstance(reply, dict) else {}


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()


_children: dict[tuple[Any, ...], _Child] = {}


def _forget_after_fork() -> None:
    """In a forked process: the parent's children are not this process's to keep alive."""
    global _lock
    _lock = threading.Lock()
    _starting.clear()
    for child in _children.values():
        if child.process.stdin is not None:
            child.process.stdin.close()  # this copy only: the child ends when its parent's copy closes
    _children.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _serve() -> int:
    """The child: log in, say where the tunnel listens, serve until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, whose exit stops this
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    request = json.loads(sys.stdin.readline())
    settings = SshSettings(**request["ssh"])
    try:
        tunnel = Tunnel(settings, str(request["host"]), int(request["port"]))
        tunnel.ensure_connected()
    except RivetError as e:
        _reply({"error": str(e), "kind": type(e).__name__})
        return 1
    _reply({"port": tunnel.local_port})
    sys.stdin.read()  # until the parent closes it, or ends
    return 0


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(_serve())
