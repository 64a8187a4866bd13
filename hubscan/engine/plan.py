"""Planning: from a spec's sources to the ordered list of models this run will analyse.

Everything here is cheap — listings and lake lookups, no weight bytes — and decides what the
expensive part does:

- **enumerate** every ``[[sources]]`` table (``hubscan.sources.list_models`` with its filters;
  ``kind = "demo"`` first generates small checkpoints, so an offline demo needs no hub);
- **cap** models over ``limits.max_bytes_per_model`` (they are counted, not fetched);
- **skip** what the lake already holds: the same ``model_key`` (source, repo, revision,
  analysis version) — unless ``force``. A model the lake holds under an *older code version*
  with the same options is skipped too unless ``reanalyze``: a new hubscan release alone does
  not trigger a hub-wide re-download. Changed options (another convention, fitter, limits)
  are a different analysis the user asked for, and are planned. A new revision sha is a new
  key and is always planned;
- **order** by downloads (most used first: a run cut short by ``max_models``, a stop or the
  night's end has covered what matters most), then by id for determinism;
- **bound** the run to ``limits.max_models`` models;
- **lineage**: a source with ``base_models = true`` adds the bases its models name, and with
  ``[deltas]`` on each planned model gets the base models it is measured against
  (``hubscan.engine.lineage``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..analysis.model import model_bytes
from ..errors import SpecError
from ..refs import ModelRef, model_key
from .spec import ScanSpec, SourceSpec

__all__ = ["Plan", "plan_scan", "enumerate_sources", "order_refs"]

log = logging.getLogger("hubscan.engine.plan")


@dataclass(frozen=True)
class Plan:
    """What a run will do, and what it leaves out and why."""

    todo: tuple[ModelRef, ...]
    n_listed: int = 0
    already_done: tuple[ModelRef, ...] = ()  # in the lake (same key, or older version w/o reanalyze)
    over_limit: tuple[ModelRef, ...] = ()  # larger than limits.max_bytes_per_model
    deferred: tuple[ModelRef, ...] = ()  # beyond limits.max_models; a later run takes them
    known_files: frozenset[str] = field(default_factory=frozenset)  # file hashes in the lake
    #: (source, repo_id, revision) → base models to measure the model against (``[deltas]``)
    bases: dict[tuple[str, str, str], tuple[ModelRef, ...]] = field(default_factory=dict)

    @property
    def bytes_todo(self) -> int:
        return sum(model_bytes(r) for r in self.todo)


def plan_scan(spec: ScanSpec, lake: Any, *, force: bool = False, reanalyze: bool = False,
              refs: Iterable[ModelRef] | None = None) -> Plan:
    """Enumerate (or take ``refs``), cap, skip what the lake has, order and bound."""
    listed = list(refs) if refs is not None else enumerate_sources(spec)
    version = spec.analysis.analysis_version
    unique: dict[str, ModelRef] = {}
    for r in listed:  # the same revision listed twice (two sources, overlapping filters)
        unique.setdefault(model_key(r.source, r.repo_id, r.revision, version), r)
    cap = spec.limits.max_bytes_per_model
    over = tuple(r for r in unique.values() if cap is not None and model_bytes(r) > cap)
    candidates = [r for r in unique.values() if cap is None or model_bytes(r) <= cap]

    done: list[ModelRef] = []
    known: frozenset[str] = frozenset()
    if not force:
        done_keys = set(lake.done_model_keys(version))
        other_versions = set() if reanalyze else _older_code_versions(lake, version)
        keep = []
        for r in candidates:
            k = model_key(r.source, r.repo_id, r.revision, version)
            if k in done_keys or (r.source, r.repo_id, r.revision) in other_versions:
                done.append(r)
            else:
                keep.append(r)
        candidates = keep
        known = frozenset(lake.known_file_hashes(version))

    ordered = order_refs(candidates)
    n = spec.limits.max_models
    todo, deferred = (ordered[:n], ordered[n:]) if n is not None else (ordered, [])
    bases = {}
    if spec.deltas.enabled and todo:
        from .lineage import attach_bases

        bases = attach_bases(todo, unique.values(), lake, version, allow_bin=spec.limits.allow_bin)
    return Plan(todo=tuple(todo), n_listed=len(listed), already_done=tuple(done),
                over_limit=over, deferred=tuple(deferred), known_files=known, bases=bases)


def order_refs(refs: Iterable[ModelRef]) -> list[ModelRef]:
    """Most-downloaded first (unknown counts last), then source and id: deterministic."""
    return sorted(refs, key=lambda r: (-(r.downloads or -1), r.source, r.repo_id, r.revision))


def enumerate_sources(spec: ScanSpec) -> list[ModelRef]:
    """Every model the spec's sources list (no weight bytes are read)."""
    out: list[ModelRef] = []
    for s in spec.sources:
        refs = _list_source(s, spec)
        if s.base_models:
            from .lineage import base_model_refs

            refs += base_model_refs(refs, allow_bin=spec.limits.allow_bin)
        out.extend(refs)
    return out


def _list_source(s: SourceSpec, spec: ScanSpec) -> list[ModelRef]:
    from .. import sources

    filters = dict(s.filters)
    if s.kind == "demo":
        return _demo_refs(filters)
    filters.setdefault("allow_bin", spec.limits.allow_bin)
    try:
        return list(sources.list_models(s.kind, **filters))
    except TypeError as exc:  # an unknown filter the signature check could not see
        raise SpecError(f"{spec.path or spec.name}: [[sources]] kind={s.kind}: {exc}") from exc


def _demo_refs(filters: dict[str, Any]) -> list[ModelRef]:
    """Generate the demo checkpoints once (deterministic), then resolve them as local models."""
    from .demo import demo_refs

    return demo_refs(filters)


def _older_code_versions(lake: Any, version: str) -> set[tuple[str, str, str]]:
    """(source, repo_id, revision) analysed with the same options under another code version.

    ``analysis_version`` is ``<code>-<convention>-<options hash>``; the suffix after the code
    version identifies the options.
    """
    suffix = version.split("-", 1)[1] if "-" in version else version
    sql = ("SELECT DISTINCT source, repo_id, revision FROM models "
           f"WHERE analysis_version <> '{_sql_str(version)}' "
           f"AND analysis_version LIKE '%-{_sql_str(suffix)}'")
    try:
        table = lake.query(sql)
    except Exception as exc:  # noqa: BLE001 - an empty lake has no models view yet
        log.debug("no models in lake yet: %s", exc)
        return set()
    cols = table.to_pydict()
    return set(zip(cols["source"], cols["repo_id"], cols["revision"]))


def _sql_str(s: str) -> str:
    return s.replace("'", "''")
