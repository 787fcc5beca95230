"""One writer per export: a lease in the state store, kept alive by a heartbeat.

A run takes its export's lease before it touches the destination. A second run of
the same export is refused, naming the run that holds it, or waits for it
(``--wait``). A lease whose holder died is taken over: at once when the holder was
a process on this machine that no longer exists, otherwise once its heartbeat is
older than the lease's time to live. Every takeover is logged. A run that lost its
lease publishes nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from rivet.errors import ExportBusyError

if TYPE_CHECKING:
    from rivet.state.store import StateStore

log = logging.getLogger("rivet")

# A holder that has not renewed its lease for this long is presumed dead.
LEASE_TTL_S = 60.0
# How often a holder renews its lease.
HEARTBEAT_S = 10.0
# How often a waiting run asks again.
WAIT_POLL_S = 1.0


def holder_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_gone(holder: str) -> bool:
    """True when ``holder`` was a process on this machine that no longer exists."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def describe_holder(row: dict[str, Any]) -> str:
    """``run R (process P on H, since T)`` for messages."""
    host, _, pid = str(row["holder"]).rpartition(":")
    return f"run {row['run_id']} (process {pid} on {host}, since {row['acquired_at']})"


class ExportLease:
    """The lease of one export for one run; a context manager that renews it meanwhile."""

    def __init__(
        self, store: StateStore, export: str, run_id: str, *, wait: bool = False, ttl_s: float = LEASE_TTL_S
    ) -> None:
        self.store = store
        self.export = export
        self.run_id = run_id
        self.wait = wait
        self.ttl_s = ttl_s
        self.holder = holder_id()
        self.taken_over: dict[str, Any] | None = None
        self.held = False
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lease, waiting for the holder with ``wait``; ExportBusyError otherwise."""
        while True:
            try:
                self.taken_over = self.store.take_lease(self.export, self.run_id, self.holder, self.ttl_s, holder_gone)
                break
            except ExportBusyError:
                if not self.wait:
                    raise
                time.sleep(WAIT_POLL_S)
        if self.taken_over is not None:
            log.warning(
                "export %s: took over the lease of %s, whose holder is gone",
                self.export,
                describe_holder(self.taken_over),
            )
        self.held = True
        self._beat = threading.Thread(target=self._renew, name=f"rivet-lease-{self.export}", daemon=True)
        self._beat.start()

    def _renew(self) -> None:
        while not self._stop.wait(min(HEARTBEAT_S, self.ttl_s / 3)):
            if not self.store.renew_lease(self.export, self.run_id):
                log.error("export %s: run %s lost its lease to another run", self.export, self.run_id)
                self._lost.set()
                return

    def check(self) -> None:
        """Raise ExportBusyError if another run took the lease (call before publishing)."""
        if self._lost.is_set() or not self.store.renew_lease(self.export, self.run_id):
            self._lost.set()
            raise ExportBusyError(
                f"export '{self.export}': run {self.run_id} lost its lease to another run; nothing was published"
            )

    def release(self) -> None:
        """Stop renewing and give the lease back (a no-op when it was never taken)."""
        if not self.held:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        self.store.release_lease(self.export, self.run_id)
        self.held = False

    def __enter__(self) -> ExportLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
