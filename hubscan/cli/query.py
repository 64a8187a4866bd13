"""``hubscan query``: SQL over the lake's DuckDB views, printed or saved.

    hubscan query --lake ./lake "SELECT arch, models, alpha_mean FROM arch_summary"
    hubscan query --lake s3://bucket/lake -s endpoint_override=http://127.0.0.1:9000 \\
        "SELECT * FROM layers_latest ORDER BY alpha DESC LIMIT 20" --format csv -o worst.csv

Views: models, model_files, file_layers, layers, spectra, failures, scans, models_latest,
layers_latest, model_summary, arch_summary, history (and raw_<table>); docs/lake.md.
"""

from __future__ import annotations

import enum
import json
import math
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any, Optional

import pyarrow as pa
import typer
from rich.console import Console
from rich.table import Table

from ._app import app

__all__ = ["query_command", "parse_storage_options", "LAKE_OPTION_HELP"]

_err = Console(stderr=True)

LAKE_OPTION_HELP = "Lake folder or object-store URI (s3://bucket/prefix). Env: HUBSCAN_LAKE."
STORAGE_OPTION_HELP = ("Filesystem option key=value (repeatable), e.g. "
                       "endpoint_override=http://127.0.0.1:9000, access_key=…, secret_key=…")


class Format(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def parse_storage_options(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}", param_hint="--storage-option")
        out[key.strip()] = value
    return out


@app.command("query")
def query_command(
    sql: str = typer.Argument(..., help="SQL to run ('-' reads it from stdin)."),
    lake: str = typer.Option("lake", "--lake", envvar="HUBSCAN_LAKE", help=LAKE_OPTION_HELP),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table (rich), csv, json or parquet."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    max_rows: int = typer.Option(200, "--max-rows", help="Rows shown in table format (files get all)."),
    storage_option: list[str] = typer.Option([], "--storage-option", "-s", help=STORAGE_OPTION_HELP),
) -> None:
    """Run SQL against the lake's views (DuckDB) and print the result."""
    import duckdb

    from ..errors import HubscanError
    from ..lake import Lake

    if sql == "-":
        sql = sys.stdin.read()
    try:
        result = Lake(lake, storage_options=parse_storage_options(storage_option)).query(sql)
    except (duckdb.Error, HubscanError, OSError, pa.ArrowException) as exc:
        _err.print(f"[red]query failed:[/] {type(exc).__name__}: {str(exc).splitlines()[0]}")
        raise typer.Exit(1) from exc
    write_result(result, fmt=fmt, output=output, max_rows=max_rows)


def write_result(result: pa.Table, *, fmt: Format, output: Path | None, max_rows: int = 200) -> None:
    """Print or save an Arrow table in one of the CLI formats."""
    if fmt is Format.parquet:
        import pyarrow.parquet as pq

        if output is None:
            raise typer.BadParameter("parquet output needs --output FILE", param_hint="--format")
        pq.write_table(result, output, compression="zstd")
    elif fmt is Format.csv:
        import pyarrow.csv as pacsv

        sink = pa.BufferOutputStream()
        pacsv.write_csv(_csv_safe(result), sink)
        _emit(sink.getvalue().to_pybytes(), output)
    elif fmt is Format.json:
        text = json.dumps(_no_nan(result.to_pylist()), default=_json_default, allow_nan=False,
                          indent=None if output else 1)
        _emit((text + "\n").encode(), output)
    else:
        table = _rich_table(result, max_rows)
        if output is None:
            Console().print(table)
        else:
            with open(output, "w", encoding="utf-8") as f:
                Console(file=f, width=200).print(table)
    if output is not None:
        _err.print(f"wrote {result.num_rows} row(s) to {output}")


def _emit(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data) if hasattr(sys.stdout, "buffer") else sys.stdout.write(data.decode())
        sys.stdout.flush()
    else:
        Path(output).write_bytes(data)


def _csv_safe(table: pa.Table) -> pa.Table:
    """CSV has no lists: render list columns as JSON text."""
    cols = []
    for name, col in zip(table.column_names, table.columns):
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_struct(col.type):
            col = pa.array([None if v is None else json.dumps(v, default=_json_default)
                            for v in col.to_pylist()], pa.string())
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)


def _no_nan(value: Any) -> Any:
    """JSON has no NaN: a NaN metric (e.g. a degenerate fit) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]NULL[/]"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, list):
        text = ", ".join(_cell(v) for v in value[:6])
        return f"[{text}{', …' if len(value) > 6 else ''}]"
    return str(value)


def _rich_table(result: pa.Table, max_rows: int) -> Table:
    table = Table(show_lines=False, header_style="bold")
    for name, typ in zip(result.column_names, result.schema.types):
        table.add_column(name, justify="right" if pa.types.is_integer(typ) or pa.types.is_floating(typ) else "left")
    for row in result.slice(0, max_rows).to_pylist():
        table.add_row(*[_cell(v) for v in row.values()])
    if result.num_rows > max_rows:
        table.caption = f"{max_rows} of {result.num_rows} rows (use --max-rows or --format csv -o FILE)"
    else:
        table.caption = f"{result.num_rows} row(s)"
    return table
