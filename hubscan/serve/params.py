"""Request parameters → validated, frozen values; anything else is a one-line ``BadRequest``.

Nothing from a request is ever pasted into SQL: sort columns and filter names come from the
whitelists below (the SQL text is ours), filter *values* are bound parameters. The keyset
cursor is opaque to clients (base64 of a small JSON list) but checked like any other input.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal, Mapping
from urllib.parse import urlencode

from ..errors import BadRequest

__all__ = ["SORTS", "EXACT_FILTERS", "LeaderboardQuery", "Cursor", "required", "optional",
           "parse_size", "parse_since", "parse_int"]

#: Leaderboard sort keys → (column of serve.models, SQL type used to bind a cursor value).
SORTS: dict[str, tuple[str, str]] = {
    "repo_id": ("repo_id", "VARCHAR"),
    "alpha_mean": ("alpha_mean", "DOUBLE"),
    "alpha_weighted_mean": ("alpha_weighted_mean", "DOUBLE"),
    "log_norm_mean": ("log_norm_mean", "DOUBLE"),
    "frac_alpha_2_6": ("frac_alpha_2_6", "DOUBLE"),
    "n_fit_failed": ("n_fit_failed", "BIGINT"),
    "n_warnings": ("n_warnings", "BIGINT"),
    "n_layers": ("n_layers", "BIGINT"),
    "params": ("params", "BIGINT"),
    "downloads": ("downloads", "BIGINT"),
    "written_at": ("written_at", "TIMESTAMPTZ"),
}
#: Exact-match filters → SQL over serve.models with one bound parameter ``?``.
EXACT_FILTERS: dict[str, str] = {
    "source": "source = ?",
    "arch": "arch = ?",
    "library": "library = ?",
    "pipeline_tag": "pipeline_tag = ?",
    "status": "status = ?",
    "phase": "list_contains(phases, ?)",
    "warning": "list_contains(warning_labels, ?)",
    "format": "list_contains(formats, ?)",
}
_MAX_VALUE = 300
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmbt]?)\s*$", re.IGNORECASE)
_FACTOR = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


def _clean(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > _MAX_VALUE or "\x00" in value:
        raise BadRequest(f"{name}: value too long or not text")
    value = value.strip()
    return value or None


def optional(params: Mapping[str, str], name: str, *, max_len: int = _MAX_VALUE) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if len(value) > max_len or "\x00" in value:
        raise BadRequest(f"{name}: at most {max_len} characters of text")
    return value.strip() or None


def required(params: Mapping[str, str], name: str, *, max_len: int = 2000) -> str:
    value = params.get(name)
    if value is None or not value.strip():
        raise BadRequest(f"missing parameter {name!r}")
    if len(value) > max_len or "\x00" in value:
        raise BadRequest(f"{name}: at most {max_len} characters of text")
    return value.strip()


def parse_int(params: Mapping[str, str], name: str, default: int, *, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}: expected an integer, got {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name}: must be between {lo} and {hi}")
    return value


def parse_size(name: str, raw: str | None) -> int | None:
    """``7B``, ``350M``, ``1.5k`` or a plain number of parameters."""
    if raw is None or raw.strip() == "":
        return None
    m = _SIZE.match(raw)
    if not m:
        raise BadRequest(f"{name}: expected a parameter count like 350M or 7B, got {raw[:40]!r}")
    return int(float(m.group(1)) * _FACTOR[m.group(2).lower()])


def parse_since(raw: str | None) -> date | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise BadRequest(f"since: expected a date YYYY-MM-DD, got {raw[:40]!r}") from None


@dataclass(frozen=True)
class Cursor:
    """Where a keyset page starts: the sort key of the row next to it.

    ``null`` is True when that row's sort value is NULL (NULLs sort last in both orders).
    """

    sort: str
    order: Literal["asc", "desc"]
    null: bool
    value: Any
    key: str

    def encode(self) -> str:
        raw = json.dumps([self.sort, self.order, self.null, self.value, self.key],
                         separators=(",", ":"), default=str)
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, *, sort: str, order: str) -> "Cursor":
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            s, o, null, value, key = json.loads(raw)
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise BadRequest("page cursor is not valid; start from the first page") from None
        if s != sort or o != order:
            raise BadRequest("page cursor belongs to another sort order; start from the first page")
        if not isinstance(key, str) or not isinstance(null, bool) or len(key) > 2000:
            raise BadRequest("page cursor is not valid; start from the first page")
        typ = SORTS[sort][1]
        ok = (value is None if null else
              isinstance(value, str) if typ in ("VARCHAR", "TIMESTAMPTZ") else
              isinstance(value, int) and not isinstance(value, bool) if typ == "BIGINT" else
              isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
        if not ok:
            raise BadRequest("page cursor is not valid; start from the first page")
        return cls(sort=s, order=o, null=null, value=value, key=key)


@dataclass(frozen=True)
class LeaderboardQuery:
    """A validated leaderboard request: filters, one sort, a page size, at most one cursor."""

    filters: tuple[tuple[str, str], ...] = ()
    q: str | None = None
    min_params: int | None = None
    max_params: int | None = None
    sort: str = "alpha_mean"
    order: Literal["asc", "desc"] = "asc"
    page_size: int = 50
    after: Cursor | None = None
    before: Cursor | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str], *, page_size: int, max_page_size: int) -> "LeaderboardQuery":
        sort = params.get("sort") or "alpha_mean"
        if sort not in SORTS:
            raise BadRequest(f"sort: one of {', '.join(SORTS)}")
        order = params.get("order") or ("asc" if sort in ("repo_id", "alpha_mean") else "desc")
        if order not in ("asc", "desc"):
            raise BadRequest("order: asc or desc")
        filters = tuple((name, v) for name in EXACT_FILTERS
                        if (v := _clean(name, params.get(name))) is not None)
        after, before = params.get("after"), params.get("before")
        if after and before:
            raise BadRequest("give at most one of after= and before=")
        return cls(
            filters=filters, q=_clean("q", params.get("q")),
            min_params=parse_size("min_params", params.get("min_params")),
            max_params=parse_size("max_params", params.get("max_params")),
            sort=sort, order=order,  # type: ignore[arg-type]
            page_size=parse_int(params, "page_size", page_size, lo=1, hi=max_page_size),
            after=Cursor.decode(after, sort=sort, order=order) if after else None,
            before=Cursor.decode(before, sort=sort, order=order) if before else None,
        )

    def filter_value(self, name: str) -> str | None:
        return dict(self.filters).get(name)

    def state(self, *, page: bool = False) -> dict[str, str]:
        """The query string of this request (without the cursor unless ``page``)."""
        out = {k: v for k, v in self.filters}
        if self.q:
            out["q"] = self.q
        if self.min_params is not None:
            out["min_params"] = str(self.min_params)
        if self.max_params is not None:
            out["max_params"] = str(self.max_params)
        out["sort"], out["order"] = self.sort, self.order
        if self.page_size:
            out["page_size"] = str(self.page_size)
        if page and self.after:
            out["after"] = self.after.encode()
        if page and self.before:
            out["before"] = self.before.encode()
        return out

    def link(self, **changes: str | None) -> str:
        """``?…`` for a link that keeps this request's filters and changes some parameters
        (a value of None removes it); a new sort or filter starts at the first page."""
        state = self.state()
        for k, v in changes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        return "?" + urlencode(state)

    def sort_link(self, column: str) -> str:
        """Link for a column header: sort by it, or flip the order when already sorted by it."""
        if column == self.sort:
            return self.link(order="desc" if self.order == "asc" else "asc")
        return self.link(sort=column, order="asc" if column in ("repo_id", "alpha_mean") else "desc")

    def without_cursor(self) -> "LeaderboardQuery":
        return replace(self, after=None, before=None)
