"""Dequantisation benchmark: throughput per format (GB/s of float32 produced, one core) and
its share of the eigen-solve of the same matrix (goal: < 10 %), plus how far each format
moves alpha of a heavy-tailed matrix.

    python benchmarks/bench_dequant.py                 # 2048 x 2048, 3 repeats
    python benchmarks/bench_dequant.py --size 1024     # quick look

Each format's file is written by ``hubscan.testing.quantized.quantized_files`` (one matrix,
every format) and read through the real reader (``read_quantized``: safetensors grouping or
the GGUF reader). ``load_s`` is a logical tensor's whole ``load()`` (mapping the packed
bytes + dequantising), ``read_s`` the same parts loaded without dequantising, so
``dequant_s = load_s − read_s``. ``eig_s`` is ``hubscan.esd.spectral.eigenvalues`` on the
dequantised matrix (the analysis' solve, same thread count). Figures are medians of
``--repeat`` runs measured side by side in one process; read them as ratios.

Writes benchmarks/results/dequant.json.
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

import numpy as np
import torch

from hubscan.analysis.tensors import analyze_tensors
from hubscan.esd.layers import classify
from hubscan.options import AnalysisOptions
from hubscan.refs import TensorRef
from hubscan.esd.spectral import eigenvalues
from hubscan.testing.checkpoints import student_t_matrix
from hubscan.testing.quantized import FORMATS, quantized_files, read_quantized


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _logical(path: Path) -> TensorRef:
    (ref,) = [r for r in read_quantized(path) if r.quant is not None]
    return ref


def _read_parts(ref: TensorRef) -> None:
    """Load the stored parts only (what a float checkpoint's load would cost)."""
    loader = ref.load
    parts = getattr(loader, "parts", None)
    if parts is not None:  # safetensors group: its stored tensors
        for p in parts.values():
            p.load()
        return
    from hubscan.readers._mmapio import read_range  # GGUF: the tensor's byte range

    read_range(ref.file, ref.offset, ref.nbytes)


def _alpha(w: torch.Tensor, opts: AnalysisOptions) -> float:
    (lr,) = analyze_tensors([TensorRef("w.weight", tuple(w.shape), "F32", "", load=lambda: w)], opts)
    return float(lr.row["alpha"])


def _matrix(d: torch.Tensor) -> torch.Tensor:
    return d[0].t().contiguous() if d.dim() == 3 else d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2048, help="matrix side (a multiple of 256)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--alpha-seeds", type=int, default=4, help="seeds of the 256x512 alpha-shift measurement")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dequant.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    opts = AnalysisOptions(mp_fit=False, compare=False, device="cpu")

    n = args.size
    w = torch.from_numpy(student_t_matrix(n, n, 2.0, seed=0).astype(np.float32))
    lm = classify("w.weight", (n, n), "F32", options=AnalysisOptions(max_evals=10**9, max_N=10**9))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = quantized_files(tmp, w)
        for fmt, path in files.items():
            ref = _logical(path)
            d = _matrix(ref.load())
            load_s = _median(ref.load, args.repeat)
            read_s = _median(lambda ref=ref: _read_parts(ref), args.repeat)
            eig_s = _median(lambda d=d: eigenvalues(d, lm, device="cpu"), args.repeat)
            deq_s = max(load_s - read_s, 1e-9)
            out_bytes = d.numel() * 4
            results[fmt] = {
                "method": ref.quant.method, "packed_bytes": int(ref.nbytes or 0), "float32_bytes": out_bytes,
                "load_s": load_s, "read_s": read_s, "dequant_s": deq_s, "eig_s": eig_s,
                "dequant_GBps_per_core": out_bytes / deq_s / 1e9,
                "dequant_share_of_eig": deq_s / eig_s,
            }
            print(f"{fmt:14s} {results[fmt]['dequant_GBps_per_core']:6.2f} GB/s/core  "
                  f"dequant/eig {results[fmt]['dequant_share_of_eig']:6.1%}  (load {load_s*1e3:7.1f} ms, "
                  f"eig {eig_s*1e3:7.1f} ms)", flush=True)

    shifts: dict[str, list[float]] = {f: [] for f in FORMATS}
    for seed in range(args.alpha_seeds):
        w = torch.from_numpy(student_t_matrix(256, 512, 2.0, seed=seed).astype(np.float32))
        a0 = _alpha(w, opts)
        with tempfile.TemporaryDirectory() as tmp:
            for fmt, path in quantized_files(tmp, w).items():
                shifts[fmt].append(_alpha(_matrix(_logical(path).load()), opts) - a0)
    for fmt, v in shifts.items():
        results[fmt]["alpha_shift"] = v
        results[fmt]["alpha_shift_max_abs"] = max(abs(x) for x in v)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "dequant", "size": n, "repeat": args.repeat, "threads": 1,
        "alpha_matrix": "Student-t nu=2, 256x512, seeds 0..%d" % (args.alpha_seeds - 1),
        "platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
        "cpu_count": os.cpu_count(), "note": "measured on a shared machine; read as ratios",
        "formats": results,
    }, indent=1))
    worst = max(results.values(), key=lambda r: r["dequant_share_of_eig"])
    print(f"worst dequant share of the eigen-solve: {worst['method']} {worst['dequant_share_of_eig']:.1%}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
