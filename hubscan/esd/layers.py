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
]

Kind = Literal["dense", "conv2d", "conv1d", "embedding"]
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
