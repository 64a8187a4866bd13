"""Values as people and scripts read them: numbers in pages, JSON for the API, CSV/Parquet
downloads of SQL results.

The same numbers appear in a page and in its ``/api/…`` twin; the page rounds them
(``fmt_num``: 3 decimals for metrics), the API never does. JSON has no NaN or infinity:
they become ``null`` (a degenerate fit), never a silent string.
"""

from __future__ import annotations

import io
import json
import math
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa

__all__ = ["jsonable", "dumps", "fmt_num", "fmt_int", "fmt_pct", "fmt_size", "fmt_time",
           "table_csv", "table_parquet", "table_rows"]


def jsonable(value: Any) -> Any:
    """A JSON-safe copy: NaN/inf → None, datetimes → ISO 8601 (UTC), numpy scalars → Python."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return (value.astimezone(timezone.utc) if value.tzinfo else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "item"):  # numpy scalar
        return jsonable(value.item())
    if hasattr(value, "tolist"):  # numpy array
        return jsonable(value.tolist())
    return str(value)


def dumps(value: Any) -> bytes:
    return json.dumps(jsonable(value), allow_nan=False, separators=(",", ":")).encode()


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def fmt_num(v: Any, digits: int = 3) -> str:
    """A metric in a page: fixed decimals (``3.142``); missing or NaN → ``—``."""
    if not _finite(v):
        return "—"
    return f"{float(v):.{digits}f}"


def fmt_int(v: Any) -> str:
    if not _finite(v):
        return "—"
    return f"{int(v):,}"


def fmt_pct(v: Any) -> str:
    if not _finite(v):
        return "—"
    return f"{100 * float(v):.1f}%"


def fmt_size(v: Any) -> str:
    """A parameter count as people say it: ``7.2B``, ``350M``, ``12k``."""
    if not _finite(v):
        return "—"
    n = float(v)
    for unit, f in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= f:
            return f"{n / f:.3g}{unit}"
    return f"{int(n)}"


def fmt_time(v: Any) -> str:
    if isinstance(v, datetime):
        v = v.astimezone(timezone.utc) if v.tzinfo else v
        return v.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, date):
        return v.isoformat()
    return "—" if v is None else str(v)


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    return [jsonable(r) for r in table.to_pylist()]


def table_csv(table: pa.Table) -> bytes:
    """CSV has no lists or structs: those cells are JSON text."""
    import pyarrow.csv as pacsv

    cols = []
    for col in table.columns:
        if pa.types.is_nested(col.type):
            col = pa.array([None if v is None else json.dumps(jsonable(v)) for v in col.to_pylist()],
                           pa.string())
        cols.append(col)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.Table.from_arrays(cols, names=table.column_names), sink)
    return sink.getvalue().to_pybytes()


def table_parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()
