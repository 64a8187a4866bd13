"""A random-like layer is never called over-trained where people read it — the model and
architecture summaries and the report — while the ``warning`` column keeps weightwatcher's
label for parity. One rule, spelled twice (``esd.phases.is_over_trained`` in Python,
SQL in the views and the report); this checks both on real analysed rows.
"""

from __future__ import annotations

import hashlib
import itertools

import duckdb
import pytest
import torch

from hubscan.analysis.model import analyze_model
from hubscan.analysis.summary import model_summary
from hubscan.esd.phases import human_warning, is_over_trained
from hubscan.lake import Lake
from hubscan.options import AnalysisOptions
from hubscan.refs import ModelRef, WeightFile
from hubscan.report.data import HUMAN_WARNING_SQL, report_data
from hubscan.testing.checkpoints import gaussian_matrix, pareto_matrix, power_law_spectrum_matrix
from tests.plot_lakes import _opener

#: Real matrices, real analysis: weightwatcher's rule says "over-trained" (α < 2) for both the
#: small Gaussian (an MP bulk: random-like) and the Pareto μ = 1.5 one (a real heavy tail).
TENSORS = {
    "noise.weight": gaussian_matrix(32, 32, seed=5),
    "tail.weight": pareto_matrix(512, 256, 1.5, seed=0),
    "fine.weight": power_law_spectrum_matrix(512, 256, 3.0, seed=0),
}


@pytest.mark.parametrize("warning,phase,shown", [
    ("over-trained", "random-like", None),
    ("over-trained,poor-fit", "random-like", "poor-fit"),
    ("over-trained,rank-collapse,poor-fit", "random-like", "rank-collapse,poor-fit"),
    ("over-trained", "heavy-tailed", "over-trained"),
    ("over-trained", None, "over-trained"),
    ("under-trained,poor-fit", "random-like", "under-trained,poor-fit"),
    (None, "random-like", None),
    ("failed", None, "failed"),
])
def test_the_human_label(warning, phase, shown):
    assert human_warning(warning, phase) == shown
    assert is_over_trained(warning, phase) == ("over-trained" in (shown or ""))


def test_the_report_sql_says_what_the_python_rule_says():
    labels = ["over-trained", "under-trained", "rank-collapse", "poor-fit", "failed"]
    warnings = [None] + [",".join(c) for n in (1, 2, 3) for c in itertools.combinations(labels, n)]
    con = duckdb.connect()
    for w, p in itertools.product(warnings, [None, "random-like", "heavy-tailed", "bulk+spikes"]):
        got = con.execute(f"SELECT {HUMAN_WARNING_SQL} FROM (SELECT $1::VARCHAR AS warning, "
                          "$2::VARCHAR AS phase)", [w, p]).fetchone()[0]
        assert got == human_warning(w, p), (w, p)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    sd = {k: torch.from_numpy(v) for k, v in TENSORS.items()}
    digest = hashlib.sha256(b"human-warnings").hexdigest()
    ref = ModelRef(source="local", repo_id="demo/mixed", revision=digest[:12], arch="Mixed",
                   files=(WeightFile("model.safetensors", size=None, sha256=digest),))
    result = analyze_model(ref, AnalysisOptions(compare=False), opener=_opener(sd, "model.safetensors"))
    assert result.model["status"] == "ok", result.failures
    lk = Lake(str(tmp_path_factory.mktemp("human") / "lake"), fsync=False)
    lk.write(result)
    return lk, result


def test_weightwatchers_label_stays_in_the_lake(lake):
    _, result = lake
    rows = {r["tensor"]: r for r in result.layers}
    noise, tail = rows["noise.weight"], rows["tail.weight"]
    assert noise["phase"] == "random-like" and noise["alpha"] < 2 and noise["warning"] == "over-trained"
    assert tail["phase"] == "heavy-tailed" and tail["alpha"] < 2 and "over-trained" in tail["warning"]


def test_summaries_count_only_the_heavy_tailed_one(lake):
    lk, result = lake
    assert result.model["n_over_trained"] == 1 == model_summary(result.layers)["n_over_trained"]
    assert lk.query("SELECT n_over_trained FROM model_summary").to_pylist() == [{"n_over_trained": 1}]
    assert lk.query("SELECT n_over_trained FROM arch_summary").to_pylist() == [{"n_over_trained": 1}]


def test_the_report_calls_only_the_heavy_tailed_one_over_trained(lake):
    lk, _ = lake
    with lk.connect() as con:
        data = report_data(con)
    assert data.overview["over_trained"] == 1
    assert [r["tensor"] for r in data.over_layers] == ["tail.weight"]
    assert {r["warning"]: r["layers"] for r in data.warnings}.get("over-trained") == 1
    assert [a["over_trained"] for a in data.archs] == [1]
    shown = {r["tensor"]: r["warning"] for r in data.poor_fits}
    assert shown["noise.weight"] is None or "over-trained" not in shown["noise.weight"]
    assert all(p["why"] != "best-fitted heavy tail" or p["tensor"] == "fine.weight"
               for p in data.picked_layers)
