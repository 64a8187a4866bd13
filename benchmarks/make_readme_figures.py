"""Make the two README pictures from the demo lake: docs/img/esd.png and docs/img/alpha_by_arch.png.

The demo lake is what ``hubscan demo`` scans (``hubscan.engine.demo``: the demo zoo,
Gaussian and heavy-tailed, MLP/CNN/GPT-2/BERT shapes, served by a loopback hub). If
``--lake`` does not hold a lake yet, the same demo is scanned here with the in-process
executor (no Ray needed), so the pictures are reproducible from a clean clone:

    python benchmarks/make_readme_figures.py                 # builds ./demo-lake if missing
    python benchmarks/make_readme_figures.py --lake demo-lake --out docs/img

The ESD picture shows a heavy-tailed demo layer (phase heavy-tailed, alpha in [2, 6], a
rectangular matrix — Q ≥ 2, so the MP bulk has a visible edge — with the most eigenvalues);
the other shows every layer's alpha by architecture with the universality bands.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def ensure_demo_lake(lake_dir: Path, models_dir: Path) -> None:
    """Scan the demo spec into ``lake_dir`` unless it already holds models."""
    from hubscan.lake import Lake

    if (lake_dir / "models").is_dir():
        n = Lake(str(lake_dir)).query("SELECT count(*) AS n FROM models").column("n")[0].as_py()
        if n:
            print(f"using the demo lake at {lake_dir} ({n} models)")
            return
    from hubscan.engine.demo import demo_hub, demo_spec
    from hubscan.engine.scan import run_scan

    with demo_hub(models_dir):
        summary = run_scan(demo_spec(lake=str(lake_dir)), executor="local", progress=False)
    print(f"scanned the demo spec into {lake_dir}: {summary}")


def pick_layer(lake) -> tuple[str, str]:
    """(model_key, tensor) of the layer the ESD picture shows."""
    rows = lake.query("""
        SELECT l.model_key, l.tensor, l.num_evals, l.alpha
        FROM layers_latest AS l
        WHERE l.status = 'ok' AND l.alpha BETWEEN 2 AND 6 AND l.phase = 'heavy-tailed' AND l.Q >= 2
        ORDER BY l.num_evals DESC, l.D ASC, l.repo_id, l.tensor LIMIT 1""").to_pylist()
    if not rows:  # a lake of other models: the fitted layer with the most eigenvalues
        rows = lake.query("""SELECT model_key, tensor FROM layers_latest WHERE status = 'ok'
                             ORDER BY num_evals DESC, D ASC LIMIT 1""").to_pylist()
    return rows[0]["model_key"], rows[0]["tensor"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=Path("demo-lake"))
    ap.add_argument("--models", type=Path, default=Path("demo-models"),
                    help="Where the demo checkpoints are generated when the lake is built here.")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "img")
    args = ap.parse_args()

    from hubscan.lake import Lake
    from hubscan.plots import plot_alpha, plot_esd, save_figure

    ensure_demo_lake(args.lake, args.models)
    lake = Lake(str(args.lake))
    key, tensor = pick_layer(lake)
    esd = save_figure(plot_esd(lake, key, tensor), args.out / "esd.png", dpi=100)
    alpha = save_figure(plot_alpha(lake, by="arch"), args.out / "alpha_by_arch.png", dpi=100)
    print(f"wrote {esd} ({key} · {tensor}) and {alpha}")


if __name__ == "__main__":
    main()
