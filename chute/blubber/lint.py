"""``chute lint`` for Blubber configs: compile every variant and look for likely mistakes.

Errors are what compiling a variant would raise; warnings are things that
compile but probably do not do what was meant:

* a ``from`` that is not a variant but happens to be a valid image name (a
  typo of a variant name is silently pulled from a registry by Blubber);
* loosely typed YAML scalars that chute read as written (``FOO: 1``);
* Blubber 0.8's Python layout (``/opt/lib/python``) referenced by hand, which
  the virtualenv-based Python support no longer creates;
* Python settings that do nothing because ``requirements`` is missing.
"""

from __future__ import annotations

from chute.config import ConfigError, Problem

from .schema.artifacts import LOCAL, Artifact
from .schema.builder import BuilderConfig
from .schema.common import CommonConfig
from .schema.config import BlubberConfig

OLD_PYTHON_DIR = "/opt/lib/python"


def lint(config: BlubberConfig) -> list[Problem]:
    from .compiler import build_stages

    out: list[Problem] = list(config.warnings)
    for name in config.variants:
        try:
            build_stages(config, name, "lint")
        except ConfigError as err:
            out.extend(err.problems)
    names = set(config.variants)
    for layer in (config.root, *config.variants.values()):
        out.extend(_image_typos(config, layer, names))
        out.extend(_old_python_layout(config, layer))
        out.extend(_inert_python(config, layer))
    return _unique(out)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen = set()
    out = []
    for p in problems:
        key = (p.severity, p.source, p.line, p.column, p.path, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _froms(layer: CommonConfig) -> list[Artifact]:
    arts = list(layer.copies or ())
    for section in (layer.node, layer.php, layer.python, layer.builder):
        arts += [a for a in section.requirements or () if not a.shorthand]
    for e in layer.builders or ():
        arts += [a for a in e.config.requirements or () if not a.shorthand]
        if isinstance(e.config, BuilderConfig):
            arts += [Artifact(m.from_, path=m.path) for m in e.config.mounts or ()]
    arts += [Artifact(m.from_, path=m.path) for m in layer.builder.mounts or ()]
    return arts


def _image_typos(config: BlubberConfig, layer: CommonConfig, names: set[str]) -> list[Problem]:
    import difflib

    out = []
    for art in _froms(layer):
        f = art.from_
        if not f or f == LOCAL or f in names:
            continue
        close = difflib.get_close_matches(f, sorted(names), n=1, cutoff=0.7)
        has_registry = "/" in f or ":" in f or "@" in f
        if has_registry and not close:
            continue  # clearly an image reference
        hint = f"did you mean the variant {close[0]!r}? " if close else ""
        hint += "if an image is meant, write its full reference (registry/name:tag)"
        from_path = (*art.path, "from")
        path = from_path if not art.shorthand and from_path in config.doc.marks else art.path
        out.append(config.doc.problem(path, f"{f!r} is not a variant, so it is used as an image name and "
                                      "pulled from a registry", hint, severity="warning"))
    return out


def _old_python_layout(config: BlubberConfig, layer: CommonConfig) -> list[Problem]:
    texts: list[tuple[tuple, str]] = []
    for art in layer.copies or ():
        texts.append((art.path, art.source + " " + art.destination))
    builders = [layer.builder]
    builders += [e.config for e in layer.builders or () if isinstance(e.config, BuilderConfig)]
    for b in builders:
        texts.append((layer.paths.get("builder", ()), " ".join(b.command or ()) + " " + b.script))
    for k, v in (layer.runs.environment or {}).items():
        texts.append(((*layer.paths.get("runs", ()), "environment", k), v))
    texts.append((layer.paths.get("entrypoint", ()), " ".join(layer.entrypoint or ())))
    return [config.doc.problem(path, f"refers to {OLD_PYTHON_DIR}, Blubber 0.8's Python directory; Python "
                               "packages are now installed in a virtualenv at /opt/lib/venv",
                               "copy or use /opt/lib/venv (python.venv) instead", severity="warning")
            for path, text in texts if OLD_PYTHON_DIR in text]


def _inert_python(config: BlubberConfig, layer: CommonConfig) -> list[Problem]:
    py = layer.python
    if py.version and py.requirements is None and "python" in layer.paths and layer is not config.root:
        msg = ("python.version is set but no requirements are given here; unless a merged config adds "
               "requirements, no virtualenv is set up")
        return [config.doc.problem(layer.paths["python"], msg,
                                   "add requirements: [requirements.txt] (or [] for an empty virtualenv)",
                                   severity="warning")]
    return []
