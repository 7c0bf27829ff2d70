"""Blubber (config ``version: v4``) to Dockerfile.

Public API (everything else in this package is internal)::

    cfg = load_config(".pipeline/blubber.yaml")       # or parse_config(text, source)
    cfg = decode_document(Document(data, source, {}))  # data parsed elsewhere, e.g. JSON
    text = compile_variant(cfg, "test")              # the Dockerfile
    policy = load_policy("policy.yaml")              # path or http(s) URL
    compile_variant(cfg, "production", policy)       # exit 6 on a violation
    problems = lint_config(cfg)                      # every variant, warnings included

All failures are :class:`chute.config.ConfigError` with Blubber's exit codes
(2 read/parse, 3 unknown variant or loop, 4 invalid, 5 policy load, 6 policy
violation) and every problem located at ``file:line:column`` with its field
path. This package imports nothing heavy, so ``chute blubber`` starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chute import __version__
from chute.config import ConfigError, Document, Problem, load_file, load_yaml

from .schema.config import BlubberConfig, decode_config

if TYPE_CHECKING:
    from .policy import Policy

__all__ = [
    "BlubberConfig",
    "ConfigError",
    "Policy",
    "Problem",
    "compile_stages",
    "compile_variant",
    "decode_document",
    "lint_config",
    "load_config",
    "load_policy",
    "parse_config",
]


def __getattr__(name: str) -> Any:
    if name == "Policy":  # imported on demand: most runs have no policy
        from .policy import Policy

        return Policy
    raise AttributeError(name)


def load_policy(uri: str) -> Policy:
    """Read a policy from a file path or an http(s) URL (ConfigError exit 5 if it cannot be used)."""
    from .policy import load_policy as load

    return load(uri)


def load_config(path: str) -> BlubberConfig:
    """Read and validate a Blubber config file (YAML or JSON)."""
    return decode_config(load_file(path))


def parse_config(text: str | bytes, source: str = "<input>") -> BlubberConfig:
    """Validate a Blubber config given as text, e.g. a Blubberoid request body (YAML or JSON)."""
    return decode_config(load_yaml(text, source))


def decode_document(doc: Document) -> BlubberConfig:
    """Validate a config that is already loaded, e.g. JSON parsed by the caller (``Document(data, source, {})``).

    Without marks, problems have no line/column and YAML's loose scalars
    (``PORT: 8080`` read as written) are errors.
    """
    return decode_config(doc)


def compile_stages(config: BlubberConfig, variant: str, *, version_label: str = __version__) -> list:
    """The stages of ``variant`` as instruction data (see :mod:`chute.blubber.instructions`)."""
    from .compiler import build_stages

    return build_stages(config, variant, version_label)


def compile_variant(config: BlubberConfig, variant: str, policy: Policy | None = None, *,
                    version_label: str = __version__) -> str:
    """The Dockerfile for ``variant``; checks ``policy`` first when one is given."""
    from .compiler import build_stages
    from .dockerfile import render
    from .resolve import stage_order

    ordered = stage_order(config, variant)  # expanded once, for the stages and the policy
    stages = build_stages(config, variant, version_label, ordered)
    if policy is not None:
        policy.check(config, variant, expanded=ordered[1])
    return render(stages)


def lint_config(config: BlubberConfig) -> list[Problem]:
    """Every problem and warning of every variant, without raising."""
    from .lint import lint

    return lint(config)
