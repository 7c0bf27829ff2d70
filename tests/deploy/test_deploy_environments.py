"""The `environments` extension: parsing, located errors, freezes and windows."""

from datetime import UTC, datetime

import pytest

from chute.config import EXIT_INVALID, ConfigError, load_yaml
from chute.deploy import active_freeze, outside_windows, parse_duration, parse_environments

BRIEF = """\
pipelines:
  publish: {stages: [{name: production}]}
environments:
  staging:
    target: podman          # or kubernetes (with context and namespace)
    port: 18181
    auto: true
    from: publish
    health: {http: /healthz, expect: 200, within: 60s, stable_for: 5s}
    rollback: auto
    values: {}
  production:
    target: podman
    port: 18182
    auto: true
    after: staging
    health: {http: /healthz}
    freeze: [{from: "2026-12-24T00:00:00Z", to: "2026-12-27T00:00:00Z"}]
"""


def parse(text: str, **kw):
    doc = load_yaml(text, ".pipeline/config.yaml")
    return parse_environments(doc.data.get("environments"), doc, **kw)


def problems(text: str, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, **kw)
    assert info.value.exit_code == EXIT_INVALID
    return [str(p) for p in info.value.problems]


def test_the_example_from_the_issue_works_as_written():
    envs = parse(BRIEF, pipelines=["publish"])
    staging, prod = envs["staging"], envs["production"]
    assert (staging.target, staging.port, staging.auto, staging.from_pipeline) == (
        "podman",
        18181,
        True,
        "publish",
    )
    assert staging.health.http == "/healthz" and staging.health.expect == (200,)
    assert staging.health.within == 60 and staging.health.stable_for == 5
    assert staging.rollback == "auto" and staging.values.replicas == 1
    assert prod.after == "staging" and prod.health.within == 60  # defaults fill what is not written
    assert prod.freeze[0].start == datetime(2026, 12, 24, tzinfo=UTC)
    assert active_freeze(prod, datetime(2026, 12, 25, 12, tzinfo=UTC)) == prod.freeze[0]
    assert active_freeze(prod, datetime(2026, 12, 27, tzinfo=UTC)) is None  # the end is exclusive
    assert active_freeze(staging, datetime(2026, 12, 25, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60s", 60),
        ("5m", 300),
        ("1h30m", 5400),
        ("250ms", 0.25),
        (45, 45),
        ("90", 90),
        (1.5, 1.5),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "1d", "-3s", "s", True, None, ""])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_every_problem_is_reported_at_once_with_its_location():
    text = """\
environments:
  staging:
    port: 70000
    helth: {http: /healthz}
    health: {within: 5 minutes, stable_for: 2x, expect: 999}
    rollback: automatic
  production:
    port: 18182
    after: stagin
    freeze:
      - {from: "2026-12-27T00:00:00Z", to: "2026-12-24T00:00:00Z"}
      - {from: tomorrow, to: "2026-01-01T00:00:00"}
"""
    out = problems(text)
    joined = "\n".join(out)
    assert ".pipeline/config.yaml:3:11: error: environments.staging.port: 70000 is out of range" in joined
    assert "4:5: error: environments.staging.helth: unknown key `helth`" in joined
    assert "did you mean `health`?" in joined
    assert "environments.staging.health.within: '5 minutes' is not a duration" in joined
    assert "environments.staging.health.stable_for" in joined
    assert "999 is not an HTTP status code" in joined
    assert "`automatic` is not one of: auto, manual" in joined
    assert "9:12: error: environments.production.after: no environment is named `stagin`" in joined
    assert "did you mean `staging`?" in joined
    assert "the window ends" in joined and "environments.production.freeze[0].to" in joined
    assert "'tomorrow' is not an ISO 8601 time" in joined
    assert "has no time zone: add Z" in joined
    # sorted by position, one entry per problem
    assert len(out) == 10, joined


def test_cycles_in_after_are_named():
    text = """\
environments:
  a: {port: 18301, after: c}
  b: {port: 18302, after: a}
  c: {port: 18303, after: b}
  d: {port: 18304, after: d}
"""
    joined = "\n".join(problems(text))
    assert "`after` makes a cycle: a -> c -> b -> a" in joined
    assert "environments.d.after: an environment cannot come after itself" in joined


def test_cross_field_rules():
    text = """\
environments:
  one: {port: 18301, auto: true}
  two: {port: 18301, from: publsh, after: one}
  three: {target: podman}
  four: {target: kubernetes, namespace: Bad_NS, values: {replicas: 3, resources: {limits: {memory: lots}}}}
  five: {port: 18305, context: prod, values: {replicas: 2, env: {1BAD: x, GOOD: on}}}
"""
    joined = "\n".join(problems(text, pipelines=["publish", "test"]))
    assert "environments.one.auto: auto: true needs `from`" in joined
    assert "environments.two.port: port 18301 is already used by environment `one`" in joined
    assert "no pipeline is named `publsh`" in joined and "did you mean `publish`?" in joined
    assert "give either `from`" in joined
    assert "environments.three: the podman target needs `port`" in joined
    assert "`Bad_NS` is not a valid Kubernetes namespace" in joined
    assert "'lots' is not a Kubernetes quantity" in joined
    assert "`1BAD` is not a valid environment variable name" in joined
    # `context` alone selects the kubernetes target, so `port` and replicas 2 are fine there
    assert "environments.five" not in joined.replace("environments.five.values.env.1BAD", "")


def test_values_keep_env_text_as_written_and_context_means_kubernetes():
    envs = parse("""\
environments:
  prod:
    context: prod-cluster
    values:
      port: 9000
      replicas: 3
      env: {FLAG: on, VERSION: 1.10}
      resources: {limits: {memory: 64Mi, cpu: 250m}}
""")
    prod = envs["prod"]
    assert prod.target == "kubernetes" and prod.context == "prod-cluster"
    assert dict(prod.values.env) == {"FLAG": "on", "VERSION": "1.10"}
    assert prod.values.port == 9000 and prod.values.replicas == 3
    assert dict(prod.values.resources.limits) == {"memory": "64Mi", "cpu": "250m"}


def test_prometheus_health_settings():
    envs = parse("""\
environments:
  s:
    port: 18301
    health:
      http: false
      prometheus: {url: "http://127.0.0.1:19090", query: "sum(rate(errors[1m]))", max: 0.5}
""")
    h = envs["s"].health
    assert h.http is None and h.prometheus.max == 0.5 and h.prometheus.min is None
    joined = "\n".join(
        problems("""\
environments:
  s:
    port: 18301
    health: {prometheus: {url: "ftp://x", min: 5, max: 1, qurey: up}}
""")
    )
    assert "unknown key `qurey`" in joined and "did you mean `query`?" in joined
    assert "must be an http:// or https:// URL" in joined
    assert "`query` is required" in joined
    assert "min (5) is greater than max (1)" in joined


def test_deploy_windows():
    envs = parse("""\
environments:
  prod:
    port: 18301
    windows: [{days: [mon, tue, wed, thu], from: "09:00", to: "16:00"}]
""")
    prod = envs["prod"]
    assert not outside_windows(prod, datetime(2026, 11, 26, 10, 0, tzinfo=UTC))  # a Thursday
    assert outside_windows(prod, datetime(2026, 11, 26, 16, 0, tzinfo=UTC))
    assert outside_windows(prod, datetime(2026, 11, 27, 10, 0, tzinfo=UTC))  # Friday
    joined = "\n".join(
        problems("""\
environments:
  prod:
    port: 18301
    windows: [{days: [mon, funday], from: "17:00", to: "09:00", timezone: Mars/Olympus}]
""")
    )
    assert "'funday' is not a day" in joined and "unknown time zone 'Mars/Olympus'" in joined


def test_not_a_mapping():
    assert "environments must be a mapping" in problems("environments: [a, b]\n")[0]


def test_load_environments_from_a_config_file(tmp_path):
    from chute.deploy import load_environments

    path = tmp_path / "config.yaml"
    path.write_text(BRIEF.replace("from: publish", "from: pubish"))
    with pytest.raises(ConfigError) as info:
        load_environments(str(path), ".pipeline/config.yaml")
    assert str(info.value.problems[0]).startswith(
        ".pipeline/config.yaml:8:11: error: environments.staging.from:"
    )
    assert "did you mean `publish`?" in str(info.value)
    path.write_text(BRIEF)
    assert set(load_environments(str(path))) == {"staging", "production"}
