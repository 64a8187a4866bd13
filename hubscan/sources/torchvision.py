"""torchvision's model zoo as a source: every builder × every published weight enum.

Why it matters: torchvision publishes ImageNet acc@1/acc@5 for each weight set, so alpha can
be correlated with accuracy across a series (VGG11…19, ResNet18…152) as the seeds do,
without any hub. Enumeration is free (``torchvision.models.list_models`` and the weight
enums are in the installed package); weights come from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<file>``, where ``torchvision`` itself puts them) or are
downloaded once into it, from ``download.pytorch.org`` or a mirror
(``HUBSCAN_TV_BASE_URL`` / ``base_url=``: ``<base>/<file name>``).

A model is ``tv://<builder>[:<WEIGHTS>]`` (``tv://resnet50:IMAGENET1K_V2``; no weights =
the enum's ``DEFAULT``; ``:*`` = all). Its revision is ``<WEIGHTS>-<hash prefix>``, the
sha256 prefix torchvision embeds in the file name (``resnet50-11ad3fa6.pth``), which pins
the bytes. Files are pickles read only through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import NotFound, UnsafeCheckpoint
from ..net.http import is_offline
from ..refs import ModelRef, TensorRef, WeightFile
from .base import FetchStats, matches_files

__all__ = ["TorchvisionSource", "TV_TASKS", "tv_cache_dir", "family_of", "revision_of"]

#: torchvision sub-modules → task names (``list_models(module=…)``).
TV_TASKS = ("classification", "detection", "segmentation", "video", "optical_flow", "quantization")

_HASH_RE = re.compile(r"-([0-9a-f]{6,64})\.(pth|pt|bin)$")


def tv_cache_dir() -> Path:
    """Where torchvision keeps downloaded weights: ``torch.hub.get_dir()/checkpoints``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


@lru_cache(maxsize=1)
def _task_map() -> dict[str, str]:
    import torchvision.models as tvm

    out: dict[str, str] = {}
    mods = {"classification": tvm}
    for t in TV_TASKS[1:]:
        mods[t] = getattr(tvm, t)
    for task, mod in mods.items():
        for name in tvm.list_models(module=mod):
            out.setdefault(name, task)
    for name in tvm.list_models():
        out.setdefault(name, "classification")
    return out


def family_of(name: str) -> str:
    """The model series of a builder name: ``vgg11_bn`` → ``vgg``, ``wide_resnet50_2`` →
    ``wide_resnet``, ``mobilenet_v3_large`` → ``mobilenet_v3`` (groups for alpha-vs-accuracy)."""
    base = name.removeprefix("quantized_")
    parts = base.split("_")
    head = re.match(r"[a-z]+", parts[0])
    fam = head.group(0) if head else parts[0]
    if fam == "wide" and len(parts) > 1:
        fam = "wide_" + (re.match(r"[a-z]+", parts[1]).group(0) if re.match(r"[a-z]+", parts[1]) else parts[1])
    elif len(parts) > 1 and re.fullmatch(r"v\d", parts[1]):
        fam = f"{fam}_{parts[1]}"
    return fam


def revision_of(weights: Any) -> str:
    """A weight enum's revision: ``<WEIGHTS>-<hash prefix>`` (``IMAGENET1K_V2-11ad3fa6``),
    the hash prefix torchvision embeds in the file name pinning the bytes."""
    m = _HASH_RE.search(weights.url.rsplit("/", 1)[-1])
    return f"{weights.name}-{m.group(1)}" if m else weights.name


def _number(x: Any) -> float | None:
    """A published metric, or None where torchvision has NaN (feature-extractor weights)."""
    return float(x) if isinstance(x, (int, float)) and x == x else None


class TorchvisionSource:
    """``tv://`` models (see module doc)."""

    scheme = "tv"

    def __init__(self, *, base_url: str | None = None, check_hash: bool = True) -> None:
        self._base_url = base_url
        self.check_hash = check_hash

    @property
    def base_url(self) -> str | None:
        return (self._base_url or os.environ.get("HUBSCAN_TV_BASE_URL") or "").rstrip("/") or None

    # -- catalogue

    def list(self, *, search: str | None = None, task: str | None = None, family: str | None = None,
             weights: str = "all", limit: int | None = None, **_: Any) -> Iterator[ModelRef]:
        """Every (builder, weights) pair, filtered.

        Args:
            search: fnmatch pattern (``resnet*``) or substring of the builder name.
            task: ``classification`` (the 80 ImageNet classifiers), ``detection`` …
            family: series name (``vgg``, ``resnet``; see ``family_of``).
            weights: ``all`` enums, or ``default`` (the builder's ``DEFAULT`` only).
        """
        import torchvision.models as tvm

        n = 0
        for name in tvm.list_models():
            if search and not (fnmatch.fnmatchcase(name, search) or search in name):
                continue
            if task and _task_map().get(name) != task:
                continue
            if family and family_of(name) != family:
                continue
            for ref in self._refs(name, "DEFAULT" if weights == "default" else "*"):
                yield ref
                n += 1
                if limit is not None and n >= limit:
                    return

    def resolve(self, uri: str, **_: Any) -> list[ModelRef]:
        """``tv://resnet50[:IMAGENET1K_V2|:DEFAULT|:*]``; the builder may be a glob (``tv://vgg*``)."""
        import torchvision.models as tvm

        rest = uri.split("://", 1)[1] if "://" in uri else uri
        name, _, wname = rest.strip("/").partition(":")
        names = [n for n in tvm.list_models() if fnmatch.fnmatchcase(n, name)]
        if not names:
            raise NotFound(f"{uri}: torchvision has no model {name!r}")
        refs = [r for n in names for r in self._refs(n, wname or "DEFAULT")]
        if not refs:
            raise NotFound(f"{uri}: no weights {wname!r} for {name}")
        return refs

    def _refs(self, name: str, which: str) -> list[ModelRef]:
        import torchvision.models as tvm

        try:
            enum = tvm.get_model_weights(name)
        except (ValueError, KeyError):
            return []
        members = list(enum)
        if which == "DEFAULT":
            default = getattr(enum, "DEFAULT", None)
            members = [default] if default is not None else members[:1]
        elif which != "*":
            members = [m for m in members if m.name == which]
        default = getattr(enum, "DEFAULT", None)
        return [self._ref(name, w, is_default=(w is default)) for w in members]

    def _ref(self, name: str, w: Any, *, is_default: bool) -> ModelRef:
        fname = w.url.rsplit("/", 1)[-1]
        m = _HASH_RE.search(fname)
        prefix = m.group(1) if m else None
        metrics = w.meta.get("_metrics", {})
        imagenet = metrics.get("ImageNet-1K", {})
        url = f"{self.base_url}/{fname}" if self.base_url else w.url
        task = _task_map().get(name, "classification")
        meta = {
            "weights": w.name, "url": w.url, "hash_prefix": prefix, "task": task, "family": family_of(name),
            "acc@1": _number(imagenet.get("acc@1")), "acc@5": _number(imagenet.get("acc@5")), "metrics": metrics,
            "num_params": w.meta.get("num_params"), "file_size_mb": w.meta.get("_file_size"),
            # torchvision's _file_size is in MiB (resnet18: 44.661 → 46,830,571 bytes).
            "est_bytes": int(w.meta["_file_size"] * 2**20) if w.meta.get("_file_size") else None,
            "gflops": w.meta.get("_ops"), "recipe": w.meta.get("recipe"), "default": is_default,
        }
        from .evals import torchvision_evals
        from .lineage import torchvision_links

        return ModelRef(
            source="tv", repo_id=name, revision=revision_of(w),
            files=(WeightFile(path=fname, url=url),), arch=name, model_type=family_of(name),
            library="torchvision", params=w.meta.get("num_params"), tags=(task, w.name), meta=meta,
            bases=torchvision_links(w, revision_of=revision_of), evals=torchvision_evals(metrics, task=task),
        )

    # -- reading

    def weight_path(self, ref: ModelRef, *, stats: FetchStats | None = None) -> Path:
        """The cached weight file, downloading it (hash-prefix checked) when missing."""
        from ..net.http import hub_headers
        from ..readers.stream import RemoteFile, download_file

        wf = ref.files[0]
        dest = tv_cache_dir() / wf.path
        if dest.is_file():
            if stats is not None:
                stats.bump("cache_hits")
            return dest
        if is_offline():
            raise NotFound(f"{ref.uri}: {dest} is not cached and offline mode is set")
        url = f"{self.base_url}/{wf.path}" if self.base_url else (wf.url or ref.meta["url"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        headers = {k: v for k, v in hub_headers(token=False).items() if k.lower() != "authorization"}
        tmp = download_file(RemoteFile(url=url, path=wf.path), dest.parent, headers=headers, stats=stats,
                            verify=False, hash_prefix=ref.meta.get("hash_prefix") if self.check_hash else None)
        os.replace(tmp, dest)  # atomic: a concurrent reader sees the whole file or none
        return dest

    def open(self, ref: ModelRef, *, allow_bin: bool = True, stats: FetchStats | None = None,
             files: Sequence[str] | None = None) -> Iterator[TensorRef]:
        import dataclasses

        from ..readers import read_checkpoint

        wf = ref.files[0]
        if not matches_files(wf.path, files):
            return
        if not allow_bin:
            raise UnsafeCheckpoint(f"{ref.uri}: torchvision weights are pickles; allow_bin=False refuses them")
        path = self.weight_path(ref, stats=stats)
        for t in read_checkpoint(path, allow_pickle=True):
            yield dataclasses.replace(t, file=wf.path)
