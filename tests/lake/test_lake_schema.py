"""Schema registry: JSON field lists → Arrow, strict row validation, schema evolution."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from importlib import resources

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hubscan.errors import LakeError, SchemaMismatch
from hubscan.lake import Lake
from hubscan.lake.schema import (
    META_TABLE,
    META_VERSION,
    arrow_type,
    default_registry,
    load_registry,
    rows_to_table,
)
from hubscan.lake.synthetic import synthetic_result

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def test_registry_has_every_table_with_docs_and_version():
    reg = default_registry()
    assert {"failures", "layers", "model_files", "models", "scans", "spectra"} <= set(reg.tables)
    layers = reg["layers"]
    assert layers.key == ("file_sha256", "tensor", "analysis_version")
    assert layers.arrow.metadata[META_TABLE.encode()] == b"layers"
    assert layers.arrow.metadata[META_VERSION.encode()] == str(layers.version).encode()
    assert reg.versions("layers") == list(range(1, layers.version + 1))
    alpha = layers.arrow.field("alpha")
    assert alpha.type == pa.float64() and alpha.nullable
    assert alpha.metadata[b"doc"]
    assert not layers.arrow.field("file_sha256").nullable
    assert layers.arrow.field("written_at").type == pa.timestamp("us", tz="UTC")
    assert reg["spectra"].arrow.field("evals").type.value_type == pa.float32()
    # path-only partition columns are added for readers, models.source is already a column
    assert layers.partition_only == ("source", "scan_date")
    assert reg["models"].partition_only == ("scan_date",)


@pytest.mark.parametrize("spec,expected", [
    ("string", pa.string()), ("int64", pa.int64()), ("float64", pa.float64()), ("bool", pa.bool_()),
    ("list<int64>", pa.list_(pa.field("element", pa.int64()))),
    ("list<string>", pa.list_(pa.field("element", pa.string()))),
    ("timestamp[us, tz=UTC]", pa.timestamp("us", tz="UTC")),
])
def test_type_strings(spec, expected):
    assert arrow_type(spec) == expected


def test_unknown_type_is_an_error():
    with pytest.raises(LakeError):
        arrow_type("decimal(3,2)")


def _layer(**over):
    row = {"file_sha256": "ab" * 32, "tensor": "w", "analysis_version": "v", "convention": "ww",
           "status": "ok", "written_at": NOW}
    row.update(over)
    return row


def test_rows_to_table_casts_numpy_and_fills_missing_columns():
    t = rows_to_table(default_registry()["layers"],
                      [_layer(N=np.int64(7), alpha=np.float32(2.5), shape=(3, 4))])
    assert t.schema.equals(default_registry()["layers"].arrow, check_metadata=True)
    row = t.to_pylist()[0]
    assert row["N"] == 7 and row["alpha"] == 2.5 and row["shape"] == [3, 4]
    assert row["xmin"] is None


@pytest.mark.parametrize("bad,match", [
    ({"alhpa": 2.0}, "unknown column"),
    ({"N": 3.5}, "not an integer"),
    ({"N": "7"}, "string"),
    ({"alpha": "2.1"}, "string"),
    ({"tensor": None}, "NULL"),
    ({"tensor": 3}, "layers.tensor"),
    ({"shape": ["a"]}, "layers.shape"),
])
def test_rows_to_table_rejects_wrong_rows(bad, match):
    with pytest.raises(SchemaMismatch, match=match):
        rows_to_table(default_registry()["layers"], [_layer(**bad)])


def test_write_rejects_a_bad_unit_and_leaves_nothing(tmp_path):
    lake = Lake(tmp_path / "lake", fsync=False)
    r = synthetic_result(repo_id="org/a")
    r.layers[0]["not_a_column"] = 1
    with pytest.raises(SchemaMismatch):
        lake.write(r)
    assert lake.done_model_keys() == set()
    assert lake.query("SELECT count(*) AS n FROM layers").column("n")[0].as_py() == 0


def test_every_written_file_has_the_registry_schema(tmp_path):
    lake = Lake(tmp_path / "lake", fsync=False)
    lake.write(synthetic_result(repo_id="org/a", files=["f1", "f2"], failures=2))
    lake.write_table("scans", [{"scan_id": "s1", "started_at": NOW, "status": "completed",
                                "written_at": NOW}])
    files = sorted((tmp_path / "lake").rglob("*.parquet"))
    assert {p.relative_to(tmp_path / "lake").parts[0] for p in files} == {
        "failures", "layers", "model_files", "models", "scans", "spectra"}
    for p in files:
        schema = pq.read_schema(p)
        table = schema.metadata[META_TABLE.encode()].decode()
        assert schema.equals(default_registry()[table].arrow, check_metadata=True), p
    assert lake.check().ok


def _copy_registry(tmp_path, *, drop: tuple[str, ...] = ()):
    src = resources.files("hubscan.schemas")
    d = tmp_path / "schemas"
    d.mkdir()
    for entry in src.iterdir():
        if entry.name.endswith(".json") and entry.name not in drop:
            (d / entry.name).write_text(entry.read_text())
    return d


def _registry_with_next(tmp_path):
    """The default registry plus a next ``layers`` version that adds one column."""
    d = _copy_registry(tmp_path)
    cur = default_registry()["layers"].version
    spec = json.loads((d / f"layers.v{cur}.json").read_text())
    spec["version"] = cur + 1
    spec["fields"].insert(-1, {"name": "localization_ratio", "type": "float64", "nullable": True,
                               "doc": "‖v‖₁/‖v‖∞ of the top eigenvector (added in the next version)"})
    (d / f"layers.v{cur + 1}.json").write_text(json.dumps(spec))
    return load_registry(d), d, cur + 1


def test_schema_evolution_adds_a_column_old_files_stay_readable(tmp_path):
    reg2, _, nxt = _registry_with_next(tmp_path)
    assert reg2.versions("layers") == list(range(1, nxt + 1)) and reg2["layers"].version == nxt
    root = tmp_path / "lake"
    old = Lake(root, fsync=False)  # writes files of the current version
    old.write(synthetic_result(repo_id="org/old", n_layers=4))
    new = Lake(root, registry=reg2, fsync=False)
    r = synthetic_result(repo_id="org/new", n_layers=4, seed=1)
    for row in r.layers:
        row["localization_ratio"] = 1.5
    new.write(r)
    # The new reader sees both: NULL for the old rows, the value for the new ones.
    t = new.query("SELECT repo_id, localization_ratio FROM layers ORDER BY repo_id, tensor").to_pylist()
    assert {(x["repo_id"], x["localization_ratio"]) for x in t} == {("org/new", 1.5), ("org/old", None)}
    assert len(t) == 8
    # The old reader still reads the lake (the extra column is simply not in its views).
    assert old.query("SELECT count(*) AS n FROM layers").column("n")[0].as_py() == 8
    # check validates each file against the version it was written with.
    assert new.check().ok
    # A new lake with only old files still has the new column (typed empty relation).
    only_old = Lake(tmp_path / "lake_old", registry=reg2, fsync=False)
    Lake(tmp_path / "lake_old", fsync=False).write(synthetic_result(repo_id="org/x", n_layers=2))
    cols = only_old.query("SELECT * FROM layers LIMIT 0").column_names
    assert "localization_ratio" in cols
    # compaction rewrites old files to the current version
    new.compact()
    for p in (root / "layers").rglob("*.parquet"):
        assert pq.read_schema(p).metadata[META_VERSION.encode()] == str(nxt).encode()
    assert new.query("SELECT count(*) FILTER (WHERE localization_ratio = 1.5) AS n FROM layers"
                     ).column("n")[0].as_py() == 4


def test_a_lake_with_v1_and_v2_layer_files_reads_both(tmp_path):
    """Issue 13: layers v2 adds how weights were stored; lakes written before stay readable."""
    reg1 = load_registry(_copy_registry(tmp_path, drop=("layers.v2.json",)))
    assert reg1["layers"].version == 1 and default_registry()["layers"].version >= 2
    root = tmp_path / "lake"
    Lake(root, registry=reg1, fsync=False).write(synthetic_result(repo_id="org/v1", n_layers=3))
    r = synthetic_result(repo_id="org/v2", n_layers=3, seed=1)
    for row in r.layers:
        row.update(source_format="gguf", quant_method="gguf:Q4_K", bits=4)
    lake = Lake(root, fsync=False)
    lake.write(r)
    versions = sorted(p.name.rsplit(".", 2)[-2] for p in (root / "layers").rglob("*.parquet"))
    assert versions == ["v1", "v2"]
    rows = lake.query("SELECT repo_id, quant_method, bits FROM layers ORDER BY repo_id").to_pylist()
    assert {(x["repo_id"], x["quant_method"], x["bits"]) for x in rows} == {
        ("org/v1", None, None), ("org/v2", "gguf:Q4_K", 4)}
    assert len(rows) == 6 and lake.check().ok


def test_evolution_may_not_drop_or_retype_columns(tmp_path):
    _, d, nxt = _registry_with_next(tmp_path)
    spec = json.loads((d / f"layers.v{nxt}.json").read_text())
    spec["fields"] = [f for f in spec["fields"] if f["name"] != "alpha"]
    (d / f"layers.v{nxt}.json").write_text(json.dumps(spec))
    with pytest.raises(LakeError, match="drops column 'alpha'"):
        load_registry(d)
    spec = json.loads((d / f"layers.v{nxt - 1}.json").read_text())
    spec["version"] = nxt
    spec["fields"].append({"name": "must", "type": "int64", "nullable": False, "doc": "x"})
    (d / f"layers.v{nxt}.json").write_text(json.dumps(spec))
    with pytest.raises(LakeError, match="must be nullable"):
        load_registry(d)


def test_check_flags_a_file_with_a_foreign_schema(tmp_path):
    lake = Lake(tmp_path / "lake", fsync=False)
    lake.write(synthetic_result(repo_id="org/a", n_layers=3))
    bad = tmp_path / "lake" / "layers" / "source=local" / "scan_date=2026-11-23" / "part-bad.parquet"
    pq.write_table(pa.table({"file_sha256": ["x"], "tensor": ["t"]}), bad)
    rep = lake.check()
    assert not rep.ok and "schema" in rep.kinds()
    shutil.rmtree(tmp_path / "lake" / "layers" / "source=local" / "scan_date=2026-11-23", ignore_errors=True)
