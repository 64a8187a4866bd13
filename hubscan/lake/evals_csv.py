"""User-supplied quality numbers: a CSV file → ``evals`` rows.

Most checkpoints report no accuracy anywhere a crawler can read; a team that measured its
own models can still bring the numbers. One row per (model, metric)::

    model,task,dataset,metric,value
    hf://acme/bert-ft@3f2a…,text-classification,glue,accuracy,0.912
    tv://resnet50,image-classification,ImageNet-1K,acc@1,80.86
    vgg11,image-classification,imagenet,acc@1,69.02

Columns: ``model`` (a URI — ``hf://owner/name[@revision]``, ``tv://builder``,
``local://name`` — or a bare id, whose source is the ``source`` column, default ``hf``), or
``source`` + ``repo_id`` (+ ``revision``); ``metric`` and ``value`` are required, ``task``,
``dataset``, ``dataset_config``, ``dataset_split``, ``metric_name``, ``verified`` optional.
A row without a revision applies to every revision of the model (``evals.revision`` NULL).
Values are taken as written (``69.02`` and ``0.6902`` are different numbers; a trailing
``%`` is dropped). ``origin`` is ``csv:<file name>``; a user's CSV wins over a card's number
for the same (task, dataset, metric) in ``model_evals``.

Bad lines are reported (line number and reason) and skipped; the good ones are imported.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import LakeError

__all__ = ["read_evals_csv", "import_evals_csv", "CsvImport"]

_OPTIONAL = ("task", "dataset", "dataset_config", "dataset_split", "metric_name")
_SCHEMES = {"hf": "hf", "tv": "tv", "local": "local", "file": "local"}


@dataclass(frozen=True)
class CsvImport:
    """What an import read: rows for the ``evals`` table and the lines it skipped, and why."""

    path: str
    rows: tuple[dict[str, Any], ...]
    skipped: tuple[tuple[int, str], ...] = field(default_factory=tuple)  # (line, reason)


def _model(value: str, source: str | None) -> tuple[str, str, str | None]:
    value = value.strip()
    if "://" in value:
        scheme, rest = value.split("://", 1)
        if scheme not in _SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r} (use hf://, tv:// or local://)")
        src = _SCHEMES[scheme]
        if src == "tv":
            name = rest.split(":", 1)[0].split("@", 1)[0]
            rev = rest.split("@", 1)[1] if "@" in rest else None
            return src, name.strip("/"), rev or None
        repo, _, rev = rest.partition("@")
        return src, repo.strip("/"), rev or None
    return (source or "hf"), value, None


def _float(text: str) -> float:
    v = float(text.strip().rstrip("%"))
    if not math.isfinite(v):
        raise ValueError(f"value {text!r} is not a finite number")
    return v


def read_evals_csv(path: str | Path, *, text: str | None = None) -> CsvImport:
    """Parse a CSV of reported metrics (see module doc); never raises for a bad line.

    Raises:
        LakeError: the file cannot be read, or it has no ``metric``/``value`` columns or no
            way to name the model (``model``, or ``repo_id``).
    """
    p = Path(path)
    if text is None:
        try:
            text = p.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise LakeError(f"{p}: cannot read evals CSV ({exc.strerror or exc})") from exc
    reader = csv.DictReader(io.StringIO(text))
    cols = {c.strip() for c in (reader.fieldnames or [])}
    if not {"metric", "value"} <= cols or not ({"model"} & cols or {"repo_id"} & cols):
        raise LakeError(f"{p}: an evals CSV needs columns metric, value and model (or repo_id); "
                        f"it has {sorted(cols)}")
    now = datetime.now(timezone.utc)
    rows, skipped = [], []
    for i, raw in enumerate(reader, start=2):
        r = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        try:
            if r.get("model"):
                source, repo_id, rev = _model(r["model"], r.get("source") or None)
            elif r.get("repo_id"):
                source, repo_id, rev = (r.get("source") or "hf"), r["repo_id"], None
            else:
                raise ValueError("no model named")
            rev = r.get("revision") or rev
            if source not in ("hf", "tv", "local"):
                raise ValueError(f"source {source!r} is not one of hf, tv, local")
            if not r.get("metric"):
                raise ValueError("empty metric")
            value = _float(r.get("value", ""))
            verified = r.get("verified", "").lower()
            rows.append({
                "source": source, "repo_id": repo_id, "revision": rev or None,
                **{k: (r.get(k) or None) for k in _OPTIONAL}, "metric": r["metric"], "value": value,
                "verified": True if verified in ("true", "1", "yes") else
                            False if verified in ("false", "0", "no") else None,
                "origin": f"csv:{p.name}", "written_at": now,
            })
        except (ValueError, KeyError) as exc:
            skipped.append((i, str(exc)))
    return CsvImport(path=str(p), rows=tuple(rows), skipped=tuple(skipped))


def import_evals_csv(lake: Any, path: str | Path, *, scan_id: str | None = None) -> CsvImport:
    """Read ``path`` and write its rows to the lake's ``evals`` table (one file per source).

    Re-importing the same file replaces its earlier rows in the views (same keys, newer
    ``written_at``).
    """
    result = read_evals_csv(path)
    by_source: dict[str, list[dict[str, Any]]] = {}
    for r in result.rows:
        by_source.setdefault(r["source"], []).append({**r, "scan_id": scan_id})
    for source, rows in by_source.items():
        lake.write_table("evals", rows, partition={"source": source},
                         unit_key=f"evals:csv:{Path(path).name}:{source}:{rows[0]['written_at'].isoformat()}")
    return result
