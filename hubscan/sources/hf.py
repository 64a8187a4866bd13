"""The Hugging Face Hub as a source: a cheap catalogue, then one streaming GET per shard.

Costs, per the Hub's quotas (``api`` and ``resolve`` classes, 5-minute windows):

* **listing** N models: ``ceil(N / page)`` ``api`` calls. ``HfApi.list_models(expand=[sha,
  siblings, safetensors, config, cardData, …])`` gives each repo's commit sha, file names,
  parameter counts per dtype, ``config.json`` (architecture, model_type) and the model card's
  metadata (a ``model-index`` accuracy becomes ``models.accuracy``) in the listing itself;
* **file sizes + LFS sha256**: the listing does not carry them (``siblings`` are names
  only). They are fetched only when asked (``file_metadata="paths-info"``: 1 ``api`` call per
  model, ``get_paths_info`` for just the weight files) — by default the streaming GET
  learns both from the resolve response (``X-Linked-Size``/``X-Linked-Etag``) at no extra
  cost, and the byte estimate of a listing comes from the parameter counts × dtype size;
* **resolve** ``hf://owner/name[@rev]``: 1 ``api`` call (``model_info`` with file metadata);
* **reading** a model: 1 ``resolve`` call per weight file (the CDN request it redirects to is
  not rate-limited), +1 ranged ``resolve`` per resume after a cut only if the CDN URL
  expired. Nothing per tensor.

A file already in the local HF cache at the pinned commit is read from disk instead.
Gated/private repos raise ``GatedRepo``/``NotFound`` from the first file request, which the
pipeline turns into a ``failures`` row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import urllib.parse
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from ..errors import NotFound, SourceError, UnsafeCheckpoint
from ..net.http import (
    hub_endpoint,
    hub_token,
    is_offline,
    map_hf_error,
    session,
    tracking,
)
from ..refs import ModelRef, TensorRef, WeightFile
from .base import GGUF_SUFFIX, SAFETENSORS_SUFFIX, FetchStats, matches_files, select_weight_files

__all__ = ["HfSource", "LIST_EXPAND", "parse_hf_uri", "resolve_url", "estimate_bytes", "listing_quantization",
           "card_accuracy"]

#: What one listing page carries per model (no per-model call needed afterwards).
LIST_EXPAND = ["sha", "siblings", "safetensors", "gguf", "config", "downloads", "likes", "tags", "library_name",
               "pipeline_tag", "gated", "lastModified", "private", "cardData", "baseModels"]

_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
                "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1, "F8_E8M0": 1}

Sort = Literal["downloads", "likes", "last_modified", "created_at", "trending_score"]


def parse_hf_uri(uri: str) -> tuple[str, str | None]:
    """``hf://owner/name[@rev]`` → ``(repo_id, rev)``."""
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    repo, _, rev = rest.partition("@")
    repo = repo.strip("/")
    if not repo or repo.count("/") > 1:
        raise ValueError(f"not an hf:// model URI: {uri!r} (expected hf://owner/name[@revision])")
    return repo, (rev or None)


def resolve_url(repo_id: str, revision: str, path: str, *, endpoint: str | None = None) -> str:
    """The file URL at a pinned commit (what ``hf_hub_url`` builds)."""
    endpoint = endpoint or hub_endpoint()
    return f"{endpoint}/{repo_id}/resolve/{urllib.parse.quote(revision, safe='')}/{urllib.parse.quote(path)}"


def estimate_bytes(params_by_dtype: dict[str, int] | None) -> int | None:
    """Weight bytes implied by the listing's parameter counts (safetensors headers excluded)."""
    if not params_by_dtype:
        return None
    return sum(n * _DTYPE_BYTES.get(d, 4) for d, n in params_by_dtype.items())


def _num_params_filter(min_params: float | None, max_params: float | None) -> str | None:
    parts = []
    if min_params is not None:
        parts.append(f"min:{int(min_params)}")
    if max_params is not None:
        parts.append(f"max:{int(max_params)}")
    return ",".join(parts) or None


class HfSource:
    """``hf://`` models through the real ``huggingface_hub`` client (see module doc)."""

    scheme = "hf"

    def __init__(self, *, token: str | None = None, endpoint: str | None = None) -> None:
        self._token = token
        self._endpoint = endpoint

    # -- plumbing

    @property
    def endpoint(self) -> str:
        return (self._endpoint or hub_endpoint()).rstrip("/")

    @property
    def token(self) -> str | None:
        return self._token or hub_token()

    def api(self):
        from huggingface_hub import HfApi

        session()  # make sure hubscan's retrying, rate-limited client is installed
        return HfApi(endpoint=self.endpoint, token=self._token)

    def _call(self, what: str, stats: FetchStats | None, fn, *args, **kw):
        if is_offline():
            raise NotFound(f"{what}: HF_HUB_OFFLINE is set")
        try:
            with tracking(stats):
                return fn(*args, **kw)
        except Exception as exc:  # noqa: BLE001 - mapped to our tree, re-raised
            raise map_hf_error(exc, what=what) from exc

    # -- catalogue

    def list(
        self,
        *,
        author: str | None = None,
        search: str | None = None,
        library: str | None = None,
        pipeline_tag: str | None = None,
        tags: Sequence[str] = (),
        min_params: float | None = None,
        max_params: float | None = None,
        min_bytes: int | None = None,
        max_bytes: int | None = None,
        gated: bool | None = None,
        sort: Sort | None = None,
        limit: int | None = None,
        allow_bin: bool = True,
        file_metadata: Literal["none", "paths-info"] = "none",
        include_empty: bool = False,
        formats: Sequence[str] = (),
        quantization: Sequence[str] = (),
        gguf: Literal["preferred", "all"] = "preferred",
        stats: FetchStats | None = None,
    ) -> Iterator[ModelRef]:
        """Models matching the filters, as ``ModelRef``s pinned to their current commit.

        Server-side filters: author, search, library, pipeline_tag, tags, min/max_params,
        gated, sort (descending). Client-side: min/max_bytes (on the listing's byte
        estimate, or exact sizes with ``file_metadata="paths-info"``), ``formats`` (weight file
        formats: ``safetensors``, ``pytorch``, ``gguf``) and ``quantization`` (``none``, ``gptq``,
        ``awq``, ``bnb-nf4``, ``mlx``, ``fp8``, ``gguf:Q4_K_M`` …; a trailing ``*`` matches a
        prefix, ``gguf:*``), and repos without a weight file hubscan reads are skipped unless
        ``include_empty``. ``gguf = "all"`` analyses every quantisation level of a GGUF repo
        instead of the preferred one.

        Cost: ``ceil(N / page)`` ``api`` calls, +1 per model with ``file_metadata="paths-info"``.
        """
        filters = list(tags) + ([library] if library else [])
        client_side = (min_bytes is not None or max_bytes is not None or not include_empty
                       or bool(formats) or bool(quantization))
        api = self.api()
        it = self._call(
            "list_models", stats, api.list_models,
            author=author, search=search, filter=filters or None, pipeline_tag=pipeline_tag,
            num_parameters=_num_params_filter(min_params, max_params), gated=gated, sort=sort,
            limit=None if client_side else limit, expand=LIST_EXPAND,
        )
        out = (self._from_info(info, allow_bin=allow_bin, gguf=gguf) for info in self._pages(it, stats))
        if formats:
            want = {f.lower() for f in formats}
            out = (r for r in out if want & set(r.meta.get("formats") or ()))
        if quantization:
            out = (r for r in out if _quant_matches(r.meta.get("quantization"), quantization))
        if file_metadata == "paths-info":
            out = (self._with_file_metadata(r, stats) for r in out)
        if not include_empty:
            out = (r for r in out if r.files)
        if min_bytes is not None or max_bytes is not None:
            lo, hi = min_bytes or 0, max_bytes if max_bytes is not None else float("inf")
            out = (r for r in out if (b := _bytes_of(r)) is not None and lo <= b <= hi)
        yield from (islice(out, limit) if limit is not None else out)

    def _pages(self, it: Iterator[Any], stats: FetchStats | None) -> Iterator[Any]:
        """Step the library's generator with our accounting active only inside each step."""
        while True:
            try:
                with tracking(stats):
                    info = next(it)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001
                raise map_hf_error(exc, what="list_models") from exc
            yield info

    def resolve(self, uri: str, *, allow_bin: bool = True, stats: FetchStats | None = None, **_: Any) -> list[ModelRef]:
        """``hf://owner/name[@rev]`` → one ``ModelRef`` with exact sizes and sha256 (1 api call)."""
        repo_id, rev = parse_hf_uri(uri)
        cached = self._from_cache(repo_id, rev, allow_bin=allow_bin) if is_offline() else None
        if cached is not None:
            return [cached]
        api = self.api()
        info = self._call(f"model_info {repo_id}", stats, api.model_info, repo_id, revision=rev, files_metadata=True)
        return [self._from_info(info, allow_bin=allow_bin)]

    def _from_cache(self, repo_id: str, rev: str | None, *, allow_bin: bool) -> ModelRef | None:
        from .local import HfCacheSource

        refs = HfCacheSource().resolve(f"hf-cache://{repo_id}" + (f"@{rev}" if rev else ""), allow_bin=allow_bin)
        return refs[0] if refs else None

    def _from_info(self, info: Any, *, allow_bin: bool, gguf: str = "preferred") -> ModelRef:
        if not info.sha:
            raise SourceError(f"{info.id}: the hub returned no commit sha")
        sibs = {s.rfilename: s for s in (info.siblings or [])}
        paths = select_weight_files(sibs, allow_bin=allow_bin, gguf=gguf)
        files = tuple(
            WeightFile(
                path=p,
                size=(sibs[p].lfs.size if sibs[p].lfs else sibs[p].size),
                sha256=(sibs[p].lfs.sha256 if sibs[p].lfs else None),
                url=resolve_url(info.id, info.sha, p, endpoint=self.endpoint),
            )
            for p in paths
        )
        config = info.config if isinstance(info.config, dict) else None
        archs = (config or {}).get("architectures") or []
        st = info.safetensors
        meta: dict[str, Any] = {
            "adapter": "adapter_config.json" in sibs or None,
            "formats": sorted({_format_of(p) for p in paths}) or None,
            "quantization": listing_quantization(info.config if isinstance(info.config, dict) else None, paths),
            "gguf": getattr(info, "gguf", None) or None,
            "pipeline_tag": info.pipeline_tag,
            "gated": info.gated or False,
            "private": info.private,
            "last_modified": info.last_modified.isoformat() if info.last_modified else None,
            "params_by_dtype": dict(st.parameters) if st else None,
            "est_bytes": estimate_bytes(dict(st.parameters) if st else None),
            "n_repo_files": len(sibs),
            **card_accuracy(getattr(info, "card_data", None)),
        }
        gg = meta["gguf"] if isinstance(meta["gguf"], dict) else {}
        params = st.total if st else (gg.get("total") if isinstance(gg.get("total"), int) else None)
        if meta["est_bytes"] is None and params and str(meta["quantization"]).startswith("gguf:"):
            meta["est_bytes"] = _gguf_bytes(params, meta["quantization"])
        arch = archs[0] if archs else (gg.get("architecture") if isinstance(gg.get("architecture"), str) else None)
        from .evals import card_evals
        from .lineage import card_links, hub_links, merge_links

        card = getattr(info, "card_data", None)
        bases = merge_links(hub_links(getattr(info, "base_models", None)), card_links(card, repo_files=sibs))
        evals = card_evals(card)
        return ModelRef(
            source="hf", repo_id=info.id, revision=info.sha, files=files,
            arch=arch, model_type=(config or {}).get("model_type"),
            library=info.library_name, params=params, downloads=info.downloads,
            likes=info.likes, tags=tuple(info.tags or ()), gated=bool(info.gated), meta=meta, config=config,
            bases=bases, evals=evals,
        )

    def _with_file_metadata(self, ref: ModelRef, stats: FetchStats | None) -> ModelRef:
        """Exact sizes + LFS sha256 of the weight files: one ``get_paths_info`` call."""
        if not ref.files or all(f.size is not None and f.sha256 for f in ref.files):
            return ref
        api = self.api()
        infos = self._call(f"paths-info {ref.repo_id}", stats, api.get_paths_info, ref.repo_id,
                           [f.path for f in ref.files], revision=ref.revision)
        by_path = {i.path: i for i in infos}
        files = []
        for f in ref.files:
            i = by_path.get(f.path)
            if i is None:
                files.append(f)
                continue
            lfs = getattr(i, "lfs", None)
            files.append(dataclasses.replace(f, size=lfs.size if lfs else i.size, sha256=lfs.sha256 if lfs else None))
        return dataclasses.replace(ref, files=tuple(files))

    def adapter_links(self, ref: ModelRef, *, stats: FetchStats | None = None) -> tuple[Any, ...]:
        """The base named by the repo's ``adapter_config.json`` (``adapter_config``: one
        ``resolve`` request, a few hundred bytes, at the pinned commit); () when it has none.

        For models the lake already holds (``engine.lineage.record_links``); an analysed
        adapter's config is fetched once by the analysis and its links read from it.
        """
        from .lineage import adapter_links

        return adapter_links(self.adapter_config(ref, stats=stats))

    def local_path(self, ref: ModelRef, wf: WeightFile) -> Path | None:
        """A weight file's bytes on this disk (the model's folder or the HF cache), if any."""
        return self._local_copy(ref, wf)

    # -- reading

    def open(
        self,
        ref: ModelRef,
        *,
        allow_bin: bool = True,
        stats: FetchStats | None = None,
        files: Sequence[str] | None = None,
    ) -> Iterator[TensorRef]:
        """Every tensor of every weight file, in file order (see ``readers.stream`` for the
        integrity contract: ``IntegrityError`` after a bad file's last tensor)."""
        from ..readers.stream import RemoteFile, download_file, stream_gguf, stream_safetensors

        for wf in ref.files:
            if not matches_files(wf.path, files):
                continue
            local = self._local_copy(ref, wf)
            if local is not None:
                if stats is not None:
                    stats.bump("cache_hits")
                yield from _read_local(local, wf.path, allow_bin=allow_bin, config=ref.config)
                continue
            if is_offline():
                raise NotFound(f"{ref.uri}: {wf.path} is not in the HF cache and HF_HUB_OFFLINE is set")
            rf = RemoteFile(url=wf.url or resolve_url(ref.repo_id, ref.revision, wf.path, endpoint=self.endpoint),
                            path=wf.path, size=wf.size, sha256=wf.sha256, revision=ref.revision)
            if wf.path.endswith(SAFETENSORS_SUFFIX):
                yield from stream_safetensors(rf, stats=stats, config=ref.config)
                continue
            if wf.path.lower().endswith(GGUF_SUFFIX):
                yield from stream_gguf(rf, stats=stats)
                continue
            if not allow_bin:
                raise UnsafeCheckpoint(f"{ref.uri}: {wf.path} is a pickle; pickles are disabled (allow_bin=False)")
            tmp = download_file(rf, stats=stats)
            if stats is not None:
                stats.notes.append(f"{wf.path}: pickle downloaded whole ({tmp.stat().st_size} bytes) and read "
                                   "with torch.load(weights_only=True)")
            try:
                yield from _read_local(tmp, wf.path, allow_bin=True, config=ref.config)
            finally:
                tmp.unlink(missing_ok=True)

    def adapter_config(self, ref: ModelRef, *, stats: FetchStats | None = None) -> dict[str, Any] | None:
        """The repo's PEFT ``adapter_config.json`` (LoRA scale, base model), when it has one:
        one ``resolve`` request (a cached copy costs none)."""
        from ..readers.adapter import ADAPTER_CONFIG, parse_adapter_config, read_adapter_config

        if not (ref.meta or {}).get("adapter"):
            return None
        local = self._local_copy(ref, WeightFile(ADAPTER_CONFIG))
        if local is not None:
            return read_adapter_config(local.parent) if local.name == ADAPTER_CONFIG else \
                parse_adapter_config(local.read_bytes())
        if is_offline():
            return None
        url = resolve_url(ref.repo_id, ref.revision, ADAPTER_CONFIG, endpoint=self.endpoint)
        from ..net.http import hub_headers, raise_for_hub_status

        with tracking(stats):
            resp = session().get(url, headers=hub_headers(), follow_redirects=True)
        raise_for_hub_status(resp, what=f"GET {ADAPTER_CONFIG}")
        return parse_adapter_config(resp.content)

    def _local_copy(self, ref: ModelRef, wf: WeightFile) -> Path | None:
        if ref.location:
            p = Path(ref.location) / wf.path
            return p if p.is_file() else None
        from huggingface_hub import try_to_load_from_cache

        cache_dir = os.environ.get("HF_HUB_CACHE") or None
        with contextlib.suppress(Exception):
            hit = try_to_load_from_cache(ref.repo_id, wf.path, cache_dir=cache_dir, revision=ref.revision)
            if isinstance(hit, str) and os.path.isfile(hit):
                return Path(hit)
        return None


def _read_local(path: Path, name: str, *, allow_bin: bool, config: dict | None = None) -> Iterator[TensorRef]:
    """A local weight file's tensors, named by their repo path (``TensorRef.file == WeightFile.path``)."""
    from ..readers import read_checkpoint

    for t in read_checkpoint(path, allow_pickle=allow_bin, config=config):
        yield dataclasses.replace(t, file=name)


def listing_quantization(config: dict | None, paths: Sequence[str]) -> str:
    """How a listed repo's weights are stored, from its ``config.json`` and file names:
    ``gguf:<LEVEL>`` (the level(s) chosen), a ``quant_method`` (``bitsandbytes`` refined to
    ``bnb-nf4``/``bnb-int8``, an MLX ``quantization`` block → ``mlx``), else ``none``."""
    from ..readers.gguf import gguf_level

    levels = sorted({gguf_level(p) or "?" for p in paths if p.lower().endswith(GGUF_SUFFIX)})
    if levels:
        return ",".join(f"gguf:{lv}" for lv in levels)
    qc = (config or {}).get("quantization_config")
    if isinstance(qc, dict) and qc.get("quant_method"):
        method = str(qc["quant_method"]).lower()
        if method == "bitsandbytes":
            return "bnb-int8" if qc.get("load_in_8bit") else f"bnb-{qc.get('bnb_4bit_quant_type') or 'nf4'}"
        if method == "fp8" and qc.get("weight_block_size"):
            return "fp8-block"
        return method
    if isinstance((config or {}).get("quantization"), dict):
        return "mlx"
    return "none"


def _gguf_bytes(params: int, quantization: str) -> int | None:
    """Bytes of a GGUF repo's chosen level(s) from its parameter count (the ``gguf`` expand)
    and the level's bits per weight (``Q4_K_M`` → 4 …; block scales not counted)."""
    from ..readers.gguf import level_bits

    bits = [level_bits(q.removeprefix("gguf:")) for q in quantization.split(",")]
    known = [b for b in bits if b]
    return int(params * sum(known) / 8) if known else None


def _quant_matches(value: str | None, wanted: Sequence[str]) -> bool:
    have = (value or "none").lower().split(",")
    for w in wanted:
        w = w.lower()
        if any(h == w or (w.endswith("*") and h.startswith(w[:-1])) for h in have):
            return True
    return False


def _format_of(path: str) -> str:
    p = path.lower()
    return "gguf" if p.endswith(GGUF_SUFFIX) else "safetensors" if p.endswith(SAFETENSORS_SUFFIX) else "pytorch"


def card_accuracy(card_data: Any) -> dict[str, Any]:
    """``{"accuracy": …, "accuracy_source": …}`` from a model card's ``model-index``, or ``{}``.

    The listing carries each card's YAML (``cardData``), which ``huggingface_hub`` parses into
    ``EvalResult``s; the first result whose metric type is ``accuracy`` becomes the
    ``models.accuracy`` column (as published: a percentage or a fraction, whichever the card
    uses), with where it came from. Cards without one, or unparsable ones, give nothing.
    """
    for r in getattr(card_data, "eval_results", None) or ():
        kind = str(getattr(r, "metric_type", "") or "").lower()
        value = getattr(r, "metric_value", None)
        if kind in ("accuracy", "acc", "top1", "acc@1") and isinstance(value, (int, float)) \
                and not isinstance(value, bool):
            where = " / ".join(str(x) for x in (getattr(r, "dataset_name", None),
                                                getattr(r, "dataset_split", None),
                                                getattr(r, "metric_name", None)) if x)
            return {"accuracy": float(value), "accuracy_source": f"model-index: {where}" if where
                    else "model-index"}
    return {}


def _bytes_of(ref: ModelRef) -> int | None:
    if ref.files and all(f.size is not None for f in ref.files):
        return ref.total_bytes
    return ref.meta.get("est_bytes")
