"""Which base model a model derives from: the Hub's model tree, the card, adapter configs,
torchvision's quantized weights — read from what a source already has, never guessed.

Most Hub repos are fine-tunes, adapters, merges or quantisations of a few base models; the
links are what lets the lake compare a fine-tune with its base layer by layer. Each origin is
kept as its own ``BaseLink`` (``origin`` says which), so a disagreement stays visible:

- ``hub:baseModels`` — the Hub's model tree (``list_models(expand=["baseModels"])``):
  ``{"relation": "finetune", "models": [{"id": …}]}``, the relation inferred by the Hub
  (adapter, merge, quantized, finetune) or set by the card's ``base_model_relation``;
- ``card:base_model`` — the card's YAML ``base_model`` (a string or a list) and
  ``base_model_relation``; without a relation: ``merge`` for several bases, else
  ``finetune`` (an adapter config or GGUF files in the repo make it ``adapter``/``quantized``);
- ``adapter_config`` — PEFT's ``adapter_config.json`` ``base_model_name_or_path``
  (relation ``adapter``); a value that is no Hub id (a path on its author's disk) is kept with
  ``base_source = "path"``;
- ``torchvision:unquantized`` — a quantized weight enum's ``meta["unquantized"]``
  (``quantized_resnet50:IMAGENET1K_FBGEMM_V1`` → ``resnet50`` at ``IMAGENET1K_V1``).

Pure functions of plain data: no I/O (the sources fetch, this module reads).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..refs import RELATIONS, BaseLink

__all__ = [
    "hub_links",
    "card_links",
    "adapter_links",
    "torchvision_links",
    "merge_links",
    "is_hub_id",
]

#: A Hub repo id: ``name`` or ``owner/name`` (the Hub's own character rules).
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$")


def is_hub_id(value: str) -> bool:
    """Whether ``value`` can be a Hub repo id (not a path such as ``/data/llama`` or ``./base``)."""
    v = value.strip()
    return bool(_HUB_ID.match(v)) and not v.startswith((".", "-")) and ".." not in v


def _bases(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return []
    out = []
    for v in value:
        if isinstance(v, Mapping):  # the tree's {"id": …} entries
            v = v.get("id")
        if isinstance(v, str) and v.strip():
            out.append(v.strip())
    return list(dict.fromkeys(out))


def hub_links(base_models: Any) -> tuple[BaseLink, ...]:
    """Links from the Hub's ``baseModels`` field (``ModelInfo.base_models``).

    Accepts the Hub's object ``{"relation": …, "models": [{"id": …}, …]}`` and a plain list of
    ids (older clients); an unknown relation falls back to ``finetune``/``merge``.
    """
    if not base_models:
        return ()
    if isinstance(base_models, Mapping):
        relation = base_models.get("relation")
        ids = _bases(base_models.get("models") or base_models.get("ids"))
    else:
        relation, ids = None, _bases(base_models)
    if relation not in RELATIONS:
        relation = "merge" if len(ids) > 1 else "finetune"
    return tuple(BaseLink("hf", i, relation, "hub:baseModels") for i in ids if is_hub_id(i))


def card_links(card: Any, *, repo_files: Iterable[str] = ()) -> tuple[BaseLink, ...]:
    """Links from a card's metadata (a dict, or ``huggingface_hub.ModelCardData``).

    ``repo_files`` (the repo's file names, where known) decide a missing relation as the Hub
    does: an ``adapter_config.json`` makes it ``adapter``, a ``.gguf`` file ``quantized``.
    """
    data = _card_dict(card)
    ids = [i for i in _bases(data.get("base_model")) if is_hub_id(i)]
    if not ids:
        return ()
    relation = data.get("base_model_relation")
    if relation not in RELATIONS:
        names = [f.rsplit("/", 1)[-1] for f in repo_files]
        if "adapter_config.json" in names:
            relation = "adapter"
        elif any(n.endswith(".gguf") for n in names):
            relation = "quantized"
        else:
            relation = "merge" if len(ids) > 1 else "finetune"
    return tuple(BaseLink("hf", i, relation, "card:base_model") for i in ids)


def adapter_links(config: Any) -> tuple[BaseLink, ...]:
    """The base a PEFT adapter was trained on (``adapter_config.json``'s
    ``base_model_name_or_path``): a Hub id, or ``base_source="path"`` for a local folder."""
    if not isinstance(config, Mapping):
        return ()
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        return ()
    base = base.strip()
    source = "hf" if is_hub_id(base) else "path"
    revision = config.get("revision") if isinstance(config.get("revision"), str) else None
    return (BaseLink(source, base, "adapter", "adapter_config", revision or None),)


def torchvision_links(weights: Any, revision_of: Any = None) -> tuple[BaseLink, ...]:
    """A quantized torchvision weight enum's float original (``meta["unquantized"]``).

    Args:
        weights: a torchvision ``WeightsEnum`` member.
        revision_of: ``f(weights) -> revision`` for the base's pinned revision (the torchvision
            source's ``<WEIGHTS>-<hash prefix>``); without it the base revision stays NULL.
    """
    meta = getattr(weights, "meta", None) or {}
    base = meta.get("unquantized")
    if base is None:
        return ()
    builder = _builder_of(base)
    if builder is None:
        return ()
    rev = revision_of(base) if revision_of is not None else None
    return (BaseLink("tv", builder, "quantized", "torchvision:unquantized", rev),)


def _builder_of(weights: Any) -> str | None:
    """``ResNet50_Weights.IMAGENET1K_V1`` → ``resnet50`` (torchvision's own registry)."""
    try:
        import torchvision.models as tvm

        enum = type(weights)
        for name in tvm.list_models():
            try:
                if tvm.get_model_weights(name) is enum:
                    return name
            except (ValueError, KeyError):
                continue
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return None
    return None


def merge_links(*groups: Sequence[BaseLink]) -> tuple[BaseLink, ...]:
    """All links of several origins, each (base, origin) once, in the order given."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for g in groups:
        for link in g:
            k = (link.base_source, link.base_repo_id, link.origin)
            if k not in seen:
                seen.add(k)
                out.append(link)
    return tuple(out)


def _card_dict(card: Any) -> dict[str, Any]:
    if card is None:
        return {}
    if isinstance(card, Mapping):
        return dict(card)
    to_dict = getattr(card, "to_dict", None)
    if callable(to_dict):
        try:
            d = to_dict()
            return d if isinstance(d, dict) else {}
        except Exception:  # noqa: BLE001 - a card the library cannot serialise names no base
            return {}
    return {}
