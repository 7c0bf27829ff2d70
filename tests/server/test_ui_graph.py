"""Layered layout of the stage graph (the SVG on the run page)."""

from __future__ import annotations

from chute.server.ui.graph import NODE_H, NODE_W, layout, read_graph


def columns(lay) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {n.name: n.column for n in lay.nodes}


def test_stages_sit_right_of_what_they_wait_for() -> None:
    # A diamond with a tail: build -> (unit, lint) -> publish -> deploy
    names, edges = read_graph({"stages": ["build", "unit", "lint", "publish", "deploy"],
                               "edges": [["build", "unit"], ["build", "lint"], ["unit", "publish"],
                                         ["lint", "publish"], ["publish", "deploy"]]})
    lay = layout(names, edges)
    assert columns(lay) == {"build": 0, "unit": 1, "lint": 1, "publish": 2, "deploy": 3}
    by = {n.name: n for n in lay.nodes}
    assert by["unit"].y != by["lint"].y and by["unit"].x == by["lint"].x
    for e in lay.edges:  # every edge runs from the right side of its source to the left of its target
        assert e.path.startswith(f"M{by[e.src].x + NODE_W} {by[e.src].y + NODE_H // 2} ")
        assert e.path.endswith(f" {by[e.dst].x} {by[e.dst].y + NODE_H // 2}")
    assert lay.width >= 4 * NODE_W and lay.height >= 2 * NODE_H


def test_longest_path_decides_the_column() -> None:
    names, edges = read_graph({"stages": ["a", "b", "c"], "edges": [["a", "b"], ["b", "c"], ["a", "c"]]})
    assert columns(layout(names, edges)) == {"a": 0, "b": 1, "c": 2}


def test_rows_follow_their_predecessors() -> None:
    # x2 depends on the second stage of column 0, so it is drawn on the second row.
    names, edges = read_graph({"stages": ["p1", "p2", "x2", "x1"], "edges": [["p2", "x2"], ["p1", "x1"]]})
    rows = {n.name: n.row for n in layout(names, edges).nodes}
    assert rows["x1"] == 0 and rows["x2"] == 1


def test_a_cycle_from_a_broken_agent_does_not_hang_and_every_stage_is_drawn() -> None:
    names, edges = read_graph({"stages": ["a", "b", "c"], "edges": [["a", "b"], ["b", "c"], ["c", "b"]]})
    lay = layout(names, edges)
    assert sorted(columns(lay)) == ["a", "b", "c"]
    assert len({(n.x, n.y) for n in lay.nodes}) == 3  # no two boxes on top of each other


def test_read_graph_is_defensive_about_its_input() -> None:
    names, edges = read_graph({"stages": ["a", "a", 7], "edges": [["a", "b"], ["a"], ["x", "x"], "junk", ["a", "b"]]},
                              extra=["late"])
    assert names == ["a", "7", "b", "late"]
    assert edges == [("a", "b")]
    assert layout([], []).nodes == []


def test_long_names_are_shortened_in_the_box_only() -> None:
    name = "integration-tests-against-postgresql-15"
    node = layout([name], []).nodes[0]
    assert node.name == name and node.label.endswith("…") and len(node.label) <= 22
