"""From a tensor name and shape to the matrices we analyse (METHOD.md §1).

A checkpoint is a list of named tensors; the spectral analysis wants 2-D matrices. This
module decides, from the name, the shape, the dtype and (when we have one) the owning torch
module or the model's ``config.json``, whether a tensor is a weight matrix, what kind, and
how to cut it into matrices — *before* its bytes are loaded, so that skipped tensors are
never fetched.

The rules are weightwatcher 0.7.7's, so that our layer set equals ``WeightWatcher.analyze()``:

- only ``<module>.weight`` tensors (weightwatcher reads ``module.weight`` of torch modules
  and the ``*.weight`` keys of state dicts); ``in_proj_weight``, ``cls_token`` … are skipped;
- 2-D → one matrix (``dense``, or ``embedding`` by module type / name); GPT-2 ``Conv1D``
  stores ``(in, out)`` — the singular values are the same, we only record ``transposed``;
- 4-D ``(out, in, kh, kw)`` → ``rf = kh·kw`` slices ``W[:, :, i, j]`` whose eigenvalues are
  pooled into ONE spectrum of ``M·rf`` values (weightwatcher ``pool=True``);
- 3-D ``(out, in, k)`` (``nn.Conv1d``) → ``k`` slices, pooled like Conv2d. weightwatcher
  skips 3-D state-dict tensors and mis-handles 3-D module weights; this is our documented
  improvement;
- with a torch module at hand, the module's class decides like weightwatcher's
  ``PyTorchLayer.layer_type`` (Linear/Conv1d/Conv2d/Embedding by ``isinstance`` or by the
  class path containing ``linear``/``conv1d``/``conv2d``/``embedding``; norm and unknown
  classes are skipped);
- skip rules with weightwatcher's defaults (``AnalysisOptions``): ``M·rf < min_evals`` (8),
  ``M·rf > max_evals`` (15000), ``N > max_N`` (50000). Every skip carries a reason.

``N = max(rows, cols)``, ``M = min(rows, cols)`` of one slice, ``Q = N/M``,
``num_evals = M·rf``.

Deliberate difference: weightwatcher swaps its Conv2d ``N``/``M`` once per slice when
``out < in`` (so with an even ``rf`` it reports ``N < M``), and for tiny channel counts
(``out + in < kh + kw``) it reports ``N = out, M = in`` unordered. We always report
``N ≥ M``; eigenvalues are the same, but ``Q``, the skip rule and the MP fit of such
layers can differ from weightwatcher's (see docs/metrics.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..dtypes import dtype_name, is_float_dtype
from ..errors import MatrixError
from ..options import AnalysisOptions

__all__ = [
    "Kind",
    "ModuleKind",
    "LayerMatrix",
    "Skip",
    "classify",
    "slices",
    "module_kind",
    "longname_of",
    "dtype_string",
    "ExpertStack",
    "expert_stack",
    "expert_index",
    "expert_slice",
    "LoraRole",
    "lora_role",
    "lora_scale",
    "lora_matrix",
    "is_tie_pair",
]

Kind = Literal["dense", "conv2d", "conv1d", "embedding", "lora"]
#: weightwatcher's layer type of a torch module (``PyTorchLayer.layer_type``).
ModuleKind = Literal["dense", "conv1d", "conv2d", "embedding", "norm", "unknown"]

# GPT-2-family ``transformers.pytorch_utils.Conv1D`` stores its weight (in, out).
_GPT2_CONV1D_NAMES = frozenset({"c_attn", "c_proj", "c_fc", "q_attn"})
_GPT2_MODEL_TYPES = frozenset(
    {"gpt2", "openai-gpt", "imagegpt", "decision_transformer", "clvp", "convbert"}
)
# Output heads shaped like the vocab table (often tied to it) are dense layers.
_HEAD_NAMES = frozenset({"lm_head", "decoder", "classifier", "head", "output", "proj_out"})
_NOT_EMBEDDING = frozenset({"embed_out"}) | _HEAD_NAMES  # GPT-NeoX calls its lm head embed_out
# Module names that hold embedding tables in common checkpoints (HF, timm, fairseq …).
_EMBEDDING_NAME = re.compile(
    r"(embed|embedding|embeddings|^wte$|^wpe$|^shared$|^tok_embeddings$|^word_emb$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class LayerMatrix:
    """A tensor that is analysed: what it is and how to cut it into matrices.

    Attributes:
        tensor: the full tensor name (``encoder.layer.0.attention.self.query.weight``).
        longname: the module path, ``tensor`` without ``.weight`` (weightwatcher's longname).
        kind: ``dense`` | ``conv2d`` | ``conv1d`` | ``embedding``.
        shape: the tensor shape as stored.
        rows, cols: shape of one slice as stored (``(out, in)`` for torch layers,
            ``(in, out)`` for GPT-2 ``Conv1D``).
        N, M: ``max(rows, cols)``, ``min(rows, cols)``.
        rf: number of slices pooled into one spectrum (``kh·kw`` for Conv2d, ``k`` for
            Conv1d, 1 otherwise).
        Q: aspect ratio ``N / M``.
        num_evals: eigenvalues of the pooled spectrum, ``M·rf``.
        transposed: the slice is stored ``(in, out)`` (GPT-2 ``Conv1D``). Singular values do
            not depend on it; it is recorded so that readers of the matrix know.
    """

    tensor: str
    longname: str
    kind: Kind
    shape: tuple[int, ...]
    rows: int
    cols: int
    N: int
    M: int
    rf: int
    Q: float
    num_evals: int
    transposed: bool = False


@dataclass(frozen=True)
class Skip:
    """A tensor that is not analysed, and why (the ``skip_reason`` column).

    ``kind`` is the layer kind when the tensor is a weight matrix skipped by a size rule,
    else ``"skipped"``; ``lm`` keeps its dimensions for the row when they are known.
    """

    tensor: str
    longname: str
    reason: str
    kind: str = "skipped"
    lm: LayerMatrix | None = None


def longname_of(name: str) -> str:
    """The module path of a tensor: the name without its last component (``.weight``)."""
    if name == "weight":
        return ""
    return name.rsplit(".", 1)[0] if "." in name else name


def dtype_string(dtype: Any) -> str:
    """The safetensors spelling of a dtype given as a string, torch dtype or numpy dtype."""
    if isinstance(dtype, str):
        return dtype
    if isinstance(dtype, torch.dtype):
        return dtype_name(dtype)
    try:  # numpy dtype
        return dtype_name(torch.from_numpy(__import__("numpy").zeros(0, dtype=dtype)).dtype)
    except Exception:  # pragma: no cover - exotic numpy dtypes
        return str(dtype).upper()


def module_kind(module: torch.nn.Module) -> ModuleKind:
    """weightwatcher 0.7.7 ``PyTorchLayer.layer_type``: the class decides, by type or name.

    The class path is matched as a lower-case string, exactly as weightwatcher does, so
    e.g. ``transformers.pytorch_utils.Conv1D`` is ``conv1d`` and a ``…Linear8bitLt`` is
    ``dense``.
    """
    typestr = str(type(module)).lower()
    nn = torch.nn
    if isinstance(module, nn.Linear) or "linear" in typestr:
        return "dense"
    if isinstance(module, nn.Conv1d) or "conv1d" in typestr:
        return "conv1d"
    if isinstance(module, nn.Conv2d) or "conv2d" in typestr:
        return "conv2d"
    if isinstance(module, nn.Embedding) or "embedding" in typestr:
        return "embedding"
    if "norm" in typestr:
        return "norm"
    return "unknown"


def _is_embedding_name(longname: str, shape: tuple[int, ...], config: Mapping | None) -> bool:
    """An embedding table, from a state dict (no module type): by name, else by config."""
    last = longname.rsplit(".", 1)[-1]
    if last in _NOT_EMBEDDING:
        return False
    if _EMBEDDING_NAME.search(last):
        return True
    # A table whose name says nothing (e.g. T5 ``shared`` variants): rows == vocab_size.
    vocab = config.get("vocab_size") if config else None
    return isinstance(vocab, int) and shape[0] == vocab and last not in _HEAD_NAMES


def _is_gpt2_conv1d(longname: str, config: Mapping | None) -> bool:
    last = longname.rsplit(".", 1)[-1]
    if last not in _GPT2_CONV1D_NAMES:
        return False
    if config is None:
        return True  # c_attn/c_fc/c_proj is GPT-2's own naming
    return str(config.get("model_type", "")).lower() in _GPT2_MODEL_TYPES


def classify(
    name: str,
    shape: tuple[int, ...] | list[int],
    dtype: Any,
    *,
    options: AnalysisOptions,
    config: Mapping[str, Any] | None = None,
    module: ModuleKind | None = None,
) -> LayerMatrix | Skip:
    """Decide whether tensor ``name`` is analysed, and as what (METHOD.md §1).

    Args:
        name: full tensor name.
        shape: tensor shape as stored.
        dtype: safetensors dtype string (``F32``, ``BF16``, ``I64`` …) or a torch dtype.
        options: skip-rule thresholds (``min_evals``, ``max_evals``, ``max_N``) and the
            optional ``layers_include`` regex.
        config: the model's ``config.json`` (``model_type``, ``vocab_size``), if any.
        module: the weightwatcher layer type of the owning torch module, when the tensors
            come from an in-memory ``nn.Module`` (see ``module_kind``); ``None`` for files
            and state dicts, where names and shapes decide.

    Returns:
        A ``LayerMatrix`` to analyse or a ``Skip`` with its reason.

    Raises:
        MatrixError: a weight tensor with a zero-sized dimension (an empty matrix is an
            error of the file, not a skip).
    """
    shape = tuple(int(s) for s in shape)
    dt = dtype_string(dtype)
    longname = longname_of(name)

    def skip(reason: str, kind: str = "skipped", lm: LayerMatrix | None = None) -> Skip:
        return Skip(tensor=name, longname=longname, reason=reason, kind=kind, lm=lm)

    if options.layers_include and not re.search(options.layers_include, name):
        return skip(f"not matched by layers_include {options.layers_include!r}")
    if len(shape) == 0:
        return skip("scalar")
    if len(shape) == 1:
        return skip("1-D tensor (bias / norm scale)")
    if not is_float_dtype(dt):
        return skip(f"{dt} tensor (integer, boolean or quantized dtypes are not analysed)")
    if not (name == "weight" or name.endswith(".weight")):
        return skip("not a module weight (only '<module>.weight' tensors are analysed)")
    if module in ("norm", "unknown"):
        return skip(f"owning module type is {module} (weightwatcher analyses Linear/Conv/Embedding only)")
    if len(shape) > 4:
        return skip(f"{len(shape)}-D tensor (Conv3d and higher are not analysed)")
    if math.prod(shape) == 0:
        raise MatrixError(f"{name}: empty tensor of shape {shape}")

    transposed = False
    if len(shape) == 2:
        rows, cols, rf = shape[0], shape[1], 1
        if module == "embedding" or (module is None and _is_embedding_name(longname, shape, config)):
            kind: Kind = "embedding"
        else:
            kind = "dense"
            transposed = module == "conv1d" or (module is None and _is_gpt2_conv1d(longname, config))
    elif len(shape) == 3:
        if module not in (None, "conv1d"):
            return skip(f"3-D weight of a {module} module")
        kind, (rows, cols, rf) = "conv1d", shape
    else:
        if module not in (None, "conv2d"):
            return skip(f"4-D weight of a {module} module")
        kind = "conv2d"
        rows, cols, rf = shape[0], shape[1], shape[2] * shape[3]

    N, M = max(rows, cols), min(rows, cols)
    lm = LayerMatrix(
        tensor=name, longname=longname, kind=kind, shape=shape, rows=rows, cols=cols,
        N=N, M=M, rf=rf, Q=N / M, num_evals=M * rf, transposed=transposed,
    )
    # weightwatcher ``layer_supported`` with pool=True, in its order.
    if lm.num_evals < options.min_evals:
        return skip(f"num_evals {lm.num_evals} < min_evals {options.min_evals}", kind, lm)
    if lm.num_evals > options.max_evals:
        return skip(f"num_evals {lm.num_evals} > max_evals {options.max_evals}", kind, lm)
    if lm.N > options.max_N:
        return skip(f"N {lm.N} > max_N {options.max_N}", kind, lm)
    return lm


def slices(tensor: torch.Tensor, lm: LayerMatrix) -> torch.Tensor:
    """The matrices of a layer as one batch, shape ``(rf, rows, cols)`` (a view when possible).

    Conv2d ``(out, in, kh, kw)`` → slice ``i·kw + j`` is ``W[:, :, i, j]`` (weightwatcher's
    loop order); Conv1d ``(out, in, k)`` → slice ``k`` is ``W[:, :, k]``; 2-D → ``W[None]``.
    """
    if tuple(tensor.shape) != lm.shape:
        raise MatrixError(f"{lm.tensor}: tensor shape {tuple(tensor.shape)} != classified shape {lm.shape}")
    if tensor.dim() == 2:
        return tensor.unsqueeze(0)
    if tensor.dim() == 3:
        return tensor.permute(2, 0, 1)
    return tensor.reshape(lm.rows, lm.cols, lm.rf).permute(2, 0, 1)


# --------------------------------------------------------------------------------------------
# MoE expert stacks, LoRA pairs, tied weights: what a tensor IS beyond its shape (issue 13)
# --------------------------------------------------------------------------------------------

#: Stacked expert tensors ``(E, …, …)`` by name: transformers ≥ 4.57 / gpt-oss
#: (``mlp.experts.gate_up_proj``, ``down_proj``), GGUF's ``ffn_*_exps`` mapped to
#: ``mlp.experts.gate_proj`` …, DBRX/Grok-style ``w1``/``w2``/``w3``.
_EXPERT_STACK = re.compile(r"(^|\.)experts\.(?P<proj>gate_up_proj|gate_proj|up_proj|down_proj|w1|w2|w3)(\.weight)?$")
_EXPERT_INDEX = re.compile(r"\.experts\.(\d+)\.")
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts", "num_experts_per_layer")
_FF_KEYS = ("moe_intermediate_size", "intermediate_size", "ffn_hidden_size")
_LORA = re.compile(r"^(?P<module>.+?)\.lora_(?P<ab>A|B|embedding_A|embedding_B)(\.(?P<adapter>[^.]+))?(\.weight)?$")
_DORA = re.compile(r"\.lora_magnitude_vector(\.[^.]+)?(\.weight)?$")
_PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class ExpertStack:
    """A 3-D tensor that holds ``n_experts`` matrices along dim 0 — one row per expert,
    never a pooled Conv1d.

    Attributes:
        tensor: the stored name.
        n_experts: ``shape[0]``.
        proj: the projection name (``gate_up_proj``, ``down_proj``, ``w1`` …).
        split: ``None``; ``"halves"`` (a fused ``gate_up_proj`` whose fused axis holds
            ``[gate; up]``, transformers' Mixtral/Qwen-MoE layout) or ``"interleave"``
            (gpt-oss: gate = ``[..., ::2]``, up = ``[..., 1::2]``).
        split_axis: the fused axis (1 or 2) when ``split`` is set.
    """

    tensor: str
    n_experts: int
    proj: str
    split: str | None = None
    split_axis: int | None = None

    def parts(self) -> tuple[str | None, ...]:
        return ("gate", "up") if self.split else (None,)

    def longname(self, expert: int, part: str | None) -> str:
        """Per-expert module path, as per-expert checkpoints name it
        (``….experts.3.gate_proj``), so stacked and unstacked rows line up."""
        base = longname_of(self.tensor) if self.tensor.endswith(".weight") else self.tensor
        prefix = base.rsplit(".", 1)[0]  # ….experts
        proj = f"{part}_proj" if part else self.proj
        return f"{prefix}.{expert}.{proj}"

    def row_name(self, expert: int, part: str | None) -> str:
        """The ``tensor`` column of one expert's row: ``<stack>[e]`` (``.gate``/``.up``)."""
        return f"{self.tensor}[{expert}]" + (f".{part}" if part else "")


def _config_int(config: Mapping[str, Any] | None, keys: tuple[str, ...]) -> int | None:
    if not config:
        return None
    for cfg in (config, config.get("text_config") if isinstance(config.get("text_config"), Mapping) else None):
        if not cfg:
            continue
        for k in keys:
            v = cfg.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def expert_stack(name: str, shape: tuple[int, ...], config: Mapping[str, Any] | None = None) -> ExpertStack | None:
    """The expert layout of a stacked 3-D expert tensor, or ``None`` (recognised by name; a
    config's expert count, when given, must equal ``shape[0]``).

    A fused ``gate_up_proj`` is split into gate and up when one axis is twice the config's
    (MoE) intermediate size: interleaved for ``model_type = gpt_oss``, halves otherwise.
    """
    m = _EXPERT_STACK.search(name)
    if m is None or len(shape) != 3:
        return None
    n = _config_int(config, _EXPERT_KEYS)
    if n is not None and n != shape[0]:
        return None
    proj = m.group("proj")
    split = axis = None
    if proj == "gate_up_proj":
        ff = _config_int(config, _FF_KEYS)
        cand = [a for a in (1, 2) if ff is not None and shape[a] == 2 * ff]
        if not cand and ff is None:
            cand = [a for a in (2, 1) if shape[a] % 2 == 0 and shape[a] > shape[3 - a]]
        if cand:
            axis = cand[-1] if len(cand) > 1 else cand[0]
            gpt_oss = str((config or {}).get("model_type", "")).lower() == "gpt_oss"
            split = "interleave" if gpt_oss else "halves"
    return ExpertStack(name, shape[0], proj, split, axis)


def expert_slice(tensor: torch.Tensor, stack: ExpertStack, expert: int, part: str | None) -> torch.Tensor:
    """Expert ``expert``'s matrix (its ``gate``/``up`` half of a fused stack), a view."""
    w = tensor[expert]
    if not part or not stack.split:
        return w
    ax = (stack.split_axis or 2) - 1
    size = w.shape[ax]
    if stack.split == "interleave":
        idx = slice(0, None, 2) if part == "gate" else slice(1, None, 2)
    else:
        idx = slice(0, size // 2) if part == "gate" else slice(size // 2, None)
    return w[idx] if ax == 0 else w[:, idx]


def expert_index(name: str) -> int | None:
    """The expert of a per-expert tensor (``….experts.3.w1.weight`` → 3), else ``None``."""
    m = _EXPERT_INDEX.search(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class LoraRole:
    """One tensor of a PEFT LoRA adapter: the adapted module and which factor it is.

    ``module`` is the base model's module path (PEFT's ``base_model.model.`` prefix
    removed), so an adapter row joins the base model's row of that module by ``longname``.
    ``factor`` is ``A`` (``(r, in)``), ``B`` (``(out, r)``) or ``magnitude`` (DoRA, skipped).
    """

    module: str
    factor: str


def lora_role(name: str) -> LoraRole | None:
    """Whether a tensor is a LoRA factor / DoRA magnitude, and of which module."""
    if _DORA.search(name):
        module = _DORA.sub("", name)
        return LoraRole(module.removeprefix(_PEFT_PREFIX), "magnitude")
    m = _LORA.match(name)
    if m is None:
        return None
    factor = "A" if m.group("ab").endswith("A") else "B"
    return LoraRole(m.group("module").removeprefix(_PEFT_PREFIX), factor)


def lora_scale(adapter_config: Mapping[str, Any] | None, rank: int, module: str = "") -> float:
    """PEFT's ΔW scaling: ``lora_alpha / r``, or ``lora_alpha / √r`` with ``use_rslora``
    (``alpha_pattern``/``rank_pattern`` entries override per module, as in PEFT)."""
    cfg = adapter_config or {}
    alpha = cfg.get("lora_alpha", rank)
    for key, val in (cfg.get("alpha_pattern") or {}).items():
        if module.endswith(key) or re.search(str(key), module):
            alpha = val
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        alpha = rank
    return float(alpha) / (math.sqrt(rank) if cfg.get("use_rslora") else rank)


def lora_matrix(module: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...], *,
                options: AnalysisOptions) -> LayerMatrix | Skip:
    """The layer of one adapted module's ΔW = s·B·A: ``kind = lora``, ``N × M`` of the
    product, ``num_evals = r`` (ΔW has rank ≤ r: only its r non-zero eigenvalues form the
    ESD, as weightwatcher's ``peft=True`` truncated SVD). Skip rules as for any matrix."""
    name = f"{module}.weight"
    if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[0] != b_shape[1]:
        raise MatrixError(f"{name}: lora_A {list(a_shape)} and lora_B {list(b_shape)} do not multiply")
    r, n_in = a_shape
    out = b_shape[0]
    N, M = max(out, n_in), min(out, n_in)
    lm = LayerMatrix(tensor=name, longname=module, kind="lora", shape=(out, n_in), rows=out, cols=n_in,
                     N=N, M=M, rf=1, Q=N / M, num_evals=min(r, M))
    if options.layers_include and not re.search(options.layers_include, name):
        return Skip(tensor=name, longname=module, reason=f"not matched by layers_include {options.layers_include!r}")
    if lm.num_evals < options.min_evals:
        return Skip(name, module, f"LoRA rank {r} < min_evals {options.min_evals}", "lora", lm)
    if lm.N > options.max_N:
        return Skip(name, module, f"N {lm.N} > max_N {options.max_N}", "lora", lm)
    return lm


#: Names of output heads and input tables that ``tie_word_embeddings`` ties.
_TIE_HEADS = frozenset({"lm_head.weight", "embed_out.weight", "output.weight"})


def is_tie_pair(head: str, table: str, config: Mapping[str, Any] | None) -> bool:
    """Whether ``head`` (an output projection) may be tied to the input table ``table`` by
    the model's ``tie_word_embeddings`` (transformers' default is ``True``)."""
    tie = True if not config else bool(config.get("tie_word_embeddings", True))
    return tie and head in _TIE_HEADS and _EMBEDDING_NAME.search(longname_of(table).rsplit(".", 1)[-1]) is not None
