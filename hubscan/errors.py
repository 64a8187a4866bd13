"""Every error hubscan raises on purpose, in one shallow tree.

A scan never dies of one bad model: the engine catches these, and the *class name*
becomes the ``error_class`` column of a ``failures`` row. So the tree is the
vocabulary users filter on (``WHERE error_class = 'UnsafeCheckpoint'``); keep it
small and stable.

    HubscanError
    ├── CheckpointError (ValueError)        the bytes of a checkpoint are unusable
    │   ├── MalformedCheckpoint             header/offsets/dtype/shape inconsistent
    │   ├── UnsafeCheckpoint                would need full unpickling; refused
    │   └── IntegrityError                  sha256 or size differs from the hub's metadata
    ├── MatrixError (ValueError)            one tensor is unusable (NaN/Inf/all-zero/empty)
    ├── SourceError (OSError)               a hub or folder could not give us a model
    │   ├── NotFound                        repo/file/revision does not exist
    │   ├── GatedRepo                       access denied (gated or private)
    │   ├── RateLimited                     429, after retries
    │   └── TransientFetchError             5xx / reset / cut / timeout, after retries
    ├── SpecError (ValueError)              a scan spec (TOML) is invalid
    ├── LakeError (OSError)                 the lake cannot be read or written safely
    │   └── SchemaMismatch                  a file's schema is not the registered one
    └── ServeError (ValueError)             the explorer cannot start as asked (unsafe bind)
        ├── BadRequest                      a request parameter is invalid (HTTP 400)
        ├── PageNotFound (LookupError)      no such model, layer or picture (HTTP 404)
        └── QueryRefused                    the SQL box refused or cut off a query (HTTP 400)
"""

from __future__ import annotations

__all__ = [
    "HubscanError",
    "CheckpointError",
    "MalformedCheckpoint",
    "UnsafeCheckpoint",
    "IntegrityError",
    "MatrixError",
    "SourceError",
    "NotFound",
    "GatedRepo",
    "RateLimited",
    "TransientFetchError",
    "SpecError",
    "LakeError",
    "SchemaMismatch",
    "ServeError",
    "BadRequest",
    "PageNotFound",
    "QueryRefused",
    "is_transient",
]


class HubscanError(Exception):
    """Base of every error hubscan raises deliberately."""


class CheckpointError(HubscanError, ValueError):
    """A checkpoint file cannot be read as weights."""


class MalformedCheckpoint(CheckpointError):
    """Header, offsets, dtype or shape of a checkpoint are inconsistent."""


class UnsafeCheckpoint(CheckpointError):
    """Reading the file would require executing code (full unpickling); refused."""


class IntegrityError(CheckpointError):
    """Downloaded bytes do not match the size or sha256 the hub published."""


class MatrixError(HubscanError, ValueError):
    """One weight matrix cannot be analysed (NaN/Inf, all zeros, empty)."""


class SourceError(HubscanError, OSError):
    """A source (hub, folder) could not provide a model or file."""


class NotFound(SourceError):
    """The repo, revision or file does not exist."""


class GatedRepo(SourceError):
    """Access to the repo is denied (gated or private without a token)."""


class RateLimited(SourceError):
    """The hub kept answering 429 after all retries."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientFetchError(SourceError):
    """5xx, connection reset, cut body or timeout that outlived the retries."""


class SpecError(HubscanError, ValueError):
    """A scan spec is invalid (unknown key, bad value)."""


class LakeError(HubscanError, OSError):
    """The lake cannot be read or written safely."""


class SchemaMismatch(LakeError):
    """A Parquet file's schema differs from the registered schema version."""


class ServeError(HubscanError, ValueError):
    """``hubscan serve`` cannot start as asked (e.g. a public bind without a token)."""


class BadRequest(ServeError):
    """A request parameter is invalid; the message is the one line the client sees."""


class PageNotFound(ServeError, LookupError):
    """The lake has no such model, layer or picture."""


class QueryRefused(ServeError):
    """The SQL box refused a statement (a write, file access, a table function) or cut it off
    at its time, row or size limit."""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same work later could succeed."""
    return isinstance(exc, (RateLimited, TransientFetchError, TimeoutError, ConnectionError))
