"""The shared report formatter and the RunReport model."""

from __future__ import annotations

import pytest

from chute.reporters import PipelineResult, RunReport, render_markdown, render_text, status_description
from chute.reporters.format import duration_text, headline, image_tags
from chute.server.webhooks import is_recheck

SHA = "4b9c1d0e3a6f7b8c9d0e1f2a3b4c5d6e7f809a1b"
DIGEST = "sha256:" + "ab" * 32
IMAGES = (
    f"docker-registry.example.org/wikimedia/citoid:2026-11-20-100000-production@{DIGEST}",
    f"docker-registry.example.org/wikimedia/citoid:latest@{DIGEST}",
    f"localhost:5000/citoid-test:2026-11-20-100000-test@{'sha256:' + 'cd' * 32}",
)


def make(*pipelines: PipelineResult, **kw) -> RunReport:
    kw.setdefault("project", "mediawiki/services/citoid")
    kw.setdefault("sha", SHA)
    return RunReport(pipelines=pipelines, **kw)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (0, "0s"), (12.4, "12s"), (64.2, "1m 04s"), (3599.6, "1h 00m"), (3725, "1h 02m")],
)
def test_duration_text(seconds, text: str) -> None:
    assert duration_text(seconds) == text


def test_headline_and_overall_status() -> None:
    ok = PipelineResult("test", "success", 10)
    bad = PipelineResult("publish", "failure", 5)
    err = PipelineResult("lint", "error")
    run = PipelineResult("deploy", "running")
    assert headline(make(ok)) == "chute: pipeline passed"
    assert headline(make(ok, ok)) == "chute: all 2 pipelines passed"
    assert headline(make(ok, bad)) == "chute: 1 of 2 pipelines failed"
    assert make(ok, err, bad).status == "failure"
    assert headline(make(ok, err, bad)) == "chute: 2 of 3 pipelines did not pass (1 failed, 1 errored)"
    assert headline(make(PipelineResult("x", "cancelled"))) == "chute: 1 of 1 pipeline cancelled"
    assert make(ok, err).status == "error"
    assert make(ok, PipelineResult("x", "cancelled")).status == "cancelled"
    report = make(ok, run)
    assert (report.status, report.finished) == ("running", False)
    assert headline(report) == "chute: running, 1 of 2 pipelines finished"


def test_gerrit_text_has_pipelinelib_lines_images_and_links() -> None:
    report = make(
        PipelineResult("test", "success", 64.2, "https://chute.example.org/runs/42#test"),
        PipelineResult("publish", "failure", 12),
        PipelineResult("lint", "cancelled"),
        run_id="42",
        images=IMAGES,
        run_url="https://chute.example.org/runs/42",
        rerun_url="https://chute.example.org/runs/42/rerun",
    )
    text = render_text(report)
    lines = text.splitlines()
    assert lines[0] == "chute: 2 of 3 pipelines did not pass (1 failed, 1 cancelled) (run 42)"
    for expected in (
        "pipeline-dashboard: test",
        "pipeline-build-result: SUCCESS (job: test, build: 42)",
        "pipeline-build-result: FAILURE (job: publish, build: 42)",
        "pipeline-build-result: ABORTED (job: lint, build: 42)",
        "test passed in 1m 04s: https://chute.example.org/runs/42#test",
        "publish failed in 12s",
        "lint was cancelled",
        "IMAGE:",
        "TAGS:",
        " 2026-11-20-100000-production, latest, 2026-11-20-100000-test",
        "Run: https://chute.example.org/runs/42",
    ):
        assert expected in lines, expected
    for ref in IMAGES:
        assert f" {ref}" in lines
    assert "Rerun: https://chute.example.org/runs/42/rerun" in text
    assert "'recheck'" in text


def test_without_images_or_links_the_blocks_are_left_out() -> None:
    text = render_text(make(PipelineResult("test", "success")))
    assert "IMAGE:" not in text and "TAGS:" not in text and "Run:" not in text
    assert "pipeline-build-result: SUCCESS (job: test, build: -)" in text
    assert "To run the tests again" in text


def test_markdown_table_images_and_escaping() -> None:
    report = make(
        PipelineResult("test|odd*name", "success", 3, "https://chute.example.org/runs/7#x(1)"),
        PipelineResult("publish", "error"),
        images=IMAGES,
        run_id="7",
        run_url="https://chute.example.org/runs/7",
    )
    md = render_markdown(report)
    assert md.startswith("<!-- chute:run-report -->\n**⚠️ chute: 1 of 2 pipelines errored** · [run 7](")
    assert "| [test\\|odd\\*name](https://chute.example.org/runs/7#x%281%29) | ✅ passed | 3s |" in md
    assert "| publish | ⚠️ errored | – |" in md
    for ref in IMAGES:
        assert f"\n{ref}\n" in md
    # a table row per pipeline: the escaped | does not add a column
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert all(line.count(" | ") == 2 for line in rows[1:])


def test_reports_never_ask_for_a_recheck_themselves() -> None:
    for status in ("success", "failure", "error", "cancelled", "running"):
        for rerun in (None, "https://chute.example.org/runs/1/rerun"):
            report = make(PipelineResult("recheck", status), images=IMAGES, rerun_url=rerun)
            assert not is_recheck(render_text(report))
            assert not is_recheck("Patch Set 1:\n\n" + render_text(report))
            assert not is_recheck(render_markdown(report))


def test_status_description_fits_githubs_limit() -> None:
    long = PipelineResult("p" * 200, "failure", 5)
    text = status_description(long)
    assert len(text) == 140 and text.endswith("…")
    assert status_description(PipelineResult("test", "running", 30)) == "test is running"


def test_image_tags() -> None:
    assert image_tags(IMAGES) == ["2026-11-20-100000-production", "latest", "2026-11-20-100000-test"]
    assert image_tags(("localhost:5000/citoid@" + DIGEST,)) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sha": "HEAD"}, "sha must be"),
        ({"pipelines": ()}, "at least one pipeline"),
        ({"images": ("a b",)}, "image reference"),
        ({"change_number": 0}, "change_number must be a positive integer"),
        ({"patchset": True}, "patchset must be a positive integer"),
        ({"run_url": "javascript:alert(1)"}, "run_url must be an http(s) URL"),
        ({"project": "a\nb"}, "project must be one"),
    ],
)
def test_run_report_validation(kwargs, message: str) -> None:
    base = {"project": "p", "sha": SHA, "pipelines": (PipelineResult("t", "success"),)}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunReport(**(base | kwargs))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "a\nb"}, "one non-empty line"),
        ({"status": "passed"}, "status must be one of"),
        ({"duration": -1}, "duration must be >= 0"),
        ({"duration": float("nan")}, "duration must be >= 0"),
    ],
)
def test_pipeline_result_validation(kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PipelineResult(**({"name": "t", "status": "success"} | kwargs))
