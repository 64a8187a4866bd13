"""Tensors → ``layers`` rows: the analysis of one checkpoint, and the notebook API.

``analyze_tensors`` is the engine's analysis step: it takes ``TensorRef``s (nothing loaded
yet), classifies each (``layers.classify``), loads only the ones that are analysed, solves
their spectra (``spectral.eigenvalues``), fits the power law of a whole batch of layers in
one call (``powerlaw_fit.fit_power_law_batch``), fits the MP bulk (``mp.fit_mp``), names the
phase (``phases``) and compares the tail with other distributions (``compare``). One
``LayerResult`` comes out per tensor — analysed, skipped (with ``skip_reason``) or failed
(``status = "error"`` with ``error_class``/``message``): a bad tensor fails its own row,
never the file.

``analyze`` is the same thing for a notebook: a path, an ``nn.Module`` or a state dict in,
a ``pyarrow.Table`` with the ``layers`` columns out — like ``WeightWatcher.analyze()``, and
joinable with its output on ``longname``.

``model_summary`` turns a model's rows into the ``models`` table's summary columns
(METHOD.md §5).

Deliberate differences from weightwatcher (docs/metrics.md): a failed power-law fit is
``status = "fit-failed"``, ``warning = "failed"`` and NULL ``alpha``/``alpha_weighted``/
``log_alpha_norm`` (weightwatcher: α = −1 and "over-trained"); MP-fit failures are NULL
(weightwatcher: −1).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, HubscanError, IntegrityError, UnsafeCheckpoint, is_transient
from .layers import LayerMatrix, ModuleKind, Skip, classify, dtype_string, longname_of, module_kind
from .mp import fit_mp
from .options import AnalysisOptions
from .phases import classify_phase, ht_class, is_poor_fit, is_rank_collapsed
from .powerlaw_fit import PowerLawFit, default_threshold, fit_power_law_batch
from .refs import TensorRef
from .results import LayerResult
from .spectral import Spectrum, eigenvalues, layer_metrics, num_pl_spikes, resolve_device, warning_label

__all__ = ["analyze_tensors", "analyze", "model_summary", "fit_pending", "PendingFit", "FIT_BATCH", "LAYER_COLUMNS"]

#: Analysed layers whose power-law fits go into one batched call.
FIT_BATCH = 32
#: weightwatcher ``fit_clipped_powerlaw``: clip 2 … 9 top eigenvalues, stop when α drops by > 1.
_MAX_FINGERS = 10
_FINGER_THRESH = 1.0
_FINGER_MIN_ALPHA = 2.0

_COMPARE_FAMILIES = ("exponential", "stretched_exponential", "lognormal", "truncated_power_law")


def _layers_columns() -> tuple[str, ...]:
    from importlib import resources

    spec = json.loads(resources.files("hubscan.schemas").joinpath("layers.v1.json").read_text())
    return tuple(f["name"] for f in spec["fields"])


#: The ``layers`` schema's column names, in schema order.
LAYER_COLUMNS: tuple[str, ...] = _layers_columns()
# Columns the pipeline (or ``analyze``) fills, not the analysis.
_PROVENANCE = ("file_sha256", "analysis_version", "model_key", "written_at")


# --------------------------------------------------------------------------------------------
# analyze_tensors
# --------------------------------------------------------------------------------------------


@dataclass
class PendingFit:
    """An analysed layer (row, layer rules, spectrum) waiting for its batched power-law fit.

    Public so that a re-fit from stored spectra (``hubscan.refit``) runs the very same fit
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
) -> Iterator[LayerResult]:
    """One ``LayerResult`` per tensor, in input order (METHOD.md §1–§4).

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
    for layer_id, ref in enumerate(tensors):
        item = _spectral_stage(ref, layer_id, options, config, module_kinds, device)
        buffer.append(item)
        if isinstance(item, PendingFit):
            n_pending += 1
            if n_pending >= fit_batch:
                yield from fit_pending(buffer, options, device)
                buffer, n_pending = [], 0
    yield from fit_pending(buffer, options, device)


def _base_row(ref: TensorRef, layer_id: int, options: AnalysisOptions) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in LAYER_COLUMNS if c not in _PROVENANCE}
    row.update(
        tensor=ref.name,
        convention=options.convention,
        fitter=options.effective_fitter,
        longname=longname_of(ref.name),
        layer_id=layer_id,
        file=ref.file,
        shape=[int(s) for s in ref.shape],
        dtype=dtype_string(ref.dtype),
    )
    return row


def _dims(row: dict[str, Any], lm: LayerMatrix) -> None:
    row.update(kind=lm.kind, N=lm.N, M=lm.M, rf=lm.rf, Q=lm.Q, num_evals=lm.num_evals)


def _error(row: dict[str, Any], exc: BaseException) -> LayerResult:
    row.update(status="error", error_class=type(exc).__name__, message=str(exc) or repr(exc))
    return LayerResult(row=row)


def _file_level(exc: BaseException) -> bool:
    """Errors that concern the whole file (or may pass on retry): not one layer's fault."""
    return is_transient(exc) or isinstance(exc, (IntegrityError, UnsafeCheckpoint))


def _spectral_stage(ref: TensorRef, layer_id: int, options: AnalysisOptions,
                    config: Mapping[str, Any] | None, module_kinds: Mapping[str, ModuleKind] | None,
                    device: torch.device) -> LayerResult | PendingFit:
    """Classify, load and eigen-solve one tensor; the fit comes later, in a batch."""
    row = _base_row(ref, layer_id, options)
    kind_hint = module_kinds.get(row["longname"]) if module_kinds is not None else None
    if module_kinds is not None and kind_hint is None:
        kind_hint = "unknown"  # not owned by a module weightwatcher would visit
    try:
        lm = classify(ref.name, ref.shape, ref.dtype, options=options, config=config, module=kind_hint)
    except (HubscanError, ValueError) as exc:
        return _error(row, exc)
    if isinstance(lm, Skip):
        row.update(status="skipped", skip_reason=lm.reason, kind=lm.kind)
        if lm.lm is not None:
            _dims(row, lm.lm)
        return LayerResult(row=row)
    _dims(row, lm)
    try:
        tensor = ref.load()
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(np.asarray(tensor))
        t0 = time.perf_counter()
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
    from .compare import distribution_compare

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


# --------------------------------------------------------------------------------------------
# model_summary (METHOD.md §5)
# --------------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def model_summary(rows: Iterable[Mapping[str, Any]], *, exclude_final_layer: bool = False) -> dict[str, Any]:
    """The ``models`` table's summary columns from a model's ``layers`` rows.

    Means over *successful fits* (``status = "ok"``) for the alpha-dependent metrics, over
    all analysed matrices (``ok`` + ``fit-failed``) for the others; ``ww_alpha_mean`` is
    weightwatcher's ``get_summary()["alpha"]``: the plain mean over analysed matrices with a
    failed fit counted as −1. Shares of alpha in [2, 6] and [2, 4] (seed 000: "80–90 % of
    exponents lie between 2 and 4") and warning counts complete it.

    Args:
        rows: layer rows (dicts with the ``layers`` column names).
        exclude_final_layer: leave out the analysed matrix with the largest ``layer_id`` (the
            classifier, which the seeds exclude for VGG).
    """
    rows = list(rows)
    analysed = [r for r in rows if r.get("status") in ("ok", "fit-failed")]
    if exclude_final_layer and analysed:
        last = max(analysed, key=lambda r: (r.get("layer_id") is not None, r.get("layer_id") or 0))
        analysed = [r for r in analysed if r is not last]
    fitted = [r for r in analysed if r.get("status") == "ok" and r.get("alpha") is not None]
    alphas = [float(r["alpha"]) for r in fitted]

    def col(name: str, over: list[Mapping[str, Any]]) -> list[float]:
        return [float(r[name]) for r in over if r.get(name) is not None and np.isfinite(r[name])]

    def warned(label: str) -> int:
        return sum(1 for r in analysed if label in (r.get("warning") or "").split(","))

    return {
        "n_tensors": len(rows),
        "n_analysed": len([r for r in rows if r.get("status") in ("ok", "fit-failed")]),
        "n_skipped": sum(1 for r in rows if r.get("status") == "skipped"),
        "n_failed": sum(1 for r in rows if r.get("status") == "error"),
        "alpha_mean": _mean(alphas),
        "alpha_median": float(np.median(alphas)) if alphas else None,
        "alpha_weighted_mean": _mean(col("alpha_weighted", fitted)),
        "log_norm_mean": _mean(col("log_norm", analysed)),
        "log_spectral_norm_mean": _mean(col("log_spectral_norm", analysed)),
        "log_alpha_norm_mean": _mean(col("log_alpha_norm", fitted)),
        "stable_rank_mean": _mean(col("stable_rank", analysed)),
        "ww_alpha_mean": _mean([float(r["alpha"]) if r.get("status") == "ok" and r.get("alpha") is not None
                                else -1.0 for r in analysed]),
        "frac_alpha_2_6": (sum(2 <= a <= 6 for a in alphas) / len(alphas)) if alphas else None,
        "frac_alpha_2_4": (sum(2 <= a <= 4 for a in alphas) / len(alphas)) if alphas else None,
        "n_over_trained": warned("over-trained"),
        "n_under_trained": warned("under-trained"),
    }


# --------------------------------------------------------------------------------------------
# analyze(): the notebook API
# --------------------------------------------------------------------------------------------


def analyze(obj: Any, *, convention: str = "ww", config: Mapping[str, Any] | None = None,
            **option_overrides: Any):
    """Analyse a checkpoint, a torch module or a state dict; one row per tensor.

    Args:
        obj: a path (``.safetensors``/``.bin``/``.pt`` file, shard index or model folder),
            an ``nn.Module`` (weightwatcher's module-type rules apply, so the layer set equals
            ``WeightWatcher(model=obj).analyze()``'s), or a state dict (``{name: tensor}``;
            ``{"state_dict": …}``/``{"model": …}`` wrappers are unwrapped).
        convention: ``ww`` (weightwatcher 0.7.x defaults) or ``seed`` (σ²/N, powerlaw 1.5).
        config: the model's ``config.json``; read from the folder when ``obj`` is one.
        **option_overrides: any ``AnalysisOptions`` field (``min_evals=…``, ``mp_fit=False``,
            ``fitter="truncated"`` …).

    Returns:
        ``pyarrow.Table`` with exactly the ``layers`` schema's columns (all nullable here):
        ``tensor`` is the full tensor name and ``longname`` the module path, so
        ``ours.join(ww_details, "longname")`` lines rows up with weightwatcher's.

    Example:
        >>> import hubscan, torchvision                                   # doctest: +SKIP
        >>> t = hubscan.analyze(torchvision.models.resnet18(weights="DEFAULT"))
        >>> t.to_pandas()[["longname", "alpha", "warning"]]
    """
    options = AnalysisOptions(convention=convention, **option_overrides)
    shas: dict[str, str] = {}
    module_kinds = None
    if isinstance(obj, (str, os.PathLike)):
        tensors, config, shas, files = _from_path(Path(obj), config)
    elif isinstance(obj, torch.nn.Module):
        tensors, module_kinds = _from_module(obj)
        files = {}
    elif isinstance(obj, Mapping):
        tensors, files = _from_state_dict(obj), {}
    else:
        raise TypeError(f"analyze() takes a path, an nn.Module or a state dict, not {type(obj).__name__}")
    now = datetime.now(timezone.utc)
    rows = []
    for lr in analyze_tensors(tensors, options, config=config, module_kinds=module_kinds):
        row = dict(lr.row)
        full = row.get("file")
        row["file_sha256"] = shas.get(full) if full else None
        row["file"] = files.get(full, full)
        row["analysis_version"] = options.analysis_version
        row["written_at"] = now
        rows.append(row)
    return _to_table(rows)


def _to_table(rows: list[dict[str, Any]]):
    import pyarrow as pa

    from .lake.schema import default_registry, rows_to_table

    schema = default_registry()["layers"]
    relaxed = pa.schema([f.with_nullable(True) for f in schema.arrow], metadata=schema.arrow.metadata)
    return rows_to_table(dataclasses.replace(schema, arrow=relaxed), rows)


def _from_path(path: Path, config: Mapping[str, Any] | None):
    from .readers import checkpoint_files, read_checkpoint
    from .sources.local import file_sha256

    tensors = list(read_checkpoint(path))
    root = path if path.is_dir() else path.parent
    if config is None and (root / "config.json").is_file():
        try:
            config = json.loads((root / "config.json").read_text())
        except (OSError, ValueError):
            config = None
    shas, files = {}, {}
    for f in checkpoint_files(path):
        shas[str(f)] = file_sha256(f)
        files[str(f)] = os.path.relpath(f, root)
    return tensors, config, shas, files


def _tensor_ref(name: str, t: Any, file: str) -> TensorRef:
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(np.asarray(t))
    t = t.detach()
    return TensorRef(name=name, shape=tuple(t.shape), dtype=dtype_string(t.dtype), file=file,
                     load=lambda t=t: t)


def _from_module(module: torch.nn.Module) -> tuple[list[TensorRef], dict[str, ModuleKind]]:
    """Every parameter and buffer, module by module as ``named_modules`` visits them (the
    order and de-duplication weightwatcher uses), with each module's weightwatcher type."""
    refs: list[TensorRef] = []
    kinds: dict[str, ModuleKind] = {}
    for prefix, mod in module.named_modules():
        kinds[prefix] = module_kind(mod)
        for pname, t in [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]:
            if t is None:
                continue
            name = f"{prefix}.{pname}" if prefix else pname
            refs.append(_tensor_ref(name, t, ""))
    return refs, kinds


def _from_state_dict(sd: Mapping[str, Any]) -> list[TensorRef]:
    for wrapper in ("state_dict", "model", "module"):
        inner = sd.get(wrapper) if len(sd) <= 3 else None
        if isinstance(inner, Mapping):
            sd = inner
            break
    return [_tensor_ref(str(k), v, "") for k, v in sd.items()
            if isinstance(v, (torch.Tensor, np.ndarray))]
