"""``hubscan.deltas`` against weightwatcher 0.7.7 (the test oracle): ``distances()`` with each
method, and ``analyze(base_model=…)`` — the ESD and fit of W − W_base — on a small CNN."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import hubscan

ww = pytest.importorskip("weightwatcher")


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(4, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 24, 3), torch.nn.Flatten(),
        torch.nn.Linear(96, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10), torch.nn.Embedding(120, 16))


@pytest.fixture(scope="module")
def pair():
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    base = _net(0)
    ft = _net(0)
    with torch.no_grad():  # a fine-tune: the base plus a small update
        for p in ft.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ft, base


@pytest.mark.parametrize("method", ["raw", "euclidean", "cka"])
def test_distances_equal_weightwatcher(pair, method):
    ft, base = pair
    ours = hubscan.deltas(ft, base).to_pandas()
    _, _, theirs = ww.WeightWatcher().distances(ft, base, method=method)
    assert len(ours) == len(theirs) == 5
    want = {f"{ln}.weight": v for ln, v in zip(theirs["longname"], theirs["delta_W"])}
    got = dict(zip(ours["tensor"], ours[f"delta_{method}"]))
    assert set(got) == set(want)
    for k in want:  # weightwatcher computes in the weights' float32; ours in float64
        assert got[k] == pytest.approx(float(want[k]), rel=1e-6), k


def test_delta_esd_equals_weightwatcher_base_model(pair):
    ft, base = pair
    ours = hubscan.deltas(ft, base, esd=True).to_pandas().set_index("tensor")
    theirs = ww.WeightWatcher().analyze(model=ft, base_model=base)
    assert len(theirs) == len(ours)
    for _, r in theirs.iterrows():
        o = ours.loc[f"{r['longname']}.weight"]
        assert o["diff_status"] == "ok"
        assert o["diff_alpha"] == pytest.approx(r["alpha"], rel=1e-6)
        assert o["diff_xmin"] == pytest.approx(r["xmin"], rel=1e-6)
        assert o["diff_num_pl_spikes"] == r["num_pl_spikes"]
        assert o["diff_log_norm"] == pytest.approx(r["log_norm"], rel=1e-6)
        assert o["diff_log_spectral_norm"] == pytest.approx(r["log_spectral_norm"], rel=1e-6)


def test_same_model_is_at_distance_zero(pair):
    _, base = pair
    t = hubscan.deltas(base, base, esd=True).to_pandas()
    assert (t["delta_raw"] == 0).all() and (t["delta_euclidean"] == 0).all()
    # CKA of W with itself: ||W'W|| / sqrt(||W'W|| ||WW'||) = 1, as ||W'W||_F = ||WW'||_F
    assert np.allclose(t["delta_cka"], 1.0, rtol=1e-12, atol=0)
    assert (t["diff_status"] == "zero").all() and t["diff_alpha"].isna().all()


def test_state_dicts_with_a_missing_and_a_reshaped_tensor():
    rng = np.random.default_rng(0)
    a = {"x.weight": rng.standard_normal((40, 20)).astype(np.float32),
         "y.weight": rng.standard_normal((40, 20)).astype(np.float32),
         "z.weight": rng.standard_normal((30, 20)).astype(np.float32)}
    b = {"x.weight": a["x.weight"] + 1, "y.weight": rng.standard_normal((20, 40)).astype(np.float32)}
    t = {r["tensor"]: r for r in hubscan.deltas(a, b).to_pylist()}
    assert t["x.weight"]["status"] == "ok"
    assert t["x.weight"]["delta_raw"] == pytest.approx(np.sqrt(40 * 20))
    assert t["y.weight"]["status"] == "shape-mismatch"
    assert t["z.weight"]["status"] == "missing-in-base"


def test_an_unreadable_base_fails_its_rows_once_never_the_model(tmp_path):
    """A base whose file is malformed: one reason on every delta row, the model's own layers intact."""
    from hubscan.analysis.model import analyze_model
    from hubscan.options import AnalysisOptions, DeltaOptions
    from hubscan.sources import resolve
    from hubscan.testing import checkpoints as ck

    (tmp_path / "ft").mkdir()
    ck.write_safetensors(tmp_path / "ft" / "model.safetensors",
                         {f"l{i}.weight": ck.gaussian_matrix(32, 16, seed=i) for i in range(3)})
    (tmp_path / "base").mkdir()
    ck.write_safetensors(tmp_path / "base" / "model.safetensors", {"l0.weight": ck.gaussian_matrix(32, 16)})
    ft, base = resolve(str(tmp_path / "ft"))[0], resolve(str(tmp_path / "base"))[0]
    ck.invalid_json_header(tmp_path / "base" / "model.safetensors")  # broken after it was resolved
    res = analyze_model(ft, AnalysisOptions(compare=False), bases=(base,), deltas=DeltaOptions(distances=True))
    assert res.model["status"] == "ok" and len(res.layers) == 3
    assert [d["status"] for d in res.deltas] == ["error"] * 3
    assert len({d["message"] for d in res.deltas}) == 1 and "unreadable" in res.deltas[0]["message"]
