"""How long do `hubscan report` and the lake-wide plots take on a lake of ~100k layer rows?

Builds a synthetic lake (``hubscan.lake.synthetic``: plausible rows, spectra of 32
eigenvalues) of ``--models`` models × ``--layers`` tensors, then times, in one run:

- ``report_data`` (every aggregate of the report, DuckDB) and the whole ``build_report``
  (aggregates + figures + HTML);
- ``plot_alpha`` and ``plot_series`` (lake-wide figures);
- the per-figure share of the report's time.

Writes ``benchmarks/results/report_bench.json``. Timings are wall-clock on this machine; the
ratios (figures vs aggregates, report vs rows) are what carries over.

    python benchmarks/report_bench.py --models 1000 --layers 100
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


def build(root: Path, models: int, layers: int) -> tuple[object, float]:
    from hubscan.lake import Lake
    from hubscan.lake.synthetic import synthetic_result

    lake = Lake(str(root), fsync=False)
    archs = [f"Arch{k:02d}" for k in range(24)]
    t0 = time.perf_counter()
    for i in range(models):
        arch = archs[i % len(archs)]
        r = synthetic_result(repo_id=f"org{i % 50}/{arch.lower()}-{i}", arch=arch,
                             n_layers=layers, alpha_loc=2.5 + (i % 24) / 6, seed=i, n_evals=32)
        r.model["accuracy"] = 60.0 + (i * 7919 % 300) / 10.0
        lake.write(r)
    return lake, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--keep", type=Path, default=None,
                    help="Build the lake here and keep it (reused when it already has models).")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "report_bench.json")
    args = ap.parse_args()

    from hubscan.plots import plot_alpha, plot_series
    from hubscan.report import ReportOptions, build_report, report_data

    tmp = None
    root = args.keep
    if root is None:
        tmp = tempfile.mkdtemp(prefix="hubscan-report-bench-")
        root = Path(tmp) / "lake"
    try:
        if args.keep is not None and (root / "models").is_dir():
            from hubscan.lake import Lake

            lake, t_build = Lake(str(root)), None
        else:
            lake, t_build = build(root, args.models, args.layers)
        n_rows = lake.query("SELECT count(*) AS n FROM layers").column("n")[0].as_py()
        n_models = lake.query("SELECT count(*) AS n FROM models").column("n")[0].as_py()
        built = "reused" if t_build is None else f"built in {t_build:.1f} s"
        print(f"lake: {n_models} models, {n_rows} layer rows, {built}")

        con = lake.connect()
        t0 = time.perf_counter()
        data = report_data(con, ReportOptions())
        t_data = time.perf_counter() - t0
        con.close()
        print(f"report_data: {t_data:.2f} s  ({', '.join(f'{k} {v:.2f}' for k, v in data.timings.items())})")

        t0 = time.perf_counter()
        html = build_report(lake)
        t_report = time.perf_counter() - t0
        print(f"build_report: {t_report:.2f} s, {len(html) / 1e6:.2f} MB of HTML")

        t0 = time.perf_counter()
        plot_alpha(lake, by="arch")
        t_alpha = time.perf_counter() - t0
        t0 = time.perf_counter()
        plot_series(lake, metric="alpha", vs="accuracy")
        t_series = time.perf_counter() - t0
        print(f"plot_alpha: {t_alpha:.2f} s, plot_series: {t_series:.2f} s")

        result = {
            "models": n_models, "layer_rows": n_rows, "build_s": t_build,
            "report_data_s": t_data, "report_data_breakdown_s": data.timings,
            "build_report_s": t_report, "html_bytes": len(html),
            "plot_alpha_s": t_alpha, "plot_series_s": t_series,
            "figures_share_of_report": (t_report - t_data) / t_report,
            "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                        "cpus": os.cpu_count()},
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
