"""What fine-tune deltas add to one model's analysis (goal: distances < 5 %).

A BERT-shaped base model and a fine-tune of it (the base plus small noise) are written as
local safetensors folders and served by the loopback hub. Each configuration analyses the
fine-tune with ``analyze_model`` against the base, side by side in one run, rounds
interleaved so that a disturbance hits every configuration alike; the median of the rounds
is reported, for two analyses: ``default`` (``AnalysisOptions()``, what a scan does: solve,
fit, MP fit, distribution comparisons) and ``solve`` (MP fit and comparisons off: the
eigen-solve and the power-law fit only, the harshest reference):

- ``none``: no deltas (the reference);
- ``raw+euclidean``: the default distances (one pass over both tensors);
- ``+cka``: all three weightwatcher methods (CKA needs W^T W_base: one matrix product);
- ``+esd``: distances and the ESD + power-law fit of W − W_base (one more eigen-solve).

Local files isolate compute; the hub run adds what reading the base costs on the wire
(Range requests: bytes fetched for the base vs its file size). Whole-model wall times on a
shared machine are noisy, so two steadier figures come with them: the seconds the deltas
themselves took inside each run (``delta_s``, summed over the rows), and a per-matrix
micro-benchmark (one torch thread, best of 7) of the distances against the eigen-solve of
the same matrix, by shape — distances are O(N·M), the solve O(N·M²), so the share falls
with the width. Writes ``benchmarks/results/deltas.json``.

    python benchmarks/bench_deltas.py --width 512 --layers 4 --rounds 3
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

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def write_pair(root: Path, width: int, layers: int) -> tuple[Path, Path]:
    import torch

    from hubscan.testing.checkpoints import demo_state_dict, write_safetensors

    base = demo_state_dict("bert-tiny", width=width, layers=layers, vocab=4000, heavy_tailed=True)
    g = torch.Generator().manual_seed(1)
    ft = {k: (v + 0.01 * v.std() * torch.randn(v.shape, generator=g) if v.is_floating_point() and v.ndim > 1
              else v.clone()) for k, v in base.items()}
    out = []
    for name, sd in (("base", base), ("ft", ft)):
        (root / name).mkdir(parents=True, exist_ok=True)
        write_safetensors(root / name / "model.safetensors", sd)
        out.append(root / name)
    return out[0], out[1]


CONFIGS = {
    "none": None,
    "raw+euclidean": {"distances": True, "methods": ("raw", "euclidean")},
    "+cka": {"distances": True, "methods": ("raw", "euclidean", "cka")},
    "+esd": {"distances": True, "methods": ("raw", "euclidean"), "esd": True},
}


def run(ft_ref, base_ref, rounds: int, *, options, configs=tuple(CONFIGS), label: str = "") -> dict[str, dict]:
    from hubscan.analysis.model import analyze_model
    from hubscan.options import DeltaOptions
    from hubscan.sources.base import FetchStats

    opts = options
    analyze_model(ft_ref, opts)  # warm-up: imports, compiled kernels
    times: dict[str, list[float]] = {k: [] for k in configs}
    info: dict[str, dict] = {}
    for r in range(rounds):
        order = list(configs)[r % len(configs):] + list(configs)[:r % len(configs)]
        for name in order:
            cfg = CONFIGS[name]
            stats = FetchStats()
            t0 = time.perf_counter()
            res = analyze_model(ft_ref, opts, stats=stats, bases=(base_ref,) if cfg else (),
                                deltas=DeltaOptions(**cfg) if cfg else None)
            times[name].append(time.perf_counter() - t0)
            print(f"  {label} round {r + 1} {name}: {times[name][-1]:.2f} s", flush=True)
            info[name] = {"deltas_rows": len(res.deltas), "layers": len(res.layers),
                          "bytes_fetched": int(res.model.get("bytes_fetched") or 0),
                          "delta_s": sum(d.get("delta_s") or 0.0 for d in res.deltas)}
    ref = statistics.median(times["none"])
    return {k: {"median_s": statistics.median(v), "runs_s": v,
                "overhead": statistics.median(v) / ref - 1.0, **info[k]} for k, v in times.items()}


def per_matrix(shapes=((256, 256), (1024, 256), (1024, 1024), (4096, 1024))) -> list[dict]:
    """Seconds per matrix: distances (raw+euclidean; +cka), the eigen-solve, best of 7."""
    import torch

    from hubscan.analysis.deltas import tensor_distances
    from hubscan.esd.layers import classify
    from hubscan.esd.spectral import eigenvalues
    from hubscan.options import AnalysisOptions

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = []
    try:
        for n, m in shapes:
            W = torch.randn(n, m)
            B = W + 0.01 * torch.randn(n, m)
            lm = classify("x.weight", (n, m), "F32", options=AnalysisOptions())

            def best(f) -> float:
                f()
                ts = []
                for _ in range(7):
                    t0 = time.perf_counter()
                    f()
                    ts.append(time.perf_counter() - t0)
                return min(ts)

            d = best(lambda: tensor_distances(W, B, kind="dense", methods=("raw", "euclidean")))
            c = best(lambda: tensor_distances(W, B, kind="dense", methods=("raw", "euclidean", "cka")))
            e = best(lambda: eigenvalues(W, lm))
            out.append({"shape": [n, m], "distances_s": d, "with_cka_s": c, "solve_s": e,
                        "distances_share": d / e, "with_cka_share": c / e})
            print(f"  {n}x{m}: distances {d * 1e3:.2f} ms ({100 * d / e:.1f} % of the solve), "
                  f"+cka {c * 1e3:.2f} ms ({100 * c / e:.0f} %), solve {e * 1e3:.1f} ms", flush=True)
    finally:
        torch.set_num_threads(threads)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "deltas.json")
    args = ap.parse_args()

    from hubscan.options import AnalysisOptions
    from hubscan.sources import resolve
    from hubscan.testing.fakehub import FakeHub

    micro = per_matrix()
    with tempfile.TemporaryDirectory(prefix="hubscan-bench-deltas-") as tmp:
        root = Path(tmp)
        base_dir, ft_dir = write_pair(root, args.width, args.layers)
        size = (base_dir / "model.safetensors").stat().st_size
        ft, base = resolve(str(ft_dir))[0], resolve(str(base_dir))[0]
        local = run(ft, base, args.rounds, options=AnalysisOptions(), label="default")
        solve = run(ft, base, args.rounds, options=AnalysisOptions(mp_fit=False, compare=False),
                    configs=("none", "raw+euclidean", "+cka"), label="solve")
        hub = FakeHub(idle_timeout=600).start()
        try:
            with hub.environ(root / "hub"):
                hub.add_folder("bench/base", base_dir)
                hub.add_folder("bench/ft", ft_dir)
                hub.reset_log()
                remote = run(resolve("hf://bench/ft")[0], resolve("hf://bench/base")[0], args.rounds,
                             options=AnalysisOptions(), configs=("none", "raw+euclidean"), label="hub")
                base_sent = hub.bytes_sent("cdn", repo="bench/base")
                base_requests = hub.count("cdn", repo="bench/base")
        finally:
            hub.stop()
    result = {
        "benchmark": "deltas", "width": args.width, "layers": args.layers, "rounds": args.rounds,
        "base_file_bytes": size, "per_matrix": micro, "local": local, "local_solve_only": solve, "hub": remote,
        "hub_base_bytes_per_model": base_sent / args.rounds,
        "hub_base_requests_per_model": base_requests / args.rounds,
        "python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(),
        "note": "ratios measured side by side in one run; the machine may be shared",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"base file {size / 1e6:.1f} MB; {local['none']['layers']} tensors, "
          f"{local['raw+euclidean']['deltas_rows']} matrices compared")
    for where, res in (("local", local), ("solve", solve), ("hub", remote)):
        for k, v in res.items():
            print(f"{where:5s} {k:14s} {v['median_s']:7.3f} s  {100 * v['overhead']:+6.1f} %  "
                  f"fetched {v['bytes_fetched'] / 1e6:7.1f} MB")
    print(f"hub: base bytes read per model with deltas {result['hub_base_bytes_per_model'] / 1e6:.1f} MB "
          f"of a {size / 1e6:.1f} MB file")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
