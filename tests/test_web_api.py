"""The web view's server side without a browser: figures, plot and CSV endpoints, tags,
comparisons, the page and its static files, `lth report` and `lth run`'s plots."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from test_service_support import EngineRun, assert_error, finish_like_worker, submit, tiny_spec

from lth_core.report import figures
from lth_core.spec import parse_spec
from store.settings import Settings

pytest_plugins = ("test_service_support",)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def finished(client: TestClient, settings: Settings, engine_run: EngineRun) -> str:
    experiment_id = submit(client, tiny_spec(tags=["web", "seeds"]))["id"]
    finish_like_worker(settings, experiment_id, engine_run)
    return experiment_id


def _points(spec: dict) -> list[dict]:
    return spec["data"]["values"]


def test_each_figure_in_each_format(client: TestClient, finished: str, engine_run) -> None:
    levels = {s["level"]: s for s in engine_run.summaries}
    for name in figures.FIGURES:
        described = client.get(f"/experiments/{finished}/plots/{name}.json")
        assert described.status_code == 200, described.text
        rows = _points(described.json())
        assert {r["kind"] for r in rows} == {"ticket", "random_reinit"}
        if name == "early_stop_accuracy":
            # The ticket's points are the levels' numbers, x in percent of weights remaining.
            ticket = sorted((r for r in rows if r["kind"] == "ticket"), key=lambda r: r["level"])
            assert [r["value"] for r in ticket] == [
                levels[lv]["early_stop_test_accuracy"] for lv in sorted(levels)
            ]
            assert ticket[1]["remaining"] == pytest.approx(100 * levels[1]["weights_remaining"])
            x = described.json()["layer"][-1]["encoding"]["x"]
            assert x["scale"]["type"] == "log"
        png = client.get(f"/experiments/{finished}/plots/{name}.png")
        assert png.headers["content-type"] == "image/png" and png.content.startswith(PNG)
        svg = client.get(f"/experiments/{finished}/plots/{name}.svg")
        assert svg.headers["content-type"].startswith("image/svg+xml")
        assert svg.text.lstrip().startswith("<svg") and "<path" in svg.text
    curves = client.get(f"/experiments/{finished}/plots/accuracy_curves.json?levels=1").json()
    assert {r["level"] for r in _points(curves)} == {1}
    assert_error(client.get(f"/experiments/{finished}/plots/loss.png"), 422)
    assert_error(client.get(f"/experiments/{finished}/plots/early_stop_accuracy.gif"), 422)
    assert_error(client.get(f"/experiments/{'0' * 32}/plots/early_stop_accuracy.png"), 404)


def test_levels_csv_one_row_per_level_and_kind(
    client: TestClient, finished: str, engine_run
) -> None:
    response = client.get(f"/experiments/{finished}/levels.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["level"], r["kind"]) for r in rows] == [
        ("0", "ticket"),
        ("1", "ticket"),
        ("1", "random_reinit"),
    ]
    body = client.get(f"/experiments/{finished}").json()
    ticket = body["ticket"]["level"]
    assert [r["ticket"] for r in rows if r["kind"] == "ticket"] == [
        str(lv == ticket).lower() for lv in (0, 1)
    ]
    reinit = engine_run.summaries[1]["controls"]["random_reinit"]
    assert float(rows[2]["early_stop_test_accuracy"]) == reinit["early_stop_test_accuracy"]
    assert int(rows[2]["early_stop_iteration"]) == reinit["early_stop_iteration"]


def test_tags_filter_and_validation(client: TestClient) -> None:
    a = submit(client, tiny_spec(tags=["lr", "part2"]))["id"]
    b = submit(client, tiny_spec(tags=["lr"], seed=1))["id"]
    submit(client, tiny_spec(name="lr"))  # a name is not a tag
    assert {e["id"] for e in client.get("/experiments?tag=lr").json()["items"]} == {a, b}
    page = client.get("/experiments?tag=part2").json()
    assert [e["id"] for e in page["items"]] == [a] and page["total"] == 1
    assert client.get("/experiments?tag=none").json()["total"] == 0
    assert client.get(f"/experiments/{a}").json()["spec"]["tags"] == ["lr", "part2"]
    assert_error(client.get("/experiments?tag=%3Cscript%3E"), 422)
    error = assert_error(client.post("/experiments", json=tiny_spec(tags=["<b>"])), 422)
    assert error["details"][0]["loc"][:2] == ["body", "tags"]
    # No tags: no key in the stored spec, so run folders written before tags still resume.
    assert "tags" not in parse_spec(tiny_spec()).model_dump(mode="json")
    with pytest.raises(ValidationError):
        parse_spec(tiny_spec(tags=[f"t{i}" for i in range(21)]))


def test_compare_groups_seeds_and_names_the_difference(
    client: TestClient, settings: Settings, engine_run
) -> None:
    ids = []
    for changes in ({"seed": 0}, {"seed": 1}, {"training": {"learning_rate": 0.01}}):
        spec = tiny_spec(tags=["cmp"])
        training = {**spec["training"], **changes.pop("training", {})}
        ids.append(submit(client, {**spec, **changes, "training": training})["id"])
        finish_like_worker(settings, ids[-1], engine_run)
    body = client.get(f"/compare?ids={','.join(ids)}").json()
    assert body["differences"] == ["training.learning_rate"]
    groups = {g["label"]: g["experiment_ids"] for g in body["groups"]}
    assert groups == {"learning_rate 0.0012 (n=2)": ids[:2], "learning_rate 0.01": ids[2:]}
    assert client.get("/compare?tag=cmp").json()["groups"] == body["groups"]
    rows = _points(client.get("/compare/plots/early_stop_accuracy.json?tag=cmp").json())
    seeds = [r for r in rows if r["series"] == "learning_rate 0.0012 (n=2) · ticket"]
    assert seeds and all(r["n"] == 2 and r["std"] == 0.0 for r in seeds)  # same artifacts
    png = client.get(f"/compare/plots/accuracy_curves.png?ids={ids[0]},{ids[2]}")
    assert png.status_code == 200 and png.content.startswith(PNG)
    # ids and tag are both optional (as openapi.yaml says): ids, then the tagged ones; neither
    # is the caller's latest experiments.
    untagged = submit(client, tiny_spec(name="untagged"))["id"]
    both = client.get(f"/compare?ids={untagged},{ids[1]}&tag=cmp").json()["experiments"]
    assert [e["id"] for e in both] == [untagged, ids[1], ids[0], ids[2]]
    latest = client.get("/compare").json()["experiments"]
    assert [e["id"] for e in latest] == [*ids, untagged]
    plot = client.get("/compare/plots/early_stop_accuracy.png")  # a queued one draws nothing
    assert plot.status_code == 200 and plot.content.startswith(PNG)
    assert_error(client.get(f"/compare?ids={ids[0]},{'f' * 32}"), 404)
    assert_error(client.get("/compare?tag=nothing"), 404)


def test_page_and_static_files_are_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    for src in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js"):
        assert f'src="/static/vendor/{src}"' in page.text
        assert client.get(f"/static/vendor/{src}").status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another origin
    script = client.get("/static/app.js").text
    assert "innerHTML" not in script and "sessionStorage" in script
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_figures_module_stays_torch_free() -> None:
    import subprocess

    code = "import sys, lth_core.report.figures; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_lth_report_local_and_lth_run_plots(tmp_path: Path, engine_run: EngineRun) -> None:
    from typer.testing import CliRunner

    from cli.commands.run import plot_names, write_plots
    from cli.main import app

    run_dir = tmp_path / "run"
    shutil.copytree(engine_run.out_dir, run_dir)
    write_plots(run_dir)  # what `lth run` does when it finishes (--plots paper)
    paper = {"accuracy_curves.png", "early_stop_iteration.png", "early_stop_accuracy.png"}
    assert {p.name for p in (run_dir / "plots").iterdir()} == paper
    write_plots(run_dir, plot_names("all"))  # --plots all: every figure with data
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == sorted(
        f"{name}.png" for name in figures.FIGURES
    )
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--local", str(run_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert "vegaEmbed" in page and "<script src=" not in page  # self-contained
    specs = json.loads(page.split('id="specs">', 1)[1].split("</script>", 1)[0])
    assert set(specs) == set(figures.FIGURES) and all(_points(s) for s in specs.values())
    for name in figures.FIGURES:
        assert (out / f"{name}.png").read_bytes().startswith(PNG)
        assert (out / f"{name}.svg").read_text().lstrip().startswith("<svg")
    bad = CliRunner().invoke(app, ["report", "--local", str(tmp_path), "-o", str(out)])
    assert bad.exit_code == 1 and "(no spec.json)" in bad.output


def test_hostile_names_are_escaped_in_the_html_report(tmp_path: Path, engine_run) -> None:
    from cli.commands.report import html_report

    hostile = "</script><script>alert(1)</script>"
    spec = figures.figure("early_stop_accuracy", [figures.Source(hostile, {}, [])])
    table = {"name": hostile, "id": "", "spec": {"name": hostile}, "levels": [], "ticket": None}
    page = html_report(hostile, {"early_stop_accuracy": spec}, [table])
    assert "<script>alert(1)" not in page and "&lt;/script&gt;" in page


def test_lth_report_from_the_api(
    client: TestClient, settings: Settings, finished: str, tmp_path: Path, monkeypatch
) -> None:
    """`lth report ID ...` fetches the API's own descriptions and images (one and several)."""
    from typer.testing import CliRunner

    import cli.commands.report
    from cli.main import app
    from service.main import create_app

    monkeypatch.setattr(
        cli.commands.report, "connect", lambda url, key, timeout: TestClient(create_app(settings))
    )
    other = submit(client, tiny_spec(seed=5))["id"]
    for ids, out in (([finished], tmp_path / "one"), ([finished, other], tmp_path / "two")):
        result = CliRunner().invoke(app, ["report", *ids, "-o", str(out)])
        assert result.exit_code == 0, result.output
        page = (out / "report.html").read_text()
        assert all(i in page for i in ids)
        assert (out / "early_stop_accuracy.png").read_bytes().startswith(PNG)
    missing = CliRunner().invoke(app, ["report", "f" * 32, "-o", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "404" in missing.output


def test_compare_members_carry_their_own_ticket_and_the_group_what_they_share(
    client: TestClient, settings: Settings, engine_run
) -> None:
    ids = []
    for seed in (0, 1):
        ids.append(submit(client, {**tiny_spec(), "name": f"nw-seed{seed}", "seed": seed})["id"])
        finish_like_worker(settings, ids[-1], engine_run)
    body = client.get(f"/compare?ids={','.join(ids)}").json()
    # One group of differently named seeds: named by what they share, never one member.
    assert [g["label"] for g in body["groups"]] == ["nw · seeds 0, 1 (n=2)"]
    for member in body["experiments"]:
        own = client.get(f"/experiments/{member['id']}").json()
        assert member["created_at"] == own["created_at"]
        assert member["ticket"] == own["ticket"]  # the experiment page's presenter, unchanged
        if own["ticket"] is None:
            assert member["no_ticket"].startswith("no winning ticket")
            assert member["no_ticket"].endswith(own["ticket_decision"]["reason"])
            assert member["no_ticket"].count("no winning ticket") == 1
        else:
            assert member["no_ticket"] is None
            assert member["ticket"]["verdict"] in ("yes", "inconclusive")


def test_group_label_falls_back_to_model_and_dataset() -> None:
    spec = {"model": "lenet_300_100", "dataset": {"name": "mnist"}}
    sources = [
        figures.Source(n, {**spec, "name": n, "seed": s}, []) for n, s in (("a", 0), ("b", 3))
    ]
    assert [label for label, _ in figures.group_sources(sources)] == [
        "lenet_300_100 · mnist · seeds 0, 3 (n=2)"
    ]
    same = [figures.Source("x", {**spec, "name": "x", "seed": s}, []) for s in (0, 1, 2)]
    assert figures.group_sources(same)[0][0] == "x · seeds 0, 1, 2 (n=3)"
    assert figures.group_sources(same[:1])[0][0] == "x"


def _summary(level: int, remaining: float, acc: float, **extra) -> dict:
    return {
        "level": level,
        "weights_remaining": remaining,
        "early_stop_test_accuracy": acc,
        **extra,
    }


def test_grouping_labels_and_trial_spread() -> None:
    base = {"model": "lenet_300_100", "training": {"learning_rate": 0.1, "iterations": 10}}
    slow = {**base, "training": {"learning_rate": 0.01, "iterations": 10}}
    sources = [
        figures.Source("a", {**base, "seed": 0, "name": "a"}, [_summary(0, 1.0, 0.90)]),
        figures.Source(
            "b", {**base, "seed": 1, "name": "b", "tags": ["x"]}, [_summary(0, 1.0, 0.94)]
        ),
        figures.Source("c", {**slow, "seed": 0}, [_summary(0, 1.0, 0.80)]),
    ]
    assert [label for label, _ in figures.group_sources(sources)] == [
        "learning_rate 0.1 (n=2)",
        "learning_rate 0.01",
    ]
    rows = figures.sparsity_rows(sources, "early_stop_test_accuracy")
    pair = next(r for r in rows if r["n"] == 2)
    assert pair["value"] == pytest.approx(0.92) and pair["std"] == pytest.approx(0.0283, abs=1e-4)
    # One experiment whose level reports its own trials: the band is their std.
    stats = {"ticket": {"early_stop_test_accuracy": {"mean": 0.9, "std": 0.01, "n": 3}}}
    trials = figures.Source("t", base, [_summary(0, 1.0, 0.9, stats=stats)])
    (row,) = figures.sparsity_rows([trials], "early_stop_test_accuracy")
    assert (row["std"], row["n"]) == (0.01, 3)
    assert "bands" in figures.figure("early_stop_accuracy", [trials])["title"]["subtitle"]


def test_lth_run_plots_option_names() -> None:
    """--plots: paper (the default), all, none, or names; an unknown name is refused up front."""
    import typer

    from cli.commands.run import PAPER_PLOTS, plot_names

    assert plot_names("paper") == PAPER_PLOTS and plot_names("none") == ()
    assert set(plot_names("all")) == {*figures.FIGURES, "instability"}
    assert plot_names("method_comparison, accuracy_curves") == (
        "method_comparison",
        "accuracy_curves",
    )
    with pytest.raises(typer.BadParameter, match="unknown figure 'acuracy_curves'"):
        plot_names("acuracy_curves")
