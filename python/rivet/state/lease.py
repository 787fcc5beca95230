"""One writer per export: a lease in the state store, kept alive by a heartbeat.

A run takes its export's lease before it touches the destination. A second run of
the same export is refused, naming the run that holds it, or waits for it
(``--wait``). A lease whose holder died is taken over: at once when the holder was a
process of this machine's kernel and process namespace that no longer exists,
otherwise once its heartbeat is older than the lease's time to live. Heartbeats are
the state database's clock, so machines whose clocks disagree agree on who is late.
Every takeover is logged.

The lease is also a fence: a run publishes only inside a state transaction that
finds it still holding the lease, so a run presumed dead that wakes up publishes
nothing. A run that takes over by time alone leaves the files its predecessor staged
(it may still be alive) to the day-old cleanup.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from functools import cache
from typing import TYPE_CHECKING

from rivet.errors import ExportBusyError

if TYPE_CHECKING:
    from rivet.state.keys import ExportKey
    from rivet.state.rows import Lease
    from rivet.state.store import StateStore

log = logging.getLogger("rivet")

# A holder that has not renewed its lease for this long is presumed dead.
LEASE_TTL_S = 60.0
# How often a holder renews its lease.
HEARTBEAT_S = 10.0
# How often a waiting run asks again.
WAIT_POLL_S = 1.0


@cache
def process_space() -> str:
    """What makes a process id mean one process: this boot of this kernel, and this pid namespace.

    Containers may share a host name while each has its own pids; two holders whose
    spaces differ cannot tell each other's pids apart. Where the system does not say,
    a random value: such a holder is never judged by its pid, only by its heartbeat.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return "r" + secrets.token_hex(6)
    return hashlib.sha256(f"{boot}:{namespace}".encode()).hexdigest()[:12]


def holder_id() -> str:
    """``host:pid:space`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{process_space()}"


def holder_gone(holder: str) -> bool:
    """True when ``holder`` was a process in this process space that no longer exists."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[2] != process_space() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def describe_holder(lease: Lease) -> str:
    """``run R (process P on H, since T)`` for messages."""
    parts = str(lease.holder).rsplit(":", 2)
    host, pid = (parts[0], parts[1]) if len(parts) == 3 else str(lease.holder).rpartition(":")[::2]
    return f"run {lease.run_id} (process {pid} on {host}, since {lease.acquired_at})"


class ExportLease:
    """The lease of one export for one run; a context manager that renews it meanwhile."""

    def __init__(
        self, store: StateStore, key: ExportKey, run_id: str, *, wait: bool = False, ttl_s: float = LEASE_TTL_S
    ) -> None:
        self.store = store
        self.key = key
        self.run_id = run_id
        self.wait = wait
        self.ttl_s = ttl_s
        self.holder = holder_id()
        self.taken_over: Lease | None = None
        # The run whose lease was taken over by time alone: it may be alive, so its staged files stay.
        self.spared_run: str | None = None
        self.held = False
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lease, waiting for the holder with ``wait``; ExportBusyError otherwise."""
        while True:
            try:
                self.taken_over = self.store.take_lease(self.key, self.run_id, self.holder, self.ttl_s, holder_gone)
                break
            except ExportBusyError:
                if not self.wait:
                    raise
                time.sleep(WAIT_POLL_S)
        if self.taken_over is not None:
            dead = holder_gone(self.taken_over.holder)
            self.spared_run = None if dead else self.taken_over.run_id
            log.warning(
                "export %s: took over the lease of %s, whose holder %s",
                self.key.name,
                describe_holder(self.taken_over),
                "is gone" if dead else f"has not renewed it for {self.ttl_s:.0f} s",
            )
        self.held = True
        self._beat = threading.Thread(target=self._renew, name=f"rivet-lease-{self.key.name}", daemon=True)
        self._beat.start()

    def _renew(self) -> None:
        while not self._stop.wait(min(HEARTBEAT_S, self.ttl_s / 3)):
            if not self.store.renew_lease(self.key, self.run_id):
                log.error("export %s: run %s lost its lease to another run", self.key.name, self.run_id)
                self._lost.set()
                return

    def check(self) -> None:
        """Raise ExportBusyError if another run took the lease (call before publishing)."""
        if self._lost.is_set() or not self.store.renew_lease(self.key, self.run_id):
            self._lost.set()
            self._refuse()

    def fence(self) -> None:
        """Inside the publishing state transaction: raise ExportBusyError unless this run still holds the lease."""
        if not self.store.holds_lease(self.key, self.run_id):
            self._lost.set()
            self._refuse()

    def _refuse(self) -> None:
        raise ExportBusyError(
            f"export '{self.key.name}': run {self.run_id} lost its lease to another run; nothing was published"
        )

    def release(self) -> None:
        """Stop renewing and give the lease back (a no-op when it was never taken)."""
        if not self.held:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        self.store.release_lease(self.key, self.run_id)
        self.held = False

    def __enter__(self) -> ExportLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
