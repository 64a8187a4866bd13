"""Where a lake lives — a local folder or an object store — and how a file appears atomically.

Readers must never see half a file, and the two kinds of storage get there differently:

- **local** (and any POSIX mount): write ``.<name>.tmp-<uuid>`` in the *same* folder,
  ``fsync`` it, ``os.replace`` it onto the final name, ``fsync`` the folder. The temp name
  does not end in ``.parquet``, so no ``**/*.parquet`` glob ever matches it.
- **object stores** (``s3://`` and whatever pyarrow/fsspec can open): one PUT of the final,
  deterministic name. S3 makes an object visible only when its PUT (or a multipart
  upload's completion) succeeds, and "rename" there is copy + delete — not atomic — so it
  is never used.

Deleting is the other dangerous operation (compaction removes the files it merged). A file
may have been *replaced* under the same name since it was listed — a retried unit rewrites
its own file — and that newer content must survive. So a delete carries the identity seen
when the file was listed (inode/mtime/size) and only removes that exact file; locally the
check is race-free (rename aside, compare, then unlink or link back).
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from ..errors import LakeError

__all__ = ["Storage", "FileEntry", "open_storage", "TEMP_MARK", "TRASH_MARK"]

#: Marker in the names of files being written (``.part-x.parquet.tmp-<uuid>``).
TEMP_MARK = ".tmp-"
#: Marker of a file being deleted after compaction (local only, lives for microseconds).
TRASH_MARK = ".trash-"

_FLAT_STORES = ("s3", "gcs", "abfs")

_S3_OPTION_ALIASES = {
    "endpoint_override": "endpoint_override", "endpoint_url": "endpoint_override",
    "endpoint": "endpoint_override",
    "access_key": "access_key", "aws_access_key_id": "access_key", "key": "access_key",
    "secret_key": "secret_key", "aws_secret_access_key": "secret_key", "secret": "secret_key",
    "session_token": "session_token", "aws_session_token": "session_token", "token": "session_token",
    "region": "region", "region_name": "region", "scheme": "scheme", "anonymous": "anonymous",
    "request_timeout": "request_timeout", "connect_timeout": "connect_timeout",
    "force_virtual_addressing": "force_virtual_addressing",
}


@dataclass(frozen=True)
class FileEntry:
    """A listed file and the identity it had when listed (to delete only that exact file)."""

    path: str  # path inside the storage's filesystem
    size: int
    mtime_ns: int | None
    inode: int | None = None  # local files only
    etag: str | None = None  # object stores, when the file was opened (not from listings)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def identity(self) -> tuple[Any, ...]:
        """What must be unchanged for a delete: inode+mtime locally, the ETag on S3 (object
        mtimes have 1 s resolution there, too coarse to tell a rewrite apart)."""
        if self.etag is not None:
            return (self.size, self.etag)
        return (self.size, self.mtime_ns, self.inode)


@dataclass(frozen=True)
class Storage:
    """A lake root on some filesystem.

    Attributes:
        uri: as the user gave it (for messages).
        fs: the pyarrow filesystem every read and write goes through.
        root: the lake's root path inside ``fs`` (``/abs/path`` or ``bucket/prefix``).
        local: True for the local filesystem: atomic rename, DuckDB reads paths directly.
        fsync: flush files and folders to disk before a write counts as done (local only).
    """

    uri: str
    fs: pafs.FileSystem
    root: str
    local: bool
    fsync: bool = True

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *[p.strip("/") for p in parts if p]])

    def relative(self, path: str) -> str:
        return path[len(self.root.rstrip("/")) + 1:]

    # ---------------------------------------------------------------- writing
    def write_atomic(self, path: str, data: pa.Buffer | bytes) -> None:
        """Make ``path`` hold exactly ``data``, appearing whole or not at all."""
        if self.local:
            self._write_local(path, data)
        else:
            if self.fs.type_name not in _FLAT_STORES:  # S3/GCS/Azure have no folders to make
                self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            # One PUT of the final name (multipart only above the part size; its completion is
            # just as atomic). No temp object, no rename.
            with self.fs.open_output_stream(path) as out:
                out.write(data)

    def _write_local(self, path: str, data: pa.Buffer | bytes) -> None:
        folder, name = os.path.split(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{name}{TEMP_MARK}{uuid.uuid4().hex[:12]}")
        try:
            with open(tmp, "wb") as f:
                f.write(memoryview(data))
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        if self.fsync:
            _fsync_dir(folder)

    # ---------------------------------------------------------------- listing
    def list_files(self, prefix: str = "") -> list[FileEntry]:
        """Every file under ``root/prefix`` (recursive), with the identity to delete it safely."""
        base = self.path(prefix) if prefix else self.root
        if self.local:
            return _list_local(base)
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        out = []
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.File:
                out.append(FileEntry(info.path, info.size or 0, info.mtime_ns))
        return sorted(out, key=lambda e: e.path)

    def stat(self, path: str) -> FileEntry | None:
        """The file's current identity (on object stores a HEAD that returns the ETag)."""
        if self.local:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return None
            return FileEntry(path, st.st_size, st.st_mtime_ns, st.st_ino)
        try:
            with self.fs.open_input_file(path) as f:
                return self._remote_entry(path, f)
        except FileNotFoundError:
            return None

    def read_parquet(self, path: str) -> tuple[pa.Table, FileEntry]:
        """Read a whole Parquet file *and* the identity of exactly the bytes that were read.

        Compaction deletes a merged input only if it still has this identity, so a file
        rewritten between listing and reading (or after reading) is never lost.
        """
        import pyarrow.parquet as pq

        if self.local:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                table = pq.read_table(f)
            return table, FileEntry(path, st.st_size, st.st_mtime_ns, st.st_ino)
        with self.fs.open_input_file(path) as f:
            entry = self._remote_entry(path, f)
            table = pq.read_table(f)
        return table, entry

    def _remote_entry(self, path: str, f: Any) -> FileEntry:
        meta = {k.lower(): v for k, v in (f.metadata() or {}).items()}
        etag = meta.get("etag")
        if isinstance(etag, bytes):
            etag = etag.decode()
        if etag:
            return FileEntry(path, f.size(), None, None, etag.strip('"'))
        info = self.fs.get_file_info(path)  # no ETag from this store: fall back to mtime
        return FileEntry(path, f.size(), info.mtime_ns)

    # ---------------------------------------------------------------- deleting
    def delete_if_unchanged(self, entry: FileEntry) -> bool:
        """Delete ``entry.path`` only if it is still the file that was listed.

        Returns False (and deletes nothing) when the file is gone or was replaced: a newer
        file under the same name holds rows nobody has merged yet.
        """
        if self.local:
            return _delete_local(entry)
        now = self.stat(entry.path)
        if now is None or now.identity != entry.identity:
            return False
        # Object stores have no conditional delete through pyarrow; the window between the
        # HEAD above and this DELETE is one round trip (see docs/lake.md).
        try:
            self.fs.delete_file(entry.path)
        except FileNotFoundError:
            return False
        return True

    def delete(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _list_local(base: str) -> list[FileEntry]:
    out = []
    for dirpath, _dirs, files in os.walk(base):
        for name in files:
            p = os.path.join(dirpath, name)
            try:
                st = os.stat(p)
            except FileNotFoundError:  # removed while we walked
                continue
            out.append(FileEntry(p, st.st_size, st.st_mtime_ns, st.st_ino))
    return sorted(out, key=lambda e: e.path)


def _delete_local(entry: FileEntry) -> bool:
    """Race-free conditional delete: move aside, compare identity, unlink or put back.

    A file already replaced since it was listed (the common case: a retried unit rewrote it)
    is recognised by a ``stat`` first and never moved at all — moving it aside and linking it
    back would leave a moment without the file, in which a reader's listing misses it or a
    reader that listed it fails to open it. Only a file that still looks like the listed one
    is moved aside, and compared again there (it may have been replaced in between).
    """
    try:
        st = os.stat(entry.path)
    except FileNotFoundError:
        return False
    if (st.st_size, st.st_mtime_ns, st.st_ino) != entry.identity:
        return False
    folder, name = os.path.split(entry.path)
    aside = os.path.join(folder, f".{name}{TRASH_MARK}{uuid.uuid4().hex[:12]}")
    try:
        os.rename(entry.path, aside)
    except FileNotFoundError:
        return False
    st = os.stat(aside)
    if (st.st_size, st.st_mtime_ns, st.st_ino) == entry.identity:
        os.unlink(aside)
        return True
    # Replaced since it was listed: put it back unless something newer took the name again
    # (link does not overwrite; the newer file wins, as a retried unit's rewrite should).
    try:
        os.link(aside, entry.path)
    except FileExistsError:
        pass
    os.unlink(aside)
    return False


# ---------------------------------------------------------------- opening
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def open_storage(uri: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None,
                 fsync: bool = True) -> Storage:
    """Resolve a lake URI: a local path / ``file://``, ``s3://bucket/prefix``, or anything
    pyarrow (``gs://``, ``hdfs://``, ``abfs://``) or fsspec can open.

    For ``s3://`` the endpoint comes from ``storage_options["endpoint_override"]`` (aliases
    ``endpoint_url``, ``endpoint``), else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` — so
    MinIO, Ceph, R2 or a local test server work with the same environment variables the AWS
    CLI reads. Credentials: the options (``access_key``/``secret_key``, or boto-style names)
    or the usual AWS environment / config files.
    """
    text = os.fspath(uri)
    opts = dict(storage_options or {})
    if not _SCHEME.match(text) or text.startswith("file://"):
        path = urlsplit(text).path if text.startswith("file://") else text
        root = os.path.abspath(os.path.expanduser(path))
        return Storage(uri=text, fs=pafs.LocalFileSystem(), root=root, local=True, fsync=fsync)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("s3", "s3a"):
        root = (parts.netloc + parts.path).rstrip("/")
        if not parts.netloc:
            raise LakeError(f"{text}: an s3 URI needs a bucket (s3://bucket/prefix)")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return Storage(uri=text, fs=_s3(query | opts), root=root, local=False)
    try:
        fs, root = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
        fs, root = _fsspec(text, opts)
    return Storage(uri=text, fs=fs, root=root.rstrip("/"), local=False)


def _s3(options: Mapping[str, Any]) -> pafs.S3FileSystem:
    kwargs: dict[str, Any] = {}
    for k, v in options.items():
        if k not in _S3_OPTION_ALIASES:
            raise LakeError(f"unknown s3 storage option {k!r} (known: "
                            f"{', '.join(sorted(set(_S3_OPTION_ALIASES)))})")
        kwargs[_S3_OPTION_ALIASES[k]] = v
    endpoint = kwargs.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL_S3") \
        or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        if "://" in endpoint:
            scheme, _, rest = endpoint.partition("://")
            kwargs.setdefault("scheme", scheme)
            endpoint = rest.rstrip("/")
        kwargs["endpoint_override"] = endpoint
        # A custom endpoint has no region discovery; S3-compatible servers accept any.
        kwargs.setdefault("region", os.environ.get("AWS_REGION")
                          or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    elif "region" not in kwargs and (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        kwargs["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    for flag in ("anonymous", "force_virtual_addressing"):
        if isinstance(kwargs.get(flag), str):
            kwargs[flag] = kwargs[flag].lower() in ("1", "true", "yes")
    # allow_delayed_open: a small object is sent as one PutObject when the stream closes
    # (instead of an upload created up front), i.e. exactly one atomic PUT per file.
    return pafs.S3FileSystem(allow_delayed_open=True, **kwargs)


def _fsspec(uri: str, options: Mapping[str, Any]) -> tuple[pafs.FileSystem, str]:
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency
        raise LakeError(f"{uri}: no filesystem for this scheme") from exc
    try:
        fs, root = fsspec.core.url_to_fs(uri, **options)
    except (ImportError, ValueError) as exc:
        raise LakeError(f"{uri}: cannot open this filesystem ({exc})") from exc
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), root
