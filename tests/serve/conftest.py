"""The explorer's test lake, built once per session, and a real server per test module.

The lake is the plot tests' lake (real analysis of generated checkpoints, spectra kept:
``tests/plot_lakes.py``) copied, plus what the explorer has pages for: a second revision of
one repo (history, compare, what changed), a mirror that only reuses that revision's weight
file (shared files), a model with no layer at all (NULL metrics sort last), and repo events
(a rename, a deletion).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hubscan.lake import Lake
from hubscan.options import AnalysisOptions
from hubscan.refs import model_key
from hubscan.results import ModelResult
from tests.plot_lakes import Spec, model_result, shared_lake

#: A new revision of demo/mlp-13: other weights, analysed a day later.
REVISION_2 = Spec("demo/mlp-13", "mlp", 2.0, 12, 73.0, width=128)


@dataclass(frozen=True)
class ServeLake:
    path: Path
    lake: Lake
    old_key: str      # demo/mlp-13, first revision
    new_key: str      # demo/mlp-13, second (latest) revision
    mirror_key: str   # demo/mlp-13-mirror: reuses new_key's weight file
    empty_key: str    # demo/empty: a model row without layers


def build_serve_lake(path: Path) -> ServeLake:
    base = shared_lake()
    shutil.copytree(base.uri, path)
    lake = Lake(str(path), fsync=False)
    old_key = lake.query("SELECT model_key FROM models WHERE repo_id = 'demo/mlp-13'").column(0)[0].as_py()
    result = model_result(REVISION_2, AnalysisOptions(convention="ww", compare=False),
                          scan_date="2026-11-24")  # the options of shared_lake()
    lake.write(result)
    new_key = result.model_key
    f = result.model_files[0]
    when = datetime.now(timezone.utc) + timedelta(seconds=1)
    mirror_key = model_key("local", "demo/mlp-13-mirror", "m1", f["analysis_version"])
    lake.write(ModelResult(
        model={**result.model, "model_key": mirror_key, "repo_id": "demo/mlp-13-mirror",
               "revision": "m1", "written_at": when},
        model_files=[{**f, "model_key": mirror_key, "reused": True, "written_at": when}],
        source="local", scan_date="2026-11-24"))
    empty_key = model_key("local", "demo/empty", "e1", f["analysis_version"])
    lake.write(ModelResult(
        model={**result.model, "model_key": empty_key, "repo_id": "demo/empty", "revision": "e1",
               "status": "failed", "n_tensors": 0, "n_analysed": 0, "alpha_mean": None,
               "alpha_median": None, "written_at": when, "arch": "DemoMLP"},
        source="local", scan_date="2026-11-24"))
    lake.write_table("repo_events", [
        {"source": "local", "repo_id": "demo/bert-tiny", "event": "renamed", "revision": None,
         "new_repo_id": "demo/bert-tiny-v2", "seen_at": when, "written_at": when},
        {"source": "local", "repo_id": "demo/gpt2-small", "event": "deleted", "revision": None,
         "seen_at": when, "written_at": when},
        {"source": "local", "repo_id": "demo/mlp-13", "event": "new_revision",
         "revision": result.model["revision"], "seen_at": when, "written_at": when},
    ], partition={"source": "local", "scan_date": "2026-11-24"})
    return ServeLake(path=path, lake=lake, old_key=old_key, new_key=new_key,
                     mirror_key=mirror_key, empty_key=empty_key)


@pytest.fixture(scope="session")
def serve_lake(tmp_path_factory) -> ServeLake:
    return build_serve_lake(tmp_path_factory.mktemp("serve") / "lake")
