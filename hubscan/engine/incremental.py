"""One incremental run of a spec: re-fit what only needs a re-fit, scan what changed, and
write down what changed in the source (``repo_events``).

A scheduled spec runs again and again over a catalogue that moves under it. Each run:

1. **lists** the spec's sources once (the rate-limited catalogue step; the listing carries
   every repo's commit sha) and hands that listing to the scan, so nothing is listed twice;
2. **re-fits** from stored spectra the models whose only difference from what the lake holds
   is the fit options (``hubscan.engine.refit``) — the scan then finds them done and downloads
   nothing for them;
3. **scans** (``hubscan.engine.run_scan``): what the lake holds under the same revision and
   analysis version is skipped, a new revision is a new key and is analysed (and becomes the
   latest in ``models_latest``);
4. **marks** changes in ``repo_events``: ``new_revision`` (listed sha ≠ newest sha in the
   lake), ``deleted`` / ``renamed`` (a repo this spec scanned before is gone from the listing
   *and* the source confirms it — a repo that merely fell out of a top-N listing still
   exists and gets no event), ``restored`` (listed again after ``deleted``). Rows of a
   deleted repo stay in the lake: marked, not forgotten.

Re-analysis of revisions already in the lake under an older *code* version happens only
with ``reanalyze`` (the planner's rule); changed *options* are a new analysis the user
asked for — re-fitted when possible, re-scanned otherwise.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from ..refs import ModelRef

__all__ = [
    "RepoEvent",
    "KnownRepo",
    "Probe",
    "IncrementalResult",
    "known_repos",
    "detect_changes",
    "probe_repo",
    "write_events",
    "incremental_run",
]

log = logging.getLogger("hubscan.engine.incremental")

EventKind = Literal["new_revision", "deleted", "renamed", "restored"]


@dataclass(frozen=True)
class RepoEvent:
    """One change seen in a source (a ``repo_events`` row without its provenance)."""

    source: str
    repo_id: str
    event: EventKind
    revision: str | None = None
    previous_revision: str | None = None
    new_repo_id: str | None = None


@dataclass(frozen=True)
class KnownRepo:
    """What the lake knows about one repo before this run.

    Attributes:
        latest_revision: the newest analysed revision (any analysis version).
        last_event / last_event_revision: the newest ``repo_events`` row, if any.
        owned: a scan of *this* spec analysed it (only those can be found missing:
            another spec's repos are not expected in this listing).
    """

    source: str
    repo_id: str
    latest_revision: str | None
    last_event: str | None = None
    last_event_revision: str | None = None
    owned: bool = False


@dataclass(frozen=True)
class Probe:
    """What the source says about one repo: ``present``, ``deleted``, ``renamed``
    (``new_repo_id``) or ``unknown`` (could not tell now — e.g. a transient error)."""

    state: Literal["present", "deleted", "renamed", "unknown"]
    new_repo_id: str | None = None


@dataclass(frozen=True)
class IncrementalResult:
    """The outcome of :func:`incremental_run`."""

    scan: Any  # hubscan.engine.scan.ScanSummary
    refit: Any = None  # hubscan.engine.refit.RefitSummary | None
    events: tuple[RepoEvent, ...] = ()
    n_listed: int | None = None

    @property
    def status(self) -> Literal["completed", "stopped", "failed"]:
        return self.scan.status

    @property
    def scan_id(self) -> str:
        return self.scan.scan_id

    def counts(self) -> dict[str, Any]:
        out = dict(self.scan.counts())
        out["n_refit"] = self.refit.n_models if self.refit is not None else 0
        for kind in ("new_revision", "deleted", "renamed", "restored"):
            out[f"n_{kind}"] = sum(1 for e in self.events if e.event == kind)
        return out


# --------------------------------------------------------------------------------------------
# What the lake knows, what changed
# --------------------------------------------------------------------------------------------


def known_repos(lake: Any, *, spec_name: str | None = None) -> dict[tuple[str, str], KnownRepo]:
    """Every repo the lake has a model row for, with its newest revision and newest event.

    ``owned`` marks repos analysed by a scan (or re-fit) recorded under ``spec_name``.
    """
    try:
        rows = lake.query(
            """WITH latest AS (
                   SELECT source, repo_id, arg_max(revision, written_at) AS latest_revision
                   FROM models GROUP BY source, repo_id),
               ev AS (
                   SELECT source, repo_id, arg_max(event, seen_at) AS last_event,
                          arg_max(revision, seen_at) AS last_event_revision
                   FROM repo_events GROUP BY source, repo_id),
               owned AS (
                   SELECT DISTINCT source, repo_id FROM models
                   WHERE scan_id IN (SELECT scan_id FROM scans WHERE spec_name = $spec))
               SELECT l.*, ev.last_event, ev.last_event_revision,
                      (o.repo_id IS NOT NULL) AS owned
               FROM latest l
               LEFT JOIN ev USING (source, repo_id)
               LEFT JOIN owned o USING (source, repo_id)""",
            {"spec": spec_name or ""}).to_pylist()
    except Exception as exc:  # noqa: BLE001 - an empty lake knows nothing yet
        log.debug("lake knows no repos yet: %s", exc)
        return {}
    return {(r["source"], r["repo_id"]): KnownRepo(**r) for r in rows}


def detect_changes(
    listed: Iterable[ModelRef],
    known: Mapping[tuple[str, str], KnownRepo],
    *,
    probe: Callable[[str, str], Probe] | None = None,
    sources: Iterable[str] | None = None,
    max_probes: int = 500,
    seed: int | None = None,
) -> list[RepoEvent]:
    """Compare a listing with the lake (pure, except for ``probe``).

    Args:
        listed: this run's listing.
        known: :func:`known_repos` from *before* the run.
        probe: asks the source about a repo missing from the listing; ``None`` = no
            missing-repo detection.
        sources: source names the listing covers (``hf``, ``tv``, ``local``); owned repos of
            other sources are not expected in it. Default: the sources seen in ``listed``.
        max_probes: at most this many probes per run (a top-N listing can shed many repos
            in one day). Which ones is drawn at random (``seed``), so repos that merely
            left the listing and stay present cannot starve the others: every missing repo
            is probed within a few runs.
    """
    listed = list(listed)
    seen = {(r.source, r.repo_id) for r in listed}
    covered = set(sources) if sources is not None else {r.source for r in listed}
    events: list[RepoEvent] = []
    emitted: set[tuple[str, str]] = set()
    for r in listed:
        k = known.get((r.source, r.repo_id))
        if k is None or (r.source, r.repo_id) in emitted:
            continue
        emitted.add((r.source, r.repo_id))
        if k.last_event in ("deleted", "renamed"):
            events.append(RepoEvent(r.source, r.repo_id, "restored", revision=r.revision,
                                    previous_revision=k.latest_revision))
        if k.latest_revision is not None and r.revision != k.latest_revision:
            events.append(RepoEvent(r.source, r.repo_id, "new_revision", revision=r.revision,
                                    previous_revision=k.latest_revision))
    if probe is None:
        return events
    missing = sorted(key for key, k in known.items()
                     if k.owned and key not in seen and key[0] in covered
                     and k.last_event not in ("deleted", "renamed"))
    if len(missing) > max_probes:
        log.info("%d repos missing from the listing; probing %d this run", len(missing), max_probes)
        missing = sorted(random.Random(seed).sample(missing, max_probes))
    for source, repo_id in missing[:max_probes]:
        k = known[(source, repo_id)]
        p = probe(source, repo_id)
        if p.state == "deleted":
            events.append(RepoEvent(source, repo_id, "deleted", revision=k.latest_revision))
        elif p.state == "renamed":
            events.append(RepoEvent(source, repo_id, "renamed", revision=k.latest_revision,
                                    new_repo_id=p.new_repo_id))
    return events


def probe_repo(source: str, repo_id: str) -> Probe:
    """Ask the source whether a repo still exists (one ``model_info`` call on the Hub).

    ``hf``: 404 → deleted; an answer naming another id (the Hub redirects renamed repos)
    → renamed; gated/private → present (access changed, it still exists); transient errors
    → unknown (asked again next run). ``tv``: the builder/weights still exist in the
    installed torchvision. ``local``: a local listing is exhaustive, so a folder missing
    from it is gone.
    """
    from ..errors import GatedRepo, NotFound, SourceError
    from ..sources import resolve

    if source == "local":
        return Probe("deleted")
    try:
        refs = resolve(f"{source}://{repo_id}")
    except NotFound:
        return Probe("deleted")
    except GatedRepo:
        return Probe("present")
    except (SourceError, ValueError, OSError) as exc:
        log.info("cannot tell whether %s://%s still exists: %s", source, repo_id, exc)
        return Probe("unknown")
    if refs and refs[0].repo_id != repo_id:
        return Probe("renamed", new_repo_id=refs[0].repo_id)
    return Probe("present")


def write_events(lake: Any, events: Sequence[RepoEvent], *, scan_id: str | None,
                 spec_name: str | None, seen_at: datetime | None = None) -> int:
    """Append events to ``repo_events`` (one file per source); returns rows written.

    The key is (source, repo_id, event, revision): seeing the same change again rewrites
    the same fact, never a second row.
    """
    if not events:
        return 0
    now = seen_at or datetime.now(timezone.utc)
    day = now.date().isoformat()
    by_source: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_source.setdefault(e.source, []).append({
            "source": e.source, "repo_id": e.repo_id, "event": e.event, "revision": e.revision,
            "previous_revision": e.previous_revision, "new_repo_id": e.new_repo_id,
            "seen_at": now, "scan_id": scan_id, "spec_name": spec_name, "written_at": now,
        })
    for source, rows in by_source.items():
        lake.write_table("repo_events", rows, partition={"source": source, "scan_date": day},
                         unit_key=f"repo_events:{scan_id or now.isoformat()}:{source}")
    return len(events)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def incremental_run(
    spec: Any,
    *,
    executor: Any = "ray",
    address: str | None = None,
    force: bool = False,
    reanalyze: bool = False,
    stop_event: threading.Event | None = None,
    progress: bool = False,
    probe: Callable[[str, str], Probe] | None = probe_repo,
    refs: Sequence[ModelRef] | None = None,
    **scan_kw: Any,
) -> IncrementalResult:
    """List → re-fit → scan → mark changes, for one spec (see the module docstring).

    Args:
        spec: a ``hubscan.engine.spec.ScanSpec``.
        executor, address, force, reanalyze, stop_event, progress: as ``run_scan``
            (``force`` also skips the re-fit: it asks for fresh downloads).
        probe: how a repo missing from the listing is checked (``None``: no deletion marks).
        refs: a listing to use instead of enumerating the spec's sources.
        **scan_kw: passed to ``run_scan`` (``opener``, ``num_cpus``, ``on_event``).

    Returns:
        :class:`IncrementalResult` — the scan summary, the re-fit summary and the events.
        Never raises for a bad model or an unreachable source: like ``run_scan``, a scan that
        cannot run is recorded as ``failed``.
    """
    from ..lake import Lake
    from .plan import enumerate_sources
    from .scan import run_scan

    stop_event = stop_event or threading.Event()
    lake = Lake(spec.lake)
    listed: list[ModelRef] | None
    if refs is not None:
        listed = list(refs)
    else:
        try:
            listed = enumerate_sources(spec)
        except Exception as exc:  # noqa: BLE001 - run_scan lists again and records the failure
            log.warning("%s: listing failed (%s); the scan records it", spec.name, exc)
            listed = None

    refit = None
    if listed is not None and not force and not stop_event.is_set():
        from .refit import refit_lake

        refit = refit_lake(lake, spec.analysis, spec_name=spec.name,
                           only={(r.source, r.repo_id, r.revision) for r in listed})
        if refit.n_models:
            log.info("%s: re-fitted %d models from stored spectra (%s → %s)", spec.name,
                     refit.n_models, ", ".join(refit.from_versions), refit.to_version)

    known = known_repos(lake, spec_name=spec.name) if listed is not None else {}
    summary = run_scan(spec, executor=executor, address=address, force=force,
                       stop_event=stop_event, progress=progress, reanalyze=reanalyze,
                       refs=listed, **scan_kw)

    events: list[RepoEvent] = []
    if listed is not None and summary.status != "failed":
        covered = {_source_name(s.kind) for s in spec.sources}
        events = detect_changes(listed, known, sources=covered,
                                probe=None if stop_event.is_set() else probe)
        write_events(lake, events, scan_id=summary.scan_id, spec_name=spec.name)
        for e in events:
            log.info("%s: %s %s://%s%s", spec.name, e.event, e.source, e.repo_id,
                     f" → {e.new_repo_id}" if e.new_repo_id else "")
    return IncrementalResult(scan=summary, refit=refit, events=tuple(events),
                             n_listed=None if listed is None else len(listed))


def _source_name(kind: str) -> str:
    """``ModelRef.source`` of a spec's source kind (``demo`` checkpoints are local)."""
    return {"demo": "local"}.get(kind, kind)
