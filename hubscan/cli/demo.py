"""``hubscan demo``: a Hub scan, end to end, on a loopback hub — offline, in one command.

It writes the demo zoo (heavy-tailed and Gaussian MLPs, CNNs, GPT-2- and BERT-shaped
models, a sharded checkpoint, a ResNet series with model-card accuracies) into
``demo-models/``, serves it from a fake Hugging Face Hub on 127.0.0.1 inside this process,
and runs ``jobs/demo.toml`` — a ``kind = "hf"`` source — through the real
``huggingface_hub`` client: the listing, one streaming GET per weight file, sha256 checks,
the lake in ``demo-lake/``, its views. Then it prints two DuckDB queries over the lake.
Nothing leaves 127.0.0.1; ``HF_ENDPOINT`` is set for the run and restored after.

Exit status: 0 when the lake holds the demo models, 1 when none could be analysed.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ._app import app

#: Printed after the scan: one row per demo model — what its spectra are.
MODELS_QUERY = """
SELECT m.repo_id AS model, m.arch, m.accuracy AS "acc@1",
       count(*) FILTER (WHERE l.status = 'ok') AS fits,
       round(avg(l.alpha) FILTER (WHERE l.status = 'ok'), 2) AS alpha_mean,
       round(min(l.alpha) FILTER (WHERE l.status = 'ok'), 2) AS alpha_min,
       round(max(l.alpha) FILTER (WHERE l.status = 'ok'), 2) AS alpha_max,
       count(*) FILTER (WHERE l.phase = 'heavy-tailed') AS heavy_tailed,
       count(*) FILTER (WHERE l.phase = 'random-like') AS random_like,
       any_value(m.n_over_trained) AS over_trained,
       any_value(m.n_under_trained) AS under_trained
FROM models_latest AS m JOIN layers AS l ON l.model_key = m.model_key
WHERE l.status IN ('ok', 'fit-failed')
GROUP BY m.repo_id, m.arch, m.accuracy
ORDER BY m.arch, alpha_mean
"""

#: Printed last: the per-architecture view.
ARCH_QUERY = """
SELECT arch, models, layers, fits, round(alpha_mean, 2) AS alpha_mean,
       round(alpha_median, 2) AS alpha_median, round(frac_alpha_2_4, 2) AS frac_alpha_2_4,
       n_over_trained, n_under_trained
FROM arch_summary ORDER BY arch
"""


@app.command("demo")
def demo_command(
    lake: Path = typer.Option(Path("demo-lake"), "--lake", help="Where to write the demo lake."),
    models: Path = typer.Option(Path("demo-models"), "--models", help="Where to generate the demo models (reused while unchanged)."),
    n_models: int = typer.Option(12, "--n-models", min=1, max=60, help="How many demo models to serve (12: the whole demo zoo; more repeat it with new seeds)."),
    ray: bool = typer.Option(False, "--ray/--local", help="Analyse on a local Ray cluster instead of threads in this process (Ray's start-up costs more than this small scan)."),
    force: bool = typer.Option(False, "--force", help="Re-analyse models already in the lake."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live progress display on stderr."),
) -> None:
    """Serve the demo models from a loopback Hub, scan them as an hf source into a lake, and query it."""
    from ..engine.demo import demo_hub, demo_spec
    from ..engine.scan import run_scan
    from ..lake import Lake

    console = Console(width=None if Console().is_terminal else 160)
    spec = demo_spec(lake=str(lake))
    console.print(f"[bold]demo[/] {n_models} demo models in {models}/ (generated on the first run) …")
    with demo_hub(models, n_models=n_models) as hub:
        console.print(f"[bold]hub[/] {hub.url}: {len(hub.repos)} repos hubscan-demo/… "
                      "(a loopback Hugging Face Hub in this process; HF_ENDPOINT points there for the run)")
        summary = run_scan(spec, executor="ray" if ray else "local", force=force, progress=progress,
                           num_cpus=2 if ray else None)
        api, files, served = hub.requests("api"), hub.requests("resolve"), hub.bytes_served()
    console.print(f"[bold]scan[/] {summary.scan_id}: status={summary.status} analysed={summary.n_done} "
                  f"failed={summary.n_failed} already-in-lake={summary.n_skipped} — through huggingface_hub: "
                  f"{api} API calls, {files} file requests, {served / 1e6:.1f} MB streamed")

    db = Lake(str(lake))
    _print(console, db.query(MODELS_QUERY), f"per model — hubscan query --lake {lake} \"…\"")
    _print(console, db.query(ARCH_QUERY),
           f"per architecture — hubscan query --lake {lake} \"SELECT * FROM arch_summary\"")
    console.print("heavy-tailed models: α in [2, 4], phase heavy-tailed; Gaussian (*-gauss) ones: random-like, "
                  "α large. The resnet-ep* series' accuracy falls as its mean α rises.")
    console.print(f"Next: hubscan report --lake {lake} -o report.html  ·  "
                  f"hubscan plot series --lake {lake} -o series.png  ·  "
                  f"hubscan plot esd hubscan-demo/resnet-ep50 --lake {lake} -o esd.png  ·  "
                  f"hubscan serve --lake {lake}")
    if summary.n_done + summary.n_skipped == 0:
        raise typer.Exit(1)


def _print(console: Console, table, title: str) -> None:
    out = Table(title=title)
    for name in table.column_names:
        out.add_column(name, overflow="fold")
    for row in table.to_pylist():
        out.add_row(*("—" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)
                      for v in row.values()))
    console.print(out)
