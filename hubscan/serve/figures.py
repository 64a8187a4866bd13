"""Pictures for the explorer: drawn by ``hubscan.plots`` from the lake's stored spectra, as
SVG, kept in a bounded cache.

- per layer (``esd``, ``fit``, ``ks``): keyed by ``(kind, file_sha256, tensor,
  analysis_version)`` and stamped with the row's ``written_at`` — a weight file shared by many
  repos is drawn once, and a refit (a newer row for the same key) is a new picture. The title names the model whose scan
  computed the row (``computed_by``), so the cached bytes do not depend on which repo asked.
- per model (``profile``: alpha by depth) and per lake (``archs``: alpha by architecture).

matplotlib is not thread-safe, so one figure is drawn at a time (``_DRAW``); the cache
(least-recently-used, bounded in entries *and* bytes) makes that irrelevant for repeat views.
A layer whose picture cannot be drawn (no spectrum kept, no power-law fit, too few
eigenvalues for a KS curve) gets a small SVG that says why — an image that fails to load
would be a broken page, and the layer page only links pictures of layers the lake has.
"""

from __future__ import annotations

import html
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import HubscanError, PageNotFound
from . import queries

__all__ = ["FigureCache", "LAYER_KINDS", "layer_svg", "profile_svg", "archs_svg",
           "placeholder_svg", "warm_up"]

LAYER_KINDS = ("esd", "fit", "ks")
_DRAW = threading.Lock()


@dataclass
class _Entry:
    data: bytes
    stamp: str       # what the picture was drawn from (the row's written_at, a file list)
    seen: int        # the last snapshot generation in which ``stamp`` was checked


class FigureCache:
    """A thread-safe LRU of SVG bytes, bounded by ``max_entries`` and ``max_bytes``.

    Each picture carries a *stamp* (the ``written_at`` of the row it was drawn from) and the
    snapshot generation in which that stamp was last checked: within one generation a hit
    costs a dictionary lookup (``peek``), across a rebuild the stamp is compared once more
    (``get_or_render``) and a refit, whose row has a newer ``written_at``, is drawn anew.
    """

    def __init__(self, *, max_entries: int = 512, max_bytes: int = 96 * 2**20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._inflight: dict[tuple, threading.Lock] = {}
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: tuple, *, stamp: str = "", generation: int | None = None) -> bytes | None:
        """The picture if cached with this ``stamp``; marks it checked in ``generation``."""
        with self._lock:
            e = self._items.get(key)
            if e is None or e.stamp != stamp:
                return None
            self._items.move_to_end(key)
            if generation is not None:
                e.seen = generation
            self.hits += 1
            return e.data

    def peek(self, key: tuple, generation: int) -> bytes | None:
        """The picture if its stamp was already checked in this snapshot ``generation``."""
        with self._lock:
            e = self._items.get(key)
            if e is None or e.seen != generation:
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return e.data

    def put(self, key: tuple, data: bytes, *, stamp: str = "", generation: int = 0) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old.data)
            self._items[key] = _Entry(data, stamp, generation)
            self._bytes += len(data)
            while self._items and (len(self._items) > self.max_entries or self._bytes > self.max_bytes):
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped.data)

    def get_or_render(self, key: tuple, render: Callable[[], bytes], *, stamp: str = "",
                      generation: int = 0) -> tuple[bytes, bool]:
        """The cached bytes (same ``stamp``), or ``render()`` once even when many requests ask
        at once. Returns (bytes, was_cached)."""
        data = self.get(key, stamp=stamp, generation=generation)
        if data is not None:
            return data, True
        with self._lock:
            gate = self._inflight.setdefault(key, threading.Lock())
        with gate:
            data = self.get(key, stamp=stamp, generation=generation)
            if data is not None:
                return data, True
            with self._lock:
                self.misses += 1
            try:
                data = render()
                self.put(key, data, stamp=stamp, generation=generation)
            finally:
                with self._lock:
                    self._inflight.pop(key, None)
        return data, False


def _svg(fig: Any) -> bytes:
    from ..plots._style import figure_bytes, style

    with style():  # SVG options (text as text, content-derived ids) apply when saving
        return figure_bytes(fig, fmt="svg")


def placeholder_svg(message: str, *, width: int = 640, height: int = 120) -> bytes:
    """A small SVG that says why there is no picture (text escaped)."""
    text = html.escape(message[:200])
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="#f6f7f9" '
            f'stroke="#d9dce3"/><text x="16" y="{height // 2}" font-family="sans-serif" '
            f'font-size="14" fill="#5b6272">no picture: {text}</text></svg>').encode()


def _layer_row(cur, file_sha256: str, tensor: str, analysis_version: str) -> dict[str, Any]:
    got = queries.rows(cur, """
        SELECT * FROM serve.layers
        WHERE file_sha256 = ? AND tensor = ? AND analysis_version = ?
        ORDER BY (model_key = computed_by) DESC, model_key LIMIT 1""",
                       [file_sha256, tensor, analysis_version])
    if not got:
        raise PageNotFound("no such layer in this lake")
    return got[0]


def layer_svg(cur, cache: FigureCache, kind: str, file_sha256: str, tensor: str,
              analysis_version: str, *, generation: int = 0) -> tuple[bytes, bool]:
    """The ``kind`` picture of one weight-file tensor. Raises ``PageNotFound`` when the lake
    has no such layer; returns a placeholder SVG when it cannot be drawn. ``generation`` is
    the snapshot's: a picture already checked against it is served without a query."""
    if kind not in LAYER_KINDS:
        raise PageNotFound(f"no picture kind {kind!r} (one of {', '.join(LAYER_KINDS)})")
    key = (kind, file_sha256, tensor, analysis_version)
    hit = cache.peek(key, generation)
    if hit is not None:
        return hit, True
    row = _layer_row(cur, file_sha256, tensor, analysis_version)

    def render() -> bytes:
        from ..plots.source import LayerSpectrum

        if row.get("status") == "skipped":
            return placeholder_svg(f"{tensor} was skipped ({row.get('skip_reason')})")
        evals = (queries.spectrum(cur, file_sha256, tensor, analysis_version)
                 if row.get("has_spectrum") else None)
        if evals is None:
            return placeholder_svg("no spectrum stored for this layer (keep_spectra = false)")
        model = queries.rows(cur, "SELECT repo_id, model_key FROM serve.models WHERE model_key = ?",
                             [row["model_key"]])
        ls = LayerSpectrum(model=model[0] if model else {"model_key": row["model_key"]}, row=row,
                           evals=np.sort(np.asarray(evals, dtype=np.float32)))
        try:
            with _DRAW:
                return _svg(_draw(kind, ls))
        except HubscanError as exc:
            return placeholder_svg(str(exc).splitlines()[0])

    return cache.get_or_render(key, render, stamp=str(row.get("written_at")), generation=generation)


def _draw(kind: str, ls: Any) -> Any:
    if kind == "esd":
        from ..plots.esd import esd_figure

        return esd_figure(ls)
    if kind == "fit":
        from ..plots.fit import fit_figure

        return fit_figure(ls)
    from ..plots.ks import ks_figure

    return ks_figure(ls)


def profile_svg(cur, cache: FigureCache, model_key: str, *, generation: int = 0) -> tuple[bytes, bool]:
    """Alpha along depth for one model (``plots.layers.plot_layers`` over the snapshot)."""
    hit = cache.peek(("profile", model_key), generation)
    if hit is not None:
        return hit, True
    found = queries.rows(cur, "SELECT written_at FROM serve.models WHERE model_key = ?", [model_key])
    if not found:
        raise PageNotFound(f"no model {model_key!r} in this lake")

    def render() -> bytes:
        from ..plots.layers import plot_layers
        from ..plots.source import Views

        views = Views(models="serve.models", models_latest="serve.models", layers="serve.layers")
        try:
            with _DRAW:
                return _svg(plot_layers(cur, model_key, views=views))
        except HubscanError as exc:
            return placeholder_svg(str(exc).splitlines()[0])

    return cache.get_or_render(("profile", model_key), render, stamp=str(found[0]["written_at"]),
                               generation=generation)


def archs_svg(cur, cache: FigureCache, signature: str) -> tuple[bytes, bool]:
    """Layer alpha by architecture over the latest revisions (``plots.alpha``), once per
    snapshot (``signature`` = the lake's file list)."""

    def render() -> bytes:
        from ..plots.alpha import draw_alpha_groups
        from ..plots.source import alpha_groups_from_lake

        relation = """SELECT l.arch, l.alpha, l.model_key, l.tensor, l.valid
                      FROM serve.layers AS l JOIN serve.models AS m ON m.model_key = l.model_key
                      WHERE m.is_latest"""
        groups = alpha_groups_from_lake(cur, by="arch", relation=relation)
        if not groups.names:
            return placeholder_svg("no fitted layer in this lake")
        with _DRAW:
            return _svg(draw_alpha_groups(groups, by="arch"))

    return cache.get_or_render(("archs",), render, stamp=signature)


def warm_up() -> None:
    """Import matplotlib's SVG backend and the KS refit (torch) before the first request, so a
    first picture costs its drawing, not a second of imports."""
    from ..plots import esd, fit, ks, layers  # noqa: F401
    from ..plots._style import figure_bytes, new_figure, style

    with _DRAW, style():
        fig, _ = new_figure(2, 2)
        figure_bytes(fig, fmt="svg")
    ks.compute_ks_curve(np.sort(np.random.default_rng(0).pareto(2.0, 64) + 1.0))
