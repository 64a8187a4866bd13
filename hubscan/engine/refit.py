"""Re-fit from the ``spectra`` table: new fit options without downloading a single byte.

The eigen-solve is the expensive, download-bound half of an analysis; the power-law fit, the
MP bulk fit, the distribution comparisons and everything derived from them only need the
eigenvalues — which the lake keeps (``spectra``, one ``list<float32>`` per layer). So when a
user changes only *fit* options (``fitter``, ``min_tail``, ``fix_fingers``, ``mp_fit``,
``compare``) the new analysis version is computed from the lake alone:

- a source analysis version qualifies when its *eigenvalue* options — convention (the scale
  of the eigenvalues), ``min_evals``/``max_evals``/``max_N`` and ``layers_include`` (which
  tensors have a spectrum) — equal the new ones, under the same ``ANALYSIS_CODE_VERSION``.
  Its options are read back from the ``scans`` rows' ``spec_json`` (each scan records its
  spec), or given explicitly;
- for every weight file, the fit-dependent columns are recomputed by the analysis module's
  own fit stage (``hubscan.analysis.tensors``: batched ``fit_power_law_batch``, ``fix_fingers``,
  ``fit_mp``, phases, ``distribution_compare``), not by a copy of it; the eigenvalue-only
  columns (norms, ranks, entropy, ``sv_min``…) are carried over from the source rows, which
  were computed from the float64 spectrum;
- the results are written as ordinary ``ModelResult``s under the new analysis version —
  ``models``, ``model_files``, ``layers`` and (with ``keep_spectra``) ``spectra`` — so the
  lake cannot tell a re-fitted model from a freshly analysed one except by its zero
  ``bytes_fetched``. Files shared by several models are re-fitted once.

Precision: the stored eigenvalues are float32 (relative rounding ≤ 6e-8), so re-fitted
numbers match a fresh float64 analysis to ~1e-6 relative (the comparisons' p-values, steep
in R, to ~1e-4), not bit for bit; integer columns
(``num_pl_spikes``) and labels agree unless two xmin candidates tie within that rounding.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import LakeError
from ..options import AnalysisOptions
from ..refs import model_key
from ..results import ModelResult

__all__ = [
    "EIGEN_OPTIONS",
    "FIT_COLUMNS",
    "RefitSummary",
    "eigen_options",
    "spectra_compatible",
    "options_by_version",
    "refit_sources",
    "refit_lake",
]

log = logging.getLogger("hubscan.engine.refit")

#: AnalysisOptions fields that change which eigenvalues exist or their values.
EIGEN_OPTIONS = ("convention", "min_evals", "max_evals", "max_N", "layers_include")

#: ``layers`` columns that depend on the fit options (recomputed); every other column of an
#: analysed layer depends on the eigenvalues only and is carried over.
FIT_COLUMNS = (
    "fitter", "status", "alpha", "xmin", "xmax", "D", "sigma", "num_pl_spikes", "warning",
    "alpha_weighted", "log_alpha_norm", "sigma_mp", "bulk_max", "bulk_min", "num_spikes",
    "mp_softrank", "phase", "ht_class", "best_family",
    "R_exponential", "p_exponential", "R_stretched_exponential", "p_stretched_exponential",
    "R_lognormal", "p_lognormal", "R_truncated_power_law", "p_truncated_power_law", "fit_s",
)

_ANALYSED = ("ok", "fit-failed")


@dataclass(frozen=True)
class RefitSummary:
    """What a re-fit did.

    Attributes:
        to_version: the new analysis version written.
        from_versions: the source analysis versions whose spectra were used.
        n_models: models written under ``to_version``.
        n_files: weight files re-fitted (each once, however many models share it).
        n_layers: analysed layers re-fitted.
        n_reused_files: files whose ``to_version`` layers already existed (linked, not refit).
        not_refittable: model keys (source version) that lack a spectrum for an analysed
            layer (written with ``keep_spectra = false``): a scan must re-download them.
        scan_id: the ``scans`` row recording the re-fit (``None`` when nothing was done).
    """

    to_version: str
    from_versions: tuple[str, ...] = ()
    n_models: int = 0
    n_files: int = 0
    n_layers: int = 0
    n_reused_files: int = 0
    not_refittable: tuple[str, ...] = ()
    scan_id: str | None = None
    model_keys: tuple[str, ...] = field(default=(), repr=False)


# --------------------------------------------------------------------------------------------
# Which versions can be re-fitted into which
# --------------------------------------------------------------------------------------------


def eigen_options(options: AnalysisOptions) -> dict[str, Any]:
    """The options that decide the spectra (see :data:`EIGEN_OPTIONS`)."""
    return {k: getattr(options, k) for k in EIGEN_OPTIONS}


def spectra_compatible(old: AnalysisOptions, new: AnalysisOptions) -> bool:
    """Whether ``old``'s stored spectra are exactly the spectra ``new`` would compute."""
    return eigen_options(old) == eigen_options(new)


def options_by_version(lake: Any) -> dict[str, AnalysisOptions]:
    """Analysis versions the lake's ``scans`` rows document, with their options.

    Every scan records its spec (``spec_json``, whose ``analysis`` table is the options);
    rebuilding the options with today's code gives today's version string, so a version
    written by another ``ANALYSIS_CODE_VERSION`` never matches — exactly the rule that
    keeps re-fits to spectra computed by the same eigen code.
    """
    try:
        specs = lake.query("SELECT DISTINCT spec_json FROM scans WHERE spec_json IS NOT NULL")
    except Exception as exc:  # noqa: BLE001 - a lake without scans documents nothing
        log.debug("no scans to read options from: %s", exc)
        return {}
    known = {f.name for f in dataclasses.fields(AnalysisOptions)}
    out: dict[str, AnalysisOptions] = {}
    for text in specs.column("spec_json").to_pylist():
        try:
            analysis = json.loads(text).get("analysis")
            if not isinstance(analysis, dict):
                continue
            opts = AnalysisOptions(**{k: v for k, v in analysis.items() if k in known})
        except (ValueError, TypeError, AttributeError):
            continue
        out[opts.analysis_version] = opts
    return out


def refit_sources(lake: Any, options: AnalysisOptions, *,
                  from_options: AnalysisOptions | Sequence[AnalysisOptions] | None = None) -> list[str]:
    """Source analysis versions whose spectra ``options`` can be re-fitted from.

    Raises:
        ValueError: an explicit ``from_options`` has different eigenvalue options.
    """
    if from_options is not None:
        olds = [from_options] if isinstance(from_options, AnalysisOptions) else list(from_options)
        for old in olds:
            if not spectra_compatible(old, options):
                diff = {k: (v, getattr(options, k)) for k, v in eigen_options(old).items()
                        if getattr(options, k) != v}
                raise ValueError(f"cannot re-fit: eigenvalue options differ {diff}; re-scan instead")
        candidates = {o.analysis_version: o for o in olds}
    else:
        candidates = options_by_version(lake)
    new = options.analysis_version
    return sorted(v for v, o in candidates.items() if v != new and spectra_compatible(o, options))


# --------------------------------------------------------------------------------------------
# The re-fit
# --------------------------------------------------------------------------------------------


def refit_lake(
    lake: Any,
    options: AnalysisOptions,
    *,
    from_options: AnalysisOptions | Sequence[AnalysisOptions] | None = None,
    only: Iterable[tuple[str, str, str]] | None = None,
    spec_name: str | None = None,
    scan_id: str | None = None,
) -> RefitSummary:
    """Write ``options``' analysis of every model the lake holds under a compatible version,
    computed from stored spectra — no weight file is fetched.

    Args:
        lake: a ``hubscan.lake.Lake``.
        options: the new analysis options.
        from_options: the options of the source version(s); default: every version the
            ``scans`` rows document whose eigenvalue options equal ``options``'.
        only: restrict to these ``(source, repo_id, revision)`` (e.g. a spec's listing).
        spec_name, scan_id: recorded in the rows and in the re-fit's ``scans`` row.

    Returns:
        A :class:`RefitSummary`. Models already present under the new version are left
        alone; models missing a spectrum for an analysed layer are listed in
        ``not_refittable`` and not written.

    Example:
        >>> refit_lake(Lake("lake"), AnalysisOptions(fitter="truncated"))   # doctest: +SKIP
        RefitSummary(to_version='1-ww-…', from_versions=('1-ww-…',), n_models=120, …)
    """
    new_version = options.analysis_version
    sources = refit_sources(lake, options, from_options=from_options)
    if not sources:
        return RefitSummary(to_version=new_version)
    wanted = None if only is None else {tuple(x) for x in only}
    models = _source_models(lake, sources, new_version, wanted)
    if not models:
        return RefitSummary(to_version=new_version, from_versions=tuple(sources))

    started = datetime.now(timezone.utc)
    scan_id = scan_id or f"refit-{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    scan_date = started.date().isoformat()
    known_new = set(lake.known_file_hashes(new_version))
    new_rows_by_file: dict[str, list[dict[str, Any]]] = {}  # refit in this call
    n_files = n_layers = n_reused = 0
    not_refittable: list[str] = []
    written: list[str] = []
    for model in models:
        src_version = model["analysis_version"]
        files = lake.query("SELECT * FROM model_files WHERE model_key = $k ORDER BY file",
                           {"k": model["model_key"]}).to_pylist()
        t0 = time.perf_counter()
        new_key = model_key(model["source"], model["repo_id"], model["revision"], new_version)
        now = datetime.now(timezone.utc)
        layer_rows: list[dict[str, Any]] = []
        spectra_rows: list[dict[str, Any]] = []
        model_layer_rows: list[dict[str, Any]] = []  # for the summary: own + reused files
        file_rows: list[dict[str, Any]] = []
        refitted_here: list[str] = []
        ok = True
        for f in files:
            sha = f["file_sha256"]
            reused = sha in known_new or sha in new_rows_by_file
            if reused:
                rows = new_rows_by_file.get(sha)
                if rows is None:
                    rows = lake.file_layers([sha], new_version).to_pylist()
                model_layer_rows += rows
            else:
                refit = _refit_file(lake, sha, src_version, options, new_key=new_key, now=now)
                if refit is None:
                    ok = False
                    break
                rows, spectra = refit
                layer_rows += rows
                model_layer_rows += rows
                if options.keep_spectra:
                    spectra_rows += spectra
                refitted_here.append(sha)
                new_rows_by_file[sha] = rows
            file_rows.append({"model_key": new_key, "file": f["file"], "file_sha256": sha,
                              "analysis_version": new_version, "size": f.get("size"),
                              "reused": reused, "written_at": now})
        if not ok:
            for sha in refitted_here:
                new_rows_by_file.pop(sha, None)
            not_refittable.append(model["model_key"])
            log.warning("%s: a layer has no stored spectrum; it needs a re-scan", model["model_key"])
            continue
        result = ModelResult(
            model=_model_row(model, options, new_key=new_key, scan_id=scan_id, now=now,
                             layer_rows=model_layer_rows, seconds=time.perf_counter() - t0),
            model_files=file_rows, layers=layer_rows, spectra=spectra_rows,
            source=model["source"], scan_date=scan_date)
        lake.write(result)
        written.append(new_key)
        n_files += len(refitted_here)
        n_layers += sum(1 for r in layer_rows if r["status"] in _ANALYSED)
        n_reused += sum(1 for r in file_rows if r["reused"])

    summary = RefitSummary(to_version=new_version, from_versions=tuple(sources),
                           n_models=len(written), n_files=n_files, n_layers=n_layers,
                           n_reused_files=n_reused, not_refittable=tuple(not_refittable),
                           scan_id=scan_id, model_keys=tuple(written))
    _write_scan_row(lake, options, summary, spec_name=spec_name, started=started)
    return summary


def _source_models(lake: Any, sources: Sequence[str], new_version: str,
                   wanted: set[tuple[str, str, str]] | None) -> list[dict[str, Any]]:
    """Committed models under a source version, newest source version per revision, that
    have no row under the new version yet (and, if given, are ``wanted``)."""
    rows = lake.query(
        """SELECT * FROM models
           WHERE analysis_version IN (SELECT unnest($src)) AND status <> 'failed'
             AND (source, repo_id, revision) NOT IN (
                 SELECT (source, repo_id, revision) FROM models WHERE analysis_version = $new)
           QUALIFY row_number() OVER (PARTITION BY source, repo_id, revision
                                      ORDER BY written_at DESC) = 1
           ORDER BY source, repo_id, revision""",
        {"src": list(sources), "new": new_version}).to_pylist()
    if wanted is not None:
        rows = [r for r in rows if (r["source"], r["repo_id"], r["revision"]) in wanted]
    return rows


def _refit_file(lake: Any, sha: str, src_version: str, options: AnalysisOptions, *,
                new_key: str, now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """New layer rows (and spectra rows) of one weight file, or None if a spectrum is missing."""
    from ..analysis import tensors as analysis
    from ..esd.layers import LayerMatrix
    from ..esd.spectral import Spectrum, resolve_device

    old_rows = lake.file_layers([sha], src_version).to_pylist()
    if not old_rows:
        return None
    spectra = {r["tensor"]: r for r in lake.query(
        "SELECT * FROM spectra WHERE file_sha256 = $s AND analysis_version = $v",
        {"s": sha, "v": src_version}).to_pylist()}
    version = options.analysis_version
    fitter = options.effective_fitter
    buffer: list[Any] = []
    carried: dict[int, dict[str, Any]] = {}
    for old in sorted(old_rows, key=lambda r: (r.get("layer_id") is None, r.get("layer_id") or 0, r["tensor"])):
        base = {k: v for k, v in old.items() if k in analysis.LAYER_COLUMNS}
        base.update(analysis_version=version, model_key=new_key, written_at=now, fitter=fitter)
        if old["status"] not in _ANALYSED:  # skipped / error rows: nothing to fit
            buffer.append(_Done(base))
            continue
        spec_row = spectra.get(old["tensor"])
        if spec_row is None:
            return None
        evals = np.sort(np.asarray(spec_row["evals"], dtype=np.float64))
        # The fresh-row template: eigenvalue-only columns carried over, fit columns cleared.
        row = {k: (None if k in FIT_COLUMNS else v) for k, v in base.items()}
        row.update(fitter=fitter, analysis_version=version, model_key=new_key, written_at=now)
        lm = LayerMatrix(tensor=old["tensor"], longname=old.get("longname") or "",
                         kind=old["kind"], shape=tuple(old.get("shape") or ()),
                         rows=int(old["N"]), cols=int(old["M"]), N=int(old["N"]),
                         M=int(old["M"]), rf=int(old.get("rf") or 1), Q=float(old["Q"]),
                         num_evals=int(old["num_evals"]))
        spec = Spectrum(evals=evals, N=int(old["N"]), sv_max=old["sv_max"],
                        sv_min=old["sv_min"], rank_loss=old["rank_loss"])
        carried[id(row)] = {k: v for k, v in base.items() if k not in FIT_COLUMNS}
        buffer.append(analysis.PendingFit(row=row, lm=lm, spec=spec))

    device = resolve_device(options.device)
    out_rows: list[dict[str, Any]] = []
    spectra_rows: list[dict[str, Any]] = []
    for chunk in _chunks(buffer, analysis.FIT_BATCH):
        pending = [b for b in chunk if isinstance(b, analysis.PendingFit)]
        fitted = iter(analysis.fit_pending(pending, options, device)) if pending else iter(())
        for item in chunk:
            if isinstance(item, _Done):
                out_rows.append(item.row)
                continue
            lr = next(fitted)
            row = dict(lr.row)
            # Eigenvalue-only columns come from the source row (computed from float64 evals).
            row.update(carried[id(item.row)])
            out_rows.append(row)
            spectra_rows.append({
                "file_sha256": sha, "tensor": row["tensor"], "analysis_version": version,
                "convention": row.get("convention", options.convention),
                "longname": row.get("longname"),
                "evals": np.asarray(spectra[row["tensor"]]["evals"], dtype=np.float32),
                "written_at": now,
            })
    return out_rows, spectra_rows


@dataclass
class _Done:
    """A layer row that needs no fit (skipped or failed in the source version)."""

    row: dict[str, Any]


def _chunks(items: list[Any], n_pending: int) -> Iterable[list[Any]]:
    """Split keeping order, with at most ``n_pending`` layers to fit per chunk."""
    from ..analysis import tensors as analysis

    chunk: list[Any] = []
    count = 0
    for it in items:
        chunk.append(it)
        if isinstance(it, analysis.PendingFit):
            count += 1
            if count >= n_pending:
                yield chunk
                chunk, count = [], 0
    if chunk:
        yield chunk


def _model_row(old: Mapping[str, Any], options: AnalysisOptions, *, new_key: str,
               scan_id: str, now: datetime, layer_rows: list[dict[str, Any]],
               seconds: float) -> dict[str, Any]:
    """The source model row with the new version's key, summary and provenance."""
    from ..analysis.model import hubscan_version
    from ..analysis.summary import model_summary

    row = {k: v for k, v in old.items() if k not in ("scan_date",)}
    row.update(model_summary(layer_rows))
    row.update(model_key=new_key, analysis_version=options.analysis_version,
               convention=options.convention, bytes_fetched=0, fetch_s=0.0, analyze_s=seconds,
               scan_id=scan_id, hubscan_version=hubscan_version(), written_at=now)
    return row


def _write_scan_row(lake: Any, options: AnalysisOptions, s: RefitSummary, *,
                    spec_name: str | None, started: datetime) -> None:
    """A ``scans`` row for the re-fit; its ``spec_json`` documents the new options, so a
    later re-fit can start from this version too."""
    spec = {"refit": {"from": list(s.from_versions), "to": s.to_version},
            "analysis": dataclasses.asdict(options)}
    row = {
        "scan_id": s.scan_id, "spec_name": spec_name or "refit",
        "spec_json": json.dumps(spec, sort_keys=True, default=str),
        "started_at": started, "finished_at": datetime.now(timezone.utc), "status": "completed",
        "n_planned": s.n_models + len(s.not_refittable), "n_skipped": 0, "n_done": s.n_models,
        "n_failed": len(s.not_refittable), "n_reused_files": s.n_reused_files,
        "bytes_fetched": 0, "errors_json": "{}", "written_at": datetime.now(timezone.utc),
    }
    try:
        from ..analysis.model import hubscan_version

        row["hubscan_version"] = hubscan_version()
        lake.write_table("scans", [row], partition={"scan_date": started.date().isoformat()},
                         unit_key=f"scans:{s.scan_id}")
    except LakeError:
        log.exception("could not record re-fit %s in scans", s.scan_id)
