"""chute against Blubber 0.8.0's own output for every variant of the public corpus.

Every golden Dockerfile must come out byte for byte, apart from the
``blubber.version`` label value, unless the variant is in one of the named
categories of deliberate difference (docs/compat.md, "Blubber"). Each
category has its own check that the difference is exactly the one intended,
so a category cannot hide an unrelated change:

* ``python``: the variant or a stage it depends on uses Python (``python.version`` is set). chute
  follows current Blubber (a virtualenv) instead of 0.8's easy_install layout.
  With the Python instructions removed from both sides the files must match.
  Membership is computed (144 variants), not listed.
* ``scratch``: no base image. 0.8 wrote ``FROM `` and the full user setup;
  chute writes ``FROM scratch`` with only the copies (no ``--chown``), the
  entrypoint and the labels. Other stages must match.
* ``relative-source``: a relative ``source`` copied from another variant is
  read in that variant's working directory (current Blubber), not at ``/``.
* ``builder-requirements``: ``builder.requirements`` are copied even without
  a ``command`` (current Blubber; the config relies on it to copy files).
* ``node-dedupe``: ``node.env: production`` passes ``--only=production`` to
  ``npm dedupe`` too (npm >= 7's dedupe would install the devDependencies the
  install left out). With that argument removed the files must match; it is
  undone the same way before the other checks, so a Python variant that also
  has it still counts as ``python``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from blubber_helpers import corpus_dir

from chute.blubber import compile_stages, load_config
from chute.blubber.dockerfile import render, render_instruction
from chute.blubber.instructions import Stage
from chute.blubber.resolve import expand
from chute.blubber.schema.requirements import sync_files

SCRATCH = {
    ("golden-repaired", "marxarelli__blubber__.pipeline_blubber.yaml", "buildkit"),
    ("golden-repaired", "marxarelli__masse__.pipeline_blubber.yaml", "gateway"),
    ("golden-repaired", "wikimedia__blubber__.pipeline_blubber.yaml", "buildkit"),
    ("golden-repaired", "wikimedia__blubber__.pipeline_blubber.yaml", "docs-for-publishing"),
    ("golden-repaired", "wikimedia__blubber__.pipeline_blubber.yaml", "project"),
    ("golden-repaired", "wikimedia__blubber__.pipeline_blubber.yaml", "tools"),
}
RELATIVE_SOURCE = {("golden-repaired", "wikimedia__blubber__.pipeline_blubber.yaml", "acceptance")}
BUILDER_REQUIREMENTS = {
    ("golden-repaired", "wikimedia__mediawiki-services-apple-search__.pipeline_blubber.yaml", "dev"),
}
EXPECTED_COUNTS = {"identical": 160, "node-dedupe": 25, "python": 144, "scratch": 6, "relative-source": 1,
                   "builder-requirements": 1}
NODE_DEDUPE = 'npm dedupe "--only=production"'

# The five kinds of line Blubber 0.8's Python support writes (spec §5.3).
PY08 = re.compile(
    r'^(RUN \S+ "-m" "easy_install" "pip" && '
    r'|ENV PIP_FIND_LINKS="file:///opt/lib/python" PIP_WHEEL_DIR="/opt/lib/python"$'
    r'|RUN mkdir -p "/opt/lib/python"$'
    r'|RUN \S+ "-m" "pip" "wheel" '
    r'|ENV PATH="/opt/lib/python/site-packages/bin:\$\{PATH\}"( PIP_NO_INDEX="1")? '
    r'PYTHONPATH="/opt/lib/python/site-packages"$)'
)
LABEL = re.compile(r'blubber\.version="[^"]*"')


def goldens() -> list[tuple[str, str, str]]:
    root = corpus_dir()
    out = []
    for kind in ("golden", "golden-repaired"):
        for f in sorted((root / kind).glob("*.Dockerfile")):
            name, variant = f.name[: -len(".Dockerfile")].rsplit("__", 1)
            out.append((kind, name, variant))
    return out


CASES = goldens()


@functools.cache
def _config(kind: str, name: str):
    folder = "configs" if kind == "golden" else "repaired"
    return load_config(str(corpus_dir() / folder / name))


def compare(kind: str, name: str, variant: str) -> str:
    """Check one golden; return its category ("identical" or a difference category)."""
    golden = (corpus_dir() / kind / f"{name}__{variant}.Dockerfile").read_text()
    cfg = _config(kind, name)
    stages = compile_stages(cfg, variant, version_label="chute-test")
    ours, dedupe = _undo_node_dedupe(golden, LABEL.sub('blubber.version="+"', render(stages)))
    key = (kind, name, variant)
    listed = key in SCRATCH or key in RELATIVE_SOURCE or key in BUILDER_REQUIREMENTS
    if ours == golden:
        assert not listed, f"{key} is listed as a deliberate difference but now matches: update the list"
        return "node-dedupe" if dedupe else "identical"
    if key in SCRATCH:
        _check_scratch(cfg, golden, ours)
        return "scratch"
    if key in RELATIVE_SOURCE:
        _check_relative_source(cfg, golden, ours)
        return "relative-source"
    if key in BUILDER_REQUIREMENTS:
        _check_builder_requirements(cfg, variant, golden, ours)
        return "builder-requirements"
    assert any(expand(cfg, s.variant).python.version for s in stages), \
        f"{key} differs and is in no category of deliberate difference"
    _check_python(cfg, golden, stages)
    return "python"


def _undo_node_dedupe(golden: str, ours: str) -> tuple[str, bool]:
    """``ours`` with the ``--only=production`` of ``npm dedupe`` removed, and whether there was one.

    Only where 0.8 wrote its dedupe: right after a production install, in the same RUN.
    """
    if NODE_DEDUPE not in ours:
        return ours, False
    for line in ours.splitlines():
        if NODE_DEDUPE in line:
            assert re.match(r'RUN npm (install|ci) "--only=production" && (\{ )?' + re.escape(NODE_DEDUPE), line), line
            assert line.replace(NODE_DEDUPE, "npm dedupe") in golden.splitlines(), line
    return ours.replace(NODE_DEDUPE, "npm dedupe"), True


def _check_python(cfg, golden: str, stages: list[Stage]) -> None:
    without = [Stage(s.name, s.base, s.alias, [i for i in s.instructions if i.origin != "python"])
               for s in stages]
    ours = _undo_node_dedupe(golden, LABEL.sub('blubber.version="+"', render(without)))[0]
    golden_lines = golden.splitlines(keepends=True)
    assert any(PY08.search(line) for line in golden_lines), "the golden has no 0.8 Python lines"
    assert ours == "".join(line for line in golden_lines if not PY08.search(line)), \
        "apart from the Python lines the output must match"
    for s in stages:  # a virtualenv exactly where python is enabled (version and requirements)
        emitted = any(i.origin == "python" for i in s.instructions)
        assert emitted == expand(cfg, s.variant).python.enabled(), s.name


def _stages(text: str) -> list[list[str]]:
    out: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("FROM "):
            out.append([])
        out[-1].append(line)
    return out


def _check_scratch(cfg, golden: str, ours: str) -> None:
    g, o = _stages(golden), _stages(ours)
    assert len(g) == len(o)
    scratch_seen = False
    for gs, os_ in zip(g, o, strict=True):
        if not gs[0].startswith("FROM  ") and gs[0] != "FROM ":
            assert gs == os_
            continue
        scratch_seen = True
        assert os_[0] == gs[0].replace("FROM ", "FROM scratch", 1)
        expected = [_resolve_relative(cfg, re.sub(r"^COPY --chown=\d+:\d+ ", "COPY ", line))
                    for line in gs[1:] if line.startswith(("COPY ", "ENTRYPOINT ", "LABEL "))]
        assert os_[1:] == expected
    assert scratch_seen


def _resolve_relative(cfg, line: str) -> str:
    """A 0.8 ``COPY --from=V ["./x", ...]`` as chute writes it: x in V's working directory."""
    m = re.match(r'COPY (--chown=\S+ )?--from=(\S+) \["\./([^"]+)", ', line)
    if not m:
        return line
    workdir = expand(cfg, m.group(2)).lives.in_
    return line.replace(f'"./{m.group(3)}"', f'"{workdir}/{m.group(3)}"', 1)


def _check_relative_source(cfg, golden: str, ours: str) -> None:
    g, o = golden.splitlines(), ours.splitlines()
    assert len(g) == len(o)
    diffs = [(a, b) for a, b in zip(g, o, strict=True) if a != b]
    assert len(diffs) == 1
    a, b = diffs[0]
    assert a.startswith("COPY ") and b == _resolve_relative(cfg, a) != a


def _check_builder_requirements(cfg, variant: str, golden: str, ours: str) -> None:
    reqs = expand(cfg, variant).builder.requirements
    assert reqs and not expand(cfg, variant).builder.command
    lives = expand(cfg, variant).lives
    added = [render_instruction(i).replace("COPY [", f"COPY --chown={lives.uid}:{lives.gid} [", 1)
             for i in sync_files([a.source for a in reqs], "builder.requirements")]
    g, o = golden.splitlines(), ours.splitlines()
    at = next(i for i, (a, b) in enumerate(zip(g, o, strict=False)) if a != b)
    assert o[at:at + len(added)] == added
    assert o[:at] + o[at + len(added):] == g


NO_CORPUS = pytest.param("", "", "", marks=pytest.mark.skip(
    reason=f"the Blubber corpus is not at {corpus_dir()} (set CHUTE_SHARED to the shared folder)"))


@pytest.mark.parametrize(("kind", "name", "variant"), CASES or [NO_CORPUS])
def test_golden(kind: str, name: str, variant: str) -> None:
    compare(kind, name, variant)


def test_every_golden_is_accounted_for(corpus: Path) -> None:
    counts: dict[str, int] = {}
    for case in CASES:
        category = compare(*case)
        counts[category] = counts.get(category, 0) + 1
    print("golden comparison:", counts)
    assert counts == EXPECTED_COUNTS


def test_configs_0_8_rejected_for_newer_fields_compile(corpus: Path) -> None:
    """Each .error golden is either a v3 file (still rejected) or uses later fields (now compiles)."""
    from chute.blubber import ConfigError, compile_variant

    by_file: dict[str, list[str]] = {}
    for f in sorted((corpus / "golden").glob("*.error")):
        name, variant = f.name[: -len(".error")].rsplit("__", 1)
        by_file.setdefault(name, []).append(variant)
    compiled = rejected_v3 = 0
    for name, variants in by_file.items():
        error = (corpus / "golden" / f"{name}__{variants[0]}.error").read_text()
        if 'config version "v3" is unsupported' in error:
            with pytest.raises(ConfigError) as ei:
                load_config(str(corpus / "configs" / name))
            assert ei.value.exit_code == 4 and "v3" in str(ei.value)
            rejected_v3 += 1
            continue
        cfg = load_config(str(corpus / "configs" / name))
        assert sorted(cfg.variant_names()) == sorted(variants)
        for v in variants:
            assert compile_variant(cfg, v).startswith("FROM ")
            compiled += 1
    assert compiled == 175 and rejected_v3 == 4
