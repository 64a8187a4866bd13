"""Fine-tune deltas: how far each matrix of a model moved from its base model's.

A ``DeltaPass`` rides along the model's own analysis. It wraps the model's tensor stream so
that, when the analysis loads a matrix for its eigen-solve, the base model's same-named
tensor is read (``sources.tensor_lookup``: a Range read on the Hub, an mmap copy locally)
and compared with it — the model's bytes are read once, the base's only for the matrices
that exist in both, never the whole base. Per matrix it computes weightwatcher 0.7.7's
``distances()`` (``esd.distances``: ``raw`` over the whole tensor, ``euclidean`` and
``cka`` per weightwatcher matrix, averaged) and, when asked, the ESD and power-law fit of
``W − W_base`` (weightwatcher's ``base_model=``), batched like the main fits.

Rows are ``deltas`` rows (schemas/deltas.v1.json), buffered per weight file like the layer
rows: a file that fails drops its delta rows too. A base that cannot be read (gone, gated,
a network that gave up) fails every later row of the pass with the reason, once — it never
fails the model's own analysis.

Memory: the model's tensor (held by the analysis anyway), one base tensor, and their float64
difference while a row is computed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch

from ..errors import CheckpointError, HubscanError, SourceError
from ..esd import distances as dist
from ..esd.layers import LayerMatrix, classify, longname_of
from ..esd.powerlaw.fit import fit_power_law_batch
from ..esd.spectral import Spectrum, eigenvalues, num_pl_spikes, resolve_device
from ..options import AnalysisOptions, DeltaOptions
from ..refs import BaseLink, ModelRef, TensorRef

__all__ = ["DeltaPass", "delta_row_base", "tensor_distances"]


def tensor_distances(W: torch.Tensor, B: torch.Tensor, *, kind: str,
                     methods: Iterable[str] = ("raw", "euclidean", "cka")) -> dict[str, Any]:
    """weightwatcher ``distances()`` of one tensor and its base (same shape), in float64.

    Returns ``delta_raw`` / ``delta_euclidean`` / ``delta_cka`` (only the asked methods),
    ``base_norm`` (‖W_base‖_F), ``rel_delta`` (``delta_raw / base_norm``) and ``n_mats``.

    One float64 difference serves ``raw`` and ``euclidean``: a Frobenius norm does not
    depend on how weightwatcher orients a slice, so the per-matrix norms are those of the
    difference's slices (a 2-D tensor is one matrix: ``euclidean == raw``). Only ``cka``,
    which is not transpose-invariant, builds weightwatcher's matrices (``esd.distances``).
    """
    methods = set(methods)
    D = W.detach().to(torch.float64)
    D -= B.detach().to(torch.float64)
    raw = float(torch.linalg.vector_norm(D))
    base_norm = float(torch.linalg.vector_norm(B.detach(), dtype=torch.float64))
    out: dict[str, Any] = {"base_norm": base_norm, "rel_delta": raw / base_norm if base_norm > 0 else None}
    if "raw" in methods:
        out["delta_raw"] = raw
    if D.dim() <= 2:
        out["n_mats"] = 1
        if "euclidean" in methods:
            out["delta_euclidean"] = raw
    else:  # (out, in, k) / (out, in, kh, kw): one matrix per trailing position
        per = torch.linalg.vector_norm(D.reshape(D.shape[0], D.shape[1], -1), dim=(0, 1))
        out["n_mats"] = int(per.numel())
        if "euclidean" in methods:
            out["delta_euclidean"] = float(per.sum() / per.numel())
    del D
    if "cka" in methods:
        d = dist.matrix_distance(dist.ww_matrices(W, kind=kind), dist.ww_matrices(B, kind=kind), "cka")
        out["delta_cka"] = float(d.sum() / d.numel())
    return out


def delta_row_base(ref: ModelRef, base: ModelRef, link: BaseLink | None, *, model_key: str,
                   analysis_version: str, written_at: Any) -> dict[str, Any]:
    """The columns every ``deltas`` row of one (model, base) pair shares."""
    return {
        "model_key": model_key, "source": ref.source, "repo_id": ref.repo_id,
        "revision": ref.revision, "base_source": base.source, "base_repo_id": base.repo_id,
        "base_revision": base.revision, "relation": link.relation if link else None,
        "analysis_version": analysis_version, "written_at": written_at,
    }


@dataclass
class _PendingDiff:
    row: dict[str, Any]
    spec: Spectrum


class DeltaPass:
    """Distances (and optionally the ΔW ESD) of one model against one base, as it streams.

    Usage, per weight file of the model::

        tensors = dp.wrap(tensors)           # before the analysis consumes them
        ... analyze_tensors(tensors, …) ...
        rows = dp.take_rows()                # this file's deltas rows (fits done here)

    Args:
        ref, base: the model and its base model (descriptors).
        link: the lineage link that names the base (its relation goes into the rows).
        options: the analysis options (skip rules, convention, fitter, device).
        deltas: what to compute.
        lookup: ``name -> TensorRef | None`` over the base (``sources.tensor_lookup``).
        base_row: ``delta_row_base(...)`` columns.
        config: the model's ``config.json`` (layer rules).
        module_kinds: ``longname → module kind`` when the tensors come from an ``nn.Module``
            (weightwatcher's module rules, as ``analyze_tensors``).
    """

    def __init__(self, ref: ModelRef, base: ModelRef, link: BaseLink | None, *,
                 options: AnalysisOptions, deltas: DeltaOptions, lookup: Any,
                 base_row: Mapping[str, Any], config: Mapping[str, Any] | None = None,
                 module_kinds: Mapping[str, Any] | None = None) -> None:
        self.ref, self.base, self.link = ref, base, link
        self.options, self.deltas = options, deltas
        self.lookup = lookup
        self.base_row = dict(base_row)
        self.config = config
        self.module_kinds = module_kinds
        self.device = resolve_device(options.device)
        self._rows: list[dict[str, Any]] = []
        self._pending: list[_PendingDiff] = []
        self._broken: str | None = None  # why the base cannot be read any more
        self.seconds = 0.0  # computing (base reads excluded)
        self.read_seconds = 0.0  # reading base tensors

    def _classify(self, name: str, shape: tuple[int, ...], dtype: str) -> Any:
        module = None
        if self.module_kinds is not None:
            module = self.module_kinds.get(longname_of(name)) or "unknown"
        try:
            return classify(name, shape, dtype, options=self.options, config=self.config, module=module)
        except (HubscanError, ValueError):
            return None

    def wanted(self, name: str, shape: tuple[int, ...], dtype: str) -> bool:
        """The base tensors this pass will ask for: those the layer rules analyse."""
        return isinstance(self._classify(name, shape, dtype), LayerMatrix)

    # -- the stream

    def wrap(self, tensors: Iterable[TensorRef]) -> Iterator[TensorRef]:
        """The same tensors; loading an analysed matrix also measures it against the base."""
        for t in tensors:
            lm = self._classify(t.name, t.shape, t.dtype)
            if isinstance(lm, LayerMatrix):
                yield replace(t, load=self._measuring(t, lm))
            else:
                yield t

    def _measuring(self, t: TensorRef, lm: LayerMatrix) -> Callable[[], Any]:
        load = t.load

        def measured() -> Any:
            x = load()
            self._measure(t, lm, x)
            return x

        return measured

    def _row(self, t: TensorRef, lm: LayerMatrix, **cols: Any) -> dict[str, Any]:
        return {**self.base_row, "tensor": t.name, "file": t.file, "kind": lm.kind,
                "shape": [int(s) for s in t.shape], **cols}

    def _measure(self, t: TensorRef, lm: LayerMatrix, x: Any) -> None:
        if self._broken is not None:
            self._rows.append(self._row(t, lm, status="error", message=self._broken))
            return
        t0 = time.perf_counter()
        try:
            bref = self.lookup.get(t.name)
            b = bref.load() if bref is not None else None
        except (SourceError, CheckpointError) as exc:  # gone, gated, unreachable, a bad file: stop
            self._broken = f"base {self.base.uri} unreadable: {type(exc).__name__}: {exc}"
            self._rows.append(self._row(t, lm, status="error", message=self._broken))
            return
        except Exception as exc:  # noqa: BLE001 - one bad base tensor fails its own row
            self._rows.append(self._row(t, lm, status="error",
                                        message=f"{type(exc).__name__}: {exc}"))
            return
        finally:
            self.read_seconds += time.perf_counter() - t0
        if b is None:
            self._rows.append(self._row(t, lm, status="missing-in-base",
                                        message=f"{self.base.uri} has no tensor {t.name!r}"))
            return
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        if not isinstance(b, torch.Tensor):
            b = torch.as_tensor(np.asarray(b))
        base_file = bref.file if bref is not None else None
        if tuple(b.shape) != tuple(x.shape):
            self._rows.append(self._row(t, lm, base_file=base_file, status="shape-mismatch",
                                        message=f"shape {tuple(x.shape)} vs base {tuple(b.shape)}"))
            return
        t1 = time.perf_counter()
        try:
            cols = tensor_distances(x, b, kind=lm.kind, methods=self.deltas.methods) \
                if self.deltas.distances else {}
            row = self._row(t, lm, base_file=base_file, status="ok", **cols)
            if self.deltas.esd:
                self._diff_esd(row, x, b, lm)
        except Exception as exc:  # noqa: BLE001 - NaN weights, a dtype torch cannot subtract …
            row = self._row(t, lm, base_file=base_file, status="error",
                            message=f"{type(exc).__name__}: {exc}")
        dt = time.perf_counter() - t1
        row["delta_s"] = dt
        self.seconds += dt
        self._rows.append(row)

    def _diff_esd(self, row: dict[str, Any], x: torch.Tensor, b: torch.Tensor,
                  lm: LayerMatrix) -> None:
        diff = x.detach().to(torch.float64) - b.detach().to(torch.float64)
        if not bool(diff.any()):
            row["diff_status"] = "zero"  # an unchanged matrix has no ESD
            return
        spec = eigenvalues(diff, lm, convention=self.options.convention, device=self.device)
        self._pending.append(_PendingDiff(row, spec))

    # -- per file

    def take_rows(self) -> list[dict[str, Any]]:
        """This file's rows, with the ΔW power-law fits done in one batch."""
        if self._pending:
            t0 = time.perf_counter()
            fits = fit_power_law_batch([p.spec.evals for p in self._pending], device=self.device,
                                       fitter=self.options.effective_fitter,
                                       min_tail=self.options.min_tail)
            total = sum(p.spec.evals.size for p in self._pending) or 1
            seconds = time.perf_counter() - t0
            for p, fit in zip(self._pending, fits):
                ev = p.spec.evals
                pos = ev[ev > 0]
                p.row["diff_log_norm"] = float(np.log10(ev.sum())) if ev.sum() > 0 else None
                p.row["diff_log_spectral_norm"] = float(np.log10(pos.max())) if pos.size else None
                ok = fit.ok and bool(np.isfinite(fit.alpha))
                p.row["diff_status"] = "ok" if ok else "fit-failed"
                if ok:
                    p.row.update(diff_alpha=float(fit.alpha), diff_xmin=float(fit.xmin),
                                 diff_D=float(fit.D), diff_num_pl_spikes=num_pl_spikes(ev, fit.xmin))
                share = seconds * ev.size / total
                p.row["delta_s"] = (p.row.get("delta_s") or 0.0) + share
                self.seconds += share
            self._pending = []
        rows, self._rows = self._rows, []
        return rows

    def discard(self) -> None:
        """Drop this file's rows (the file failed: its layer rows are dropped too)."""
        self._rows, self._pending = [], []
