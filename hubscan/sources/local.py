"""Local checkpoints: files, folders, globs — and the Hugging Face cache.

A local model has no commit sha, so its revision is a **content hash**: sha256 over the
sha256 of each weight file, in reading order. Renaming or moving a folder keeps the
revision (and the lake keeps its results); changing one byte makes a new revision. Each
``WeightFile.sha256`` is the file's own sha256, so results dedupe with hub copies of the
same file. Files are hashed in 8 MiB chunks (never whole in memory), once per process for
an unchanged (size, mtime).

The HF cache (``hf-cache://[owner/name][@rev]``, or a cache folder given as a path) is read
with ``huggingface_hub.scan_cache_dir``; each cached snapshot becomes an ``hf`` model at
its commit, with ``location`` set so that ``open_model`` reads the cached files and never
the network. The LFS sha256 is the blob's file name in the cache, so nothing is rehashed.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, NotFound, UnsafeCheckpoint
from ..refs import ModelRef, TensorRef, WeightFile
from .base import PICKLE_SUFFIXES, FetchStats, matches_files, select_weight_files

__all__ = ["LocalSource", "HfCacheSource", "file_sha256", "content_revision", "is_hf_cache_dir"]

_GENERIC_STEMS = {"model", "pytorch_model", "diffusion_pytorch_model", "consolidated", "weights", "checkpoint",
                  "model.safetensors", "pytorch_model.bin"}
_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_DEPTH = 6


def file_sha256(path: str | os.PathLike[str], *, chunk: int = 8 << 20) -> str:
    """sha256 of a file, streamed in chunks; memoised per (path, size, mtime) in-process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASH_CACHE:
            return _HASH_CACHE[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    digest = h.hexdigest()
    with _HASH_LOCK:
        _HASH_CACHE[key] = digest
    return digest


def content_revision(file_hashes: Sequence[str]) -> str:
    """The revision of a local model: sha256 over its files' sha256s, in reading order."""
    h = hashlib.sha256()
    for d in file_hashes:
        h.update(d.encode() + b"\n")
    return h.hexdigest()


def is_hf_cache_dir(path: Path) -> bool:
    """A Hugging Face hub cache folder (``models--owner--name`` entries)."""
    return path.is_dir() and any(c.name.startswith("models--") and c.is_dir() for c in path.iterdir())


def _read_config(folder: Path) -> dict[str, Any] | None:
    p = folder / "config.json"
    try:
        if p.is_file() and p.stat().st_size < 10_000_000:
            obj = json.loads(p.read_text())
            return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None
    return None


def _card_fields(folder: Path) -> dict[str, Any]:
    """``bases``/``evals`` from a model folder's ``README.md`` (its model card: ``base_model``,
    ``model-index``) and ``adapter_config.json`` (PEFT's ``base_model_name_or_path``)."""
    from .evals import card_evals
    from .lineage import adapter_links, card_links, merge_links

    card = None
    readme = folder / "README.md"
    if readme.is_file() and readme.stat().st_size < 10_000_000:
        from huggingface_hub import ModelCard

        try:
            card = ModelCard.load(readme, ignore_metadata_errors=True).data
        except Exception:  # noqa: BLE001 - a broken card just names no base and no result
            card = None
    from ..readers.adapter import read_adapter_config

    adapter = read_adapter_config(folder)
    names = [q.name for q in folder.iterdir() if q.is_file()] if folder.is_dir() else []
    return {"bases": merge_links(card_links(card, repo_files=names), adapter_links(adapter)),
            "evals": card_evals(card)}


def _arch_fields(config: dict[str, Any] | None) -> dict[str, Any]:
    archs = (config or {}).get("architectures") or []
    return {"arch": archs[0] if isinstance(archs, list) and archs else None,
            "model_type": (config or {}).get("model_type"), "config": config}


def _safetensors_params(paths: Sequence[Path]) -> int | None:
    """Parameter count from safetensors headers (cheap: headers only); None for pickles."""
    from ..readers import read_safetensors_header

    total = 0
    for p in paths:
        if p.suffix != ".safetensors":
            return None
        try:
            hdr = read_safetensors_header(p)
        except Exception:  # a bad header is the reader's error to report, later
            return None
        for e in hdr.entries:
            n = 1
            for s in e.shape:
                n *= s
            total += n
    return total


def _read_files(folder: Path, files: Sequence[WeightFile], *, allow_bin: bool, stats: FetchStats | None,
                only: Sequence[str] | None) -> Iterator[TensorRef]:
    """Tensors of local weight files, one file after another; ``file`` = repo-relative path."""
    from ..readers import read_checkpoint

    for wf in files:
        if not matches_files(wf.path, only):
            continue
        p = folder / wf.path
        if not p.is_file():
            raise NotFound(f"{p}: weight file is gone")
        if wf.size is not None and p.stat().st_size != wf.size:
            raise IntegrityError(f"{p}: {p.stat().st_size} bytes now, {wf.size} when it was resolved")
        if p.suffix.lower() in PICKLE_SUFFIXES and not allow_bin:
            raise UnsafeCheckpoint(f"{p}: pickle weights are disabled (allow_bin=False)")
        for t in read_checkpoint(p, allow_pickle=allow_bin):
            yield dataclasses.replace(t, file=wf.path)


class LocalSource:
    """Files, folders and globs on disk (``./dir``, ``file:///x/model.safetensors``, ``ckpts/*``)."""

    scheme = "file"

    def resolve(self, uri: str, *, allow_bin: bool = True, **_: Any) -> list[ModelRef]:
        """Every model under a path or glob: a weight file, a shard index, a model folder,
        or a folder of model folders (each folder with weight files is one model)."""
        target = uri[len("file://"):] if uri.startswith("file://") else uri
        target = os.path.expanduser(target)
        if glob.has_magic(target):
            matches = sorted(glob.glob(target, recursive=True))
            if not matches:
                raise NotFound(f"{uri}: no file matches")
        else:
            if not os.path.exists(target):
                raise NotFound(f"{uri}: no such file or folder")
            matches = [target]
        refs: list[ModelRef] = []
        seen: set[tuple[str, str]] = set()
        for m in matches:
            for r in self._models_at(Path(m), allow_bin=allow_bin, explicit=not glob.has_magic(target)):
                key = (r.location or "", ",".join(f.path for f in r.files))
                if key not in seen:
                    seen.add(key)
                    refs.append(r)
        if not refs and not glob.has_magic(target):
            raise NotFound(f"{uri}: no weight files (*.safetensors, *.bin, *.pt, *.pth)")
        return refs

    def list(self, *, path: str = ".", allow_bin: bool = True, **_: Any) -> Iterator[ModelRef]:
        yield from self.resolve(path, allow_bin=allow_bin)

    def _models_at(self, path: Path, *, allow_bin: bool, explicit: bool) -> list[ModelRef]:
        if path.is_file():
            name = path.name
            if name.endswith(".index.json") or select_weight_files([name], allow_bin=allow_bin):
                return [self._model(path, allow_bin=allow_bin)]
            if explicit:
                raise NotFound(f"{path}: not a weight file")
            return []
        if is_hf_cache_dir(path):
            return HfCacheSource().resolve("hf-cache://", cache_dir=str(path), allow_bin=allow_bin)
        out: list[ModelRef] = []
        self._walk(path, path, out, allow_bin=allow_bin, depth=0)
        return out

    def _walk(self, root: Path, folder: Path, out: list[ModelRef], *, allow_bin: bool, depth: int) -> None:
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        if select_weight_files(names, allow_bin=allow_bin) or any(n.endswith(".index.json") for n in names):
            try:
                out.append(self._model(folder, allow_bin=allow_bin,
                                       name=folder.name if folder == root else folder.relative_to(root).as_posix()))
                return
            except NotFound:
                pass
        if depth >= _MAX_DEPTH:
            return
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            self._walk(root, sub, out, allow_bin=allow_bin, depth=depth + 1)

    def _model(self, path: Path, *, allow_bin: bool, name: str | None = None) -> ModelRef:
        from ..readers import checkpoint_files

        path = path.resolve()
        folder = path if path.is_dir() else path.parent
        paths = [p.resolve() for p in checkpoint_files(path)]
        if not allow_bin:
            paths = [p for p in paths if p.suffix.lower() not in PICKLE_SUFFIXES]
            if not paths:
                raise NotFound(f"{path}: only pickle weights, and allow_bin=False")
        hashes = [file_sha256(p) for p in paths]
        files = tuple(WeightFile(path=p.relative_to(folder).as_posix(), size=p.stat().st_size, sha256=h)
                      for p, h in zip(paths, hashes))
        if name is None:
            if path.is_dir():
                name = path.name
            else:
                stem = path.name.removesuffix(".index.json")
                stem = stem.rsplit(".", 1)[0] if "." in stem else stem
                name = folder.name if stem in _GENERIC_STEMS or stem.startswith("model-") else stem
        from ..readers.adapter import read_adapter_config

        meta: dict[str, Any] = {"path": str(path)}
        adapter = read_adapter_config(folder)
        if adapter is not None:
            meta["adapter_config"] = adapter
            meta["base_model"] = adapter.get("base_model_name_or_path")
        return ModelRef(
            source="local", repo_id=name, revision=content_revision(hashes), files=files,
            params=_safetensors_params(paths), location=str(folder), meta=meta,
            **_arch_fields(_read_config(folder)), **_card_fields(folder),
        )

    def open(self, ref: ModelRef, *, allow_bin: bool = True, stats: FetchStats | None = None,
             files: Sequence[str] | None = None) -> Iterator[TensorRef]:
        if not ref.location:
            raise NotFound(f"{ref.uri}: local model without a location")
        yield from _read_files(Path(ref.location), ref.files, allow_bin=allow_bin, stats=stats, only=files)


class HfCacheSource:
    """Models already in the Hugging Face cache (``hf-cache://[owner/name or glob][@rev]``).

    By default each cached repo contributes the revisions a ref (``main`` …) points to, or its
    newest snapshot when none does; ``all_revisions=True`` lists every cached snapshot.
    """

    scheme = "hf-cache"

    def resolve(self, uri: str = "hf-cache://", *, cache_dir: str | None = None, allow_bin: bool = True,
                all_revisions: bool = False, **_: Any) -> list[ModelRef]:
        from huggingface_hub import scan_cache_dir

        rest = uri.split("://", 1)[1] if "://" in uri else ""
        pattern, _, rev = rest.partition("@")
        pattern = pattern.strip("/") or "*"
        cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or None
        try:
            info = scan_cache_dir(cache_dir)
        except Exception as exc:  # CacheNotFound and friends
            raise NotFound(f"{uri}: no Hugging Face cache at {cache_dir or 'the default location'} ({exc})") from exc
        refs: list[ModelRef] = []
        for repo in sorted(info.repos, key=lambda r: r.repo_id):
            if repo.repo_type != "model" or not fnmatch.fnmatchcase(repo.repo_id, pattern):
                continue
            revs = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
            if rev:
                revs = [r for r in revs if r.commit_hash.startswith(rev) or rev in r.refs]
            elif not all_revisions:
                revs = [r for r in revs if r.refs] or revs[:1]
            for r in revs:
                ref = self._ref(repo.repo_id, r, allow_bin=allow_bin)
                if ref.files:
                    refs.append(ref)
        return refs

    def list(self, *, pattern: str = "*", cache_dir: str | None = None, allow_bin: bool = True,
             **kw: Any) -> Iterator[ModelRef]:
        yield from self.resolve(f"hf-cache://{pattern}", cache_dir=cache_dir, allow_bin=allow_bin, **kw)

    def _ref(self, repo_id: str, rev: Any, *, allow_bin: bool) -> ModelRef:
        snap = Path(rev.snapshot_path)
        by_rel = {Path(f.file_path).relative_to(snap).as_posix(): f for f in rev.files}
        paths = select_weight_files(by_rel, allow_bin=allow_bin)
        files = []
        for p in paths:
            f = by_rel[p]
            blob = Path(f.blob_path).name
            files.append(WeightFile(path=p, size=f.size_on_disk, sha256=blob if _HEX64.match(blob) else None))
        return ModelRef(
            source="hf", repo_id=repo_id, revision=rev.commit_hash, files=tuple(files), location=str(snap),
            params=_safetensors_params([snap / p for p in paths]),
            meta={"cached": True, "refs": sorted(rev.refs)}, **_arch_fields(_read_config(snap)),
            **_card_fields(snap),
        )

    def open(self, ref: ModelRef, *, allow_bin: bool = True, stats: FetchStats | None = None,
             files: Sequence[str] | None = None) -> Iterator[TensorRef]:
        if stats is not None:
            stats.bump("cache_hits", len(ref.files))
        yield from _read_files(Path(ref.location or ""), ref.files, allow_bin=allow_bin, stats=stats, only=files)
