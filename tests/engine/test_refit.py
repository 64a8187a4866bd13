"""Re-fit from the spectra table: new fit options give the numbers a fresh analysis gives,
with no request to the hub."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hubscan.engine.incremental import incremental_run
from hubscan.engine.refit import (
    FIT_COLUMNS,
    options_by_version,
    refit_lake,
    refit_sources,
)
from hubscan.engine.scan import run_scan
from hubscan.engine.spec import loads_spec
from hubscan.lake import Lake
from hubscan.options import AnalysisOptions

#: Columns that legitimately differ between two writes of the same analysis.
PROVENANCE = {"written_at", "model_key", "scan_date", "eig_s", "fit_s", "scan_id", "analyze_s",
              "fetch_s", "bytes_fetched", "hubscan_version", "computed_by"}
OLD = "compare = false"
NEW = 'compare = true\nfitter = "truncated"\nmin_tail = 5\nfix_fingers = "clip_xmax"'


def tensors(seed: int) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    return {"l0.weight": r.standard_t(3, (96, 64)).astype(np.float32),
            "l1.weight": r.standard_normal((80, 48)).astype(np.float32),
            "conv.weight": r.standard_t(4, (16, 8, 3, 3)).astype(np.float32),
            "tiny.weight": r.standard_normal((6, 4)).astype(np.float32),   # skipped: < min_evals
            "l1.bias": r.standard_normal(80).astype(np.float32)}


def spec(lake: Path, analysis: str):
    return loads_spec(f"""
[scan]
name = "s"
lake = "{lake}"
[[sources]]
kind = "hf"
author = "acme"
file_metadata = "paths-info"     # LFS sha256 per file: content dedup (c-fork reuses c's file)
[analysis]
{analysis}
[retry]
backoff_s = 0.01
max_backoff_s = 0.05
""")


@pytest.fixture
def hub(fakehub):
    for i, n in enumerate("abc"):
        fakehub.add_model(f"acme/{n}", tensors(i), config={"architectures": ["TinyNet"]})
    fakehub.add_model("acme/c-fork", tensors(2), config={"architectures": ["TinyNet"]})  # same file as c
    return fakehub


def rows(lake: Path, sql: str, version: str) -> list[dict]:
    return Lake(str(lake)).query(sql, {"v": version}).to_pylist()


def assert_rows_equal(got: list[dict], want: list[dict], *, rtol: float = 2e-5) -> None:
    """Same keys, equal strings/ints/labels, floats equal to float32-spectrum precision."""
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        for col in set(g) | set(w):
            if col in PROVENANCE:
                continue
            a, b = g.get(col), w.get(col)
            if isinstance(a, float) or isinstance(b, float):
                assert a is not None and b is not None, (col, a, b)
                if math.isnan(a) or math.isnan(b):
                    assert math.isnan(a) and math.isnan(b), (col, a, b)
                else:
                    assert a == pytest.approx(b, rel=rtol, abs=1e-9), (g.get("tensor"), col, a, b)
            else:
                assert a == b, (g.get("tensor"), col, a, b)


def test_refit_equals_a_fresh_analysis_and_downloads_nothing(hub, tmp_path):
    old, new = spec(tmp_path / "lake", OLD), spec(tmp_path / "lake", NEW)
    assert run_scan(old, executor="local", progress=False).status == "completed"
    v_old, v_new = old.analysis.analysis_version, new.analysis.analysis_version
    assert v_old != v_new

    n_requests = len(hub.requests)
    summary = refit_lake(Lake(new.lake), new.analysis)
    assert len(hub.requests) == n_requests                     # not one request to the hub
    assert (summary.from_versions, summary.to_version) == ((v_old,), v_new)
    assert (summary.n_models, summary.n_files, summary.n_reused_files) == (4, 3, 1)
    assert summary.n_layers == 9                               # 3 analysed matrices × 3 files

    fresh = spec(tmp_path / "fresh", NEW)
    assert run_scan(fresh, executor="local", progress=False).status == "completed"
    q_layers = "SELECT * FROM file_layers WHERE analysis_version = $v ORDER BY file_sha256, tensor"
    refit_layers = rows(tmp_path / "lake", q_layers, v_new)
    assert_rows_equal(refit_layers, rows(tmp_path / "fresh", q_layers, v_new))
    q_models = "SELECT * FROM models WHERE analysis_version = $v ORDER BY repo_id"
    assert_rows_equal(rows(tmp_path / "lake", q_models, v_new),
                      rows(tmp_path / "fresh", q_models, v_new))
    q_spectra = "SELECT file_sha256, tensor, evals FROM spectra WHERE analysis_version = $v ORDER BY 1, 2"
    assert rows(tmp_path / "lake", q_spectra, v_new) == rows(tmp_path / "fresh", q_spectra, v_new)
    q_files = ("SELECT repo_id, file, f.file_sha256 FROM model_files f JOIN models USING (model_key) "
               "WHERE f.analysis_version = $v ORDER BY 1")
    assert rows(tmp_path / "lake", q_files, v_new) == rows(tmp_path / "fresh", q_files, v_new)

    # It is a new fit, not a copy: the truncated fitter and min_tail moved the alphas.
    before = {(r["file_sha256"], r["tensor"]): r for r in rows(tmp_path / "lake", q_layers, v_old)}
    moved = [abs(r["alpha"] - before[(r["file_sha256"], r["tensor"])]["alpha"])
             for r in refit_layers if r["status"] == "ok"]
    assert max(moved) > 1e-3
    assert any(r["R_exponential"] is not None for r in refit_layers)   # compare = true took effect
    assert all(r["R_exponential"] is None for r in before.values())
    # The per-model views see the re-fitted version like any other.
    n = Lake(new.lake).query("SELECT count(*) AS n FROM layers WHERE analysis_version = $v",
                             {"v": v_new}).column("n")[0].as_py()
    assert n == 4 * 5
    scan = Lake(new.lake).query("SELECT * FROM scans WHERE scan_id = $s", {"s": summary.scan_id}).to_pylist()
    assert scan[0]["bytes_fetched"] == 0 and scan[0]["n_done"] == 4

    # Nothing left to do: a second re-fit writes nothing.
    assert refit_lake(Lake(new.lake), new.analysis).n_models == 0


def test_compatible_versions_come_from_the_scans_rows(hub, tmp_path):
    old = spec(tmp_path / "lake", OLD)
    run_scan(old, executor="local", progress=False)
    lake = Lake(old.lake)
    assert set(options_by_version(lake)) == {old.analysis.analysis_version}
    fit_only = AnalysisOptions(compare=False, mp_fit=False, fitter="seed")
    assert refit_sources(lake, fit_only) == [old.analysis.analysis_version]
    # Eigenvalue options differ: other scale, other skip rules, other tensors → no re-fit.
    for changed in (AnalysisOptions(convention="seed"), AnalysisOptions(min_evals=10),
                    AnalysisOptions(layers_include="l0")):
        assert refit_sources(lake, changed) == []
        assert refit_lake(lake, changed).n_models == 0
    with pytest.raises(ValueError, match="eigenvalue options differ"):
        refit_sources(lake, AnalysisOptions(max_evals=100), from_options=old.analysis)


def test_scheduled_run_refits_instead_of_downloading(hub, tmp_path):
    """The spec's fit options change between two runs: the run re-fits, the scan fetches nothing."""
    run_scan(spec(tmp_path / "lake", OLD), executor="local", progress=False)
    hub.reset_log()
    result = incremental_run(spec(tmp_path / "lake", NEW), executor="local")
    assert result.status == "completed"
    assert result.refit.n_models == 4
    assert (result.scan.n_planned, result.scan.n_skipped) == (0, 4)
    assert hub.count("resolve") == 0 and hub.count("cdn") == 0
    assert result.counts()["n_refit"] == 4


def test_models_without_spectra_are_rescanned(hub, tmp_path):
    no_spectra = spec(tmp_path / "lake", OLD + "\nkeep_spectra = false")
    run_scan(no_spectra, executor="local", progress=False)
    new = spec(tmp_path / "lake", NEW)
    summary = refit_lake(Lake(new.lake), new.analysis)
    assert summary.n_models == 0 and len(summary.not_refittable) == 4
    hub.reset_log()
    result = incremental_run(new, executor="local")
    assert result.scan.n_done == 4 and hub.count("resolve") == 3   # c and c-fork share a file


def test_fit_columns_are_layers_columns():
    from hubscan.analysis.tensors import LAYER_COLUMNS

    assert set(FIT_COLUMNS) <= set(LAYER_COLUMNS)
