"""Fake-hub repos of today's Hub formats (issue 13): GGUF with several quantisation levels
(K-quants included), GPTQ, AWQ, bitsandbytes NF4, MLX 4-bit, FP8 block scales,
compressed-tensors W4A16, an MXFP4 MoE (gpt-oss layout), a LoRA adapter with its base model
and a tied-embedding LLM — small (width 256), heavy-tailed, each as its tools lay it out.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..adapters import make_lora_adapter, make_tied_model
from ..checkpoints import student_t_matrix
from ..quantized import make_quantized_model, write_gguf
from .hub import FakeHub
from .repos import FakeRepo

__all__ = ["FORMAT_REPOS", "add_format_repos"]

#: repo id → what it holds (``add_format_repos`` adds all of them).
FORMAT_REPOS = {
    "formats/tiny-llama-GGUF": "gguf: Q4_K_M, Q8_0 and F16 files (F16 analysed by preference)",
    "formats/tiny-llama-GPTQ": "gptq 4-bit, act-order (g_idx)",
    "formats/tiny-llama-AWQ": "awq 4-bit GEMM",
    "formats/tiny-llama-bnb-4bit": "bitsandbytes nf4, nested absmax",
    "formats/tiny-llama-mlx-4bit": "mlx 4-bit, groups of 64",
    "formats/tiny-llama-FP8": "fp8 e4m3 with 128x128 block scales",
    "formats/tiny-llama-w4a16": "compressed-tensors pack-quantized int4",
    "formats/tiny-gpt-oss-mxfp4": "mxfp4 MoE expert stacks (4 experts)",
    "formats/tiny-llama": "the float base model of the adapter",
    "formats/tiny-llama-lora": "a PEFT LoRA adapter of formats/tiny-llama",
    "formats/tiny-llama-tied": "lm_head tied to the input embedding",
}

_LAYOUT = {"formats/tiny-llama-GPTQ": "gptq", "formats/tiny-llama-AWQ": "awq",
           "formats/tiny-llama-bnb-4bit": "bnb-nf4", "formats/tiny-llama-mlx-4bit": "mlx",
           "formats/tiny-llama-FP8": "fp8-block", "formats/tiny-llama-w4a16": "compressed-tensors",
           "formats/tiny-gpt-oss-mxfp4": "mxfp4"}


def _gguf_tensors(width: int, layers: int, seed: int) -> dict[str, np.ndarray]:
    out = {"token_embd.weight": student_t_matrix(512, width, 3.0, seed=seed)}
    for i in range(layers):
        out[f"blk.{i}.attn_q.weight"] = student_t_matrix(width, width, 2.5, seed=seed + 10 * i + 1)
        out[f"blk.{i}.ffn_up.weight"] = student_t_matrix(2 * width, width, 2.5, seed=seed + 10 * i + 2)
        out[f"blk.{i}.attn_norm.weight"] = np.ones(width, np.float32)
    out["output.weight"] = student_t_matrix(512, width, 3.0, seed=seed + 99)
    return out


def add_format_repos(hub: FakeHub, *, width: int = 256, layers: int = 2, seed: int = 0,
                     workdir: str | Path | None = None) -> list[FakeRepo]:
    """Add every repo of :data:`FORMAT_REPOS` to ``hub`` (files are built in ``workdir``,
    a temporary folder by default, and held in memory by the hub)."""
    out: list[FakeRepo] = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        for rid, layout in _LAYOUT.items():
            folder, _ = make_quantized_model(root / layout, layout, width=width, layers=layers, seed=seed)
            out.append(hub.add_folder(rid, folder, in_memory_below=1 << 30, downloads=1000, tags=[layout]))
        g = root / "gguf"
        g.mkdir()
        tensors = _gguf_tensors(width, layers, seed)
        for level, qtype in (("Q4_K_M", "Q4_K"), ("Q8_0", "Q8_0"), ("F16", "F16")):
            # like llama.cpp, rows too short for a K-quant super-block (256) fall back to Q8_0
            write_gguf(g / f"tiny-llama-{level}.gguf",
                       {n: (w, "F32" if w.ndim != 2 else qtype if qtype != "Q4_K" or w.shape[1] % 256 == 0
                            else "Q8_0") for n, w in tensors.items()},
                       arch="llama", block_count=layers, name="tiny-llama")
        (g / "README.md").write_text("# tiny-llama GGUF\n")
        out.append(hub.add_folder("formats/tiny-llama-GGUF", g, in_memory_below=1 << 30, library_name="gguf",
                                  tags=["gguf"], downloads=2000))
        lora, _ = make_lora_adapter(root / "lora", base_model="formats/tiny-llama", width=width, layers=layers,
                                    seed=seed)
        out.append(hub.add_folder("formats/tiny-llama-lora", lora, in_memory_below=1 << 30, library_name="peft",
                                  tags=["lora", "base_model:adapter:formats/tiny-llama"]))
        tied = make_tied_model(root / "tied", width=width, seed=seed)
        out.append(hub.add_folder("formats/tiny-llama-tied", tied, in_memory_below=1 << 30))
        plain = _plain_base(root / "plain", width, layers, seed)
        out.append(hub.add_folder("formats/tiny-llama", plain, in_memory_below=1 << 30))
    return out


def _plain_base(path: Path, width: int, layers: int, seed: int) -> Path:
    import json

    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    sd = {}
    for i in range(layers):
        for proj in ("q_proj", "v_proj"):
            sd[f"model.layers.{i}.self_attn.{proj}.weight"] = torch.from_numpy(
                student_t_matrix(width, width, 2.5, seed=seed + 10 * i + (proj == "v_proj")))
    save_file(sd, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    return path
