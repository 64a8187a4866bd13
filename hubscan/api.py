"""The notebook entry point: ``hubscan.analyze(model)`` → a ``pyarrow.Table`` of ``layers`` rows.

It reads like ``WeightWatcher(model=m).analyze()``: a path, an ``nn.Module`` or a state dict
in, one row per tensor out. It composes the analysis (``analysis.tensors``) with the lake's
schema registry (``lake.schema``: the table comes out with exactly the ``layers`` columns and
types), which is why it lives above both rather than inside the analysis room.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .analysis.tensors import analyze_tensors
from .esd.layers import ModuleKind, dtype_string, module_kind
from .options import AnalysisOptions
from .refs import TensorRef

__all__ = ["analyze", "deltas"]

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
    adapter = None
    if isinstance(obj, (str, os.PathLike)):
        tensors, config, shas, files = _from_path(Path(obj), config)
        adapter = _adapter_config(Path(obj))
    elif isinstance(obj, torch.nn.Module):
        tensors, module_kinds = _from_module(obj)
        files = {}
    elif isinstance(obj, Mapping):
        tensors, files = _from_state_dict(obj), {}
    else:
        raise TypeError(f"analyze() takes a path, an nn.Module or a state dict, not {type(obj).__name__}")
    now = datetime.now(timezone.utc)
    rows = []
    for lr in analyze_tensors(tensors, options, config=config, module_kinds=module_kinds,
                              adapter_config=adapter):
        row = dict(lr.row)
        full = row.get("file")
        row["file_sha256"] = shas.get(full) if full else None
        row["file"] = files.get(full, full)
        row["analysis_version"] = options.analysis_version
        row["written_at"] = now
        rows.append(row)
    return _to_table(rows)


def deltas(model: Any, base: Any, *, methods: tuple[str, ...] = ("raw", "euclidean", "cka"),
           esd: bool = False, convention: str = "ww", **option_overrides: Any):
    """How far each weight matrix of ``model`` moved from ``base``'s: one row per matrix.

    The notebook form of a scan's fine-tune deltas, and of weightwatcher's
    ``WeightWatcher().distances(model, base, method=…)`` (all three methods at once) and
    ``analyze(base_model=…)`` (``esd=True``: the ESD and power-law fit of ``W − W_base``).

    Args:
        model, base: paths, ``nn.Module``s or state dicts (as ``analyze``); matched by tensor
            name, the layer set as ``analyze`` picks it (weightwatcher's for modules).
        methods: of ``raw``, ``euclidean``, ``cka`` (``hubscan.esd.distances``).
        esd: also fit the ESD of ``W − W_base`` (columns ``diff_*``).
        convention, **option_overrides: ``AnalysisOptions`` (skip rules, fitter, device).

    Returns:
        ``pyarrow.Table`` with the ``deltas`` schema's columns (all nullable here; the model
        and base identity columns are NULL): ``tensor``, ``kind``, ``shape``, ``n_mats``,
        ``status``, ``delta_raw``, ``delta_euclidean``, ``delta_cka``, ``base_norm``,
        ``rel_delta``, ``diff_alpha`` …

    Example:
        >>> t = hubscan.deltas(finetuned, pretrained)                    # doctest: +SKIP
        >>> t.to_pandas().sort_values("rel_delta", ascending=False).head()
    """
    from .analysis.deltas import DeltaPass
    from .options import DeltaOptions
    from .refs import ModelRef

    options = AnalysisOptions(convention=convention, **option_overrides)
    tensors, config, kinds = _tensors_of(model)
    base_tensors = {t.name: t for t in _tensors_of(base)[0]}

    class _Lookup:
        def get(self, name: str) -> TensorRef | None:
            return base_tensors.get(name)

    ref = ModelRef(source="local", repo_id="model", revision="-", config=config)
    dp = DeltaPass(ref, ModelRef(source="local", repo_id="base", revision="-"), None, options=options,
                   deltas=DeltaOptions(distances=True, methods=tuple(methods), esd=esd), lookup=_Lookup(),
                   base_row={}, config=config, module_kinds=kinds)
    for t in dp.wrap(tensors):
        if t.load is not None and dp.wanted(t.name, t.shape, t.dtype):
            t.load()  # loading a wanted matrix measures it against the base
    rows = [{k: v for k, v in r.items() if k not in ("file",)} for r in dp.take_rows()]
    return _to_table(rows, table="deltas")


def _tensors_of(obj: Any) -> tuple[list[TensorRef], Mapping[str, Any] | None, dict[str, ModuleKind] | None]:
    if isinstance(obj, (str, os.PathLike)):
        tensors, config, _, _ = _from_path(Path(obj), None)
        return tensors, config, None
    if isinstance(obj, torch.nn.Module):
        tensors, kinds = _from_module(obj)
        return tensors, None, kinds
    if isinstance(obj, Mapping):
        return _from_state_dict(obj), None, None
    raise TypeError(f"deltas() takes paths, nn.Modules or state dicts, not {type(obj).__name__}")


def _to_table(rows: list[dict[str, Any]], *, table: str = "layers"):
    import pyarrow as pa

    from .lake.schema import default_registry, rows_to_table

    schema = default_registry()[table]
    relaxed = pa.schema([f.with_nullable(True) for f in schema.arrow], metadata=schema.arrow.metadata)
    return rows_to_table(dataclasses.replace(schema, arrow=relaxed), rows)


def _adapter_config(path: Path) -> dict[str, Any] | None:
    """A PEFT ``adapter_config.json`` beside the checkpoint (LoRA scale, base model)."""
    from .readers.adapter import read_adapter_config

    return read_adapter_config(path if path.is_dir() else path.parent)


def _from_path(path: Path, config: Mapping[str, Any] | None):
    from .readers import checkpoint_files, read_checkpoint
    from .readers.checkpoint import folder_config
    from .sources.local import file_sha256

    root = path if path.is_dir() else path.parent
    if config is None:
        config = folder_config(path)
    tensors = list(read_checkpoint(path, config=config))
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
