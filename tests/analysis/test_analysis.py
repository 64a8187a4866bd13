"""analyze_tensors / analyze / model_summary: one row per tensor, bad tensors isolated."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn as nn

from hubscan.analysis.summary import model_summary
from hubscan.analysis.tensors import LAYER_COLUMNS, analyze_tensors
from hubscan.api import analyze
from hubscan.errors import MalformedCheckpoint, TransientFetchError
from hubscan.esd.powerlaw.fit import fit_power_law
from hubscan.options import AnalysisOptions
from hubscan.refs import TensorRef

FAST = AnalysisOptions(compare=False, mp_fit=False)


def ref(name, t, load=None):
    return TensorRef(name=name, shape=tuple(t.shape), dtype={torch.float32: "F32", torch.int64: "I64"}[t.dtype],
                     file="m.safetensors", load=load or (lambda: t))


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_one_row_per_tensor_and_bad_tensors_fail_alone():
    nan = rand(32, 16)
    nan[3, 4] = float("nan")

    def broken():
        raise MalformedCheckpoint("bytes out of range")

    tensors = [
        ref("a.weight", rand(64, 32)),
        ref("nan.weight", nan),
        ref("zero.weight", torch.zeros(32, 16)),
        ref("row.weight", rand(1, 50)),
        ref("empty.weight", torch.zeros(0, 5)),
        ref("broken.weight", rand(16, 16), load=broken),
        ref("a.bias", rand(64)),
        ref("ids", torch.arange(10).reshape(2, 5)),
        ref("b.weight", rand(48, 24, seed=1)),
    ]
    rows = [lr.row for lr in analyze_tensors(tensors, FAST)]
    assert [r["tensor"] for r in rows] == [t.name for t in tensors]
    assert [r["layer_id"] for r in rows] == list(range(len(tensors)))
    st = {r["tensor"]: r for r in rows}
    assert st["a.weight"]["status"] == st["b.weight"]["status"] == "ok"
    for name, msg in [("nan.weight", "NaN"), ("zero.weight", "all-zero"), ("empty.weight", "empty"),
                      ("broken.weight", "out of range")]:
        assert st[name]["status"] == "error" and msg in st[name]["message"], name
    assert st["broken.weight"]["error_class"] == "MalformedCheckpoint"
    assert st["nan.weight"]["error_class"] == "MatrixError"
    assert st["row.weight"]["status"] == "skipped" and "min_evals" in st["row.weight"]["skip_reason"]
    assert st["a.bias"]["status"] == st["ids"]["status"] == "skipped"
    assert set(rows[0]) == set(LAYER_COLUMNS) - {"file_sha256", "analysis_version", "model_key", "written_at"}


def test_transient_errors_propagate():
    def cut():
        raise TransientFetchError("connection reset")

    with pytest.raises(TransientFetchError):
        list(analyze_tensors([ref("a.weight", rand(16, 16), load=cut)], FAST))


def test_evals_timings_and_batching_do_not_change_numbers():
    tensors = [ref(f"l{i}.weight", rand(40 + 7 * i, 20 + 3 * i, seed=i)) for i in range(7)]
    one = list(analyze_tensors(tensors, FAST, fit_batch=1))
    many = list(analyze_tensors(tensors, FAST, fit_batch=32))
    for a, b in zip(one, many):
        assert a.row["alpha"] == b.row["alpha"] and a.row["xmin"] == b.row["xmin"]
        assert a.evals.dtype == np.float64 and np.all(np.diff(a.evals) >= 0)
        assert a.evals.size == a.row["num_evals"] and a.evals.max() == a.row["lambda_max"]
        assert a.row["eig_s"] >= 0 and a.row["fit_s"] >= 0


def test_seed_convention_scale_and_fit():
    w = torch.from_numpy(np.random.default_rng(0).standard_t(3, (120, 60)).astype(np.float32))
    ww = next(analyze_tensors([ref("x.weight", w)], FAST))
    seed = next(analyze_tensors([ref("x.weight", w)], AnalysisOptions(convention="seed", compare=False, mp_fit=False)))
    np.testing.assert_allclose(seed.evals, ww.evals / 120, rtol=1e-12)
    assert seed.row["convention"] == "seed" and seed.row["fitter"] == "seed"
    fit = fit_power_law(seed.evals, fitter="seed")
    assert seed.row["alpha"] == fit.alpha and seed.row["xmin"] == fit.xmin
    assert seed.row["norm"] == pytest.approx(ww.row["norm"] / 120)


def test_seed_convention_equals_powerlaw_1_5():
    powerlaw = pytest.importorskip("powerlaw")
    w = torch.from_numpy(np.random.default_rng(1).standard_t(2.5, (150, 60)).astype(np.float32))
    row = next(analyze_tensors([ref("x.weight", w)], AnalysisOptions(convention="seed", compare=False,
                                                                     mp_fit=False))).row
    evals = np.sort(np.linalg.svd(w.numpy().astype(np.float64), compute_uv=False) ** 2 / 150)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        ref_fit = powerlaw.Fit(evals, xmax=np.max(evals), verbose=False)
    assert row["xmin"] == pytest.approx(ref_fit.xmin, rel=1e-9)
    assert row["alpha"] == pytest.approx(ref_fit.alpha, abs=1e-6)


def test_compare_columns_come_from_distribution_compare():
    from hubscan.esd.compare import distribution_compare

    w = torch.from_numpy(np.random.default_rng(2).standard_t(2.5, (200, 100)).astype(np.float32))
    lr = next(analyze_tensors([ref("x.weight", w)], AnalysisOptions(mp_fit=False)))
    cmp = distribution_compare(lr.evals[lr.evals > 1e-5], alpha=lr.row["alpha"], xmin=lr.row["xmin"])
    for col, value in cmp.row().items():
        assert lr.row[col] == (pytest.approx(value) if isinstance(value, float) else value), col
    assert lr.row["best_family"] is not None


def test_clip_xmax_matches_weightwatcher():
    ww = pytest.importorskip("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    rng = np.random.default_rng(0)
    model = nn.Sequential(*[nn.Linear(120, 300) for _ in range(6)])
    with torch.no_grad():
        for i, lin in enumerate(model):
            w = rng.standard_t(3, (300, 120)) if i % 2 == 0 else rng.standard_normal((300, 120))
            lin.weight.copy_(torch.from_numpy(0.05 * w))
    ours = [r for r in analyze(model, compare=False, mp_fit=False, fix_fingers="clip_xmax").to_pylist()
            if r["status"] == "ok"]
    plain = [r for r in analyze(model, compare=False, mp_fit=False).to_pylist() if r["status"] == "ok"]
    d = ww.WeightWatcher(model=model).analyze(fix_fingers="clip_xmax")
    assert [r["alpha"] for r in ours] == pytest.approx(list(d["alpha"]), abs=1e-9)
    assert [r["xmax"] for r in ours] == pytest.approx(list(d["xmax"]), rel=1e-12)
    assert any(o["alpha"] < p["alpha"] - 1 for o, p in zip(ours, plain))  # some finger was clipped


def test_analyze_table_schema_and_inputs(tmp_path):
    import pyarrow as pa

    from hubscan.lake.schema import default_registry

    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    table = analyze(model, compare=False)
    schema = default_registry()["layers"].arrow
    assert table.schema.names == schema.names
    assert [f.type for f in table.schema] == [f.type for f in schema]
    rows = table.to_pylist()
    assert [r["tensor"] for r in rows] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert rows[0]["longname"] == "0" and rows[0]["analysis_version"] == AnalysisOptions(compare=False).analysis_version
    assert rows[0]["phase"] is not None and rows[0]["sigma_mp"] is not None  # mp_fit is on by default
    # a state dict (wrapped, as training scripts save them) and a file give the same numbers
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    from_sd = analyze({"state_dict": sd}, compare=False).to_pylist()
    assert [r["alpha"] for r in from_sd] == [r["alpha"] for r in rows]
    from safetensors.torch import save_file

    save_file(sd, str(tmp_path / "model.safetensors"))
    from_file = analyze(tmp_path / "model.safetensors", compare=False).to_pylist()
    by_name = {r["tensor"]: r for r in from_file}
    assert by_name["0.weight"]["alpha"] == rows[0]["alpha"]
    assert by_name["0.weight"]["file"] == "model.safetensors" and len(by_name["0.weight"]["file_sha256"]) == 64
    with pytest.raises(TypeError):
        analyze(42)
    assert isinstance(table, pa.Table)


def test_model_summary_columns():
    rows = [
        {"status": "ok", "alpha": 3.0, "alpha_weighted": 1.0, "log_norm": 1.0, "log_spectral_norm": 0.5,
         "log_alpha_norm": 2.0, "stable_rank": 10.0, "warning": None, "layer_id": 0},
        {"status": "ok", "alpha": 1.5, "alpha_weighted": 2.0, "log_norm": 3.0, "log_spectral_norm": 1.5,
         "log_alpha_norm": 4.0, "stable_rank": 20.0, "warning": "over-trained,poor-fit", "layer_id": 1},
        {"status": "fit-failed", "alpha": None, "log_norm": 2.0, "log_spectral_norm": 1.0,
         "stable_rank": 30.0, "warning": "failed", "layer_id": 2},
        {"status": "ok", "alpha": 7.0, "alpha_weighted": 3.0, "log_norm": 2.0, "log_spectral_norm": 1.0,
         "log_alpha_norm": 6.0, "stable_rank": 40.0, "warning": "under-trained", "layer_id": 3},
        {"status": "skipped"}, {"status": "error"},
    ]
    s = model_summary(rows)
    assert (s["n_tensors"], s["n_analysed"], s["n_skipped"], s["n_failed"]) == (6, 4, 1, 1)
    assert s["alpha_mean"] == pytest.approx((3 + 1.5 + 7) / 3)
    assert s["alpha_median"] == 3.0
    assert s["ww_alpha_mean"] == pytest.approx((3 + 1.5 - 1 + 7) / 4)
    assert s["log_norm_mean"] == pytest.approx(2.0) and s["stable_rank_mean"] == pytest.approx(25.0)
    assert s["alpha_weighted_mean"] == pytest.approx(2.0) and s["log_alpha_norm_mean"] == pytest.approx(4.0)
    assert s["frac_alpha_2_6"] == pytest.approx(1 / 3) and s["frac_alpha_2_4"] == pytest.approx(1 / 3)
    assert (s["n_over_trained"], s["n_under_trained"]) == (1, 1)
    without_head = model_summary(rows, exclude_final_layer=True)
    assert without_head["alpha_mean"] == pytest.approx(2.25) and without_head["n_under_trained"] == 0
    assert model_summary([])["alpha_mean"] is None
