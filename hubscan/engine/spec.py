"""Scan specs: the TOML file that says what to scan, how, where to, and how often.

A spec is read once, validated completely, and then passed around as frozen dataclasses —
so a typo (``max_model = 10``) fails loudly at load time with the key's name and file, never
silently hours into an overnight scan. Format (every section optional but ``[scan]`` and
``[[sources]]``)::

    [scan]
    name = "hf-top-text"             # names the scans rows and the lock of the scheduler
    lake = "./lake"                  # local path or pyarrow URI (s3://, gs://, file://)
    schedule = "0 2 * * *"           # cron, used by `hubscan schedule` (optional)
    timezone = "Europe/Berlin"       # IANA zone the schedule is read in (default UTC)

    [[sources]]                      # one table per source; every other key is a filter
    kind = "hf"                      # hf | tv | local | hf-cache | demo
    sort = "downloads"
    limit = 100
    base_models = true               # and the base models the listed ones derive from

    [deltas]                         # fine-tune deltas against base models in the lake / this scan
    distances = true                 # weightwatcher distances() per matrix (Range reads of the base)
    methods = ["raw", "euclidean"]   # of raw | euclidean | cka
    esd = false                      # also the ESD + power-law fit of W - W_base

    [evals]
    csv = ["quality.csv"]            # reported metrics to import at the start of every run

    [analysis]                       # hubscan.options.AnalysisOptions fields
    convention = "ww"

    [resources]
    workers = 0                      # analyze actors; 0 = fill the cluster
    models_per_worker = 2            # models one worker holds at once (fetch overlaps compute)
    max_inflight_bytes = "8GiB"      # memory budget over all in-flight models
    prefetch_bytes = "256MiB"        # per model: tensors read ahead of the eigen-solve
    [resources.fetch]
    num_cpus = 0.25                  # added to each worker for its fetch thread
    [resources.analyze]
    num_cpus = 1
    num_gpus = 0.25                  # used only when the cluster has GPUs

    [retry]
    attempts = 3                     # per weight file (transient errors) and per model (dead worker, timeout)
    backoff_s = 1.0                  # first back-off; doubles, with jitter, up to max_backoff_s
    max_backoff_s = 60.0
    model_timeout_s = 600.0          # plus bytes / min_bytes_per_s: then the worker is killed
    min_bytes_per_s = 1000000

    [limits]
    max_models = 1000
    max_bytes_per_model = "20GB"
    allow_bin = false                # pickled .bin/.pt (weights_only=True, downloaded whole)

Sizes are integers (bytes) or strings with a unit (``"512MiB"``, ``"20GB"``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import SpecError
from ..options import DISTANCE_METHODS, AnalysisOptions, DeltaOptions

__all__ = [
    "ScanSpec",
    "SourceSpec",
    "StageResources",
    "ResourceSpec",
    "RetrySpec",
    "LimitSpec",
    "load_spec",
    "loads_spec",
    "parse_bytes",
    "SOURCE_KINDS",
]

#: Source kinds a spec may name. ``demo`` generates small checkpoints into ``path`` (offline).
SOURCE_KINDS = ("hf", "tv", "local", "hf-cache", "demo")


@dataclass(frozen=True, kw_only=True)
class SourceSpec:
    """One ``[[sources]]`` table: the source kind and its filters (passed to ``list_models``)."""

    kind: str
    filters: Mapping[str, Any] = field(default_factory=dict)
    #: also scan the base models the listed models derive from (their ``lineage``)
    base_models: bool = False


@dataclass(frozen=True, kw_only=True)
class StageResources:
    """Ray resources of one stage (``num_gpus`` applies only on clusters that have GPUs)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ResourceSpec:
    """How much of the cluster a scan uses, and how much memory in-flight work may hold."""

    workers: int = 0
    models_per_worker: int = 2
    max_inflight_bytes: int = 8 * 2**30
    prefetch_bytes: int = 256 * 2**20
    fetch: StageResources = StageResources(num_cpus=0.0, num_gpus=0.0)
    analyze: StageResources = StageResources(num_cpus=1.0, num_gpus=0.25)


@dataclass(frozen=True, kw_only=True)
class RetrySpec:
    """Retries with exponential back-off and jitter, and the deadline of one model."""

    attempts: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    model_timeout_s: float = 600.0
    min_bytes_per_s: float = 1e6

    def backoff(self, attempt: int, *, jitter: float = 0.0) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` is 1-based).

        ``jitter`` in [0, 1) stretches the delay by up to that fraction, so many workers that
        failed together do not retry together.
        """
        base = min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempt - 1))
        return base * (1.0 + jitter)

    def model_deadline_s(self, nbytes: int) -> float:
        """How long one model may run before its worker is presumed stuck."""
        return self.model_timeout_s + nbytes / self.min_bytes_per_s


@dataclass(frozen=True, kw_only=True)
class LimitSpec:
    """Caps applied by the planner before anything is downloaded."""

    max_models: int | None = None
    max_bytes_per_model: int | None = None
    allow_bin: bool = False


@dataclass(frozen=True, kw_only=True)
class ScanSpec:
    """A validated scan spec. Build it with :func:`load_spec` / :func:`loads_spec`."""

    name: str
    lake: str
    sources: tuple[SourceSpec, ...]
    analysis: AnalysisOptions = AnalysisOptions()
    resources: ResourceSpec = ResourceSpec()
    retry: RetrySpec = RetrySpec()
    limits: LimitSpec = LimitSpec()
    deltas: DeltaOptions = DeltaOptions()
    evals_csv: tuple[str, ...] = ()  # CSV files of reported metrics, imported at each run's start
    schedule: str | None = None
    timezone: str = "UTC"  # IANA zone the schedule is read in
    path: str | None = None  # the file it was read from, for messages

    def to_dict(self) -> dict[str, Any]:
        """A plain-data form (recorded as ``scans.spec_json``)."""
        d = dataclasses.asdict(self)
        d["sources"] = [{"kind": s.kind, **dict(s.filters), **({"base_models": True} if s.base_models else {})}
                        for s in self.sources]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    def replace(self, **changes: Any) -> "ScanSpec":
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value: Any, *, key: str = "size") -> int:
    """``4096``, ``"512MiB"``, ``"20GB"`` → bytes. Raises ``SpecError`` naming ``key``."""
    if isinstance(value, bool):
        raise SpecError(f"{key}: expected a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise SpecError(f"{key}: size must be >= 0, got {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _UNITS:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise SpecError(f"{key}: expected bytes as an integer or a string like '512MiB', got {value!r}")


def load_spec(path: str | Path) -> ScanSpec:
    """Read and validate a spec file.

    Raises:
        SpecError: unreadable file, invalid TOML, unknown key or bad value (message names it).
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError(f"{p}: cannot read spec ({exc.strerror or exc})") from exc
    return loads_spec(text, origin=str(p))


def loads_spec(text: str, *, origin: str = "<spec>") -> ScanSpec:
    """Parse and validate spec text (``origin`` names it in error messages)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{origin}: invalid TOML: {exc}") from exc
    return _Validator(origin).spec(doc)


class _Validator:
    """Walks the TOML document once; every error names the file, the table and the key."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, where: str, msg: str) -> SpecError:
        return SpecError(f"{self.origin}: [{where}] {msg}")

    def table(self, doc: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise SpecError(f"{self.origin}: '{key}' must be a table ([{key}])")
        return dict(value)

    def no_unknown(self, where: str, table: Mapping[str, Any], allowed: list[str]) -> None:
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")

    # -- typed getters ------------------------------------------------------------------

    def get(self, where: str, t: Mapping[str, Any], key: str, kind: type | tuple, default: Any,
            *, minimum: float | None = None, maximum: float | None = None) -> Any:
        if key not in t:
            return default
        v = t[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds)
        if float in kinds and isinstance(v, int) and not isinstance(v, bool):
            v, ok = float(v), True
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(where, f"{key} must be {names}, got {v!r}")
        if minimum is not None and v < minimum:
            raise self.fail(where, f"{key} must be >= {minimum}, got {v!r}")
        if maximum is not None and v > maximum:
            raise self.fail(where, f"{key} must be <= {maximum}, got {v!r}")
        return v

    def size(self, where: str, t: Mapping[str, Any], key: str, default: int | None) -> int | None:
        if key not in t:
            return default
        try:
            return parse_bytes(t[key], key=key)
        except SpecError as exc:
            raise self.fail(where, str(exc)) from None

    # -- sections -----------------------------------------------------------------------

    def spec(self, doc: Mapping[str, Any]) -> ScanSpec:
        self.no_unknown("top level", doc,
                        ["scan", "sources", "analysis", "resources", "retry", "limits", "deltas", "evals"])
        scan = self.table(doc, "scan")
        self.no_unknown("scan", scan, ["name", "lake", "schedule", "timezone"])
        name = self.get("scan", scan, "name", str, None)
        if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise self.fail("scan", f"name must be a non-empty word of [A-Za-z0-9._-], got {name!r}")
        lake = self.get("scan", scan, "lake", str, None)
        if not lake:
            raise self.fail("scan", "lake is required (a folder or a URI such as s3://bucket/lake)")
        schedule = self.get("scan", scan, "schedule", str, None)
        if schedule is not None:
            from croniter import croniter

            if not croniter.is_valid(schedule):
                raise self.fail("scan", f"schedule {schedule!r} is not a valid cron expression")
        tz = self.get("scan", scan, "timezone", str, "UTC")
        from .cron import zone

        try:
            zone(tz)
        except SpecError:
            raise self.fail("scan", f"timezone {tz!r} is not an IANA time zone (e.g. 'UTC', "
                                    "'Europe/Berlin')") from None
        return ScanSpec(
            name=name,
            lake=lake,
            schedule=schedule,
            timezone=tz,
            sources=self.sources(doc.get("sources")),
            analysis=self.analysis(self.table(doc, "analysis")),
            resources=self.resources(self.table(doc, "resources")),
            retry=self.retry(self.table(doc, "retry")),
            limits=self.limits(self.table(doc, "limits")),
            deltas=self.deltas(self.table(doc, "deltas")),
            evals_csv=self.evals(self.table(doc, "evals")),
            path=None if self.origin.startswith("<") else self.origin,
        )

    def sources(self, raw: Any) -> tuple[SourceSpec, ...]:
        if raw is None:
            raise SpecError(f"{self.origin}: at least one [[sources]] table is required")
        if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw) or not raw:
            raise SpecError(f"{self.origin}: 'sources' must be an array of tables ([[sources]])")
        out = []
        for i, s in enumerate(raw):
            where = f"sources #{i + 1}"
            kind = s.get("kind")
            if kind not in SOURCE_KINDS:
                raise self.fail(where, f"kind must be one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
            filters = {k: v for k, v in s.items() if k not in ("kind", "base_models")}
            allowed = source_filter_keys(kind)
            if allowed is not None:
                self.no_unknown(f"{where} kind={kind}", filters, sorted(allowed | {"base_models"}))
            base_models = self.get(f"{where} kind={kind}", s, "base_models", bool, False)
            if base_models and kind == "demo":
                raise self.fail(where, "base_models is not available for kind = 'demo'")
            out.append(SourceSpec(kind=kind, filters=filters, base_models=base_models))
        return tuple(out)

    def deltas(self, t: dict[str, Any]) -> DeltaOptions:
        w = "deltas"
        self.no_unknown(w, t, ["distances", "methods", "esd"])
        d = DeltaOptions()
        methods = t.get("methods", list(d.methods))
        if (not isinstance(methods, list) or not methods
                or not all(isinstance(m, str) and m in DISTANCE_METHODS for m in methods)):
            raise self.fail(w, f"methods must be a non-empty list of {', '.join(DISTANCE_METHODS)}, "
                               f"got {methods!r}")
        return DeltaOptions(distances=self.get(w, t, "distances", bool, d.distances),
                            methods=tuple(methods), esd=self.get(w, t, "esd", bool, d.esd))

    def evals(self, t: dict[str, Any]) -> tuple[str, ...]:
        self.no_unknown("evals", t, ["csv"])
        csv = t.get("csv", [])
        if isinstance(csv, str):
            csv = [csv]
        if not isinstance(csv, list) or not all(isinstance(c, str) and c for c in csv):
            raise self.fail("evals", f"csv must be a file name or a list of file names, got {csv!r}")
        base = Path(self.origin).parent if not self.origin.startswith("<") else None
        return tuple(str(base / c) if base is not None and not Path(c).is_absolute() else c
                     for c in csv)

    def analysis(self, t: dict[str, Any]) -> AnalysisOptions:
        hints = typing.get_type_hints(AnalysisOptions)
        self.no_unknown("analysis", t, list(hints))
        for k, v in t.items():
            if not _matches(v, hints[k]):
                raise self.fail("analysis", f"{k} must be {_describe(hints[k])}, got {v!r}")
        try:
            return AnalysisOptions(**t)
        except (TypeError, ValueError) as exc:
            raise self.fail("analysis", str(exc)) from None

    def stage(self, where: str, t: Any, default: StageResources) -> StageResources:
        if not isinstance(t, dict):
            raise self.fail(where, "must be a table")
        self.no_unknown(where, t, ["num_cpus", "num_gpus"])
        return StageResources(
            num_cpus=self.get(where, t, "num_cpus", float, default.num_cpus, minimum=0),
            num_gpus=self.get(where, t, "num_gpus", float, default.num_gpus, minimum=0),
        )

    def resources(self, t: dict[str, Any]) -> ResourceSpec:
        w = "resources"
        self.no_unknown(w, t, ["workers", "models_per_worker", "max_inflight_bytes",
                               "prefetch_bytes", "fetch", "analyze"])
        d = ResourceSpec()
        res = ResourceSpec(
            workers=self.get(w, t, "workers", int, d.workers, minimum=0),
            models_per_worker=self.get(w, t, "models_per_worker", int, d.models_per_worker,
                                       minimum=1),
            max_inflight_bytes=self.size(w, t, "max_inflight_bytes", d.max_inflight_bytes),
            prefetch_bytes=self.size(w, t, "prefetch_bytes", d.prefetch_bytes),
            fetch=self.stage("resources.fetch", t.get("fetch", {}), d.fetch),
            analyze=self.stage("resources.analyze", t.get("analyze", {}), d.analyze),
        )
        if res.max_inflight_bytes <= 0:
            raise self.fail(w, "max_inflight_bytes must be > 0")
        if res.analyze.num_gpus > 1 and res.analyze.num_gpus != int(res.analyze.num_gpus):
            raise self.fail("resources.analyze", "num_gpus above 1 must be a whole number")
        if res.analyze.num_cpus + res.fetch.num_cpus <= 0:
            raise self.fail(w, "a worker needs num_cpus > 0 (analyze + fetch)")
        return res

    def retry(self, t: dict[str, Any]) -> RetrySpec:
        w = "retry"
        self.no_unknown(w, t, ["attempts", "backoff_s", "max_backoff_s", "model_timeout_s",
                               "min_bytes_per_s"])
        d = RetrySpec()
        r = RetrySpec(
            attempts=self.get(w, t, "attempts", int, d.attempts, minimum=1, maximum=100),
            backoff_s=self.get(w, t, "backoff_s", float, d.backoff_s, minimum=0),
            max_backoff_s=self.get(w, t, "max_backoff_s", float, d.max_backoff_s, minimum=0),
            model_timeout_s=self.get(w, t, "model_timeout_s", float, d.model_timeout_s,
                                     minimum=0.001),
            min_bytes_per_s=self.get(w, t, "min_bytes_per_s", float, d.min_bytes_per_s,
                                     minimum=1),
        )
        if r.max_backoff_s < r.backoff_s:
            raise self.fail(w, "max_backoff_s must be >= backoff_s")
        return r

    def limits(self, t: dict[str, Any]) -> LimitSpec:
        w = "limits"
        self.no_unknown(w, t, ["max_models", "max_bytes_per_model", "allow_bin"])
        return LimitSpec(
            max_models=self.get(w, t, "max_models", int, None, minimum=1),
            max_bytes_per_model=self.size(w, t, "max_bytes_per_model", None),
            allow_bin=self.get(w, t, "allow_bin", bool, False),
        )


def _matches(value: Any, hint: Any) -> bool:
    """Whether a TOML value fits a dataclass field's type hint (bool is not an int here)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args if a is not type(None))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


# --------------------------------------------------------------------------------------------
# Source filters: validated against what the sources accept
# --------------------------------------------------------------------------------------------

#: Keys the ``demo`` kind takes (handled by the planner, see hubscan.engine.plan).
DEMO_KEYS = frozenset({"path", "n_models", "seed"})


def source_filter_keys(kind: str) -> frozenset[str] | None:
    """The filter keys a source kind accepts, read from its ``list_models`` signature.

    Returns ``None`` when they cannot be known (the source takes ``**kwargs``), in which case
    the source itself rejects unknown filters at plan time.
    """
    if kind == "demo":
        return DEMO_KEYS
    import inspect

    try:
        from .. import sources
    except ImportError:  # pragma: no cover - sources is part of the package
        return None
    fn = _source_lister(sources, kind)
    if fn is None:
        return None
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params
                     if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                   inspect.Parameter.POSITIONAL_OR_KEYWORD)
                     and p.name not in ("self", "source", "kind", "stats"))


def _source_lister(sources: Any, kind: str) -> Any:
    """The per-kind listing method (``ModelSource.list``), where the sources package has it."""
    try:
        return sources.get_source(kind).list
    except Exception:  # noqa: BLE001 - an unknown kind is reported by the caller
        return None
