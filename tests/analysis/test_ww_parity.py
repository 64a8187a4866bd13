"""Convention ``ww`` equals ``weightwatcher.WeightWatcher(model=m).analyze()`` (issue 3).

One torch model with ≥ 30 analysed matrices — Linear (Gaussian, Student-t and Pareto
weights, several aspect ratios, small-N tails), Conv2d (3×3, 1×1, 5×5, weightwatcher's
"channels first" path), GPT-2 ``Conv1D``, Embedding — plus tensors weightwatcher skips
(biases, LayerNorm, too-small layers). Asserted: identical layer set and skip decisions,
identical xmin, |Δα| ≤ 1e-4 on ≥ 99 % of layers, every norm column within 1e-6 relative.
The deliberate differences are asserted as such: a failed fit (ours: NULL alpha,
``fit-failed``, warning ``failed``; weightwatcher: α = −1, "over-trained") and the Conv2d
``N``/``M`` swap of weightwatcher for ``out < in`` with an even kernel size.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn as nn
from transformers.pytorch_utils import Conv1D

from hubscan.analysis.summary import model_summary
from hubscan.api import analyze

ww = pytest.importorskip("weightwatcher")
logging.getLogger("weightwatcher").setLevel(logging.ERROR)

NORM_COLUMNS = ["norm", "log_norm", "spectral_norm", "log_spectral_norm", "stable_rank",
                "sv_max", "sv_min", "lambda_max", "entropy", "alpha_weighted", "log_alpha_norm"]
EXACT_COLUMNS = ["N", "M", "rf", "num_evals", "matrix_rank", "rank_loss", "weak_rank_loss",
                 "num_pl_spikes"]
FIT_COLUMNS = ["xmin", "xmax", "D", "sigma"]


class ParityNet(nn.Module):
    """≥ 30 weight matrices of every kind weightwatcher analyses, and some it skips."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        rng = np.random.default_rng(0)
        self.emb = nn.Embedding(500, 64)
        self.pos = nn.Embedding(128, 64)
        self.tiny_emb = nn.Embedding(2, 64)                       # skipped: M = 2
        self.blocks = nn.ModuleList()
        for i in range(4):
            blk = nn.Module()
            blk.ln = nn.LayerNorm(64)                             # skipped: norm
            blk.c_attn = Conv1D(192, 64)                          # GPT-2, stored (64, 192)
            blk.c_proj = Conv1D(64, 64)
            blk.fc = nn.Linear(64, 256)
            blk.out = nn.Linear(256, 64)
            self.blocks.append(blk)
        self.convs = nn.Sequential(
            nn.Conv2d(3, 16, 3), nn.Conv2d(16, 32, 3), nn.Conv2d(32, 32, 1), nn.Conv2d(32, 8, 5),
            nn.Conv2d(8, 8, 3), nn.Conv2d(3, 4, 5),               # 3+4 < 5+5: ww "channels first"
        )
        self.heavy = nn.ModuleList(nn.Linear(m, n, bias=False) for n, m in
                                   [(300, 100), (200, 200), (128, 512), (400, 64)])
        self.small_n = nn.ModuleList([nn.Linear(12, 40), nn.Linear(30, 15), nn.Linear(9, 9)])
        self.too_small = nn.Linear(4, 5)                          # skipped: M = 4
        self.head = nn.Linear(64, 10)
        with torch.no_grad():
            # heavy-tailed weights: Student-t and Pareto entries
            for k, lin in enumerate(self.heavy):
                shape = tuple(lin.weight.shape)
                w = rng.standard_t(2.5, shape) if k % 2 == 0 else \
                    rng.pareto(1.8, shape) * rng.choice([-1, 1], shape)
                lin.weight.copy_(torch.from_numpy(0.02 * w))
            for blk in self.blocks:
                blk.c_attn.weight.normal_(0, 0.02, generator=g)
                blk.c_proj.weight.normal_(0, 0.02, generator=g)


@pytest.fixture(scope="module")
def parity():
    torch.manual_seed(1)
    model = ParityNet()
    ours = analyze(model, compare=False, mp_fit=False).to_pylist()
    details = ww.WeightWatcher(model=model).analyze()
    return model, ours, details


def _analysed(rows):
    return [r for r in rows if r["status"] in ("ok", "fit-failed")]


def test_identical_layer_set_and_skips(parity):
    _, ours, details = parity
    analysed = _analysed(ours)
    assert len(analysed) >= 30
    assert [r["longname"] for r in analysed] == list(details["longname"])
    skipped = {r["longname"] for r in ours if r["status"] == "skipped" and r["tensor"].endswith(".weight")}
    assert {"tiny_emb", "too_small"} <= skipped and all(f"blocks.{i}.ln" in skipped for i in range(4))
    assert not skipped & set(details["longname"])
    kinds = {r["longname"]: r["kind"] for r in analysed}
    assert kinds["emb"] == "embedding" and kinds["convs.1"] == "conv2d" and kinds["blocks.0.c_attn"] == "dense"


def test_alpha_xmin_and_norms_match(parity):
    _, ours, details = parity
    d = details.set_index("longname")
    deltas = []
    for r in _analysed(ours):
        ref = d.loc[r["longname"]]
        for col in EXACT_COLUMNS:
            assert r[col] == int(ref[col]), (r["longname"], col)
        assert r["Q"] == pytest.approx(float(ref["Q"]), rel=1e-12)
        for col in NORM_COLUMNS:
            assert r[col] == pytest.approx(float(ref[col]), rel=1e-6), (r["longname"], col)
        for col in FIT_COLUMNS:
            assert r[col] == pytest.approx(float(ref[col]), rel=1e-9), (r["longname"], col)
        deltas.append(abs(r["alpha"] - float(ref["alpha"])))
        if ref["warning"]:
            assert ref["warning"] in r["warning"].split(",")
        else:
            assert not {"over-trained", "under-trained"} & set((r["warning"] or "").split(","))
    deltas = np.array(deltas)
    assert np.mean(deltas <= 1e-4) >= 0.99
    assert deltas.max() < 1e-9  # measured: ~1e-14 (docs/metrics.md)


def test_summary_matches_get_summary(parity):
    model, ours, details = parity
    s = model_summary(ours)
    ref = ww.WeightWatcher().get_summary(details)
    assert s["ww_alpha_mean"] == pytest.approx(ref["alpha"], rel=1e-9)
    assert s["log_norm_mean"] == pytest.approx(ref["log_norm"], rel=1e-9)
    assert s["log_spectral_norm_mean"] == pytest.approx(ref["log_spectral_norm"], rel=1e-9)
    assert s["stable_rank_mean"] == pytest.approx(ref["stable_rank"], rel=1e-9)
    # no failed fit here: our successful-fit means equal weightwatcher's plain means
    assert s["alpha_mean"] == pytest.approx(ref["alpha"], rel=1e-9)
    assert s["alpha_weighted_mean"] == pytest.approx(ref["alpha_weighted"], rel=1e-9)
    assert s["n_analysed"] == len(details)
    assert s["n_over_trained"] == int((details["warning"] == "over-trained").sum())
    assert s["n_under_trained"] == int((details["warning"] == "under-trained").sum())


class FailedFitNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ok = nn.Linear(64, 128)
        self.dead = nn.Linear(64, 64)  # every eigenvalue below weightwatcher's 1e-5 threshold
        with torch.no_grad():
            self.dead.weight.mul_(1e-4)


def test_failed_fit_is_null_not_minus_one():
    torch.manual_seed(2)
    model = FailedFitNet()
    ours = {r["longname"]: r for r in _analysed(analyze(model, compare=False).to_pylist())}
    d = ww.WeightWatcher(model=model).analyze().set_index("longname")
    assert float(d.loc["dead", "alpha"]) == -1 and d.loc["dead", "warning"] == "over-trained"
    dead = ours["dead"]
    assert dead["status"] == "fit-failed" and dead["warning"] == "failed"
    assert dead["alpha"] is None and dead["alpha_weighted"] is None and dead["log_alpha_norm"] is None
    assert dead["xmin"] is None and dead["num_pl_spikes"] is None
    for col in ("norm", "log_norm", "spectral_norm", "stable_rank", "entropy", "sv_max"):
        assert dead[col] == pytest.approx(float(d.loc["dead", col]), rel=1e-6)
    s = model_summary(ours.values())
    ref = ww.WeightWatcher().get_summary(d.reset_index())
    assert s["ww_alpha_mean"] == pytest.approx(ref["alpha"], rel=1e-12)  # −1 counted, as ww
    assert s["alpha_mean"] == pytest.approx(ours["ok"]["alpha"])          # ours: fits only


def test_conv2d_n_m_swap_is_a_documented_difference():
    """weightwatcher swaps N and M once per slice when out < in: 4 slices → N < M."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(16, 8, 2))
    ours = _analysed(analyze(model, compare=False).to_pylist())[0]
    ref = ww.WeightWatcher(model=model).analyze().iloc[0]
    assert (int(ref["N"]), int(ref["M"])) == (8, 16)         # weightwatcher's report
    assert (ours["N"], ours["M"], ours["Q"]) == (16, 8, 2.0)  # ours: N ≥ M always
    for col in ("alpha", "xmin", "norm", "spectral_norm", "entropy"):
        assert ours[col] == pytest.approx(float(ref[col]), rel=1e-9)


def test_mp_fit_matches_weightwatcher():
    torch.manual_seed(4)
    rng = np.random.default_rng(4)
    model = nn.Sequential(nn.Linear(100, 300), nn.Linear(200, 200), nn.Conv2d(16, 32, 3),
                          Conv1D(96, 64), nn.Linear(64, 256))
    with torch.no_grad():
        model[4].weight.copy_(torch.from_numpy(0.05 * rng.standard_t(2.2, (256, 64))))
    ours = _analysed(analyze(model, compare=False, mp_fit=True).to_pylist())
    d = ww.WeightWatcher(model=model).analyze(mp_fit=True)
    assert len(ours) == len(d)
    for r, (_, ref) in zip(ours, d.iterrows()):
        assert r["num_spikes"] == int(ref["num_spikes"])
        for col in ("sigma_mp", "bulk_max", "bulk_min", "mp_softrank"):
            assert r[col] == pytest.approx(float(ref[col]), rel=1e-9), (r["longname"], col)
    assert ours[-1]["phase"] == "heavy-tailed"
