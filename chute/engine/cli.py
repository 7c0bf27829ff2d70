"""Running engine CLI processes: output streamed line by line, timeouts, cancellation.

No shell is ever involved: every command is an argv list. Each process gets
its own session, so a Ctrl-C in the terminal reaches only chute, which then
cleans up (stops the container it started) before the process is killed.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .base import LogFn

POLL_INTERVAL = 0.1  # seconds between checks of the cancel event and the deadline
TERM_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when the process must go
MAX_LINE = 64 * 1024  # bytes of one output line passed on at a time; a longer line is split


@dataclass(frozen=True)
class ProcessResult:
    argv: tuple[str, ...]
    returncode: int | None  # None if the process could not be started
    stdout: str = ""
    stderr: str = ""
    tail: tuple[str, ...] = ()  # last lines of (merged) output
    timed_out: bool = False
    cancelled: bool = False
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.cancelled

    def error_line(self) -> str:
        """The engine's own error message: the last ``Error:`` line, else the last line of output."""
        text = self.stderr or "\n".join(self.tail)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        for line in reversed(lines):
            if line.startswith(("Error:", "Error response from daemon:", "ERROR:", "error:")):
                return line
        return lines[-1] if lines else f"exit status {self.returncode}"


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The engine CLI is killed when the thread that started it dies (Linux ``PR_SET_PDEATHSIG``).

    Engine commands run in sessions of their own (so a Ctrl-C is ours to handle), so a killed agent
    or ``chute run`` would leave them running: a ``podman run`` that had not yet created its
    container would create it after the next agent's clean-up, for nobody.
    """
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the agent's start-up clean-up is what remains


def run_capture(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 120,
    input_text: str | None = None,
) -> ProcessResult:
    """Run a short command and capture stdout and stderr separately (for JSON output)."""
    start = time.monotonic()
    try:
        proc = subprocess.run(
            list(argv),
            input=input_text.encode() if input_text is not None else None,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            capture_output=True,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except FileNotFoundError as err:
        return ProcessResult(tuple(argv), None, stderr=str(err), duration=time.monotonic() - start)
    except subprocess.TimeoutExpired as err:
        return ProcessResult(
            tuple(argv),
            None,
            stdout=_decode(err.stdout or b""),
            stderr=_decode(err.stderr or b""),
            timed_out=True,
            duration=time.monotonic() - start,
        )
    stdout = proc.stdout.decode("utf-8", errors="replace")
    stderr = proc.stderr.decode("utf-8", errors="replace")
    tail = tuple((stdout + stderr).splitlines()[-50:])
    return ProcessResult(
        tuple(argv), proc.returncode, stdout, stderr, tail, duration=time.monotonic() - start
    )


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def terminate(proc: subprocess.Popen[bytes], grace: float = TERM_GRACE) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    _kill_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _kill_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)


def run_streaming(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: LogFn | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    on_abort: Callable[[str], None] | None = None,
    abort_grace: float = 10.0,
    tail_size: int = 200,
) -> ProcessResult:
    """Run ``argv``, sending each line of its stdout+stderr to ``log`` as it comes.

    On timeout, on ``cancel`` being set, or on KeyboardInterrupt: ``on_abort``
    runs first, given "timeout", "cancel" or "interrupt" (it stops the
    container the process started, which usually ends the process too),
    then the process group is terminated if it is still alive after
    ``abort_grace`` seconds. KeyboardInterrupt is re-raised
    after that cleanup.
    """
    start = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=tail_size)
    log_errors: list[BaseException] = []

    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except FileNotFoundError as err:
        return ProcessResult(tuple(argv), None, stderr=str(err), tail=(str(err),))

    def pump() -> None:
        out = proc.stdout
        assert out is not None
        # At most MAX_LINE bytes at a time: output without newlines (a progress bar redrawn
        # with carriage returns, a binary dump) is passed on in pieces, never held whole. The
        # incremental decoder keeps a character cut between two pieces whole.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces = iter(lambda: out.readline(MAX_LINE), b"")
        for raw in itertools.chain(pieces, [None]):
            text = decoder.decode(b"", final=True) if raw is None else decoder.decode(raw)
            if raw is None and not text:
                break
            line = text.rstrip("\r\n")
            tail.append(line)
            if log is not None and not log_errors:
                try:
                    log(line)
                except Exception as err:  # keep draining the pipe; re-raised below
                    log_errors.append(err)
        out.close()

    reader = threading.Thread(target=pump, name=f"engine-output-{proc.pid}", daemon=True)

    deadline = None if timeout is None else start + timeout
    timed_out = cancelled = False
    interrupted: KeyboardInterrupt | None = None

    def abort(reason: str) -> None:
        if on_abort is not None:
            try:
                on_abort(reason)
            except Exception:  # the kill below still happens
                pass
            try:
                proc.wait(timeout=abort_grace)
            except subprocess.TimeoutExpired:
                pass
        terminate(proc)

    try:
        # Started inside the try: the log callback may be what raises KeyboardInterrupt.
        reader.start()
        while True:
            try:
                proc.wait(timeout=POLL_INTERVAL)
                break
            except subprocess.TimeoutExpired:
                pass
            if cancel is not None and cancel.is_set():
                cancelled = True
                abort("cancel")
                break
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                abort("timeout")
                break
    except KeyboardInterrupt as err:
        interrupted = err
        cancelled = True
        abort("interrupt")

    # Children of the engine (e.g. a build's RUN process) can hold the pipe open
    # after the engine itself is gone; don't wait for them forever.
    if reader.is_alive():
        reader.join(timeout=5.0)
    if interrupted is not None:
        raise interrupted
    if log_errors:
        raise log_errors[0]
    return ProcessResult(
        tuple(argv),
        proc.returncode,
        tail=tuple(tail),
        timed_out=timed_out,
        cancelled=cancelled,
        duration=time.monotonic() - start,
    )
