"""Float matrix → the packed tensors of each quantised layout (tests, the fake hub, demos).

Each packer quantises a known float matrix the way the format's own tools lay it out (the
*layout* is the format's; the rounding is a plain round-to-nearest, not the format's
calibration — GPTQ's Hessian updates, AWQ's activation-aware scales — which does not
change how the bytes are read). It returns the state-dict entries of one module (names as
the format writes them) and the float matrix those bytes decode to by the format's
published formula, computed here independently of ``hubscan.readers.quant``.

``make_quantized_model(path, layout, …)`` writes a small model folder of one layout
(``model.safetensors`` + ``config.json``), ``write_gguf`` a GGUF file through
``gguf.GGUFWriter``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "LAYOUTS",
    "NF4_CODE",
    "make_quantized_model",
    "pack_awq",
    "pack_bnb_4bit",
    "pack_bnb_int8",
    "pack_fp8",
    "pack_gptq",
    "pack_mlx",
    "pack_mxfp4",
    "pack_pack_quantized",
    "quantize_q4_k",
    "quantized_config",
    "write_gguf",
]

#: The NF4 code book (QLoRA, Dettmers et al. 2023, Appendix E; bitsandbytes ``get_4bit_type("nf4")``).
NF4_CODE = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
            -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
            0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
            0.7229568362236023, 1.0)
_AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
_FP4 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def _pack(codes: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    from ..readers.quant._bits import pack_codes

    return pack_codes(codes, bits, dim=dim)


def _asym(w: torch.Tensor, bits: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Min/max affine scale and integer zero point of ``w`` reduced over ``dim``."""
    maxq = (1 << bits) - 1
    lo = torch.clamp(w.amin(dim), max=0.0)
    hi = torch.clamp(w.amax(dim), min=0.0)
    scale = torch.where(hi > lo, (hi - lo) / maxq, torch.ones_like(hi))
    zero = torch.clamp(torch.round(-lo / scale), 0, maxq)
    return scale, zero


def pack_gptq(w: torch.Tensor, *, bits: int = 4, group_size: int = 64, desc_act: bool = False,
              zero_point: str = "v1", seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """GPTQ ``QuantLinear`` entries (``qweight``, ``qzeros``, ``scales``, ``g_idx``) of a
    ``(out, in)`` weight, and the float weight they decode to. ``desc_act`` assigns input
    rows to groups in a random order (as activation ordering does)."""
    wt = w.to(torch.float32).t().contiguous()            # (in, out)
    n_in, out = wt.shape
    maxq = (1 << bits) - 1
    g_idx = torch.arange(n_in) // group_size
    if desc_act:
        perm = torch.randperm(n_in, generator=torch.Generator().manual_seed(seed))
        g_idx = torch.empty(n_in, dtype=torch.int64)
        g_idx[perm] = torch.arange(n_in) // group_size
    groups = int(g_idx.max()) + 1
    scales = torch.empty(groups, out)
    zeros = torch.empty(groups, out)
    for g in range(groups):
        scales[g], zeros[g] = _asym(wt[g_idx == g], bits, 0)
    scales = scales.to(torch.float16).to(torch.float32)
    q = torch.clamp(torch.round(wt / scales[g_idx]) + zeros[g_idx], 0, maxq).to(torch.int64)
    stored_z = zeros.to(torch.int64) - (1 if zero_point == "v1" else 0)
    entries = {
        "qweight": _pack(q, bits, 0),
        "qzeros": _pack(stored_z & maxq, bits, 1),
        "scales": scales.to(torch.float16),
        "g_idx": g_idx.to(torch.int32),
    }
    # v1 readers add 1 to the stored zero code: a zero of 0 wraps to maxq + 1 (AutoGPTQ behaviour)
    z_read = (stored_z & maxq) + (1 if zero_point == "v1" else 0)
    deq = (scales[g_idx] * (q - z_read[g_idx]).to(torch.float32)).t().contiguous()
    return entries, deq


def pack_awq(w: torch.Tensor, *, group_size: int = 64) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """AWQ GEMM entries (``qweight``, ``qzeros``, ``scales``) of a ``(out, in)`` weight."""
    wt = w.to(torch.float32).t().contiguous()            # (in, out)
    n_in, out = wt.shape
    groups = n_in // group_size
    g = wt.view(groups, group_size, out)
    scales, zeros = _asym(g, 4, 1)
    scales = scales.to(torch.float16).to(torch.float32)
    gi = torch.arange(n_in) // group_size
    q = torch.clamp(torch.round(wt / scales[gi]) + zeros[gi], 0, 15).to(torch.int64)

    def interleave(x: torch.Tensor) -> torch.Tensor:  # column c of each 8 goes to slot AWQ_ORDER.index(c)
        order = torch.arange(x.shape[1]).view(-1, 8)[:, list(_AWQ_ORDER)].reshape(-1)
        return x[:, order]

    entries = {"qweight": _pack(interleave(q), 4, 1), "qzeros": _pack(interleave(zeros.to(torch.int64)), 4, 1),
               "scales": scales.to(torch.float16)}
    deq = ((q - zeros.to(torch.int64)[gi]).to(torch.float32) * scales[gi]).t().contiguous()
    return entries, deq


def pack_bnb_4bit(w: torch.Tensor, *, blocksize: int = 64, nested: bool = True,
                  nested_blocksize: int = 256) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """bitsandbytes NF4 entries of ``X.weight`` (keys relative to ``X``: ``weight``,
    ``weight.absmax``, …), nested absmax quantised with a linear 256-level map (any sorted
    map is a valid file: it is stored in ``nested_quant_map``)."""
    flat = w.to(torch.float32).reshape(-1)
    n = flat.numel()
    code = torch.tensor(NF4_CODE)
    nb = -(-n // blocksize)
    padded = torch.nn.functional.pad(flat, (0, nb * blocksize - n)).view(nb, blocksize)
    absmax = padded.abs().amax(1).clamp(min=1e-12)
    scaled = (padded / absmax[:, None]).reshape(-1)[:n]
    codes = torch.bucketize(scaled, (code[:-1] + code[1:]) / 2)
    entries: dict[str, torch.Tensor] = {}
    state: dict[str, Any] = {"quant_type": "nf4", "blocksize": blocksize, "dtype": "float32",
                             "shape": list(w.shape)}
    if nested:
        offset = float(absmax.mean())
        centred = absmax - offset
        nmap = torch.linspace(-1, 1, 256)
        nnb = -(-nb // nested_blocksize)
        cp = torch.nn.functional.pad(centred, (0, nnb * nested_blocksize - nb)).view(nnb, nested_blocksize)
        nabs = cp.abs().amax(1).clamp(min=1e-12)
        ncodes = torch.bucketize((cp / nabs[:, None]).reshape(-1)[:nb], (nmap[:-1] + nmap[1:]) / 2)
        absmax_read = (nmap[ncodes].view(-1) * nabs.repeat_interleave(nested_blocksize)[:nb]) + offset
        entries.update({"weight.absmax": ncodes.to(torch.uint8), "weight.nested_absmax": nabs,
                        "weight.nested_quant_map": nmap})
        state.update(nested_blocksize=nested_blocksize, nested_dtype="float32", nested_offset=offset)
    else:
        absmax_read = absmax
        entries["weight.absmax"] = absmax
    c = torch.nn.functional.pad(codes, (0, n % 2)).to(torch.uint8)
    entries["weight"] = ((c[0::2] << 4) | c[1::2]).unsqueeze(1)
    entries["weight.quant_map"] = code.clone()
    entries["weight.quant_state.bitsandbytes__nf4"] = torch.tensor(
        list(json.dumps(state).encode()), dtype=torch.uint8)
    deq = (code[codes] * absmax_read.repeat_interleave(blocksize)[:n]).reshape(w.shape)
    return entries, deq


def pack_bnb_int8(w: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """LLM.int8 entries (``weight`` int8, ``SCB`` row absmax) of a ``(out, in)`` weight."""
    w = w.to(torch.float32)
    scb = w.abs().amax(1).clamp(min=1e-12)
    q = torch.clamp(torch.round(w * 127 / scb[:, None]), -127, 127).to(torch.int8)
    return {"weight": q, "SCB": scb}, q.to(torch.float32) * scb[:, None] * 7.874015718698502e-3


def pack_mlx(w: torch.Tensor, *, bits: int = 4, group_size: int = 64) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """MLX affine entries (``weight`` uint32, ``scales``, ``biases`` fp16) of ``(out, in)``."""
    w = w.to(torch.float32)
    out, n_in = w.shape
    g = w.view(out, n_in // group_size, group_size)
    lo, hi = g.amin(-1), g.amax(-1)
    maxq = (1 << bits) - 1
    scales = torch.where(hi > lo, (hi - lo) / maxq, torch.ones_like(hi)).to(torch.float16).to(torch.float32)
    biases = lo.to(torch.float16).to(torch.float32)
    q = torch.clamp(torch.round((g - biases[..., None]) / scales[..., None]), 0, maxq).to(torch.int64)
    words = _pack(q.reshape(out, n_in), bits, 1)
    deq = (scales[..., None] * q.to(torch.float32) + biases[..., None]).reshape(out, n_in)
    return {"weight": words.view(torch.uint32), "scales": scales.to(torch.float16),
            "biases": biases.to(torch.float16)}, deq


def pack_fp8(w: torch.Tensor, *, granularity: str = "block", block: tuple[int, int] = (128, 128),
             scale_name: str = "weight_scale_inv") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """FP8 E4M3 entries (``weight`` + ``weight_scale_inv``/``weight_scale``): ``block``
    (DeepSeek-V3), ``channel`` or ``tensor`` scales."""
    w = w.to(torch.float32)
    rows, cols = w.shape
    fmax = torch.finfo(torch.float8_e4m3fn).max
    if granularity == "tensor":
        scale = (w.abs().amax() / fmax).reshape(1)
        full = scale.expand(rows, cols)
    elif granularity == "channel":
        scale = (w.abs().amax(1, keepdim=True) / fmax)
        full = scale.expand(rows, cols)
    else:
        bn, bk = block
        sr, sc = -(-rows // bn), -(-cols // bk)
        scale = torch.empty(sr, sc)
        for i in range(sr):
            for j in range(sc):
                scale[i, j] = w[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk].abs().amax() / fmax
        full = scale.repeat_interleave(bn, 0)[:rows].repeat_interleave(bk, 1)[:, :cols]
    scale = scale.clamp(min=1e-12)
    full = full.clamp(min=1e-12)
    q = (w / full).to(torch.float8_e4m3fn)
    return {"weight": q, scale_name: scale}, q.to(torch.float32) * full


def pack_pack_quantized(w: torch.Tensor, *, bits: int = 4, group_size: int = 64,
                        symmetric: bool = True) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """compressed-tensors ``pack-quantized`` entries (``weight_packed``, ``weight_scale``,
    ``weight_shape`` [, ``weight_zero_point``]) of a ``(out, in)`` weight."""
    w = w.to(torch.float32)
    out, n_in = w.shape
    g = w.view(out, n_in // group_size, group_size)
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if symmetric:
        scale = (g.abs().amax(-1) / ((qmax - qmin) / 2)).clamp(min=1e-12)
        zp = torch.zeros_like(scale, dtype=torch.int64)
    else:
        lo, hi = torch.clamp(g.amin(-1), max=0), torch.clamp(g.amax(-1), min=0)
        scale = ((hi - lo) / (qmax - qmin)).clamp(min=1e-12)
        zp = torch.clamp(torch.round(qmin - lo / scale), qmin, qmax).to(torch.int64)
    scale = scale.to(torch.bfloat16).to(torch.float32)
    q = torch.clamp(torch.round(g / scale[..., None]) + zp[..., None], qmin, qmax).to(torch.int64)
    off = 1 << (bits - 1)
    entries = {"weight_packed": _pack(q.reshape(out, n_in) + off, bits, 1),
               "weight_scale": scale.to(torch.bfloat16), "weight_shape": torch.tensor([out, n_in])}
    if not symmetric:
        entries["weight_zero_point"] = _pack(zp + off, bits, 0)
    deq = ((q - zp[..., None]).to(torch.float32) * scale[..., None]).reshape(out, n_in)
    return entries, deq


def pack_mxfp4(stack: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """gpt-oss MXFP4 ``_blocks``/``_scales`` of an expert stack ``(E, in, out)`` (the bf16
    layout of ``mlp.experts.gate_up_proj``): blocks of 32 along ``in``, keys ``blocks`` and
    ``scales``."""
    x = stack.to(torch.float32).transpose(1, 2).contiguous()      # (E, out, in)
    E, out, n_in = x.shape
    G = n_in // 32
    xb = x.view(E, out, G, 32)
    amax = xb.abs().amax(-1).clamp(min=2.0 ** -126)
    e = torch.ceil(torch.log2(amax / 6.0)).clamp(-127, 127).to(torch.int32)
    scaled = xb / torch.ldexp(torch.ones_like(amax), e)[..., None]
    mag = torch.tensor(_FP4)
    idx = torch.bucketize(scaled.abs().clamp(max=6.0), (mag[:-1] + mag[1:]) / 2)
    codes = idx + 8 * (scaled < 0).to(torch.int64) * (idx > 0).to(torch.int64)
    codes = codes.view(E, out, G, 16, 2).to(torch.uint8)
    blocks = codes[..., 0] | (codes[..., 1] << 4)
    vals = mag[idx] * torch.where(scaled < 0, -1.0, 1.0)
    deq = torch.ldexp(vals, e[..., None]).view(E, out, n_in).transpose(1, 2).contiguous()
    return {"blocks": blocks, "scales": (e + 127).to(torch.uint8)}, deq


# ------------------------------------------------------------------------------ GGUF


def quantize_q4_k(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K bytes of a float matrix (rows of a multiple of 256), by plain min/max rounding
    (llama.cpp searches scales; the byte layout is the same): ``(bytes (rows, n/256·144),
    the float matrix they decode to)``. Layout: ggml ``block_q4_K`` — ``d``, ``dmin`` (f16),
    12 bytes of 6-bit sub-block scales/mins, 128 bytes of 4-bit codes."""
    w = np.asarray(w, dtype=np.float32)
    rows, n = w.shape
    x = w.reshape(-1, 8, 32)                                  # super-blocks of 8 sub-blocks
    lo = np.minimum(x.min(-1), 0.0)
    hi = x.max(-1)
    a = np.where(hi > lo, (hi - lo) / 15.0, 0.0)             # sub-block scale
    b = -lo                                                   # sub-block min (≥ 0)
    d = (a.max(-1) / 63.0).astype(np.float16)
    dmin = (b.max(-1) / 63.0).astype(np.float16)
    df, dmf = d.astype(np.float32), dmin.astype(np.float32)
    sc = np.clip(np.round(np.divide(a, df[:, None], out=np.zeros_like(a), where=df[:, None] > 0)), 0, 63).astype(np.uint8)
    m = np.clip(np.round(np.divide(b, dmf[:, None], out=np.zeros_like(b), where=dmf[:, None] > 0)), 0, 63).astype(np.uint8)
    step = df[:, None] * sc.astype(np.float32)
    off = dmf[:, None] * m.astype(np.float32)
    q = np.clip(np.round(np.divide(x + off[..., None], step[..., None], out=np.zeros_like(x),
                                   where=step[..., None] > 0)), 0, 15).astype(np.uint8)
    deq = (step[..., None] * q.astype(np.float32) - off[..., None]).reshape(rows, n)
    nb = x.shape[0]
    scales = np.zeros((nb, 12), np.uint8)
    scales[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = (m[:, 0:4] & 63) | ((m[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:8] & 0xF) | ((m[:, 4:8] & 0xF) << 4)
    qq = q.reshape(nb, 4, 2, 32)                              # sub-blocks 2j (low), 2j+1 (high)
    qs = (qq[:, :, 0, :] | (qq[:, :, 1, :] << 4)).reshape(nb, 128)
    blocks = np.concatenate([d.view(np.uint8).reshape(nb, 2), dmin.view(np.uint8).reshape(nb, 2), scales, qs], 1)
    return blocks.reshape(rows, -1), deq


def write_gguf(path: str | Path, tensors: Mapping[str, tuple[np.ndarray, str]], *, arch: str = "llama",
               block_count: int | None = None, name: str = "hubscan-test") -> Path:
    """A GGUF file through ``gguf.GGUFWriter``: ``tensors`` maps GGUF names to ``(float
    matrix (out, in), type name)``; ``Q4_K`` is packed by :func:`quantize_q4_k`, the other
    quantised types by ``gguf.quants.quantize``."""
    import gguf

    path = Path(path)
    wr = gguf.GGUFWriter(str(path), arch)
    wr.add_name(name)
    if block_count is not None:
        wr.add_block_count(block_count)
    for tname, (w, qtype) in tensors.items():
        qt = gguf.GGMLQuantizationType[qtype]
        w = np.asarray(w, dtype=np.float32)
        if qtype == "F32":
            wr.add_tensor(tname, w)
        elif qtype == "F16":
            wr.add_tensor(tname, w.astype(np.float16))
        else:
            data = quantize_q4_k(w)[0] if qtype == "Q4_K" else gguf.quants.quantize(w, qt)
            wr.add_tensor(tname, data, raw_shape=data.shape, raw_dtype=qt)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path


# ------------------------------------------------------------------------------ model folders

#: Layouts ``make_quantized_model`` writes.
LAYOUTS = ("gptq", "awq", "bnb-nf4", "bnb-int8", "mlx", "fp8-block", "compressed-tensors", "mxfp4")


def quantized_config(layout: str, *, bits: int = 4, group_size: int = 64) -> dict[str, Any]:
    """The ``config.json`` quantisation entries a model of ``layout`` carries."""
    if layout == "gptq":
        return {"quantization_config": {"quant_method": "gptq", "bits": bits, "group_size": group_size,
                                        "desc_act": True, "sym": False, "checkpoint_format": "gptq"}}
    if layout == "awq":
        return {"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": group_size,
                                        "version": "gemm", "zero_point": True}}
    if layout in ("bnb-nf4", "bnb-int8"):
        return {"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": layout == "bnb-nf4",
                                        "load_in_8bit": layout == "bnb-int8", "bnb_4bit_quant_type": "nf4"}}
    if layout == "mlx":
        return {"quantization": {"group_size": group_size, "bits": bits}}
    if layout == "fp8-block":
        return {"quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                        "weight_block_size": [128, 128]}}
    if layout == "compressed-tensors":
        return {"quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized",
                                        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
                                            "num_bits": bits, "type": "int", "symmetric": True,
                                            "strategy": "group", "group_size": group_size}}},
                                        "ignore": ["lm_head"]}}
    if layout == "mxfp4":
        return {"quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": ["router", "lm_head"]}}
    raise ValueError(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")


def make_quantized_model(path: str | Path, layout: str, *, width: int = 256, layers: int = 2,
                         experts: int = 4, seed: int = 0) -> tuple[Path, dict[str, torch.Tensor]]:
    """A small llama-shaped model folder in one quantised layout, with heavy-tailed weights.

    Returns the folder and the float matrices the packed weights decode to, by logical
    name (what a correct reader must produce).
    """
    from safetensors.torch import save_file

    from .checkpoints import student_t_matrix

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sd: dict[str, torch.Tensor] = {}
    expect: dict[str, torch.Tensor] = {}
    config: dict[str, Any] = {"model_type": "gpt_oss" if layout == "mxfp4" else "llama",
                              "architectures": ["GptOssForCausalLM" if layout == "mxfp4" else "LlamaForCausalLM"],
                              "hidden_size": width, "num_hidden_layers": layers, "vocab_size": 512,
                              **quantized_config(layout)}
    sd["model.embed_tokens.weight"] = torch.from_numpy(rng.standard_normal((512, width)).astype(np.float32))
    for i in range(layers):
        pre = f"model.layers.{i}"
        sd[f"{pre}.input_layernorm.weight"] = torch.ones(width)
        if layout == "mxfp4":
            config["num_local_experts"] = experts
            stack = torch.from_numpy(np.stack([student_t_matrix(width, 2 * width, 3.0, seed=seed + 10 * i + e)
                                               for e in range(experts)]).astype(np.float32))
            ent, deq = pack_mxfp4(stack)
            sd[f"{pre}.mlp.experts.gate_up_proj_blocks"] = ent["blocks"]
            sd[f"{pre}.mlp.experts.gate_up_proj_scales"] = ent["scales"]
            expect[f"{pre}.mlp.experts.gate_up_proj"] = deq
            sd[f"{pre}.mlp.router.weight"] = torch.from_numpy(rng.standard_normal((experts, width)).astype(np.float32))
            continue
        for proj, (o, n) in {"self_attn.q_proj": (width, width), "mlp.up_proj": (2 * width, width)}.items():
            w = torch.from_numpy(student_t_matrix(o, n, 3.0, seed=seed + 100 * i + o).astype(np.float32))
            mod = f"{pre}.{proj}"
            ent, deq = _pack_layout(layout, w)
            for k, v in ent.items():
                sd[f"{mod}.{k}"] = v
            expect[f"{mod}.weight"] = deq
    sd["lm_head.weight"] = torch.from_numpy(rng.standard_normal((512, width)).astype(np.float32))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config, indent=1))
    return path, expect


def _pack_layout(layout: str, w: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One module's entries in ``layout``, keys relative to the module path."""
    if layout == "gptq":
        return pack_gptq(w, desc_act=True)
    if layout == "awq":
        return pack_awq(w)
    if layout == "bnb-nf4":
        return pack_bnb_4bit(w)
    if layout == "bnb-int8":
        ent, deq = pack_bnb_int8(w)
        return ent, deq
    if layout == "mlx":
        return pack_mlx(w)
    if layout == "fp8-block":
        return pack_fp8(w)
    if layout == "compressed-tensors":
        return pack_pack_quantized(w)
    raise ValueError(f"unknown layout {layout!r}")



# ------------------------------------------------------------------------------ one matrix, every format

#: Formats :func:`quantized_files` writes, each as stored on disk by its tools.
FORMATS = ("gptq-4bit", "gptq-8bit", "awq-4bit", "bnb-nf4", "bnb-int8", "mlx-4bit", "mlx-8bit", "fp8-block",
           "fp8-channel", "ct-pack-4bit", "mxfp4", "gguf-Q8_0", "gguf-Q4_0", "gguf-Q4_K")


def quantized_files(folder: str | Path, w: torch.Tensor, formats: tuple[str, ...] = FORMATS) -> dict[str, Path]:
    """The ``(out, in)`` matrix ``w`` written in each format to its own file under ``folder``
    (module ``layer``; a safetensors file with ``config.json`` beside it, or a GGUF file).

    Used by the parity tests and ``benchmarks/bench_dequant.py``: the same float matrix
    through every reader.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    out: dict[str, Path] = {}
    for fmt in formats:
        d = folder / fmt
        d.mkdir(parents=True, exist_ok=True)
        if fmt.startswith("gguf-"):
            out[fmt] = write_gguf(d / f"layer-{fmt[5:]}.gguf", {"layer.weight": (w.numpy(), fmt[5:])}, arch="llama")
            continue
        config: dict[str, Any] = {}
        if fmt == "mxfp4":
            ent, _ = pack_mxfp4(w.t().unsqueeze(0).contiguous())       # one expert, (1, in, out)
            sd = {"layer_blocks": ent["blocks"], "layer_scales": ent["scales"]}
            config = quantized_config("mxfp4")
        else:
            bits = 8 if fmt.endswith("8bit") else 4
            if fmt.startswith("gptq"):
                ent, _ = pack_gptq(w, bits=bits, group_size=128, desc_act=True)
                config = quantized_config("gptq", bits=bits, group_size=128)
            elif fmt.startswith("awq"):
                ent, _ = pack_awq(w, group_size=128)
                config = quantized_config("awq", group_size=128)
            elif fmt == "bnb-nf4":
                ent, _ = pack_bnb_4bit(w)
            elif fmt == "bnb-int8":
                ent, _ = pack_bnb_int8(w)
            elif fmt.startswith("mlx"):
                ent, _ = pack_mlx(w, bits=bits, group_size=64)
                config = quantized_config("mlx", bits=bits, group_size=64)
            elif fmt.startswith("fp8"):
                ent, _ = pack_fp8(w, granularity=fmt[4:])
                config = quantized_config("fp8-block") if fmt == "fp8-block" else {}
            elif fmt == "ct-pack-4bit":
                ent, _ = pack_pack_quantized(w, bits=4, group_size=128)
                config = quantized_config("compressed-tensors", group_size=128)
            else:
                raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
            sd = {f"layer.{k}": v for k, v in ent.items()}
        save_file({k: v.contiguous() for k, v in sd.items()}, str(d / "model.safetensors"))
        (d / "config.json").write_text(json.dumps(config))
        out[fmt] = d
    return out


def read_quantized(path: str | Path) -> list:
    """The logical refs of one :func:`quantized_files` entry (GGUF or safetensors folder)."""
    from ..readers import read_checkpoint
    from ..readers.gguf import read_gguf

    path = Path(path)
    if path.suffix == ".gguf":
        return list(read_gguf(path))
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else None
    return list(read_checkpoint(path, config=config))
