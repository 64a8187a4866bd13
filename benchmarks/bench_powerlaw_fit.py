"""Power-law fit speed: hubscan vs weightwatcher 0.7.7 WWFit vs powerlaw 1.5, side by side.

For n in {256, 1024, 4096, 8192}: one heavy-tailed ESD (eigenvalues of the n×n Gram matrix
of a 1.5n×n Student-t(3) matrix, via torch.linalg.eigvalsh in float64 — the eigen-solve is
timed too), fitted

- as a single spectrum: hubscan ``ww`` vs ``WWFit`` and vs ``powerlaw.Fit(evals)``;
  hubscan ``seed`` vs ``powerlaw.Fit(evals, xmax=max(evals))``;
- as a batch of 64 spectra (the ESD with 64 independent 1% multiplicative jitters: 64
  similar layers) in one ``fit_power_law_batch`` call vs the references one by one.

The references work spectrum by spectrum, so a batch costs the sum of its spectra: where
timing all 64 would take minutes (powerlaw at large n) the script times ``k`` of them and
scales by 64/k; powerlaw with xmax at n = 8192 is timed once (``--quick`` skips n > 1024).
Every such figure is flagged ``"estimated": true`` in the JSON and ``~`` in the table.

Wall-clock times are the median of repetitions; CPU times (``time.process_time``) are
reported too because the benchmark machine may be shared (load average recorded).
numpy's OpenBLAS threads are pinned to 1 before numpy loads: its busy-waiting threads
otherwise steal the cores from torch's OpenMP pool between calls (measured: up to 50×
slower fits right after an eigen-solve). The references do not use BLAS.

    python benchmarks/bench_powerlaw_fit.py [--quick] [--threads 1] [--device cuda]
    python benchmarks/bench_powerlaw_fit.py --ww-only [--ns 1024 4096 8192] [--reps 5]

``--ww-only`` times only single spectra, hubscan ``ww``/``seed`` vs ``WWFit`` (each the
median of ``--reps`` runs on the same spectra, side by side), for three kinds of matrix
(``--kinds``: Student-t, Gaussian, Pareto entries), writing ``powerlaw_fit_single.json``: the
issue's ">= 100x over WWFit" figure, worst case included, in a few minutes.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hubscan.esd.powerlaw.fit import fit_power_law, fit_power_law_batch, resolve_device  # noqa: E402

warnings.filterwarnings("ignore")
BATCH = 64


def quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


def timed(fn, reps: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) over ``reps`` runs after one warm-up."""
    fn()
    walls, cpus = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def timed_refs(fn, spectra, k: int) -> tuple[float, float, bool]:
    """Sequential reference over ``spectra``, timing the first ``k`` and scaling to all."""
    k = min(k, len(spectra))
    w, c = time.perf_counter(), time.process_time()
    for x in spectra[:k]:
        quiet(fn, x)
    scale = len(spectra) / k
    return (time.perf_counter() - w) * scale, (time.process_time() - c) * scale, k < len(spectra)


KINDS = ("t3", "gauss", "pareto")


def make_esd(n: int, seed: int, device: torch.device, kind: str = "t3") -> tuple[np.ndarray, float, float]:
    """ESD of an n×n Gram matrix and the time of forming it and of eigvalsh (float64).

    ``kind`` of the 1.5n×n entries: ``t3`` Student-t(3) (a heavy tail, the default spectrum),
    ``gauss`` (a Marchenko–Pastur bulk: no power law, many near-equal KS distances — the
    search's hardest case), ``pareto`` (symmetric Pareto(2.5): a very heavy tail).
    """
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(int(1.5 * n), n, generator=g, dtype=torch.float64)
    if kind == "t3":  # normal / sqrt(chi2_3 / 3)
        chi = torch.distributions.Chi2(torch.tensor(3.0, dtype=torch.float64)).sample((int(1.5 * n), n))
        W = z / torch.sqrt(chi / 3)
    elif kind == "gauss":
        W = z
    elif kind == "pareto":
        u = torch.rand(int(1.5 * n), n, generator=g, dtype=torch.float64)
        W = torch.sign(z) * (u.pow(-1 / 2.5) - 1)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    W = W.to(device)
    t0 = time.perf_counter()
    G = W.T @ W
    if device.type == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    ev = torch.linalg.eigvalsh(G)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    return ev.cpu().numpy(), t1 - t0, t2 - t1


def settle() -> None:
    """Let torch's OpenMP workers stop spinning after the eigen-solve before timing anything:
    Intel OpenMP keeps them busy-waiting for KMP_BLOCKTIME (200 ms) after a parallel region,
    and on a loaded 2-core machine they take the core from the fit being timed (measured:
    a 0.6 ms fit at n = 4096 took 1.5–8 ms right after eigvalsh)."""
    time.sleep(0.5)


def jitter(x: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [np.sort(x * np.exp(0.01 * rng.standard_normal(len(x)))) for _ in range(k)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="n in {256, 1024} only")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "powerlaw_fit.json"))
    ap.add_argument("--device", default=None, help="torch device for hubscan (default: cuda if available)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's); 1 compares per core with the "
                         "single-threaded references and is robust on a shared machine")
    ap.add_argument("--ww-only", action="store_true",
                    help="single spectra only, hubscan ww/seed vs WWFit (see the module doc)")
    ap.add_argument("--ns", type=int, nargs="+", default=None, help="spectrum sizes")
    ap.add_argument("--reps", type=int, default=5, help="repetitions (--ww-only)")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS,
                    help="matrix entry distributions (--ww-only; the full run uses t3)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ww_only:
        return ww_only(args)

    import powerlaw
    from weightwatcher.WW_powerlaw import WWFit  # test/benchmark-only oracles

    dev = resolve_device(args.device)
    ns = [256, 1024] if args.quick else [256, 1024, 4096, 8192]
    rng = np.random.default_rng(0)
    rows, eig_rows = [], []
    print(f"device={dev} torch_threads={torch.get_num_threads()} load={os.getloadavg()}")
    for n in ns:
        x, t_gram, t_eig = make_esd(n, seed=n, device=dev)
        x_ww = x[x > 1e-5]
        settle()
        reps = 5 if n <= 1024 else 3
        # ---------------- single spectrum
        ours_ww = timed(lambda: fit_power_law(x, fitter="ww", device=dev), reps)
        ours_seed = timed(lambda: fit_power_law(x, fitter="seed", device=dev), reps)
        ours_tr = timed(lambda: fit_power_law(x, fitter="truncated", device=dev), reps)
        ww_ref = timed(lambda: quiet(WWFit, x_ww), 3 if n <= 4096 else 1)
        pl_ref = timed(lambda: quiet(powerlaw.Fit, x, verbose=False), 1 if n >= 4096 else 3)
        pl_x_w, pl_x_c, pl_x_est = timed_refs(lambda v: powerlaw.Fit(v, xmax=float(v.max()), verbose=False),
                                              [x], 1)
        # same answers (the parity tests check many more spectra)
        a, r = fit_power_law(x, fitter="ww"), quiet(WWFit, x_ww)
        assert a.xmin == r.xmin and abs(a.alpha - r.alpha) < 1e-9
        single = {
            "n": n, "case": "single",
            "ours_ww_s": ours_ww[0], "ours_ww_cpu_s": ours_ww[1],
            "ours_seed_s": ours_seed[0], "ours_seed_cpu_s": ours_seed[1],
            "ours_truncated_s": ours_tr[0],
            "wwfit_s": ww_ref[0], "wwfit_cpu_s": ww_ref[1],
            "powerlaw_s": pl_ref[0], "powerlaw_cpu_s": pl_ref[1],
            "powerlaw_xmax_s": pl_x_w, "powerlaw_xmax_cpu_s": pl_x_c, "powerlaw_xmax_estimated": pl_x_est,
        }
        rows.append(single)
        eig_rows.append({"n": n, "gram_s": t_gram, "eigvalsh_s": t_eig,
                         "fit_ww_over_eigvalsh": ours_ww[0] / t_eig,
                         "fit_ww_over_gram_plus_eigvalsh": ours_ww[0] / (t_gram + t_eig)})
        # ---------------- batch of 64
        batch = jitter(x, BATCH, rng)
        ours_b = timed(lambda: fit_power_law_batch(batch, fitter="ww", device=dev), 3 if n <= 1024 else 1)
        ours_bs = timed(lambda: fit_power_law_batch(batch, fitter="seed", device=dev), 3 if n <= 1024 else 1)
        k_ww = BATCH if n <= 1024 else 16
        k_pl = BATCH if n <= 256 else (8 if n <= 1024 else 2)
        ww_b = timed_refs(lambda v: WWFit(v[v > 1e-5]), batch, k_ww)
        pl_b = timed_refs(lambda v: powerlaw.Fit(v, verbose=False), batch, k_pl)
        pl_xb = (pl_x_w * BATCH, pl_x_c * BATCH, True)  # one fit's time × 64
        rows.append({
            "n": n, "case": f"batch{BATCH}",
            "ours_ww_s": ours_b[0], "ours_ww_cpu_s": ours_b[1],
            "ours_seed_s": ours_bs[0], "ours_seed_cpu_s": ours_bs[1],
            "wwfit_s": ww_b[0], "wwfit_cpu_s": ww_b[1], "wwfit_estimated": ww_b[2],
            "powerlaw_s": pl_b[0], "powerlaw_cpu_s": pl_b[1], "powerlaw_estimated": pl_b[2],
            "powerlaw_xmax_s": pl_xb[0], "powerlaw_xmax_cpu_s": pl_xb[1], "powerlaw_xmax_estimated": True,
        })
        for row in rows[-2:]:
            row["x_vs_wwfit"] = row["wwfit_s"] / row["ours_ww_s"]
            row["x_vs_wwfit_cpu"] = row["wwfit_cpu_s"] / row["ours_ww_cpu_s"]
            row["x_vs_powerlaw"] = row["powerlaw_s"] / row["ours_ww_s"]
            row["x_vs_powerlaw_xmax"] = row["powerlaw_xmax_s"] / row["ours_seed_s"]
            est = lambda key: "~" if row.get(key) else " "  # noqa: E731
            print(f"n={n:5d} {row['case']:8s} ours ww {row['ours_ww_s'] * 1e3:9.2f} ms | "
                  f"WWFit {est('wwfit_estimated')}{row['wwfit_s'] * 1e3:10.1f} ms ({row['x_vs_wwfit']:6.1f}x, "
                  f"cpu {row['x_vs_wwfit_cpu']:6.1f}x) | powerlaw {est('powerlaw_estimated')}{row['powerlaw_s']:8.2f} s "
                  f"({row['x_vs_powerlaw']:7.1f}x) | powerlaw xmax {est('powerlaw_xmax_estimated')}"
                  f"{row['powerlaw_xmax_s']:8.1f} s vs ours seed {row['ours_seed_s'] * 1e3:8.2f} ms "
                  f"({row['x_vs_powerlaw_xmax']:8.0f}x)", flush=True)
        e = eig_rows[-1]
        print(f"n={n:5d} eigen-solve: gram {t_gram:.3f} s + eigvalsh {t_eig:.3f} s; "
              f"ww fit = {100 * e['fit_ww_over_eigvalsh']:.2f}% of eigvalsh", flush=True)

    out = {
        "benchmark": "powerlaw_fit",
        "quick": args.quick,
        "device": str(dev),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "loadavg_end": os.getloadavg(),
        "batch": BATCH,
        "notes": "ratios = reference time / hubscan time in the same run; *_estimated: the "
                 "reference was timed on a subset (or once) and scaled to the batch",
        "results": rows,
        "eigen": eig_rows,
    }
    path = Path(args.out)
    if args.quick and path.name == "powerlaw_fit.json":
        path = path.with_name("powerlaw_fit_quick.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


def ww_only(args) -> None:
    """Single spectra: hubscan (``ww``, ``seed``) vs ``WWFit``, same spectra, same run."""
    from weightwatcher.WW_powerlaw import WWFit  # test/benchmark-only oracle

    dev = resolve_device(args.device)
    rows = []
    print(f"device={dev} torch_threads={torch.get_num_threads()} load={os.getloadavg()}")
    for n, kind in [(n, k) for n in args.ns or [1024, 4096, 8192] for k in args.kinds]:
        x, _, _ = make_esd(n, seed=n, device=torch.device("cpu"), kind=kind)
        x_ww = x[x > 1e-5]
        settle()
        ours = timed(lambda: fit_power_law(x, fitter="ww", device=dev), args.reps)
        ours_seed = timed(lambda: fit_power_law(x, fitter="seed", device=dev), args.reps)
        ref = timed(lambda: quiet(WWFit, x_ww), args.reps)
        a, r = fit_power_law(x, fitter="ww", device=dev), quiet(WWFit, x_ww)
        assert a.xmin == r.xmin and abs(a.alpha - r.alpha) < 1e-9
        row = {"n": n, "kind": kind, "case": "single", "ours_ww_s": ours[0], "ours_ww_cpu_s": ours[1],
               "ours_seed_s": ours_seed[0], "wwfit_s": ref[0], "wwfit_cpu_s": ref[1],
               "x_vs_wwfit": ref[0] / ours[0], "x_vs_wwfit_cpu": ref[1] / ours[1], "reps": args.reps}
        rows.append(row)
        print(f"n={n:5d} {kind:6s} ours ww {ours[0] * 1e3:8.3f} ms (seed {ours_seed[0] * 1e3:8.3f} ms) | "
              f"WWFit {ref[0] * 1e3:9.2f} ms | {row['x_vs_wwfit']:6.1f}x wall, "
              f"{row['x_vs_wwfit_cpu']:6.1f}x cpu", flush=True)
    for n in sorted({r["n"] for r in rows}):
        worst = min(rows_n := [r for r in rows if r["n"] == n], key=lambda r: r["x_vs_wwfit"])
        print(f"n={n:5d} slowest kind {worst['kind']}: {worst['x_vs_wwfit']:.1f}x vs WWFit "
              f"(over {len(rows_n)} kinds)")
    out = {"benchmark": "powerlaw_fit_single", "device": str(dev), "torch": torch.__version__,
           "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "platform": platform.platform(), "python": sys.version.split()[0],
           "loadavg_end": os.getloadavg(),
           "notes": "single spectrum; ratios = WWFit time / hubscan time in the same run "
                    "(medians of reps after one warm-up)", "results": rows}
    path = Path(args.out)
    if path.name == "powerlaw_fit.json":
        path = path.with_name("powerlaw_fit_single.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
