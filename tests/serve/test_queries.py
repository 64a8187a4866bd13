"""The explorer's numbers against the lake's own views: the snapshot, the leaderboard with its
filters, sorts and keyset pages, a model, compare, what changed — every expected value is a
DuckDB query over the lake's views (or the report), never the code under test."""

from __future__ import annotations

import math
from urllib.parse import quote

import pytest

from hubscan.errors import BadRequest, PageNotFound
from hubscan.lake import Lake
from hubscan.lake.synthetic import synthetic_result, write_synthetic_lake
from hubscan.serve import queries
from hubscan.serve.catalog import Catalog, build_snapshot
from hubscan.serve.params import SORTS, Cursor, LeaderboardQuery

SUMMARY_COLUMNS = ("n_layers", "n_fits", "alpha_mean", "alpha_median", "frac_alpha_2_4",
                   "frac_alpha_2_6", "alpha_weighted_mean", "log_norm_mean",
                   "log_spectral_norm_mean", "log_alpha_norm_mean", "stable_rank_mean",
                   "n_over_trained", "n_under_trained", "n_warnings")


@pytest.fixture(scope="module")
def snap(serve_lake, tmp_path_factory):
    s = build_snapshot(serve_lake.lake, str(tmp_path_factory.mktemp("snap")))
    yield s
    s.retire()


def q(**params) -> LeaderboardQuery:
    return LeaderboardQuery.parse({k: str(v) for k, v in params.items()}, page_size=50,
                                  max_page_size=200)


def close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def test_snapshot_summary_equals_the_model_summary_view(serve_lake, snap):
    lake_rows = {r["model_key"]: r for r in serve_lake.lake.query("SELECT * FROM model_summary").to_pylist()}
    with snap.cursor() as cur:
        ours = {r["model_key"]: r for r in queries.rows(cur, "SELECT * FROM serve.models")}
    assert set(ours) == set(serve_lake.lake.query("SELECT model_key FROM models").column(0).to_pylist())
    for key, row in lake_rows.items():
        for col in SUMMARY_COLUMNS:
            assert close(ours[key][col], row[col]), (key, col)
    assert ours[serve_lake.empty_key]["n_layers"] == 0 and ours[serve_lake.empty_key]["alpha_mean"] is None
    latest = set(serve_lake.lake.query("SELECT model_key FROM models_latest").column(0).to_pylist())
    assert {k for k, r in ours.items() if r["is_latest"]} == latest
    hist = {r["model_key"]: r["revision_seq"] for r in serve_lake.lake.query("SELECT * FROM history").to_pylist()}
    assert {k: r["revision_seq"] for k, r in ours.items()} == hist


def test_archs_table_equals_the_reports(serve_lake, snap):
    from hubscan.report import ReportOptions, report_data

    con = serve_lake.lake.connect()
    try:
        expected = report_data(con, ReportOptions()).archs
    finally:
        con.close()
    with snap.cursor() as cur:
        got = queries.archs(cur)
    assert [r["arch"] for r in got] == [r["arch"] for r in expected]
    for a, b in zip(got, expected):
        for col, v in b.items():
            assert close(a[col], v) if isinstance(v, float) else a[col] == v, (a["arch"], col)


def test_leaderboard_filter_and_sort_match_the_lake(serve_lake, snap):
    expected = {r["repo_id"]: r["alpha_mean"] for r in serve_lake.lake.query("""
        SELECT m.repo_id, s.alpha_mean FROM models_latest m LEFT JOIN model_summary s USING (model_key)
        WHERE m.arch = 'DemoMLP'""").to_pylist()}
    assert len(expected) >= 4 and None in expected.values()
    for order in ("desc", "asc"):
        with snap.cursor() as cur:
            page = queries.leaderboard(cur, q(arch="DemoMLP", sort="alpha_mean", order=order), snap.caps)
        assert page["total"] == len(expected)
        got = [(r["repo_id"], r["alpha_mean"]) for r in page["rows"]]
        assert {name for name, _ in got} == set(expected)
        assert all(close(v, expected[name]) for name, v in got)
        values = [v for _, v in got]
        assert values[-1] is None  # demo/empty: NULLs last, in both orders
        ranked = values[:-1]
        step = (lambda a, b: a >= b - 1e-12) if order == "desc" else (lambda a, b: a <= b + 1e-12)
        assert all(step(a, b) for a, b in zip(ranked, ranked[1:])), values


@pytest.mark.parametrize("value", ["DemoMLP' OR '1'='1", "x'; DROP VIEW models; --", "%", "' OR 1=1 --"])
def test_filter_values_are_data_not_sql(serve_lake, snap, value):
    with snap.cursor() as cur:
        for field in ("arch", "source", "library", "q"):
            page = queries.leaderboard(cur, q(**{field: value}), snap.caps)
            assert page["total"] == 0 and page["rows"] == [], field
    assert serve_lake.lake.query("SELECT count(*) AS n FROM models").column(0)[0].as_py() > 0


def test_sort_and_page_size_are_whitelisted():
    for bad in ({"sort": "alpha_mean; DROP TABLE x"}, {"sort": "random()"}, {"order": "sideways"},
                {"page_size": "0"}, {"page_size": "1000"}, {"page_size": "ten"},
                {"min_params": "lots"}, {"after": "bm90IGpzb24"}):
        with pytest.raises(BadRequest):
            q(**bad)
    other = Cursor(sort="params", order="desc", null=False, value=1, key="k").encode()
    with pytest.raises(BadRequest, match="another sort"):
        q(sort="alpha_mean", after=other)
    bad_value = Cursor(sort="alpha_mean", order="asc", null=False, value="1; DROP", key="k").encode()
    with pytest.raises(BadRequest):
        q(sort="alpha_mean", after=bad_value)


@pytest.fixture(scope="module")
def synth_snap(tmp_path_factory):
    """A generated lake of 203 live models (some sort values tied, one NULL)."""
    path = tmp_path_factory.mktemp("synth") / "lake"
    lake = Lake(str(path), fsync=False)
    write_synthetic_lake(lake, models=200, layers=8, n_evals=16, units_per_file=64)
    for i in range(3):
        lake.write(synthetic_result(repo_id=f"zz/no-layers-{i}", files=[], n_layers=0, source="hf"))
    s = build_snapshot(lake, str(tmp_path_factory.mktemp("synth-snap")))
    yield lake, s
    s.retire()


@pytest.mark.parametrize("sort", sorted(SORTS))
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_keyset_pages_cover_every_model_once_in_order(synth_snap, sort, order):
    _, s = synth_snap
    col = SORTS[sort][0]
    d = order.upper()
    # The order a plain ORDER BY gives over the snapshot (whose values the first test checks
    # against the lake's views): keyset pages must reproduce it exactly, ties and NULLs included.
    with s.cursor() as cur:
        expected = [r["model_key"] for r in queries.rows(cur, f"""
            SELECT model_key FROM serve.models WHERE is_latest
            ORDER BY ({col} IS NULL), {col} {d}, model_key {d}""")]
    assert len(expected) == 203
    seen, after = [], None
    with s.cursor() as cur:
        while True:
            page = queries.leaderboard(cur, q(sort=sort, order=order, page_size=17,
                                               **({"after": after} if after else {})), s.caps)
            assert page["total"] == len(expected)
            seen += [r["model_key"] for r in page["rows"]]
            if not page["next"]:
                break
            after = page["next"]
        assert seen == expected
        # and back again with before= from the last page
        before, back = page["prev"], [r["model_key"] for r in page["rows"]]
        while before:
            prev = queries.leaderboard(cur, q(sort=sort, order=order, page_size=17, before=before), s.caps)
            back = [r["model_key"] for r in prev["rows"]] + back
            before = prev["prev"]
        assert back == expected


def test_model_detail_history_files_and_missing_relations(serve_lake, snap):
    with snap.cursor() as cur:
        d = queries.model_detail(cur, serve_lake.new_key, snap.caps, max_layers=1000)
        with pytest.raises(PageNotFound):
            queries.model_detail(cur, "local/none@x#y", snap.caps, max_layers=10)
    layers = serve_lake.lake.query("""SELECT tensor, alpha FROM layers WHERE model_key = ?
                                      ORDER BY file, layer_id, tensor""", [serve_lake.new_key]).to_pylist()
    assert [(r["tensor"], r["alpha"]) for r in d["layers"]] == [(r["tensor"], r["alpha"]) for r in layers]
    assert [h["model_key"] for h in d["history"]] == [serve_lake.old_key, serve_lake.new_key]
    old, new = (serve_lake.lake.query("SELECT alpha_mean FROM model_summary WHERE model_key = ?",
                                      [k]).column(0)[0].as_py()
                for k in (serve_lake.old_key, serve_lake.new_key))
    assert close(d["history"][1]["d_alpha_mean"], new - old)
    (f,) = d["files"]
    assert f["n_models"] == 2 and [s["model_key"] for s in f["shared_with"]] == [serve_lake.mirror_key]
    # the lake has the lineage, deltas and evals views (issue 14), but nothing for this model
    assert d["lineage"]["bases"] == [] and d["lineage"]["derived"] == []
    assert d["deltas"] == [] and d["evals"] == []


def test_compare_deltas_equal_the_lake(serve_lake, snap):
    with snap.cursor() as cur:
        d = queries.compare(cur, serve_lake.old_key, serve_lake.new_key, max_layers=1000)
    lake = serve_lake.lake
    expected = {r["tensor"]: r for r in lake.query("""
        SELECT a.tensor, b.alpha - a.alpha AS d_alpha, b.log_norm - a.log_norm AS d_log_norm
        FROM (SELECT * FROM layers WHERE model_key = $a AND status = 'ok') a
        JOIN (SELECT * FROM layers WHERE model_key = $b AND status = 'ok') b USING (tensor)""",
        {"a": serve_lake.old_key, "b": serve_lake.new_key}).to_pylist()}
    got = {r["tensor"]: r for r in d["layers"] if r["d_alpha"] is not None}
    assert set(got) == set(expected) and expected
    for t, e in expected.items():
        assert close(got[t]["d_alpha"], e["d_alpha"]) and close(got[t]["d_log_norm"], e["d_log_norm"])
    both = [r for r in d["layers"] if r["layer_a"] is not None and r["layer_b"] is not None]
    assert d["summary"]["matched"] == len(both)


def test_changes_lists_the_new_revision_and_repo_events(serve_lake, snap):
    from datetime import date

    with snap.cursor() as cur:
        c = queries.changes(cur, snap, date(2000, 1, 1))
    assert [r["model_key"] for r in c["revisions"]] == [serve_lake.new_key]
    assert c["revisions"][0]["previous_key"] == serve_lake.old_key
    assert {(e["repo_id"], e["event"]) for e in c["events"]} == {
        ("demo/bert-tiny", "renamed"), ("demo/gpt2-small", "deleted")}
    repos = serve_lake.lake.query("SELECT count(DISTINCT repo_id) AS n FROM models").column(0)[0].as_py()
    assert c["n_new_models"] == repos  # every repo's first revision is new since 2000
    with snap.cursor() as cur:
        later = queries.changes(cur, snap, date(2999, 1, 1))
    assert later["revisions"] == [] and later["events"] == [] and later["has_events"]


def test_newer_lake_relations_and_format_columns_are_read(serve_lake, tmp_path):
    """The lake's issue 13/14 relations (format columns, lineage, finetune_deltas, evals), here
    replaced by views with known rows: the snapshot copies them, the format filter works, the
    model page lists lineage."""
    lake = serve_lake.lake

    def connect():
        con = lake.connect()
        # layers v2 has the format columns: mark one repo's layers as GPTQ-quantised
        con.execute("CREATE TABLE layers_base AS SELECT * FROM layers")
        con.execute("""CREATE OR REPLACE VIEW layers AS SELECT * REPLACE (
                         CASE WHEN repo_id = 'demo/mlp-13' THEN 'gptq' ELSE 'none' END AS quant_method)
                       FROM layers_base""")
        # the relations of issue 14's lake: one row per link, deltas per layer, evals per model
        con.execute("""CREATE OR REPLACE VIEW lineage_links AS SELECT 'local' AS source,
                         'demo/mlp-13-mirror' AS repo_id, 'm1' AS revision, 'local' AS base_source,
                         'demo/mlp-13' AS base_repo_id, NULL AS base_revision,
                         'quantized' AS relation, ['hub:baseModels'] AS origins""")
        con.execute(f"""CREATE OR REPLACE VIEW finetune_deltas AS SELECT '{serve_lake.new_key}' AS model_key,
                          '{serve_lake.old_key}' AS base_model_key, 'fc1.weight' AS tensor,
                          0.5 AS delta_alpha, 0.1 AS delta_log_norm""")
        con.execute(f"""CREATE OR REPLACE VIEW model_evals AS SELECT '{serve_lake.new_key}' AS model_key,
                          'cls' AS task, 'imagenet' AS dataset, 'acc@1' AS metric, 73.0 AS value""")
        return con

    s = build_snapshot(lake, str(tmp_path), connect=connect)
    try:
        assert s.caps.format_columns == ("source_format", "quant_method", "bits", "expert")
        assert {"lineage_links", "finetune_deltas", "model_evals"} <= s.caps.relations
        with s.cursor() as cur:
            page = queries.leaderboard(cur, q(format="gptq"), s.caps)
            assert [r["repo_id"] for r in page["rows"]] == ["demo/mlp-13"]
            d = queries.model_detail(cur, serve_lake.new_key, s.caps, max_layers=10)
            assert [r["repo_id"] for r in d["lineage"]["derived"]] == ["demo/mlp-13-mirror"]
            assert d["lineage"]["derived"][0]["model_key_latest"] == serve_lake.mirror_key
            assert d["lineage"]["bases"] == []
            mirror = queries.model_detail(cur, serve_lake.mirror_key, s.caps, max_layers=10)
            assert [(r["base_repo_id"], r["base_model_key_latest"]) for r in mirror["lineage"]["bases"]] \
                == [("demo/mlp-13", serve_lake.new_key)]
            assert d["deltas"][0]["base_model_key"] == serve_lake.old_key
            assert d["deltas"][0]["mean_delta_alpha"] == 0.5
            assert d["evals"][0]["metric"] == "acc@1"
            assert "quant_method" in d["layers"][0]
    finally:
        s.retire()
    # and the model page renders them (its template is strict: a missing name fails)
    from hubscan.serve.app import Explorer
    from hubscan.serve.options import ServeOptions

    cat = Catalog(lake, refresh_s=0, connect=connect)
    try:
        ex = Explorer(ServeOptions(lake=str(serve_lake.path)), cat)
        with cat.snapshot.cursor() as cur:
            new = ex.page(None, "model.html", queries.model_detail(
                cur, serve_lake.new_key, cat.snapshot.caps, max_layers=50)).body.decode()
            mirror = ex.page(None, "model.html", queries.model_detail(
                cur, serve_lake.mirror_key, cat.snapshot.caps, max_layers=50)).body.decode()
        assert "none in this lake" not in new
        assert "<th>quant_method</th>" in new and "<td>gptq</td>" in new
        assert 'id="lineage-derived"' in new and 'id="deltas"' in new and "acc@1" in new
        assert 'id="lineage-bases"' in mirror and "demo/mlp-13-mirror" in new
        assert quote(serve_lake.new_key, safe="") in mirror  # the base links to its model page
    finally:
        cat.close()
    def old_lake():  # a lake of layers v1 files only: no format columns
        con = lake.connect()
        con.execute("CREATE TABLE layers_v1 AS SELECT * EXCLUDE (source_format, quant_method, bits, expert) FROM layers")
        con.execute("CREATE OR REPLACE VIEW layers AS SELECT * FROM layers_v1")
        return con

    plain = build_snapshot(lake, str(tmp_path / "plain"), connect=old_lake)
    assert plain.caps.format_columns == ()
    try:
        with plain.cursor() as cur, pytest.raises(BadRequest, match="no format"):
            queries.leaderboard(cur, q(format="gptq"), plain.caps)
    finally:
        plain.retire()


def test_catalog_refresh_sees_new_files_and_closes_the_old_snapshot(tmp_path):
    lake = Lake(str(tmp_path / "lake"), fsync=False)
    write_synthetic_lake(lake, models=5, layers=4, n_evals=8)
    cat = Catalog(lake, refresh_s=0)
    try:
        first = cat.snapshot
        assert not cat.refresh()  # nothing changed
        with first.cursor() as cur:  # a request in flight keeps its snapshot open
            lake.write(synthetic_result(repo_id="new/model", source="hf"))
            assert cat.refresh()
            assert queries.rows(cur, "SELECT count(*) AS n FROM serve.models")[0]["n"] == 5
        with cat.snapshot.cursor() as cur:
            assert queries.rows(cur, "SELECT count(*) AS n FROM serve.models")[0]["n"] == 6
        import os

        assert not os.path.exists(first.path)  # closed and deleted once its cursor was returned
    finally:
        cat.close()
