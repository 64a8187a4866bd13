"""The pictures: the numbers behind each one, checked against independent computations, and
the files the CLI writes.

The lake is real: small generated models (four "architectures", Gaussian and heavy-tailed
weights, one rank-collapsed layer) analysed by the real pipeline and written by the real
writer (tests/plot_lakes.py). Oracles: numpy (histograms, float64 SVD), scipy (MP integral),
``powerlaw`` 1.5 (empirical and fitted PDF/CCDF), ``analysis.summary.model_summary`` / the models
table (series means), and the fit formulas of METHOD.md §4 written out here.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from hubscan.plots import data as D
from hubscan.plots import source as S
from tests.plot_lakes import DEFAULT_SPECS, Spec, build_lake, numpy_evals, shared_lake


@pytest.fixture(scope="module")
def lake():
    return shared_lake()


@pytest.fixture(scope="module")
def seed_lake(tmp_path_factory):
    """One heavy-tailed MLP analysed with the seed convention (σ²/N, powerlaw xmax=max)."""
    return build_lake(tmp_path_factory.mktemp("plots-seed") / "lake",
                      [Spec("demo/mlp-seed", "mlp", 2.5, 11, 71.0, width=128)], convention="seed")


@pytest.fixture(scope="module")
def con(lake):
    """One DuckDB connection with the lake views for the whole module (views are cheap to
    query, not free to register)."""
    c = lake.connect()
    yield c
    c.close()


def _layer_rows(lake, where: str = "true") -> list[dict]:
    return lake.query(f"SELECT * FROM layers WHERE {where} ORDER BY repo_id, layer_id").to_pylist()


# ----------------------------------------------------------------------------------------------
# ESD histogram
# ----------------------------------------------------------------------------------------------
def test_esd_histograms_are_numpys_and_the_figure_draws_them(lake):
    from hubscan.plots.esd import draw_esd

    ls = S.layer_spectrum(lake, "demo/mlp-16", "fc2")
    ev = ls.evals.astype(np.float64)
    lin, log = D.esd_panels(ev, bins=40, marks=(ls.row["xmin"], ls.row["bulk_max"]))
    # linear: numpy's counts on the same range; values beyond the zoom are counted apart
    counts, edges = np.histogram(ev, bins=40, range=(ev.min(), lin.edges[-1]))
    np.testing.assert_array_equal(lin.counts, counts)
    np.testing.assert_allclose(lin.edges, edges)
    assert lin.counts.sum() + lin.n_beyond == ev.size
    assert lin.n_beyond == np.count_nonzero(ev > lin.edges[-1])
    np.testing.assert_allclose((lin.density * np.diff(lin.edges)).sum(), lin.counts.sum() / ev.size)
    # the zoom keeps the MP edge and xmin on screen
    assert lin.edges[-1] >= min(ev.max(), 1.3 * ls.row["bulk_max"]) - 1e-9
    # log: geometric bins over the positive eigenvalues, numpy's counts
    pos = ev[ev > 0]
    counts, _ = np.histogram(pos, bins=log.edges)
    np.testing.assert_array_equal(log.counts, counts)
    assert log.counts.sum() == pos.size and log.n_dropped == ev.size - pos.size
    np.testing.assert_allclose(np.diff(np.log(log.edges)), math.log(pos.max() / pos.min()) / 40)
    np.testing.assert_allclose((log.density * np.diff(log.edges)).sum(), 1.0)

    fig = draw_esd(ev, bins=40, mp=ls.mp_curve(), alpha=ls.row["alpha"], xmin=ls.row["xmin"],
                   xmax=ls.row["xmax"])
    for ax, h in zip(fig.axes, (lin, log)):
        heights = np.array([p.get_height() for p in ax.patches])
        np.testing.assert_allclose(heights, h.density)
        xmin_lines = [ln for ln in ax.lines if ln.get_label().startswith("xmin")]
        assert [ln.get_xdata()[0] for ln in xmin_lines] == [ls.row["xmin"]]


def test_auto_bins():
    assert [D.auto_bins(n) for n in (1, 64, 256, 2500, 10**6)] == [10, 16, 32, 100, 100]


# ----------------------------------------------------------------------------------------------
# Marchenko–Pastur
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("Q", [1.0, 2.0, 4.0, 15.625])
def test_mp_density_is_a_density_with_the_right_support_and_mean(Q):
    from scipy import integrate

    from hubscan.esd.mp import mp_density as ww_mp_density

    sigma2 = 0.7
    lo, hi = D.mp_support(sigma2, Q)
    assert lo == pytest.approx(sigma2 * (1 - 1 / math.sqrt(Q)) ** 2)
    assert hi == pytest.approx(sigma2 * (1 + 1 / math.sqrt(Q)) ** 2)
    f = lambda x: float(D.mp_density(np.array([x]), sigma2=sigma2, Q=Q)[0])  # noqa: E731
    mass = integrate.quad(f, lo, hi, limit=200, points=[lo + 1e-12])[0]
    mean = integrate.quad(lambda x: x * f(x), lo, hi, limit=200)[0]
    assert mass == pytest.approx(1.0, abs=2e-3)
    assert mean == pytest.approx(sigma2, rel=2e-3)
    x = np.linspace(lo, hi, 50)[1:-1]
    # hubscan.esd.mp's weightwatcher formula takes σ (not σ²): same curve
    np.testing.assert_allclose(D.mp_density(x, sigma2=sigma2, Q=Q),
                               ww_mp_density(x, Q, math.sqrt(sigma2)), rtol=1e-10)
    c = D.mp_curve(sigma2=sigma2, Q=Q)
    assert (c.lambda_minus, c.lambda_plus) == pytest.approx((lo, hi))
    assert c.x[-1] == pytest.approx(hi) and c.density[-1] == pytest.approx(0.0, abs=1e-6)
    assert D.mp_density(np.array([hi * 1.01, lo * 0.99 if lo else -1.0]), sigma2=sigma2, Q=Q).tolist() == [0, 0]


def test_mp_curve_matches_a_gaussian_matrix_esd():
    """The law the curve draws is the ESD of a random matrix: CDFs agree within 0.03."""
    rng = np.random.default_rng(0)
    N, M = 1200, 300
    W = rng.normal(0, 1.3, size=(N, M))
    ev = np.linalg.eigvalsh(W.T @ W / N)
    x = np.linspace(*D.mp_support(1.3 ** 2, N / M), 4001)
    pdf = D.mp_density(x, sigma2=1.3 ** 2, Q=N / M)
    cdf = np.concatenate([[0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(x))])
    emp = np.searchsorted(np.sort(ev), x, side="right") / ev.size
    assert np.max(np.abs(emp - cdf)) < 0.03


def test_mp_curve_of_a_layer_sits_on_the_lakes_mp_fit(lake, con):
    """hubscan.esd.mp keeps sigma_mp on the mean-1 scale and bulk_max/bulk_min on the ESD's: the
    drawn curve must end exactly at the lake's bulk edges, on the lake's eigenvalue scale."""
    rows = _layer_rows(lake, "status = 'ok' AND bulk_max IS NOT NULL AND Q > 1")
    assert len(rows) >= 5
    for r in rows[:8]:
        ls = S.layer_spectrum(con, r["model_key"], r["tensor"])
        c = ls.mp_curve()
        assert c.lambda_plus == pytest.approx(r["bulk_max"], rel=1e-12)
        assert c.lambda_minus == pytest.approx(r["bulk_min"], rel=1e-9)
        # the same variance from sigma_mp (mean-1 scale) × the ESD's mean
        assert c.sigma2 == pytest.approx(r["sigma_mp"] ** 2 * float(np.mean(ls.evals, dtype=np.float64)),
                                         rel=1e-5)


# ----------------------------------------------------------------------------------------------
# The lake's spectra are the layers' eigenvalues
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec_i, tensor", [(2, "fc2.weight"), (4, "layer1.conv2.weight")])
def test_plotted_eigenvalues_are_the_layers_float64_svd(lake, spec_i, tensor):
    spec = DEFAULT_SPECS[spec_i]
    ls = S.layer_spectrum(lake, spec.repo_id, tensor)
    ref = numpy_evals(spec, tensor)
    assert ls.evals.dtype == np.float32 and ls.evals.size == ref.size == ls.row["num_evals"]
    top = ref.max()
    np.testing.assert_allclose(ls.evals, ref, rtol=1e-5, atol=1e-6 * top)


# ----------------------------------------------------------------------------------------------
# Power-law fit: PDF and CCDF
# ----------------------------------------------------------------------------------------------
def _powerlaw_oracle(evals, xmin, xmax=None):
    powerlaw = pytest.importorskip("powerlaw")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return powerlaw.Fit(np.asarray(evals, dtype=np.float64), xmin=xmin, xmax=xmax,
                            verbose=False)


@pytest.mark.parametrize("which", ["ww", "seed"])
def test_fit_curves_match_the_powerlaw_package(lake, seed_lake, which):
    """Tail = the lake's K eigenvalues from its xmin; empirical CCDF = powerlaw's Fit.ccdf();
    fitted PDF/CCDF = powerlaw's power_law.pdf/ccdf (untruncated for ww, truncated at xmax
    for seed, as powerlaw.Fit(xmax=max) draws them)."""
    from hubscan.plots.fit import draw_fit

    the_lake, model, layer = ((lake, "demo/mlp-16", "fc2") if which == "ww"
                              else (seed_lake, "demo/mlp-seed", "fc1"))
    ls = S.layer_spectrum(the_lake, model, layer)
    r = ls.row
    assert ls.fitter == which
    c = D.power_law_curves(ls.evals, alpha=r["alpha"], xmin=r["xmin"], xmax=r["xmax"],
                           fitter=ls.fitter)
    assert c.n_tail == r["num_pl_spikes"]
    assert c.tail[0] == np.float32(r["xmin"])
    xmin32 = float(np.float32(r["xmin"]))
    pl = _powerlaw_oracle(ls.evals, xmin32, xmax=float(ls.evals[-1]) if which == "seed" else None)
    x, y = pl.ccdf()
    np.testing.assert_allclose(c.ccdf_x, x)
    np.testing.assert_allclose(c.ccdf, y)
    # the formulas, with powerlaw's own alpha on the same tail
    a = pl.power_law.alpha
    if which == "seed":  # the seed fitter's alpha is powerlaw's (float32 data: 1e-4)
        assert a == pytest.approx(r["alpha"], rel=1e-4)
    ours = D.power_law_curves(ls.evals, alpha=a, xmin=xmin32, xmax=float(ls.evals[-1]),
                              fitter=ls.fitter)
    np.testing.assert_allclose(ours.fit_ccdf, pl.power_law.ccdf(x), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.fit_pdf, pl.power_law.pdf(ours.pdf_centers), rtol=1e-9)
    # the empirical PDF is a density over the tail
    np.testing.assert_allclose((c.pdf_density * np.diff(c.pdf_edges)).sum(), 1.0)
    np.testing.assert_array_equal(np.histogram(c.tail, bins=c.pdf_edges)[0],
                                  np.round(c.pdf_density * np.diff(c.pdf_edges) * c.n_tail))
    # the figure draws exactly these curves
    fig = draw_fit(c, D=r["D"])
    lines = fig.axes[0].lines
    np.testing.assert_allclose(lines[0].get_ydata(), np.where(c.pdf_density > 0, c.pdf_density, np.nan))
    np.testing.assert_allclose(lines[1].get_ydata(), c.fit_pdf)
    np.testing.assert_allclose(lines[2].get_xdata(), c.ccdf_x)
    assert lines[4].get_xdata()[0] == r["xmin"]


def test_truncated_fitter_curves_are_normalised_on_xmin_xmax():
    from scipy import integrate

    pdf = lambda x: float(D.power_law_pdf(np.array([x]), alpha=2.5, xmin=1.0, xmax=20.0,  # noqa: E731
                                          fitter="truncated")[0])
    assert integrate.quad(pdf, 1.0, 20.0)[0] == pytest.approx(1.0)
    ccdf = D.power_law_ccdf(np.array([1.0, 20.0]), alpha=2.5, xmin=1.0, xmax=20.0, fitter="truncated")
    np.testing.assert_allclose(ccdf, [1.0, 0.0], atol=1e-12)
    # ww ignores xmax: the untruncated law
    np.testing.assert_allclose(D.power_law_ccdf(np.array([4.0]), alpha=2.5, xmin=1.0, xmax=20.0),
                               [4.0 ** -1.5])


# ----------------------------------------------------------------------------------------------
# KS distance vs xmin
# ----------------------------------------------------------------------------------------------
def test_ks_curve_minimum_is_the_lakes_xmin_and_K_its_tail(con):
    from hubscan.plots.ks import compute_ks_curve, draw_ks

    for model, layer in (("demo/mlp-16", "fc2"), ("demo/cnn-34", "layer2.conv2"),
                         ("demo/gpt2-small", "transformer.h.1.mlp.c_fc")):
        ls = S.layer_spectrum(con, model, layer)
        r = ls.row
        curve = compute_ks_curve(ls.evals, fitter=ls.fitter, xmin=r["xmin"], **ls.fit_options)
        assert curve.marked_xmin == r["xmin"]
        assert curve.marked_K == r["num_pl_spikes"]
        assert curve.best_xmin == pytest.approx(r["xmin"], rel=1e-6)
        assert curve.best_D == pytest.approx(r["D"], rel=1e-4)
        assert np.all(np.diff(curve.xmin) >= 0)
        np.testing.assert_array_equal(
            curve.tail_size, [np.count_nonzero(ls.evals.astype(np.float64) >= x) for x in curve.xmin])
        # D of a few candidates, from METHOD.md §4's ww formula written out here
        x = np.sort(ls.evals.astype(np.float64))
        x = x[x > 1e-5]
        for i in (0, len(x) // 3, int(np.flatnonzero(x >= curve.best_xmin)[0])):
            tail = x[i:]
            n = tail.size
            a = 1 + n / (np.log(tail).sum() - n * math.log(tail[0]))
            d = np.max(np.abs(1 - (tail / tail[0]) ** (1 - a) - np.arange(n) / n))
            k = int(np.flatnonzero(curve.xmin == tail[0])[0])
            assert curve.D[k] == pytest.approx(d, rel=1e-6, abs=1e-9)
        fig = draw_ks(curve)
        ax = fig.axes[0]
        np.testing.assert_array_equal(ax.lines[0].get_ydata(), curve.D)
        marked = [ln for ln in ax.lines if ln.get_label().startswith("xmin")]
        assert marked[0].get_xdata()[0] == r["xmin"]
        assert any(t.get_text() == f"K = {r['num_pl_spikes']}" for t in ax.texts)


# ----------------------------------------------------------------------------------------------
# Across the lake: alphas by architecture, histogram, series, layer profile
# ----------------------------------------------------------------------------------------------
def test_alpha_groups_sql_equals_numpy(lake):
    rows = lake.query(f"SELECT arch, alpha FROM layers_latest WHERE {S.VALID_ALPHA}").to_pylist()
    ref = D.alpha_groups([r["arch"] for r in rows], np.array([r["alpha"] for r in rows]))
    got = S.alpha_groups_from_lake(lake, by="arch", sample_per_group=3)
    assert set(got.names) == set(ref.names) == {"DemoMLP", "DemoCNN", "GPT2LMHeadModel", "BertModel"}
    for name in ref.names:
        i, j = ref.names.index(name), got.names.index(name)
        assert got.n[j] == ref.n[i]
        assert got.share_2_4[j] == pytest.approx(ref.share_2_4[i])
        assert got.share_2_6[j] == pytest.approx(ref.share_2_6[i])
        assert got.median[j] == pytest.approx(ref.median[i])
        assert got.values[j].size == min(3, ref.n[i])  # the drawn sample, bounded
        assert set(got.values[j]) <= set(ref.values[i])
    # merging into "other"
    two = S.alpha_groups_from_lake(lake, by="arch", max_groups=2)
    assert two.names[-1] == "other" and two.n.sum() == ref.n.sum() and len(two.names) == 2
    with pytest.raises(ValueError):
        S.alpha_groups_from_lake(lake, by="arch; DROP TABLE x")


def test_alpha_histogram_counts_every_alpha(lake):
    alphas = np.array(lake.query(f"SELECT alpha FROM layers_latest WHERE {S.VALID_ALPHA}")
                      .column("alpha").to_pylist())
    with S.connection(lake) as con:
        h = S.alpha_histogram(con, lo=0.0, hi=8.0, width=0.5)
    counts, _ = np.histogram(alphas[(alphas >= 0) & (alphas <= 8)], bins=h.edges)
    np.testing.assert_array_equal(h.counts, counts)
    assert h.n_above == np.count_nonzero(alphas > 8) > 0
    assert h.total == alphas.size
    assert h.share_2_4 == pytest.approx(np.mean((alphas >= 2) & (alphas <= 4)))
    assert h.share_2_6 == pytest.approx(np.mean((alphas >= 2) & (alphas <= 6)))


def test_series_points_are_the_models_means(lake):
    from hubscan.analysis.summary import model_summary
    from hubscan.plots.series import draw_series

    models = {r["repo_id"]: r for r in lake.query("SELECT * FROM models").to_pylist()}
    pts = S.series_from_lake(lake, metric="alpha", vs="accuracy")
    # the five models with an accuracy, in two series
    assert {p.label for p in pts} == {s.repo_id for s in DEFAULT_SPECS if s.accuracy is not None}
    assert {p.family for p in pts} == {"mlp", "cnn"}
    for p in pts:
        assert p.x == models[p.label]["accuracy"]
        assert p.y == pytest.approx(models[p.label]["alpha_mean"], rel=1e-12)
    for p in S.series_from_lake(lake, metric="log_norm"):
        assert p.y == pytest.approx(models[p.label]["log_norm_mean"], rel=1e-12)
    # --exclude-last = model_summary(exclude_final_layer=True) on the model's own rows
    for p in S.series_from_lake(lake, metric="alpha", exclude_last=True):
        rows = _layer_rows(lake, f"repo_id = '{p.label}'")
        assert p.y == pytest.approx(model_summary(rows, exclude_final_layer=True)["alpha_mean"])
    only = S.series_from_lake(lake, family="cnn")
    assert {p.label for p in only} == {"demo/cnn-18", "demo/cnn-34"}
    fig = draw_series(pts)
    drawn = sorted((x, y) for ln in fig.axes[0].lines for x, y in zip(ln.get_xdata(), ln.get_ydata()))
    np.testing.assert_allclose(np.array(drawn), np.array(sorted((p.x, p.y) for p in pts)))


def test_layer_profile_is_the_models_layers_in_order(lake):
    from hubscan.plots.layers import draw_layers

    prof, name = S.layer_profile_from_lake(lake, "cnn-34")
    assert name == "demo/cnn-34"
    rows = _layer_rows(lake, "repo_id = 'demo/cnn-34' AND status <> 'skipped'")
    assert list(prof.names) == [r["longname"] for r in rows]
    np.testing.assert_allclose(prof.alpha, [r["alpha"] for r in rows])
    fig = draw_layers(prof)
    ys = np.concatenate([ln.get_ydata() for ln in fig.axes[0].lines if ln.get_linestyle() == "None"])
    assert sorted(ys) == pytest.approx(sorted(min(a, 12.0) for a in prof.alpha))


def test_selection_rules(con):
    assert S.resolve_model(con, "mlp-16")["repo_id"] == "demo/mlp-16"
    key = S.resolve_model(con, "demo/mlp-16")["model_key"]
    assert S.resolve_model(con, key)["repo_id"] == "demo/mlp-16"
    with pytest.raises(S.PlotDataError, match="matches 3 models"):
        S.resolve_model(con, "mlp")
    with pytest.raises(S.PlotDataError, match="no model"):
        S.resolve_model(con, "resnet")
    default = S.layer_spectrum(con, "demo/mlp-16")  # most eigenvalues among fitted layers
    assert default.row["tensor"] == "fc2.weight"
    by_id = S.layer_spectrum(con, "demo/mlp-16", default.row["layer_id"])
    assert by_id.row["tensor"] == "fc2.weight"
    with pytest.raises(S.PlotDataError, match="skipped"):
        S.layer_spectrum(con, "demo/mlp-16", "fc2.bias")


def test_phases_and_warnings_in_the_test_lake_are_varied(lake):
    """The test lake exercises the report's sections (a guard on the fixture itself)."""
    rows = _layer_rows(lake)
    warnings = {w for r in rows for w in (r["warning"] or "").split(",") if w}
    assert {"under-trained", "rank-collapse"} <= warnings
    assert len({r["arch"] for r in rows}) == 4


# ----------------------------------------------------------------------------------------------
# Files: the CLI writes decodable PNGs and well-formed SVGs
# ----------------------------------------------------------------------------------------------
CLI_CASES = [
    ["esd", "demo/mlp-16", "fc2"],
    ["fit", "demo/mlp-16", "fc2"],
    ["ks", "demo/cnn-34", "layer2.conv2"],
    ["alpha", "--by", "arch"],
    ["series", "--metric", "alpha", "--vs", "accuracy", "--family", "mlp", "--family", "cnn"],
    ["layers", "demo/gpt2-small"],
]


@pytest.mark.parametrize("args", CLI_CASES, ids=[c[0] for c in CLI_CASES])
@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_cli_writes_nontrivial_images(lake, tmp_path, args, suffix):
    from PIL import Image
    from typer.testing import CliRunner

    from hubscan.cli import app

    out = tmp_path / f"{args[0]}{suffix}"
    res = CliRunner().invoke(app, ["plot", *args, "--lake", lake.uri, "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 10_000
    if suffix == ".png":
        img = Image.open(out)
        img.load()
        assert img.format == "PNG" and img.size[0] >= 600 and img.size[1] >= 300
        assert len(img.convert("RGB").getcolors(1 << 20) or []) > 20  # not blank
    else:
        root = ET.parse(out).getroot()
        assert root.tag.endswith("svg")
        assert len(list(root.iter())) > 100


def test_cli_calibration(lake, tmp_path):
    from typer.testing import CliRunner

    from hubscan.cli import app

    out = tmp_path / "cal.png"
    res = CliRunner().invoke(app, ["plot", "calibration", "--trials", "3", "--n", "300",
                                   "--lake", lake.uri, "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 10_000


def test_plot_calibration_reuses_the_calibration_module(lake):
    from hubscan.esd.calibration import pareto_calibration
    from hubscan.plots import plot_calibration

    cal = pareto_calibration([1.5, 2.5, 3.5], n=200, trials=2, seed=1)
    fig = plot_calibration(result=cal, lake=lake)
    ax = fig.axes[0]
    errorbar = [ln for ln in ax.lines if len(ln.get_xdata()) == 3 and ln.get_marker() == "o"][0]
    np.testing.assert_allclose(errorbar.get_ydata(), cal.mean_fit)
    assert fig.axes[1].get_ylabel() == "layers in the lake"


def test_cli_errors_are_clear(lake, tmp_path):
    from typer.testing import CliRunner

    from hubscan.cli import app

    run = lambda *a: CliRunner().invoke(app, ["plot", *a, "--lake", lake.uri])  # noqa: E731
    res = run("esd", "no-such-model", "-o", str(tmp_path / "x.png"))
    assert res.exit_code == 2 and "no model" in res.output
    res = run("esd", "demo/mlp-16", "-o", str(tmp_path / "x.jpg"))
    assert res.exit_code != 0 and ".png or .svg" in res.output
    assert not (tmp_path / "x.png").exists()
