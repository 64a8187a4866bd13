"""``hubscan analyze``: analyse checkpoints named on the command line into a lake, in process.

For a handful of models — a file, a folder, a sharded checkpoint, ``hf://owner/name[@rev]``,
``tv://resnet50`` — without a Ray cluster. Big fan-outs use ``hubscan scan``. Each model is
one unit of work (``hubscan.analysis.model.analyze_model``), written to the lake as soon as it is
done, so an interrupted run keeps what it finished and a rerun skips it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._app import app

_console = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 140)


@app.command("analyze")
def analyze_command(
    paths: list[str] = typer.Argument(..., help="Checkpoint files/folders, hf://owner/name[@rev], tv://model[:WEIGHTS]."),
    lake: str = typer.Option("lake", "--lake", envvar="HUBSCAN_LAKE", help="Lake folder or object-store URI (s3://bucket/prefix)."),
    convention: str = typer.Option("ww", "--convention", help="ww (weightwatcher 0.7.x) or seed (σ²/N, powerlaw 1.5 xmax=max)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    min_evals: int = typer.Option(8, "--min-evals", help="Skip matrices with fewer eigenvalues."),
    max_evals: int = typer.Option(15000, "--max-evals", help="Skip matrices with more eigenvalues."),
    no_spectra: bool = typer.Option(False, "--no-spectra", help="Do not store eigenvalues in the spectra table."),
    force: bool = typer.Option(False, "--force", help="Re-analyse models already in the lake."),
    allow_bin: Optional[bool] = typer.Option(
        None, "--allow-bin/--no-bin",
        help="Read pickled .bin/.pt/.pth weights (weights_only=True, never full unpickling). "
             "Default: on for local files and torchvision (which ships only .pth), off for the Hub."),
    base: Optional[str] = typer.Option(
        None, "--base", help="A base model (path or URI): write each model's fine-tune deltas against it "
                             "(weightwatcher distances raw/euclidean/CKA; the base is read by Range requests)."),
    delta_esd: bool = typer.Option(False, "--delta-esd", help="With --base: also fit the ESD of W - W_base."),
) -> None:
    """Analyse checkpoints into the lake and print a per-model summary."""
    from ..analysis.model import analyze_model
    from ..lake import Lake
    from ..options import AnalysisOptions
    from ..refs import model_key
    from ..sources import resolve

    try:
        options = AnalysisOptions(convention=convention, device=device, min_evals=min_evals,
                                  max_evals=max_evals, keep_spectra=not no_spectra)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc

    refs, unresolved = [], []
    for p in paths:
        try:
            refs.extend(resolve(p))
        except Exception as exc:  # noqa: BLE001 - report every bad argument, then go on
            unresolved.append((p, exc))
            _console.print(f"[red]cannot open {p}:[/] {type(exc).__name__}: {exc}")
    if not refs:
        _console.print("[red]nothing to analyse[/]")
        raise typer.Exit(2)

    bases, deltas = (), None
    if base is not None:
        from ..options import DeltaOptions

        try:
            bases = tuple(resolve(base)[:1])
        except Exception as exc:  # noqa: BLE001 - one line, then stop: the user asked for it
            _console.print(f"[red]cannot open base {base}:[/] {type(exc).__name__}: {exc}")
            raise typer.Exit(2) from None
        deltas = DeltaOptions(distances=True, methods=("raw", "euclidean", "cka"), esd=delta_esd)
    elif delta_esd:
        raise typer.BadParameter("--delta-esd needs --base")

    the_lake = Lake(lake)
    done = set() if force else the_lake.done_model_keys(options.analysis_version)
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=_console, transient=True) as progress:
        task = progress.add_task("analysing", total=len(refs))
        for ref in refs:
            key = model_key(ref.source, ref.repo_id, ref.revision, options.analysis_version)
            progress.update(task, description=f"analysing {ref.repo_id}")
            if key in done:
                _console.print(f"[dim]already in lake: {ref.repo_id}@{ref.revision[:12]} (use --force)[/]")
                progress.advance(task)
                continue
            bins = allow_bin if allow_bin is not None else ref.source in ("local", "tv")
            result = analyze_model(ref, options, allow_bin=bins, bases=bases, deltas=deltas)
            the_lake.write(result)
            results.append(result)
            progress.advance(task)

    _print_summary(results)
    n_failed = sum(1 for r in results if r.model.get("status") == "failed")
    if results and n_failed == len(results):
        _console.print("[red]no model could be analysed[/]")
        raise typer.Exit(1)
    if unresolved:
        raise typer.Exit(1)


def _fmt(x: Optional[float]) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _print_summary(results) -> None:
    if not results:
        return
    table = Table(title="hubscan analyze", show_lines=False)
    for col in ("model", "status", "analysed", "skipped", "failed", "mean alpha", "alpha in [2,6]", "warnings"):
        table.add_column(col)
    for r in results:
        m = r.model
        warn = []
        if m.get("n_over_trained"):
            warn.append(f"{m['n_over_trained']} over-trained")
        if m.get("n_under_trained"):
            warn.append(f"{m['n_under_trained']} under-trained")
        frac = m.get("frac_alpha_2_6")
        table.add_row(
            str(m.get("repo_id")), str(m.get("status")), str(m.get("n_analysed")), str(m.get("n_skipped")),
            str(m.get("n_failed")), _fmt(m.get("alpha_mean")),
            "—" if frac is None else f"{100 * frac:.0f}%", ", ".join(warn) or "—",
        )
    out = Console()
    Console(width=None if out.is_terminal else 140).print(table)
    for r in results:
        for f in r.failures:
            _console.print(f"[yellow]failure[/] {r.model.get('repo_id')}: {f.get('error_class')}: {f.get('message')}")
