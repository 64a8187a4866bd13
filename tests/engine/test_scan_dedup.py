"""Content dedup against the loopback hub: repos that share weight files (forks, mirrors,
re-uploads) cost one download per distinct file — within a scan and across scans — and every
repo still shows its full layer set in the views."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from hubscan.engine.scan import run_scan
from hubscan.engine.spec import loads_spec
from hubscan.lake import Lake
from hubscan.testing import checkpoints as ck

pytestmark = pytest.mark.ray

AUTHOR = "dedup"


def model(seed: int) -> dict[str, np.ndarray]:
    return {f"block.{k}.weight": ck.pareto_matrix(32, 24 + 8 * k, 3.0, seed=seed * 10 + k)
            for k in range(4)}


def weight_downloads(hub) -> collections.Counter:
    """Full-body GETs of weight files, per content hash (LFS files are served from the CDN
    route ``/cdn/<sha256>``; a resolve of a small file serves it directly)."""
    out: collections.Counter = collections.Counter()
    for r in hub.requests:
        if r.method != "GET" or r.status not in (200, 206) or not (r.file or "").endswith(".safetensors"):
            continue
        if r.endpoint == "cdn":
            out[r.path.split("/cdn/", 1)[1].split("?")[0]] += 1
        elif r.endpoint == "resolve":
            out[f"{r.repo}/{r.file}"] += 1
    return out


def spec(lake):
    return loads_spec(f"""
[scan]
name = "dedup"
lake = "{lake}"
[[sources]]
kind = "hf"
author = "{AUTHOR}"
file_metadata = "paths-info"   # LFS sha256 per file before download: what dedup keys on
[analysis]
compare = false
[resources]
models_per_worker = 2
[retry]
backoff_s = 0.01
max_backoff_s = 0.05
""")


def test_shared_files_are_downloaded_once(tmp_path, fakehub, ray_cluster):
    hub = fakehub
    a, b = model(1), model(2)
    # a (2 shards) + 3 forks; b + 2 forks; c = a's first shard + its own second shard
    for name in ("a", "a-fork1", "a-fork2", "a-mirror"):
        hub.add_model(f"{AUTHOR}/{name}", a, shards=2)
    for name in ("b", "b-fork1", "b-reupload"):
        hub.add_model(f"{AUTHOR}/{name}", b)
    c = {**{k: a[k] for k in list(a)[:2]}, **{k: v * 2 for k, v in list(a.items())[2:]}}
    hub.add_model(f"{AUTHOR}/c", c, shards=2)

    repos = {rid: r for rid, r in hub.repos.items()}
    lfs = {f.sha256 for r in repos.values() for p, f in r.files.items() if p.endswith(".safetensors")}
    assert len(lfs) == 2 + 1 + 1  # a's two shards, b, c's own second shard

    hub.reset_log()
    lake_dir = tmp_path / "lake"
    s = run_scan(spec(lake_dir), executor="ray", progress=False)
    assert s.status == "completed" and s.n_ok == 8
    downloads = weight_downloads(hub)
    assert set(downloads) == lfs
    assert set(downloads.values()) == {1}, downloads
    assert s.n_reused_files == (4 * 2 + 3 + 2) - len(lfs)

    lake = Lake(str(lake_dir))
    layers = lake.query("SELECT repo_id, count(*) AS n FROM layers GROUP BY repo_id").to_pylist()
    assert {r["repo_id"]: r["n"] for r in layers} == {rid: 4 for rid in repos}
    # forks show the same numbers, computed once
    alphas = lake.query("""SELECT repo_id, list(alpha ORDER BY tensor) AS a, count(DISTINCT computed_by) AS k
                           FROM layers GROUP BY repo_id""").to_pylist()
    by = {r["repo_id"]: r for r in alphas}
    for fork in ("a-fork1", "a-fork2", "a-mirror"):
        assert by[f"{AUTHOR}/{fork}"]["a"] == by[f"{AUTHOR}/a"]["a"]
    # the models rows of forks summarise their whole layer set, like the original
    summary = lake.query("SELECT repo_id, n_analysed, alpha_mean FROM models").to_pylist()
    sm = {r["repo_id"]: (r["n_analysed"], r["alpha_mean"]) for r in summary}
    assert sm[f"{AUTHOR}/a-fork1"] == sm[f"{AUTHOR}/a"] and sm[f"{AUTHOR}/a"][0] == 4
    assert sm[f"{AUTHOR}/b-reupload"] == sm[f"{AUTHOR}/b"]
    assert sm[f"{AUTHOR}/c"][0] == 4

    # a later scan (the planner and driver are the same for both executors): a new fork of b
    # costs a listing, no weight download
    hub.add_model(f"{AUTHOR}/b-fork2", b)
    hub.reset_log()
    s2 = run_scan(spec(lake_dir), executor="local", progress=False)
    assert (s2.n_planned, s2.n_skipped, s2.n_ok, s2.n_reused_files) == (1, 8, 1, 1)
    assert weight_downloads(hub) == {}
    n = lake.query(f"SELECT count(*) AS n FROM layers WHERE repo_id = '{AUTHOR}/b-fork2'").column("n")[0].as_py()
    assert n == 4
