"""Root typer app; sub-command modules register themselves on import."""

from __future__ import annotations

import importlib
import os

# Before numpy loads: OpenBLAS threads busy-wait after each call and starve torch's threads
# (fits right after a numpy call measured up to 50x slower). Torch does the heavy lifting.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer  # noqa: E402

app = typer.Typer(
    name="hubscan",
    help="Heavy-tailed spectral analysis (WeightWatcher method) of model hubs into a Parquet lake.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Sub-command modules; each defines its commands on `app` (or adds a sub-typer).
_COMMAND_MODULES = ["analyze", "query", "listing", "scan", "schedule", "lake", "plot", "report", "serve",
                    "demo", "evals"]
for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"hubscan.cli.{_name}")
    except ModuleNotFoundError as exc:  # a module not written yet must not break the others
        if exc.name != f"hubscan.cli.{_name}":
            raise


def main() -> None:
    app()
