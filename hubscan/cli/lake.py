"""``hubscan lake stats | compact | check | sql | synth``: keep a lake healthy for years.

Thin commands over ``hubscan.lake.stats``, ``.compact`` and ``.check``; ``synth`` writes a
generated lake of any size for benchmarks (``hubscan.lake.synthetic``); see docs/lake.md.
"""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from ._app import app
from .query import LAKE_OPTION_HELP, STORAGE_OPTION_HELP, parse_storage_options

__all__ = ["lake_app"]

lake_app = typer.Typer(name="lake", help="Lake maintenance: stats, compact, check, sql, synth.",
                       no_args_is_help=True)
app.add_typer(lake_app, name="lake")

_out = Console()
_err = Console(stderr=True)

_LAKE = typer.Option("lake", "--lake", envvar="HUBSCAN_LAKE", help=LAKE_OPTION_HELP)
_STORAGE = typer.Option([], "--storage-option", "-s", help=STORAGE_OPTION_HELP)
_JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _open(lake: str, storage_option: list[str]):
    from ..lake import Lake

    return Lake(lake, storage_options=parse_storage_options(storage_option))


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


@lake_app.command("stats")
def stats_command(lake: str = _LAKE, storage_option: list[str] = _STORAGE,
                  as_json: bool = _JSON,
                  partitions: bool = typer.Option(False, "--partitions", help="One line per partition.")) -> None:
    """Files, rows and bytes per table (and partition)."""
    st = _open(lake, storage_option).stats()
    if as_json:
        print(json.dumps(st.as_dict(), indent=1))
        return
    table = Table(title=f"lake {lake}", header_style="bold")
    for col in ("table", *(("partition",) if partitions else ()), "files", "rows", "bytes", "mean file"):
        table.add_column(col, justify="left" if col in ("table", "partition") else "right")
    if partitions:
        for p in st.partitions:
            table.add_row(p.table, p.partition, str(p.files), f"{p.rows:,}", _size(p.bytes),
                          _size(p.mean_file_bytes))
    else:
        for name, t in st.by_table().items():
            table.add_row(name, str(t["files"]), f"{t['rows']:,}", _size(t["bytes"]),
                          _size(t["bytes"] / t["files"]))
    _out.print(table)
    extra = []
    if st.temp_files:
        extra.append(f"{st.temp_files} temp file(s)")
    if st.pending_deletes:
        extra.append(f"{st.pending_deletes} file(s) pending deletion")
    if st.other_files:
        extra.append(f"{len(st.other_files)} other file(s)")
    if extra:
        _out.print("; ".join(extra))


@lake_app.command("compact")
def compact_command(
    lake: str = _LAKE, storage_option: list[str] = _STORAGE,
    table: list[str] = typer.Option([], "--table", "-t", help="Only these tables (repeatable)."),
    target_mb: float = typer.Option(128.0, "--target-mb", help="Merge files smaller than this, into files of about this size."),
    grace_s: float = typer.Option(0.0, "--grace-s", help="Delete merged inputs only in a run at least this many seconds later."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be merged."),
    as_json: bool = _JSON,
) -> None:
    """Merge small files per partition and drop superseded rows (safe while scans run)."""
    from ..errors import HubscanError

    try:
        rep = _open(lake, storage_option).compact(tables=table or None,
                                                  target_bytes=int(target_mb * 2**20),
                                                  grace_s=grace_s, dry_run=dry_run)
    except HubscanError as exc:
        _err.print(f"[red]compact failed:[/] {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps(rep.as_dict(), indent=1))
        return
    verb = "would merge" if dry_run else "merged"
    _out.print(f"{verb} {len(rep.groups)} group(s): files {rep.files_before} → {rep.files_after}, "
               f"bytes {_size(rep.bytes_before)} → {_size(rep.bytes_after)}, rows "
               f"{rep.rows_in:,} → {rep.rows_out:,} in {rep.seconds:.2f} s")
    if rep.pending_recorded:
        _out.print(f"{rep.pending_recorded} input file(s) will be deleted after {grace_s:g} s "
                   "(by the next compaction)")
    if rep.pending_deleted or rep.temp_removed:
        _out.print(f"deleted {rep.pending_deleted} pending file(s), {rep.temp_removed} stale temp file(s)")


@lake_app.command("check")
def check_command(
    lake: str = _LAKE, storage_option: list[str] = _STORAGE,
    strict: bool = typer.Option(False, "--strict", help="Warnings (cross-file duplicates, uncommitted units) fail too."),
    temp_age_s: float = typer.Option(3600.0, "--temp-age-s", help="Temp files older than this are orphans."),
    as_json: bool = _JSON,
) -> None:
    """Check every file's schema and layout, keys and references; exit 1 on problems."""
    rep = _open(lake, storage_option).check(strict=strict, temp_max_age_s=temp_age_s)
    if as_json:
        print(json.dumps(rep.as_dict(), indent=1))
    else:
        for f in rep.findings:
            colour = "red" if f.severity == "error" else "yellow"
            where = f" [dim]{f.path}[/]" if f.path else ""
            _out.print(f"[{colour}]{f.severity}[/] {f.kind}: {f.message}{where}")
        _out.print(f"{rep.files_checked} file(s) checked: {len(rep.errors)} error(s), "
                   f"{len(rep.warnings)} warning(s) — {'OK' if rep.ok else 'PROBLEMS'}")
    if not rep.ok:
        raise typer.Exit(1)


@lake_app.command("sql")
def sql_command(lake: str = _LAKE, storage_option: list[str] = _STORAGE) -> None:
    """Print the view definitions as a SQL script for the duckdb CLI."""
    sys.stdout.write(_open(lake, storage_option).sql_script())


@lake_app.command("synth")
def synth_command(
    lake: str = typer.Option(..., "--lake", help="Where to write the generated lake (a new folder)."),
    models: int = typer.Option(10_000, "--models", min=1, help="Repos to generate."),
    layers: int = typer.Option(100, "--layers", min=1, help="Tensors per analysed weight file."),
    evals: int = typer.Option(32, "--evals", min=8, help="Stored eigenvalues per analysed layer."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same seed writes the same lake)."),
    compact: bool = typer.Option(True, "--compact/--no-compact", help="Compact the lake afterwards."),
) -> None:
    """Write a generated lake (synthetic numbers, real layout) for benchmarks: 10,000 repos x
    100 layers is a million layer rows."""
    import os

    from ..lake import Lake
    from ..lake.synthetic import write_synthetic_lake

    if os.path.exists(lake) and os.listdir(lake):
        _err.print(f"[red]synth:[/] {lake} exists and is not empty; give a new folder")
        raise typer.Exit(1)
    target = Lake(lake, fsync=False)
    rep = write_synthetic_lake(target, models=models, layers=layers, n_evals=evals, seed=seed)
    _out.print(f"wrote {rep.units:,} units of {rep.repos:,} repos: {rep.layer_rows:,} layer rows "
               f"({rep.model_layer_rows:,} in the layers view), {rep.spectra_rows:,} spectra, "
               f"{rep.files} files in {rep.seconds:.1f} s")
    if compact:
        c = target.compact()
        _out.print(f"compacted: files {c.files_before} → {c.files_after} in {c.seconds:.1f} s")
