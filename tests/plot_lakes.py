"""Small real lakes for the plot and report tests: generated models, real analysis, real writer.

Each model is a demo state dict (``hubscan.testing.checkpoints``) analysed by the real
pipeline (``pipeline.analyze_model`` → ``analysis.analyze_tensors``: eigenvalues, power-law
and MP fits) and written with ``Lake.write`` — the same rows a scan writes, spectra included.
No file is written except the lake: the tensors are handed to the pipeline from memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hubscan.analysis.model import analyze_model
from hubscan.lake import Lake
from hubscan.options import AnalysisOptions
from hubscan.refs import ModelRef, TensorRef, WeightFile
from hubscan.testing.checkpoints import demo_state_dict, low_rank_matrix


@dataclass(frozen=True)
class Spec:
    """One test model: a demo kind, heavy-tailed or Gaussian weights, a reported accuracy."""

    repo_id: str
    kind: str
    heavy: bool | float
    seed: int
    accuracy: float | None
    width: int | None = None
    layers: int | None = None
    rank_collapse: bool = False  # add a rank-8 256×128 dense layer (rank collapse)


#: Four "architectures", two series (mlp, cnn) with accuracies, some heavy-tailed.
DEFAULT_SPECS = (
    Spec("demo/mlp-11", "mlp", False, 1, 70.0, width=128),
    Spec("demo/mlp-13", "mlp", 3.0, 2, 72.5, width=128),
    Spec("demo/mlp-16", "mlp", 2.5, 3, 74.0, width=128, rank_collapse=True),
    Spec("demo/cnn-18", "cnn", False, 4, 69.8),
    Spec("demo/cnn-34", "cnn", True, 5, 73.3),
    Spec("demo/gpt2-small", "gpt2", True, 6, None),
    Spec("demo/bert-tiny", "bert-tiny", False, 7, None),
)

ARCHS = {"mlp": "DemoMLP", "cnn": "DemoCNN", "gpt2": "GPT2LMHeadModel", "bert-tiny": "BertModel"}


def state_dict(spec: Spec) -> dict[str, torch.Tensor]:
    sd = demo_state_dict(spec.kind, seed=spec.seed, heavy_tailed=spec.heavy, width=spec.width,
                         layers=spec.layers)
    if spec.rank_collapse:
        sd["collapsed.weight"] = torch.from_numpy(low_rank_matrix(256, 128, 8, seed=spec.seed))
    return sd


def _opener(sd: dict[str, torch.Tensor], file: str):
    def open_model(ref, *, allow_bin=False, stats=None, files=None):
        return [TensorRef(name=k, shape=tuple(v.shape), dtype=_st_dtype(v), file=file,
                          load=lambda v=v: v) for k, v in sd.items()]
    return open_model


def _st_dtype(t: torch.Tensor) -> str:
    return {torch.float32: "F32", torch.int64: "I64", torch.float16: "F16",
            torch.bfloat16: "BF16"}[t.dtype]


def model_result(spec: Spec, options: AnalysisOptions, *, scan_date: str = "2026-11-23"):
    sd = state_dict(spec)
    digest = hashlib.sha256(f"{spec}".encode()).hexdigest()
    ref = ModelRef(source="local", repo_id=spec.repo_id, revision=digest[:12],
                   files=(WeightFile("model.safetensors", size=None, sha256=digest),),
                   arch=ARCHS[spec.kind], model_type=spec.kind, library="hubscan-demo",
                   meta={"accuracy": spec.accuracy} if spec.accuracy is not None else {})
    return analyze_model(ref, options, opener=_opener(sd, "model.safetensors"),
                         scan_date=scan_date)


def build_lake(path: str | Path, specs=DEFAULT_SPECS, *, convention: str = "ww",
               compare: bool = False) -> Lake:
    """Analyse ``specs`` and write them to a lake at ``path``; returns the ``Lake``."""
    lake = Lake(str(path), fsync=False)
    options = AnalysisOptions(convention=convention, compare=compare)
    for spec in specs:
        result = model_result(spec, options)
        assert result.model["status"] == "ok", result.failures
        lake.write(result)
    return lake


def numpy_evals(spec: Spec, tensor: str, *, convention: str = "ww") -> np.ndarray:
    """Independent eigenvalues of one tensor of ``spec`` (numpy float64 SVD, METHOD.md §2)."""
    w = state_dict(spec)[tensor].double().numpy()
    if w.ndim == 2:
        mats = [w]
        conv = False
    else:  # conv: (out, in, kh, kw) → kh·kw slices
        mats = [w[:, :, i, j] for i in range(w.shape[2]) for j in range(w.shape[3])]
        conv = True
    out = []
    for m in mats:
        sv = np.linalg.svd(m, compute_uv=False)
        ev = sv ** 2
        if convention == "seed":
            ev = ev / max(m.shape)
        elif conv:
            ev = ev / 2.0
        out.append(ev)
    return np.sort(np.concatenate(out))


_SHARED: dict[tuple, Lake] = {}


def shared_lake(specs=DEFAULT_SPECS, *, convention: str = "ww") -> Lake:
    """The lake of ``specs``, built once per test process and shared by the plot, report and
    Chromium tests (they only read it). Removed when the process exits."""
    import atexit
    import shutil
    import tempfile

    key = (tuple(specs), convention)
    if key not in _SHARED:
        root = tempfile.mkdtemp(prefix="hubscan-plot-lake-")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _SHARED[key] = build_lake(Path(root) / "lake", specs, convention=convention)
    return _SHARED[key]
