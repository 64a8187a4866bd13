"""GGUF files (llama.cpp): a header we validate ourselves, then one tensor at a time,
dequantised by the maintained ``gguf`` package (llama.cpp's ``gguf-py``).

Layout (``gguf-py/gguf/gguf_reader.py`` and llama.cpp ``docs/gguf.md``), little-endian:

    "GGUF" | version u32 (2 or 3) | n_tensors u64 | n_kv u64
    n_kv × (key: string, type u32, value)          string = u64 length + UTF-8 bytes
    n_tensors × (name: string, n_dims u32, dims u64 × n_dims, ggml_type u32, offset u64)
    padding to ``general.alignment`` (default 32) | data section

``dims`` are GGML's ``ne`` — innermost first — so the row-major (numpy / torch) shape is
``dims`` reversed: a ``(out, in)`` HF matrix is stored with ``ne = [in, out]``. Offsets are
relative to the data section and aligned. A quantised row of ``ne0`` values takes
``ne0 / block_size × type_size`` bytes (``gguf.GGML_QUANT_SIZES``).

Why our own header parser and not ``gguf.GGUFReader``: the same pure parser serves local
files (a few header bytes read, then each tensor's byte range mapped only while it is
dequantised) and the Hub's one streaming GET (the header is parsed from the first bytes of
the body, each tensor dequantised as its bytes arrive), and every field of a file from a
stranger is bounded before it is trusted: lying counts, string lengths, offsets, sizes and
unknown types are a :class:`~hubscan.errors.MalformedCheckpoint` naming the tensor (an
unknown type only fails that tensor's ``load()``). ``gguf.GGUFReader`` is the test oracle.

Dequantisation is ``gguf.quants.dequantize`` (every type it supports: Q4_0…Q8_0, the
K-quants, IQ*, TQ*, MXFP4, F16/BF16/F32); the result is float32.

Names: where ``gguf``'s tensor-name map knows the file's ``general.architecture``, GGUF
names are mapped back to Hugging Face module names (``blk.0.attn_q.weight`` →
``model.layers.0.self_attn.q_proj.weight``); the GGUF name is kept in
``TensorRef.quant.original_name`` (the ``gguf_name`` column). The map is many-to-one (one
GGUF name, the HF names of many architectures), so the HF candidate is chosen by a
documented preference (:data:`HF_NAME_PREFERENCE`). llama.cpp's converter permutes the
rows of ``q_proj``/``k_proj`` for its RoPE layout: a row permutation, which leaves singular
values — and so every spectral column — unchanged.
"""

from __future__ import annotations

import functools
import os
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, MalformedCheckpoint
from ..refs import QuantInfo, TensorRef
from ._mmapio import read_range

__all__ = [
    "GGUF_MAGIC",
    "GGUF_TYPE_PREFERENCE",
    "HF_NAME_PREFERENCE",
    "GGUFHeader",
    "GGUFTensorInfo",
    "dequantize_gguf",
    "gguf_refs",
    "hf_name_map",
    "load_gguf_tensor",
    "parse_gguf_header",
    "read_gguf",
    "read_gguf_header",
]

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
#: Bounds on header fields (a real header: < 1M tensors, KV arrays of a tokenizer's
#: ~256k strings); anything beyond is a hostile or broken file.
MAX_TENSORS = 1_000_000
MAX_KV = 1_000_000
MAX_STRING = 64 << 20
MAX_ARRAY = 64 << 20
MAX_DIMS = 4  # GGML_MAX_DIMS

# GGUFValueType → struct format (scalars); 8 = string, 9 = array.
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# GGML integer/float64 types that are stored as plain elements, not dequantised.
_PLAIN = {"I8": ("I8", np.int8), "I16": ("I16", np.int16), "I32": ("I32", np.int32),
          "I64": ("I64", np.int64), "F64": ("F64", np.float64)}

#: A repo with several GGUF quantisation levels is analysed through ONE file, the first of
#: these types present (full precision first, then the finest quantisation): the spectrum
#: closest to the trained weights. ``hubscan.sources`` applies it unless a spec asks for all.
GGUF_TYPE_PREFERENCE = ("F32", "BF16", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_K", "Q5_1", "Q5_0",
                        "Q4_K_M", "Q4_K_S", "Q4_K", "Q4_1", "Q4_0", "IQ4_NL", "IQ4_XS", "MXFP4",
                        "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q3_K", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS",
                        "Q2_K", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "TQ2_0", "TQ1_0")


_LEVEL = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(sorted(GGUF_TYPE_PREFERENCE, key=len, reverse=True)) + r")(?![A-Za-z0-9_])",
                    re.IGNORECASE)


def gguf_level(path: str) -> str | None:
    """The quantisation level a GGUF file name states (``model-Q4_K_M.gguf`` → ``Q4_K_M``)."""
    name = path.rsplit("/", 1)[-1]
    m = _LEVEL.search(name.replace(".gguf", ""))
    return m.group(1).upper() if m else None


def choose_gguf_files(paths: list[str], *, all_levels: bool = False) -> list[str]:
    """The GGUF files of a repo/folder to analyse: by default the files (all shards) of the
    most preferred level in :data:`GGUF_TYPE_PREFERENCE`; files whose name states no level
    come after every named level; multimodal projectors (``mmproj``) are never chosen.
    ``all_levels`` keeps every file (a spec's ``gguf = "all"``)."""
    files = sorted(p for p in paths if p.lower().endswith(".gguf") and "mmproj" not in p.lower())
    if all_levels or not files:
        return files
    rank = {t: i for i, t in enumerate(GGUF_TYPE_PREFERENCE)}
    levels = {p: gguf_level(p) for p in files}
    best = min(files, key=lambda p: (rank.get(levels[p] or "", len(rank)), p))
    return [p for p in files if levels[p] == levels[best] and (levels[p] is not None or p == best)]


@dataclass(frozen=True)
class GGUFTensorInfo:
    """One validated tensor info. ``offset`` is relative to the data section."""

    name: str
    dims: tuple[int, ...]          # GGML ne, innermost first
    ggml_type: int
    type_name: str                 # "Q4_K", "F16", … or "UNKNOWN(<id>)"
    offset: int
    nbytes: int | None             # None for an unknown type

    @property
    def shape(self) -> tuple[int, ...]:
        """Row-major shape: GGML dims reversed."""
        return tuple(reversed(self.dims))


@dataclass(frozen=True)
class GGUFHeader:
    """A validated GGUF header: tensor infos in offset order, scalar metadata, data start."""

    version: int
    tensors: tuple[GGUFTensorInfo, ...]
    metadata: dict[str, Any]
    alignment: int
    data_start: int
    file_size: int | None

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    @property
    def block_count(self) -> int:
        arch = self.architecture
        n = self.metadata.get(f"{arch}.block_count") if arch else None
        return n if isinstance(n, int) and 0 <= n <= 100_000 else 0


class _Cursor:
    """Sequential reads from ``read(n)`` with a running position and bound checks."""

    def __init__(self, read: Callable[[int], bytes], limit: int | None) -> None:
        self._read = read
        self.pos = 0
        self.limit = limit

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or (self.limit is not None and self.pos + n > self.limit):
            raise MalformedCheckpoint(f"{what}: needs bytes [{self.pos}, {self.pos + n}) but the file has "
                                      f"{self.limit} (a lying length or a truncated file)")
        b = self._read(n)
        if len(b) != n:
            raise MalformedCheckpoint(f"{what}: the file ended at byte {self.pos + len(b)} (truncated)")
        self.pos += n
        return b

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str, *, strict: bool) -> str:
        n = self.unpack("<Q", what)
        if n > MAX_STRING:
            raise MalformedCheckpoint(f"{what}: string length {n} exceeds {MAX_STRING}")
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            if strict:
                raise MalformedCheckpoint(f"{what}: not valid UTF-8") from None
            return raw.decode("utf-8", errors="replace")

    def skip(self, n: int, what: str) -> None:
        while n > 0:
            step = min(n, 1 << 20)
            self.take(step, what)
            n -= step


def _value(cur: _Cursor, vtype: int, key: str, depth: int = 0) -> Any:
    if vtype in _SCALAR:
        return cur.unpack(_SCALAR[vtype], f"metadata {key!r}")
    if vtype == _STRING:
        return cur.string(f"metadata {key!r}", strict=False)
    if vtype == _ARRAY:
        if depth > 1:
            raise MalformedCheckpoint(f"metadata {key!r}: arrays nested deeper than 2")
        etype = cur.unpack("<I", f"metadata {key!r}")
        n = cur.unpack("<Q", f"metadata {key!r}")
        if n > MAX_ARRAY:
            raise MalformedCheckpoint(f"metadata {key!r}: array of {n} elements exceeds {MAX_ARRAY}")
        if etype in _SCALAR:
            cur.skip(n * struct.calcsize(_SCALAR[etype]), f"metadata {key!r}")
        elif etype in (_STRING, _ARRAY):
            for _ in range(n):
                _value(cur, etype, key, depth + 1)
        else:
            raise MalformedCheckpoint(f"metadata {key!r}: unknown array element type {etype}")
        return ("array", n)  # arrays (tokenizer vocabularies …) are summarised, not kept
    raise MalformedCheckpoint(f"metadata {key!r}: unknown value type {vtype}")


def _type_name(t: int) -> tuple[str, tuple[int, int] | None]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        qt = GGMLQuantizationType(t)
    except ValueError:
        return f"UNKNOWN({t})", None
    return qt.name, GGML_QUANT_SIZES.get(qt)


def parse_gguf_header(read: Callable[[int], bytes], *, file_size: int | None,
                      notes: list[str] | None = None) -> GGUFHeader:
    """Read and validate a GGUF header from ``read(n)`` (sequential reads from byte 0).

    The I/O-free core both GGUF readers share (``read`` is a file's ``read`` or the first
    bytes of a streamed body). It consumes exactly the header, not the alignment padding.

    Raises:
        MalformedCheckpoint: wrong magic, an unsupported version, counts/lengths beyond the
            bounds or the file, an invalid tensor info (dims, a row not a whole number of
            blocks, a misaligned offset, a span past the data or overlapping another),
            naming the tensor.
    """
    cur = _Cursor(read, file_size)
    magic = cur.take(4, "magic")
    if magic != GGUF_MAGIC:
        raise MalformedCheckpoint(f"not a GGUF file (magic {magic!r}, expected b'GGUF')")
    version = cur.unpack("<I", "version")
    if version not in (2, 3):
        raise MalformedCheckpoint(f"GGUF version {version} is not supported (2 or 3)")
    n_tensors = cur.unpack("<Q", "tensor count")
    n_kv = cur.unpack("<Q", "metadata count")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise MalformedCheckpoint(f"GGUF header claims {n_tensors} tensors and {n_kv} metadata entries "
                                  f"(limits {MAX_TENSORS}, {MAX_KV})")
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}", strict=True)
        if key in metadata:
            raise MalformedCheckpoint(f"metadata key {key!r} repeated")
        metadata[key] = _value(cur, cur.unpack("<I", f"metadata {key!r} type"), key)
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1) or alignment > 1 << 20:
        raise MalformedCheckpoint(f"general.alignment {alignment!r} is not a power of two ≤ 1 MiB")
    infos: list[GGUFTensorInfo] = []
    seen: set[str] = set()
    for i in range(n_tensors):
        name = cur.string(f"tensor info #{i} name", strict=True)
        where = f"tensor {name!r}"
        if name in seen:
            raise MalformedCheckpoint(f"{where}: name repeated")
        seen.add(name)
        n_dims = cur.unpack("<I", where)
        if not 1 <= n_dims <= MAX_DIMS:
            raise MalformedCheckpoint(f"{where}: {n_dims} dimensions (GGML allows 1 … {MAX_DIMS})")
        dims = tuple(cur.unpack("<Q", where) for _ in range(n_dims))
        if any(d == 0 or d > 1 << 40 for d in dims):
            raise MalformedCheckpoint(f"{where}: dimensions {list(dims)} out of range")
        gtype = cur.unpack("<I", where)
        offset = cur.unpack("<Q", where)
        tname, sizes = _type_name(gtype)
        nbytes = None
        if sizes is not None:
            block, tsize = sizes
            if dims[0] % block:
                raise MalformedCheckpoint(f"{where}: ne0 = {dims[0]} is not a multiple of the {tname} "
                                          f"block size {block}")
            n = 1
            for d in dims:
                n *= d
            nbytes = n // block * tsize
        if offset % alignment:
            raise MalformedCheckpoint(f"{where}: offset {offset} is not aligned to {alignment}")
        infos.append(GGUFTensorInfo(name, dims, gtype, tname, offset, nbytes))
    data_start = -(-cur.pos // alignment) * alignment
    if file_size is not None and data_start > file_size:
        raise MalformedCheckpoint(f"data section starts at {data_start}, past the end of the "
                                  f"{file_size}-byte file (truncated?)")
    data_size = None if file_size is None else file_size - data_start
    infos.sort(key=lambda t: t.offset)
    end, prev = 0, None
    for t in infos:
        if t.offset < end:
            raise MalformedCheckpoint(f"tensor {t.name!r} bytes from {t.offset} overlap tensor "
                                      f"{prev.name!r} [{prev.offset}, {end})")  # type: ignore[union-attr]
        if t.nbytes is not None:
            if data_size is not None and t.offset + t.nbytes > data_size:
                raise MalformedCheckpoint(
                    f"tensor {t.name!r}: {t.type_name}{list(t.shape)} needs bytes [{t.offset}, "
                    f"{t.offset + t.nbytes}) of the data section, which holds {data_size} (lying "
                    "offset or size, or a truncated file)")
            end, prev = t.offset + t.nbytes, t
        else:
            end, prev = t.offset, t
            if notes is not None:
                notes.append(f"gguf: tensor {t.name!r} has unknown type id {t.ggml_type}")
    return GGUFHeader(version, tuple(infos), metadata, alignment, data_start, file_size)


def read_gguf_header(path: str | os.PathLike[str], *, notes: list[str] | None = None) -> GGUFHeader:
    """Read and validate the header of a local GGUF file (reads only the header)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return parse_gguf_header(f.read, file_size=size, notes=notes)
    except MalformedCheckpoint as exc:
        raise MalformedCheckpoint(f"{path}: {exc}") from None


# ------------------------------------------------------------------------------ tensors


def dequantize_gguf(raw: np.ndarray | torch.Tensor, info: GGUFTensorInfo) -> torch.Tensor:
    """The tensor of ``info`` from its raw bytes: float32 for float/quantised types (through
    ``gguf.quants.dequantize``), the stored integer dtype for ``I8``…``I64``.

    Raises:
        CheckpointError: a type ``gguf`` cannot dequantise (or an unknown type id), naming
            the tensor.
        MalformedCheckpoint: a byte count that differs from the type's.
    """
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    data = raw.numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
    data = data.reshape(-1).view(np.uint8)
    if info.nbytes is None:
        raise CheckpointError(f"tensor {info.name!r}: unknown GGML type id {info.ggml_type} "
                              "(newer than the installed gguf package?)")
    if data.size != info.nbytes:
        raise MalformedCheckpoint(f"tensor {info.name!r}: {info.type_name} needs {info.nbytes} bytes, got {data.size}")
    shape = info.shape
    if info.type_name in _PLAIN:
        return torch.from_numpy(data.view(_PLAIN[info.type_name][1]).reshape(shape).copy())
    rows = data.reshape(*shape[:-1], info.nbytes // max(1, int(np.prod(shape[:-1]))))
    try:
        out = dequantize(rows, GGMLQuantizationType(info.ggml_type))
    except NotImplementedError as exc:
        raise CheckpointError(f"tensor {info.name!r}: gguf cannot dequantise {info.type_name} ({exc})") from None
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32).reshape(shape))


def load_gguf_tensor(path: str, data_start: int, info: GGUFTensorInfo, file_size: int | None = None) -> torch.Tensor:
    """One tensor of a local GGUF file, dequantised; only its bytes are mapped, while copying."""
    if info.nbytes is None:
        return dequantize_gguf(np.zeros(0, np.uint8), info)
    raw = read_range(path, data_start + info.offset, info.nbytes, file_size=file_size,
                     what=f"tensor {info.name!r}")
    return dequantize_gguf(raw, info)


def _dtype_of(info: GGUFTensorInfo) -> str:
    return _PLAIN[info.type_name][0] if info.type_name in _PLAIN else "F32"


def level_bits(type_name: str) -> int | None:
    """Nominal bits per weight of a GGML type or file level (``Q4_K_M`` → 4, ``F16`` → 16)."""
    return _bits_of(type_name.upper())


def _bits_of(type_name: str) -> int | None:
    for prefix, bits in (("F32", 32), ("F16", 16), ("BF16", 16), ("MXFP4", 4), ("TQ1", 2), ("TQ2", 2)):
        if type_name.startswith(prefix):
            return bits
    digits = "".join(ch for ch in type_name.split("_")[0] if ch.isdigit())
    return int(digits) if digits else None


def gguf_refs(header: GGUFHeader, file: str, load_for: Callable[[GGUFTensorInfo], Callable[[], Any]],
              *, map_names: bool = True) -> list[TensorRef]:
    """The ``TensorRef``s of a GGUF header, in offset order, named as HF modules where the
    architecture's name map knows them (the GGUF name stays in ``quant.original_name``)."""
    to_hf = hf_name_map(header.architecture, header.block_count) if map_names else {}
    refs, used = [], set()
    for t in header.tensors:
        name = _mapped(t.name, to_hf)
        if name in used:  # two GGUF names onto one HF name: keep the GGUF one
            name = t.name
        used.add(name)
        info = QuantInfo(method=f"gguf:{t.type_name}", bits=_bits_of(t.type_name),
                         group_size=(_type_name(t.ggml_type)[1] or (None,))[0] if t.nbytes else None,
                         source_format="gguf", parts=(t.name,), packed_dtype=t.type_name,
                         original_name=t.name)
        refs.append(TensorRef(name=name, shape=t.shape, dtype=_dtype_of(t), file=file, load=load_for(t),
                              offset=header.data_start + t.offset, nbytes=t.nbytes, quant=info))
    return refs


def read_gguf(path: str | os.PathLike[str], *, notes: list[str] | None = None,
              map_names: bool = True) -> Iterator[TensorRef]:
    """Validate a local GGUF header now; yield its tensors (offset order) lazily.

    ``load()`` is a picklable ``functools.partial`` that maps the tensor's bytes and
    dequantises them to float32.
    """
    header = read_gguf_header(path, notes=notes)
    file = str(path)
    return iter(gguf_refs(
        header, file,
        lambda t: functools.partial(load_gguf_tensor, file, header.data_start, t, header.file_size),
        map_names=map_names))


# ------------------------------------------------------------------------------ names

#: Which HF candidate a GGUF tensor name maps back to, by architecture: the first
#: candidate (in ``gguf``'s own order) that starts with one of these prefixes, else the
#: first candidate. Default: the ``transformers`` decoder convention (``model.layers.N.…``,
#: ``model.embed_tokens``, ``model.norm``, ``lm_head``) used by llama, mistral, qwen2/3,
#: gemma, phi3, olmo, granite, deepseek and their MoE variants.
HF_NAME_PREFERENCE: dict[str, tuple[str, ...]] = {
    "default": ("model.layers.{bid}.self_attn.", "model.layers.{bid}.mlp.", "model.layers.{bid}.",
                "model.embed_tokens", "model.norm", "lm_head"),
    "gpt2": ("transformer.", "lm_head"),
    "starcoder": ("transformer.", "lm_head"),
    "bloom": ("transformer.", "lm_head"),
    "falcon": ("transformer.", "lm_head"),
    "mpt": ("transformer.", "lm_head"),
    "gptneox": ("gpt_neox.", "embed_out"),
    "bert": ("embeddings.", "encoder.", "pooler."),
}


def _choose(candidates: tuple[str, ...], prefs: tuple[str, ...], bid: int | None) -> str | None:
    fmt = [c.format(bid=bid) if bid is not None else c for c in candidates]
    for p in prefs:
        p = p.format(bid=bid) if bid is not None else p
        for c in fmt:
            if c.startswith(p):
                return c
    return fmt[0] if fmt else None


@functools.lru_cache(maxsize=64)
def hf_name_map(arch: str | None, n_blocks: int) -> dict[str, str]:
    """GGUF base name (``blk.0.attn_q``) → HF module path (``model.layers.0.self_attn.q_proj``)
    for one architecture; empty where ``gguf`` does not know the architecture."""
    if not arch:
        return {}
    try:
        from gguf.constants import MODEL_ARCH_NAMES, MODEL_TENSORS, TENSOR_NAMES
        from gguf.tensor_mapping import TensorNameMap
    except ImportError:  # pragma: no cover - gguf is a dependency
        return {}
    by_name = {v: k for k, v in MODEL_ARCH_NAMES.items()}
    march = by_name.get(arch)
    if march is None:
        return {}
    prefs = HF_NAME_PREFERENCE.get(arch, HF_NAME_PREFERENCE["default"])
    block_cfg = dict(TensorNameMap.block_mappings_cfg)
    block_cfg.update(getattr(TensorNameMap, "arch_block_mappings_cfg", {}).get(march, {}))
    out: dict[str, str] = {}
    for tensor in MODEL_TENSORS.get(march, ()):
        base = TENSOR_NAMES.get(tensor)
        if base is None:
            continue
        if "{bid}" in base:
            cands = tuple(block_cfg.get(tensor, ()))
            for bid in range(n_blocks):
                hf = _choose(cands, prefs, bid)
                if hf:
                    out[base.format(bid=bid)] = hf
        else:
            hf = _choose(tuple(TensorNameMap.mappings_cfg.get(tensor, ())), prefs, None)
            if hf:
                out[base] = hf
    return out


def _mapped(name: str, to_hf: dict[str, str]) -> str:
    if not to_hf:
        return name
    base, dot, suffix = name.rpartition(".")
    if dot and base in to_hf:
        return f"{to_hf[base]}.{suffix}"
    return to_hf.get(name, name)
