"""Tensors → ``layers`` rows: the analysis step of one checkpoint.

``analyze_tensors`` takes ``TensorRef``s (nothing loaded yet), classifies each
(``esd.layers.classify``), loads only the ones that are analysed, solves their spectra
(``esd.spectral.eigenvalues``), fits the power law of a whole batch of layers in one call
(``esd.powerlaw.fit_power_law_batch``), fits the MP bulk (``esd.mp.fit_mp``), names the phase
(``esd.phases``) and compares the tail with other distributions (``esd.compare``). One
``LayerResult`` comes out per tensor — analysed, skipped (with ``skip_reason``) or failed
(``status = "error"`` with ``error_class``/``message``): a bad tensor fails its own row,
never the file.

The numbers come from the numeric core (``hubscan.esd``); this module only orders the
stages, batches the fits and names the columns. Its callers: ``analysis.model`` (one model
of a scan), ``hubscan.api.analyze`` (a notebook) and ``engine.refit`` (re-fits from stored
spectra, through ``fit_pending``).

Deliberate differences from weightwatcher (docs/metrics.md): a failed power-law fit is
``status = "fit-failed"``, ``warning = "failed"`` and NULL ``alpha``/``alpha_weighted``/
``log_alpha_norm`` (weightwatcher: α = −1 and "over-trained"); MP-fit failures are NULL
(weightwatcher: −1).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..dtypes import dtype_info
from ..errors import (
    CheckpointError,
    HubscanError,
    IntegrityError,
    MalformedCheckpoint,
    UnsafeCheckpoint,
    is_transient,
)
from ..esd.layers import (
    LayerMatrix,
    ModuleKind,
    Skip,
    classify,
    dtype_string,
    lora_matrix,
)
from ..esd.mp import fit_mp
from ..esd.phases import classify_phase, ht_class, is_poor_fit, is_rank_collapsed
from ..esd.powerlaw.fit import PowerLawFit, default_threshold, fit_power_law_batch
from ..esd.spectral import (
    Spectrum,
    eigenvalues,
    layer_metrics,
    lora_spectrum,
    num_pl_spikes,
    resolve_device,
    warning_label,
)
from ..options import AnalysisOptions
from ..refs import TensorRef
from ..results import LayerResult
from .units import TieTracker, Unit, units

__all__ = ["analyze_tensors", "fit_pending", "PendingFit", "FIT_BATCH", "LAYER_COLUMNS", "PROVENANCE_COLUMNS"]

#: Analysed layers whose power-law fits go into one batched call.
FIT_BATCH = 32
#: weightwatcher ``fit_clipped_powerlaw``: clip 2 … 9 top eigenvalues, stop when α drops by > 1.
_MAX_FINGERS = 10
_FINGER_THRESH = 1.0
_FINGER_MIN_ALPHA = 2.0

_COMPARE_FAMILIES = ("exponential", "stretched_exponential", "lognormal", "truncated_power_law")


def _layers_columns() -> tuple[str, ...]:
    """Column names of the current (highest) ``layers`` schema version."""
    import re
    from importlib import resources

    folder = resources.files("hubscan.schemas")
    versions = [int(m.group(1)) for f in folder.iterdir() if (m := re.fullmatch(r"layers\.v(\d+)\.json", f.name))]
    spec = json.loads(folder.joinpath(f"layers.v{max(versions)}.json").read_text())
    return tuple(f["name"] for f in spec["fields"])


#: The current ``layers`` schema's column names, in schema order.
LAYER_COLUMNS: tuple[str, ...] = _layers_columns()
# Columns the pipeline (or ``analyze``) fills, not the analysis.
PROVENANCE_COLUMNS = ("file_sha256", "analysis_version", "model_key", "written_at")


# --------------------------------------------------------------------------------------------
# analyze_tensors
# --------------------------------------------------------------------------------------------


@dataclass
class PendingFit:
    """An analysed layer (row, layer rules, spectrum) waiting for its batched power-law fit.

    Public so that a re-fit from stored spectra (``hubscan.engine.refit``) runs the very same fit
    stage as a fresh analysis instead of a copy of it.
    """

    row: dict[str, Any]
    lm: LayerMatrix
    spec: Spectrum


def analyze_tensors(
    tensors: Iterable[TensorRef],
    options: AnalysisOptions,
    *,
    config: Mapping[str, Any] | None = None,
    module_kinds: Mapping[str, ModuleKind] | None = None,
    fit_batch: int = FIT_BATCH,
    adapter_config: Mapping[str, Any] | None = None,
) -> Iterator[LayerResult]:
    """One ``LayerResult`` per tensor, in input order (METHOD.md §1–§4) — per *unit*, in
    fact: an MoE expert stack gives one row per expert, a LoRA ``lora_A``/``lora_B`` pair
    one ``kind = lora`` row for ΔW, a tied tensor a ``tied_to`` row (``analysis.units``).

    Args:
        tensors: the checkpoint's tensors; only the analysed ones are ``load()``-ed, one at
            a time, and released after their eigen-solve.
        options: what to compute (convention, fitter, skip rules, MP fit, comparisons,
            device).
        config: the model's ``config.json`` (helps name embeddings, GPT-2 ``Conv1D``).
        module_kinds: ``longname → module_kind(module)`` when the tensors come from an
            in-memory ``nn.Module``; weightwatcher's module-type rules then apply.
        fit_batch: analysed layers per batched power-law fit. Rows are yielded when their
            batch is fitted, still in input order.
        adapter_config: a PEFT ``adapter_config.json`` (``lora_alpha``, ``r``, ``use_rslora``,
            ``base_model_name_or_path``) when the tensors are an adapter's.

    Yields:
        ``LayerResult`` whose ``row`` uses the ``layers`` column names (provenance columns
        ``file_sha256``/``analysis_version``/``model_key``/``written_at`` are left to the
        caller) and whose ``evals`` is the ascending float64 ESD of an analysed layer.

    Raises:
        Errors about the file rather than one tensor — transient fetch errors,
        ``IntegrityError``, ``UnsafeCheckpoint`` — propagate, so the caller can retry or
        fail the file.
    """
    device = resolve_device(options.device)
    buffer: list[LayerResult | PendingFit] = []
    n_pending = 0
    ties = TieTracker(config)
    for layer_id, unit in enumerate(units(tensors, config=config, adapter_config=adapter_config)):
        item = _spectral_stage(unit, layer_id, options, config, module_kinds, device, ties)
        buffer.append(item)
        if isinstance(item, PendingFit):
            n_pending += 1
            if n_pending >= fit_batch:
                yield from fit_pending(buffer, options, device)
                buffer, n_pending = [], 0
    yield from fit_pending(buffer, options, device)


def _base_row(unit: Unit, layer_id: int, options: AnalysisOptions) -> dict[str, Any]:
    ref = unit.ref
    row: dict[str, Any] = {c: None for c in LAYER_COLUMNS if c not in PROVENANCE_COLUMNS}
    row.update(
        tensor=unit.name,
        convention=options.convention,
        fitter=options.effective_fitter,
        longname=unit.longname,
        layer_id=layer_id,
        file=ref.file,
        shape=[int(s) for s in (unit.shape or ref.shape)],
        dtype=dtype_string(ref.dtype),
        **storage_columns(ref),
    )
    row.update({k: v for k, v in unit.extra.items() if k in row})
    return row


def source_format(file: str) -> str | None:
    """``safetensors`` | ``pytorch`` | ``gguf`` from a weight file's name (``None``: in memory)."""
    name = (file or "").lower()
    if not name:
        return None
    if name.endswith(".gguf"):
        return "gguf"
    if name.endswith(".safetensors"):
        return "safetensors"
    return "pytorch" if name.endswith((".bin", ".pt", ".pth")) else None


def storage_columns(ref: TensorRef) -> dict[str, Any]:
    """How a tensor was stored: ``source_format``, ``quant_method``, ``bits``,
    ``group_size``, ``gguf_name`` (``layers`` v2)."""
    q = ref.quant
    if q is None:
        try:
            bits = dtype_info(dtype_string(ref.dtype)).bits
        except Exception:  # noqa: BLE001 - a dtype outside the vocabulary: no width
            bits = None
        return {"source_format": source_format(ref.file), "quant_method": "none", "bits": bits}
    return {"source_format": q.source_format, "quant_method": q.method, "bits": q.bits,
            "group_size": q.group_size, "gguf_name": q.original_name if q.source_format == "gguf" else None}


def _dims(row: dict[str, Any], lm: LayerMatrix) -> None:
    row.update(kind=lm.kind, N=lm.N, M=lm.M, rf=lm.rf, Q=lm.Q, num_evals=lm.num_evals)


def _error(row: dict[str, Any], exc: BaseException) -> LayerResult:
    row.update(status="error", error_class=type(exc).__name__, message=str(exc) or repr(exc))
    return LayerResult(row=row)


def _file_level(exc: BaseException) -> bool:
    """Errors that concern the whole file (or may pass on retry): not one layer's fault."""
    return is_transient(exc) or isinstance(exc, (IntegrityError, UnsafeCheckpoint))


def _spectral_stage(unit: Unit, layer_id: int, options: AnalysisOptions,
                    config: Mapping[str, Any] | None, module_kinds: Mapping[str, ModuleKind] | None,
                    device: torch.device, ties: TieTracker | None = None) -> LayerResult | PendingFit:
    """Classify, load and eigen-solve one unit; the fit comes later, in a batch."""
    ref = unit.ref
    row = _base_row(unit, layer_id, options)
    kind_hint = module_kinds.get(row["longname"]) if module_kinds is not None else None
    if module_kinds is not None and kind_hint is None:
        kind_hint = "unknown"  # not owned by a module weightwatcher would visit
    if ref.quant is not None and ref.quant.error:
        # a quantised group that cannot be read (missing companion, garbage quant state):
        # its stored shape says nothing, so it fails as a layer instead of being classified
        return _error(row, MalformedCheckpoint(ref.quant.error))
    if unit.error:
        return _error(row, MalformedCheckpoint(unit.error))
    if unit.skip:
        row.update(status="skipped", skip_reason=unit.skip, kind="skipped")
        return LayerResult(row=row)
    try:
        if unit.lora_a is not None:
            lm = lora_matrix(unit.longname, tuple(unit.lora_a.shape), tuple(ref.shape), options=options)
        else:
            lm = classify(unit.classify_name or ref.name, unit.shape or ref.shape, ref.dtype, options=options,
                          config=config, module=kind_hint)
    except (HubscanError, ValueError) as exc:
        return _error(row, exc)
    if isinstance(lm, Skip):
        row.update(status="skipped", skip_reason=lm.reason, kind=lm.kind)
        if lm.lm is not None:
            _dims(row, lm.lm)
        return LayerResult(row=row)
    _dims(row, lm)
    if row.get("tied_to"):
        row.update(status="skipped", skip_reason=f"tied to {row['tied_to']} (same storage): analysed once")
        return LayerResult(row=row)
    tensor = None
    try:
        tensor = ref.load()
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(np.asarray(tensor))
        if ties is not None and ties.wants(ref):
            other = ties.tied_to(ref, tensor)
            if other is not None:
                row.update(status="skipped", tied_to=other,
                           skip_reason=f"tied to {other} (tie_word_embeddings, same data): analysed once")
                return LayerResult(row=row)
        t0 = time.perf_counter()
        if unit.lora_a is not None:
            a = unit.lora_a.load()
            spec = lora_spectrum(torch.as_tensor(a), tensor, lm, scale=float(row.get("lora_scale") or 1.0),
                                 convention=options.convention)
        else:
            spec = eigenvalues(tensor, lm, convention=options.convention, device=device)
        row["eig_s"] = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - one bad tensor fails its own row
        if _file_level(exc) or not isinstance(exc, (HubscanError, CheckpointError, ValueError,
                                                    RuntimeError, TypeError, MemoryError)):
            raise
        return _error(row, exc)
    finally:
        tensor = None  # noqa: F841 - release the weights before the next tensor loads
    return PendingFit(row=row, lm=lm, spec=spec)


def fit_pending(buffer: list[LayerResult | PendingFit], options: AnalysisOptions,
            device: torch.device) -> Iterator[LayerResult]:
    """Fit every pending layer of the buffer in one batch, then emit the buffer in order."""
    pending = [p for p in buffer if isinstance(p, PendingFit)]
    fits, seconds = _fit_batch([p.spec.evals for p in pending], options, device)
    # One batched call fits them all; charge each layer its share by spectrum length.
    total = sum(p.spec.evals.size for p in pending) or 1
    it = iter(zip(pending, fits))
    for item in buffer:
        if isinstance(item, LayerResult):
            yield item
            continue
        p, fit = next(it)
        p.row["fit_s"] = seconds * p.spec.evals.size / total
        yield _complete(p, fit, options)


def _fit_kwargs(options: AnalysisOptions) -> dict[str, Any]:
    return {"fitter": options.effective_fitter, "min_tail": options.min_tail}


def _fit_batch(spectra: list[np.ndarray], options: AnalysisOptions,
               device: torch.device) -> tuple[list[PowerLawFit], float]:
    if not spectra:
        return [], 0.0
    t0 = time.perf_counter()
    kw = _fit_kwargs(options)
    fits = fit_power_law_batch(spectra, device=device, **kw)
    if options.fix_fingers == "clip_xmax":
        fits = [_clip_xmax(ev, first, device, kw) if first.ok else first
                for ev, first in zip(spectra, fits)]
    return fits, time.perf_counter() - t0


def _clip_xmax(evals: np.ndarray, first: PowerLawFit, device: torch.device,
               kw: dict[str, Any]) -> PowerLawFit:
    """weightwatcher ``fit_clipped_powerlaw``: drop the top 2…9 eigenvalues in turn and keep
    the first refit whose alpha is more than 1 below the unclipped alpha (stop at α ≤ 2).

    All clipped variants are fitted in one batch; the choice replays weightwatcher's loop.
    """
    threshold = default_threshold(kw["fitter"])
    data = np.sort(evals[evals > threshold])
    clips = [k for k in range(2, _MAX_FINGERS) if k < data.size - 1]
    refits = fit_power_law_batch([data[:-k] for k in clips], device=device, **kw)
    for fit in refits:
        if not fit.ok:
            break
        if fit.alpha + _FINGER_THRESH < first.alpha:
            return fit
        if fit.alpha <= _FINGER_MIN_ALPHA:
            break
    return first


def _complete(p: PendingFit, fit: PowerLawFit, options: AnalysisOptions) -> LayerResult:
    """All fit-dependent columns of one analysed layer."""
    row, lm, ev = p.row, p.lm, p.spec.evals
    ok = fit.ok and bool(np.isfinite(fit.alpha))
    alpha = float(fit.alpha) if ok else None
    row.update(layer_metrics(p.spec, alpha=alpha))
    if ok:
        row.update(alpha=alpha, xmin=float(fit.xmin), xmax=float(fit.xmax), D=float(fit.D),
                   sigma=float(fit.sigma), num_pl_spikes=num_pl_spikes(ev, fit.xmin))
    mp = None
    if options.mp_fit:
        mp = fit_mp(ev, Q=lm.Q, M=lm.M)
        if mp.status == "ok":
            row.update(sigma_mp=mp.sigma_mp, bulk_max=mp.bulk_max, bulk_min=mp.bulk_min,
                       num_spikes=mp.num_spikes, mp_softrank=mp.mp_softrank)
    phase = classify_phase(ev, M=lm.M, mp=mp, alpha=alpha)
    row.update(phase=phase, ht_class=ht_class(alpha, phase))
    row["warning"] = warning_label(
        alpha, fit_ok=ok, rank_collapse=is_rank_collapsed(ev, lm.M),
        poor_fit=ok and is_poor_fit(D=fit.D, n_tail=fit.n_tail),
    )
    if ok and options.compare:
        row.update(_compare(ev, fit, options))
    row["status"] = "ok" if ok else "fit-failed"
    return LayerResult(row=row, evals=ev)


def _compare(evals: np.ndarray, fit: PowerLawFit, options: AnalysisOptions) -> dict[str, Any]:
    """Power law vs exponential, stretched exponential, lognormal, truncated power law."""
    from ..esd.compare import distribution_compare

    threshold = default_threshold(options.effective_fitter)
    data = evals[evals > threshold]
    xmax = None if options.effective_fitter == "ww" else float(fit.xmax)
    try:
        cmp = distribution_compare(data, alpha=float(fit.alpha), xmin=float(fit.xmin), xmax=xmax)
    except (ValueError, RuntimeError, FloatingPointError, HubscanError):
        return {}
    out: dict[str, Any] = {"best_family": getattr(cmp, "best_family", None)}
    for fam in _COMPARE_FAMILIES:
        for stat in ("R", "p"):
            v = getattr(cmp, f"{stat}_{fam}", None)
            out[f"{stat}_{fam}"] = None if v is None or not np.isfinite(v) else float(v)
    return out
