"""PEFT adapters: ``adapter_config.json`` beside ``adapter_model.safetensors``/``.bin``.

The weights are ordinary tensors (``….lora_A.weight`` ``(r, in)``, ``….lora_B.weight``
``(out, r)``, DoRA's ``lora_magnitude_vector``); what turns a pair into one ``ΔW = s·B·A``
row is a layer rule (``hubscan.esd.layers.lora_role``). The config supplies ``s``
(``lora_alpha / r``, or ``/ √r`` with ``use_rslora``), per-module ``alpha_pattern``, and the
base model (``base_model_name_or_path``) that the adapter's rows record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "parse_adapter_config", "read_adapter_config"]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_MAX_BYTES = 4 << 20
_KEYS = ("peft_type", "r", "lora_alpha", "use_rslora", "use_dora", "alpha_pattern", "rank_pattern",
         "base_model_name_or_path", "target_modules", "task_type")


def parse_adapter_config(text: str | bytes) -> dict[str, Any] | None:
    """The fields hubscan uses from an ``adapter_config.json`` text (``None``: not a JSON
    object). Values of the wrong type are dropped one by one; the factors' own shapes are
    checked when they are multiplied."""
    if len(text) > _MAX_BYTES:
        return None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    out = {k: obj[k] for k in _KEYS if k in obj}
    for k in ("r", "lora_alpha"):
        if k in out and (not isinstance(out[k], (int, float)) or isinstance(out[k], bool) or out[k] <= 0):
            out.pop(k)
    for k in ("alpha_pattern", "rank_pattern"):
        if k in out and not isinstance(out[k], dict):
            out.pop(k)
    if "base_model_name_or_path" in out and not isinstance(out["base_model_name_or_path"], str):
        out.pop("base_model_name_or_path")
    return out


def read_adapter_config(folder: str | Path) -> dict[str, Any] | None:
    """``folder/adapter_config.json``, parsed (``None`` when absent or unreadable)."""
    p = Path(folder) / ADAPTER_CONFIG
    if not p.is_file():
        return None
    try:
        return parse_adapter_config(p.read_bytes())
    except OSError:
        return None
