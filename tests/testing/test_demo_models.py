"""The demo models are what they claim, by the real analysis (``hubscan.analyze``, ``ww``).

Heavy-tailed ones: mean alpha in [2, 4], nearly every layer's alpha in [2, 4] with phase
``heavy-tailed``; Gaussian ones: every layer ``random-like``, alpha far above the
heavy-tailed ones, never called over-trained; the ResNet series: mean alpha falls as the
published accuracy rises. Checked here on the whole zoo at another seed than the demo's
(``tests/cli/test_demo_cli.py`` checks the demo's own models, seed 0, end to end), and the
generator itself on plain matrices over several seeds and exponents.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from huggingface_hub import ModelCard

import hubscan
from hubscan.analysis.summary import model_summary
from hubscan.testing import checkpoints as ck
from hubscan.testing import zoo


@pytest.fixture(scope="module")
def analysed_zoo(tmp_path_factory):
    """Every zoo model, written to disk and analysed: (DemoModel, folder, layer rows)."""
    seed = 1
    folders = zoo.ensure_demo_models(tmp_path_factory.mktemp(f"zoo{seed}"), seed=seed)
    out = []
    for model, folder in zip(zoo.demo_models(seed=seed), folders):
        rows = hubscan.analyze(folder, compare=False).to_pylist()
        out.append((model, folder, [r for r in rows if r["status"] in ("ok", "fit-failed")]))
    return out


def _mean_alpha(rows) -> float:
    return float(np.mean([r["alpha"] for r in rows if r["status"] == "ok"]))


def test_heavy_tailed_models_have_alpha_in_2_4_and_a_heavy_tailed_phase(analysed_zoo):
    layers = []
    for model, _, rows in analysed_zoo:
        if not model.heavy_tailed:
            continue
        assert rows and all(r["status"] == "ok" for r in rows), model.name
        assert 2.0 <= _mean_alpha(rows) <= 4.0, model.name
        layers += rows
    good = [r for r in layers if 2.0 <= r["alpha"] <= 4.0 and r["phase"] == "heavy-tailed"]
    # a few 64-eigenvalue layers (1×1 downsample, 3-channel stem) may land in a neighbour phase
    assert len(good) >= 0.95 * len(layers), [(r["tensor"], r["alpha"], r["phase"]) for r in layers
                                              if r not in good]
    assert all(1.8 <= r["alpha"] <= 4.5 for r in layers)


def test_gaussian_models_are_random_like_and_never_over_trained(analysed_zoo):
    ht_means = [_mean_alpha(rows) for m, _, rows in analysed_zoo if m.heavy_tailed]
    for model, _, rows in analysed_zoo:
        if model.heavy_tailed:
            continue
        assert {r["phase"] for r in rows} == {"random-like"}, model.name
        assert _mean_alpha(rows) > max(ht_means) + 2, model.name  # clearly apart
        assert model_summary(rows)["n_over_trained"] == 0, model.name


def test_the_resnet_series_gets_better_as_its_mean_alpha_falls(analysed_zoo):
    series = sorted((m.accuracy, _mean_alpha(rows)) for m, _, rows in analysed_zoo
                    if m.name.startswith("resnet"))
    assert len(series) == 5
    alphas = [a for _, a in series]
    assert all(a > b + 0.1 for a, b in zip(alphas, alphas[1:])), series


def test_every_architecture_is_fitted_in_both_families(analysed_zoo):
    fitted = {(m.kind, m.heavy_tailed) for m, _, rows in analysed_zoo
              if sum(r["status"] == "ok" for r in rows) >= 3}
    assert fitted == {(k, h) for k in ("mlp", "cnn", "gpt2", "bert-tiny") for h in (True, False)}


def test_demo_folders_carry_a_model_card_and_torchvision_style_accuracy(analysed_zoo):
    for model, folder, _ in analysed_zoo:
        config = json.loads((folder / "config.json").read_text())
        card = ModelCard((folder / "README.md").read_text())
        results = card.data.eval_results or []
        if model.accuracy is None:
            assert "acc@1" not in config["hubscan_demo"] and not results
            continue
        assert config["hubscan_demo"]["acc@1"] == model.accuracy
        assert [(r.metric_type, r.metric_value) for r in results] == [("accuracy", model.accuracy)]
        assert zoo.DEMO_AUTHOR in card.data.tags


def test_demo_models_are_written_once_and_cycle_with_fresh_seeds(tmp_path):
    models = zoo.demo_models(len(zoo.ZOO) + 2)
    assert [m.name for m in models[-2:]] == ["mlp-ht-2", "cnn-gauss-2"]
    assert len({m.name for m in models}) == len(models) and len({m.seed for m in models}) == len(models)
    first = zoo.ensure_demo_models(tmp_path, n_models=2)
    stamp = [(f / "model.safetensors").stat().st_mtime_ns for f in first]
    again = zoo.ensure_demo_models(tmp_path, n_models=2)
    assert again == first and [(f / "model.safetensors").stat().st_mtime_ns for f in again] == stamp


@pytest.mark.parametrize("alpha", [2.5, 3.0, 3.5])
def test_planted_spectrum_gives_the_asked_alpha(alpha):
    """The generator behind the heavy-tailed family, on plain matrices of the demo's sizes:
    the ww fit recovers the planted exponent and the phase rule sees a heavy tail."""
    rows = []
    for seed in range(3):
        for shape in ((512, 256), (256, 256), (1024, 100)):
            w = ck.power_law_spectrum_matrix(*shape, alpha, seed=seed)
            rows.append(hubscan.analyze({"w.weight": w}, compare=False).to_pylist()[0])
    fitted = np.array([r["alpha"] for r in rows])
    assert abs(float(np.median(fitted)) - alpha) < 0.15 * alpha
    assert np.all(np.abs(fitted - alpha) < 0.35 * alpha), fitted
    assert sum(r["phase"] == "heavy-tailed" for r in rows) >= 8


def test_planted_spectrum_keeps_a_marchenko_pastur_bulk():
    """Below the cut the eigenvalues are a Gaussian matrix's: the smallest 70 % match the
    same quantiles of an MP sample, the top 30 % are the power law (far past the MP edge)."""
    n, m = 1024, 256
    w = ck.power_law_spectrum_matrix(n, m, 2.5, seed=3).astype(np.float64)
    ev = np.sort(np.linalg.eigvalsh(w.T @ w / n))
    g = ck.gaussian_matrix(n, m, seed=4).astype(np.float64)
    mp = np.sort(np.linalg.eigvalsh(g.T @ g / n))
    bulk = int(0.7 * m) - 1
    np.testing.assert_allclose(ev[:bulk:16], mp[:bulk:16], rtol=0.15)
    edge = (1 + np.sqrt(m / n)) ** 2
    assert ev[-1] > 10 * edge and ev[bulk] < edge


def test_heavy_tail_families_and_their_checks():
    assert ck._tail(True) == ck.DEFAULT_HEAVY_TAIL == ck.HeavyTail("spectrum", 2.6)
    assert ck._tail(2.5) == ck.HeavyTail("pareto", 2.5)  # a number keeps its old meaning
    assert ck._tail(False) is None
    for bad in ({"family": "cauchy"}, {"exponent": 1.0}, {"tail_fraction": 1.0}):
        with pytest.raises(ValueError):
            ck.HeavyTail(**bad)
    # a conv weight: each W[:, :, i, j] is a matrix of the family (pooled by the analysis)
    w = ck.HeavyTail().matrix(np.random.default_rng(0), (64, 3, 7, 7))
    assert w.shape == (64, 3, 7, 7) and np.isfinite(w).all()
    # same seed and name → same values, whichever file or shard they land in
    a = ck.demo_state_dict("cnn", seed=5, heavy_tailed=True, stem=7)["conv1.weight"]
    b = ck.demo_state_dict("cnn", seed=5, heavy_tailed=True, stem=7)["conv1.weight"]
    assert a.shape == (16, 3, 7, 7) and bool((a == b).all())
