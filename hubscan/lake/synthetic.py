"""Synthetic ``ModelResult``s with plausible rows, for lake tests, benchmarks and demos.

The lake only moves rows; it does not care how the numbers were computed. So its tests and
its benchmark build units of work here — fast, deterministic (seeded), with the shapes the
pipeline produces: several files per model, shared files (content dedup), skipped and
failed layers, warnings that follow METHOD.md §3 (``over-trained`` if alpha < 2,
``under-trained`` if alpha > 6), spectra as float32 lists.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import numpy as np

from ..refs import model_key
from ..results import ModelResult

__all__ = ["synthetic_result", "file_sha"]

ANALYSIS_VERSION = "1-ww-synthetic"


def file_sha(name: str) -> str:
    """A stable fake sha256 for a weight file name."""
    return hashlib.sha256(name.encode()).hexdigest()


def synthetic_result(*, repo_id: str, revision: str = "r1", arch: str | None = "BertModel",
                     source: str = "local", scan_date: str = "2026-11-23",
                     analysis_version: str = ANALYSIS_VERSION, n_layers: int = 12,
                     files: Sequence[str] | None = None, reused: Sequence[str] = (),
                     alpha_loc: float = 3.5, seed: int = 0, spectra: bool = True,
                     n_evals: int = 32, written_at: datetime | None = None,
                     status: str = "ok", failures: int = 0) -> ModelResult:
    """One model's rows.

    Args:
        files: content names of the files this unit analyses (their sha256 is
            ``file_sha(name)``); default one file unique to ``repo_id@revision``.
        reused: content names of files already in the lake: only ``model_files`` rows
            (``reused = true``), no layer rows — the views join the existing ones.
        n_layers: tensors per analysed file; every 7th is skipped, every 11th a failed fit.
        alpha_loc: centre of the alphas (normal, sd 1.2, clipped at 1.05).
    """
    rng = np.random.default_rng(seed)
    now = written_at or datetime.now(timezone.utc)
    key = model_key(source, repo_id, revision, analysis_version)
    files = list(files) if files is not None else [f"{repo_id}@{revision}/model.safetensors"]
    base = {"model_key": key, "written_at": now}
    layers, spectra_rows, file_rows = [], [], []
    for name in files:
        sha = file_sha(name)
        file_rows.append({**base, "file": name.rsplit("/", 1)[-1] if "/" in name else name,
                          "file_sha256": sha, "analysis_version": analysis_version,
                          "size": 4096 * n_layers, "reused": False})
        for i in range(n_layers):
            layers.append(_layer_row(rng, i, sha=sha, file=name, version=analysis_version,
                                     alpha_loc=alpha_loc, base=base))
            if spectra and layers[-1]["status"] == "ok":
                tail = np.minimum(rng.pareto(layers[-1]["alpha"] - 1, n_evals), 1e6)
                ev = np.sort(tail + 0.01).astype(np.float32)
                spectra_rows.append({"file_sha256": sha, "tensor": layers[-1]["tensor"],
                                     "analysis_version": analysis_version, "convention": "ww",
                                     "longname": layers[-1]["longname"], "evals": ev,
                                     "written_at": now})
    for name in reused:
        file_rows.append({**base, "file": name.rsplit("/", 1)[-1], "file_sha256": file_sha(name),
                          "analysis_version": analysis_version, "size": 4096 * n_layers,
                          "reused": True})
    # Distinct names inside one model (two content names may share a basename).
    seen: dict[str, int] = {}
    for r in file_rows:
        n = seen.get(r["file"], 0)
        seen[r["file"]] = n + 1
        if n:
            r["file"] = f"{r['file']}.{n}"
    fails = [{**base, "source": source, "repo_id": repo_id, "revision": revision,
              "analysis_version": analysis_version, "stage": "read", "file": files[0] if files else None,
              "error_class": "MalformedCheckpoint", "message": "synthetic failure",
              "attempt": a + 1, "scan_id": None} for a in range(failures)]
    ok = [r["alpha"] for r in layers if r["status"] == "ok"]
    model = {
        "model_key": key, "source": source, "repo_id": repo_id, "revision": revision,
        "analysis_version": analysis_version, "convention": "ww", "arch": arch,
        "model_type": arch.lower() if arch else None, "library": "transformers",
        "params": int(n_layers * len(files) * 4096), "downloads": int(rng.integers(0, 10**6)),
        "likes": int(rng.integers(0, 1000)), "tags": ["synthetic"], "status": status,
        "n_tensors": len(layers), "n_analysed": len(ok),
        "n_skipped": sum(r["status"] == "skipped" for r in layers),
        "n_failed": sum(r["status"] == "fit-failed" for r in layers),
        "alpha_mean": float(np.mean(ok)) if ok else None,
        "alpha_median": float(np.median(ok)) if ok else None,
        "written_at": now,
    }
    return ModelResult(model=model, model_files=file_rows, layers=layers, spectra=spectra_rows,
                       failures=fails, source=source, scan_date=scan_date)


def _layer_row(rng: np.random.Generator, i: int, *, sha: str, file: str, version: str,
               alpha_loc: float, base: dict[str, Any]) -> dict[str, Any]:
    tensor = f"encoder.layer.{i // 4}.{('query', 'key', 'value', 'dense')[i % 4]}.weight"
    row: dict[str, Any] = {
        "file_sha256": sha, "tensor": tensor, "analysis_version": version, "convention": "ww",
        "fitter": "ww", "longname": tensor.removesuffix(".weight"), "layer_id": i,
        "file": file.rsplit("/", 1)[-1], "dtype": "F32", **base,
    }
    if i % 7 == 6:
        return {**row, "kind": "skipped", "shape": [int(rng.integers(8, 64))], "status": "skipped",
                "skip_reason": "1-D tensor"}
    n, m = int(rng.integers(64, 1024)), int(rng.integers(32, 64))
    lam_max = float(rng.lognormal(1.0, 0.5))
    row.update(kind="dense", shape=[n, m], N=n, M=m, rf=1, Q=n / m, num_evals=m,
               sv_max=lam_max ** 0.5, lambda_max=lam_max, spectral_norm=lam_max,
               log_spectral_norm=float(np.log10(lam_max)), norm=lam_max * 5,
               log_norm=float(np.log10(lam_max * 5)), stable_rank=5.0, matrix_rank=m,
               rank_loss=0, weak_rank_loss=0, eig_s=1e-3, fit_s=1e-3)
    if i % 11 == 10:
        return {**row, "status": "fit-failed", "warning": "failed", "alpha": None}
    alpha = float(max(1.05, rng.normal(alpha_loc, 1.2)))
    warning = "over-trained" if alpha < 2 else "under-trained" if alpha > 6 else None
    return {**row, "status": "ok", "alpha": alpha, "xmin": lam_max / 10, "xmax": lam_max,
            "D": float(rng.uniform(0.02, 0.2)), "sigma": 0.1, "num_pl_spikes": int(rng.integers(3, 30)),
            "warning": warning, "alpha_weighted": alpha * float(np.log10(lam_max)),
            "log_alpha_norm": float(alpha * np.log10(lam_max)) + 0.1}


def with_time(result: ModelResult, when: datetime) -> ModelResult:
    """The same rows stamped with another ``written_at`` (a later retry of the same unit)."""
    def stamp(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**r, "written_at": when} for r in rows]

    return ModelResult(model={**result.model, "written_at": when},
                       model_files=stamp(result.model_files), layers=stamp(result.layers),
                       spectra=stamp(result.spectra), failures=stamp(result.failures),
                       source=result.source, scan_date=result.scan_date)


def later(seconds: float = 1.0) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)
