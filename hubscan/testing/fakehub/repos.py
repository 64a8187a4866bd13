"""The fake hub's repo model: files, repos and revisions, with the Hub's identities.

The real client checks what it is served against ids it computes itself: a file's git blob
oid (of the LFS *pointer* for LFS files), its sha256, the commit sha a revision resolves to.
So the model computes them exactly as git and git-lfs do, and everything that speaks HTTP
(``catalogue``, ``files``) only reads these objects. Nothing here knows about HTTP.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LFS_SUFFIXES", "FakeFile", "FakeRepo", "commit_sha", "commit_time", "nbytes", "safetensors_bytes"]

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".gguf", ".ckpt")
_CHUNK = 64 * 1024


@dataclass
class FakeFile:
    """One file of a fake repo, held in memory (``data``) or served from ``disk``."""

    path: str
    size: int
    sha256: str
    git_oid: str
    lfs: bool
    data: bytes | None = None
    disk: Path | None = None

    @classmethod
    def from_bytes(cls, path: str, data: bytes, *, lfs: bool | None = None) -> FakeFile:
        lfs = path.endswith(LFS_SUFFIXES) if lfs is None else lfs
        sha = hashlib.sha256(data).hexdigest()
        oid = _git_oid(_lfs_pointer(sha, len(data)) if lfs else data)
        return cls(path=path, size=len(data), sha256=sha, git_oid=oid, lfs=lfs, data=data)

    @classmethod
    def from_disk(cls, path: str, disk: str | Path, *, sha256: str | None = None) -> FakeFile:
        disk = Path(disk)
        size = disk.stat().st_size
        if sha256 is None:
            h = hashlib.sha256()
            with disk.open("rb") as f:
                while chunk := f.read(8 << 20):
                    h.update(chunk)
            sha256 = h.hexdigest()
        oid = _git_oid(_lfs_pointer(sha256, size))
        return cls(path=path, size=size, sha256=sha256, git_oid=oid, lfs=True, disk=disk)

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` in chunks of at most 64 KiB."""
        if self.data is not None:
            mv = memoryview(self.data)
            for i in range(start, end, _CHUNK):
                yield bytes(mv[i : min(end, i + _CHUNK)])
            return
        assert self.disk is not None
        with self.disk.open("rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                b = f.read(min(_CHUNK * 16, left))
                if not b:
                    return
                left -= len(b)
                yield b

    @property
    def pointer_size(self) -> int:
        return len(_lfs_pointer(self.sha256, self.size))


@dataclass
class FakeRepo:
    """A model repo: its current files and every past revision (sha → files)."""

    repo_id: str
    files: dict[str, FakeFile]
    sha: str
    gated: Any = False  # False | "auto" | "manual"
    private: bool = False
    downloads: int = 0
    likes: int = 0
    tags: list[str] = field(default_factory=list)
    library_name: str | None = None
    pipeline_tag: str | None = None
    created_at: str = "2024-01-01T00:00:00.000Z"
    last_modified: str = "2024-01-01T00:00:00.000Z"
    trending_score: int = 0
    granted: set[str] = field(default_factory=set)  # users allowed into a gated/private repo
    revisions: dict[str, dict[str, FakeFile]] = field(default_factory=dict)
    revision_meta: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def author(self) -> str | None:
        return self.repo_id.split("/")[0] if "/" in self.repo_id else None

    def snapshot(self, rev: str) -> tuple[str, dict[str, FakeFile]] | None:
        rev = urllib.parse.unquote(rev)
        if rev in ("main", self.sha):
            return self.sha, self.files
        if rev in self.revisions:
            return rev, self.revisions[rev]
        return None

    def config(self, files: Mapping[str, FakeFile] | None = None) -> dict | None:
        f = (files or self.files).get("config.json")
        if f is None or f.data is None:
            return None
        try:
            return json.loads(f.data)
        except ValueError:
            return None

    def card_data(self, files: Mapping[str, FakeFile] | None = None) -> dict | None:
        """The YAML front matter of ``README.md`` (the Hub's ``cardData``), or ``None``.

        Parsed by ``huggingface_hub``'s own card parser, so what the client reads back
        (``ModelInfo.card_data``: ``eval_results`` from ``model-index`` …) is what a card on
        the Hub would give."""
        f = (files or self.files).get("README.md")
        if f is None or f.size > 1_000_000:
            return None
        try:
            from huggingface_hub.repocard import RepoCard

            data = RepoCard(b"".join(f.chunks(0, f.size)).decode(), ignore_metadata_errors=True).data.to_dict()
        except Exception:  # noqa: BLE001 - a card the Hub could not parse shows no cardData
            return None
        return data or None

    def base_models(self, files: Mapping[str, FakeFile] | None = None) -> dict | None:
        """The Hub's ``baseModels`` expand: ``{"relation": …, "models": [{"id": …}]}`` from the
        card's ``base_model`` (a string or a list), or None when the card names none.

        The relation is the card's ``base_model_relation`` when given; else the Hub's inference:
        ``adapter`` when the repo has an ``adapter_config.json``, ``quantized`` when it holds GGUF
        files or its ``config.json`` has a ``quantization_config``, ``merge`` when the card names
        several base models, ``finetune`` otherwise.
        """
        files = files or self.files
        card = self.card_data(files) or {}
        bases = card.get("base_model")
        if isinstance(bases, str):
            bases = [bases]
        if not isinstance(bases, list) or not bases:
            return None
        relation = card.get("base_model_relation")
        if relation not in ("adapter", "merge", "quantized", "finetune"):
            config = self.config(files) or {}
            if "adapter_config.json" in files:
                relation = "adapter"
            elif any(p.endswith(".gguf") for p in files) or "quantization_config" in config:
                relation = "quantized"
            elif len(bases) > 1:
                relation = "merge"
            else:
                relation = "finetune"
        return {"relation": relation, "models": [{"id": str(b)} for b in bases]}

    def safetensors_info(self, files: Mapping[str, FakeFile] | None = None) -> dict | None:
        """Parameter counts per dtype over the top-level safetensors files (as the Hub does)."""
        params: dict[str, int] = {}
        found = False
        for f in (files or self.files).values():
            if "/" in f.path or not f.path.endswith(".safetensors"):
                continue
            header = _safetensors_header(f)
            if header is None:
                continue
            found = True
            for k, v in header.items():
                if k == "__metadata__":
                    continue
                n = 1
                for s in v["shape"]:
                    n *= s
                params[v["dtype"]] = params.get(v["dtype"], 0) + n
        return {"parameters": params, "total": sum(params.values())} if found else None

    def gguf_info(self, files: Mapping[str, FakeFile] | None = None) -> dict | None:
        """The Hub's ``gguf`` expand for a repo with GGUF files: parameter total and
        architecture of the first one (read through hubscan's own header parser)."""
        from ...readers.gguf import parse_gguf_header

        for p in sorted(files or self.files):
            f = (files or self.files)[p]
            if "/" in p or not p.endswith(".gguf"):
                continue
            data = f.data if f.data is not None else (f.disk.read_bytes() if f.disk else b"")
            pos = 0

            def read(n: int, data: bytes = data) -> bytes:
                nonlocal pos
                pos += n
                return data[pos - n:pos]

            try:
                h = parse_gguf_header(read, file_size=len(data))
            except Exception:  # noqa: BLE001 - a hostile test file: the Hub would show nothing
                return None
            total = 0
            for t in h.tensors:
                n = 1
                for d in t.dims:
                    n *= d
                total += n
            return {"total": total, "architecture": h.architecture}
        return None

    def all_tags(self) -> list[str]:
        tags = list(self.tags)
        for t in (self.library_name, self.pipeline_tag):
            if t and t not in tags:
                tags.append(t)
        if any(p.endswith(".safetensors") for p in self.files) and "safetensors" not in tags:
            tags.append("safetensors")
        return tags


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _safetensors_header(f: FakeFile) -> dict | None:
    try:
        head = b"".join(f.chunks(0, min(8, f.size)))
        (n,) = struct.unpack("<Q", head)
        return json.loads(b"".join(f.chunks(8, 8 + n)))
    except Exception:
        return None


def commit_sha(repo_id: str, files: Mapping[str, FakeFile], counter: int) -> str:
    """A commit sha for this tree, unique per commit (``counter``) as a real one is."""
    h = hashlib.sha1(f"{repo_id}\0{counter}".encode())
    for p in sorted(files):
        h.update(f"{p}\0{files[p].git_oid}\n".encode())
    return h.hexdigest()


def commit_time(counter: int) -> str:
    """The Hub's ISO timestamp for the ``counter``-th commit: one minute apart, deterministic."""
    t = time.gmtime(1_700_000_000 + counter * 60)
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", t)


def safetensors_bytes(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    """A safetensors file (bytes) of numpy arrays or torch tensors, via the safetensors library."""
    import numpy as np

    arrays = {}
    torch_like = False
    for k, v in tensors.items():
        if hasattr(v, "detach"):
            torch_like = True
            break
        arrays[k] = np.ascontiguousarray(v)
    if torch_like:
        from safetensors.torch import save

        return save({k: v.detach().contiguous() for k, v in tensors.items()}, metadata=dict(metadata or {}) or None)
    from safetensors.numpy import save

    return save(arrays, metadata=dict(metadata or {}) or None)


def nbytes(v: Any) -> int:
    """Bytes of a numpy array or torch tensor (the index's ``total_size``)."""
    if hasattr(v, "nbytes"):
        return int(v.nbytes)
    return int(v.numel() * v.element_size())
