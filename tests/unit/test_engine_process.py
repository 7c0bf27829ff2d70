"""chute.engine.cli (streaming, timeouts, cancel, Ctrl-C) with real processes, and engine detection."""

from __future__ import annotations

import _thread
import os
import shutil
import sys
import threading
import time

import pytest

from chute.engine import EngineNotFound, EngineUsageError, detect_engine
from chute.engine.cli import MAX_LINE, run_capture, run_streaming


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_lines_are_streamed_in_order_with_exit_code():
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    result = run_streaming(
        ["sh", "-c", "echo one; sleep 0.5; echo two >&2; printf 'no newline'; exit 4"],
        log=lambda line: seen.append((time.monotonic() - start, line)),
    )
    assert [line for _t, line in seen] == ["one", "two", "no newline"]
    assert seen[0][0] < 0.4  # delivered before the process finished, not at the end
    assert result.returncode == 4 and not result.ok
    assert result.tail == ("one", "two", "no newline")


def test_output_without_newlines_is_passed_on_in_bounded_pieces():
    """A container printing a gigabyte without a newline (a progress bar redrawn with carriage
    returns) must not be held whole: the agent inside chute serve would grow by the log's size."""
    seen: list[str] = []
    # A two-byte character straddles the first cut; 3 MB follow without a newline.
    code = f"import sys; sys.stdout.buffer.write(b'x' * ({MAX_LINE} - 1) + 'é'.encode() + b'y' * 3_000_000)"
    result = run_streaming([sys.executable, "-c", code], log=seen.append)
    assert result.returncode == 0
    assert max(len(piece) for piece in seen) <= MAX_LINE
    assert len(seen) > 3_000_000 // MAX_LINE
    assert "".join(seen) == "x" * (MAX_LINE - 1) + "é" + "y" * 3_000_000  # nothing lost, no character broken


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    result = run_streaming(
        ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo started; wait"],
        timeout=1,
    )
    assert result.timed_out and not result.ok
    child = int(pidfile.read_text())
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child), "a child of the timed-out process survived"


def test_cancel_calls_on_abort_first_and_lets_the_process_finish(tmp_path):
    stop = tmp_path / "stop"
    cancel = threading.Event()
    reasons: list[str] = []
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if line == "waiting":
            cancel.set()

    def on_abort(reason: str) -> None:
        reasons.append(reason)
        stop.write_text("")  # what stopping the container does: the engine process then exits

    result = run_streaming(
        ["sh", "-c", f"echo waiting; while [ ! -e {stop} ]; do sleep 0.05; done; echo stopped; exit 5"],
        log=log,
        cancel=cancel,
        on_abort=on_abort,
    )
    assert reasons == ["cancel"]
    assert result.cancelled and result.returncode == 5
    assert lines == ["waiting", "stopped"]


def test_keyboard_interrupt_cleans_up_then_propagates(tmp_path):
    import signal

    # Ctrl-C as Python delivers it by default, whatever handler an earlier test left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_cleans_up_then_propagates(tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_cleans_up_then_propagates(tmp_path):
    reasons: list[str] = []
    pidfile = tmp_path / "pid"

    def log(line: str) -> None:
        if line == "ready":
            _thread.interrupt_main()

    with pytest.raises(KeyboardInterrupt):
        run_streaming(
            ["sh", "-c", f"echo $$ > {pidfile}; echo ready; sleep 60"],
            log=log,
            on_abort=reasons.append,
            abort_grace=0.2,
        )
    assert reasons == ["interrupt"]
    assert not _alive(int(pidfile.read_text()))


def test_a_failing_log_callback_does_not_block_the_process():
    def log(line: str) -> None:
        raise ValueError("log sink broke")

    script = "for i in $(seq 1 20000); do echo line-$i; done"  # more than a pipe buffer
    with pytest.raises(ValueError, match="log sink broke"):
        run_streaming(["sh", "-c", script], log=log, timeout=30)


def test_missing_binary_is_reported_not_raised():
    assert run_streaming(["/nonexistent/engine"]).returncode is None
    assert run_capture(["/nonexistent/engine"]).returncode is None


def test_capture_keeps_streams_apart_and_times_out():
    result = run_capture(
        [sys.executable, "-c", "import sys; print('{}'); print('Error: bad', file=sys.stderr)"]
    )
    assert result.stdout.strip() == "{}" and result.stderr.strip() == "Error: bad"
    assert result.error_line() == "Error: bad"
    slow = run_capture(["sleep", "5"], timeout=0.3)
    assert slow.timed_out and slow.returncode is None


# --------------------------------------------------------------------------- detection


def test_no_engine_at_all_names_both_and_how_to_install(tmp_path):
    with pytest.raises(EngineNotFound) as info:
        detect_engine(environ={"PATH": str(tmp_path), "HOME": str(tmp_path)})
    text = str(info.value)
    assert "podman is not installed" in text and "docker is not installed" in text
    assert "apt-get install podman" in text and "docker.io" in text and "CHUTE_ENGINE" in text


def test_unknown_engine_name_is_a_usage_error():
    with pytest.raises(EngineUsageError, match="unknown container engine 'rkt'"):
        detect_engine(environ={"CHUTE_ENGINE": "rkt", "PATH": os.environ.get("PATH", "")})


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")
def test_docker_without_a_daemon_is_not_usable(tmp_path):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CHUTE_ENGINE": "docker",
        "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock",
    }
    with pytest.raises(EngineNotFound) as info:
        detect_engine(environ=env)
    text = str(info.value)
    assert "docker is installed but does not work" in text and "no-daemon.sock" in text
    assert "podman" not in text.split("hint:")[0]  # only the requested engine was tried
