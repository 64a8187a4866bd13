"""``hubscan list hf|tv|local|hf-cache``: what a scan would touch, without downloading weights.

Prints one row per model — id, pinned revision, weight files, bytes, parameters, the base
model it derives from (and how: finetune, adapter, merge, quantized), and the source's
popularity or accuracy columns — then totals and the API calls the listing cost.
Bytes marked ``~`` are estimated from the listing's parameter counts (exact sizes need one
more API call per model: ``--exact-sizes``).
"""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ._app import app

_out = Console()
_err = Console(stderr=True)


def _human(n: float | None, unit: str = "B") -> str:
    if n is None:
        return "?"
    for prefix in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1000:
            return f"{n:.0f} {prefix}{unit}" if prefix == "" else f"{n:.1f} {prefix}{unit}"
        n /= 1000
    return f"{n:.1f} E{unit}"


def _base(ref) -> str:
    """``base (relation)`` of a ref's most authoritative link; ``+N`` more bases of a merge."""
    if not ref.bases:
        return ""
    ids = list(dict.fromkeys(lk.base_repo_id for lk in ref.bases))
    more = f" +{len(ids) - 1}" if len(ids) > 1 else ""
    return f"{ids[0]}{more} ({ref.bases[0].relation})"


def _bytes(ref) -> tuple[int | None, bool]:
    """(bytes, exact?) of a ref's weight files."""
    if ref.files and all(f.size is not None for f in ref.files):
        return ref.total_bytes, True
    return ref.meta.get("est_bytes"), False


@app.command("list")
def list_command(
    source: str = typer.Argument(..., help="hf | tv | local | hf-cache"),
    path: Optional[str] = typer.Argument(None, help="local: file, folder or glob; hf-cache: repo pattern."),
    author: Optional[str] = typer.Option(None, "--author", help="hf: owner of the repos."),
    search: Optional[str] = typer.Option(None, "--search", help="hf: substring of the repo id; tv: name or glob."),
    library: Optional[str] = typer.Option(None, "--library", help="hf: e.g. transformers, timm."),
    task: Optional[str] = typer.Option(None, "--task", help="hf: pipeline tag; tv: classification, detection …"),
    tag: list[str] = typer.Option([], "--tag", help="hf: required tag (repeatable)."),
    family: Optional[str] = typer.Option(None, "--family", help="tv: model series (resnet, vgg …)."),
    min_params: Optional[float] = typer.Option(None, "--min-params", help="hf: minimum parameter count."),
    max_params: Optional[float] = typer.Option(None, "--max-params", help="hf: maximum parameter count."),
    min_bytes: Optional[int] = typer.Option(None, "--min-bytes", help="hf: minimum weight bytes."),
    max_bytes: Optional[int] = typer.Option(None, "--max-bytes", help="hf: maximum weight bytes."),
    sort: Optional[str] = typer.Option(None, "--sort", help="hf: downloads | likes | last_modified | created_at."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many models (hf default: 100; 0 = all)."),
    exact_sizes: bool = typer.Option(False, "--exact-sizes", help="hf: exact sizes + sha256 (1 API call per model)."),
    no_bin: bool = typer.Option(False, "--no-bin", help="Ignore pickled .bin/.pt weights."),
    fmt: list[str] = typer.Option([], "--format", help="hf: weight format safetensors | pytorch | gguf (repeatable)."),
    quant: list[str] = typer.Option([], "--quant", help="hf: quantisation none | gptq | awq | bnb-nf4 | mlx | fp8 | "
                                    "gguf:Q4_K_M … ('gguf:*' for any GGUF level; repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
) -> None:
    """List the models a scan would touch (ids, revisions, bytes, parameters, totals)."""
    from itertools import islice

    from ..errors import HubscanError
    from ..sources import FetchStats, list_models

    stats = FetchStats()
    allow_bin = not no_bin
    capped = False
    if limit == 0:
        limit = None
    elif limit is None and source == "hf":
        # The Hub has millions of repos: an unfiltered listing must be asked for explicitly.
        limit, capped = 100, True
    if source == "hf":
        it = list_models("hf", author=author, search=search, library=library, pipeline_tag=task, tags=tag,
                         min_params=min_params, max_params=max_params, min_bytes=min_bytes,
                         max_bytes=max_bytes, sort=sort, limit=limit, allow_bin=allow_bin,
                         file_metadata="paths-info" if exact_sizes else "none", formats=fmt,
                         quantization=quant, stats=stats)
    elif source == "tv":
        it = list_models("tv", search=search, task=task, family=family, limit=limit)
    elif source == "local":
        it = islice(list_models("local", path=path or ".", allow_bin=allow_bin), limit)
    elif source == "hf-cache":
        it = islice(list_models("hf-cache", pattern=path or "*", allow_bin=allow_bin), limit)
    else:
        raise typer.BadParameter(f"unknown source {source!r}: use hf, tv, local or hf-cache")

    try:
        refs = list(it)
    except (HubscanError, ValueError) as exc:
        _err.print(f"[red]{type(exc).__name__}:[/] {exc}")
        raise typer.Exit(1) from exc

    if as_json:
        for r in refs:
            b, exact = _bytes(r)
            _out.print_json(json.dumps({
                "uri": r.uri, "source": r.source, "repo_id": r.repo_id, "revision": r.revision,
                "files": [f.path for f in r.files], "bytes": b, "bytes_exact": exact, "params": r.params,
                "arch": r.arch, "downloads": r.downloads, "likes": r.likes,
                "acc@1": r.meta.get("acc@1"), "gated": r.gated,
                "formats": r.meta.get("formats"), "quantization": r.meta.get("quantization"),
                "bases": [{"source": lk.base_source, "repo_id": lk.base_repo_id, "relation": lk.relation,
                           "origin": lk.origin, "revision": lk.base_revision} for lk in r.bases],
                "evals": [{"task": e.task, "dataset": e.dataset, "metric": e.metric, "value": e.value,
                           "origin": e.origin} for e in r.evals],
            }), indent=None)
        return

    table = Table(title=f"{len(refs)} {source} models", show_lines=False)
    table.add_column("model")
    table.add_column("revision")
    table.add_column("files", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("params", justify="right")
    table.add_column("arch")
    show_base = any(r.bases for r in refs)
    if show_base:
        table.add_column("base model")
    if source == "hf":
        table.add_column("format")
        table.add_column("quant")
        table.add_column("downloads", justify="right")
        table.add_column("likes", justify="right")
    if source == "tv":
        table.add_column("acc@1", justify="right")
    total_bytes, total_params, estimated = 0, 0, False
    for r in refs:
        b, exact = _bytes(r)
        total_bytes += b or 0
        total_params += r.params or 0
        estimated |= not exact
        row = [r.repo_id + (" [yellow](gated)[/]" if r.gated else ""), r.revision[:24], str(len(r.files)),
               ("" if exact else "~") + _human(b), _human(r.params, ""), r.arch or ""]
        if show_base:
            row.append(_base(r))
        if source == "hf":
            row += [",".join(r.meta.get("formats") or ()), r.meta.get("quantization") or "",
                    str(r.downloads if r.downloads is not None else ""), str(r.likes if r.likes is not None else "")]
        if source == "tv":
            acc = r.meta.get("acc@1")
            row.append(f"{acc:.2f}" if acc is not None else "")
        table.add_row(*row)
    _out.print(table)
    n = stats.api_calls
    calls = f", {n} API call{'' if n == 1 else 's'}" if source == "hf" else ""
    if capped and len(refs) == limit:
        _out.print(f"[dim](first {limit}; --limit N for more, --limit 0 for all)[/]")
    _out.print(f"total: {len(refs)} models, {sum(len(r.files) for r in refs)} weight files, "
               f"{'~' if estimated else ''}{_human(total_bytes)}, {_human(total_params, '')} parameters{calls}")
