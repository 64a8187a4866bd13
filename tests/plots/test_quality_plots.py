"""The seeds' series figure from the quality views, the fine-tune delta figure, the report's
"alpha vs accuracy" section and the CLI around them — on real lakes, with the numbers they
must show; lakes without any accuracy say so in one line."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from hubscan.cli import app
from hubscan.lake.quality import correlations
from hubscan.plots.deltas import deltas_from_lake, plot_deltas
from hubscan.plots.quality import NO_EVALS, plot_quality, quality_series_from_lake
from hubscan.plots.source import PlotDataError
from hubscan.report import build_report
from tests import lineage_family as fam
from tests import quality_series as qs

runner = CliRunner()


@pytest.fixture(scope="module")
def series_lake(tmp_path_factory):
    return qs.build_lake(tmp_path_factory.mktemp("series"))


@pytest.fixture(scope="module")
def bare_lake(tmp_path_factory):
    return qs.build_lake(tmp_path_factory.mktemp("bare"), cards=False, csv=False)


def test_series_points_and_legend_carry_the_correlations(series_lake):
    s = quality_series_from_lake(series_lake, metric="alpha", variant="no_last_fc")
    assert (s.eval_metric, s.dataset, s.metric) == ("acc@1", "imagenet-1k", "alpha_mean")
    want = {c.group_name: c for c in correlations(series_lake, where="variant = 'no_last_fc' AND "
                                                  "metric = 'alpha_mean' AND group_kind = 'family'")}
    assert set(s.correlations) == {"vgg", "resnet"}
    by_model = {p.label: p for p in s.points}
    assert {m: by_model[m].x for m in qs.VGG} == qs.VGG
    for p in s.points:
        fam_name = "vgg" if p.label.startswith("vgg") else "resnet"
        c = want[fam_name]
        assert p.family.startswith(fam_name) and f"ρ={c.spearman:+.2f}" in p.family
        assert f"τ={c.kendall:+.2f}" in p.family and f"p={c.p_spearman:.2g}" in p.family
    fig = plot_quality(series_lake, metric="alpha", variant="no_last_fc")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == 2 and any(lab.startswith("vgg  ρ=") for lab in labels)
    xs = sorted(x for line in ax.get_lines() for x in line.get_xdata())
    assert np.allclose(xs, sorted([*qs.VGG.values(), *qs.RESNET.values()]))


def test_no_accuracy_anywhere_says_so_in_one_line(bare_lake, tmp_path):
    with pytest.raises(PlotDataError) as e:
        plot_quality(bare_lake)
    assert str(e.value) == NO_EVALS and "\n" not in NO_EVALS
    out = tmp_path / "s.png"
    res = runner.invoke(app, ["plot", "series", "--lake", str(bare_lake.uri), "-o", str(out)])
    assert res.exit_code == 2 and not out.exists()
    assert res.output.strip().count("\n") == 0 and "no model" in res.output
    html = build_report(bare_lake, layer_figures=False)
    section = re.search(r'<section id="quality">(.*?)</section>', html, re.S).group(1)
    assert "No model in the lake has a reported metric" in section
    assert "<figure>" not in section and "<table>" not in section


def test_report_section_alpha_vs_accuracy(series_lake):
    html = build_report(series_lake, layer_figures=False)
    section = re.search(r'<section id="quality">(.*?)</section>', html, re.S).group(1)
    assert "<h2>Alpha vs accuracy</h2>" in section
    assert section.count("<figure>") == 3  # mean alpha, mean alpha without the last FC, log-norm
    rows = correlations(series_lake, permutations=1999)
    assert len(rows) == 16
    for c in rows:  # every correlation appears with its rho
        assert f"{c.spearman:.2f}" in section
    assert 'id="series"' not in html and "Model series" not in html  # one place for the series


def test_cli_series_and_evals(series_lake, tmp_path):
    out = tmp_path / "series.svg"
    res = runner.invoke(app, ["plot", "series", "--lake", str(series_lake.uri), "--exclude-last",
                              "--family", "vgg", "-o", str(out)])
    assert res.exit_code == 0, res.output
    svg = out.read_text()
    assert "ρ=" in svg and "vgg11" in svg and "resnet" not in svg  # --family vgg: one series
    res = runner.invoke(app, ["evals", "correlations", "--lake", str(series_lake.uri), "--json",
                              "--metric", "alpha_mean", "--variant", "all"])
    assert res.exit_code == 0, res.output
    got = [json.loads(line) for line in res.output.splitlines() if line.strip()]
    want = correlations(series_lake, where="metric = 'alpha_mean' AND variant = 'all'")
    assert [(g["group_name"], g["spearman"], g["p_kendall"]) for g in got] == [
        (c.group_name, c.spearman, c.p_kendall) for c in want]
    csv = tmp_path / "more.csv"
    csv.write_text("model,metric,value\nlocal://vgg11,top5,88.6\nlocal://vgg13,top5,oops\n")
    res = runner.invoke(app, ["evals", "import", str(csv), "--lake", str(series_lake.uri)])
    assert res.exit_code == 0, res.output
    assert "imported 1 value(s) for 1 model(s)" in res.output and ":3 skipped" in res.output


def test_cli_correlations_on_a_lake_without_evals(bare_lake):
    res = runner.invoke(app, ["evals", "correlations", "--lake", str(bare_lake.uri)])
    assert res.exit_code == 0 and res.output.startswith("no correlations:")


@pytest.fixture(scope="module")
def family_lake(tmp_path_factory):
    from hubscan.engine.scan import run_scan
    from hubscan.engine.spec import loads_spec
    from hubscan.testing.fakehub import FakeHub

    tmp = tmp_path_factory.mktemp("family")
    hub = FakeHub(idle_timeout=120).start()
    try:
        with hub.environ(tmp):
            fam.add_family(hub)
            spec = loads_spec(f'[scan]\nname = "f"\nlake = "{tmp / "lake"}"\n[[sources]]\nkind = "hf"\n'
                              'author = "acme"\n[deltas]\ndistances = true\n')
            assert run_scan(spec, executor="local", progress=False).status == "completed"
            res = runner.invoke(app, ["list", "hf", "--author", "acme"], env={"COLUMNS": "220"})
    finally:
        hub.stop()
    from hubscan.lake import Lake

    return Lake(tmp / "lake"), res


def test_list_hf_shows_the_base_models(family_lake):
    _, res = family_lake
    assert res.exit_code == 0, res.output
    line = next(l for l in res.output.splitlines() if fam.HEAVY in l)
    assert f"{fam.BASE} (finetune)" in line
    assert f"{fam.BASE} (quantized)" in next(l for l in res.output.splitlines() if fam.FP16 in l)


def test_delta_figure(family_lake, tmp_path):
    lake, _ = family_lake
    p = deltas_from_lake(lake, fam.HEAVY)
    assert p.base == fam.BASE and p.relation == "finetune"
    fd = {r["tensor"]: r for r in lake.query(
        f"SELECT * FROM finetune_deltas WHERE repo_id = '{fam.HEAVY}'").to_pylist()}
    assert len(p.names) == len(fd) == len(fam.MATRICES)
    got = dict(zip([n + ".weight" for n in p.names], p.delta_alpha))
    for t, r in fd.items():
        assert got[t] == pytest.approx(r["delta_alpha"])
    fig = plot_deltas(lake, fam.HEAVY)
    bars = [b.get_height() for b in fig.axes[1].patches]
    assert sorted(bars) == pytest.approx(sorted(r["delta_alpha"] for r in fd.values()))
    out = tmp_path / "d.png"
    res = runner.invoke(app, ["plot", "deltas", fam.HEAVY, "--lake", str(lake.uri), "-o", str(out)])
    assert res.exit_code == 0 and out.stat().st_size > 1000, res.output
    res = runner.invoke(app, ["plot", "deltas", fam.BASE, "--lake", str(lake.uri), "-o", str(out)])
    assert res.exit_code == 2 and "no base model in the lake" in res.output
