"""Model folders for the layouts that are not one-matrix-per-tensor: a PEFT LoRA adapter,
MoE checkpoints (stacked and per-expert experts) and a tied-embedding LLM — for the
tests, the fake hub and the demo. Heavy-tailed weights, known factors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoints import student_t_matrix

__all__ = ["make_lora_adapter", "make_moe_model", "make_tied_model"]


def _t(rows: int, cols: int, seed: int, df: float = 2.5) -> torch.Tensor:
    return torch.from_numpy(student_t_matrix(rows, cols, df, seed=seed).astype(np.float32))


def make_lora_adapter(path: str | Path, *, base_model: str = "hubscan-demo/tiny-llama", width: int = 256,
                      layers: int = 2, r: int = 16, alpha: float = 32.0, use_rslora: bool = False,
                      dora: bool = False, seed: int = 0) -> tuple[Path, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """A PEFT LoRA adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``)
    adapting ``q_proj`` and ``v_proj``; returns the folder and ``module → (A, B)``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sd: dict[str, torch.Tensor] = {}
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for i in range(layers):
        for proj in ("q_proj", "v_proj"):
            module = f"model.layers.{i}.self_attn.{proj}"
            a = _t(r, width, seed + 10 * i + (proj == "v_proj")) / np.sqrt(width)
            b = _t(width, r, seed + 100 + 10 * i + (proj == "v_proj")) * 0.01
            pre = f"base_model.model.{module}"
            sd[f"{pre}.lora_A.weight"] = a
            sd[f"{pre}.lora_B.weight"] = b
            if dora:
                sd[f"{pre}.lora_magnitude_vector"] = torch.ones(width)
            factors[module] = (a, b)
    save_file(sd, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha, "use_rslora": use_rslora,
        "use_dora": dora, "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": base_model,
    }, indent=1))
    return path, factors


def make_moe_model(path: str | Path, *, layout: str = "stacked", experts: int = 4, width: int = 128,
                   ff: int = 96, layers: int = 1, seed: int = 0) -> tuple[Path, dict[str, Any]]:
    """An MoE model folder: ``stacked`` (gpt-oss bf16 layout: ``mlp.experts.gate_up_proj``
    ``(E, hidden, 2·ff)`` with gate/up interleaved, ``down_proj`` ``(E, ff, hidden)``) or
    ``per_expert`` (Mixtral: ``block_sparse_moe.experts.<e>.w1/w2/w3.weight``); a dense
    router either way. Returns the folder and the per-expert matrices by expected row."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sd: dict[str, torch.Tensor] = {}
    expect: dict[str, Any] = {}
    for i in range(layers):
        pre = f"model.layers.{i}"
        if layout == "stacked":
            gate = [_t(width, ff, seed + e) for e in range(experts)]
            up = [_t(width, ff, seed + 50 + e) for e in range(experts)]
            gate_up = torch.empty(experts, width, 2 * ff)
            for e in range(experts):
                gate_up[e, :, 0::2], gate_up[e, :, 1::2] = gate[e], up[e]
            down = torch.stack([_t(ff, width, seed + 90 + e) for e in range(experts)])
            sd[f"{pre}.mlp.experts.gate_up_proj"] = gate_up
            sd[f"{pre}.mlp.experts.down_proj"] = down
            sd[f"{pre}.mlp.router.weight"] = _t(experts, width, seed + 7)
            for e in range(experts):
                expect[f"{pre}.mlp.experts.gate_up_proj[{e}].gate"] = (e, gate[e])
                expect[f"{pre}.mlp.experts.gate_up_proj[{e}].up"] = (e, up[e])
                expect[f"{pre}.mlp.experts.down_proj[{e}]"] = (e, down[e])
            config = {"model_type": "gpt_oss", "num_local_experts": experts, "intermediate_size": ff,
                      "hidden_size": width, "architectures": ["GptOssForCausalLM"]}
        elif layout == "per_expert":
            for e in range(experts):
                for w, (o, n) in {"w1": (ff, width), "w2": (width, ff), "w3": (ff, width)}.items():
                    name = f"{pre}.block_sparse_moe.experts.{e}.{w}.weight"
                    sd[name] = _t(o, n, seed + 10 * e + int(w[1]))
                    expect[name] = (e, sd[name])
            sd[f"{pre}.block_sparse_moe.gate.weight"] = _t(experts, width, seed + 7)
            config = {"model_type": "mixtral", "num_local_experts": experts, "intermediate_size": ff,
                      "hidden_size": width, "architectures": ["MixtralForCausalLM"]}
        else:
            raise ValueError(f"layout must be 'stacked' or 'per_expert', not {layout!r}")
    save_file(sd, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config, indent=1))
    return path, expect


def make_tied_model(path: str | Path, *, vocab: int = 512, width: int = 128, tie: bool = True,
                    fmt: str = "safetensors", seed: int = 0) -> Path:
    """A tiny LLM whose ``lm_head.weight`` equals ``model.embed_tokens.weight``
    (``tie_word_embeddings``): a byte copy in safetensors, shared storage in a torch ``.bin``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    emb = _t(vocab, width, seed)
    sd = {"model.embed_tokens.weight": emb, "model.layers.0.mlp.up_proj.weight": _t(2 * width, width, seed + 1),
          "lm_head.weight": emb if fmt == "bin" else emb.clone()}
    if fmt == "bin":
        torch.save(sd, path / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(sd, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "tie_word_embeddings": tie,
                                                  "vocab_size": vocab, "hidden_size": width}, indent=1))
    return path
