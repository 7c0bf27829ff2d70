"""The YAML loader keeps positions and raw scalar text, and fails cleanly."""

import pytest

from chute.config import EXIT_READ, ConfigError, load_yaml


def test_positions_and_raw_text_of_scalars():
    doc = load_yaml("a: 1\nb:\n  c: on\n  d: 'q'\n", "f.yaml")
    assert doc.data == {"a": 1, "b": {"c": True, "d": "q"}}
    c = doc.marks[("b", "c")]
    assert (c.line, c.column, c.key_line, c.key_column) == (3, 6, 3, 3)
    assert c.raw == "on" and c.tag == "bool"
    assert doc.marks[("b", "d")].raw is None  # quoted: no raw plain text
    p = doc.problem(("b", "c"), "bad", "fix it", at_key=True)
    assert str(p) == "f.yaml:3:3: error: b.c: bad\n    hint: fix it"


def test_nearest_ancestor_mark_for_missing_paths():
    doc = load_yaml("x:\n  y: []\n", "f.yaml")
    assert doc.mark(("x", "y", 3, "z")) == doc.marks[("x", "y")]


def test_merge_keys_and_last_duplicate_wins():
    doc = load_yaml("base: &b {k: 1, j: 2}\nv:\n  <<: *b\n  j: 3\nd: 1\nd: 2\n")
    assert doc.data["v"] == {"k": 1, "j": 3}
    assert doc.data["d"] == 2


def test_syntax_error_has_position_and_hint():
    with pytest.raises(ConfigError) as ei:
        load_yaml("a:\n\tb: 1\n", "t.yaml")
    err = ei.value
    assert err.exit_code == EXIT_READ
    p = err.problems[0]
    assert (p.source, p.line, p.column) == ("t.yaml", 2, 1)
    assert "tabs" in p.hint


def test_alias_bomb_is_an_error_not_a_hang():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    with pytest.raises(ConfigError) as ei:
        load_yaml("\n".join(lines))
    assert "too many values" in ei.value.problems[0].message


def test_non_utf8_and_control_characters():
    with pytest.raises(ConfigError):
        load_yaml(b"a: \xff\xfe")
    with pytest.raises(ConfigError):
        load_yaml("a: \x00")


def test_empty_document_is_none():
    assert load_yaml("", "e.yaml").data is None
