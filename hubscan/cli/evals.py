"""``hubscan evals …``: reported quality numbers in the lake, and what the spectra say about them.

- ``hubscan evals import FILE.csv --lake L`` — a CSV of measured metrics into the ``evals``
  table (columns in ``hubscan.lake.evals_csv``); bad lines are listed and skipped.
- ``hubscan evals correlations --lake L`` — per family / base-model group, how each
  model-level metric ranks the models by each reported metric: Spearman's rho, Kendall's
  tau-b, n and permutation p-values (``hubscan.lake.quality``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ._app import app

evals_app = typer.Typer(name="evals", help="Reported metrics: import a CSV, correlate with the spectra.",
                        no_args_is_help=True, add_completion=False)
app.add_typer(evals_app, name="evals")

_out = Console()
_err = Console(stderr=True)


@evals_app.command("import")
def import_command(
    csv_file: Path = typer.Argument(..., help="CSV with columns model (or repo_id), metric, value [task, dataset, …]."),
    lake: str = typer.Option("lake", "--lake", envvar="HUBSCAN_LAKE", help="Lake folder or object-store URI."),
) -> None:
    """Import reported metrics from a CSV into the lake's evals table."""
    from ..errors import LakeError
    from ..lake import Lake
    from ..lake.evals_csv import import_evals_csv

    try:
        done = import_evals_csv(Lake(lake), csv_file)
    except LakeError as exc:
        _err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    for line, why in done.skipped:
        _err.print(f"[yellow]{csv_file}:{line}[/] skipped: {why}")
    models = len({(r["source"], r["repo_id"]) for r in done.rows})
    _out.print(f"imported {len(done.rows)} value(s) for {models} model(s) from {csv_file}"
               + (f"; {len(done.skipped)} line(s) skipped" if done.skipped else ""))
    if not done.rows:
        raise typer.Exit(1)


def _fmt(v: Optional[float], digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


@evals_app.command("correlations")
def correlations_command(
    lake: str = typer.Option("lake", "--lake", envvar="HUBSCAN_LAKE", help="Lake folder or object-store URI."),
    group: Optional[str] = typer.Option(None, "--group", help="family | base_model (default: both)."),
    metric: Optional[str] = typer.Option(None, "--metric", help="alpha_mean | alpha_weighted_mean | log_norm_mean | log_alpha_norm_mean."),
    variant: Optional[str] = typer.Option(None, "--variant", help="all | no_last_fc (all layers but the last FC)."),
    permutations: int = typer.Option(9999, "--permutations", help="Random pairings for p-values when n > 8 (exact below)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random pairings."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Spearman / Kendall of model-level metrics with reported metrics, per group, with p-values."""
    from ..lake import Lake
    from ..lake.quality import correlations

    where = []
    for col, val in (("group_kind", group), ("metric", metric), ("variant", variant)):
        if val is not None:
            where.append(f"{col} = '{val.replace(chr(39), chr(39) * 2)}'")
    rows = correlations(Lake(lake), where=" AND ".join(where) or None, permutations=permutations, seed=seed)
    if not rows:
        _out.print("no correlations: no group of ≥ 3 analysed models with a reported metric "
                   "(cards' model-index, torchvision's enums or `hubscan evals import`)")
        return
    if as_json:
        for r in rows:
            _out.print_json(json.dumps(r.as_dict()), indent=None)
        return
    t = Table(title="spectral metrics vs reported metrics (rank correlations)")
    for col in ("group", "metric", "variant", "vs", "n", "Spearman ρ", "p", "Kendall τ", "p"):
        t.add_column(col, justify="right" if col in ("n", "Spearman ρ", "Kendall τ", "p") else "left")
    for r in rows:
        vs = r.eval_metric + (f" ({r.dataset})" if r.dataset else "")
        t.add_row(f"{r.group_kind}:{r.group_name}", r.metric, r.variant, vs, str(r.n), _fmt(r.spearman),
                  _fmt(r.p_spearman, 4), _fmt(r.kendall), _fmt(r.p_kendall, 4))
    _out.print(t)
