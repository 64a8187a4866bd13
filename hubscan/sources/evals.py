"""Reported quality numbers a source already has: a card's ``model-index``, torchvision's
published ImageNet metrics.

The seeds' claim to check is that spectral metrics rank models by quality *without test
data*; that needs the quality numbers someone did measure. They are taken as reported, with
where they were read (``EvalRecord.origin``): ``card:model-index`` (parsed by
``huggingface_hub``'s own ``ModelCardData``, which turns the ``model-index`` YAML into
``EvalResult``s) and ``torchvision`` (a weight enum's ``meta["_metrics"]``, e.g.
``{"ImageNet-1K": {"acc@1": 76.13, "acc@5": 92.862}}``). A user CSV is imported by
``hubscan.lake.evals_csv``. Pure functions of plain data: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..refs import EvalRecord

__all__ = ["card_evals", "torchvision_evals", "TORCHVISION_TASKS"]

#: torchvision sub-package → the Hub's task vocabulary, for its metrics' ``task`` column.
TORCHVISION_TASKS = {
    "classification": "image-classification", "quantization": "image-classification",
    "detection": "object-detection", "segmentation": "image-segmentation",
    "video": "video-classification", "optical_flow": "optical-flow",
}


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, str):
        try:
            f = float(v.strip().rstrip("%"))
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _text(v: Any) -> str | None:
    return str(v) if v is not None and str(v) != "" else None


def card_evals(card: Any) -> tuple[EvalRecord, ...]:
    """Every numeric result of a card's ``model-index`` (a card-data dict or ``ModelCardData``).

    A result whose value is not a finite number (``"N/A"``, a dict) is left out: the lake keeps
    numbers. ``task``/``dataset``/``metric`` are the YAML's ``type`` fields, the names kept in
    ``metric_name``.
    """
    data = _card_data(card)
    if data is None:
        return ()
    out = []
    for r in data.eval_results or ():
        value = _number(getattr(r, "metric_value", None))
        metric = _text(getattr(r, "metric_type", None))
        if value is None or metric is None:
            continue
        out.append(EvalRecord(
            metric=metric, value=value, origin="card:model-index",
            task=_text(getattr(r, "task_type", None)),
            dataset=_text(getattr(r, "dataset_type", None)) or _text(getattr(r, "dataset_name", None)),
            dataset_config=_text(getattr(r, "dataset_config", None)),
            dataset_split=_text(getattr(r, "dataset_split", None)),
            metric_name=_text(getattr(r, "metric_name", None)),
            verified=getattr(r, "verified", None) if isinstance(getattr(r, "verified", None), bool) else None,
        ))
    return tuple(out)


def _card_data(card: Any) -> Any:
    """A ``ModelCardData`` from what a source holds (dict from ``cardData``, or the object)."""
    if card is None:
        return None
    from huggingface_hub import ModelCardData

    if isinstance(card, ModelCardData):
        return card
    if isinstance(card, Mapping):
        try:
            return ModelCardData(**dict(card), ignore_metadata_errors=True)
        except Exception:  # noqa: BLE001 - a card the library rejects reports nothing
            return None
    return card if hasattr(card, "eval_results") else None


def torchvision_evals(metrics: Mapping[str, Any] | None, *, task: str = "classification") -> tuple[EvalRecord, ...]:
    """torchvision's published metrics (``meta["_metrics"]``): ``{dataset: {metric: value}}``."""
    if not isinstance(metrics, Mapping):
        return ()
    out = []
    for dataset, values in metrics.items():
        if not isinstance(values, Mapping):
            continue
        for metric, v in values.items():
            value = _number(v)
            if value is not None:
                out.append(EvalRecord(metric=str(metric), value=value, origin="torchvision",
                                      task=TORCHVISION_TASKS.get(task, task), dataset=str(dataset)))
    return tuple(out)
