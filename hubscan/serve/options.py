"""What ``hubscan serve`` is asked to do, and the limits every request lives within.

Frozen dataclasses at the boundary: the CLI builds a ``ServeOptions``, the app reads it and
never mutates it. The limits are deliberately small defaults (a page of 50 models, a SQL
result of 10,000 rows cut off after 10 s): a browser tab or a script cannot make the server
hold a million rows in memory or run a query forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Limits", "ServeOptions", "DEFAULT_PORT", "TOKEN_ENV"]

DEFAULT_PORT = 8000
#: The environment variable a token may come from (so it stays out of the process list).
TOKEN_ENV = "HUBSCAN_SERVE_TOKEN"


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Upper bounds on what one request may cost.

    Attributes:
        page_size: models per leaderboard page by default.
        max_page_size: the largest ``page_size`` a request may ask for.
        max_layer_rows: layer rows a model page or the compare page lists (the API pages on).
        sql_rows: rows a SQL-box query returns (JSON, CSV and Parquet downloads alike).
        sql_html_rows: rows of a SQL result shown in the page.
        sql_seconds: a SQL-box query is interrupted after this many seconds.
        sql_bytes: a SQL-box result larger than this (Arrow bytes) is refused.
        sql_memory: DuckDB ``memory_limit`` of the SQL box's database.
        max_sql_chars: longest SQL text accepted.
        max_query_string: longest URL query string accepted (bytes).
        max_body: largest request body accepted (the SQL form's POST).
        plot_cache_entries / plot_cache_bytes: bounds of the SVG cache (least recently used
            pictures are dropped first).
    """

    page_size: int = 50
    max_page_size: int = 200
    max_layer_rows: int = 5000
    sql_rows: int = 10_000
    sql_html_rows: int = 500
    sql_seconds: float = 10.0
    sql_bytes: int = 64 * 2**20
    sql_memory: str = "2GB"
    max_sql_chars: int = 20_000
    max_query_string: int = 8192
    max_body: int = 64 * 1024
    plot_cache_entries: int = 512
    plot_cache_bytes: int = 96 * 2**20

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= self.max_page_size:
            raise ValueError("Limits: need 1 <= page_size <= max_page_size")
        if self.sql_seconds <= 0 or self.sql_rows < 1:
            raise ValueError("Limits: sql_seconds and sql_rows must be positive")


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """One explorer over one lake.

    Attributes:
        lake: lake folder or object-store URI.
        host, port: where to listen. Anything but a loopback host needs a ``token``.
        token: the shared secret every request must present (``Authorization: Bearer …``,
            the ``hubscan_token`` cookie, or ``?token=`` once); None = no authentication,
            which is only allowed on loopback.
        refresh_s: how often the lake's file list is checked; when it changed, the
            explorer's snapshot is rebuilt in the background (0 = never).
        snapshot_memory: DuckDB ``memory_limit`` while the snapshot is built.
        storage_options: filesystem options for object-store lakes (``hubscan.lake.Lake``).
        limits: per-request bounds.
        access_log: print one line per request (uvicorn's access log).
    """

    lake: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    refresh_s: float = 30.0
    snapshot_memory: str = "4GB"
    storage_options: Mapping[str, Any] | None = None
    limits: Limits = field(default_factory=Limits)
    access_log: bool = False

    def __repr__(self) -> str:  # never print the token
        token = "set" if self.token else None
        return (f"ServeOptions(lake={self.lake!r}, host={self.host!r}, port={self.port}, "
                f"token={token}, refresh_s={self.refresh_s})")
