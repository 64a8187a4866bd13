"""A model family on the fake hub for lineage and fine-tune-delta tests, with numpy references.

``acme/base`` and four derived repos:

- ``acme/ft-light``: the base plus 1e-3 Gaussian noise (a fine-tune that barely moved);
- ``acme/ft-heavy``: the base with two layers replaced by heavy-tailed (Pareto) matrices —
  the planted layers a delta ranking must put first;
- ``acme/lora``: a PEFT adapter (``adapter_config.json`` names the base; no card);
- ``acme/base-fp16``: the base rounded to float16, its card saying ``quantized``.

The references are plain numpy, independent of hubscan: weightwatcher's distances and its
WWFit power-law alpha (METHOD.md §4), written out loop by loop.
"""

from __future__ import annotations

import json

import numpy as np

from hubscan.testing import checkpoints as ck

BASE = "acme/base"
LIGHT = "acme/ft-light"
HEAVY = "acme/ft-heavy"
LORA = "acme/lora"
FP16 = "acme/base-fp16"
PLANTED = ("layers.1.weight", "layers.3.weight")
MATRICES = ("layers.0.weight", "layers.1.weight", "layers.2.weight", "layers.3.weight", "conv.weight")


def base_tensors() -> dict[str, np.ndarray]:
    t: dict[str, np.ndarray] = {}
    for i in range(4):
        t[f"layers.{i}.weight"] = ck.gaussian_matrix(128, 64, seed=10 + i)
        t[f"layers.{i}.bias"] = np.zeros(128, np.float32)
    t["conv.weight"] = ck.gaussian_matrix(16 * 8, 9, seed=20).reshape(16, 8, 3, 3)
    # 1.9 MB that no delta needs (N > max_N: skipped): reading only what is needed must show
    t["embed.weight"] = ck.gaussian_matrix(60_000, 8, seed=21)
    return t


def light_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {k: (v + (1e-3 * rng.standard_normal(v.shape)).astype(np.float32) if v.ndim > 1 else v.copy())
            for k, v in base_tensors().items()}


def heavy_tensors() -> dict[str, np.ndarray]:
    t = base_tensors()
    for j, name in enumerate(PLANTED):
        t[name] = ck.pareto_matrix(128, 64, 1.0, seed=30 + j)
    return t


def fp16_tensors() -> dict[str, np.ndarray]:
    return {k: v.astype(np.float16) for k, v in base_tensors().items()}


def lora_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {f"base_model.model.layers.{i}.lora_A.weight": rng.standard_normal((8, 64)).astype(np.float32)
            for i in range(2)} | {f"base_model.model.layers.{i}.lora_B.weight":
                                  rng.standard_normal((128, 8)).astype(np.float32) for i in range(2)}


def card(base: str | None, *, relation: str | None = None, accuracy: float | None = None) -> bytes:
    lines = ["---", "license: mit"]
    if base:
        lines.append(f"base_model: {base}")
    if relation:
        lines.append(f"base_model_relation: {relation}")
    if accuracy is not None:
        lines += ["model-index:", "- name: m", "  results:", "  - task:", "      type: text-classification",
                  "    dataset:", "      type: glue", "      name: GLUE SST-2", "      split: validation",
                  "    metrics:", "    - type: accuracy", f"      value: {accuracy}"]
    lines += ["---", "", "# a model", ""]
    return "\n".join(lines).encode()


def add_family(hub, *, with_base: bool = True, derived: bool = True) -> None:
    config = {"architectures": ["TinyNet"], "model_type": "tiny"}
    if with_base:
        hub.add_model(BASE, base_tensors(), config=config, downloads=500,
                      extra_files={"README.md": card(None, accuracy=0.80)})
    if not derived:
        return
    hub.add_model(LIGHT, light_tensors(), config=config, downloads=400,
                  extra_files={"README.md": card(BASE, accuracy=0.81)})
    hub.add_model(HEAVY, heavy_tensors(), config=config, downloads=300,
                  extra_files={"README.md": card(BASE, accuracy=0.62)})
    hub.add_model(FP16, fp16_tensors(), config=config, downloads=200,
                  extra_files={"README.md": card(BASE, relation="quantized")})
    adapter = {"base_model_name_or_path": BASE, "peft_type": "LORA", "r": 8, "lora_alpha": 16,
               "target_modules": ["layers"]}
    hub.add_repo(LORA, {"adapter_model.safetensors": ck_bytes(lora_tensors()),
                        "adapter_config.json": json.dumps(adapter).encode()}, downloads=100,
                 library_name="peft")


def ck_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    from hubscan.testing.fakehub.repos import safetensors_bytes

    return safetensors_bytes(tensors, {"format": "pt"})


# ------------------------------------------------------------------------- numpy references


def ww_matrices(W: np.ndarray) -> list[np.ndarray]:
    """weightwatcher's ``Wmats``: the 2-D tensor, or Conv2d slices ``W[:, :, i, j]``, tall."""
    if W.ndim == 2:
        return [W]
    out = []
    for i in range(W.shape[2]):
        for j in range(W.shape[3]):
            m = W[:, :, i, j]
            out.append(m.T if m.shape[0] < m.shape[1] else m)
    return out


def distances(W: np.ndarray, B: np.ndarray) -> dict[str, float]:
    W, B = W.astype(np.float64), B.astype(np.float64)
    eu, cka = [], []
    for a, b in zip(ww_matrices(W), ww_matrices(B)):
        eu.append(np.linalg.norm(a - b))
        den = np.sqrt(np.linalg.norm(a.T @ a) * np.linalg.norm(b @ b.T))
        cka.append(np.linalg.norm(a.T @ b) / (den + 1e-6 if den < 1e-6 else den))
    return {"delta_raw": float(np.linalg.norm((W - B).ravel())), "delta_euclidean": float(np.mean(eu)),
            "delta_cka": float(np.mean(cka))}


def ww_alpha(W: np.ndarray) -> float:
    """weightwatcher 0.7.7's WWFit alpha of one matrix's ESD (σ², Conv2d scaled by 1/√2)."""
    W = W.astype(np.float64)
    if W.ndim == 4:
        W = W / np.sqrt(2.0)
    ev = np.concatenate([np.linalg.svd(m, compute_uv=False) ** 2 for m in ww_matrices(W)])
    x = np.sort(ev[ev > 1e-5])
    n_all = len(x)
    best = (np.inf, None)
    logs = np.log(x)
    for i in range(n_all - 1):
        n = n_all - i
        if n_all < 20 and n < 8:
            continue
        s = logs[i:].sum() - n * logs[i]
        alpha = 1 + (n - 1 if n_all < 20 else n) / s
        if alpha <= 1:
            d = 1.0
        else:
            cdf = 1 - (x[i:] / x[i]) ** (1 - alpha)
            d = float(np.max(np.abs(cdf - np.arange(n) / n)))
        if d < best[0]:
            best = (d, alpha)
    return float(best[1])
