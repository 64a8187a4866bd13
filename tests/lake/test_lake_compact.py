"""Compaction: same rows in every view, fewer files, safe beside readers and writers."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from hubscan.lake import Lake
from hubscan.lake.fs import Storage
from hubscan.lake.synthetic import synthetic_result, with_time
from hubscan.lake.views import VIEW_NAMES
from hubscan.lake.writer import unit_file_name

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _snapshot(lake):
    """Every view's rows as a multiset (lists made hashable)."""
    out = {}
    con = lake.connect()
    for v in VIEW_NAMES:
        rows = con.sql(f"SELECT * FROM {v}").to_arrow_table().to_pylist()
        out[v] = Counter(repr(sorted((k, _hashable(x)) for k, x in r.items())) for r in rows)
    con.close()
    return out


def _hashable(x):
    # Aggregating views (avg) may differ in the last bits when rows come in another order.
    if isinstance(x, float):
        return float(f"{x:.12g}")
    return tuple(x) if isinstance(x, list) else x


def _fill(lake, n=24, *, start=0):
    """Units over two partitions, with retries: same day (overwrite), other day (newer copy)."""
    results = []
    for i in range(start, start + n):
        day = "2026-11-01" if i % 2 else "2026-11-02"
        r = synthetic_result(repo_id=f"org/m{i}", arch=("A", "B", "C")[i % 3], n_layers=5,
                             seed=i, scan_date=day, written_at=T0 + timedelta(minutes=i),
                             failures=i % 4 == 0)
        lake.write(r)
        results.append(r)
        if i % 5 == 0:  # resumed on another day: a newer copy of the whole unit
            r2 = with_time(r, T0 + timedelta(days=1, minutes=i))
            r2.scan_date = "2026-11-03"
            r2.model["alpha_mean"] = 100.0 + i
            lake.write(r2)
    return results


def _files(lake, table=None):
    return [e for e in lake.storage.list_files(table or "") if e.path.endswith(".parquet")]


def test_compaction_keeps_every_view_identical_and_drops_superseded_rows(tmp_path):
    lake = Lake(tmp_path / "lake", fsync=False)
    _fill(lake, 15)
    before = _snapshot(lake)
    n_files = len(_files(lake))
    raw_before = lake.query("SELECT count(*) FROM raw_layers").column(0)[0].as_py()
    rep = lake.compact()
    assert rep.files_before == n_files and rep.files_after < n_files
    assert rep.files_after == len(_files(lake))
    # one file per (table, partition) now: 3 partitions × 5 tables (failures only in 2)
    parts = {e.path.rsplit("/", 1)[0] for e in _files(lake)}
    assert rep.files_after == len(parts)
    assert rep.rows_out < rep.rows_in  # superseded copies dropped
    after = _snapshot(lake)
    for v in VIEW_NAMES:
        assert after[v] == before[v], v
    raw_after = lake.query("SELECT count(*) FROM raw_layers").column(0)[0].as_py()
    assert raw_after == lake.query("SELECT count(*) FROM file_layers").column(0)[0].as_py() < raw_before
    assert lake.check(strict=True).ok  # no duplicates left anywhere
    again = lake.compact()
    assert again.groups == [] and again.files_after == rep.files_after


def test_superseded_rows_are_dropped_even_from_lone_large_files(tmp_path):
    lake = Lake(tmp_path / "lake", fsync=False)
    r = synthetic_result(repo_id="org/a", n_layers=4, scan_date="2026-11-01", written_at=T0)
    other = synthetic_result(repo_id="org/b", n_layers=4, scan_date="2026-11-01", seed=1,
                             written_at=T0)
    lake.write(r)
    lake.write(other)
    retry = with_time(r, T0 + timedelta(days=1))
    retry.scan_date = "2026-11-02"
    lake.write(retry)
    # every file is "large" for this target: only superseded rows make a file worth rewriting
    rep = lake.compact(target_bytes=1)
    assert rep.groups and all(g.partition.endswith("2026-11-01") for g in rep.groups)
    assert lake.query("SELECT count(*) FROM raw_models").column(0)[0].as_py() == 2
    assert lake.query("SELECT count(*) FROM raw_layers").column(0)[0].as_py() == 8
    got = {(x["repo_id"], str(x["scan_date"])) for x in lake.query("SELECT * FROM models").to_pylist()}
    assert got == {("org/a", "2026-11-02"), ("org/b", "2026-11-01")}
    assert lake.check(strict=True).ok
    assert lake.compact(target_bytes=1).groups == []  # converged


def test_dry_run_changes_nothing(tmp_path):
    lake = Lake(tmp_path / "lake", fsync=False)
    _fill(lake, 6)
    names = sorted(e.path for e in _files(lake))
    rep = lake.compact(dry_run=True)
    assert rep.groups and sorted(e.path for e in _files(lake)) == names


def test_a_stale_delete_never_moves_a_rewritten_file_away(tmp_path):
    """Deleting a listed file that was rewritten since (a retried unit) keeps the newer file
    *in place*: not moved aside and linked back, which would leave a moment without it, in
    which a concurrent reader's listing misses a committed unit or its open fails (ENOENT)."""
    storage = Lake(tmp_path / "lake", fsync=False).storage
    path = storage.path("models", "source=local", "scan_date=2026-11-01", "part-a.v1.parquet")
    storage.write_atomic(path, b"old")
    (listed,) = storage.list_files("models")
    storage.write_atomic(path, b"newer")
    before = os.stat(path)
    time.sleep(0.05)  # a rename or link of the file would move its ctime by at least a tick
    assert storage.delete_if_unchanged(listed) is False
    after = os.stat(path)
    assert (after.st_ino, after.st_ctime_ns, after.st_nlink) == (before.st_ino, before.st_ctime_ns, 1)
    assert open(path, "rb").read() == b"newer"
    assert not [e for e in storage.list_files() if e.path != path]  # no aside copy left
    (current,) = storage.list_files("models")
    assert storage.delete_if_unchanged(current) is True and not os.path.exists(path)


def test_a_file_rewritten_during_compaction_is_not_deleted(tmp_path, monkeypatch):
    lake = Lake(tmp_path / "lake", fsync=False)
    results = _fill(lake, 6)
    victim = results[1]  # day 2026-11-01
    retry = with_time(victim, T0 + timedelta(days=5))
    retry.model["alpha_mean"] = -1.0
    original = Storage.write_atomic
    fired = []

    def write_atomic(self, path, data):
        # The moment compaction writes its first merged file, a retried unit rewrites one of
        # the inputs (same deterministic name): that newer file must survive.
        if "/part-c" in path and not fired and "/models/" in path:
            fired.append(path)
            monkeypatch.setattr(Storage, "write_atomic", original)
            lake.write(retry)
        return original(self, path, data)

    monkeypatch.setattr(Storage, "write_atomic", write_atomic)
    rep = lake.compact(tables=["models"])
    assert fired
    assert sum(g.kept_changed for g in rep.groups) == 1
    kept = tmp_path / "lake" / "models" / "source=local" / "scan_date=2026-11-01" / unit_file_name(victim.model_key, 1)
    assert kept.exists()
    assert lake.query("SELECT alpha_mean FROM models WHERE model_key = ?",
                      [victim.model_key]).column(0).to_pylist() == [-1.0]
    # the next compaction merges it normally
    lake.compact(tables=["models"])
    assert not kept.exists()
    assert lake.query("SELECT alpha_mean FROM models WHERE model_key = ?",
                      [victim.model_key]).column(0).to_pylist() == [-1.0]


def test_concurrent_reader_never_errors_and_sees_constant_views(tmp_path):
    lake = Lake(tmp_path / "lake", fsync=False)
    _fill(lake, 20)
    expected = {v: lake.query(f"SELECT count(*) FROM {v}").column(0)[0].as_py()
                for v in ("models", "layers", "spectra", "failures", "model_files")}
    stop = threading.Event()
    seen, errors = [], []

    def reader():
        while not stop.is_set():
            for v, n in expected.items():
                try:
                    got = lake.query(f"SELECT count(*) FROM {v}").column(0)[0].as_py()
                except Exception as exc:  # noqa: BLE001 - the test is that nothing escapes
                    errors.append(exc)
                    return
                seen.append((v, got, n))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for target in (20_000, 60_000, 10**9):  # three rounds of ever larger merges
            lake.compact(target_bytes=target)
    finally:
        stop.set()
        t.join(timeout=60)
    assert not errors, errors[:1]
    assert seen and all(got == n for _, got, n in seen)
    assert len(_files(lake)) < 20


def test_grace_period_defers_deletes_and_long_lived_connections_keep_working(tmp_path):
    lake = Lake(tmp_path / "lake", fsync=False)
    _fill(lake, 8)
    con = lake.connect()  # a user's own DuckDB session (its globs re-list on each query)
    n = con.sql("SELECT count(*) FROM layers").fetchall()
    n_files = len(_files(lake))
    rep = lake.compact(grace_s=3600)
    assert rep.pending_recorded > 0 and rep.files_after < n_files
    assert len(_files(lake)) > n_files  # inputs still on disk, plus the merged files
    assert con.sql("SELECT count(*) FROM layers").fetchall() == n  # overlap: no duplicates
    assert lake.stats().pending_deletes == rep.pending_recorded
    assert lake.check(strict=True).ok  # pending files are not counted as duplicates
    assert lake.compact().pending_deleted == 0  # grace not over yet
    later = lake.compact(grace_s=1e-6)  # (nothing new to merge)
    assert later.pending_recorded == 0
    # pretend the grace period is over
    import json

    for p in (tmp_path / "lake" / "_maintenance" / "pending").iterdir():
        doc = json.loads(p.read_text())
        doc["delete_after"] = 0
        p.write_text(json.dumps(doc))
    done = lake.compact()
    assert done.pending_deleted == rep.pending_recorded
    assert len(_files(lake)) == rep.files_after
    assert con.sql("SELECT count(*) FROM layers").fetchall() == n


def test_two_writers_and_compaction_lose_and_duplicate_nothing(tmp_path):
    """Bounded stress: 2 writer threads × 50 units (25 units written by both, on different
    days), a compaction loop and a reader, all at once."""
    lake = Lake(tmp_path / "lake", fsync=False)
    errors: list[BaseException] = []
    done = threading.Event()
    counts: list[int] = []

    def unit(i, writer):
        day = "2026-11-01" if writer == 0 else ("2026-11-01", "2026-11-02")[i % 2]
        return synthetic_result(repo_id=f"org/m{i}", arch=("A", "B")[i % 2], n_layers=3, seed=i,
                                scan_date=day, n_evals=8, failures=i % 10 == 0,
                                files=[f"w{i}.safetensors"])

    def writer(w, ids):
        try:
            for i in ids:
                lake.write(unit(i, w))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def compactor():
        try:
            while not done.is_set():
                lake.compact(target_bytes=2**20)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def reader():
        try:
            while not done.is_set():
                counts.append(lake.query("SELECT count(*) FROM models").column(0)[0].as_py())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(0, range(0, 50))),
               threading.Thread(target=writer, args=(1, range(25, 75)))]
    others = [threading.Thread(target=compactor), threading.Thread(target=reader)]
    for t in writers + others:
        t.start()
    for t in writers:
        t.join(timeout=300)
    done.set()
    for t in others:
        t.join(timeout=300)
    assert not errors, repr(errors[:1])
    assert counts == sorted(counts)  # committed models never disappear
    lake.compact()
    keys = lake.query("SELECT model_key FROM models").column(0).to_pylist()
    assert len(keys) == len(set(keys)) == 75
    per_model = lake.query("SELECT count(*) AS n, count(DISTINCT tensor) AS d FROM layers "
                           "GROUP BY model_key").to_pylist()
    assert len(per_model) == 75 and all(x == {"n": 3, "d": 3} for x in per_model)
    assert lake.query("SELECT count(*) FROM failures").column(0)[0].as_py() == 8
    assert lake.query("SELECT count(*) FROM raw_layers").column(0)[0].as_py() == 225
    rep = lake.check(strict=True)
    assert rep.ok, rep.findings
