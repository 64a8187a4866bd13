"""Lineage in a run: scan the listed models' base models too, find each model's base for
fine-tune deltas, and record the links of models the lake already holds.

Three planner steps, all cheap (listings, lake lookups and — on the Hub — one ``model_info``
call per distinct base model; no weight bytes):

- ``base_model_refs``: a ``[[sources]]`` table with ``base_models = true`` adds the base
  models its listed models name (``ModelRef.bases``; one level: the bases' own bases are
  not followed), so a fine-tune and its base land in the lake together;
- ``attach_bases``: for each planned model whose base is in this run's listing or in the lake
  (same analysis version; the link's pinned revision when it has one, else the lake's latest)
  the base's descriptor, which the worker reads by Range requests for the ``deltas`` rows.
  Adapters are left out: an adapter's tensors are the LoRA factors, not the base's matrices;
- ``record_links``: ``lineage``/``evals`` rows for listed models the lake holds already
  (analysed before lineage existed, or under another analysis version) and lacks them for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..refs import BaseLink, ModelRef

__all__ = ["base_model_refs", "attach_bases", "record_links", "resolve_base", "DELTA_RELATIONS"]

log = logging.getLogger("hubscan.engine.lineage")

#: Relations whose tensors share names with the base's (adapters hold LoRA factors instead).
DELTA_RELATIONS = ("finetune", "merge", "quantized")

RefKey = tuple[str, str, str]


def _key(ref: ModelRef) -> RefKey:
    return (ref.source, ref.repo_id, ref.revision)


def resolve_base(link: BaseLink, *, revision: str | None = None, location: str | None = None,
                 allow_bin: bool = True) -> ModelRef | None:
    """The base model a link names, as a ``ModelRef`` (``None`` when it cannot be resolved:
    a local path on someone else's disk, a repo that is gone or gated — logged, not raised).

    Args:
        revision: the revision wanted (default: the link's pinned one, else the current).
        location: for ``local`` bases, the folder the lake recorded.
    """
    from .. import sources

    rev = revision or link.base_revision
    try:
        if link.base_source == "hf":
            refs = sources.resolve(f"hf://{link.base_repo_id}" + (f"@{rev}" if rev else ""),
                                   allow_bin=allow_bin)
        elif link.base_source == "tv":
            weights = rev.rsplit("-", 1)[0] if rev else "DEFAULT"
            refs = sources.resolve(f"tv://{link.base_repo_id}:{weights}")
        elif link.base_source == "local" and location:
            refs = [r for r in sources.resolve(location, allow_bin=allow_bin)
                    if r.repo_id == link.base_repo_id]
        else:
            return None
    except Exception as exc:  # noqa: BLE001 - a base we cannot see is not the scan's failure
        log.warning("base model %s:%s not resolved: %s: %s", link.base_source, link.base_repo_id,
                    type(exc).__name__, exc)
        return None
    if rev is not None:
        refs = [r for r in refs if r.revision == rev]
    return refs[0] if refs else None


def base_model_refs(listed: Sequence[ModelRef], *, allow_bin: bool = True) -> list[ModelRef]:
    """The base models of ``listed`` that ``listed`` does not contain, resolved once each."""
    have = {(r.source, r.repo_id) for r in listed}
    out: list[ModelRef] = []
    seen: set[tuple[str, str, str | None]] = set()
    for r in listed:
        for link in r.bases:
            k = (link.base_source, link.base_repo_id, link.base_revision)
            if (link.base_source, link.base_repo_id) in have or k in seen:
                continue
            seen.add(k)
            base = resolve_base(link, allow_bin=allow_bin)
            if base is not None:
                out.append(base)
                have.add((base.source, base.repo_id))
    return out


def attach_bases(todo: Iterable[ModelRef], listed: Iterable[ModelRef], lake: Any, version: str, *,
                 allow_bin: bool = True) -> dict[RefKey, tuple[ModelRef, ...]]:
    """Per planned model (``(source, repo_id, revision)``), the base models to measure it against.

    A base counts when this run lists it (the revision listed) or the lake holds it under
    ``version`` (the link's pinned revision, else the latest analysed one).
    """
    todo = [r for r in todo if any(lk.relation in DELTA_RELATIONS for lk in r.bases)]
    if not todo:
        return {}
    listed_by_id: dict[tuple[str, str], list[ModelRef]] = {}
    for r in listed:
        listed_by_id.setdefault((r.source, r.repo_id), []).append(r)
    wanted = sorted({(lk.base_source, lk.base_repo_id) for r in todo for lk in r.bases})
    in_lake = _lake_bases(lake, wanted, version)
    cache: dict[tuple[str, str, str | None], ModelRef | None] = {}
    out: dict[RefKey, tuple[ModelRef, ...]] = {}
    for r in todo:
        bases: list[ModelRef] = []
        for link in r.bases:
            if link.relation not in DELTA_RELATIONS:
                continue
            base = _pick(link, listed_by_id, in_lake, cache, allow_bin=allow_bin)
            if base is not None and _key(base) != _key(r) and _key(base) not in map(_key, bases):
                bases.append(base)
        if bases:
            out[_key(r)] = tuple(bases)
    return out


def _pick(link: BaseLink, listed: Mapping[tuple[str, str], list[ModelRef]],
          in_lake: Mapping[tuple[str, str], list[dict[str, Any]]],
          cache: dict[tuple[str, str, str | None], ModelRef | None], *, allow_bin: bool) -> ModelRef | None:
    ident = (link.base_source, link.base_repo_id)
    for cand in listed.get(ident, []):
        if link.base_revision is None or cand.revision == link.base_revision:
            return cand
    rows = in_lake.get(ident, [])
    if link.base_revision is not None:
        rows = [row for row in rows if row["revision"] == link.base_revision]
    if not rows:
        return None
    row = rows[0]  # newest first
    k = (*ident, row["revision"])
    if k not in cache:
        cache[k] = resolve_base(link, revision=row["revision"], location=row.get("location"),
                                allow_bin=allow_bin)
    return cache[k]


def _lake_bases(lake: Any, wanted: Sequence[tuple[str, str]],
                version: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Analysed revisions of the wanted (source, repo_id)s, newest first."""
    if lake is None or not wanted:
        return {}
    import json

    try:
        rows = lake.query(
            """SELECT source, repo_id, revision, meta_json FROM models
               WHERE analysis_version = $v AND status <> 'failed'
                 AND (source || chr(31) || repo_id) IN (SELECT unnest($ids))
               ORDER BY written_at DESC""",
            {"v": version, "ids": [f"{s}\x1f{r}" for s, r in wanted]}).to_pylist()
    except Exception as exc:  # noqa: BLE001 - an empty lake has no models yet
        log.debug("no base models in the lake: %s", exc)
        return {}
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        meta = {}
        if row.get("meta_json"):
            try:
                meta = json.loads(row["meta_json"])
            except ValueError:
                meta = {}
        row["location"] = meta.get("path")
        out.setdefault((row["source"], row["repo_id"]), []).append(row)
    return out


def _links(ref: ModelRef) -> list[BaseLink]:
    from .. import sources

    links = list(ref.bases)
    try:
        links += [lk for lk in sources.adapter_links(ref) if lk not in links]
    except Exception as exc:  # noqa: BLE001 - the next run asks again
        log.warning("%s: adapter_config.json not read: %s: %s", ref.uri, type(exc).__name__, exc)
    return links


def record_links(lake: Any, refs: Iterable[ModelRef], *, scan_id: str | None = None) -> int:
    """Write ``lineage``/``evals`` rows for ``refs`` the lake has none for; returns rows written.

    For models a run skips because the lake holds them: their links and numbers come from
    the listing, which costs nothing to record — but for an adapter's ``adapter_config.json``
    (one small request, once: the next run finds the row).
    """
    from ..analysis.model import eval_rows, lineage_rows

    refs = [r for r in refs if r.bases or r.evals or r.meta.get("adapter")]
    if not refs:
        return 0
    ids = [f"{r.source}\x1f{r.repo_id}\x1f{r.revision}" for r in refs]
    have: dict[str, set[str]] = {}
    for table in ("lineage", "evals"):
        try:
            t = lake.query(f"""SELECT DISTINCT source || chr(31) || repo_id || chr(31) || revision AS k
                               FROM raw_{table} WHERE (source || chr(31) || repo_id || chr(31) || revision)
                               IN (SELECT unnest($ids))""", {"ids": ids})
            have[table] = set(t.column("k").to_pylist())
        except Exception:  # noqa: BLE001 - a lake without the table yet
            have[table] = set()
    n = 0
    by_source: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r, k in zip(refs, ids):
        rows = by_source.setdefault(r.source, {"lineage": [], "evals": []})
        if k not in have["lineage"]:
            rows["lineage"] += lineage_rows(r, _links(r), scan_id=scan_id)
        if k not in have["evals"]:
            rows["evals"] += eval_rows(r, scan_id=scan_id)
    for source, tables in by_source.items():
        for table, rows in tables.items():
            if rows:
                lake.write_table(table, rows, partition={"source": source},
                                 unit_key=f"{table}:listing:{scan_id}:{source}")
                n += len(rows)
    return n
