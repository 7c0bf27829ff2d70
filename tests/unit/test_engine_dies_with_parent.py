"""An engine command dies with the process that started it (a killed agent leaves no podman behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = """
import sys
from chute.engine.cli import {fn}
{call}
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("fn, call", [
    ("run_capture", "run_capture(['sh', '-c', 'echo $$ > ' + sys.argv[1] + '; exec sleep 60'], timeout=None)"),
    ("run_streaming", "run_streaming(['sh', '-c', 'echo $$ > ' + sys.argv[1] + '; exec sleep 60'])"),
])
def test_the_engine_command_is_killed_with_its_parent(tmp_path: Path, fn: str, call: str) -> None:
    import chute.engine.cli as cli

    if not hasattr(cli, fn):
        pytest.fail(f"chute.engine.cli.{fn} is gone: update this test")
    pidfile = tmp_path / "pid"
    parent = subprocess.Popen([sys.executable, "-c", CHILD.format(fn=fn, call=call), str(pidfile)],
                              cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int(pidfile.read_text())
        assert _alive(pid)
        os.kill(parent.pid, signal.SIGKILL)  # the agent is killed
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the engine command outlived the process that started it"
    finally:
        parent.kill()
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
