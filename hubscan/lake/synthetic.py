"""Synthetic ``ModelResult``s with plausible rows, for lake tests, benchmarks and demos.

The lake only moves rows; it does not care how the numbers were computed. So its tests and
its benchmark build units of work here — fast, deterministic (seeded), with the shapes the
pipeline produces: several files per model, shared files (content dedup), skipped and
failed layers, warnings that follow METHOD.md §3 (``over-trained`` if alpha < 2,
``under-trained`` if alpha > 6), spectra as float32 lists.

``synthetic_result`` builds one unit as row dicts (the writer's real input). ``write_synthetic_lake``
builds a whole lake of millions of layer rows column-wise with numpy (``hubscan lake synth``):
the same row shapes, written in batches of many units per file, as a long-lived lake looks
after compaction — for the explorer's and the views' benchmarks.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..refs import model_key
from ..results import ModelResult

if TYPE_CHECKING:
    from . import Lake

__all__ = ["synthetic_result", "file_sha", "write_synthetic_lake", "SynthReport", "SYNTH_ARCHS"]

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


# --------------------------------------------------------------------------------------------
# A whole lake, column-wise (hubscan lake synth)
# --------------------------------------------------------------------------------------------
#: Architectures of the generated lake, each with its own centre of the alpha distribution.
SYNTH_ARCHS = (("LlamaForCausalLM", 3.2), ("BertModel", 3.6), ("GPT2LMHeadModel", 4.1),
               ("MistralForCausalLM", 3.0), ("ViTModel", 3.9), ("ResNet", 2.9),
               ("T5ForConditionalGeneration", 4.4), ("CLIPModel", 3.4))
_LIBRARIES = ("transformers", "transformers", "transformers", "timm", "diffusers")
_PIPELINES = ("text-generation", "fill-mask", "feature-extraction", "image-classification",
              "text2text-generation", None)
_PHASES = ("heavy-tailed", "heavy-tailed", "bulk+spikes", "bulk-decay", "bleeding-out",
           "random-like")
_LATEST_DAY, _OLD_DAY = "2026-11-23", "2026-11-20"


@dataclass(frozen=True)
class SynthReport:
    """What ``write_synthetic_lake`` wrote."""

    repos: int
    units: int
    layer_rows: int        # stored rows of the ``layers`` table
    model_layer_rows: int  # rows of the ``layers`` view (forks see their base's layers too)
    spectra_rows: int
    files: int
    seconds: float


def write_synthetic_lake(lake: "Lake", *, models: int = 10_000, layers: int = 100,
                         n_evals: int = 32, seed: int = 0, revision_every: int = 10,
                         fork_every: int = 20, units_per_file: int = 1000,
                         source: str = "hf") -> SynthReport:
    """Write ``models`` repos of ``layers`` tensors each, column-wise (no row dicts).

    Shapes of a real lake: 8 architectures with different alpha centres, every
    ``revision_every``-th repo also has an older revision (3 days earlier), every
    ``fork_every``-th repo is a fork that only reuses its neighbour's weight file (content
    dedup: ``model_files`` rows, no layer rows), every 7th tensor skipped, every 11th a failed
    fit, warnings by METHOD.md §3, and ``repo_events`` for the new revisions plus a few deleted
    and renamed repos. Spectra are consistent with the rows (``xmin`` is an eigenvalue, the
    tail above it has ``num_pl_spikes`` values, ``lambda_max`` is the largest), so every
    per-layer picture can be drawn. Deterministic for a seed; one file per table per batch of
    ``units_per_file`` units (the models file last, as the writer's commit order).
    """
    from .schema import conform_table
    from .writer import encode_parquet, partition_dir, sort_table, unit_file_name

    if fork_every == 1 or models < 1 or layers < 1 or n_evals < 8:
        raise ValueError("write_synthetic_lake: need models >= 1, layers >= 1, n_evals >= 8 and "
                         "fork_every 0 (no forks) or >= 2 (a fork's base is never a fork)")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    base_time = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
    # Units: every repo's latest revision, plus an older one for every revision_every-th repo.
    def is_fork(i: int) -> bool:
        return bool(fork_every) and i % fork_every == fork_every - 1

    units: list[tuple[int, str, bool]] = []  # (repo index, revision, is_latest)
    for i in range(models):
        if revision_every and i % revision_every == revision_every - 1 and not is_fork(i):
            units.append((i, "r0", False))
        units.append((i, "r1", True))
    names = [f"model.layers.{i // 4}.{('q_proj', 'k_proj', 'v_proj', 'o_proj')[i % 4]}.weight"
             for i in range(layers)]
    tensor_names = np.array(names, dtype=object)
    layer_ids = np.arange(layers)
    skipped = layer_ids % 7 == 6
    failed = (layer_ids % 11 == 10) & ~skipped
    ok_mask = ~skipped & ~failed
    registry = lake.registry
    files = rows = model_rows = spectra_rows = 0
    summary: dict[tuple[int, str], tuple[float, float]] = {}  # (repo, revision) -> mean, median

    def write(table: str, cols: dict[str, Any], day: str, unit: str) -> None:
        nonlocal files
        schema = registry[table]
        t = sort_table(schema, conform_table(schema, _arrow_table(cols)))
        folder = partition_dir(schema, {"source": source, "scan_date": day})
        lake.storage.write_atomic(lake.storage.path(table, folder, unit_file_name(unit, schema.version)),
                                  encode_parquet(schema, t))
        files += 1

    for day in (_OLD_DAY, _LATEST_DAY):
        day_units = [u for u in units if (u[1] == "r0") == (day == _OLD_DAY)]
        for b in range(0, len(day_units), units_per_file):
            batch = day_units[b:b + units_per_file]
            unit_key = f"synth:{seed}:{day}:{b}"
            keys, mrows, frows = [], [], []
            analysed = [u for u in batch if not is_fork(u[0])]
            n = len(analysed)
            # --- layer numbers, one block of `layers` rows per analysed unit
            arch_loc = np.array([SYNTH_ARCHS[u[0] % len(SYNTH_ARCHS)][1] for u in analysed])
            loc = np.repeat(arch_loc - 0.3 * np.array([u[1] == "r1" for u in analysed]), layers)
            alpha = np.maximum(1.05, rng.normal(loc, 1.2))
            k_tail = rng.integers(3, max(4, n_evals // 2), n * layers)
            # Eigenvalues from a power law of exponent alpha on [1, 1e6] (inverse CDF: no
            # clipping, so no ties), times a per-layer scale.
            a = alpha[:, None]
            u = rng.random((n * layers, n_evals))
            tail = (1.0 - u * (1.0 - 1e6 ** (1.0 - a))) ** (-1.0 / (a - 1.0))
            scale = rng.lognormal(0.0, 0.5, n * layers)
            ev = np.sort(tail * scale[:, None], axis=1).astype(np.float32)
            idx = np.arange(n * layers)
            xmin = ev[idx, n_evals - k_tail].astype(np.float64)
            k_tail = (ev >= ev[idx, n_evals - k_tail][:, None]).sum(axis=1)  # float32 ties count
            lam_max = ev[:, -1].astype(np.float64)
            big_n = rng.integers(n_evals, 64 * n_evals, n * layers)
            total = ev.astype(np.float64).sum(axis=1)
            ok = np.tile(ok_mask, n)
            fail = np.tile(failed, n)
            skip = np.tile(skipped, n)
            warning = np.where(alpha < 2, "over-trained", np.where(alpha > 6, "under-trained", None))
            warning = np.where(fail, "failed", np.where(ok, warning, None))
            phase = np.array(_PHASES, dtype=object)[rng.integers(0, len(_PHASES), n * layers)]
            unit_sha, unit_key_of, unit_time = [], [], []
            for (i, rev, latest) in analysed:
                repo = _synth_repo(i)
                unit_sha.append(file_sha(f"{repo}@{rev}/model.safetensors"))
                unit_key_of.append(model_key(source, repo, rev, ANALYSIS_VERSION))
                unit_time.append((base_time - (timedelta(days=3) if not latest else timedelta())
                                  + timedelta(seconds=i)).replace(tzinfo=None))  # numpy: naive UTC
            sha = np.repeat(np.array(unit_sha, dtype=object), layers)
            mk = np.repeat(np.array(unit_key_of, dtype=object), layers)
            when = np.repeat(np.array(unit_time, dtype="datetime64[us]"), layers)
            fitted = ok
            nan = np.full(n * layers, np.nan)
            layer_cols = {
                "file_sha256": sha, "tensor": np.tile(tensor_names, n),
                "analysis_version": ANALYSIS_VERSION, "convention": "ww", "fitter": "ww",
                "longname": np.tile(np.array([t.removesuffix(".weight") for t in names], dtype=object), n),
                "layer_id": np.tile(layer_ids, n), "file": "model.safetensors",
                "kind": np.where(skip, "skipped", "dense"),
                "shape": [[int(a), n_evals] if not s else [n_evals] for a, s in zip(big_n, skip)],
                "dtype": "BF16", "status": np.where(skip, "skipped", np.where(fail, "fit-failed", "ok")),
                "skip_reason": np.where(skip, "1-D tensor", None),
                "N": np.where(skip, None, big_n), "M": np.where(skip, None, n_evals),
                "rf": np.where(skip, None, 1), "Q": np.where(skip, nan, big_n / n_evals),
                "num_evals": np.where(skip, None, n_evals),
                "sv_max": np.where(skip, nan, np.sqrt(lam_max)),
                "lambda_max": np.where(skip, nan, lam_max),
                "alpha": np.where(fitted, alpha, nan), "xmin": np.where(fitted, xmin, nan),
                "xmax": np.where(fitted, lam_max, nan),
                "D": np.where(fitted, rng.uniform(0.02, 0.2, n * layers), nan),
                "sigma": np.where(fitted, (alpha - 1) / np.sqrt(k_tail), nan),
                "num_pl_spikes": np.where(fitted, k_tail, None), "warning": warning,
                "norm": np.where(skip, nan, total), "log_norm": np.where(skip, nan, np.log10(total)),
                "spectral_norm": np.where(skip, nan, lam_max),
                "log_spectral_norm": np.where(skip, nan, np.log10(lam_max)),
                "alpha_weighted": np.where(fitted, alpha * np.log10(lam_max), nan),
                "log_alpha_norm": np.where(fitted, np.log10(np.sum(
                    ev.astype(np.float64) ** np.minimum(alpha, 8.0)[:, None], axis=1)), nan),
                "stable_rank": np.where(skip, nan, total / lam_max),
                "matrix_rank": np.where(skip, None, n_evals),
                "rank_loss": np.where(skip, None, 0), "weak_rank_loss": np.where(skip, None, 0),
                "bulk_max": np.where(skip, nan, ev[idx, np.maximum(n_evals - k_tail - 1, 0)]),
                "phase": np.where(skip, None, phase),
                "eig_s": 1e-3, "fit_s": 1e-3, "model_key": mk, "written_at": when,
            }
            spec_sel = np.flatnonzero(ok)
            spectra_cols = {
                "file_sha256": sha[spec_sel], "tensor": layer_cols["tensor"][spec_sel],
                "analysis_version": ANALYSIS_VERSION, "convention": "ww",
                "longname": layer_cols["longname"][spec_sel], "evals": ev[spec_sel],
                "written_at": when[spec_sel],
            }
            # --- per-unit rows: models (commit marker) and model_files
            alpha_block = np.where(np.tile(ok_mask, n), alpha, np.nan).reshape(n, layers)
            for j, (i, rev, latest) in enumerate(analysed):
                a = alpha_block[j][ok_mask]
                summary[(i, rev)] = (float(np.mean(a)), float(np.median(a)))
            for (i, rev, latest) in batch:
                repo = _synth_repo(i)
                arch = SYNTH_ARCHS[i % len(SYNTH_ARCHS)][0]
                key = model_key(source, repo, rev, ANALYSIS_VERSION)
                when_u = base_time - (timedelta(days=3) if not latest else timedelta()) + timedelta(seconds=i)
                fork = is_fork(i)
                own = file_sha(f"{repo}@{rev}/model.safetensors")
                base_sha = file_sha(f"{_synth_repo(i - 1)}@r1/model.safetensors") if fork else own
                frows.append({"model_key": key, "file": "model.safetensors", "file_sha256": base_sha,
                              "analysis_version": ANALYSIS_VERSION, "size": layers * 2 * 4096 * n_evals,
                              "reused": fork, "written_at": when_u})
                mean, median = summary.get((i - 1, "r1") if fork else (i, rev), (None, None))
                r = np.random.default_rng((seed, i, rev == "r1"))
                mrows.append({
                    "model_key": key, "source": source, "repo_id": repo, "revision": rev,
                    "analysis_version": ANALYSIS_VERSION, "convention": "ww", "arch": arch,
                    "model_type": arch.lower().removesuffix("model").removesuffix("forcausallm") or arch.lower(),
                    "library": _LIBRARIES[i % len(_LIBRARIES)],
                    "params": int(r.integers(10, 70_000)) * 1_000_000,
                    "downloads": int(r.pareto(1.2) * 1000), "likes": int(r.pareto(1.5) * 10),
                    "tags": ["synthetic", arch], "status": "ok", "n_tensors": layers,
                    "n_analysed": int(ok_mask.sum()), "n_skipped": int(skipped.sum()),
                    "n_failed": int(failed.sum()), "alpha_mean": mean, "alpha_median": median,
                    "meta_json": json.dumps({"pipeline_tag": _PIPELINES[i % len(_PIPELINES)]}),
                    "written_at": when_u,
                })
                keys.append(key)
                model_rows += layers
            if n:
                write("spectra", spectra_cols, day, unit_key)
                write("layers", layer_cols, day, unit_key)
                rows += n * layers
                spectra_rows += len(spec_sel)
            write("model_files", _columns(frows), day, unit_key)
            write("models", _columns(mrows), day, unit_key)
    # --- repo events (new revisions, some deletions and renames) and one scans row per day
    events = []
    for i in range(models):
        repo = _synth_repo(i)
        when = base_time + timedelta(seconds=i)
        if revision_every and i % revision_every == revision_every - 1 and not is_fork(i):
            events.append({"source": source, "repo_id": repo, "event": "new_revision", "revision": "r1",
                           "previous_revision": "r0", "seen_at": when, "written_at": when})
        if i % 97 == 96:
            events.append({"source": source, "repo_id": repo, "event": "deleted", "revision": "r1",
                           "seen_at": when, "written_at": when})
        elif i % 89 == 88:
            events.append({"source": source, "repo_id": repo, "event": "renamed", "revision": "r1",
                           "new_repo_id": repo + "-renamed", "seen_at": when, "written_at": when})
    if events:
        write("repo_events", _columns(events), _LATEST_DAY, f"synth:{seed}:events")
    for day in (_OLD_DAY, _LATEST_DAY):
        start = datetime.fromisoformat(day).replace(hour=2, tzinfo=timezone.utc)
        n_day = sum(1 for u in units if (u[1] == "r0") == (day == _OLD_DAY))
        schema = registry["scans"]
        t = conform_table(schema, _arrow_table(_columns([{
            "scan_id": f"synth-{seed}-{day}", "spec_name": "synthetic", "started_at": start,
            "finished_at": start + timedelta(hours=1), "status": "done", "n_planned": n_day,
            "n_skipped": 0, "n_done": n_day, "n_failed": 0, "written_at": start + timedelta(hours=1)}])))
        name = unit_file_name(f"synth:{seed}:scan:{day}", schema.version)
        path = lake.storage.path("scans", f"scan_date={day}", name)
        lake.storage.write_atomic(path, encode_parquet(schema, t))
        files += 1
    return SynthReport(repos=models, units=len(units), layer_rows=rows,
                       model_layer_rows=model_rows, spectra_rows=spectra_rows,
                       files=files, seconds=time.perf_counter() - t0)


def _synth_repo(i: int) -> str:
    return f"org{i % 97:02d}/model-{i:06d}"


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    names: dict[str, None] = {}
    for r in rows:
        names.update(dict.fromkeys(r))
    return {k: [r.get(k) for r in rows] for k in names}


def _arrow_table(cols: dict[str, Any]):
    """Columns (numpy arrays, lists or one scalar for every row) as an Arrow table."""
    import pyarrow as pa

    n = next(len(v) for v in cols.values() if not isinstance(v, (str, int, float)) and v is not None)
    arrays = {}
    for name, v in cols.items():
        if isinstance(v, np.ndarray) and v.ndim == 2:  # eigenvalues: one list per row
            flat = pa.array(v.reshape(-1))
            offsets = pa.array(np.arange(0, v.size + 1, v.shape[1], dtype=np.int32))
            arrays[name] = pa.ListArray.from_arrays(offsets, flat)
        elif isinstance(v, np.ndarray) and v.dtype.kind == "f":
            arrays[name] = pa.array(v, from_pandas=True)  # NaN = no value: NULL, as the writer
        elif isinstance(v, np.ndarray) and v.dtype.kind == "M":
            arrays[name] = pa.array(v, type=pa.timestamp("us", tz="UTC"))
        elif isinstance(v, np.ndarray):
            arrays[name] = pa.array(v.tolist())
        elif isinstance(v, (str, int, float)):
            arrays[name] = pa.array([v] * n)
        else:
            arrays[name] = pa.array(v)
    return pa.table(arrays)
