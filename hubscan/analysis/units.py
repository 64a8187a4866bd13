"""What one checkpoint's tensors become as rows: plain tensors, MoE experts, LoRA ΔW, ties.

A stored tensor is usually one row. Three kinds are not (issue 13), and this module turns
the tensor stream into the stream of *units* the analysis solves, one row each:

- an **expert stack** (``mlp.experts.gate_up_proj`` of shape ``(E, …, …)``, its GGUF
  ``ffn_*_exps`` twin) is E matrices — one row per expert with an ``expert`` column, a fused
  ``gate_up_proj`` split into ``gate`` and ``up`` where the layout says so — never a pooled
  Conv1d; the stack is loaded once for all its experts and released after the last;
- a **LoRA pair** (``X.lora_A.weight`` ``(r, in)`` + ``X.lora_B.weight`` ``(out, r)``) is one
  row for ``ΔW = s·B·A`` (``kind = lora``), solved from the factors; a DoRA magnitude
  vector is skipped with its reason;
- a **tied** tensor (the same storage as an earlier one, or ``lm_head`` equal to the input
  embedding under ``tie_word_embeddings``) is analysed once: the second row says ``tied_to``.

The rules for *what a tensor is* live with the layer rules (``hubscan.esd.layers``); this
module only walks the stream with them, holding at most one expert stack or one pending
LoRA factor per module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..esd.layers import (
    ExpertStack,
    expert_index,
    expert_slice,
    expert_stack,
    is_tie_pair,
    lora_role,
    lora_scale,
)
from ..refs import TensorRef

__all__ = ["Unit", "units", "TieTracker", "digest"]


@dataclass
class Unit:
    """One row to produce.

    Attributes:
        ref: the tensor (for a LoRA unit: its ``lora_B``).
        name: the row's ``tensor`` column.
        longname: the row's ``longname`` (module path).
        extra: further columns (``expert``, ``lora_rank``, ``lora_scale``, ``base_model``,
            ``tied_to``).
        lora_a: the ``lora_A`` ref of a LoRA unit.
        skip: a reason to skip without loading (DoRA magnitude).
        error: a reason to fail the row (a LoRA factor without its partner).
        classify_name: the name the layer rules see (``….experts.3.gate_proj.weight`` for a
            stack slice, whose row name ``stack[3].gate`` is no module weight).
    """

    ref: TensorRef
    name: str
    longname: str
    extra: dict[str, Any] = field(default_factory=dict)
    lora_a: TensorRef | None = None
    skip: str | None = None
    error: str | None = None
    classify_name: str | None = None
    shape: tuple[int, ...] | None = None


class _StackLoad:
    """``load()`` of one expert's matrix: the stack is loaded by the first expert and dropped
    after the last, so memory stays at one stack (the stored tensor) however many experts."""

    def __init__(self, ref: TensorRef, stack: ExpertStack, expert: int, part: str | None,
                 cache: dict[str, Any], last: bool) -> None:
        self.ref, self.stack, self.expert, self.part = ref, stack, expert, part
        self.cache, self.last = cache, last

    def __call__(self) -> torch.Tensor:
        t = self.cache.get(self.ref.name)
        if t is None:
            self.cache.clear()
            t = self.ref.load()
            if not isinstance(t, torch.Tensor):
                t = torch.as_tensor(t)
            self.cache[self.ref.name] = t
        out = expert_slice(t, self.stack, self.expert, self.part)
        if self.last:
            self.cache.clear()
        return out


def _expert_units(ref: TensorRef, stack: ExpertStack) -> Iterator[Unit]:
    cache: dict[str, Any] = {}
    parts = stack.parts()
    total = stack.n_experts * len(parts)
    k = 0
    for e in range(stack.n_experts):
        for part in parts:
            k += 1
            shape = tuple(ref.shape[1:])
            if part and stack.split_axis:
                ax = stack.split_axis - 1
                shape = tuple(s // 2 if i == ax else s for i, s in enumerate(shape))
            view = TensorRef(name=stack.row_name(e, part), shape=shape, dtype=ref.dtype, file=ref.file,
                             load=_StackLoad(ref, stack, e, part, cache, k == total), quant=ref.quant)
            longname = stack.longname(e, part)
            yield Unit(ref=view, name=view.name, longname=longname, extra={"expert": e},
                       classify_name=f"{longname}.weight", shape=shape)


def units(tensors: Iterable[TensorRef], *, config: Mapping[str, Any] | None = None,
          adapter_config: Mapping[str, Any] | None = None) -> Iterator[Unit]:
    """The rows a checkpoint's tensors make, in order (see module doc)."""
    from ..esd.layers import longname_of

    pending: dict[str, tuple[str, TensorRef]] = {}   # LoRA module → (factor, ref) waiting for its partner
    by_storage: dict[tuple[Any, ...], str] = {}
    base = (adapter_config or {}).get("base_model_name_or_path") if adapter_config else None
    for ref in tensors:
        role = lora_role(ref.name)
        if role is not None:
            if role.factor == "magnitude":
                yield Unit(ref, ref.name, role.module, skip="DoRA magnitude vector (a per-column norm, "
                           "not a matrix): skipped; the ΔW row of its module is analysed")
                continue
            other = pending.pop(role.module, None)
            if other is None or other[0] == role.factor:
                if other is not None:
                    yield Unit(other[1], other[1].name, role.module, error=f"{other[1].name}: second lora_"
                               f"{role.factor} for module {role.module} without its partner")
                pending[role.module] = (role.factor, ref)
                continue
            a, b = (ref, other[1]) if role.factor == "A" else (other[1], ref)
            r = int(min(a.shape)) if len(a.shape) == 2 else 0
            if len(a.shape) == 2 and len(b.shape) == 2 and a.shape[0] != b.shape[1] and a.shape[1] == b.shape[0]:
                a, b = b, a  # lora_embedding_A/B: (r, vocab) · (dim, r) stored the other way round
            extra = {"lora_rank": r, "lora_scale": lora_scale(adapter_config, r, role.module) if r else None,
                     "base_model": base}
            yield Unit(b, f"{role.module}.weight", role.module, extra=extra, lora_a=a)
            continue
        stack = expert_stack(ref.name, tuple(ref.shape), config)
        if stack is not None:
            yield from _expert_units(ref, stack)
            continue
        unit = Unit(ref, ref.name, longname_of(ref.name))
        e = expert_index(ref.name)
        if e is not None:
            unit.extra["expert"] = e
        if ref.offset is not None and ref.nbytes:
            key = (ref.file, ref.offset, ref.nbytes, ref.dtype, tuple(ref.shape))
            if key in by_storage:
                unit.extra["tied_to"] = by_storage[key]
            else:
                by_storage[key] = ref.name
        yield unit
    for module, (factor, ref) in pending.items():
        missing = "lora_B" if factor == "A" else "lora_A"
        yield Unit(ref, ref.name, module, error=f"{ref.name}: LoRA factor without its {missing} "
                                                f"(module {module})")


def digest(t: torch.Tensor) -> str:
    """A content hash of a tensor's bytes (to tell a tied head from an equal-shaped one)."""
    raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.blake2b(memoryview(raw), digest_size=16).hexdigest()


class TieTracker:
    """Remembers output heads and input embedding tables analysed so far (by content hash):
    under ``tie_word_embeddings`` the second of an equal pair — whichever comes second in
    the file — becomes a ``tied_to`` row of the first (safetensors files sort ``lm_head``
    before ``model.embed_tokens``; holding the head back would cost a vocab-sized tensor)."""

    def __init__(self, config: Mapping[str, Any] | None) -> None:
        self.config = config
        self.seen: list[tuple[str, bool, tuple[int, ...], str, str]] = []  # name, is_head, shape, dtype, digest

    def _role(self, name: str) -> bool | None:
        if is_tie_pair(name, "embed_tokens.weight", self.config):
            return True
        if name.endswith(".weight") and is_tie_pair("lm_head.weight", name, self.config):
            return False
        return None

    def wants(self, ref: TensorRef) -> bool:
        """Whether ``ref`` could be one side of a tie (so its bytes are hashed)."""
        return len(ref.shape) == 2 and self._role(ref.name) is not None

    def tied_to(self, ref: TensorRef, tensor: torch.Tensor) -> str | None:
        """The earlier tensor ``ref`` equals (the other side of a tie), else ``None`` — and
        ``ref`` is remembered for the tensors after it."""
        role = self._role(ref.name)
        if role is None or len(ref.shape) != 2:
            return None
        d = digest(tensor)
        for name, is_head, shape, dtype, dg in self.seen:
            if is_head != role and shape == tuple(ref.shape) and dtype == ref.dtype and dg == d:
                return name
        self.seen.append((ref.name, role, tuple(ref.shape), ref.dtype, d))
        return None
