"""``hubscan report``: one self-contained HTML report of the lake (see docs/plots.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app


@app.command("report")
def report_command(
    lake: Path = typer.Option(Path("lake"), "--lake", help="Lake folder or object-store URI."),
    out: Path = typer.Option(Path("report.html"), "-o", "--output", help="HTML file to write."),
    where: Optional[str] = typer.Option(None, "--where", help="SQL predicate on layer rows, e.g. \"arch = 'BertModel'\" or \"accuracy > 75\"."),
    title: str = typer.Option("hubscan report", "--title", help="Page title."),
    top: int = typer.Option(15, "--top", help="Rows in each 'worst …' table."),
    svg: bool = typer.Option(False, "--svg", help="Inline SVG images instead of PNG (sharper, larger)."),
    no_layer_figures: bool = typer.Option(False, "--no-layer-figures", help="Skip the per-layer ESD/fit/KS pictures."),
) -> None:
    """Write an HTML report: overview, per-architecture table, universality, warnings, outliers, pictures."""
    import duckdb

    from ..errors import HubscanError
    from ..report import ReportOptions, write_report

    options = ReportOptions(where=where, title=title, top_n=top,
                            image_format="svg" if svg else "png",
                            layer_figures=not no_layer_figures)
    try:
        path = write_report(str(lake), out, options=options)
    except (HubscanError, duckdb.Error) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(str(path))
