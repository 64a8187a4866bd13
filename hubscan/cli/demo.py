"""``hubscan demo``: the whole product on an embedded default, offline, in one command.

It generates a few small checkpoints with known spectra (Gaussian → Marchenko–Pastur bulk,
heavy-tailed → power law; dense, conv, GPT-2 ``Conv1D``, BERT-shaped, sharded), scans them
with the real engine (a local Ray cluster, or in process with ``--local``) into a local
lake, and prints a DuckDB query over the lake's views — the same path an overnight hub scan
takes, minus the network.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ._app import app

#: The query printed at the end: alpha per analysed layer, per model.
DEMO_QUERY = """
SELECT repo_id AS model, longname AS layer, kind, N || 'x' || M AS "NxM",
       round(alpha, 3) AS alpha, round(D, 4) AS D, num_pl_spikes AS K, phase, warning
FROM layers
WHERE status IN ('ok', 'fit-failed')
ORDER BY repo_id, layer_id
"""


@app.command("demo")
def demo_command(
    lake: Path = typer.Option(Path("demo-lake"), "--lake", help="Where to write the demo lake."),
    models: Path = typer.Option(Path("demo-models"), "--models", help="Where to generate the demo checkpoints."),
    n_models: int = typer.Option(6, "--n-models", min=1, max=60, help="How many demo models to generate."),
    local: bool = typer.Option(False, "--local", help="Run in process instead of on a local Ray cluster."),
    force: bool = typer.Option(False, "--force", help="Re-analyse models already in the lake."),
) -> None:
    """Generate demo checkpoints, scan them into a local lake, and query alpha per layer."""
    from ..engine.demo import demo_spec
    from ..engine.scan import run_scan
    from ..lake import Lake

    console = Console(width=None if Console().is_terminal else 160)
    spec = demo_spec(lake=str(lake), path=str(models), n_models=n_models)
    summary = run_scan(spec, executor="local" if local else "ray", force=force, num_cpus=2)
    console.print(f"[bold]scan[/] {summary.scan_id}: status={summary.status} "
                  f"analysed={summary.n_done} failed={summary.n_failed} already-in-lake={summary.n_skipped}")

    table = Lake(str(lake)).query(DEMO_QUERY)
    out = Table(title=f"alpha per layer — hubscan query --lake {lake} \"…\"")
    for name in table.column_names:
        out.add_column(name, overflow="fold")
    for row in table.to_pylist():
        out.add_row(*("" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))
    console.print(out)
    console.print(f"{table.num_rows} layers. Try: hubscan query --lake {lake} "
                  "\"SELECT * FROM arch_summary\"  or  hubscan report --lake "
                  f"{lake} -o report.html  or  hubscan serve --lake {lake}")
    if summary.n_done + summary.n_skipped == 0:
        raise typer.Exit(1)
