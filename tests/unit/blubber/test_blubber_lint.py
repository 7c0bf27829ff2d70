"""``lint_config``: compile every variant, and warn about what compiles but is probably wrong."""

from __future__ import annotations

from blubber_helpers import config

from chute.blubber import lint_config


def test_clean_config_has_no_problems() -> None:
    assert lint_config(config("""
        version: v4
        base: debian:bookworm
        variants:
          build: {builder: {command: [make]}}
          prod: {copies: [build, {from: "registry.example/tools:1", source: /t, destination: /t}]}
    """)) == []


def test_mistyped_variant_in_from_is_a_warning() -> None:
    problems = lint_config(config("""
        version: v4
        base: debian:bookworm
        variants:
          build: {}
          prod:
            copies: [{from: biuld, source: /out, destination: /out}]
            builder: {command: make, mounts: [bulid]}
    """))
    assert [(p.severity, p.path, p.line) for p in problems] == [
        ("warning", "variants.prod.copies[0].from", 7),
        ("warning", "variants.prod.builder.mounts[0]", 8),
    ]
    assert "did you mean the variant 'build'?" in problems[0].hint
    assert "pulled from a registry" in problems[0].message


def test_errors_of_every_variant_are_collected() -> None:
    problems = lint_config(config("""
        version: v4
        base: debian:bookworm
        node: {requirements: [package.json]}
        variants:
          good: {}
          bad: {builders: [{custom: {command: make}}]}
          worse: {copies: [{from: local, exclude: ["a^b"]}]}
    """))
    errors = [p for p in problems if p.severity == "error"]
    assert [p.path for p in errors] == ["variants.bad.builders", "variants.worse.copies"]


def test_loose_scalars_and_old_python_layout_are_warnings() -> None:
    problems = lint_config(config("""
        version: v4
        base: python:3.11
        runs: {environment: {PYTHONUTF8: 1, PYTHONPATH: /opt/lib/python/site-packages}}
        variants:
          build: {python: {version: python3, requirements: [r.txt]}}
          prod:
            python: {version: python3}
            copies:
              - from: build
                source: /opt/lib/python/site-packages
                destination: /opt/lib/python/site-packages
    """))
    assert all(p.severity == "warning" for p in problems)
    paths = [p.path for p in problems]
    assert "runs.environment.PYTHONUTF8" in paths
    assert "runs.environment.PYTHONPATH" in paths
    assert "variants.prod.copies[0]" in paths
    assert "variants.prod.python" in paths  # a version without requirements sets nothing up
