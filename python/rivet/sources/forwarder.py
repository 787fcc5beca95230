"""The SSH tunnel in a process of its own, for connectorx.

connectorx holds the GIL while it connects, so a tunnel whose pumps are Python threads of the
same process could not carry its connections. This module runs the same tunnel
(:mod:`rivet.sources.tunnel`) in a child interpreter: the child reads the tunnel's settings as
one JSON line on stdin (paths and variable names, never a key), logs in to the bastion with
the host key checked, answers with its local port (or the error) as one JSON line on stdout,
and serves until its stdin closes, which happens when the process that started it ends,
however it ends.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
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
    key = (os.getpid(), settings, target_host, target_port)
    with _lock:
        child = _children.get(key)
        if child is None or child.process.poll() is not None:
            child = _children[key] = _Child.start(settings, target_host, target_port)
    return "127.0.0.1", child.port


_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class _Child:
    process: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls, settings: SshSettings, target_host: str, target_port: int) -> _Child:
        process = subprocess.Popen(
            [sys.executable, "-m", "rivet.sources.forwarder"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert process.stdin is not None and process.stdout is not None
        request = {"ssh": dataclasses.asdict(settings), "host": target_host, "port": target_port}
        try:
            process.stdin.write(json.dumps(request).encode() + b"\n")
            process.stdin.flush()
            # Logging in takes at most the connect timeout, twice (the TCP connection, then SSH).
            ready, _, _ = select.select([process.stdout], [], [], 2 * settings.connect_timeout_s + 30)
            reply = json.loads(process.stdout.readline() or b"{}") if ready else {}
        except (OSError, ValueError):
            reply = {}
        if "port" in reply:
            return cls(process, int(reply["port"]))
        process.kill()
        process.wait()
        kind = REPORTED.get(str(reply.get("kind")), SourceConnectionError)
        raise kind(str(reply.get("error") or f"the SSH tunnel's process for {settings.shown} did not start"))


_children: dict[tuple[Any, ...], _Child] = {}


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
