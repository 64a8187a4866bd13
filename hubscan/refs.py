"""The records that flow between stages: what a model is, what a file is, what a tensor is.

Data flows one way — source → reader → layers → spectral → lake — and these frozen
dataclasses are the only things passed across those boundaries. They are small and
picklable (no open handles) so that Ray can ship them as *descriptors*; the bytes are
fetched by whoever finally needs them (``TensorRef.load``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["BaseLink", "EvalRecord", "ModelRef", "QuantInfo", "RELATIONS", "Relation", "SourceName", "TensorRef",
           "WeightFile", "model_key"]

SourceName = Literal["local", "hf", "tv"]
#: How a model derives from its base (the Hub's ``base_model_relation`` vocabulary).
Relation = Literal["finetune", "adapter", "merge", "quantized"]
RELATIONS: tuple[str, ...] = ("finetune", "adapter", "merge", "quantized")


@dataclass(frozen=True)
class BaseLink:
    """One base model a model was derived from, how, and who says so (a ``lineage`` row).

    Attributes:
        base_source: the base's source (``hf``, ``tv``, ``local``), or ``path`` for an adapter
            config that names a folder on its author's disk.
        base_repo_id: the base's id in that source (``google-bert/bert-base-uncased``,
            ``resnet50``), as the origin spells it.
        relation: ``finetune`` | ``adapter`` | ``merge`` | ``quantized``.
        origin: where the link comes from: ``hub:baseModels`` (the Hub's model tree),
            ``card:base_model`` (the card's YAML), ``adapter_config`` (PEFT's
            ``base_model_name_or_path``), ``torchvision:unquantized`` (a quantized weight enum's
            ``unquantized`` entry).
        base_revision: the base's revision when the origin pins it (torchvision weights do).
    """

    base_source: str
    base_repo_id: str
    relation: str
    origin: str
    base_revision: str | None = None


@dataclass(frozen=True)
class EvalRecord:
    """One reported quality number of a model (an ``evals`` row without its model).

    ``task``/``dataset``/``metric`` use the card's ``model-index`` vocabulary (``task.type``,
    ``dataset.type``, ``metrics[].type``); torchvision's are ``image-classification`` /
    ``ImageNet-1K`` / ``acc@1``. ``origin`` says where the number was read.
    """

    metric: str
    value: float
    origin: str
    task: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    dataset_split: str | None = None
    metric_name: str | None = None
    verified: bool | None = None


@dataclass(frozen=True)
class WeightFile:
    """One weight file of a model.

    Attributes:
        path: name inside the repo / model folder (e.g. ``model-00001-of-00002.safetensors``);
            for local files relative to ``ModelRef.location``.
        size: bytes, where the source knows it before download.
        sha256: content hash (the Hub's LFS sha256, or computed for local files). Results are
            keyed by it so that a file shared by many repos is analysed once.
        url: where a remote file is fetched from (``None`` for local files).
    """

    path: str
    size: int | None = None
    sha256: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class ModelRef:
    """One model revision, as a source enumerates it — before any weight is downloaded.

    ``revision`` must be immutable (commit sha, content hash), because it is part of the
    idempotency key of every row we write.
    """

    source: str
    repo_id: str
    revision: str
    files: tuple[WeightFile, ...] = ()
    arch: str | None = None
    model_type: str | None = None
    library: str | None = None
    params: int | None = None
    downloads: int | None = None
    likes: int | None = None
    tags: tuple[str, ...] = ()
    gated: bool = False
    location: str | None = None
    # Free-form metadata a source knows (torchvision: acc@1, acc@5, weights enum, URL).
    # Excluded from hash/eq: dicts are unhashable and metadata does not identify a model.
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    config: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    # What the source says the model derives from, and the quality numbers it reports
    # (``lineage`` and ``evals`` rows). Listing facts, not identity: excluded from hash/eq.
    bases: tuple[BaseLink, ...] = field(default=(), hash=False, compare=False)
    evals: tuple[EvalRecord, ...] = field(default=(), hash=False, compare=False)

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)

    @property
    def uri(self) -> str:
        """``source://repo_id@revision`` — how the CLI and error messages name a model."""
        return f"{self.source}://{self.repo_id}@{self.revision}"


@dataclass(frozen=True)
class QuantInfo:
    """How a logical tensor was stored, when it was not stored as plain floats.

    A quantised weight is several tensors on disk (packed codes + scales/zeros/…); the
    reader layer (``hubscan.readers.quant``, ``hubscan.readers.gguf``) turns the group into
    ONE ``TensorRef`` named as the module weight, whose ``load()`` dequantises. This record
    keeps the facts the lake reports (``quant_method``, ``bits``, ``gguf_name`` …) and the
    names of the tensors that were consumed, so nothing is silently dropped. Tuples only,
    so the record is hashable and picklable.

    Attributes:
        method: ``gptq`` | ``awq`` | ``bnb-nf4`` | ``bnb-fp4`` | ``bnb-int8`` | ``mlx`` |
            ``fp8`` | ``fp8-block`` | ``compressed-tensors`` | ``mxfp4`` | ``gguf:<TYPE>``.
        bits: nominal bits per weight (4 for Q4_K, 8 for FP8 …).
        group_size: weights sharing one scale (``None``: per tensor / per channel).
        source_format: ``safetensors`` | ``pytorch`` | ``gguf``.
        parts: the stored tensor names this logical tensor was built from.
        packed_dtype: dtype of the packed codes as stored (``I32``, ``U8``, ``F8_E4M3`` …).
        original_name: the name in the file when the logical name differs in more than a
            suffix (a GGUF name such as ``blk.0.attn_q.weight``).
        detail: further ``(key, value)`` facts (``("zero_point", "v1")``, ``("block", "128x128")``).
        error: why the group cannot be read (a missing companion, an unreadable quant
            state); the analysis then writes a failure row for it whatever its shape says.
    """

    method: str
    bits: int | None = None
    group_size: int | None = None
    source_format: str = "safetensors"
    parts: tuple[str, ...] = ()
    packed_dtype: str | None = None
    original_name: str | None = None
    detail: tuple[tuple[str, str], ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class TensorRef:
    """One tensor of a checkpoint, not yet loaded.

    ``dtype`` is the safetensors spelling (``F32``, ``BF16``, ``F8_E4M3``, ``I64`` …) for every
    reader, so layer rules do not depend on the file format. ``load()`` returns the tensor in
    its stored dtype (upcasting is the analysis stage's job) and may be called once.

    A quantised weight group is one ref with ``quant`` set: ``dtype`` is then the dtype
    ``load()`` returns (``F32``, after dequantisation), ``shape`` the logical shape, and
    ``nbytes`` the packed bytes of all its parts.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    file: str
    load: Callable[[], Any] = field(repr=False, compare=False, hash=False)
    offset: int | None = None  # byte offset of the data inside the file, when known
    nbytes: int | None = None
    # Set for a logical tensor the reader dequantises (``load()`` returns float32 then).
    quant: QuantInfo | None = None


def model_key(source: str, repo_id: str, revision: str, analysis_version: str) -> str:
    """The idempotency key of a model analysis: ``source/repo@revision#analysis_version``.

    Writes are at-least-once; every view deduplicates on this key.
    """
    return f"{source}/{repo_id}@{revision}#{analysis_version}"


def short_hash(text: str, n: int = 16) -> str:
    """Stable short hex digest, used for deterministic file names."""
    return hashlib.sha256(text.encode()).hexdigest()[:n]
