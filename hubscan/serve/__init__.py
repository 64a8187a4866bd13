"""``hubscan serve``: a web explorer over the lake (docs/serve.md).

Pages rendered on the server (Jinja2 templates via Starlette, assets shipped in the package,
no CDN), each with a JSON twin under ``/api/``; served by uvicorn. Modules, one job each:

- ``options``  — ``ServeOptions`` and per-request ``Limits`` (frozen)
- ``catalog``  — the snapshot: the lake's views materialised once into a private, read-only
  DuckDB file (rebuilt when the lake's files change), and what the lake has (``Capabilities``)
- ``params``   — request parameters → validated values (whitelisted sorts/filters, keyset cursor)
- ``queries``  — every page's numbers, bound-parameter SQL over the snapshot
- ``figures``  — SVG pictures drawn by ``hubscan.plots``, in a bounded cache
- ``sqlbox``   — the read-only SQL box (statement checks, a locked database, limits)
- ``security`` — token, host and method checks, response headers (an ASGI middleware)
- ``formats``  — numbers for pages, JSON for the API, CSV/Parquet downloads
- ``app``      — routes, templates, ``serve()`` and ``BackgroundServer``

    >>> from hubscan.serve import ServeOptions, BackgroundServer
    >>> with BackgroundServer(ServeOptions(lake="demo-lake", port=0)) as srv:  # doctest: +SKIP
    ...     print(srv.url)
"""

from __future__ import annotations

from .app import BackgroundServer, create_app, serve
from .options import Limits, ServeOptions

__all__ = ["ServeOptions", "Limits", "BackgroundServer", "create_app", "serve"]
