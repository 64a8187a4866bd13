"""Scan engine benchmark: scaling 1 → 2 workers, where the time goes, overhead over bare
eigen-solves, and Ray Core actors vs Ray Data for the same work.

    python benchmarks/bench_scan.py                 # ~2 min on 2 cores
    python benchmarks/bench_scan.py --models 8      # quicker

What it measures, side by side in one run (ratios, not absolute speeds, are the point):

1. **bare**: the sum of ``torch.linalg.svdvals`` (float64, one thread) over exactly the
   matrices the scan analyses, on tensors already in memory — the irreducible work;
2. **core-1 / core-2**: ``run_scan`` on a Ray actor pool of 1 and 2 workers (one CPU each,
   started and warm before the clock starts): models/s, bytes/s, and the scaling ratio
   (goal ≥ 1.7× on this 2-core machine);
3. the **share of worker time** in fetch (reading tensors), eigen-solves, power-law fits,
   the rest of the analysis (MP fit, metrics, classification) and lake writes (driver);
4. **overhead** = core-1 wall time / bare (goal ≤ 1.3×): everything the scan adds around the
   eigen-solves, with the default analysis options;
5. **engine choice**: the same 2-worker job through Ray Data (``map`` with an actor-pool UDF)
   vs the Core actor pool, both timed cold (actor start-up included).

Results: printed, and saved to ``benchmarks/results/scan.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scan.json"


def make_models(root: Path, n: int, width: int, layers: int) -> list[Path]:
    from hubscan.testing.checkpoints import make_demo_model

    return [make_demo_model(root / f"bench-{i:03d}", "gpt2", seed=i, width=width, layers=layers,
                            vocab=512, heavy_tailed=bool(i % 2)) for i in range(n)]


def make_tiny_models(root: Path, n: int) -> list[Path]:
    from hubscan.testing.checkpoints import make_demo_model

    return [make_demo_model(root / f"tiny-{i:03d}", "mlp", seed=i, width=32, layers=2)
            for i in range(n)]


def spec_for(lake: Path, workers: int, *, compare: bool = False):
    from hubscan.engine.spec import loads_spec

    return loads_spec(f"""
[scan]
name = "bench"
lake = "{lake}"
[[sources]]
kind = "local"
path = "unused"
[analysis]
compare = {str(compare).lower()}
[resources]
workers = {workers}
models_per_worker = 1
[resources.analyze]
num_cpus = 1
""")


def bare_eigen_seconds(refs, lake: Path) -> tuple[float, int]:
    """Σ svdvals time over the matrices the scan analysed (float64, 1 thread, in memory),
    their count, Σ M²N (M ≤ N: the SVD's cost model), and Σ CPU seconds (unlike wall time,
    not inflated when other processes share the cores)."""
    import torch
    from safetensors.torch import load_file

    from hubscan.lake import Lake

    torch.set_num_threads(1)
    analysed = Lake(str(lake)).query(
        "SELECT DISTINCT file_sha256, tensor FROM file_layers WHERE status IN ('ok', 'fit-failed')")
    wanted: dict[str, set[str]] = {}
    for sha, t in zip(analysed.column("file_sha256").to_pylist(), analysed.column("tensor").to_pylist()):
        wanted.setdefault(sha, set()).add(t)
    total, cpu, n, flops = 0.0, 0.0, 0, 0.0
    for ref in refs:
        for wf in ref.files:
            tensors = load_file(str(Path(ref.location) / wf.path))
            for name in sorted(wanted.get(wf.sha256, ())):
                w = tensors[name].to(torch.float64)
                t0, c0 = time.perf_counter(), time.process_time()
                torch.linalg.svdvals(w)
                total += time.perf_counter() - t0
                cpu += time.process_time() - c0
                n += 1
                m_, n_ = sorted(w.shape[-2:])
                flops += float(m_) ** 2 * n_
    return total, n, flops, cpu


def run_core(refs, lake: Path, workers: int, *, compare: bool = False) -> dict:
    import psutil

    from hubscan.engine.base import WorkerConfig
    from hubscan.engine.ray_exec import RayExecutor
    from hubscan.engine.scan import run_scan

    spec = spec_for(lake, workers, compare=compare)
    cpu_now: dict[int, float] = {}
    ex = RayExecutor(WorkerConfig(options=spec.analysis), resources=spec.resources,
                     name=f"bench-{workers}-{int(compare)}-{os.getpid()}")
    t_cold = time.perf_counter()
    ex.start()
    ex.wait_all_ready()
    procs = [psutil.Process(pid) for pid in ex.worker_pids()]
    cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
    me = psutil.Process()
    driver0 = sum(me.cpu_times()[:2])
    sys0 = psutil.cpu_times()
    t0 = time.perf_counter()

    def sample_worker_cpu(p) -> None:  # after each model, while the actors still exist
        if p.phase == "run":
            cpu_now.update({pr.pid: sum(pr.cpu_times()[:2]) for pr in procs})

    s = run_scan(spec, executor=ex, refs=refs, progress=False, on_event=sample_worker_cpu)
    wall = time.perf_counter() - t0
    driver_cpu = sum(me.cpu_times()[:2]) - driver0
    sys1 = psutil.cpu_times()
    worker_cpu = sum(cpu_now.get(p.pid, c0) - c0 for p, c0 in zip(procs, cpu0))
    busy = lambda t: t.user + t.system + getattr(t, "nice", 0) + getattr(t, "irq", 0) + getattr(t, "softirq", 0)  # noqa: E731
    machine_busy = (busy(sys1) - busy(sys0)) / (wall * (os.cpu_count() or 1))
    if s.status != "completed" or s.n_ok != len(refs):
        from hubscan.lake import Lake

        fails = Lake(str(lake)).query("SELECT repo_id, stage, error_class, message FROM failures").to_pylist()
        raise RuntimeError(f"benchmark scan did not complete: {s}\n{fails[:3]}")
    return {"wall_s": wall, "cold_wall_s": time.perf_counter() - t_cold, "write_s": s.write_s,
            "n_models": s.n_ok,
            # CPU the OS actually gave the workers, per worker: < 1 means other processes
            # took the cores (contention), not that the engine left workers idle
            "worker_cpu_share": worker_cpu / (wall * workers),
            "worker_cpu_s": worker_cpu, "driver_cpu_s": driver_cpu,
            "machine_cpu_busy": machine_busy}


class _RayDataUDF:
    """Ray Data actor-pool UDF doing the same per-model unit of work."""

    def __init__(self, config_bytes: bytes) -> None:
        import pickle

        import torch

        torch.set_num_threads(1)
        self.config = pickle.loads(config_bytes)

    def __call__(self, row: dict) -> dict:
        import pickle

        from hubscan.engine.base import run_task

        task = pickle.loads(row["task"])
        return {"result": pickle.dumps(run_task(task, self.config))}


def run_ray_data(refs, lake: Path, workers: int) -> dict:
    import pickle

    import ray

    from hubscan.engine.base import Task, WorkerConfig
    from hubscan.lake import Lake

    spec = spec_for(lake, workers)
    config = WorkerConfig(options=spec.analysis)
    items = [{"task": pickle.dumps(Task(seq=i, ref=r))} for i, r in enumerate(refs)]
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    t0 = time.perf_counter()
    ds = ray.data.from_items(items).map(
        _RayDataUDF, fn_constructor_args=(pickle.dumps(config),), concurrency=workers, num_cpus=1)
    the_lake = Lake(str(lake))
    n = 0
    for row in ds.iter_rows():
        the_lake.write(pickle.loads(row["result"]))
        n += 1
    assert n == len(refs)
    return {"cold_wall_s": time.perf_counter() - t0, "n_models": n}


def shares(lake: Path, wall_s: float, workers: int, write_s: float) -> dict:
    from hubscan.lake import Lake

    lk = Lake(str(lake))
    m = lk.query("SELECT sum(fetch_s) AS fetch, sum(analyze_s) AS analyze FROM models").to_pylist()[0]
    l_ = lk.query("SELECT sum(eig_s) AS eig, sum(fit_s) AS fit FROM file_layers").to_pylist()[0]
    worker_s = m["fetch"] + m["analyze"]
    parts = {"fetch": m["fetch"], "eigen": l_["eig"], "fit": l_["fit"],
             "other_analysis": max(0.0, m["analyze"] - l_["eig"] - l_["fit"]), "write": write_s}
    total = worker_s + write_s
    return {"seconds": parts, "share": {k: v / total for k, v in parts.items()},
            "worker_busy_share": worker_s / (wall_s * workers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=12)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="interleaved repeats; best of each is kept")
    ap.add_argument("--tiny", type=int, default=40, help="tiny models for the per-model engine cost")
    ap.add_argument("--no-ray-data", action="store_true")
    args = ap.parse_args()

    import ray

    from hubscan.sources import resolve

    work = Path(tempfile.mkdtemp(prefix="bench-scan-"))
    try:
        folders = make_models(work / "models", args.models, args.width, args.layers)
        refs = [r for f in folders for r in resolve(str(f))]
        nbytes = sum(r.total_bytes for r in refs)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        # interleaved repeats, best of each: other processes on a shared machine only ever
        # slow a run down, so the minimum is the closest to the machine's own speed
        load_start = os.getloadavg()
        core: dict[int, dict] = {}
        bare_runs = []
        for rep in range(args.repeat):
            for w in (1, 2):
                r = run_core(refs, work / f"lake-core-{w}-{rep}", w)
                if w not in core or r["wall_s"] < core[w]["wall_s"]:
                    core[w] = {**r, "lake": work / f"lake-core-{w}-{rep}"}
            bare_runs.append(bare_eigen_seconds(refs, work / "lake-core-1-0"))
        bare_s, n_mat, m2n, bare_cpu_s = min(bare_runs)
        full = run_core(refs, work / "lake-core-1-full", 1, compare=True)
        data = None if args.no_ray_data else run_ray_data(refs, work / "lake-data-2", 2)
        # many tiny models: the per-model cost of the engine itself (scheduling, transfer,
        # lake writes), which decides thousands-of-small-models scans
        tiny_refs = [r for f in make_tiny_models(work / "tiny", args.tiny) for r in resolve(str(f))]
        tiny_core = run_core(tiny_refs, work / "lake-tiny-core", 2)
        tiny_data = None if args.no_ray_data else run_ray_data(tiny_refs, work / "lake-tiny-data", 2)
        ray.shutdown()

        out = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                        "platform": platform.platform(), "gpu": None,
                        "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
                        "repeats_best_of": args.repeat},
            "workload": {"models": len(refs), "bytes": nbytes, "matrices": n_mat,
                         "model": f"gpt2-shaped, width {args.width}, {args.layers} layers, "
                                  f"vocab 512, float32, local safetensors",
                         "options": "scan profile: AnalysisOptions(compare=False) (ww, MP fit); "
                                    "'full' = defaults incl. distribution comparisons"},
            "bare_eigen_s": bare_s,
        }
        for w, r in core.items():
            r["models_per_s"] = r["n_models"] / r["wall_s"]
            r["bytes_per_s"] = nbytes / r["wall_s"]
            r.update(shares(r.pop("lake"), r["wall_s"], w, r["write_s"]))
            out[f"core_{w}_workers"] = r
        full.update(shares(work / "lake-core-1-full", full["wall_s"], 1, full["write_s"]))
        out["core_1_worker_full_options"] = full
        out["scaling_2_vs_1"] = core[1]["wall_s"] / core[2]["wall_s"]
        # throughput per core the workers actually got: when other processes hold a core,
        # wall-clock scaling measures them, not the engine; this projects it to free cores
        per_core = {w: c["models_per_s"] / (c["worker_cpu_share"] * w) for w, c in core.items()}
        out["efficiency_per_core_2_vs_1"] = per_core[2] / per_core[1]
        out["scaling_2_vs_1_projected_free_cores"] = 2 * per_core[2] / per_core[1]
        out["overhead_vs_bare_eigen"] = core[1]["wall_s"] / bare_s
        # the same ratio in CPU seconds (workers + driver vs the bare solves): immune to
        # other processes sharing the machine, which stretch wall times but not CPU times
        out["bare_eigen_cpu_s"] = bare_cpu_s
        out["overhead_vs_bare_eigen_cpu"] = (core[1]["worker_cpu_s"] + core[1]["driver_cpu_s"]) / bare_cpu_s
        out["overhead_vs_bare_eigen_cpu_full_options"] = (full["worker_cpu_s"] + full["driver_cpu_s"]) / bare_cpu_s
        out["overhead_vs_bare_eigen_full_options"] = full["wall_s"] / bare_s
        out["per_matrix_s"] = core[1]["wall_s"] / n_mat
        out["svd_s_per_M2N"] = bare_s / m2n  # float64 svdvals, 1 thread: t ≈ c·M²·N
        out["per_byte_s"] = core[1]["wall_s"] / nbytes
        out["compare_per_matrix_s"] = (full["wall_s"] - core[1]["wall_s"]) / n_mat
        if data is not None:
            out["ray_data_2_workers"] = data
            out["core_vs_ray_data_cold"] = data["cold_wall_s"] / core[2]["cold_wall_s"]
        out["tiny_models"] = {"models": len(tiny_refs), "core_2_workers": tiny_core,
                              "core_per_model_s": tiny_core["wall_s"] / len(tiny_refs)}
        if tiny_data is not None:
            out["tiny_models"]["ray_data_2_workers"] = tiny_data
            out["tiny_models"]["ray_data_vs_core_cold"] = tiny_data["cold_wall_s"] / tiny_core["cold_wall_s"]

        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(out, indent=2) + "\n")
        c1, c2 = core[1], core[2]
        print(f"workload: {len(refs)} models, {nbytes / 1e6:.1f} MB, {n_mat} matrices")
        print(f"1 worker : {c1['models_per_s']:.2f} models/s  {c1['bytes_per_s'] / 1e6:.2f} MB/s  ({c1['wall_s']:.1f} s)")
        print(f"2 workers: {c2['models_per_s']:.2f} models/s  {c2['bytes_per_s'] / 1e6:.2f} MB/s  ({c2['wall_s']:.1f} s)")
        print(f"scaling 2 vs 1 workers: {out['scaling_2_vs_1']:.2f}x   (goal >= 1.7x)")
        print(f"  per core received, 2 workers do {out['efficiency_per_core_2_vs_1']:.0%} of 1 worker's work: "
              f"{out['scaling_2_vs_1_projected_free_cores']:.2f}x on 2 free cores")
        print(f"  CPU the OS gave each worker: {c1['worker_cpu_share']:.0%} (1 worker), "
              f"{c2['worker_cpu_share']:.0%} (2 workers); machine busy "
              f"{c1['machine_cpu_busy']:.0%} / {c2['machine_cpu_busy']:.0%}")
        print(f"overhead vs bare eigen-solves: {out['overhead_vs_bare_eigen']:.2f}x   (goal <= 1.3x; bare {bare_s:.1f} s)")
        print(f"  with distribution comparisons (default options): {out['overhead_vs_bare_eigen_full_options']:.2f}x")
        print(f"  in CPU seconds (not stretched by other processes): {out['overhead_vs_bare_eigen_cpu']:.2f}x, "
              f"{out['overhead_vs_bare_eigen_cpu_full_options']:.2f}x with comparisons")
        print("time shares (1 worker): " + ", ".join(f"{k} {v:.1%}" for k, v in c1["share"].items()))
        if data is not None:
            print(f"Ray Data / Core actors, 2 workers, cold: {out['core_vs_ray_data_cold']:.2f}x "
                  f"({data['cold_wall_s']:.1f} s vs {c2['cold_wall_s']:.1f} s)")
        t = out["tiny_models"]
        print(f"{t['models']} tiny models, 2 workers: {t['core_per_model_s'] * 1000:.0f} ms per model (Core, warm)"
              + (f"; Ray Data / Core, cold: {t['ray_data_vs_core_cold']:.2f}x "
                 f"({t['ray_data_2_workers']['cold_wall_s']:.1f} s vs {t['core_2_workers']['cold_wall_s']:.1f} s)"
                 if "ray_data_vs_core_cold" in t else ""))
        if max(load_start[0], os.getloadavg()[0]) > (os.cpu_count() or 1):
            print(f"warning: load average {load_start[0]:.1f} → {os.getloadavg()[0]:.1f} on "
                  f"{os.cpu_count()} CPUs: other processes competed with this benchmark")
        print(f"saved {RESULTS.relative_to(ROOT)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
