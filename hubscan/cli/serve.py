"""``hubscan serve``: the web explorer over a lake (see docs/serve.md)."""

from __future__ import annotations

from typing import Optional

import typer

from ._app import app
from .query import LAKE_OPTION_HELP, STORAGE_OPTION_HELP, parse_storage_options


@app.command("serve")
def serve_command(
    lake: str = typer.Option("lake", "--lake", envvar="HUBSCAN_LAKE", help=LAKE_OPTION_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback needs --token."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    token: Optional[str] = typer.Option(None, "--token", envvar="HUBSCAN_SERVE_TOKEN",
                                        help="Shared secret every request must present (prefer the "
                                             "HUBSCAN_SERVE_TOKEN variable: it stays out of `ps`)."),
    refresh_s: float = typer.Option(30.0, "--refresh-s", min=0.0, help="Check the lake for new files this often and rebuild the snapshot (0 = never)."),
    access_log: bool = typer.Option(False, "--access-log", help="Print one line per request."),
    storage_option: list[str] = typer.Option([], "--storage-option", "-s", help=STORAGE_OPTION_HELP),
) -> None:
    """Explore the lake in a browser: leaderboard, architectures, models, layers, compare, SQL."""
    import duckdb

    from ..errors import HubscanError
    from ..serve import ServeOptions, serve

    options = ServeOptions(lake=lake, host=host, port=port, token=token or None,
                           refresh_s=refresh_s, access_log=access_log,
                           storage_options=parse_storage_options(storage_option))
    try:
        serve(options, echo=typer.echo)
    except (HubscanError, duckdb.Error, OSError) as exc:
        typer.echo(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
        raise typer.Exit(2) from None
