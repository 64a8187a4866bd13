"""``write_synthetic_lake`` (``hubscan lake synth``): the generated lake is a valid lake whose
rows agree with themselves — the views, the spectra and the models table — and is the same
for the same seed."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from hubscan.lake import Lake
from hubscan.lake.synthetic import write_synthetic_lake


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    lake = Lake(str(tmp_path_factory.mktemp("synth") / "lake"), fsync=False)
    rep = write_synthetic_lake(lake, models=120, layers=15, n_evals=16, units_per_file=25, seed=3)
    return lake, rep


def test_counts_agree_with_the_views_and_check_passes(synth):
    lake, rep = synth
    one = lambda sql: lake.query(sql).column(0)[0].as_py()  # noqa: E731
    # 120 repos: 6 forks (i % 20 == 19) that only reuse a file, 6 older revisions
    # (i % 10 == 9, forks excepted): 126 units, 120 of them analyse a file of 15 tensors.
    assert one("SELECT count(*) FROM raw_layers") == rep.layer_rows == 120 * 15
    assert one("SELECT count(*) FROM layers") == rep.model_layer_rows == 126 * 15
    assert one("SELECT count(*) FROM spectra") == rep.spectra_rows
    assert one("SELECT count(*) FROM models") == rep.units == 126
    assert one("SELECT count(*) FROM models_latest") == 120
    assert one("SELECT count(*) FROM repo_events WHERE event = 'new_revision'") == 6
    report = lake.check(strict=True)
    assert report.ok, report.findings


def test_rows_are_consistent_with_their_spectra(synth):
    lake, _ = synth
    rows = lake.query("""SELECT l.alpha, l.xmin, l.xmax, l.lambda_max, l.num_pl_spikes, l.warning,
                                l.num_evals, s.evals
                         FROM file_layers l JOIN spectra s USING (file_sha256, tensor, analysis_version)
                         WHERE l.status = 'ok'""").to_pylist()
    assert rows
    for r in rows:
        ev = np.asarray(r["evals"], dtype=np.float64)
        assert len(ev) == r["num_evals"] == 16
        assert np.isclose(r["lambda_max"], ev.max()) and np.isclose(r["xmax"], ev.max())
        assert np.any(np.isclose(ev, r["xmin"], rtol=1e-6))
        assert int(np.sum(ev >= r["xmin"] * (1 - 1e-6))) == r["num_pl_spikes"]
        expected = "over-trained" if r["alpha"] < 2 else "under-trained" if r["alpha"] > 6 else None
        assert r["warning"] == expected
    skipped = lake.query("SELECT count(*) FROM file_layers WHERE status = 'skipped' AND alpha IS NOT NULL")
    assert skipped.column(0)[0].as_py() == 0


def test_models_table_agrees_with_model_summary_and_forks_share_files(synth):
    lake, _ = synth
    rows = lake.query("""SELECT m.model_key, m.alpha_mean, s.alpha_mean AS view_mean
                         FROM models m JOIN model_summary s USING (model_key)""").to_pylist()
    assert len(rows) == 126
    for r in rows:
        assert np.isclose(r["alpha_mean"], r["view_mean"], rtol=1e-12), r["model_key"]
    forks = lake.query("""SELECT f.model_key, f.file_sha256 FROM model_files f WHERE f.reused""").to_pylist()
    assert len(forks) == 6
    for f in forks:
        owners = lake.query("SELECT count(*) FROM model_files WHERE file_sha256 = ? AND NOT reused",
                            [f["file_sha256"]]).column(0)[0].as_py()
        assert owners == 1


def test_same_seed_same_lake(tmp_path):
    tables = []
    for name in ("a", "b"):
        lake = Lake(str(tmp_path / name), fsync=False)
        write_synthetic_lake(lake, models=20, layers=5, n_evals=8, seed=7)
        tables.append(lake.query("SELECT * EXCLUDE (written_at) FROM layers ORDER BY model_key, tensor"))
    assert tables[0].equals(tables[1])
    with pytest.raises(ValueError, match="fork_every"):
        write_synthetic_lake(Lake(str(tmp_path / "c"), fsync=False), models=5, fork_every=1)


def test_cli_writes_and_compacts(tmp_path):
    from hubscan.cli import app

    r = CliRunner().invoke(app, ["lake", "synth", "--lake", str(tmp_path / "l"), "--models", "30",
                                 "--layers", "6", "--evals", "8"])
    assert r.exit_code == 0, r.output
    # 30 repos, 1 fork (reuses a file), 2 older revisions: 31 analysed units x 6 layers
    assert "186 layer rows" in r.output.replace(",", "")
    assert Lake(str(tmp_path / "l")).query("SELECT count(*) FROM models_latest").column(0)[0].as_py() == 30
    again = CliRunner().invoke(app, ["lake", "synth", "--lake", str(tmp_path / "l"), "--models", "3"])
    assert again.exit_code == 1 and "not empty" in again.output
