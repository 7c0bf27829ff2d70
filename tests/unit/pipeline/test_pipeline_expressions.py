"""The ${…} language: lexer, scopes and ancestry, defaults, $each and $merge (spec §3)."""

from __future__ import annotations

import pytest

from chute.pipeline import (
    Context,
    ExpressionSyntaxError,
    Graph,
    Literal,
    PipelineRuntimeError,
    Variable,
    interpolate,
    is_falsy,
    merge_values,
    split_items,
    tokenize,
)

# a - b - c - d - e - f
#         x / \ y /
GRAPH = Graph.from_arcs([["a", "b", "c", "d", "e", "f"], ["x", "d", "y", "f"]])


@pytest.fixture
def ctx() -> Context:
    c = Context(GRAPH, {"project": "mediawiki/services/citoid", "tag": "", "timestamp": "2026-01-02-030405",
                        "imageLabels": {"ci.project": "p", "ci.pipeline": "test"}})
    for stage in GRAPH.nodes:
        c.bind(stage, "stage", stage)
    c.bind("a", "foo", "afoo")
    c.bind("a", "bar", "abar")
    c.bind("b", "foo", "bfoo")
    c.bind("x", "bar", "xbar")
    return c


# -- lexer ----------------------------------------------------------------------------------


def test_tokens_of_a_mixed_string():
    toks = tokenize("a ${foo|with default} string.")
    assert toks == [Literal("a ", 0), Variable("foo", "with default", "${foo|with default}", 2),
                    Literal(" string.", 21)]
    assert toks[1].namespace is None and toks[1].key == "foo"
    v = tokenize("${.imageID}")[0]
    assert (v.namespace, v.key, v.default) == ("", "imageID", None)
    v = tokenize("${setup.params.FOO|}")[0]
    assert (v.namespace, v.key, v.default) == ("setup", "params.FOO", "")


@pytest.mark.parametrize("text", ["$HOME", "$1 and $(cmd)", "cost: 5$", "{not a var}", "$ {x}"])
def test_dollar_without_brace_is_literal(text):
    assert tokenize(text) == [Literal(text, 0)]


@pytest.mark.parametrize(("text", "reason", "fragment"), [
    ("abc ${foo", "missing the end delimiter }", "${foo"),
    ("${a.b ${c.d}", "invalid character following name", "${a.b ${c.d}"),
    ("${}", "name is missing", "${}"),
    ("x ${#x} y", "name is missing", "${#x}"),
    ("${|default}", "name is missing", "${|default}"),
    ("${VAR:-x}", "invalid character following name", "${VAR:-x}"),
    ("${a.b:c}", "invalid character following name", "${a.b:c}"),
    ("${a b}", "invalid character following name", "${a b}"),
])
def test_lexer_errors(text, reason, fragment):
    with pytest.raises(ExpressionSyntaxError) as ei:
        tokenize(text)
    assert ei.value.reason == reason
    assert ei.value.fragment == fragment
    assert str(ei.value) == f"invalid variable expression ({reason}): {fragment}"
    assert text.index(fragment) == ei.value.offset


def test_default_ends_at_first_brace_and_may_hold_pipes():
    toks = tokenize("${a.b|x}}")
    assert toks == [Variable("a.b", "x", "${a.b|x}", 0), Literal("}", 8)]
    assert tokenize("${a.b|x|y}")[0].default == "x|y"


# -- resolution and scopes ------------------------------------------------------------------


def test_ancestor_values_are_visible_descendants_only(ctx):
    assert interpolate("w-t-${a.foo} ${b.foo}", ctx, "c") == "w-t-afoo bfoo"
    assert interpolate("${x.bar} ${a.bar}", ctx, "e") == "xbar abar"
    assert interpolate("${setup.project}", ctx, "a") == "mediawiki/services/citoid"


def test_parallel_branches_cannot_see_each_other(ctx):
    with pytest.raises(PipelineRuntimeError) as ei:
        interpolate("${x.bar}", ctx, "c")
    assert "cannot access 'x.*' values since 'c' does not follow it" in ei.value.message
    assert ei.value.stage == "c"
    with pytest.raises(PipelineRuntimeError):
        interpolate("${c.stage}", ctx, "x")
    # a default does not make a non-ancestor visible
    with pytest.raises(PipelineRuntimeError):
        interpolate("${x.bar|d}", ctx, "c")


def test_unknown_stage_is_named(ctx):
    with pytest.raises(PipelineRuntimeError) as ei:
        interpolate("${candidate.imageID}", ctx, "c", field="publish.image.id")
    assert "is not a stage of this pipeline" in ei.value.message
    assert ei.value.field == "publish.image.id"


def test_self_reference_by_name_fails_but_dot_works(ctx):
    ctx.bind("c", "v", "1")
    assert interpolate("${.v}", ctx, "c") == "1"
    with pytest.raises(PipelineRuntimeError) as ei:
        interpolate("${c.v}", ctx, "c")
    assert "${.v}" in ei.value.hint


def test_unbound_names_list_available_variables(ctx):
    with pytest.raises(PipelineRuntimeError) as ei:
        interpolate("${.imageID}", ctx, "c", field="run.image")
    err = ei.value
    assert err.message == "no value bound for 'c.imageID'"
    assert ".stage" in err.available and "a.foo" in err.available and "setup.project" in err.available
    assert "x.bar" not in err.available  # not an ancestor of c
    text = err.format()
    assert "stage 'c', run.image: no value bound for 'c.imageID'" in text
    assert "available variables:" in text
    with pytest.raises(PipelineRuntimeError) as ei:
        interpolate("${a.nope}", ctx, "c")
    assert ei.value.message == "no value bound for 'a.nope'"


def test_resolve_returns_raw_values(ctx):
    assert ctx.resolve("setup.imageLabels", "b") == {"ci.project": "p", "ci.pipeline": "test"}
    assert ctx.resolve(".stage", "b") == "b"
    assert ctx.resolve("stage", "b") == "b"
    with pytest.raises(PipelineRuntimeError):
        ctx.resolve("x.bar", "b")


def test_bindings_are_write_once(ctx):
    with pytest.raises(PipelineRuntimeError) as ei:
        ctx.bind("a", "foo", "again")
    assert ei.value.message == "'a' already has a value assigned to 'foo'"
    assert ctx.resolve("a.foo", "b") == "afoo"
    ctx.bind("b", "bar", "other namespaces are separate")


def test_dotless_names_read_the_stage_or_pass_through(ctx):
    assert interpolate("${stage}", ctx, "b") == "b"
    assert interpolate("branch=${ZUUL_BRANCH} ${HOME|x}", ctx, "b") == "branch=${ZUUL_BRANCH} ${HOME|x}"
    assert interpolate("${ZUUL_CHANGE}", ctx, "b", fallback={"ZUUL_CHANGE": "123"}) == "123"


def test_defaults_and_falsy_values(ctx):
    for key, value in [("zero", 0), ("empty", ""), ("no", False), ("none", None), ("list", []),
                       ("map", {}), ("fzero", 0.0)]:
        ctx.bind("a", key, value)
        assert is_falsy(value)
        assert interpolate(f"[${{a.{key}|dflt}}]", ctx, "b") == "[dflt]"
        assert interpolate(f"[${{a.{key}}}]", ctx, "b") == "[]"  # falsy without default: ''
    assert interpolate("${a.unbound|fallback}", ctx, "b") == "fallback"
    assert interpolate("${a.unbound|}", ctx, "b") == ""
    assert interpolate("${setup.tag|untagged}", ctx, "b") == "untagged"
    assert not is_falsy("0") and not is_falsy(True) and not is_falsy([0])


def test_structured_values_render_as_groovy_strings(ctx):
    ctx.bind("a", "list", ["x", 1, True])
    ctx.bind("a", "n", 7)
    assert interpolate("${setup.imageLabels}", ctx, "b") == "[ci.project:p, ci.pipeline:test]"
    assert interpolate("${a.list}", ctx, "b") == "[x, 1, true]"
    assert interpolate("${a.n}", ctx, "b") == "7"


def test_recursive_interpolation_of_maps_lists_and_keys(ctx):
    value = {"${a.foo}-key": ["${b.foo}", 3, None, {"nested": "${.stage}"}], "plain": True}
    assert interpolate(value, ctx, "c") == {"afoo-key": ["bfoo", 3, None, {"nested": "c"}], "plain": True}


def test_runtime_lexer_error_names_field(ctx):
    with pytest.raises(PipelineRuntimeError) as ei:
        interpolate({"env": {"X": "${VAR:-x}"}}, ctx, "c", field="run")
    assert ei.value.field == "run.env.X"
    assert "invalid character following name" in ei.value.message


# -- $each and $merge -----------------------------------------------------------------------


def test_each_over_tail_output(ctx):
    ctx.bind("a", "output", "1\n2\n3\n")
    expr = {"$each": "n", "$in": "${a.output}", "$yield": "sq ${.n}"}
    assert interpolate(expr, ctx, "b") == ["sq 1", "sq 2", "sq 3"]
    assert interpolate({"$each": "n", "$in": "${a.output}"}, ctx, "b") == ["1", "2", "3"]


def test_delimiter_is_a_set_of_characters_and_empty_items_drop():
    assert split_items("a||b|c,d", "||") == ["a", "b", "c,d"]
    assert split_items("a|b,c", "|,") == ["a", "b", "c"]
    assert split_items("\n\nx\n", "\n") == ["x"]
    assert split_items("", "|") == []
    assert split_items("whole", "") == ["whole"]


def test_each_with_delimiter_and_structured_yield(ctx):
    expr = {"$each": "v", "$in": "1|2||3", "$delimiter": "||",
            "$yield": {"from": "img:${.v}", "dest": "/srv/${.v}", "stage": "${a.foo}"}}
    assert interpolate(expr, ctx, "b") == [
        {"from": "img:1", "dest": "/srv/1", "stage": "afoo"},
        {"from": "img:2", "dest": "/srv/2", "stage": "afoo"},
        {"from": "img:3", "dest": "/srv/3", "stage": "afoo"},
    ]


def test_each_destructures_on_single_spaces(ctx):
    expr = {"$each": ["number1", "number2"], "$in": "1 2|2 3|3 4 5", "$delimiter": "|",
            "$yield": "${.number1} and ${.number2}"}
    assert interpolate(expr, ctx, "b") == ["1 and 2", "2 and 3", "3 and 4"]  # extra values ignored
    with pytest.raises(PipelineRuntimeError) as ei:
        interpolate({"$each": ["a", "b"], "$in": "1 2|3", "$delimiter": "|", "$yield": "${.a}"}, ctx, "b")
    assert "insufficient number of values given for [a, b]" in ei.value.message


def test_each_over_a_list_and_stage_name_inside_items(ctx):
    ctx.bind("b", "own", "mine")
    expr = {"$each": "t", "$in": ["x", "y"], "$yield": "${.t}-${b.own}-${.own}-${t}"}
    # inside an item the stage is an ancestor of the item's context (PipelineLib's child context)
    assert interpolate(expr, ctx, "b") == ["x-mine-mine-x", "y-mine-mine-y"]


def test_nested_each(ctx):
    expr = {"$each": "a", "$in": "1 2", "$delimiter": " ",
            "$yield": {"$each": "b", "$in": "x y", "$delimiter": " ", "$yield": "${.a}${.b}"}}
    assert interpolate(expr, ctx, "b") == [["1x", "1y"], ["2x", "2y"]]


def test_merge_lists_maps_and_strings(ctx):
    assert interpolate({"$merge": ["${a.foo}"], "$with": ["b"]}, ctx, "b") == ["afoo", "b"]
    assert interpolate({"$merge": {"k": "1", "j": "2"}, "$with": {"j": "${a.bar}"}}, ctx, "b") == \
        {"k": "1", "j": "abar"}
    assert interpolate({"$merge": "foo", "$with": "-${a.foo}"}, ctx, "b") == "foo-afoo"
    merged = interpolate({"$merge": ["."], "$with": {"$each": "v", "$in": "1\n2",
                                                     "$yield": {"from": "mw:${.v}"}}}, ctx, "b")
    assert merged == [".", {"from": "mw:1"}, {"from": "mw:2"}]
    with pytest.raises(PipelineRuntimeError) as ei:
        interpolate({"$merge": ["a"], "$with": {"b": 1}}, ctx, "b", field="build.excludes")
    assert ei.value.message == "cannot merge a list with a mapping"
    assert ei.value.field == "build.excludes"
    with pytest.raises(TypeError):
        merge_values("a", None)


def test_concurrent_stages_bind_and_read_safely():
    import threading

    graph = Graph.from_arcs([["root", f"s{i}"] for i in range(4)])
    c = Context(graph, {"project": "p"})
    errors: list[BaseException] = []

    def work(stage: str) -> None:
        try:
            for k in range(300):
                c.bind(stage, f"k{k}", k)
                c.available(stage)
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"s{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        c.all_values("k0")
    for t in threads:
        t.join()
    assert errors == []
    assert len(c.all_values("k299")) == 4 and c.values("s3")["k42"] == 42
