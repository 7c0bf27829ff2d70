"""Variant expansion: includes, merge order, checks on the merged result, stage order.

Includes are resolved depth first and de-duplicated, leaves first (current
Blubber): ``xyz: {includes: [bbb, ccc]}`` with both including ``ddd`` merges
root, ddd, bbb, ccc, xyz — ``ddd`` once, where 0.8 merged it twice. A loop is
an error (exit 3) naming the cycle.

Stages: the variants a variant copies from, takes requirements from or
mounts — followed transitively (0.8 followed only direct copies) — are
compiled first, leaves first, each expanded on its own. A cycle is an error
(exit 3).
"""

from __future__ import annotations

from chute.config import EXIT_EXPAND, EXIT_INVALID, ConfigError, Problem

from .schema.builders import builders_dependencies
from .schema.common import CommonConfig
from .schema.config import BlubberConfig
from .schema.copies import dependencies as copies_dependencies
from .schema.requirements import dependencies as requirement_dependencies


def unknown_variant(config: BlubberConfig, name: str) -> ConfigError:
    names = config.variant_names()
    hint = "defined variants: " + (", ".join(names) if names else "(none: add a variants: mapping)")
    if names:
        import difflib

        close = difflib.get_close_matches(name, names, n=1)
        if close:
            hint = f"did you mean {close[0]!r}? " + hint
    return ConfigError([Problem(f"variant {name!r} does not exist", "variants", config.source, hint=hint)],
                       EXIT_EXPAND)


def include_order(config: BlubberConfig, name: str) -> list[str]:
    """The variants merged for ``name``, in merge order (``name`` last)."""
    if name not in config.variants:
        raise unknown_variant(config, name)
    order: list[str] = []
    done: set[str] = set()
    # Iterative depth-first post-order, so deep include chains cannot overflow the stack.
    stack: list[tuple[str, int]] = [(name, 0)]
    on_path: list[str] = [name]
    while stack:
        current, i = stack[-1]
        includes = config.variants[current].includes or []
        if i < len(includes):
            stack[-1] = (current, i + 1)
            nxt = includes[i]
            if nxt in done:
                continue
            if nxt in on_path:
                cycle = [*on_path[on_path.index(nxt):], nxt]
                raise _loop(config, current, i, "includes", cycle)
            if nxt not in config.variants:  # validation normally catches this
                raise unknown_variant(config, nxt)
            stack.append((nxt, 0))
            on_path.append(nxt)
        else:
            stack.pop()
            on_path.pop()
            done.add(current)
            order.append(current)
    return order


def _loop(config: BlubberConfig, variant: str, index: int, field: str, cycle: list[str]) -> ConfigError:
    layer = config.variants[variant]
    path = layer.paths.get(field) or layer.paths.get("", ())
    problem = config.doc.problem((*path, index) if field in layer.paths else path,
                                 f"{field} loop: " + " -> ".join(cycle),
                                 f"a variant cannot {'include' if field == 'includes' else 'depend on'} "
                                 "itself, "
                                 "directly or through others; break the cycle")
    return ConfigError([problem], EXIT_EXPAND)


def expand(config: BlubberConfig, name: str) -> CommonConfig:
    """The effective config of variant ``name``: root, its includes, then itself."""
    merged = config.root
    for n in include_order(config, name):
        merged = merged.merged(config.variants[n])
    _check_merged(config, name, merged)
    return merged


def _check_merged(config: BlubberConfig, name: str, cfg: CommonConfig) -> None:
    """[HEAD] rules that only show after merging."""
    if cfg.builders:
        others = [f for f, section in (("node", cfg.node), ("php", cfg.php), ("python", cfg.python),
                                       ("builder", cfg.builder)) if section.is_set()]
        if others:
            path = cfg.paths.get("builders", ())
            raise ConfigError([config.doc.problem(
                path, f"builders is not allowed in variant {name!r} because it also has "
                      f"{' and '.join(others)} (declared or included)",
                f"move the {' and '.join(others)} settings into the builders list, e.g. "
                f"builders: [{{{others[0]}: ...}}]")], EXIT_INVALID)


def dependencies(config: BlubberConfig, cfg: CommonConfig) -> list[str]:
    """Variants this (expanded) variant needs as stages: copies, requirements, mounts."""
    deps = copies_dependencies(cfg.copies)
    for section in (cfg.node, cfg.php, cfg.python):
        deps += requirement_dependencies(section.requirements)
    deps += cfg.builder.dependencies()
    deps += builders_dependencies(cfg.builders)
    out: list[str] = []
    for d in deps:
        if d in config.variants and d not in out:  # image references are not stages
            out.append(d)
    return out


def stage_order(config: BlubberConfig, name: str) -> tuple[list[str], dict[str, CommonConfig]]:
    """Variants to compile as stages, dependencies first and ``name`` last, with their configs."""
    expanded: dict[str, CommonConfig] = {}
    order: list[str] = []
    done: set[str] = set()
    expanded[name] = expand(config, name)
    stack: list[tuple[str, list[str], int]] = [(name, dependencies(config, expanded[name]), 0)]
    on_path = [name]
    while stack:
        current, deps, i = stack[-1]
        if i < len(deps):
            stack[-1] = (current, deps, i + 1)
            nxt = deps[i]
            if nxt in done:
                continue
            if nxt in on_path:
                cycle = [*on_path[on_path.index(nxt):], nxt]
                layer = config.variants[current]
                field = "copies" if "copies" in layer.paths else ""
                raise ConfigError([config.doc.problem(
                    layer.paths.get(field) or layer.paths.get("", ()),
                    "dependency loop between variants: " + " -> ".join(cycle),
                    "variants copy from (or mount, or take requirements from) each other in a circle; "
                    "a variant can only use files of variants built before it")], EXIT_EXPAND)
            if nxt not in expanded:
                expanded[nxt] = expand(config, nxt)
            stack.append((nxt, dependencies(config, expanded[nxt]), 0))
            on_path.append(nxt)
        else:
            stack.pop()
            on_path.pop()
            done.add(current)
            order.append(current)
    return order, expanded


__all__ = ["dependencies", "expand", "include_order", "stage_order", "unknown_variant"]
