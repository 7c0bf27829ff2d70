"""Execution arcs to a DAG: order, frames, ancestry, cycles, unknown and unreachable stages."""

from __future__ import annotations

import pytest
from pipeline_helpers import errors_of, load_text

from chute.pipeline import CycleError, Graph


def test_arcs_make_edges_and_merge_repeats():
    g = Graph.from_arcs([["a", "b", "d"], ["a", "c", "d"], ["a", "b"]])
    assert g.nodes == ("a", "b", "d", "c")
    assert g.edges == (("a", "b"), ("b", "d"), ("a", "c"), ("c", "d"))
    assert g.predecessors("d") == ["b", "c"] and g.successors("a") == ["b", "c"]
    assert g.roots() == ["a"] and g.leaves() == ["d"]
    assert g.ancestors("d") == {"a", "b", "c"} and g.ancestors("a") == frozenset()
    assert g.descendants("a") == {"b", "c", "d"}


@pytest.mark.parametrize(("arcs", "frames"), [
    ([["a", "b", "d"], ["a", "c", "d"]], [["a"], ["b", "c"], ["d"]]),
    ([["a", "b"], ["c"]], [["a", "c"], ["b"]]),
    ([["unit", "candidate"], ["lint", "candidate"]], [["unit", "lint"], ["candidate"]]),
    ([["x"]], [["x"]]),
    ([], []),
])
def test_frames_match_pipelinelib(arcs, frames):
    g = Graph.from_arcs(arcs)
    assert g.frames() == frames
    order = g.topological_order()
    assert order == [n for f in frames for n in f]
    for a, b in g.edges:
        assert order.index(a) < order.index(b)


def test_isolated_nodes_are_roots_and_leaves():
    g = Graph.from_arcs([["a", "b"], ["c"]])
    assert g.roots() == ["a", "c"] and g.leaves() == ["b", "c"]


def test_cycles_are_named():
    g = Graph.from_arcs([["a", "b", "c"], ["c", "a"]])
    assert g.find_cycle() == ["a", "b", "c", "a"]
    with pytest.raises(CycleError) as ei:
        g.topological_order()
    assert ei.value.cycle == ["a", "b", "c", "a"]
    assert str(ei.value) == "cycle detected in the execution graph: a -> b -> c -> a"
    assert Graph.from_arcs([["a", "b"]]).find_cycle() is None
    assert g.ancestors("a") == {"a", "b", "c"}  # terminates on a cycle


def test_subgraph_and_dot():
    g = Graph.from_arcs([["a", "b", "d"], ["a", "c", "d"], ["e"]])
    sub = g.subgraph({"d", *g.ancestors("d")})
    assert sub.nodes == ("a", "b", "d", "c") and ("a", "b") in sub.edges and "e" not in sub
    assert g.to_dot() == "digraph { a -> b; b -> d; a -> c; c -> d; e }"
    assert Graph.from_arcs([["a", "b"]]) == Graph.from_arcs([["a"], ["a", "b"]])


def test_pipeline_graph_from_config():
    cfg = load_text("""
        pipelines:
          test:
            stages:
              - name: build-js
                build: build-js
                run: false
              - name: build-php
                build: build-php
                run: false
              - name: test-js
              - name: test-php
            execution:
              - [build-js, test-js]
              - [build-php, test-php]
    """)
    g = cfg.pipelines["test"].graph
    assert g.frames() == [["build-js", "build-php"], ["test-js", "test-php"]]
    assert g.ancestors("test-js") == {"build-js"}


def test_default_execution_is_the_stage_order():
    g = load_text("pipelines:\n  p:\n    stages: [{name: c}, {name: a}, {name: b}]\n").pipelines["p"].graph
    assert g.edges == (("c", "a"), ("a", "b"))


def test_cycle_in_config_is_an_error_naming_it():
    (e,) = errors_of("""
        pipelines:
          p:
            stages: [{name: a}, {name: b}]
            execution: [[a, b], [b, a]]
    """)
    assert e.message == "cycle detected in the execution graph: a -> b -> a"
    assert (e.line, e.path) == (5, "pipelines.p.execution")


def test_unknown_execution_names_and_unreachable_stages_are_errors():
    errs = errors_of("""
        pipelines:
          p:
            stages:
              - name: build
              - name: test
              - name: forgotten
            execution:
              - [build, tets]
              - [build, test, build]
    """)
    by_line = {(e.line, e.column): e for e in errs}
    unknown = by_line[(9, 17)]
    assert unknown.message == "`execution` names `tets`, but pipeline `p` has no such stage"
    assert "did you mean `test`?" in unknown.hint
    assert unknown.path == "pipelines.p.execution[0][1]"
    assert "appears twice in this arc" in by_line[(10, 23)].message
    unreachable = by_line[(7, 15)]
    assert unreachable.message == "stage `forgotten` is in no `execution` arc, so it would never run"
    assert "- [forgotten]" in unreachable.hint
    assert len(errs) == 3


def test_duplicate_names_are_one_error_not_a_cycle():
    errs = errors_of("pipelines:\n  p:\n    stages: [{name: a}, {name: a, build: x}]\n")
    assert [e.message for e in errs] == ["stage `a` is defined twice in pipeline `p` (first at line 3)"]
