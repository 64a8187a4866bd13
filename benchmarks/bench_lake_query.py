"""Lake benchmark: write a generated lake of ≥100k layer rows, time typical queries before and
after compaction, and record the compaction figures (files and bytes before/after).

    python benchmarks/bench_lake_query.py                # 1,000 models × 110 layers
    python benchmarks/bench_lake_query.py --models 100   # quick look

Writes benchmarks/results/lake_query.json. Figures are wall-clock on this machine, measured
side by side in one run (median of --repeat runs per query); read them as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from hubscan.lake import Lake
from hubscan.lake.synthetic import synthetic_result

ARCHS = ["BertModel", "GPT2LMHeadModel", "LlamaForCausalLM", "ResNet", "ViTModel",
         "T5ForConditionalGeneration", "MistralForCausalLM", "CLIPModel"]

QUERIES = {
    "arch_summary": "SELECT * FROM arch_summary",
    "model_history": "SELECT revision_seq, revision, alpha_mean, frac_alpha_2_4 FROM history "
                     "WHERE source = 'hf' AND repo_id = 'org3/model-0042' ORDER BY revision_seq",
    "top20_worst_layers": "SELECT repo_id, tensor, alpha FROM layers_latest WHERE status = 'ok' "
                          "AND NOT isnan(alpha) ORDER BY alpha DESC LIMIT 20",
    "count_layers": "SELECT count(*) FROM layers",
    "one_model_layers": "SELECT tensor, alpha, log_norm FROM layers "
                        "WHERE model_key = 'hf/org3/model-0042@r0#1-ww-synthetic'",
}


def generate(lake: Lake, n_models: int, n_layers: int) -> dict:
    """n_models units: 8 archs, 2 sources, 3 scan dates, every 10th repo re-scanned at a new
    revision, every 7th a fork that only reuses another model's weight file (content dedup)."""
    t0 = time.perf_counter()
    units = rows = 0
    for i in range(n_models):
        arch = ARCHS[i % len(ARCHS)]
        source = "hf" if i % 4 else "tv"
        repo = f"org{i % 8}/model-{i:04d}"
        day = ("2026-11-21", "2026-11-22", "2026-11-23")[i % 3]
        reused, files = [], None
        if i % 7 == 3:  # a fork: reuses the weight file of model i-3 (never a fork itself)
            base = f"org{(i - 3) % 8}/model-{i - 3:04d}@r0/model.safetensors"
            reused, files = [base], []
        r = synthetic_result(repo_id=repo, revision="r0", arch=arch, source=source, scan_date=day,
                             n_layers=n_layers, files=files, reused=reused, seed=i,
                             alpha_loc=2.8 + 0.2 * (i % len(ARCHS)), n_evals=64)
        lake.write(r)
        units += 1
        rows += len(r.layers)
        if i % 10 == 2:  # the repo got a new revision, scanned a day later
            r2 = synthetic_result(repo_id=repo, revision="r1", arch=arch, source=source,
                                  scan_date="2026-11-24", n_layers=n_layers, seed=10_000 + i,
                                  alpha_loc=2.6 + 0.2 * (i % len(ARCHS)), n_evals=64)
            lake.write(r2)
            units += 1
            rows += len(r2.layers)
    return {"units": units, "layer_rows_written": rows, "seconds": time.perf_counter() - t0}


def files_and_bytes(root: Path) -> dict:
    files = [p for p in root.rglob("*.parquet")]
    by_table: dict[str, dict[str, int]] = {}
    for p in files:
        t = by_table.setdefault(p.relative_to(root).parts[0], {"files": 0, "bytes": 0})
        t["files"] += 1
        t["bytes"] += p.stat().st_size
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files), "tables": by_table}


def time_queries(lake: Lake, repeat: int) -> dict:
    out = {}
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        lake.connect().close()
        t.append(time.perf_counter() - t0)
    out["connect_register_views"] = statistics.median(t)
    con = lake.connect()
    for name, sql in QUERIES.items():
        t = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            con.sql(sql).fetchall()
            t.append(time.perf_counter() - t0)
        out[name] = statistics.median(t)
    con.close()
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        lake.done_model_keys("1-ww-synthetic")
        t.append(time.perf_counter() - t0)
    out["done_model_keys_incl_connect"] = statistics.median(t)
    return {k: round(v, 4) for k, v in out.items()}


def time_fsync_writes(root: Path, n: int, n_layers: int) -> dict:
    """Per-unit write latency with and without fsync (durability cost)."""
    res = {}
    for fsync in (False, True):
        lake = Lake(root / f"fsync-{fsync}", fsync=fsync)
        units = [synthetic_result(repo_id=f"w/m{i}", n_layers=n_layers, seed=i, n_evals=64)
                 for i in range(n)]
        t0 = time.perf_counter()
        for u in units:
            lake.write(u)
        res[f"fsync={fsync}"] = round((time.perf_counter() - t0) / n * 1000, 2)
    return {"ms_per_unit": res, "units": n, "layers_per_unit": n_layers}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=110)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="where to build the lake (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lake_query.json")
    args = ap.parse_args(argv)
    load_start = os.getloadavg()[0]  # other work on the machine skews absolute times
    tmp = tempfile.TemporaryDirectory(prefix="hubscan-bench-lake-") if args.dir is None else None
    base = Path(tmp.name) if tmp else args.dir
    root = base / "lake"
    lake = Lake(root, fsync=False)

    gen = generate(lake, args.models, args.layers)
    n_layers_view = lake.query("SELECT count(*) FROM layers").column(0)[0].as_py()
    n_raw = lake.query("SELECT count(*) FROM raw_layers").column(0)[0].as_py()
    print(f"generated {gen['units']} units, {n_raw:,} stored layer rows "
          f"({n_layers_view:,} per-model layer rows in the view) in {gen['seconds']:.1f} s")
    before = files_and_bytes(root)
    q_before = time_queries(lake, args.repeat)
    snapshot = lake.query("SELECT * FROM arch_summary")

    rep = lake.compact()
    after = files_and_bytes(root)
    q_after = time_queries(lake, args.repeat)
    same = lake.query("SELECT * FROM arch_summary")
    assert same.num_rows == snapshot.num_rows
    assert same.select(["arch", "models", "layers", "fits"]).equals(
        snapshot.select(["arch", "models", "layers", "fits"]))
    check = lake.check(strict=True)
    if not check.ok:
        print("check findings:", [f.__dict__ for f in check.findings][:5])
    fsync = time_fsync_writes(base, 30, args.layers)

    result = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cpus": os.cpu_count(), "duckdb": duckdb.__version__, "pyarrow": pa.__version__,
                    "load_avg_1min_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)]},
        "lake": {"models_arg": args.models, "layers_per_file": args.layers, **gen,
                 "stored_layer_rows": n_raw, "per_model_layer_rows": n_layers_view},
        "compaction": {"files_before": before["files"], "files_after": after["files"],
                       "bytes_before": before["bytes"], "bytes_after": after["bytes"],
                       "tables_before": before["tables"], "tables_after": after["tables"],
                       "seconds": round(rep.seconds, 3), "rows_in": rep.rows_in,
                       "rows_out": rep.rows_out, "check_ok_strict": check.ok},
        "query_seconds_before_compaction": q_before,
        "query_seconds_after_compaction": q_after,
        "speedup_after_compaction": {k: round(q_before[k] / q_after[k], 1) if q_after[k] else None
                                     for k in q_before},
        "write_latency": fsync,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("compaction", "query_seconds_before_compaction",
                                             "query_seconds_after_compaction",
                                             "speedup_after_compaction", "write_latency")}, indent=1))
    if tmp:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
