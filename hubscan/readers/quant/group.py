"""A checkpoint's tensor list → logical tensors: each quantised weight group becomes ONE
``TensorRef`` named as the module weight, its companions consumed.

Two steps, so that the local reader (all refs at hand) and the streaming reader (refs
arrive one by one, in offset order) share every rule:

1. :func:`plan_groups` — pure: from ``(name, shape, dtype)`` of every tensor (a
   safetensors header) and the model's :class:`~.config.QuantConfig`, which tensors form
   which group. Recognised by name suffixes and dtypes; the config disambiguates.
2. :class:`Assembler` — ``feed(ref)`` returns the refs that are ready: a tensor outside
   every group at once, a group's logical ref when its last part has arrived. A streaming
   reader therefore holds only the *packed* parts of groups not yet complete (companions
   are small; in files whose writer sorted tensors by dtype the packed codes of several
   modules may be held — still smaller than one dequantised float32 tensor per module).
   :meth:`Assembler.close` turns groups that never completed into refs whose ``load()``
   raises ``MalformedCheckpoint`` naming the missing companion, so the analysis writes a
   failure row for that layer and goes on.

Layouts (one module each, with the reference they follow): :mod:`.gptq`, :mod:`.awq`,
:mod:`.bnb`, :mod:`.mlx`, :mod:`.fp8`, :mod:`.ctensors`, :mod:`.mxfp4`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ...errors import CheckpointError, MalformedCheckpoint
from ...refs import QuantInfo, TensorRef
from .awq import dequantize_awq
from .bnb import dequantize_bnb_4bit, dequantize_bnb_int8, parse_quant_state
from .config import QuantConfig, quant_config
from .ctensors import dequantize_pack_quantized, infer_pack_bits
from .fp8 import dequantize_fp8, fp8_granularity
from .gptq import dequantize_gptq
from .mlx import dequantize_mlx
from .mxfp4 import dequantize_mxfp4

__all__ = ["Assembler", "GroupLoader", "GroupPlan", "group_tensors", "plan_groups"]

_F8 = ("F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ")
_BNB_STATE = ("quant_state.bitsandbytes__nf4", "quant_state.bitsandbytes__fp4")


@dataclass(frozen=True)
class GroupPlan:
    """One quantised weight group, before any byte is read.

    Attributes:
        name: the logical tensor name (``model.layers.0.self_attn.q_proj.weight``).
        layout: ``gptq`` | ``awq`` | ``bnb-4bit`` | ``bnb-int8`` | ``mlx`` | ``fp8`` |
            ``ct-pack`` | ``mxfp4`` — which dequantiser reads it.
        parts: ``(role, tensor name)`` of the tensors present.
        missing: roles the layout needs that the checkpoint lacks.
        params: ``(key, value)`` layout parameters (bits, group size, zero-point format …).
    """

    name: str
    layout: str
    parts: tuple[tuple[str, str], ...]
    missing: tuple[str, ...] = ()
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def param(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(n for _, n in self.parts)


Entry = tuple[str, Sequence[int], str]


def _split(name: str) -> tuple[str, str]:
    return (name.rsplit(".", 1)[0], name.rsplit(".", 1)[1]) if "." in name else ("", name)


def _join(prefix: str, leaf: str) -> str:
    return f"{prefix}.{leaf}" if prefix else leaf


def plan_groups(entries: Iterable[Entry], qc: QuantConfig | Mapping[str, Any] | None = None) -> list[GroupPlan]:
    """Which tensors of a checkpoint form quantised weight groups (see module doc).

    Args:
        entries: ``(name, shape, dtype)`` of every tensor (safetensors dtype spelling).
        qc: a :class:`QuantConfig`, or the model's ``config.json`` to read one from.

    Returns:
        The groups, in the order of their first part.
    """
    if not isinstance(qc, QuantConfig):
        qc = quant_config(qc)
    info = {n: (tuple(int(s) for s in shape), dt) for n, shape, dt in entries}
    names = list(info)
    taken: set[str] = set()
    plans: list[GroupPlan] = []

    def add(name: str, layout: str, roles: dict[str, str], required: Sequence[str],
            params: dict[str, Any]) -> None:
        present = {r: n for r, n in roles.items() if n in info and n not in taken}
        missing = tuple(r for r in required if r not in present)
        taken.update(present.values())
        plans.append(GroupPlan(name, layout, tuple(present.items()), missing, tuple(params.items())))

    for n in names:
        if n in taken:
            continue
        prefix, leaf = _split(n)
        shape, dt = info[n]
        sib = functools.partial(_join, prefix)
        # GPTQ / AWQ: X.qweight + X.qzeros + X.scales [+ X.g_idx]
        if leaf == "qweight" and dt in ("I32", "U32"):
            roles = {"qweight": n, "qzeros": sib("qzeros"), "scales": sib("scales"), "g_idx": sib("g_idx")}
            layout = _gptq_or_awq(shape, info.get(sib("scales")), qc)
            params: dict[str, Any] = {"group_size": qc.group_size}
            if layout == "gptq":
                params.update(bits=qc.bits, zero_point=qc.zero_point)
            else:
                params.update(bits=qc.bits or 4, version=qc.awq_version or "gemm")
            add(sib("weight"), layout, roles, ("qweight", "qzeros", "scales"), params)
            continue
        # compressed-tensors pack-quantized: X.weight_packed + X.weight_scale + X.weight_shape
        if leaf == "weight_packed":
            roles = {"packed": n, "scale": sib("weight_scale"), "shape": sib("weight_shape"),
                     "zero_point": sib("weight_zero_point"), "g_idx": sib("weight_g_idx")}
            add(sib("weight"), "ct-pack", roles, ("packed", "scale", "shape"), {"bits": qc.bits})
            continue
        # MXFP4: X_blocks + X_scales (uint8), gpt-oss expert stacks
        if leaf.endswith("_blocks") and dt == "U8" and len(shape) >= 3:
            base = leaf.removesuffix("_blocks")
            roles = {"blocks": n, "scales": sib(base + "_scales")}
            add(sib(base), "mxfp4", roles, ("blocks", "scales"), {})
            continue
        if leaf != "weight":
            continue
        # bitsandbytes 4-bit: X.weight (uint8) + X.weight.quant_state.bitsandbytes__* …
        state = next((s for s in _BNB_STATE if _join(n, s) in info), None)
        if state is not None or (dt == "U8" and _join(n, "absmax") in info):
            roles = {"weight": n, "state": _join(n, state or _BNB_STATE[0]), "absmax": _join(n, "absmax"),
                     "quant_map": _join(n, "quant_map"), "nested_absmax": _join(n, "nested_absmax"),
                     "nested_quant_map": _join(n, "nested_quant_map")}
            add(n, "bnb-4bit", roles, ("weight", "state", "absmax", "quant_map"),
                {"quant_type": "fp4" if state and state.endswith("fp4") else "nf4"})
            continue
        # bitsandbytes LLM.int8: X.weight (int8) + X.SCB
        if dt == "I8" and sib("SCB") in info:
            add(n, "bnb-int8", {"weight": n, "SCB": sib("SCB"), "weight_format": sib("weight_format")},
                ("weight", "SCB"), {})
            continue
        # MLX: X.weight (uint32) + X.scales + X.biases
        if dt == "U32" and (sib("scales") in info or qc.method == "mlx"):
            bits, gs = qc.mlx_params(prefix)
            add(n, "mlx", {"weight": n, "scales": sib("scales"), "biases": sib("biases")},
                ("weight", "scales", "biases"), {"bits": bits, "group_size": gs})
            continue
        # FP8 with scales: X.weight (F8_*) + X.weight_scale_inv | X.weight_scale [+ input scales]
        if dt in _F8 and (sib("weight_scale_inv") in info or sib("weight_scale") in info
                          or qc.method in ("fp8", "compressed-tensors")):
            scale = sib("weight_scale_inv") if sib("weight_scale_inv") in info else sib("weight_scale")
            roles = {"weight": n, "scale": scale, "input_scale": sib("input_scale"),
                     "input_scale_inv": sib("input_scale_inv")}
            add(n, "fp8", roles, ("weight", "scale"), {"block": qc.block})
            continue
    plans.sort(key=lambda p: min(names.index(x) for x in p.part_names) if p.parts else 0)
    return plans


def _gptq_or_awq(qweight: tuple[int, ...], scales: tuple[tuple[int, ...], str] | None, qc: QuantConfig) -> str:
    """GPTQ packs along the input rows (``scales.shape[1] == qweight.shape[1]``), AWQ along the
    output columns (``scales.shape[1] == 8 · qweight.shape[1]``); the config wins when it speaks."""
    if qc.method in ("gptq", "awq"):
        return qc.method
    if (scales is not None and len(qweight) == 2 and len(scales[0]) == 2
            and scales[0][1] == qweight[1] * 8 and scales[0][1] != qweight[1]):
        return "awq"
    return "gptq"


# ------------------------------------------------------------------------------ building refs


def _method(plan: GroupPlan) -> str:
    p = plan.param
    return {"bnb-4bit": f"bnb-{p.get('quant_type', 'nf4')}", "ct-pack": "compressed-tensors",
            "fp8": "fp8-block" if p.get("granularity") == "block" else "fp8"}.get(plan.layout, plan.layout)


class GroupLoader:
    """``TensorRef.load`` of a logical tensor: load its parts, dequantise, check the shape.

    Picklable when the parts' loaders are (local refs hold a path and a byte span; streamed
    refs hold the bytes), so a logical ref travels to a Ray worker like any other.
    """

    def __init__(self, plan: GroupPlan, parts: Mapping[str, TensorRef], shape: tuple[int, ...]) -> None:
        self.plan = plan
        self.parts = dict(parts)
        self.shape = shape

    def __call__(self) -> torch.Tensor:
        plan = self.plan
        if plan.missing:
            raise MalformedCheckpoint(_missing_message(plan))
        loaded = {role: _as_tensor(ref.load()) for role, ref in self.parts.items()}
        out = dequantize_group(plan, loaded)
        if tuple(out.shape) != self.shape:
            raise MalformedCheckpoint(f"{plan.name}: dequantised to {list(out.shape)}, expected {list(self.shape)}")
        return out


def _missing_message(plan: GroupPlan) -> str:
    names = ", ".join(_companion_name(plan, r) for r in plan.missing)
    return f"{plan.name}: {_method(plan)} companion tensor missing: {names}"


def _as_tensor(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)


def _companion_name(plan: GroupPlan, role: str) -> str:
    prefix = _split(plan.name)[0]
    leaf = {"qzeros": "qzeros", "scales": "scales", "qweight": "qweight", "scale": "weight_scale[_inv]",
            "shape": "weight_shape", "packed": "weight_packed", "SCB": "SCB", "biases": "biases",
            "blocks": "_blocks", "state": "weight.quant_state.bitsandbytes__*", "absmax": "weight.absmax",
            "quant_map": "weight.quant_map", "weight": "weight"}.get(role, role)
    if plan.layout == "mxfp4":
        return plan.name + ("_blocks" if role == "blocks" else "_scales")
    return _join(prefix, leaf)


def dequantize_group(plan: GroupPlan, t: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Dispatch one group's loaded parts to its layout's dequantiser (float32 out)."""
    p, name = plan.param, plan.name
    if plan.layout == "gptq":
        return dequantize_gptq(t["qweight"], t["qzeros"], t["scales"], t.get("g_idx"),
                               bits=p["bits"], group_size=p.get("group_size"),
                               zero_point=p.get("zero_point", "v1"), name=name)
    if plan.layout == "awq":
        if p.get("version", "gemm") != "gemm":
            raise CheckpointError(f"{name}: AWQ version {p['version']!r} is not supported (only GEMM)")
        return dequantize_awq(t["qweight"], t["qzeros"], t["scales"], bits=p["bits"],
                              group_size=p["group_size"], name=name)
    if plan.layout == "bnb-4bit":
        state = parse_quant_state(t["state"], name=name)
        return dequantize_bnb_4bit(t["weight"], t["absmax"], t["quant_map"], state,
                                   nested_absmax=t.get("nested_absmax"),
                                   nested_quant_map=t.get("nested_quant_map"), name=name)
    if plan.layout == "bnb-int8":
        return dequantize_bnb_int8(t["weight"], t["SCB"], name=name)
    if plan.layout == "mlx":
        return dequantize_mlx(t["weight"], t["scales"], t["biases"], bits=p["bits"],
                              group_size=p["group_size"], name=name)
    if plan.layout == "fp8":
        w, _ = dequantize_fp8(t["weight"], t["scale"], block=p.get("block"), name=name)
        return w
    if plan.layout == "ct-pack":
        return dequantize_pack_quantized(t["packed"], t["scale"], t["shape"], bits=p["bits"],
                                         zero_point=t.get("zero_point"), g_idx=t.get("g_idx"), name=name)
    if plan.layout == "mxfp4":
        return dequantize_mxfp4(t["blocks"], t["scales"], name=name)
    raise CheckpointError(f"{name}: unknown quantised layout {plan.layout!r}")


def _logical(plan: GroupPlan, parts: Mapping[str, TensorRef]) -> tuple[GroupPlan, tuple[int, ...], int | None, int | None]:
    """Logical shape, bits and group size of a complete group, from shapes (and, for the two
    layouts that store them in tensors, the tiny ``weight_shape`` / ``quant_state`` parts).

    Returns the plan with the parameters it learnt (bits inferred from shapes …)."""
    p = plan.param
    sh = {r: tuple(ref.shape) for r, ref in parts.items()}
    name = plan.name
    if plan.layout in ("gptq", "awq"):
        qw, sc = sh["qweight"], sh["scales"]
        if len(qw) != 2 or len(sc) != 2:
            raise MalformedCheckpoint(f"{name}: qweight {list(qw)} and scales {list(sc)} must be 2-D")
        if plan.layout == "awq":
            bits = p["bits"]
            n_in, out = qw[0], qw[1] * 32 // bits
        else:
            bits = p.get("bits")
            if bits is None:  # g_idx gives the input size; else assume 4 bits, the common case
                n_in_g = sh["g_idx"][0] if sh.get("g_idx") else None
                bits = next((b for b in (4, 8, 2, 3) if n_in_g and qw[0] * 32 == n_in_g * b), 4)
            n_in, out = (sh["g_idx"][0] if sh.get("g_idx") else qw[0] * 32 // bits), qw[1]
        groups = sc[0]
        gs = p.get("group_size")
        if not gs or gs < 0:
            gs = -(-n_in // groups) if groups else None
        params = {**p, "bits": bits, "group_size": gs}
        return _with(plan, params), (out, n_in), bits, gs
    if plan.layout == "bnb-4bit":
        state = parse_quant_state(_as_tensor(parts["state"].load()), name=name)
        return _with(plan, {**p, "quant_type": state.quant_type}), state.shape, 4, state.blocksize
    if plan.layout == "bnb-int8":
        return plan, sh["weight"], 8, None
    if plan.layout == "mlx":
        w = sh["weight"]
        if len(w) != 2:
            raise MalformedCheckpoint(f"{name}: MLX weight {list(w)} must be 2-D")
        return plan, (w[0], w[1] * 32 // p["bits"]), p["bits"], p["group_size"]
    if plan.layout == "fp8":
        w = sh["weight"]
        gran, blk = fp8_granularity(w, sh["scale"], p.get("block"))
        gs = blk[1] if gran == "group" and blk else None
        return _with(plan, {**p, "granularity": gran, "block": blk}), w, 8, gs
    if plan.layout == "ct-pack":
        dims = [int(x) for x in _as_tensor(parts["shape"].load()).reshape(-1).tolist()]
        if len(dims) != 2 or min(dims) <= 0:
            raise MalformedCheckpoint(f"{name}: weight_shape {dims} is not a positive (out, in)")
        bits = p.get("bits") or infer_pack_bits(sh["packed"][-1], dims[1])
        if bits is None:
            raise MalformedCheckpoint(f"{name}: cannot tell the code width of weight_packed "
                                      f"{list(sh['packed'])} for {dims[1]} columns (no num_bits in the config)")
        sc = sh["scale"]
        gs = dims[1] // sc[-1] if len(sc) == 2 and sc[-1] > 1 and dims[1] % sc[-1] == 0 else None
        return _with(plan, {**p, "bits": bits}), tuple(dims), bits, gs
    if plan.layout == "mxfp4":
        b = sh["blocks"]
        shape = (*b[:-2], b[-2] * b[-1] * 2)
        if len(shape) == 3:
            shape = (shape[0], shape[2], shape[1])
        return plan, shape, 4, 32
    raise CheckpointError(f"{name}: unknown quantised layout {plan.layout!r}")


def _with(plan: GroupPlan, params: Mapping[str, Any]) -> GroupPlan:
    return GroupPlan(plan.name, plan.layout, plan.parts, plan.missing, tuple(params.items()))


def _quant_info(plan: GroupPlan, parts: Mapping[str, TensorRef], bits: int | None, gs: int | None,
                source_format: str) -> QuantInfo:
    primary = next(iter(parts.values()), None)
    detail = tuple((k, str(v)) for k, v in plan.params if v is not None and k not in ("bits", "group_size"))
    return QuantInfo(method=_method(plan), bits=bits, group_size=gs, source_format=source_format,
                     parts=plan.part_names, packed_dtype=primary.dtype if primary else None, detail=detail)


def _source_format(file: str) -> str:
    return "safetensors" if file.endswith(".safetensors") or not file else \
        "gguf" if file.endswith(".gguf") else "pytorch"


def build_ref(plan: GroupPlan, parts: Mapping[str, TensorRef]) -> TensorRef:
    """The logical ``TensorRef`` of one group whose present parts have all arrived.

    A group whose shapes or metadata are unusable still yields a ref — its ``load()`` raises
    the ``MalformedCheckpoint`` — so the analysis records a failure row for that layer.
    """
    primary = parts[plan.parts[0][0]] if plan.parts else None
    file = primary.file if primary else ""
    nbytes = sum(int(r.nbytes or 0) for r in parts.values()) or None
    offset = min((r.offset for r in parts.values() if r.offset is not None), default=None)
    try:
        if plan.missing:
            raise MalformedCheckpoint("missing companion")  # shape from the primary, load() explains
        full, shape, bits, gs = _logical(plan, parts)
        info = _quant_info(full, parts, bits, gs, _source_format(file))
        load: Any = GroupLoader(full, parts, tuple(int(s) for s in shape))
    except CheckpointError as exc:
        shape = tuple(primary.shape) if primary else ()
        load = GroupLoader(plan, parts, shape) if plan.missing else _Raise(exc)
        reason = _missing_message(plan) if plan.missing else str(exc)
        info = dataclasses.replace(_quant_info(plan, parts, None, None, _source_format(file)), error=reason)
    return TensorRef(name=plan.name, shape=tuple(int(s) for s in shape), dtype="F32", file=file,
                     load=load, offset=offset, nbytes=nbytes, quant=info)


class _Raise:
    """A ``load()`` that reports why a group could not even be described (picklable)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __call__(self) -> torch.Tensor:
        raise self.exc


# ------------------------------------------------------------------------------ assembling


class Assembler:
    """Turns a stream of stored ``TensorRef``s into logical ones (see module doc).

    Args:
        plans: from :func:`plan_groups` over the same tensors.
    """

    def __init__(self, plans: Iterable[GroupPlan]) -> None:
        self._plans = list(plans)
        self._owner: dict[str, GroupPlan] = {n: p for p in self._plans for n in p.part_names}
        self._held: dict[str, dict[str, TensorRef]] = {}
        self._done: set[str] = set()

    def feed(self, ref: TensorRef) -> list[TensorRef]:
        """The refs ready after ``ref`` arrived (``[ref]`` itself when it is in no group)."""
        plan = self._owner.get(ref.name)
        if plan is None:
            return [ref]
        role = next(r for r, n in plan.parts if n == ref.name)
        held = self._held.setdefault(plan.name, {})
        held[role] = ref
        if len(held) == len(plan.parts):
            del self._held[plan.name]
            self._done.add(plan.name)
            return [build_ref(plan, {r: held[r] for r, _ in plan.parts})]
        return []

    @property
    def held_bytes(self) -> int:
        """Packed bytes of the parts waiting for their group to complete."""
        return sum(int(r.nbytes or 0) for parts in self._held.values() for r in parts.values())

    def close(self) -> list[TensorRef]:
        """Refs for the groups that never completed (their ``load()`` names what is missing)."""
        out = []
        for plan in self._plans:
            if plan.name in self._done:
                continue
            held = self._held.pop(plan.name, {})
            got = {r for r in held}
            missing = tuple(r for r, _ in plan.parts if r not in got) + plan.missing
            partial = GroupPlan(plan.name, plan.layout, tuple((r, n) for r, n in plan.parts if r in got),
                                missing, plan.params)
            out.append(build_ref(partial, held))
        return out


def group_tensors(refs: Iterable[TensorRef], config: QuantConfig | Mapping[str, Any] | None = None,
                  ) -> Iterator[TensorRef]:
    """Every logical tensor of a checkpoint whose stored refs are all at hand (local files).

    Tensors outside any quantised group pass through unchanged, in order; a group's logical
    ref takes the place of its last part.
    """
    refs = list(refs)
    plans = plan_groups(((r.name, r.shape, r.dtype) for r in refs), config)
    if not plans:
        yield from refs
        return
    asm = Assembler(plans)
    for r in refs:
        yield from asm.feed(r)
    yield from asm.close()
