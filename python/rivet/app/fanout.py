"""Many exports at once: one ``rivet`` child process per export, or one thread per export.

Processes isolate: a crash, an out-of-memory kill or a hang of one export never
touches the others. Each child runs ``rivet run -c CONFIG -e NAME --events`` and
reports JSON-line events (``rivet.core.events``) on its stdout; its stderr is kept so a
failure can be explained. At most ``max_processes`` children run at a time.
SIGTERM or Ctrl-C on the parent reaches every child, and a child dies with its
parent (PR_SET_PDEATHSIG), so none is left behind.
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rivet.config import LoadedConfig
from rivet.core import events as event_schema
from rivet.core.events import CallbackObserver
from rivet.core.redact import redact_text
from rivet.core.runinfo import run_id_for, utc_now
from rivet.errors import EXIT_FAILED, EXIT_INTERRUPTED
from rivet.execution.options import RunOptions
from rivet.execution.results import ExportResult
from rivet.ui.cards import Cards

STDERR_TAIL = 40
# Seconds a child gets to stop after SIGTERM before it is killed.
STOP_GRACE_S = 10.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: ask the kernel for SIGTERM when the parent dies."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    """One export running in its own process."""

    name: str
    mode: str
    process: subprocess.Popen[bytes]
    stderr: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=STDERR_TAIL))
    finished: dict[str, Any] | None = None
    bad_lines: int = 0
    readers: list[threading.Thread] = field(default_factory=list)


def _read_events(child: Child, stream: IO[bytes], inbox: queue.Queue[tuple[Child, dict[str, Any] | None]]) -> None:
    for raw in stream:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if event is None or event_schema.problems(event) or event.get("export") != child.name:
            child.bad_lines += 1
            child.stderr.append(redact_text(f"(stdout, not an event) {line[:300]}"))
            continue
        inbox.put((child, event))
    stream.close()


def _read_stderr(child: Child, stream: IO[bytes]) -> None:
    for raw in stream:
        # A child's output reaches summaries and webhooks: whatever it printed, no secret goes on.
        child.stderr.append(redact_text(raw.decode("utf-8", errors="replace").rstrip()))
    stream.close()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _result_of(child: Child, code: int) -> ExportResult:
    if child.finished is not None:
        return ExportResult.from_finished_event(child.finished, child.mode)
    tail = "\n    ".join(list(child.stderr)[-10:])
    result = ExportResult(name=child.name, run_id=run_id_for(child.name, utc_now()), status="failed", mode=child.mode)
    result.error = f"the export's process {_describe_exit(code)} without reporting a result" + (
        f"; its last output:\n    {tail}" if tail else ""
    )
    result.error_type = "ChildProcessError"
    result.exit_code = EXIT_INTERRUPTED if code in (-signal.SIGINT, -signal.SIGTERM) else EXIT_FAILED
    result.status = "interrupted" if result.exit_code == EXIT_INTERRUPTED else "failed"
    return result


# The variable that hands ``-p`` parameters to a child: a command line is readable by every
# user of the machine (``ps``, /proc/PID/cmdline), a process's environment only by its owner.
PARAMS_VARIABLE = "RIVET_PARAMS"


def child_command(loaded: LoadedConfig, options: RunOptions) -> list[str]:
    """``rivet run -c CONFIG --events ...``: a child's command, without its ``-e NAME``."""
    assert loaded.path is not None
    command = [sys.executable, "-m", "rivet", "run", "-c", str(Path(loaded.path).resolve()), "--events"]
    return command + options.flags()


def child_environment(params: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of a child: this process's, with the ``-p`` parameters."""
    env = dict(os.environ)
    if params:
        env[PARAMS_VARIABLE] = json.dumps(dict(params))
    return env


class ProcessPool:
    """Starts, watches and stops the children of one run."""

    def __init__(
        self,
        loaded: LoadedConfig,
        names: Sequence[str],
        *,
        max_processes: int,
        command: list[str],
        cards: Cards,
        env: dict[str, str] | None = None,
    ) -> None:
        self.env = env
        self.loaded = loaded
        self.waiting = list(names)
        self.max_processes = max(1, max_processes)
        self.cards = cards
        self.command = command
        self.inbox: queue.Queue[tuple[Child, dict[str, Any] | None]] = queue.Queue()
        self.running: dict[str, Child] = {}
        self.results: dict[str, ExportResult] = {}
        self.stopping = False

    def _spawn(self, name: str) -> None:
        mode = self.loaded.export(name).mode
        process = subprocess.Popen(
            [*self.command, "-e", name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            preexec_fn=_die_with_parent,
        )
        child = Child(name, mode, process)
        assert process.stdout is not None and process.stderr is not None
        child.readers = [
            threading.Thread(target=_read_events, args=(child, process.stdout, self.inbox), daemon=True),
            threading.Thread(target=_read_stderr, args=(child, process.stderr), daemon=True),
        ]
        for t in child.readers:
            t.start()
        self.running[name] = child

    def stop(self) -> None:
        """Stop every child: SIGTERM, then SIGKILL after the grace period."""
        self.stopping = True
        self.waiting.clear()
        for child in self.running.values():
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for child in self.running.values():
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()

    def _reap(self) -> None:
        for name, child in list(self.running.items()):
            code = child.process.poll()
            if code is None:
                continue
            for t in child.readers:
                t.join(5)
            self._drain()
            result = _result_of(child, code)
            self.results[name] = result
            self.cards.finish(result)
            del self.running[name]

    def _drain(self, timeout: float = 0.0) -> None:
        try:
            child, event = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            if event is not None:
                if event["type"] == "finished":
                    child.finished = event
                else:
                    self.cards.event(event)
            try:
                child, event = self.inbox.get_nowait()
            except queue.Empty:
                return

    def run(self) -> list[ExportResult]:
        """Run every export; results in the order the exports were named."""
        order = list(self.waiting)
        try:
            while self.waiting or self.running:
                while self.waiting and len(self.running) < self.max_processes and not self.stopping:
                    self._spawn(self.waiting.pop(0))
                self._drain(timeout=0.1)
                self._reap()
        except BaseException:
            self.stop()
            self._reap()
            raise
        return [self.results[n] for n in order if n in self.results]


def run_processes(
    loaded: LoadedConfig,
    names: Sequence[str],
    *,
    max_processes: int | None,
    options: RunOptions | None = None,
    params: Mapping[str, str] | None = None,
    command: list[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> list[ExportResult]:
    """Run each export in its own process, at most ``max_processes`` at a time.

    ``command`` is a child's command without ``-e NAME`` (default: ``rivet run`` of the config);
    ``extra_env`` is added to the children's environment (the run's trace context).
    """
    from rivet.state import StateStore, state_location

    # Migrate the state store once, before children open it concurrently.
    StateStore(state_location(loaded.base_dir)).close()
    limit = max_processes or os.cpu_count() or 2
    with Cards(list(names)) as cards:
        pool = ProcessPool(
            loaded,
            names,
            max_processes=limit,
            command=command or child_command(loaded, options or RunOptions()),
            cards=cards,
            env={**child_environment(params), **(extra_env or {})},
        )
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_term)
        try:
            return pool.run()
        finally:
            signal.signal(signal.SIGTERM, previous)


def run_threads(
    loaded: LoadedConfig,
    names: Sequence[str],
    *,
    max_threads: int | None,
    options: RunOptions,
) -> list[ExportResult]:
    """Run each export in a thread of this process, with the same events and cards."""
    from rivet.plan.export import build_plan
    from rivet.state import StateStore, state_location

    state = StateStore(state_location(loaded.base_dir))
    limit = max_threads or os.cpu_count() or 2
    with Cards(list(names)) as cards:
        observer = CallbackObserver(cards.event)

        def one(name: str) -> ExportResult:
            export = loaded.export(name)
            try:
                plan = build_plan(loaded, export)
            except Exception as e:  # noqa: BLE001 - a bad plan fails this export only
                result = ExportResult.failed(name, export.mode, e)
            else:
                result = options.run(plan, state, observer)
            cards.finish(result)
            return result

        try:
            with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="rivet-export") as pool:
                return list(pool.map(one, names))
        finally:
            state.close()
