"""``hubscan demo`` — the README's first command — run as a user runs it: the installed console
script, in an empty folder, in CI conditions (``CI=true``, no stdin, no TTY), with no network
(``HF_HUB_OFFLINE=1``, ``HF_ENDPOINT`` and proxies pointing at a closed port): it must serve
its repos from the loopback hub, scan them as an hf source and leave a lake that shows what
the README promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubscan.lake import Lake
from hubscan.plots.source import series_from_lake

DEAD = "http://127.0.0.1:9"  # the discard port: connection refused


def _console_script(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        pytest.skip(f"console script {name} not installed next to {sys.executable}")
    return str(path)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("demo-cwd")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(CI="true", HF_HUB_OFFLINE="1", HF_ENDPOINT=DEAD, HTTP_PROXY=DEAD, HTTPS_PROXY=DEAD,
               HF_HOME=str(cwd / "hf-home"), COLUMNS="200")
    proc = subprocess.run([_console_script("hubscan"), "demo"], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return cwd, proc, Lake(str(cwd / "demo-lake"))


def test_demo_scans_hub_repos_through_the_hub_client(demo_run):
    cwd, proc, lake = demo_run
    models = lake.query("SELECT source, repo_id, status, bytes_fetched, revision FROM models").to_pylist()
    assert len(models) == 12 and {m["source"] for m in models} == {"hf"}
    assert all(m["repo_id"].startswith("hubscan-demo/") and m["status"] == "ok" for m in models)
    assert all(m["bytes_fetched"] > 0 and len(m["revision"]) == 40 for m in models)  # streamed, pinned
    files = lake.query("SELECT file, file_sha256 FROM model_files").to_pylist()
    assert len(files) == 13 and all(len(f["file_sha256"]) == 64 for f in files)  # one sharded model
    # one listing page, one paths-info call per repo (sizes + sha256), one GET per weight file
    assert "through huggingface_hub: 13 API calls, 13 file requests" in proc.stdout
    assert (cwd / "demo-models" / "resnet-ep50" / "README.md").exists()  # the zoo, on disk, reusable


def test_every_architecture_has_fitted_alphas(demo_run):
    _, proc, lake = demo_run
    archs = lake.query("SELECT arch, models, fits, alpha_mean FROM arch_summary").to_pylist()
    assert {a["arch"] for a in archs} == {"DemoMLP", "DemoCNN", "GPT2LMHeadModel", "BertModel"}
    assert all(a["alpha_mean"] is not None and a["fits"] >= 6 for a in archs), archs
    assert "per architecture" in proc.stdout and "GPT2LMHeadModel" in proc.stdout


def test_heavy_tailed_and_gaussian_models_are_far_apart(demo_run):
    _, proc, lake = demo_run
    rows = lake.query("""
        SELECT l.repo_id, any_value(m.n_over_trained) AS over,
               avg(alpha) FILTER (WHERE l.status = 'ok') AS alpha_mean,
               avg(CASE WHEN alpha BETWEEN 2 AND 4 THEN 1.0 ELSE 0.0 END) FILTER (WHERE l.status = 'ok') AS in_2_4,
               avg(CASE WHEN phase = 'heavy-tailed' THEN 1.0 ELSE 0.0 END) AS heavy,
               bool_and(phase = 'random-like') AS random_like
        FROM layers AS l JOIN models AS m USING (model_key)
        WHERE l.status IN ('ok', 'fit-failed') GROUP BY l.repo_id""").to_pylist()
    gauss = [r for r in rows if r["repo_id"].endswith("-gauss")]
    heavy = [r for r in rows if not r["repo_id"].endswith("-gauss")]
    assert len(gauss) == 4 and len(heavy) == 8
    for r in heavy:
        assert 2 <= r["alpha_mean"] <= 4 and r["in_2_4"] >= 0.85 and r["heavy"] >= 0.85, r
    for r in gauss:
        assert r["random_like"] and r["over"] == 0, r
    assert min(r["alpha_mean"] for r in gauss) > max(r["alpha_mean"] for r in heavy) + 2
    # the printed summary says the same: no Gaussian model is called over-trained
    for line in proc.stdout.splitlines():
        if "-gauss " in line:
            assert "over-trained" not in line


def test_the_series_has_accuracies_and_falls_with_alpha(demo_run):
    _, _, lake = demo_run
    points = series_from_lake(lake)
    assert [p.family for p in points] == ["resnet"] * 5
    by_acc = sorted(points, key=lambda p: p.x)
    assert [p.x for p in by_acc] == [61.2, 66.5, 70.1, 72.8, 74.6]
    assert all(a.y > b.y for a, b in zip(by_acc, by_acc[1:]))


def test_the_report_shows_the_series_and_calls_no_gaussian_layer_over_trained(demo_run):
    from hubscan.report.data import report_data

    _, _, lake = demo_run
    with lake.connect() as con:
        data = report_data(con)
    assert data.series_models == 5  # the alpha-vs-accuracy figure is drawn (≥ 2 models)
    assert not [r for r in data.over_layers if r["repo_id"].endswith("-gauss")]
    best = [p for p in data.picked_layers if p["why"] == "best-fitted heavy tail"]
    assert best and not best[0]["repo_id"].endswith("-gauss")


def test_plot_series_draws_the_demo_lake(demo_run):
    cwd, _, _ = demo_run
    proc = subprocess.run([_console_script("hubscan"), "plot", "series", "--lake", "demo-lake",
                           "-o", "series.png"], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (cwd / "series.png").stat().st_size > 10_000


def test_demo_hub_restores_the_environment(tmp_path, monkeypatch):
    """In process, the loopback hub is set for the block only (``HF_ENDPOINT``, the
    client's constants), and nothing outside 127.0.0.1 is contacted."""
    from huggingface_hub import HfApi, constants

    from hubscan.engine.demo import demo_hub

    monkeypatch.setenv("HF_ENDPOINT", DEAD)
    before = (os.environ.get("HF_ENDPOINT"), constants.ENDPOINT, os.environ.get("NO_PROXY"))
    with demo_hub(tmp_path / "models", n_models=2) as hub:
        assert os.environ["HF_ENDPOINT"] == hub.url and hub.url.startswith("http://127.0.0.1:")
        assert sorted(m.id for m in HfApi().list_models(author="hubscan-demo")) == list(sorted(hub.repos))
    assert (os.environ.get("HF_ENDPOINT"), constants.ENDPOINT, os.environ.get("NO_PROXY")) == before
