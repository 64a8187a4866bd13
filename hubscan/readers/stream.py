"""Remote safetensors over HTTP: one sequential GET per file, one tensor in memory.

The Hub's rate limits count every ``/resolve/`` request, and the network — not the GPU —
is the bottleneck of a hub scan. So a file is read with **one streaming GET**: its first
bytes are the header (validated by the same pure ``parse_safetensors_header`` as local
files), then each tensor is yielded as soon as its bytes have arrived, in offset order.
Memory is one tensor (the buffer it is read into becomes the tensor: no copy).

Requests per file: 1 resolve (plus the CDN request it redirects to, which the Hub does not
rate-limit). Range requests are used only to

* **resume** after a cut, a stalled body (read timeout) or a short body: from the first byte
  not yet received — the tensors already yielded are never fetched again;
* read the **header alone** (``fetch_header``: planning, filtering by shapes);
* read a **subset** of tensors (``names=``): one Range per run of adjacent wanted tensors.

Integrity contract (read this if you consume ``stream_safetensors``):
the sha256 the hub publishes for the file (LFS oid) is computed incrementally over the bytes
as they stream. A mismatch can only be known at the end of the file, *after* its tensors
have been yielded — holding them back would break the one-tensor memory bound. So:

    the iterator raises ``IntegrityError`` after the last tensor of a bad file, and the
    consumer MUST then discard everything it derived from that file's tensors
    (``TensorRef.file`` names the file).

``hubscan.sources.open_model`` keeps that contract across files (a bad file raises before
any tensor of the next file is yielded); ``hubscan.analysis.model`` drops the rows. Size is
checked continuously: a body that ends early is resumed, one that is longer than the
published size is an ``IntegrityError``. Partial reads (``names=``) cannot be verified
against the file's sha256; they are checked against the header's offsets and sizes only.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import torch

from ..dtypes import view_bytes_as
from ..errors import (
    IntegrityError,
    MalformedCheckpoint,
    SourceError,
    TransientFetchError,
)
from ..refs import TensorRef
from .quant import Assembler, plan_groups
from .safetensors import (
    PREFIX_BYTES,
    SafetensorsEntry,
    header_length,
    parse_safetensors_header,
)

__all__ = [
    "RemoteFile",
    "RemoteHeader",
    "RangedFile",
    "stream_safetensors",
    "stream_gguf",
    "fetch_header",
    "download_file",
    "HEADER_PREFETCH",
]

#: Bytes asked for by a header-only Range request; one request covers headers of up to
#: ~2,500 tensors, a second one fetches the rest of a longer header.
HEADER_PREFETCH = 256 * 1024
#: Wanted tensors closer than this are fetched by one Range request (bytes in between discarded).
COALESCE_GAP = 1 << 20
#: Stream resumptions allowed per file (each must make progress, see ``_Body``).
MAX_RESUMES = 64

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch, and what the hub said about it before we fetched it.

    Attributes:
        url: the resolve URL (``{endpoint}/{repo}/resolve/{commit}/{path}``) or a mirror URL.
        path: the file's name in its repo (becomes ``TensorRef.file``).
        size, sha256: from the listing / paths-info, when known; else taken from the
            response's ``X-Linked-Size`` / ``X-Linked-Etag`` headers.
        revision: the commit the URL pins; a different ``X-Repo-Commit`` is an error.
    """

    url: str
    path: str
    size: int | None = None
    sha256: str | None = None
    revision: str | None = None


@dataclass(frozen=True)
class RemoteHeader:
    """A remote safetensors header (from ``fetch_header``)."""

    entries: tuple[SafetensorsEntry, ...]
    metadata: dict[str, str]
    header_length: int
    size: int
    sha256: str | None

    @property
    def data_start(self) -> int:
        return PREFIX_BYTES + self.header_length


class _Loaded:
    """``TensorRef.load`` for a streamed tensor: the bytes already arrived, so just hand them."""

    __slots__ = ("_t",)

    def __init__(self, t: torch.Tensor) -> None:
        self._t = t

    def __call__(self) -> torch.Tensor:
        return self._t


# ------------------------------------------------------------------------------ HTTP body


def _client(client: httpx2.Client | None) -> httpx2.Client:
    if client is not None:
        return client
    from ..net.http import session

    return session()


def _default_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    if headers is not None:
        h = dict(headers)
    else:
        from ..net.http import hub_headers

        h = hub_headers()
    h["Accept-Encoding"] = "identity"  # byte counts must be the file's bytes
    return h


def _etag_sha(value: str | None) -> str | None:
    if not value:
        return None
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"').lower()
    return v if _SHA256_RE.match(v) else None


class _Body:
    """One file's bytes from position ``pos`` on, across as many HTTP responses as it takes.

    ``readinto(mv)`` fills ``mv`` completely or raises. A cut (transport error, read
    timeout, body shorter than announced) is repaired by a Range request from the first
    byte not yet received; the hub's ``Retry-After``/backoff policy applies between tries
    (``hubscan.net.http``). Redirect targets (CDN URLs) are reused for resumes, so a
    resume costs no ``resolve`` quota; if the target has expired, the resolve URL is asked
    again.
    """

    def __init__(self, rf: RemoteFile, *, client: httpx2.Client, headers: dict[str, str],
                 start: int = 0, end: int | None = None, stats: Any = None,
                 target: str | None = None) -> None:
        from ..net.http import current_policy, raise_for_hub_status, tracking

        self._raise = raise_for_hub_status
        self._tracking = tracking
        self.rf = rf
        self.client = client
        self.headers = headers
        self.stats = stats
        self.policy = current_policy()
        self.pos = start
        self.end = end  # exclusive; None = to the end of the file (learnt from the response)
        self.size: int | None = rf.size
        self.sha256: str | None = rf.sha256
        self.resumes = 0
        self._no_progress = 0
        self._last_resume_pos = -1
        self._target: str | None = target  # URL after redirects (a known CDN URL saves a resolve)
        self._resp: httpx2.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._pending = memoryview(b"")
        self._open(first=True)

    # -- responses

    def _request(self, url: str) -> httpx2.Response:
        h = dict(self.headers)
        want_end = self.end if self.end is not None else self.size
        if self.pos > 0 or (self.end is not None and self.end != self.size):
            h["Range"] = f"bytes={self.pos}-" + (f"{want_end - 1}" if want_end is not None else "")
        if "Range" in h and self.stats is not None:
            self.stats.bump("range_requests")  # one per logical request, not per redirect hop
        req = self.client.build_request("GET", url, headers=h)
        with self._tracking(self.stats):
            return self.client.send(req, stream=True)

    def _open(self, *, first: bool = False) -> None:
        url = self._target or self.rf.url
        resp = self._request(url)
        if resp.status_code in (401, 403, 404, 410) and self._target is not None:
            # An expired CDN signature: go back through the resolve URL once.
            resp.close()
            self._target = None
            resp = self._request(self.rf.url)
        if resp.status_code == 416:
            resp.close()
            raise IntegrityError(f"{self.rf.path}: server says byte {self.pos} is past the end of the file")
        if resp.status_code >= 400:
            try:
                resp.read()
            finally:
                resp.close()
            self._raise(resp, what=f"GET {self.rf.path}")
        self._learn(resp, first=first)
        if self.pos > 0 and resp.status_code == 200:
            # The server ignored our Range: skip what we already have (costly, but correct).
            self._resp, self._chunks = resp, resp.iter_raw()
            self._discard(self.pos)
        else:
            if resp.status_code == 206:
                m = re.match(r"bytes (\d+)-", resp.headers.get("content-range", ""))
                if not m or int(m.group(1)) != self.pos:
                    resp.close()
                    raise IntegrityError(
                        f"{self.rf.path}: asked for byte {self.pos}, got range {resp.headers.get('content-range')!r}")
            self._resp, self._chunks = resp, resp.iter_raw()
        self._target = str(resp.url)

    def _learn(self, resp: httpx2.Response, *, first: bool) -> None:
        """Size, sha256 and commit from the first response (or its redirect)."""
        hops = [*resp.history, resp]
        linked_size = next((h.headers.get("x-linked-size") for h in hops if h.headers.get("x-linked-size")), None)
        linked_etag = next((h.headers.get("x-linked-etag") for h in hops if h.headers.get("x-linked-etag")), None)
        commit = next((h.headers.get("x-repo-commit") for h in hops if h.headers.get("x-repo-commit")), None)
        if self.rf.revision and commit and re.fullmatch(r"[0-9a-f]{40}", self.rf.revision) and commit != self.rf.revision:
            resp.close()
            raise IntegrityError(f"{self.rf.path}: hub served commit {commit}, expected {self.rf.revision}")
        size = None
        if linked_size and linked_size.isdigit():
            size = int(linked_size)
        elif resp.status_code == 206:
            m = re.search(r"/(\d+)\s*$", resp.headers.get("content-range", ""))
            size = int(m.group(1)) if m else None
        elif resp.status_code == 200 and resp.headers.get("content-length", "").isdigit():
            size = int(resp.headers["content-length"])
        if self.size is None:
            self.size = size
        elif size is not None and size != self.size:
            resp.close()
            said = "the hub's metadata says" if first else "an earlier response said"
            raise IntegrityError(f"{self.rf.path}: {said} {self.size} bytes, this response {size}")
        if self.sha256 is None:
            self.sha256 = _etag_sha(linked_etag) or _etag_sha(resp.headers.get("etag"))
        if self.end is None:
            self.end = self.size
        elif self.size is not None and self.end > self.size:
            self.end = self.size

    def _discard(self, n: int) -> None:
        skip = n
        while skip > 0:
            try:
                chunk = self._next_chunk()
            except (StopIteration, httpx2.TransportError) as exc:
                raise TransientFetchError(f"{self.rf.path}: body ended while skipping to byte {n}") from exc
            take = min(skip, len(chunk))
            self._pending = memoryview(chunk)[take:]
            skip -= take

    def _next_chunk(self) -> bytes:
        assert self._chunks is not None
        chunk = next(self._chunks)  # StopIteration / transport errors are handled by callers
        if self.stats is not None:
            self.stats.add_bytes(len(chunk))
        return chunk

    def _resume(self, why: BaseException | str) -> None:
        self.close()
        self.resumes += 1
        self._no_progress = self._no_progress + 1 if self.pos == self._last_resume_pos else 0
        self._last_resume_pos = self.pos
        if self.stats is not None:
            self.stats.bump("resumes")
            self.stats.bump("retries")
        if self.resumes > MAX_RESUMES or self._no_progress > self.policy.max_retries:
            raise TransientFetchError(
                f"{self.rf.path}: gave up at byte {self.pos} after {self.resumes} resumed streams ({why})")
        time.sleep(self.policy.backoff(self._no_progress))
        self._open()

    # -- reading

    def readinto(self, mv: memoryview) -> None:
        """Fill ``mv`` with the next ``len(mv)`` bytes of the file."""
        need = len(mv)
        if self.end is not None and self.pos + need > self.end:
            raise MalformedCheckpoint(
                f"{self.rf.path}: needs bytes up to {self.pos + need}, the file has {self.end}")
        got = 0
        while got < need:
            if not self._pending:
                try:
                    self._pending = memoryview(self._next_chunk())
                    continue
                except StopIteration:
                    why: BaseException | str = f"body ended at byte {self.pos} of {self.end}"
                except httpx2.TransportError as exc:
                    why = exc
                self._resume(why)
                continue
            take = min(need - got, len(self._pending))
            mv[got : got + take] = self._pending[:take]
            self._pending = self._pending[take:]
            got += take
            self.pos += take

    def at_end(self) -> bool:
        """True when the body has nothing beyond ``end`` (a longer body is a lie)."""
        if self._pending:
            return False
        try:
            while True:
                chunk = self._next_chunk()
                if chunk:
                    self._pending = memoryview(chunk)
                    return False
        except StopIteration:
            return True
        except httpx2.TransportError:
            return True  # the bytes we need all arrived

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
        self._resp = None
        self._chunks = None
        self._pending = memoryview(b"")


# ------------------------------------------------------------------------------ readers


def _read_header(body: _Body, rf: RemoteFile, hasher: Any) -> tuple[int, list[SafetensorsEntry], dict[str, str]]:
    prefix = bytearray(PREFIX_BYTES)
    body.readinto(memoryview(prefix))
    try:
        n = header_length(bytes(prefix), file_size=body.size)
        header = bytearray(n)
        body.readinto(memoryview(header))
        data_size = body.size - PREFIX_BYTES - n if body.size is not None else None
        entries, metadata = parse_safetensors_header(bytes(header), data_size)
    except MalformedCheckpoint as exc:
        body.close()
        raise MalformedCheckpoint(f"{rf.path}: {exc}") from None
    if hasher is not None:
        hasher.update(prefix)
        hasher.update(header)
    return n, entries, metadata


def _read_span(body: _Body, nbytes: int, hasher: Any) -> torch.Tensor:
    raw = torch.empty(nbytes, dtype=torch.uint8)
    if nbytes:
        mv = memoryview(raw.numpy()).cast("B")
        body.readinto(mv)
        if hasher is not None:
            hasher.update(mv)
    return raw


def _skip_span(body: _Body, nbytes: int, hasher: Any) -> None:
    """Bytes we must read but do not keep (gaps between tensors, trailing bytes)."""
    buf = bytearray(min(nbytes, 1 << 20))
    left = nbytes
    while left > 0:
        mv = memoryview(buf)[: min(left, len(buf))]
        body.readinto(mv)
        if hasher is not None:
            hasher.update(mv)
        left -= len(mv)


def _ref(rf: RemoteFile, e: SafetensorsEntry, data_start: int, raw: torch.Tensor) -> TensorRef:
    try:
        t = view_bytes_as(raw, e.dtype, e.shape)
        load: Any = _Loaded(t)
    except Exception as exc:  # a dtype torch cannot hold (F4 …): reported, load() raises
        def load(exc: BaseException = exc) -> torch.Tensor:
            raise exc
    return TensorRef(name=e.name, shape=e.shape, dtype=e.dtype, file=rf.path, load=load,
                     offset=data_start + e.begin, nbytes=e.nbytes)


def stream_safetensors(
    rf: RemoteFile,
    *,
    names: Sequence[str] | None = None,
    client: httpx2.Client | None = None,
    headers: Mapping[str, str] | None = None,
    stats: Any = None,
    verify: bool = True,
    config: Mapping[str, Any] | None = None,
    dequantize: bool = True,
) -> Iterator[TensorRef]:
    """Yield a remote safetensors file's tensors as their bytes arrive (see module doc).

    Quantised weight groups (``readers.quant``) are assembled from the same stream: a
    group's parts are held as they arrive and its one logical float tensor is yielded when
    the last part has come (``dequantize=False``: the stored tensors as they are).

    Args:
        rf: the file (URL, expected size and sha256 where known).
        names: read only these tensors (Range requests; no sha256 check possible).
        client: an ``httpx2.Client``; default: hubscan's retrying, rate-limited session.
        headers: request headers; default: the Hub's (``HF_TOKEN`` auth, user agent).
        stats: a ``FetchStats`` to count requests and bytes into.
        verify: check the sha256 (when the hub published one) at the end of the file.
        config: the model's ``config.json`` (quantisation bits, group sizes).

    Raises:
        MalformedCheckpoint: bad header (before anything is yielded).
        IntegrityError: sha256/size mismatch — after the file's last tensor (see contract).
        NotFound, GatedRepo, RateLimited, TransientFetchError: from the hub, after retries.
    """
    if names is not None:
        yield from _stream_subset(rf, set(names), client=client, headers=headers, stats=stats)
        return
    body = _Body(rf, client=_client(client), headers=_default_headers(headers), stats=stats)
    try:
        expected_sha = body.sha256 if verify else None
        hasher = hashlib.sha256() if expected_sha else None
        n, entries, _ = _read_header(body, rf, hasher)
        data_start = PREFIX_BYTES + n
        pos = data_start
        plans = plan_groups(((e.name, e.shape, e.dtype) for e in entries), config) if dequantize else []
        asm = Assembler(plans) if plans else None
        for e in entries:
            gap = data_start + e.begin - pos
            if gap:
                _skip_span(body, gap, hasher)
            raw = _read_span(body, e.nbytes, hasher)
            pos = data_start + e.end
            ref = _ref(rf, e, data_start, raw)
            del raw
            if asm is None:
                yield ref
            else:
                yield from asm.feed(ref)
            del ref
        if asm is not None:
            yield from asm.close()
        if body.size is not None and body.size > pos:
            _skip_span(body, body.size - pos, hasher)
            pos = body.size
        if not body.at_end():
            raise IntegrityError(f"{rf.path}: the server sent more than the {pos} bytes the file has")
        if hasher is not None:
            got = hasher.hexdigest()
            if got != expected_sha:
                raise IntegrityError(
                    f"{rf.path}: sha256 {got} differs from the hub's {expected_sha}; "
                    "discard every result derived from this file")
            if stats is not None:
                stats.bump("files_verified")
    finally:
        body.close()


def stream_gguf(
    rf: RemoteFile,
    *,
    client: httpx2.Client | None = None,
    headers: Mapping[str, str] | None = None,
    stats: Any = None,
    verify: bool = True,
    map_names: bool = True,
) -> Iterator[TensorRef]:
    """Yield a remote GGUF file's tensors as their bytes arrive: ONE streaming GET, the
    header parsed from the first bytes of the body by the same pure parser as local files
    (``readers.gguf.parse_gguf_header``), each tensor's bytes held until it is yielded and
    dequantised by its ``load()``. Same integrity contract as :func:`stream_safetensors`.
    """
    from .gguf import gguf_refs, parse_gguf_header

    body = _Body(rf, client=_client(client), headers=_default_headers(headers), stats=stats)
    try:
        expected_sha = body.sha256 if verify else None
        hasher = hashlib.sha256() if expected_sha else None

        def read(k: int) -> bytes:
            buf = bytearray(k)
            body.readinto(memoryview(buf))
            if hasher is not None:
                hasher.update(buf)
            return bytes(buf)

        try:
            header = parse_gguf_header(read, file_size=body.size)
        except MalformedCheckpoint as exc:
            raise MalformedCheckpoint(f"{rf.path}: {exc}") from None
        pos = body.pos
        loaders: dict[str, _GGUFLoad] = {}
        refs = gguf_refs(header, rf.path, lambda info: loaders.setdefault(info.name, _GGUFLoad(info)),
                         map_names=map_names)
        for ref, info in zip(refs, header.tensors):
            start = header.data_start + info.offset
            if start > pos:
                _skip_span(body, start - pos, hasher)
                pos = start
            if info.nbytes is not None:
                # the ref owns its bytes from here on (a read-ahead consumer may hold it)
                loaders.pop(info.name).raw = _read_span(body, info.nbytes, hasher)
                pos = start + info.nbytes
            yield ref
            del ref
        if body.size is not None and body.size > pos:
            _skip_span(body, body.size - pos, hasher)
            pos = body.size
        if not body.at_end():
            raise IntegrityError(f"{rf.path}: the server sent more than the {pos} bytes the file has")
        if hasher is not None:
            got = hasher.hexdigest()
            if got != expected_sha:
                raise IntegrityError(f"{rf.path}: sha256 {got} differs from the hub's {expected_sha}; "
                                     "discard every result derived from this file")
            if stats is not None:
                stats.bump("files_verified")
    finally:
        body.close()


class _GGUFLoad:
    """``load()`` of a streamed GGUF tensor: it owns the tensor's raw bytes (they arrived in
    the stream) and dequantises them when called (picklable: the bytes travel with it)."""

    def __init__(self, info: Any) -> None:
        self.info = info
        self.raw: torch.Tensor | None = None

    def __call__(self) -> torch.Tensor:
        from .gguf import dequantize_gguf

        raw = self.raw if self.raw is not None else torch.zeros(0, dtype=torch.uint8)
        return dequantize_gguf(raw, self.info)


def fetch_header(
    rf: RemoteFile,
    *,
    client: httpx2.Client | None = None,
    headers: Mapping[str, str] | None = None,
    stats: Any = None,
) -> RemoteHeader:
    """A remote safetensors header with one Range request (two for headers > 256 KiB)."""
    c, h = _client(client), _default_headers(headers)
    body = _Body(rf, client=c, headers=h, stats=stats, start=0,
                 end=min(HEADER_PREFETCH, rf.size) if rf.size else HEADER_PREFETCH)
    try:
        prefix = bytearray(PREFIX_BYTES)
        body.readinto(memoryview(prefix))
        n = header_length(bytes(prefix), file_size=body.size)
        header = bytearray(n)
        have = min(n, (body.end or 0) - PREFIX_BYTES)
        body.readinto(memoryview(header)[:have])
        size, sha = body.size, body.sha256
    except MalformedCheckpoint as exc:
        raise MalformedCheckpoint(f"{rf.path}: {exc}") from None
    finally:
        body.close()
    if have < n:  # a long header: one more Range for the rest
        rest = _Body(rf, client=c, headers=h, stats=stats, start=PREFIX_BYTES + have, end=PREFIX_BYTES + n)
        try:
            rest.readinto(memoryview(header)[have:])
        finally:
            rest.close()
    if size is None:
        raise SourceError(f"{rf.path}: the server did not say how large the file is")
    try:
        entries, metadata = parse_safetensors_header(bytes(header), size - PREFIX_BYTES - n)
    except MalformedCheckpoint as exc:
        raise MalformedCheckpoint(f"{rf.path}: {exc}") from None
    return RemoteHeader(tuple(entries), metadata, n, size, sha)


def _stream_subset(rf: RemoteFile, wanted: set[str], *, client: httpx2.Client | None,
                   headers: Mapping[str, str] | None, stats: Any) -> Iterator[TensorRef]:
    c, h = _client(client), _default_headers(headers)
    hdr = fetch_header(rf, client=c, headers=h, stats=stats)
    missing = wanted - {e.name for e in hdr.entries}
    if missing:
        raise MalformedCheckpoint(f"{rf.path}: no tensor named {sorted(missing)[:5]}")
    picked = [e for e in hdr.entries if e.name in wanted]
    runs: list[list[SafetensorsEntry]] = []
    for e in picked:
        if runs and e.begin - runs[-1][-1].end <= COALESCE_GAP:
            runs[-1].append(e)
        else:
            runs.append([e])
    rf_known = RemoteFile(rf.url, rf.path, hdr.size, hdr.sha256, rf.revision)
    for run in runs:
        start, end = hdr.data_start + run[0].begin, hdr.data_start + run[-1].end
        body = _Body(rf_known, client=c, headers=h, stats=stats, start=start, end=end)
        try:
            pos = start
            for e in run:
                gap = hdr.data_start + e.begin - pos
                if gap:
                    _skip_span(body, gap, None)
                raw = _read_span(body, e.nbytes, None)
                pos = hdr.data_start + e.end
                yield _ref(rf, e, hdr.data_start, raw)
                del raw
        finally:
            body.close()


def download_file(
    rf: RemoteFile,
    dest_dir: str | os.PathLike[str] | None = None,
    *,
    client: httpx2.Client | None = None,
    headers: Mapping[str, str] | None = None,
    stats: Any = None,
    verify: bool = True,
    hash_prefix: str | None = None,
) -> Path:
    """Download a whole file to a temporary path (pickles must be read from disk).

    Same streaming, resumption and sha256 check as ``stream_safetensors``; the file is
    written to ``dest_dir`` (default ``$HUBSCAN_TMPDIR`` or the system temp dir) under a
    unique name and the caller deletes it. ``hash_prefix`` checks a sha256 *prefix* (the
    torchvision convention, ``resnet50-11ad3fa6.pth``).

    Raises:
        IntegrityError: size or sha256 mismatch (the partial file is removed).
    """
    dest_dir = Path(dest_dir or os.environ.get("HUBSCAN_TMPDIR") or tempfile.gettempdir())
    dest_dir.mkdir(parents=True, exist_ok=True)
    body = _Body(rf, client=_client(client), headers=_default_headers(headers), stats=stats)
    suffix = Path(rf.path).suffix
    fd, name = tempfile.mkstemp(prefix="hubscan-", suffix=suffix, dir=dest_dir)
    path = Path(name)
    ok = False
    try:
        hasher = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            if body.size is None:
                raise SourceError(f"{rf.path}: the server did not say how large the file is")
            buf = bytearray(1 << 20)
            left = body.size
            while left > 0:
                mv = memoryview(buf)[: min(left, len(buf))]
                body.readinto(mv)
                hasher.update(mv)
                out.write(mv)
                left -= len(mv)
        if not body.at_end():
            raise IntegrityError(f"{rf.path}: the server sent more than the {body.size} bytes the file has")
        got = hasher.hexdigest()
        expected = body.sha256 if verify else None
        if expected and got != expected:
            raise IntegrityError(f"{rf.path}: sha256 {got} differs from the published {expected}")
        if hash_prefix and not got.startswith(hash_prefix.lower()):
            raise IntegrityError(f"{rf.path}: sha256 {got} does not start with the published {hash_prefix}")
        if (expected or hash_prefix) and stats is not None:
            stats.bump("files_verified")
        ok = True
        return path
    finally:
        body.close()
        if not ok:
            path.unlink(missing_ok=True)


class RangedFile:
    """Random access to the tensors of one remote safetensors file, in the fewest requests.

    For reading *some* tensors of a file on demand — the base model's matrices while a
    fine-tune streams past (``hubscan.analysis.deltas``) — without downloading the file:

    - the header comes with the first ``HEADER_PREFETCH`` bytes (one Range request, as
      ``fetch_header``), and the tensor bytes that request brought along are kept, so
      tensors lying in them cost nothing more (a small file is read in that one request);
    - the tensors ``wanted`` says will be asked for are grouped into runs (neighbours closer
      than ``COALESCE_GAP``), and a ``read`` beyond the first bytes opens one Range request
      for the rest of its run, which the next tensors of the run continue. Asked in file
      order — a fine-tune and its base share their layout — a file costs one request plus
      one per run;
    - re-opened requests go straight to the CDN URL the first one was redirected to (no
      ``resolve`` quota), and back through the resolve URL if it expired.

    Bytes are checked against the header's offsets; a partial read cannot be checked against
    the file's sha256.

    Args:
        rf: the file.
        wanted: ``f(name, shape, dtype) -> bool`` — the tensors that will be read (others can
            still be read, one request each); None = all.
    """

    def __init__(self, rf: RemoteFile, *, wanted: Any = None, client: httpx2.Client | None = None,
                 headers: Mapping[str, str] | None = None, stats: Any = None) -> None:
        self.rf = rf
        self._wanted = wanted
        self._client = _client(client)
        self._headers = _default_headers(headers)
        self.stats = stats
        self._hdr: RemoteHeader | None = None
        self._by_name: dict[str, SafetensorsEntry] = {}
        self._run_end: dict[str, int] = {}  # entry name -> end offset (absolute) of its run
        self._head = b""  # file bytes [data_start, data_start + len) that came with the header
        self._body: _Body | None = None
        self._body_end = 0
        self._target: str | None = None

    def _header(self) -> RemoteHeader:
        if self._hdr is not None:
            return self._hdr
        rf = self.rf
        body = _Body(rf, client=self._client, headers=self._headers, stats=self.stats, start=0,
                     end=min(HEADER_PREFETCH, rf.size) if rf.size else HEADER_PREFETCH)
        try:
            prefix = bytearray(PREFIX_BYTES)
            body.readinto(memoryview(prefix))
            n = header_length(bytes(prefix), file_size=body.size)
            header = bytearray(n)
            have = min(n, (body.end or 0) - PREFIX_BYTES)
            body.readinto(memoryview(header)[:have])
            rest = bytearray(max(0, (body.end or 0) - PREFIX_BYTES - n))
            if rest:
                body.readinto(memoryview(rest))
            size, sha = body.size, body.sha256
            self._target = body._target
        except MalformedCheckpoint as exc:
            raise MalformedCheckpoint(f"{rf.path}: {exc}") from None
        finally:
            body.close()
        if have < n:  # a long header: one more Range for the rest
            more = _Body(rf, client=self._client, headers=self._headers, stats=self.stats,
                         start=PREFIX_BYTES + have, end=PREFIX_BYTES + n, target=self._target)
            try:
                more.readinto(memoryview(header)[have:])
            finally:
                more.close()
        if size is None:
            raise SourceError(f"{rf.path}: the server did not say how large the file is")
        try:
            entries, metadata = parse_safetensors_header(bytes(header), size - PREFIX_BYTES - n)
        except MalformedCheckpoint as exc:
            raise MalformedCheckpoint(f"{rf.path}: {exc}") from None
        hdr = RemoteHeader(tuple(entries), metadata, n, size, sha)
        self._hdr, self._head = hdr, bytes(rest)
        self._by_name = {e.name: e for e in hdr.entries}
        picked = sorted((e for e in hdr.entries
                         if self._wanted is None or self._wanted(e.name, e.shape, e.dtype)),
                        key=lambda e: e.begin)
        runs: list[list[SafetensorsEntry]] = []
        for e in picked:
            if runs and e.begin - runs[-1][-1].end <= COALESCE_GAP:
                runs[-1].append(e)
            else:
                runs.append([e])
        for run in runs:
            for e in run:
                self._run_end[e.name] = hdr.data_start + run[-1].end
        return hdr

    def names(self) -> dict[str, SafetensorsEntry]:
        """Every tensor of the file (name → header entry); fetches the header once."""
        self._header()
        return dict(self._by_name)

    def read(self, name: str) -> TensorRef:
        """The tensor ``name``, loaded (``load()`` returns it).

        Raises:
            KeyError: the file has no such tensor.
            MalformedCheckpoint, IntegrityError, TransientFetchError …: as ``stream_safetensors``.
        """
        hdr = self._header()
        e = self._by_name[name]
        if e.end <= len(self._head):  # it came with the header
            raw = torch.frombuffer(bytearray(self._head[e.begin:e.end]), dtype=torch.uint8) \
                if e.nbytes else torch.empty(0, dtype=torch.uint8)
            return _ref(self.rf, e, hdr.data_start, raw)
        start, end = hdr.data_start + e.begin, hdr.data_start + e.end
        body = self._body
        if body is None or body.pos > start or start - body.pos > COALESCE_GAP or end > self._body_end:
            self.close()
            run_end = max(self._run_end.get(name, end), end)
            known = RemoteFile(self.rf.url, self.rf.path, hdr.size, hdr.sha256, self.rf.revision)
            body = _Body(known, client=self._client, headers=self._headers, stats=self.stats,
                         start=start, end=run_end, target=self._target)
            self._target = body._target
            self._body, self._body_end = body, run_end
        if start > body.pos:
            _skip_span(body, start - body.pos, None)
        raw = _read_span(body, e.nbytes, None)
        return _ref(self.rf, e, hdr.data_start, raw)

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
        self._body = None
        self._body_end = 0
