"""One model → one ``ModelResult``: the engine's unit of work.

``analyze_model`` opens a model's weight files one at a time, runs the analysis on their
tensors and builds the rows of every lake table. It is the only place that knows how a
model's outcome maps to rows, so the local and the Ray executors produce identical lakes.

Three rules shape it:

- **A bad model never raises.** Every error becomes a ``failures`` row (stage, error class,
  message, attempt); a model whose every file failed gets ``status = failed``. The engine
  can then run thousands of models without one of them ending the scan.
- **A file is the unit of trust.** A file's layer rows are kept only when the whole file was
  read without error: streaming sources verify the sha256 only at the end of a file and
  raise ``IntegrityError`` there, after its tensors were analysed, so the rows are buffered
  per file and dropped on any error. Transient errors (``is_transient``) retry that file
  alone, with exponential back-off and jitter.
- **A file is analysed once per content hash.** Layer rows are keyed by
  ``(file_sha256, tensor, analysis_version)``. A file whose hash is in ``known_files`` (already
  in the lake for this analysis version) is not fetched at all: the model only gets a
  ``model_files`` row with ``reused = true``, and the views join the existing layers.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import CheckpointError, SourceError, is_transient
from ..options import AnalysisOptions, DeltaOptions
from ..refs import BaseLink, ModelRef, TensorRef, WeightFile, model_key, short_hash
from ..results import LayerResult, ModelResult
from .readahead import readahead

__all__ = [
    "analyze_model",
    "failed_model",
    "with_reused_layers",
    "is_final",
    "hubscan_version",
    "file_key",
    "failure_stage",
    "model_footprint",
    "model_bytes",
    "lineage_rows",
    "eval_rows",
    "Opener",
    "FileRetry",
    "readahead",
]

#: ``opener(ref, *, allow_bin, stats, files) -> Iterator[TensorRef]`` — ``hubscan.sources.open_model``.
Opener = Callable[..., Iterable[TensorRef]]


@dataclass(frozen=True, kw_only=True)
class FileRetry:
    """How often a weight file is retried after a transient error, and how long to wait.

    ``ScanSpec.retry`` (a ``RetrySpec``) has the same fields and can be passed instead.
    """

    attempts: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def backoff(self, attempt: int, *, jitter: float = 0.0) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempt - 1)) * (1 + jitter)


def analyze_model(
    ref: ModelRef,
    options: AnalysisOptions,
    *,
    opener: Opener | None = None,
    known_files: frozenset[str] | set[str] = frozenset(),
    scan_id: str | None = None,
    scan_date: str | None = None,
    stats: Any = None,
    retry: Any = None,
    attempt: int = 1,
    allow_bin: bool = False,
    prefetch_bytes: int = 0,
    sleep: Callable[[float], None] = time.sleep,
    bases: Sequence[ModelRef] = (),
    deltas: DeltaOptions | None = None,
) -> ModelResult:
    """Analyse one model revision into the rows of every lake table; never raises for a bad model.

    Args:
        ref: the model, as a source enumerated it (files with sha256 and sizes).
        options: analysis options; ``options.analysis_version`` stamps every row.
        opener: ``open_model(ref, *, allow_bin, stats, files)`` → ``TensorRef``s; default
            ``hubscan.sources.open_model``. Called once per weight file (``files=[wf.path]``).
        known_files: sha256 of files already analysed under this analysis version: not fetched,
            recorded as ``model_files`` rows with ``reused = true``.
        scan_id, scan_date: recorded in rows / the partition value (default: today, UTC).
        stats: a ``FetchStats`` the opener adds transferred bytes to (one is made if None).
        retry: ``FileRetry`` / ``RetrySpec``: attempts and back-off for transient file errors.
        attempt: the engine's attempt number for the whole model (a worker died, a timeout):
            failure rows record ``attempt`` + the file's own retries.
        allow_bin: allow pickled ``.bin/.pt`` files (``weights_only=True``).
        prefetch_bytes: read tensors ahead of the eigen-solve in a thread, up to this many
            bytes (overlaps download and compute for remote files; 0 = off).
        bases: base models (descriptors) to measure this model against (``deltas`` rows),
            each one a base that ``ref.bases`` names; used only when ``deltas`` asks.
        deltas: what fine-tune deltas to compute (``DeltaOptions``); None = none.

    Returns:
        A ``ModelResult``; ``result.model["status"]`` is ``ok``, ``partial`` or ``failed``.

    Example:
        >>> result = analyze_model(ref, AnalysisOptions())            # doctest: +SKIP
        >>> Lake("./lake").write(result)                              # doctest: +SKIP
    """
    t_start = time.perf_counter()
    now = _utcnow()
    scan_date = scan_date or now.date().isoformat()
    version = options.analysis_version
    key = model_key(ref.source, ref.repo_id, ref.revision, version)
    retry = retry or FileRetry()
    if stats is None:
        stats = _new_stats()
    if opener is None:
        from ..sources import open_model as opener  # noqa: N813 - the default opener
    clock = _Clock()

    base = {"model_key": key, "written_at": now}
    files_rows: list[dict[str, Any]] = []
    layer_rows: list[dict[str, Any]] = []
    spectra_rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    n_failed_files = 0
    done_in_model: set[str] = set()

    def fail(stage: str, wf: WeightFile | None, exc: BaseException, tries: int) -> None:
        failures.append({
            **base, "source": ref.source, "repo_id": ref.repo_id, "revision": ref.revision,
            "analysis_version": version, "stage": stage, "file": wf.path if wf else None,
            "error_class": type(exc).__name__, "message": _message(exc),
            "attempt": attempt + tries - 1, "scan_id": scan_id,
        })

    if not ref.files:
        from ..errors import NotFound

        fail("plan", None, NotFound(f"{ref.uri}: no weight files"), 1)

    from ..sources.lineage import adapter_links

    # an adapter's base, from its adapter_config.json: fetched once per model (and kept for
    # the LoRA scale the analysis needs), never failing the model
    links = list(ref.bases)
    links += [lk for lk in adapter_links(_adapter_config(ref, stats)) if lk not in links]
    passes = _delta_passes(ref, bases, links, options, deltas, key=key, now=now,
                           allow_bin=allow_bin, stats=stats)
    delta_rows: list[dict[str, Any]] = []

    for wf in ref.files:
        sha = file_key(ref, wf)
        files_row = {**base, "file": wf.path, "file_sha256": sha, "analysis_version": version,
                     "size": wf.size}
        if sha in known_files or sha in done_in_model:
            files_rows.append({**files_row, "reused": True})
            continue
        tries = 0
        while True:
            tries += 1
            try:
                rows = _analyze_file(ref, wf, options, opener=opener, stats=stats,
                                     allow_bin=allow_bin, prefetch_bytes=prefetch_bytes,
                                     clock=clock, passes=passes)
                file_deltas = [r for dp in passes for r in dp.take_rows()]
            except Exception as exc:  # noqa: BLE001 - a bad file must not end the model
                for dp in passes:
                    dp.discard()
                if is_transient(exc) and tries < retry.attempts:
                    sleep(retry.backoff(tries, jitter=random.random() * 0.5))
                    continue
                fail(failure_stage(exc), wf, exc, tries)
                n_failed_files += 1
                break
            for lr in rows:
                layer_rows.append(_layer_row(lr.row, sha=sha, wf=wf, version=version, base=base))
                if options.keep_spectra and lr.evals is not None:
                    spectra_rows.append(_spectrum_row(lr, sha=sha, version=version, now=now,
                                                      options=options))
            files_rows.append({**files_row, "reused": False})
            delta_rows.extend(file_deltas)
            done_in_model.add(sha)
            break
    for dp in passes:
        clock.add(dp.read_seconds)
        dp.lookup.close()

    all_failed = n_failed_files == len(ref.files) or not ref.files
    model = _model_row(ref, options, key=key, now=now, scan_id=scan_id, layer_rows=layer_rows,
                       failed_files=n_failed_files, all_failed=all_failed, stats=stats,
                       fetch_s=clock.fetch_s, wall_s=time.perf_counter() - t_start)
    return ModelResult(model=model, model_files=files_rows, layers=layer_rows,
                       spectra=spectra_rows, failures=failures, source=ref.source,
                       scan_date=scan_date, deltas=delta_rows,
                       lineage=lineage_rows(ref, links, model_key=key, scan_id=scan_id, now=now),
                       evals=eval_rows(ref, model_key=key, scan_id=scan_id, now=now))


def lineage_rows(ref: ModelRef, links: Iterable[BaseLink] | None = None, *, model_key: str | None = None,
                 scan_id: str | None = None, now: datetime | None = None) -> list[dict[str, Any]]:
    """``lineage`` rows of a model: one per base link (``ref.bases`` unless ``links``)."""
    now = now or _utcnow()
    return [{"source": ref.source, "repo_id": ref.repo_id, "revision": ref.revision,
             "base_source": lk.base_source, "base_repo_id": lk.base_repo_id,
             "base_revision": lk.base_revision, "relation": lk.relation, "origin": lk.origin,
             "model_key": model_key, "scan_id": scan_id, "written_at": now}
            for lk in (ref.bases if links is None else links)]


def eval_rows(ref: ModelRef, *, model_key: str | None = None, scan_id: str | None = None,
              now: datetime | None = None) -> list[dict[str, Any]]:
    """``evals`` rows of a model: the quality numbers its source reports (``ref.evals``)."""
    now = now or _utcnow()
    return [{"source": ref.source, "repo_id": ref.repo_id, "revision": ref.revision,
             "task": e.task, "dataset": e.dataset, "dataset_config": e.dataset_config,
             "dataset_split": e.dataset_split, "metric": e.metric, "metric_name": e.metric_name,
             "value": e.value, "verified": e.verified, "origin": e.origin,
             "model_key": model_key, "scan_id": scan_id, "written_at": now}
            for e in ref.evals]


def _delta_passes(ref: ModelRef, bases: Sequence[ModelRef], links: Sequence[BaseLink],
                  options: AnalysisOptions, deltas: DeltaOptions | None, *, key: str, now: datetime,
                  allow_bin: bool, stats: Any) -> list[Any]:
    """One ``DeltaPass`` per base model to measure against (none unless ``deltas`` asks)."""
    if deltas is None or not deltas.enabled or not bases:
        return []
    from ..sources import tensor_lookup
    from .deltas import DeltaPass, delta_row_base

    by_base = {(lk.base_source, lk.base_repo_id): lk for lk in links}
    passes = []
    for base in bases:
        link = by_base.get((base.source, base.repo_id))
        dp = DeltaPass(ref, base, link, options=options, deltas=deltas, lookup=None,
                       base_row=delta_row_base(ref, base, link, model_key=key,
                                               analysis_version=options.analysis_version,
                                               written_at=now),
                       config=ref.config)
        dp.lookup = tensor_lookup(base, wanted=dp.wanted, allow_bin=allow_bin or base.source == "tv",
                                  stats=stats)
        passes.append(dp)
    return passes


def failed_model(ref: ModelRef, options: AnalysisOptions, exc: BaseException, *, stage: str,
                 attempt: int = 1, scan_id: str | None = None,
                 scan_date: str | None = None) -> ModelResult:
    """The result of a model that produced nothing (its worker died, it ran past its deadline):
    a ``failed`` models row and one ``failures`` row."""
    now = _utcnow()
    version = options.analysis_version
    key = model_key(ref.source, ref.repo_id, ref.revision, version)
    failure = {
        "model_key": key, "source": ref.source, "repo_id": ref.repo_id, "revision": ref.revision,
        "analysis_version": version, "stage": stage, "file": None,
        "error_class": type(exc).__name__, "message": _message(exc), "attempt": attempt,
        "scan_id": scan_id, "written_at": now,
    }
    model = _model_row(ref, options, key=key, now=now, scan_id=scan_id, layer_rows=[],
                       failed_files=len(ref.files), all_failed=True, stats=None, fetch_s=0.0,
                       wall_s=0.0)
    model["bytes_fetched"] = None
    return ModelResult(model=model, failures=[failure], source=ref.source,
                       scan_date=scan_date or now.date().isoformat(),
                       lineage=lineage_rows(ref, model_key=key, scan_id=scan_id, now=now),
                       evals=eval_rows(ref, model_key=key, scan_id=scan_id, now=now))


def is_final(result: ModelResult) -> bool:
    """Whether a result settles its model: every failure is one that would happen again.

    Settled failures are hubscan's own verdicts on the input (``hubscan.errors``: a malformed
    or unsafe file, a missing repo, a gated one, …) and a worker that died on the model on
    every attempt. Two kinds leave the model *open* instead — the engine writes its failures
    and its good files' rows but not its ``models`` row, so the next run plans it again and,
    by content hash, fetches only what is missing:

    - transient errors (5xx, 429, timeouts after all retries);
    - errors outside that vocabulary (``TypeError``, ``KeyError``, …): a bug in hubscan or a
      library says nothing about the checkpoint, and a fixed hubscan should re-analyse the
      model on its next run without ``--force``.
    """
    return all(f.get("error_class") in _SETTLED_NAMES for f in result.failures)


def with_reused_layers(result: ModelResult, reused_layer_rows: list[dict[str, Any]]) -> ModelResult:
    """Recompute the model's summary columns over its own and its reused files' layer rows.

    A model that reuses files was not sent their tensors, so the worker's summary covers only
    the files it fetched; the engine looks up the reused files' rows in the lake and calls
    this, so ``models.alpha_mean`` & co. describe the whole model. The layer rows themselves
    are not copied: the views reach them through ``model_files``.
    """
    if not reused_layer_rows:
        return result
    from .summary import model_summary

    # rows in the model's file order, as analyze_model sees them: the same numbers whichever
    # files were fetched and whichever reused (float sums depend on the order)
    order = {r["file_sha256"]: i for i, r in enumerate(result.model_files)}
    rows = sorted([*result.layers, *reused_layer_rows],
                  key=lambda r: (order.get(r["file_sha256"], len(order)), r.get("layer_id") or 0))
    model = dict(result.model)
    model.update(model_summary(rows))
    if model["status"] == "ok" and any(r.get("status") == "error" for r in reused_layer_rows):
        model["status"] = "partial"
    return replace(result, model=model)


def _settled_names() -> frozenset[str]:
    """Class names of the failures that settle a model (see ``is_final``): ``hubscan.errors``
    but the transient ones (``is_transient``), and the engine's ``WorkerDied``, which the
    engine has already retried."""
    from .. import errors

    classes = [getattr(errors, n) for n in errors.__all__]
    return frozenset({c.__name__ for c in classes
                      if isinstance(c, type) and issubclass(c, errors.HubscanError)
                      and not is_transient(c.__new__(c))} | {"WorkerDied"})


def file_key(ref: ModelRef, wf: WeightFile) -> str:
    """The content key of a weight file: its sha256, or — where the source gave none — a
    stable stand-in (``nohash-…``) from the model revision and path, which never dedups."""
    if wf.sha256:
        return wf.sha256
    return "nohash-" + short_hash(f"{ref.source}/{ref.repo_id}@{ref.revision}/{wf.path}", 32)


def failure_stage(exc: BaseException) -> str:
    """Which stage an error belongs to (the ``failures.stage`` column)."""
    if isinstance(exc, (SourceError, ConnectionError, TimeoutError)):
        return "fetch"
    if isinstance(exc, CheckpointError):
        return "read"
    return "analyze"


def model_bytes(ref: ModelRef) -> int:
    """A model's weight bytes: the files' sizes, or — where a listing gave no sizes — the
    source's estimate from parameter counts (``meta["est_bytes"]``), else 0."""
    if ref.total_bytes:
        return ref.total_bytes
    est = (ref.meta or {}).get("est_bytes")
    return int(est) if isinstance(est, (int, float)) and est > 0 else 0


def model_footprint(ref: ModelRef, *, window: int) -> int:
    """Bytes a model holds in memory while it is analysed: the whole model when small, else
    the streaming window (largest tensor + read-ahead) — never the whole of a 70B model.
    ``.bin`` files are loaded whole (``torch.load``) and count in full."""
    whole = model_bytes(ref)
    pickled = sum(f.size or 0 for f in ref.files if not f.path.endswith(".safetensors"))
    return max(pickled, min(whole, window))


# --------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------


class _Clock:
    """Seconds spent waiting for bytes (iterating and loading tensors), thread-safe."""

    def __init__(self) -> None:
        self.fetch_s = 0.0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self.fetch_s += seconds


def _analyze_file(ref: ModelRef, wf: WeightFile, options: AnalysisOptions, *, opener: Opener,
                  stats: Any, allow_bin: bool, prefetch_bytes: int,
                  clock: _Clock, passes: Sequence[Any] = ()) -> list[LayerResult]:
    """All ``LayerResult``s of one file, or an exception — never a part of the file."""
    from .tensors import analyze_tensors

    tensors = _timed(opener(ref, allow_bin=allow_bin, stats=stats, files=[wf.path]), clock)
    for dp in passes:  # loading a matrix also measures it against each base
        tensors = dp.wrap(tensors)
    if prefetch_bytes > 0 and wf.url:
        tensors = readahead(tensors, max_bytes=prefetch_bytes)
    try:
        return list(analyze_tensors(tensors, options, config=ref.config,
                                    adapter_config=_adapter_config(ref, stats)))
    finally:
        close = getattr(tensors, "close", None)
        if close is not None:
            close()


def _adapter_config(ref: ModelRef, stats: Any) -> dict[str, Any] | None:
    """A PEFT adapter's config: from the source's listing (local: read with the folder), or
    fetched once (hf: ``adapter_config.json``, one small request); ``None`` when the model is
    no adapter or the file cannot be had (then ΔW is analysed unscaled, s = 1)."""
    meta = ref.meta or {}
    if "adapter_config" in meta or not meta.get("adapter"):
        return meta.get("adapter_config")
    from ..sources import get_source

    try:
        src = get_source(ref.source)
        fetch = getattr(src, "adapter_config", None)
        cfg = fetch(ref, stats=stats) if fetch else None
    except Exception:  # noqa: BLE001 - the weights are still analysable without it
        cfg = None
    meta["adapter_config"] = cfg  # one fetch per model, not per file
    return cfg


def _timed(tensors: Iterable[TensorRef], clock: _Clock) -> Iterator[TensorRef]:
    """Count the seconds spent producing tensors and loading their bytes as fetch time."""
    it = iter(tensors)
    while True:
        t0 = time.perf_counter()
        try:
            t = next(it)
        except StopIteration:
            clock.add(time.perf_counter() - t0)
            return
        clock.add(time.perf_counter() - t0)
        yield replace(t, load=_timed_load(t.load, clock))


def _timed_load(load: Callable[[], Any], clock: _Clock) -> Callable[[], Any]:
    def timed() -> Any:
        t0 = time.perf_counter()
        try:
            return load()
        finally:
            clock.add(time.perf_counter() - t0)

    return timed


_SETTLED_NAMES = _settled_names()


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def _layer_row(row: dict[str, Any], *, sha: str, wf: WeightFile, version: str,
               base: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["file_sha256"] = sha
    out["analysis_version"] = version
    out.setdefault("file", wf.path)
    out["file"] = out["file"] or wf.path
    out["model_key"] = base["model_key"]
    out["written_at"] = base["written_at"]
    return out


def _spectrum_row(lr: LayerResult, *, sha: str, version: str, now: datetime,
                  options: AnalysisOptions) -> dict[str, Any]:
    return {
        "file_sha256": sha,
        "tensor": lr.row["tensor"],
        "analysis_version": version,
        "convention": lr.row.get("convention", options.convention),
        "longname": lr.row.get("longname"),
        "evals": np.asarray(lr.evals, dtype=np.float32),
        "written_at": now,
    }


def _model_row(ref: ModelRef, options: AnalysisOptions, *, key: str, now: datetime,
               scan_id: str | None, layer_rows: list[dict[str, Any]], failed_files: int,
               all_failed: bool, stats: Any, fetch_s: float, wall_s: float) -> dict[str, Any]:
    from .summary import model_summary

    summary = model_summary(layer_rows)
    if all_failed:
        status = "failed"
    elif failed_files or any(r.get("status") == "error" for r in layer_rows):
        status = "partial"
    else:
        status = "ok"
    meta = dict(ref.meta or {})
    return {
        "model_key": key,
        "source": ref.source,
        "repo_id": ref.repo_id,
        "revision": ref.revision,
        "analysis_version": options.analysis_version,
        "convention": options.convention,
        "arch": ref.arch,
        "model_type": ref.model_type,
        "library": ref.library,
        "params": ref.params,
        "downloads": ref.downloads,
        "likes": ref.likes,
        "tags": list(ref.tags) if ref.tags else None,
        **summary,
        "status": status,
        "bytes": ref.total_bytes or None,
        "bytes_fetched": int(_stat(stats, "bytes_fetched", "bytes", default=0)),
        "fetch_s": fetch_s,
        "analyze_s": max(0.0, wall_s - fetch_s),
        "accuracy": _accuracy(meta),
        "meta_json": json.dumps(meta, sort_keys=True, default=str) if meta else None,
        "scan_id": scan_id,
        "hubscan_version": hubscan_version(),
        "written_at": now,
    }


def hubscan_version() -> str:
    """The installed hubscan's version (distribution metadata: right even when the package is
    imported through an editable-install finder that does not run ``hubscan/__init__``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hubscan")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def _accuracy(meta: dict[str, Any]) -> float | None:
    for k in ("accuracy", "acc@1", "acc1", "top1"):
        v = meta.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def _stat(stats: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = getattr(stats, n, None)
        if v is not None:
            return v
    return default


def _new_stats() -> Any:
    from ..sources.base import FetchStats

    return FetchStats()


def _message(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return text if len(text) <= 2000 else text[:1997] + "..."


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


