"""Checkpoints made to order: for tests, the offline demo and benchmarks.

Three families, all deterministic in their ``seed``:

**Matrices** (pure numpy, no I/O) with known spectral character — the inputs the science
tests reason about:
:func:`gaussian_matrix` (Marchenko–Pastur bulk, no spikes), :func:`spiked_matrix` (MP bulk
plus ``rank`` outliers above the BBP threshold), :func:`power_law_spectrum_matrix` (an MP
bulk continued by a planted power-law tail of a chosen α), :func:`pareto_matrix` and
:func:`student_t_matrix` (heavy-tailed entries → power-law ESD tail), :func:`low_rank_matrix`
(rank collapse), and the degenerate ones a scanner must survive: :func:`nan_matrix`,
:func:`inf_matrix`, :func:`all_zero_matrix`, :func:`empty_matrix`, :func:`row_matrix` (1×N).

**Model folders** with realistic tensor names and a ``config.json``:
:func:`make_demo_model` (``mlp``, ``cnn``, ``gpt2``, ``bert-tiny``) and
:func:`make_sharded_model` (``model-0000k-of-0000n.safetensors`` + index). Tensor values
depend only on ``(seed, tensor name)``, so a sharded and an unsharded copy of a model hold
identical tensors, and any size — up to multi-GB benchmark models — is written one tensor
at a time (:func:`write_safetensors_streaming`). ``gpt2`` and ``bert-tiny`` load into
``transformers`` (``GPT2LMHeadModel`` / ``BertModel``); ``mlp`` and ``cnn`` into
:func:`build_demo_module`'s modules (:func:`load_demo_module` does either), which is what
a weightwatcher parity test needs. Weights are Gaussian or, with ``heavy_tailed``, made by a
:class:`HeavyTail` (by default the planted power-law spectrum, so a heavy-tailed model's
layers fit α in [2, 4] with phase ``heavy-tailed``; ``hubscan.testing.zoo`` builds the demo
models from these).

**Hostile files**, one per way a checkpoint can be broken or malicious (truncated,
header too long, invalid JSON, offsets out of range / overlapping, unknown dtype, shape vs
size mismatch, a pickle whose unpickling would create a marker file, a TorchScript
archive). Each returns its path; readers must refuse them with the right error class.

Sizes are small by default, so tests stay fast.
"""

from __future__ import annotations

import builtins
import json
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

__all__ = [
    # matrices
    "gaussian_matrix",
    "pareto_matrix",
    "student_t_matrix",
    "power_law_spectrum_matrix",
    "spiked_matrix",
    "low_rank_matrix",
    "nan_matrix",
    "inf_matrix",
    "all_zero_matrix",
    "empty_matrix",
    "row_matrix",
    # writing
    "TensorSpec",
    "write_safetensors",
    "write_safetensors_streaming",
    "safetensors_bytes",
    "write_raw_safetensors",
    # models
    "DemoKind",
    "DEMO_KINDS",
    "HeavyTail",
    "DEFAULT_HEAVY_TAIL",
    "demo_layout",
    "demo_state_dict",
    "make_demo_model",
    "make_sharded_model",
    "make_degenerate_model",
    "build_demo_module",
    "load_demo_module",
    "DemoMLP",
    "DemoCNN",
    # hostile
    "truncated_safetensors",
    "header_too_long",
    "invalid_json_header",
    "offsets_out_of_range",
    "overlapping_offsets",
    "unknown_dtype",
    "shape_size_mismatch",
    "negative_shape",
    "bad_metadata",
    "malicious_pickle",
    "torchscript_file",
]

PathLike = str | os.PathLike[str]
ArrayLike = np.ndarray | torch.Tensor
FloatDtype = type[np.floating] | np.dtype


# ---------------------------------------------------------------------------------------
# Matrices
# ---------------------------------------------------------------------------------------

def _rng(seed: int | Iterable[int]) -> np.random.Generator:
    return np.random.default_rng(seed)


def gaussian_matrix(rows: int, cols: int, *, sigma: float = 1.0, seed: int = 0,
                    dtype: FloatDtype = np.float32) -> np.ndarray:
    """i.i.d. N(0, σ²) entries: the null model.

    Its ESD (eigenvalues of ``WᵀW/N``, ``N = max(rows, cols)``, ``Q = N/M``) follows the
    Marchenko–Pastur law with bulk edge ``λ+ = σ²(1 + 1/√Q)²`` and no outliers; the power-law
    fit gives a large alpha.
    """
    return (_rng(seed).standard_normal((rows, cols)) * sigma).astype(dtype)


def pareto_matrix(rows: int, cols: int, alpha_entries: float, *, scale: float = 1.0,
                  seed: int = 0, dtype: FloatDtype = np.float32) -> np.ndarray:
    """Symmetric Pareto entries: ``±scale·X`` with ``P(X > x) = x^-μ`` for ``x ≥ 1``, ``μ = alpha_entries``.

    Heavy-tailed random matrix theory (Martin & Mahoney, JMLR 2021): the ESD then has a
    power-law tail whose exponent grows with μ — roughly ``α ≈ 1 + μ/2`` for ``μ < 2``
    (Lévy regime), with strong finite-size effects for ``2 ≤ μ < 4``; at ``μ ≥ 4`` the
    variance is finite enough that the ESD looks Marchenko–Pastur again.
    """
    if alpha_entries <= 0:
        raise ValueError("alpha_entries must be > 0")
    return (scale * _pareto_entries(_rng(seed), (rows, cols), alpha_entries)).astype(dtype)


def _pareto_entries(rng: np.random.Generator, shape: tuple[int, ...], mu: float) -> np.ndarray:
    """``±X``, ``X = (1 − U)^(−1/μ)``: the inverse CDF of Pareto(x_min = 1, μ), random sign."""
    x = (1.0 - rng.random(shape)) ** (-1.0 / mu)
    return np.where(rng.random(shape) < 0.5, -x, x)


def student_t_matrix(rows: int, cols: int, df: float, *, scale: float = 1.0, seed: int = 0,
                     dtype: FloatDtype = np.float32) -> np.ndarray:
    """Student-t entries with ``df`` degrees of freedom (tail exponent ``df``): heavy-tailed
    like :func:`pareto_matrix` but with a smooth, symmetric density around 0."""
    return (scale * _rng(seed).standard_t(df, size=(rows, cols))).astype(dtype)


def spiked_matrix(rows: int, cols: int, *, rank: int = 3, strength: float = 4.0,
                  sigma: float = 1.0, seed: int = 0,
                  dtype: FloatDtype = np.float32) -> np.ndarray:
    """Gaussian noise plus ``rank`` planted outliers: ``W = G + Σ_i θ_i u_i v_iᵀ``.

    ``G`` has N(0, σ²) entries; ``u_i``, ``v_i`` are orthonormal random directions. An additive
    rank-one term separates from the Marchenko–Pastur bulk (BBP transition) when its
    singular value exceeds ``θ* = σ·(rows·cols)^{1/4}``; here
    ``θ_i = strength · θ* · (1 + i/4)`` — ``strength > 1`` gives ``rank`` clear outliers
    (distinct, so they are never degenerate), ``strength < 1`` hides them in the bulk.
    """
    rng = _rng(seed)
    g = rng.standard_normal((rows, cols)) * sigma
    if rank > 0:
        if rank > min(rows, cols):
            raise ValueError(f"rank {rank} exceeds min(rows, cols) = {min(rows, cols)}")
        u, _ = np.linalg.qr(rng.standard_normal((rows, rank)))
        v, _ = np.linalg.qr(rng.standard_normal((cols, rank)))
        threshold = sigma * (rows * cols) ** 0.25
        theta = strength * threshold * (1.0 + np.arange(rank) / 4.0)
        g += (u * theta) @ v.T
    return g.astype(dtype)


def low_rank_matrix(rows: int, cols: int, rank: int, *, seed: int = 0,
                    dtype: FloatDtype = np.float32) -> np.ndarray:
    """A product ``A·B`` of Gaussian factors of inner size ``rank``: exactly ``rank`` nonzero
    singular values, the rest ~0 (rank collapse)."""
    rng = _rng(seed)
    return (rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols))
            / math.sqrt(rank)).astype(dtype)


def nan_matrix(rows: int = 16, cols: int = 32, *, count: int = 1, seed: int = 0,
               dtype: FloatDtype = np.float32) -> np.ndarray:
    """A Gaussian matrix with ``count`` entries set to NaN (a corrupted weight)."""
    w = gaussian_matrix(rows, cols, seed=seed, dtype=dtype)
    w.reshape(-1)[_rng(seed + 1).choice(w.size, size=count, replace=False)] = np.nan
    return w


def inf_matrix(rows: int = 16, cols: int = 32, *, count: int = 1, seed: int = 0,
               dtype: FloatDtype = np.float32) -> np.ndarray:
    """A Gaussian matrix with ``count`` entries set to ±inf (an overflowed weight)."""
    w = gaussian_matrix(rows, cols, seed=seed, dtype=dtype)
    idx = _rng(seed + 1).choice(w.size, size=count, replace=False)
    w.reshape(-1)[idx] = np.where(np.arange(count) % 2 == 0, np.inf, -np.inf)
    return w


def all_zero_matrix(rows: int = 16, cols: int = 32, *,
                    dtype: FloatDtype = np.float32) -> np.ndarray:
    """All zeros: every eigenvalue is 0, no spectrum to fit (a pruned / unused layer)."""
    return np.zeros((rows, cols), dtype=dtype)


def empty_matrix(cols: int = 16, *, dtype: FloatDtype = np.float32) -> np.ndarray:
    """Shape ``(0, cols)``: a legal tensor with no elements."""
    return np.zeros((0, cols), dtype=dtype)


def row_matrix(cols: int = 64, *, seed: int = 0, dtype: FloatDtype = np.float32) -> np.ndarray:
    """Shape ``(1, cols)``: a 1×N matrix, one eigenvalue (fails ``min_evals``)."""
    return gaussian_matrix(1, cols, seed=seed, dtype=dtype)


# ---------------------------------------------------------------------------------------
# Writing safetensors
# ---------------------------------------------------------------------------------------

_ST_TORCH = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_TORCH_ST = {v: k for k, v in _ST_TORCH.items()}


@dataclass(frozen=True)
class TensorSpec:
    """Shape, dtype and initialisation of one tensor of a generated model.

    ``init``: ``normal`` (N(0, std²), or heavy-tailed entries when the model is),
    ``ones`` (1 + small noise: norm weights), ``small`` (N(0, std²), never heavy-tailed:
    biases, norm biases), ``var`` (U(0.5, 1.5): BatchNorm running variance), ``count``
    (an integer scalar: ``num_batches_tracked``), ``arange`` (``position_ids``).
    """

    shape: tuple[int, ...]
    dtype: str = "F32"
    init: Literal["normal", "ones", "small", "var", "count", "arange"] = "normal"
    std: float = 0.02

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _itemsize(self.dtype)


def _itemsize(dtype: str) -> int:
    return torch.empty((), dtype=_ST_TORCH[dtype]).element_size()


def _as_torch(x: ArrayLike) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    return x.detach().cpu().contiguous()


def write_safetensors(path: PathLike, tensors: Mapping[str, ArrayLike],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` with the ``safetensors`` library itself (the reference writer).

    numpy arrays and torch tensors (any dtype the format has, bf16/fp8 included) are
    accepted; tensors sharing storage are copied so the library does not refuse them.
    Holds all tensors in memory: for big models use :func:`write_safetensors_streaming`.
    """
    from safetensors.torch import save_file

    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for name, value in tensors.items():
        t = _as_torch(value)
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in seen:
            t = t.clone()
        seen.add(ptr)
        out[name] = t
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path), metadata=dict(metadata) if metadata else None)
    return path


def _header_json(header: Mapping[str, Any]) -> bytes:
    """Header bytes padded with spaces to a multiple of 8, as the library does (so the data
    section starts 8-byte aligned)."""
    raw = json.dumps(header, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8)


def write_safetensors_streaming(
    path: PathLike,
    layout: Mapping[str, TensorSpec],
    produce: Callable[[str, TensorSpec], ArrayLike],
    *,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a safetensors file one tensor at a time: memory is one tensor, any file size.

    The header is computed from ``layout`` (tensors stored in its order), then
    ``produce(name, spec)`` is called for each tensor and its bytes appended. The result is
    a standard file the ``safetensors`` library reads.

    Raises:
        ValueError: a produced tensor's shape or dtype differs from its spec.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, spec in layout.items():
        header[name] = {"dtype": spec.dtype, "shape": list(spec.shape),
                        "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    head = _header_json(header)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name, spec in layout.items():
            t = _as_torch(produce(name, spec))
            if tuple(t.shape) != spec.shape or _TORCH_ST.get(t.dtype) != spec.dtype:
                raise ValueError(f"{name}: produced {t.dtype}{list(t.shape)}, "
                                 f"spec is {spec.dtype}{list(spec.shape)}")
            if t.numel():
                f.write(t.reshape(-1).view(torch.uint8).numpy().data)
            del t
    os.replace(tmp, path)
    return path


def safetensors_bytes(header: Mapping[str, Any] | bytes | str, data: bytes = b"", *,
                      length: int | None = None) -> bytes:
    """Raw bytes of a (possibly broken) safetensors file: prefix, header, data.

    ``header`` may be a dict (JSON-encoded), or str/bytes used verbatim (for invalid JSON);
    ``length`` overrides the 8-byte length prefix (for lying prefixes).
    """
    if isinstance(header, Mapping):
        head = json.dumps(header).encode()
    elif isinstance(header, str):
        head = header.encode()
    else:
        head = bytes(header)
    n = len(head) if length is None else length
    return struct.pack("<Q", n) + head + data


def write_raw_safetensors(path: PathLike, header: Mapping[str, Any] | bytes | str,
                          data: bytes = b"", *, length: int | None = None) -> Path:
    """Write :func:`safetensors_bytes` to ``path``; the builder of every hostile file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(safetensors_bytes(header, data, length=length))
    return path


# ---------------------------------------------------------------------------------------
# Demo models
# ---------------------------------------------------------------------------------------

DemoKind = Literal["mlp", "cnn", "gpt2", "bert-tiny"]
DEMO_KINDS: tuple[str, ...] = ("mlp", "cnn", "gpt2", "bert-tiny")

_DEFAULTS: dict[str, dict[str, int]] = {
    "mlp": {"width": 64, "layers": 3, "classes": 10},
    "cnn": {"width": 16, "layers": 2, "classes": 10, "stem": 3},
    "gpt2": {"width": 64, "layers": 2, "vocab": 1000, "positions": 128, "heads": 4},
    "bert-tiny": {"width": 64, "layers": 2, "vocab": 1000, "positions": 128, "heads": 2},
}


def _linear(layout: dict[str, TensorSpec], name: str, out: int, inp: int, std: float) -> None:
    layout[f"{name}.weight"] = TensorSpec((out, inp), std=std)
    layout[f"{name}.bias"] = TensorSpec((out,), init="small", std=std)


def _norm(layout: dict[str, TensorSpec], name: str, dim: int) -> None:
    layout[f"{name}.weight"] = TensorSpec((dim,), init="ones")
    layout[f"{name}.bias"] = TensorSpec((dim,), init="small")


def _batchnorm(layout: dict[str, TensorSpec], name: str, dim: int) -> None:
    _norm(layout, name, dim)
    layout[f"{name}.running_mean"] = TensorSpec((dim,), init="small", std=0.1)
    layout[f"{name}.running_var"] = TensorSpec((dim,), init="var")
    layout[f"{name}.num_batches_tracked"] = TensorSpec((), dtype="I64", init="count")


def _mlp(width: int, layers: int, classes: int = 10, **_: int,
         ) -> tuple[dict[str, TensorSpec], dict[str, Any]]:
    dims = [width] + [2 * width] * (layers - 1) + [classes]
    layout: dict[str, TensorSpec] = {}
    for i in range(layers):
        _linear(layout, f"fc{i + 1}", dims[i + 1], dims[i], std=1 / math.sqrt(dims[i]))
    return layout, {"model_type": "mlp", "architectures": ["DemoMLP"], "hidden_sizes": dims}


def _cnn_channels(width: int, layers: int) -> list[int]:
    return [width * 2 ** b for b in range(layers)]


def _cnn(width: int, layers: int, classes: int = 10, stem: int = 3, **_: int,
         ) -> tuple[dict[str, TensorSpec], dict[str, Any]]:
    """A small ResNet in torchvision's naming (conv1/bn1, layerK.conv1/bn1/conv2/bn2,
    layerK.downsample.0/1, fc)."""
    layout: dict[str, TensorSpec] = {}

    def conv(name: str, out: int, inp: int, k: int) -> None:
        layout[f"{name}.weight"] = TensorSpec((out, inp, k, k), std=1 / math.sqrt(inp * k * k))

    chans = _cnn_channels(width, layers)
    conv("conv1", width, 3, stem)
    _batchnorm(layout, "bn1", width)
    c_in = width
    for b, c in enumerate(chans, start=1):
        conv(f"layer{b}.conv1", c, c_in, 3)
        _batchnorm(layout, f"layer{b}.bn1", c)
        conv(f"layer{b}.conv2", c, c, 3)
        _batchnorm(layout, f"layer{b}.bn2", c)
        if c != c_in:
            conv(f"layer{b}.downsample.0", c, c_in, 1)
            _batchnorm(layout, f"layer{b}.downsample.1", c)
        c_in = c
    _linear(layout, "fc", classes, c_in, std=1 / math.sqrt(c_in))
    config = {"model_type": "cnn", "architectures": ["DemoCNN"], "width": width,
              "num_blocks": layers, "num_classes": classes, "stem_kernel": stem}
    return layout, config


def _gpt2(width: int, layers: int, vocab: int, positions: int, heads: int,
          ) -> tuple[dict[str, TensorSpec], dict[str, Any]]:
    """``GPT2LMHeadModel`` naming; attention/MLP weights are ``Conv1D``, stored ``(in, out)``.
    ``lm_head.weight`` is tied to ``wte`` and, as in HF files, not stored."""
    d = width
    layout: dict[str, TensorSpec] = {
        "transformer.wte.weight": TensorSpec((vocab, d)),
        "transformer.wpe.weight": TensorSpec((positions, d), std=0.01),
    }
    for i in range(layers):
        p = f"transformer.h.{i}"
        _norm(layout, f"{p}.ln_1", d)
        layout[f"{p}.attn.c_attn.weight"] = TensorSpec((d, 3 * d))
        layout[f"{p}.attn.c_attn.bias"] = TensorSpec((3 * d,), init="small")
        layout[f"{p}.attn.c_proj.weight"] = TensorSpec((d, d))
        layout[f"{p}.attn.c_proj.bias"] = TensorSpec((d,), init="small")
        _norm(layout, f"{p}.ln_2", d)
        layout[f"{p}.mlp.c_fc.weight"] = TensorSpec((d, 4 * d))
        layout[f"{p}.mlp.c_fc.bias"] = TensorSpec((4 * d,), init="small")
        layout[f"{p}.mlp.c_proj.weight"] = TensorSpec((4 * d, d))
        layout[f"{p}.mlp.c_proj.bias"] = TensorSpec((d,), init="small")
    _norm(layout, "transformer.ln_f", d)
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": vocab,
              "n_positions": positions, "n_embd": d, "n_layer": layers, "n_head": heads,
              "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
              "bos_token_id": vocab - 1, "eos_token_id": vocab - 1,
              "tie_word_embeddings": True}
    return layout, config


def _bert(width: int, layers: int, vocab: int, positions: int, heads: int,
          ) -> tuple[dict[str, TensorSpec], dict[str, Any]]:
    """``BertModel`` naming (as sentence-transformers / MiniLM files), including the int64
    ``embeddings.position_ids`` buffer that older BERT checkpoints store."""
    d, inter = width, 4 * width
    layout: dict[str, TensorSpec] = {
        "embeddings.word_embeddings.weight": TensorSpec((vocab, d)),
        "embeddings.position_embeddings.weight": TensorSpec((positions, d)),
        "embeddings.token_type_embeddings.weight": TensorSpec((2, d)),
        "embeddings.position_ids": TensorSpec((1, positions), dtype="I64", init="arange"),
    }
    _norm(layout, "embeddings.LayerNorm", d)
    for i in range(layers):
        p = f"encoder.layer.{i}"
        for proj in ("query", "key", "value"):
            _linear(layout, f"{p}.attention.self.{proj}", d, d, std=0.02)
        _linear(layout, f"{p}.attention.output.dense", d, d, std=0.02)
        _norm(layout, f"{p}.attention.output.LayerNorm", d)
        _linear(layout, f"{p}.intermediate.dense", inter, d, std=0.02)
        _linear(layout, f"{p}.output.dense", d, inter, std=0.02)
        _norm(layout, f"{p}.output.LayerNorm", d)
    _linear(layout, "pooler.dense", d, d, std=0.02)
    config = {"model_type": "bert", "architectures": ["BertModel"], "vocab_size": vocab,
              "hidden_size": d, "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": inter, "max_position_embeddings": positions,
              "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12}
    return layout, config


_BUILDERS = {"mlp": _mlp, "cnn": _cnn, "gpt2": _gpt2, "bert-tiny": _bert}


def demo_layout(kind: DemoKind = "mlp", *, width: int | None = None, layers: int | None = None,
                vocab: int | None = None, classes: int | None = None, stem: int | None = None,
                dtype: str = "F32",
                ) -> tuple[dict[str, TensorSpec], dict[str, Any]]:
    """Tensor names → :class:`TensorSpec`, and the ``config.json`` dict, of a demo model.

    Args:
        kind: ``mlp`` (``fc1…fcL``), ``cnn`` (small ResNet: 4-D conv weights, BatchNorm
            with int64 ``num_batches_tracked``), ``gpt2`` (``Conv1D`` ``(in, out)`` weights,
            ``wte``/``wpe``), ``bert-tiny`` (embeddings, q/k/v/o, intermediate, pooler).
        width: hidden size (mlp input / cnn base channels / d_model). Default per kind.
        layers: depth (mlp layers / cnn blocks / transformer layers). Default per kind.
        vocab: vocabulary size of gpt2 / bert-tiny.
        classes: outputs of the mlp / cnn classifier head (default 10).
        stem: kernel size of the cnn's first conv (3, CIFAR-style; 7 as ImageNet ResNets,
            which gives that 3-channel layer 49 slices to pool instead of 9).
        dtype: storage dtype of float tensors (``F32``, ``F16``, ``BF16``, ``F8_E4M3`` …);
            integer tensors keep ``I64``.

    Size guide: ``gpt2`` is ≈ ``12·width²·layers + vocab·width`` parameters; e.g.
    ``width=2048, layers=10`` is ≈ 2.1 GB in F32.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"unknown demo kind {kind!r}; choose from {DEMO_KINDS}")
    params = dict(_DEFAULTS[kind])
    if width is not None:
        params["width"] = width
    if layers is not None:
        params["layers"] = layers
    if vocab is not None and "vocab" in params:
        params["vocab"] = vocab
    if classes is not None and "classes" in params:
        params["classes"] = classes
    if stem is not None and "stem" in params:
        params["stem"] = stem
    layout, config = _BUILDERS[kind](**params)
    if dtype != "F32":
        if dtype not in _ST_TORCH or not _ST_TORCH[dtype].is_floating_point:
            raise ValueError(f"dtype must be a float safetensors dtype, got {dtype!r}")
        layout = {n: (TensorSpec(s.shape, dtype, s.init, s.std) if s.dtype == "F32" else s)
                  for n, s in layout.items()}
        config["torch_dtype"] = str(_ST_TORCH[dtype]).removeprefix("torch.")
    return layout, config


def _tensor_seed(seed: int, name: str) -> list[int]:
    """Per-tensor seed from (model seed, name): values do not depend on file order/sharding."""
    return [seed, zlib.crc32(name.encode())]


@dataclass(frozen=True)
class HeavyTail:
    """How a heavy-tailed demo model's weight matrices are made.

    ``spectrum`` (the default): a Gaussian matrix whose top ``tail_fraction`` of the
    spectrum is replaced by a power law — the eigenvalues of ``WᵀW/N`` below the cut keep
    their Marchenko–Pastur values, those above are redrawn from ``p(λ) ∝ λ^-exponent``
    starting where the bulk stops, and the singular vectors stay the Gaussian matrix's. So
    ``exponent`` *is* the ESD's tail exponent α, and the spectrum looks like a trained
    layer's: an MP bulk that continues, without a gap, into a power-law tail. Measured with
    the ``ww`` analysis (fitted α, phase) on 100…2000 × 100…256 matrices: see
    ``tests/testing/test_demo_models.py``.

    ``student-t`` / ``pareto``: i.i.d. entries with ``P(|X| > x) ~ x^-exponent``; heavy-tailed
    random matrix theory (Martin & Mahoney, JMLR 2021) turns them into a heavy-tailed ESD
    whose α grows with the entries' exponent — at a few hundred wide, Student-t ν = 2 gives
    α ≈ 2–3.5 but single huge entries sometimes stand out as isolated spikes
    (``bulk+spikes``), and Pareto μ = 3 gives α ≈ 4.5–12. Cheap at any size (no SVD).
    """

    family: Literal["spectrum", "student-t", "pareto"] = "spectrum"
    exponent: float = 2.6
    tail_fraction: float = 0.3

    def __post_init__(self) -> None:
        if self.family not in ("spectrum", "student-t", "pareto"):
            raise ValueError(f"family must be spectrum, student-t or pareto, got {self.family!r}")
        if not self.exponent > (1 if self.family == "spectrum" else 0):
            raise ValueError(f"exponent must be > {1 if self.family == 'spectrum' else 0}")
        if not 0 < self.tail_fraction < 1:
            raise ValueError("tail_fraction must be in (0, 1)")

    def matrix(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Unit-scale weights of ``shape``. A 4-D conv weight is made slice by slice
        (``W[:, :, i, j]``, the matrices the analysis pools) with one power-law sample
        shared out over the slices, so the pooled spectrum has a proper tail even when each
        slice holds a single tail eigenvalue (a 3-channel stem)."""
        if self.family == "pareto":
            return _pareto_entries(rng, shape, self.exponent)
        if self.family == "student-t":
            return rng.standard_t(self.exponent, size=shape)
        rows, cols = shape[0], shape[1]
        n_slices = math.prod(shape[2:])
        k = _tail_size(min(rows, cols), self.tail_fraction)
        scales = rng.permutation(_power_law_multipliers(rng, k * n_slices, self.exponent))
        out = np.empty((rows, cols, n_slices), dtype=np.float32)
        for i in range(n_slices):
            out[:, :, i] = _planted(rng, rows, cols, np.sort(scales[i * k:(i + 1) * k]))
        return out.reshape(shape)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"family": self.family, "exponent": self.exponent}
        if self.family == "spectrum":
            d["tail_fraction"] = self.tail_fraction
        return d


def power_law_spectrum_matrix(rows: int, cols: int, alpha: float, *, seed: int = 0,
                              rng: np.random.Generator | None = None, tail_fraction: float = 0.3,
                              dtype: FloatDtype = np.float32) -> np.ndarray:
    """An MP bulk with a planted power-law tail of exponent ``alpha`` (unit-variance scale).

    ``G`` Gaussian (``rows × cols``), ``G = U S Vᵀ``; the eigenvalues ``λ = s²/N`` are sorted,
    the largest ``k = ⌈tail_fraction · M⌉`` replaced by ``λ_c (1 − q)^(−1/(alpha−1))``
    (``λ_c`` the largest eigenvalue kept: the tail starts where the bulk ends; ``q``
    stratified uniforms, one in the middle half of each ``[j/k, (j+1)/k)``), and
    ``W = U diag(√(λN)) Vᵀ``. Below the cut the ESD is Marchenko–Pastur; above it,
    ``p(λ) ∝ λ^-alpha`` — what weightwatcher's fit measures.
    """
    if not alpha > 1:
        raise ValueError("alpha must be > 1")
    rng = rng if rng is not None else _rng(seed)
    k = _tail_size(min(rows, cols), tail_fraction)
    return _planted(rng, rows, cols, _power_law_multipliers(rng, k, alpha)).astype(dtype)


def _tail_size(m: int, tail_fraction: float) -> int:
    return min(m, max(1, math.ceil(tail_fraction * m)))


def _power_law_multipliers(rng: np.random.Generator, k: int, alpha: float) -> np.ndarray:
    """``k`` draws of ``X ≥ 1`` with density ``∝ x^-alpha``, sorted, stratified: one in the
    middle half of each ``1/k`` of the CDF — a power-law sample without the clumps and holes
    of i.i.d. draws (the fitted alpha scatters less) and without a lone giant at the top
    (an i.i.d. maximum can sit orders of magnitude above the rest: "a bulk plus one spike")."""
    q = (np.arange(k) + 0.25 + 0.5 * rng.random(k)) / k
    return (1.0 - q) ** (-1.0 / (alpha - 1.0))


def _planted(rng: np.random.Generator, rows: int, cols: int, multipliers: np.ndarray) -> np.ndarray:
    """A Gaussian ``rows × cols`` matrix whose top ``len(multipliers)`` eigenvalues become
    ``λ_c · multipliers`` (sorted ascending), ``λ_c`` the largest eigenvalue kept."""
    n, m = max(rows, cols), min(rows, cols)
    k = len(multipliers)
    g = rng.standard_normal((n, m)).astype(np.float32)
    u, sv, vt = np.linalg.svd(g, full_matrices=False)
    lam = np.sort(sv.astype(np.float64) ** 2 / n)
    cut = lam[m - k - 1] if m > k else lam[0]
    lam[m - k:] = cut * np.sort(multipliers)
    # u's columns go with sv in descending order; give the largest λ to the first column.
    w = (u * np.sqrt(lam[::-1] * n).astype(np.float32)) @ vt
    return (w if rows >= cols else w.T).astype(np.float32)


#: What ``heavy_tailed=True`` means: an MP bulk with a planted α = 2.6 power-law tail.
DEFAULT_HEAVY_TAIL = HeavyTail()


def _values(name: str, spec: TensorSpec, *, seed: int, tail: HeavyTail | None) -> torch.Tensor:
    """The tensor a demo model stores under ``name`` (float32 maths, cast to spec.dtype)."""
    rng = _rng(_tensor_seed(seed, name))
    shape = spec.shape
    if spec.init == "count":
        return torch.tensor(1000, dtype=_ST_TORCH[spec.dtype]).reshape(shape)
    if spec.init == "arange":
        return torch.arange(math.prod(shape), dtype=_ST_TORCH[spec.dtype]).reshape(shape)
    if spec.init == "var":
        x = rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
    elif spec.init == "ones":
        x = (1.0 + 0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    elif spec.init == "normal" and len(shape) >= 2 and tail is not None:
        x = (spec.std * tail.matrix(rng, shape)).astype(np.float32)
    else:  # normal / small
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(spec.std)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return t.to(_ST_TORCH[spec.dtype])


HeavyTailed = bool | float | HeavyTail


def _tail(heavy_tailed: HeavyTailed | None) -> HeavyTail | None:
    """``heavy_tailed``: False → Gaussian; True → :data:`DEFAULT_HEAVY_TAIL` (a planted
    α = 2.6 tail); a number → Pareto entries with that μ; a :class:`HeavyTail` → as given."""
    if heavy_tailed is False or heavy_tailed is None:
        return None
    if heavy_tailed is True:
        return DEFAULT_HEAVY_TAIL
    if isinstance(heavy_tailed, HeavyTail):
        return heavy_tailed
    return HeavyTail("pareto", float(heavy_tailed))


def demo_state_dict(kind: DemoKind = "mlp", *, seed: int = 0, heavy_tailed: HeavyTailed = False,
                    width: int | None = None, layers: int | None = None,
                    vocab: int | None = None, classes: int | None = None,
                    stem: int | None = None, dtype: str = "F32") -> dict[str, torch.Tensor]:
    """The demo model's tensors in memory (same values :func:`make_demo_model` writes)."""
    layout, _ = demo_layout(kind, width=width, layers=layers, vocab=vocab, classes=classes,
                            stem=stem, dtype=dtype)
    tail = _tail(heavy_tailed)
    return {n: _values(n, s, seed=seed, tail=tail) for n, s in layout.items()}


def _write_config(folder: Path, config: Mapping[str, Any], demo: Mapping[str, Any],
                  metadata: Mapping[str, Any] | None) -> None:
    """``config.json``: the architecture's config plus ``hubscan_demo`` (how it was made,
    and the caller's ``metadata``, e.g. a torchvision-style ``acc@1``)."""
    record = {**demo, **(metadata or {})}
    (folder / "config.json").write_text(json.dumps({**config, "hubscan_demo": record}, indent=2) + "\n")


def _tail_record(tail: HeavyTail | None) -> dict[str, Any] | None:
    return tail.as_dict() if tail is not None else None


def make_demo_model(path: PathLike, kind: DemoKind = "mlp", *, seed: int = 0,
                    heavy_tailed: HeavyTailed = False, width: int | None = None,
                    layers: int | None = None, vocab: int | None = None,
                    classes: int | None = None, stem: int | None = None, dtype: str = "F32",
                    fmt: Literal["safetensors", "bin"] = "safetensors",
                    metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a small model folder: ``model.safetensors`` (or ``pytorch_model.bin``) + ``config.json``.

    Args:
        path: the folder to create (parents too).
        kind, width, layers, vocab, classes, stem, dtype: see :func:`demo_layout`.
        seed: values depend only on ``(seed, tensor name)``.
        heavy_tailed: ``False`` → weight matrices have Gaussian entries (random-like:
            an MP bulk, large alpha); ``True`` → :data:`DEFAULT_HEAVY_TAIL` (an MP bulk
            continued by a planted α = 2.6 power-law tail: phase heavy-tailed, fitted α in
            [2, 4]); a float → symmetric Pareto entries with that μ (HT-RMT, α grows with
            μ); a :class:`HeavyTail` → as given. Biases and norms are never heavy-tailed.
        fmt: ``safetensors`` is written tensor by tensor (any size); ``bin`` uses
            ``torch.save`` of the whole state dict (keep those small).
        metadata: extra keys for ``config.json``'s ``hubscan_demo`` record (the demo puts
            its torchvision-style ``acc@1`` there).

    Returns:
        The folder (pass it to ``read_checkpoint``/``hubscan analyze``).

    Example:
        >>> folder = make_demo_model(tmp_path / "bert", "bert-tiny", seed=1)  # doctest: +SKIP
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    layout, config = demo_layout(kind, width=width, layers=layers, vocab=vocab, classes=classes,
                                 stem=stem, dtype=dtype)
    tail = _tail(heavy_tailed)

    def produce(name: str, spec: TensorSpec) -> torch.Tensor:
        return _values(name, spec, seed=seed, tail=tail)

    if fmt == "safetensors":
        write_safetensors_streaming(folder / "model.safetensors", layout, produce,
                                    metadata={"format": "pt"})
    elif fmt == "bin":
        torch.save({n: produce(n, s) for n, s in layout.items()}, folder / "pytorch_model.bin")
    else:
        raise ValueError(f"fmt must be 'safetensors' or 'bin', got {fmt!r}")
    _write_config(folder, config, {"kind": kind, "seed": seed, "heavy_tailed": _tail_record(tail)},
                  metadata)
    return folder


def _split(layout: Mapping[str, TensorSpec], shards: int) -> list[list[str]]:
    """Consecutive names in ``shards`` non-empty groups of ≈ equal bytes (like
    ``save_pretrained``'s size-bounded sharding, but with a count instead of a size)."""
    names = list(layout)
    if not 1 <= shards <= len(names):
        raise ValueError(f"shards must be in 1..{len(names)}, got {shards}")
    total = sum(s.nbytes for s in layout.values())
    groups: list[list[str]] = [[]]
    acc = 0
    for i, name in enumerate(names):
        unopened = shards - len(groups)
        if groups[-1] and unopened and (unopened >= len(names) - i
                                        or acc >= total * len(groups) / shards):
            groups.append([])
        groups[-1].append(name)
        acc += layout[name].nbytes
    return groups


def make_sharded_model(path: PathLike, kind: DemoKind = "gpt2", *, shards: int = 3,
                       seed: int = 0, heavy_tailed: HeavyTailed = False,
                       width: int | None = None, layers: int | None = None,
                       vocab: int | None = None, classes: int | None = None,
                       stem: int | None = None, dtype: str = "F32",
                       fmt: Literal["safetensors", "bin"] = "safetensors",
                       metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a sharded model folder the way ``save_pretrained(max_shard_size=…)`` does.

    Files: ``model-0000k-of-0000n.safetensors`` and ``model.safetensors.index.json``
    (``{"metadata": {"total_size"}, "weight_map"}``), or ``pytorch_model-…bin`` +
    ``pytorch_model.bin.index.json`` for ``fmt="bin"``; plus ``config.json``. Tensors hold
    the same values as :func:`make_demo_model` with the same arguments.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    layout, config = demo_layout(kind, width=width, layers=layers, vocab=vocab, classes=classes,
                                 stem=stem, dtype=dtype)
    tail = _tail(heavy_tailed)
    base, ext = ("model", "safetensors") if fmt == "safetensors" else ("pytorch_model", "bin")
    weight_map: dict[str, str] = {}
    for k, names in enumerate(_split(layout, shards), start=1):
        shard = f"{base}-{k:05d}-of-{shards:05d}.{ext}"
        part = {n: layout[n] for n in names}
        if fmt == "safetensors":
            write_safetensors_streaming(
                folder / shard, part,
                lambda n, s: _values(n, s, seed=seed, tail=tail),
                metadata={"format": "pt"})
        else:
            torch.save({n: _values(n, s, seed=seed, tail=tail) for n, s in part.items()},
                       folder / shard)
        weight_map.update({n: shard for n in names})
    index = {"metadata": {"total_size": sum(s.nbytes for s in layout.values())},
             "weight_map": weight_map}
    (folder / f"{base}.{ext}.index.json").write_text(json.dumps(index, indent=2) + "\n")
    _write_config(folder, config, {"kind": kind, "seed": seed, "heavy_tailed": _tail_record(tail),
                                   "shards": shards}, metadata)
    return folder


def make_degenerate_model(path: PathLike, *, seed: int = 0) -> dict[str, str]:
    """A safetensors file mixing good layers with every degenerate tensor a scan must survive.

    Writes ``path`` (a ``.safetensors`` file) and returns ``tensor name → what is wrong``
    (``"ok"`` for the healthy ones), so a pipeline test can check that each bad tensor
    fails or is skipped *alone* while the good ones are analysed.
    """
    tensors: dict[str, tuple[np.ndarray | torch.Tensor, str]] = {
        "good.0.weight": (gaussian_matrix(64, 32, seed=seed), "ok"),
        "good.1.weight": (pareto_matrix(96, 48, 2.5, seed=seed + 1), "ok"),
        "nan.weight": (nan_matrix(32, 32, seed=seed), "nan"),
        "inf.weight": (inf_matrix(32, 32, seed=seed), "inf"),
        "zero.weight": (all_zero_matrix(32, 32), "all-zero"),
        "empty.weight": (empty_matrix(16), "empty"),
        "row.weight": (row_matrix(64, seed=seed), "1xN"),
        "norm.weight": (np.ones(32, dtype=np.float32), "1-D"),
        "ids.weight": (torch.arange(64, dtype=torch.int64).reshape(8, 8), "integer"),
        "half.weight": (torch.from_numpy(gaussian_matrix(32, 16, seed=seed + 2)).to(torch.bfloat16), "ok"),
    }
    write_safetensors(path, {n: v for n, (v, _) in tensors.items()})
    return {n: why for n, (_, why) in tensors.items()}


# ---------------------------------------------------------------------------------------
# torch modules for the demo kinds (weightwatcher needs a model, not a file)
# ---------------------------------------------------------------------------------------

class DemoMLP(torch.nn.Module):
    """``fc1 … fcL`` Linear layers with ReLU between; names match the ``mlp`` layout."""

    def __init__(self, width: int = 64, layers: int = 3, classes: int = 10) -> None:
        super().__init__()
        dims = [width] + [2 * width] * (layers - 1) + [classes]
        self.depth = layers
        for i in range(layers):
            setattr(self, f"fc{i + 1}", torch.nn.Linear(dims[i], dims[i + 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.depth):
            x = getattr(self, f"fc{i + 1}")(x)
            if i < self.depth - 1:
                x = torch.relu(x)
        return x


class _Block(torch.nn.Module):
    def __init__(self, c_in: int, c: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c_in, c, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c)
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(c)
        self.downsample = (torch.nn.Sequential(torch.nn.Conv2d(c_in, c, 1, bias=False),
                                               torch.nn.BatchNorm2d(c)) if c != c_in else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class DemoCNN(torch.nn.Module):
    """A small ResNet; names match the ``cnn`` layout (torchvision's ResNet naming)."""

    def __init__(self, width: int = 16, layers: int = 2, num_classes: int = 10, stem: int = 3) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, width, stem, padding=stem // 2, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        c_in = width
        self.blocks = layers
        for b, c in enumerate(_cnn_channels(width, layers), start=1):
            setattr(self, f"layer{b}", _Block(c_in, c))
            c_in = c
        self.fc = torch.nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        for b in range(1, self.blocks + 1):
            x = getattr(self, f"layer{b}")(x)
        return self.fc(x.mean(dim=(2, 3)))


def build_demo_module(kind: DemoKind = "mlp", *, width: int | None = None,
                      layers: int | None = None, vocab: int | None = None,
                      classes: int | None = None, stem: int | None = None) -> torch.nn.Module:
    """An untrained ``torch.nn.Module`` whose ``state_dict`` names and shapes are the
    demo layout's (``transformers`` models for ``gpt2``/``bert-tiny``)."""
    _, config = demo_layout(kind, width=width, layers=layers, vocab=vocab, classes=classes, stem=stem)
    p = _DEFAULTS[kind] | {k: v for k, v in (("width", width), ("layers", layers),
                                             ("classes", classes), ("stem", stem)) if v is not None}
    if kind == "mlp":
        return DemoMLP(p["width"], p["layers"], p["classes"])
    if kind == "cnn":
        return DemoCNN(p["width"], p["layers"], p["classes"], p["stem"])
    return _transformers_model(config)


def _transformers_model(config: Mapping[str, Any]) -> torch.nn.Module:
    import transformers  # optional, heavy: only when a transformer demo is built

    cfg = {k: v for k, v in config.items() if k != "hubscan_demo"}
    model_type = cfg.pop("model_type")
    arch = cfg["architectures"][0]
    conf = transformers.AutoConfig.for_model(model_type, **cfg)
    return getattr(transformers, arch)(conf)


def load_demo_module(path: PathLike) -> torch.nn.Module:
    """A demo model folder as a ``torch.nn.Module`` holding the file's weights (eval mode).

    Reads the folder with hubscan's own reader and ``load_state_dict(strict=…)`` —
    strict for ``mlp``/``cnn``; for transformers, the tied ``lm_head`` and the
    ``position_ids`` buffer are the only keys allowed to differ.
    """
    from ..readers import read_checkpoint

    folder = Path(path)
    config = json.loads((folder / "config.json").read_text())
    demo = config.get("hubscan_demo", {})
    kind = demo.get("kind")
    state = {t.name: t.load() for t in read_checkpoint(folder)}
    if kind in ("mlp", "cnn"):
        if kind == "mlp":
            dims = config["hidden_sizes"]
            module: torch.nn.Module = DemoMLP(dims[0], len(dims) - 1, dims[-1])
        else:
            module = DemoCNN(config["width"], config["num_blocks"], config.get("num_classes", 10),
                             config.get("stem_kernel", 3))
        module.load_state_dict({k: v.float() if v.is_floating_point() else v
                                for k, v in state.items()}, strict=True)
    else:
        module = _transformers_model(config)
        result = module.load_state_dict({k: v.float() if v.is_floating_point() else v
                                         for k, v in state.items()}, strict=False)
        unexpected = [k for k in result.unexpected_keys if not k.endswith("position_ids")]
        missing = [k for k in result.missing_keys if k != "lm_head.weight"]
        if unexpected or missing:
            raise ValueError(f"demo weights do not fit the module: missing {missing}, "
                             f"unexpected {unexpected}")
        if hasattr(module, "tie_weights"):
            module.tie_weights()
    return module.eval()


# ---------------------------------------------------------------------------------------
# Hostile files
# ---------------------------------------------------------------------------------------

def _valid_parts(seed: int = 0) -> tuple[dict[str, Any], bytes]:
    """A small valid header + data: ``a`` F32[4,4] then ``b`` F32[8]."""
    a = gaussian_matrix(4, 4, seed=seed).tobytes()
    b = gaussian_matrix(1, 8, seed=seed + 1).tobytes()
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]},
        "b": {"dtype": "F32", "shape": [8], "data_offsets": [64, 96]},
    }
    return header, a + b


def truncated_safetensors(path: PathLike, *,
                          where: Literal["data", "header", "prefix"] = "data") -> Path:
    """A valid file cut short: inside the data section (``data``: the header promises
    bytes that are not there), inside the header (``header``), or within the 8-byte
    prefix (``prefix``) — the shapes of an interrupted download."""
    header, data = _valid_parts()
    full = safetensors_bytes(header, data)
    n = len(json.dumps(header).encode())
    cut = {"data": len(full) - 20, "header": 8 + n // 2, "prefix": 5}[where]
    path = Path(path)
    path.write_bytes(full[:cut])
    return path


def header_too_long(path: PathLike, *, length: int | None = None) -> Path:
    """The 8-byte prefix claims a header longer than the file (default: file size + 1000;
    pass e.g. ``2**63`` for an absurd value, or ``200_000_000`` to hit the size cap)."""
    header, data = _valid_parts()
    size = len(safetensors_bytes(header, data))
    return write_raw_safetensors(path, header, data, length=size + 1000 if length is None else length)


def invalid_json_header(path: PathLike, *,
                        kind: Literal["syntax", "not_object", "utf8", "duplicate_key"] = "syntax",
                        ) -> Path:
    """A header that is not a usable JSON object: a syntax error, a JSON array, invalid
    UTF-8, or a tensor name repeated (which would let one entry shadow another)."""
    _, data = _valid_parts()
    body = {
        "syntax": b'{"a": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]},',
        "not_object": b'[1, 2, 3]',
        "utf8": b'{"\xff\xfe": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}',
        "duplicate_key": (b'{"a": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]},'
                          b' "a": {"dtype": "F32", "shape": [8], "data_offsets": [64, 96]}}'),
    }[kind]
    return write_raw_safetensors(path, body, data)


def offsets_out_of_range(path: PathLike) -> Path:
    """Tensor ``b`` claims bytes beyond the end of the data section."""
    header, data = _valid_parts()
    header["b"]["data_offsets"] = [64, 96 + 64]
    header["b"]["shape"] = [24]
    return write_raw_safetensors(path, header, data)


def overlapping_offsets(path: PathLike) -> Path:
    """Tensors ``a`` and ``b`` share bytes (``b`` starts inside ``a``)."""
    header, data = _valid_parts()
    header["b"]["data_offsets"] = [32, 64]
    return write_raw_safetensors(path, header, data)


def unknown_dtype(path: PathLike, *, dtype: str = "F7") -> Path:
    """Tensor ``a`` has a dtype the format does not define."""
    header, data = _valid_parts()
    header["a"]["dtype"] = dtype
    return write_raw_safetensors(path, header, data)


def shape_size_mismatch(path: PathLike) -> Path:
    """Tensor ``a`` says shape [4, 5] (80 bytes of F32) over a 64-byte span."""
    header, data = _valid_parts()
    header["a"]["shape"] = [4, 5]
    return write_raw_safetensors(path, header, data)


def negative_shape(path: PathLike) -> Path:
    """Tensor ``a`` has a negative dimension (whose product could fake a small size)."""
    header, data = _valid_parts()
    header["a"]["shape"] = [-4, -4]
    return write_raw_safetensors(path, header, data)


def bad_metadata(path: PathLike) -> Path:
    """``__metadata__`` with a non-string value (the format requires str → str)."""
    header, data = _valid_parts()
    header["__metadata__"] = {"format": "pt", "step": 3}
    return write_raw_safetensors(path, header, data)


class _RunsCode:
    """Pickles to ``exec(code)``: unpickling it runs code (creating a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.code = f"open({str(marker)!r}, 'w').write('unpickled')"

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.exec, (self.code,))


def malicious_pickle(path: PathLike, marker_path: PathLike, *,
                     fmt: Literal["zip", "legacy", "raw"] = "zip") -> Path:
    """A ``.bin`` that looks like a training checkpoint but whose unpickling creates
    ``marker_path`` (via ``exec``): the classic pickle attack, made harmless and observable.

    ``fmt``: ``zip`` (``torch.save`` default), ``legacy`` (pre-1.6 torch format) or ``raw``
    (a plain ``pickle.dump``). Writing it does not run the payload; only a full unpickle
    (``torch.load(weights_only=False)``, ``pickle.load``) does.
    """
    import pickle

    marker_path = Path(marker_path)
    obj = {"state_dict": {"fc.weight": torch.ones(4, 4)}, "epoch": 1,
           "callback": _RunsCode(marker_path)}
    path = Path(path)
    if fmt == "zip":
        torch.save(obj, path)
    elif fmt == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    elif fmt == "raw":
        # Plain pickle: weights as nested lists (a torch tensor pickled this way would be
        # refused first, for its own rebuild global, hiding the payload from the test).
        obj["state_dict"] = {"fc.weight": [[1.0] * 4] * 4}
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    else:
        raise ValueError(f"fmt must be zip, legacy or raw, got {fmt!r}")
    return path


def torchscript_file(path: PathLike) -> Path:
    """A TorchScript archive (``torch.jit.save``): a zip like ``torch.save``'s, but with code."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.trace(torch.nn.Linear(4, 4), torch.zeros(1, 4))
    path = Path(path)
    module.save(str(path))
    return path
