"""``chute blubber [-p POLICY] CONFIG VARIANT`` as a real process: output, exit codes, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chute import __version__

CHUTE = Path(sys.executable).with_name("chute")

CONFIG = """\
version: v4
base: debian:bookworm
variants:
  build: {copies: [local]}
  test: {includes: [build], entrypoint: [make, test]}
"""


def chute(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(CHUTE)] if CHUTE.exists() else [sys.executable, "-m", "chute"]
    proc = subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".pipeline").mkdir()
    (tmp_path / ".pipeline" / "blubber.yaml").write_text(CONFIG)
    return tmp_path


def test_prints_the_dockerfile_from_any_directory(project: Path,
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    proc = chute("blubber", str(project / ".pipeline" / "blubber.yaml"), "test", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("FROM debian:bookworm\n")
    assert 'ENTRYPOINT ["make", "test"]' in proc.stdout
    assert proc.stdout.endswith(f'LABEL blubber.variant="test" blubber.version="{__version__}"\n')
    relative = chute("blubber", ".pipeline/blubber.yaml", "build", cwd=project)
    assert relative.returncode == 0 and relative.stdout.startswith("FROM debian:bookworm\n")


@pytest.mark.parametrize(("config", "args", "code", "text"), [
    (None, ["blubber"], 1, "Missing argument"),
    (None, ["blubber", "only-one-arg"], 1, "Missing argument"),
    ("missing.yaml", [], 2, "cannot read the file"),
    ("version: v4\nvariants: [\n", [], 2, "invalid YAML"),
    ("version: v4\nvariants: {test: {bogus: 1}}\n", [], 2, "unknown field 'bogus'"),
    ("version: v4\nvariants: {build: {}}\n", [], 3, "variant 'test' does not exist"),
    ("version: v3\nvariants: {test: {}}\n", [], 4, 'config version "v3" is unsupported'),
    ("version: v4\nbase: Bad Image\nvariants: {test: {}}\n", [], 4, "not a valid base image reference"),
])
def test_exit_codes(tmp_path: Path, config: str | None, args: list[str], code: int, text: str) -> None:
    if args:
        proc = chute(*args, cwd=tmp_path)
    elif config == "missing.yaml":
        proc = chute("blubber", "missing.yaml", "test", cwd=tmp_path)
    else:
        (tmp_path / "b.yaml").write_text(config or "")
        proc = chute("blubber", "b.yaml", "test", cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert text in proc.stderr
    assert proc.stdout == ""


def test_problems_point_at_the_file(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("version: v4\nvariants:\n  test:\n    lives: {in: rel}\n")
    proc = chute("blubber", "b.yaml", "test", cwd=tmp_path)
    assert proc.returncode == 4
    assert proc.stderr.startswith("b.yaml:4:17: error: variants.test.lives.in: 'rel' is not a valid absolute "
                                  "non-root path\n    hint: ")


def test_policy_exit_codes(project: Path) -> None:
    cfg = str(project / ".pipeline" / "blubber.yaml")
    good = project / "good.yaml"
    good.write_text("enforcements: [{path: base, rule: 'startswith=debian'}]\n")
    bad = project / "bad.yaml"
    bad.write_text("enforcements: [{path: base, rule: 'startswith=registry.example/'}]\n")
    broken = project / "broken.yaml"
    broken.write_text("enforcements: [{path: base, rule: nosuchrule}]\n")
    assert chute("blubber", "-p", str(good), cfg, "test", cwd=project).returncode == 0
    proc = chute("blubber", "--policy", str(bad), cfg, "test", cwd=project)
    assert proc.returncode == 6 and "violates policy rule" in proc.stderr and proc.stdout == ""
    proc = chute("blubber", f"--policy={broken}", cfg, "test", cwd=project)
    assert proc.returncode == 5 and "unknown rule 'nosuchrule'" in proc.stderr
    proc = chute("blubber", "-p", str(project / "nope.yaml"), cfg, "test", cwd=project)
    assert proc.returncode == 5
