"""The explorer's web app: routes, pages (Jinja2 templates) and their JSON twins.

Every page has an ``/api/…`` twin that returns the same values as JSON, for scripts::

    /                 /api/models      leaderboard: live models, filters, keyset pages
    /archs            /api/archs       alpha per architecture (universality) + the report's table
    /model?key=       /api/model       one model: layers, depth profile, warnings, shared
                                       files, history, lineage
    /layer?key=&file=&tensor=  /api/layer   one layer: every column, ESD / fit / KS pictures
    /compare?a=&b=    /api/compare     two models or revisions, layer by layer
    /changes?since=   /api/changes     new revisions, deleted/renamed repos, new warnings
    /sql              /api/sql         read-only SQL over the views (JSON, CSV, Parquet)
    /plot/<kind>/<file_sha256>/<analysis_version>/<tensor>.svg   per-layer pictures
    /plot/profile.svg?key=  /plot/archs.svg                       model / lake pictures

Handlers are plain functions (Starlette runs them in its thread pool), each with its own
DuckDB cursor on the current snapshot. Errors become a 4xx with one line of text — the
page's message, or ``{"error": …}`` under ``/api/`` — and anything unexpected a 500 that
says only its class name (the traceback goes to the server log).
"""

from __future__ import annotations

import logging
import threading
import time
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl, urlencode

import duckdb
import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import BadRequest, PageNotFound, QueryRefused, ServeError
from . import figures, formats, queries
from .catalog import Catalog, Snapshot
from .options import ServeOptions
from .params import SORTS, LeaderboardQuery, optional, parse_since, required
from .security import Guard, check_bind, is_loopback
from .sqlbox import SqlBox, SqlResult

if TYPE_CHECKING:
    from ..lake import Lake

__all__ = ["create_app", "Explorer", "BackgroundServer", "serve"]

log = logging.getLogger("hubscan.serve")

_SQL_EXAMPLES = (
    ("Architectures", "SELECT arch, models, alpha_mean, frac_alpha_2_4 FROM arch_summary"),
    ("Heaviest tails", "SELECT repo_id, tensor, alpha, D FROM layers_latest\n"
                       "WHERE status = 'ok' ORDER BY alpha LIMIT 20"),
    ("A model's history", "SELECT revision_seq, revision, alpha_mean, n_warnings FROM history\n"
                          "ORDER BY repo_id, revision_seq LIMIT 50"),
)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("hubscan.serve", "templates"),
                             autoescape=jinja2.select_autoescape(default=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(num=formats.fmt_num, int=formats.fmt_int, pct=formats.fmt_pct,
                       size=formats.fmt_size, time=formats.fmt_time)
    env.globals["href"] = _href
    return env


def _href(path: str, **params: Any) -> str:
    """``path?k=v…`` (None values dropped); Jinja escapes it for the attribute."""
    items = {k: v for k, v in params.items() if v is not None}
    return path + ("?" + urlencode(items) if items else "")


class Explorer:
    """The app's state: options, the snapshot catalog, the SQL box, the picture cache."""

    def __init__(self, options: ServeOptions, catalog: Catalog) -> None:
        self.options = options
        self.limits = options.limits
        self.catalog = catalog
        self.cache = figures.FigureCache(max_entries=self.limits.plot_cache_entries,
                                         max_bytes=self.limits.plot_cache_bytes)
        self.sqlbox = SqlBox(catalog.lake, self.limits)
        self._sql_lock = threading.Lock()
        self.templates = _env()
        catalog.on_swap(self._reconnect_sql)
        catalog.on_swap(self.prerender)

    def prerender(self, snap: Snapshot | None = None) -> None:
        """Draw the lake-wide picture (alpha by architecture: seconds on a big lake) before
        anyone asks, once per snapshot: at start and in the refresh thread after a rebuild."""
        snap = snap or self.catalog.snapshot
        try:
            with snap.cursor() as cur:
                figures.archs_svg(cur, self.cache, snap.signature)
        except Exception as exc:  # noqa: BLE001 - the page draws it on demand instead
            log.warning("could not pre-draw the architectures picture: %s", exc)

    def _reconnect_sql(self, snap: Snapshot) -> None:
        # Views list object-store files (and tables that had none) when connecting: follow
        # the new snapshot. A query still running on the old box keeps it alive until done.
        new = SqlBox(self.catalog.lake, self.limits)
        with self._sql_lock:
            self.sqlbox = new

    # ------------------------------------------------------------------ rendering
    def page(self, request: Request, name: str, context: dict[str, Any], *,
             status: int = 200, snap: Snapshot | None = None) -> HTMLResponse:
        snap = snap or self.catalog.snapshot
        ctx = {"request": request, "lake": self.options.lake, "snap": snap,
               "caps": snap.caps, "limits": self.limits, "nav": name.removesuffix(".html"),
               **context}
        html = self.templates.get_template(name).render(ctx)
        return HTMLResponse(html, status_code=status)

    def error_page(self, request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        if request.url.path.startswith("/plot/"):
            return Response(f"{status} {message}\n", status_code=status,
                            media_type="text/plain; charset=utf-8")
        try:
            return self.page(request, "error.html", {"status": status, "message": message},
                             status=status)
        except Exception:  # noqa: BLE001 - never fail while reporting a failure
            return Response(f"{status} {message}\n", status_code=status,
                            media_type="text/plain; charset=utf-8")

    # ------------------------------------------------------------------ handlers
    def handler(self, fn: Callable[[Request, dict[str, str]], Response]):
        """An async endpoint that reads the parameters (query string, or a urlencoded POST
        body), runs ``fn(request, params)`` in the thread pool (DuckDB and matplotlib block),
        and maps our errors to one-line 4xx answers."""

        async def endpoint(request: Request) -> Response:
            try:
                params = await _params(request)
                return await run_in_threadpool(fn, request, params)
            except BadRequest as exc:
                return self.error_page(request, 400, str(exc))
            except PageNotFound as exc:
                return self.error_page(request, 404, str(exc))
            except QueryRefused as exc:
                return self.error_page(request, 400, str(exc))
            except duckdb.InterruptException:
                return self.error_page(request, 503, "query interrupted; try again")
            except Exception as exc:  # noqa: BLE001 - one line to the client, the trace to the log
                log.exception("error answering %s", request.url.path)
                return self.error_page(request, 500, f"internal error ({type(exc).__name__}); "
                                       "see the server log")

        endpoint.__name__ = fn.__name__
        return endpoint

    def leaderboard(self, request: Request, p: dict[str, str]) -> Response:
        q = LeaderboardQuery.parse(p, page_size=self.limits.page_size,
                                   max_page_size=self.limits.max_page_size)
        snap = self.catalog.snapshot
        with snap.cursor() as cur:
            data = queries.leaderboard(cur, q, snap.caps)
        if request.url.path.startswith("/api/"):
            return _json({**data, "query": q.state(page=True)})
        return self.page(request, "leaderboard.html", {"q": q, "data": data, "sorts": SORTS},
                         snap=snap)

    def archs(self, request: Request, p: dict[str, str]) -> Response:
        snap = self.catalog.snapshot
        with snap.cursor() as cur:
            rows = queries.archs(cur)
        if request.url.path.startswith("/api/"):
            return _json({"archs": rows})
        return self.page(request, "archs.html", {"archs": rows}, snap=snap)

    def model(self, request: Request, p: dict[str, str]) -> Response:
        key = required(p, "key")
        snap = self.catalog.snapshot
        with snap.cursor() as cur:
            data = queries.model_detail(cur, key, snap.caps, max_layers=self.limits.max_layer_rows)
        if request.url.path.startswith("/api/"):
            return _json(data)
        return self.page(request, "model.html", data, snap=snap)

    def layer(self, request: Request, p: dict[str, str]) -> Response:
        key, file, tensor = required(p, "key"), required(p, "file"), required(p, "tensor")
        snap = self.catalog.snapshot
        with snap.cursor() as cur:
            data = queries.layer_detail(cur, key, file, tensor)
        if request.url.path.startswith("/api/"):
            return _json(data)
        return self.page(request, "layer.html", data, snap=snap)

    def compare(self, request: Request, p: dict[str, str]) -> Response:
        a, b = optional(p, "a", max_len=2000), optional(p, "b", max_len=2000)
        snap = self.catalog.snapshot
        if not (a and b):
            if request.url.path.startswith("/api/"):
                raise BadRequest("give two model keys: a= and b=")
            return self.page(request, "compare.html", {"a_key": a, "b_key": b, "data": None},
                             snap=snap)
        with snap.cursor() as cur:
            data = queries.compare(cur, a, b, max_layers=self.limits.max_layer_rows)
            revisions = queries.rows(cur, """
                SELECT model_key, revision, revision_seq FROM serve.models
                WHERE source = ? AND repo_id = ? AND analysis_version = ?
                ORDER BY revision_seq""", [data["a"]["source"], data["a"]["repo_id"],
                                           data["a"]["analysis_version"]])
        if request.url.path.startswith("/api/"):
            return _json(data)
        return self.page(request, "compare.html", {"a_key": a, "b_key": b, "data": data,
                                                   "revisions": revisions}, snap=snap)

    def changes(self, request: Request, p: dict[str, str]) -> Response:
        since = parse_since(p.get("since"))
        snap = self.catalog.snapshot
        with snap.cursor() as cur:
            data = queries.changes(cur, snap, since)
        if request.url.path.startswith("/api/"):
            return _json(data)
        return self.page(request, "changes.html", data, snap=snap)

    def sql(self, request: Request, p: dict[str, str]) -> Response:
        sql_text = p.get("q") or ""
        api = request.url.path.startswith("/api/")
        fmt = p.get("format") or ("json" if api else "html")
        if fmt not in ("json", "csv", "parquet") and not (fmt == "html" and not api):
            raise BadRequest("format: json, csv or parquet")
        result: SqlResult | None = None
        error: str | None = None
        if sql_text.strip():
            with self._sql_lock:
                box = self.sqlbox
            try:
                result = box.run(sql_text, max_rows=self.limits.sql_html_rows if fmt == "html" else None)
            except QueryRefused as exc:
                if api or fmt != "html":
                    raise
                error = str(exc)
        elif api:
            raise BadRequest("missing parameter 'q' (a SELECT over the views)")
        if result is not None and fmt == "csv":
            return Response(formats.table_csv(result.table), media_type="text/csv; charset=utf-8",
                            headers={"content-disposition": 'attachment; filename="hubscan.csv"'})
        if result is not None and fmt == "parquet":
            return Response(formats.table_parquet(result.table),
                            media_type="application/vnd.apache.parquet",
                            headers={"content-disposition": 'attachment; filename="hubscan.parquet"'})
        if result is not None and fmt == "json":
            return _json({"columns": result.table.column_names,
                          "rows": formats.table_rows(result.table),
                          "truncated": result.truncated, "seconds": result.seconds})
        snap = self.catalog.snapshot
        names = [n for n in ("models", "models_latest", "layers", "layers_latest", "model_summary",
                             "arch_summary", "history", "model_files", "file_layers", "spectra",
                             "failures", "scans", "repo_events", *sorted(snap.caps.relations))
                 if n in snap.caps.columns]
        return self.page(request, "sql.html", {
            "sql": sql_text, "result": result, "error": error, "examples": _SQL_EXAMPLES,
            "views": [(n, snap.caps.columns[n]) for n in names],
            "rows": formats.table_rows(result.table) if result is not None else [],
        }, status=400 if error else 200, snap=snap)

    def layer_plot(self, request: Request, p: dict[str, str]) -> Response:
        pp = request.path_params
        tensor = pp["tensor"]
        if not tensor.endswith(".svg"):
            raise PageNotFound("pictures end in .svg")
        snap = self.catalog.snapshot
        with snap.cursor() as cur:
            data, _ = figures.layer_svg(cur, self.cache, pp["kind"], pp["sha"], tensor[:-4],
                                        pp["version"], generation=snap.generation)
        return _svg(data)

    def profile_plot(self, request: Request, p: dict[str, str]) -> Response:
        key = required(p, "key")
        snap = self.catalog.snapshot
        with snap.cursor() as cur:
            data, _ = figures.profile_svg(cur, self.cache, key, generation=snap.generation)
        return _svg(data)

    def archs_plot(self, request: Request, p: dict[str, str]) -> Response:
        snap = self.catalog.snapshot
        with snap.cursor() as cur:
            data, _ = figures.archs_svg(cur, self.cache, snap.signature)
        return _svg(data)

    def api_index(self, request: Request, p: dict[str, str]) -> Response:
        snap = self.catalog.snapshot
        return _json({
            "lake": self.catalog.lake.uri, "snapshot": snap.generation,
            "built_in_s": snap.build_s, "counts": snap.counts,
            "relations": sorted(snap.caps.relations), "format_columns": list(snap.caps.format_columns),
            "routes": ["/api/models", "/api/archs", "/api/model?key=", "/api/layer?key=&file=&tensor=",
                       "/api/compare?a=&b=", "/api/changes?since=", "/api/sql?q=&format=json|csv|parquet"],
            "cache": {"entries": len(self.cache), "bytes": self.cache.nbytes,
                      "hits": self.cache.hits, "misses": self.cache.misses},
        })


async def _params(request: Request) -> dict[str, str]:
    """The query string's parameters, or a urlencoded POST body's (the SQL form)."""
    if request.method != "POST":
        return dict(request.query_params)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise BadRequest("POST a form (application/x-www-form-urlencoded) with q=")
    try:
        body = (await request.body()).decode("utf-8")
    except (ServeError, UnicodeDecodeError):
        raise BadRequest("the request body is too large or not UTF-8") from None
    return dict(parse_qsl(body, keep_blank_values=True))


def _json(value: Any, status: int = 200) -> Response:
    return Response(formats.dumps(value), status_code=status, media_type="application/json")


def _svg(data: bytes) -> Response:
    return Response(data, media_type="image/svg+xml")


def _favicon(request: Request) -> Response:
    data = resources.files("hubscan.serve").joinpath("static/favicon.svg").read_bytes()
    return Response(data, media_type="image/svg+xml", headers={"cache-control": "public, max-age=86400"})


def create_app(options: ServeOptions, catalog: Catalog) -> Starlette:
    """The ASGI app over ``catalog`` (already built), wrapped in the ``Guard``."""
    check_bind(options.host, options.token)
    ex = Explorer(options, catalog)
    h = ex.handler
    routes = [
        Route("/", h(ex.leaderboard)),
        Route("/api/models", h(ex.leaderboard)),
        Route("/archs", h(ex.archs)),
        Route("/api/archs", h(ex.archs)),
        Route("/model", h(ex.model)),
        Route("/api/model", h(ex.model)),
        Route("/layer", h(ex.layer)),
        Route("/api/layer", h(ex.layer)),
        Route("/compare", h(ex.compare)),
        Route("/api/compare", h(ex.compare)),
        Route("/changes", h(ex.changes)),
        Route("/api/changes", h(ex.changes)),
        Route("/sql", h(ex.sql), methods=["GET", "POST"]),
        Route("/api/sql", h(ex.sql), methods=["GET", "POST"]),
        Route("/api", h(ex.api_index)),
        Route("/plot/archs.svg", h(ex.archs_plot)),
        Route("/plot/profile.svg", h(ex.profile_plot)),
        Route("/plot/{kind}/{sha}/{version}/{tensor:path}", h(ex.layer_plot)),
        Route("/favicon.ico", _favicon),
        Mount("/static", app=StaticFiles(packages=[("hubscan.serve", "static")]), name="static"),
    ]

    async def not_found(request: Request, exc: HTTPException) -> Response:
        message = {404: "no such page", 405: "method not allowed"}.get(exc.status_code, exc.detail)
        return ex.error_page(request, exc.status_code, str(message))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("error answering %s", request.url.path)
        return ex.error_page(request, 500, f"internal error ({type(exc).__name__})")

    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found,
                                                       Exception: server_error})

    allowed = None if options.token else {"127.0.0.1", "localhost", "::1", options.host.lower()}
    guard = Guard(app, token=options.token, allowed_hosts=allowed,
                  max_query_string=options.limits.max_query_string,
                  max_body=options.limits.max_body)
    guard.explorer = ex  # type: ignore[attr-defined]
    return guard  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------
def open_lake(options: ServeOptions) -> "Lake":
    """The lake, refusing a local path that does not exist (a typo must not serve nothing)."""
    import os

    from ..lake import Lake

    lake = Lake(options.lake, storage_options=options.storage_options)
    if lake.is_local and not os.path.isdir(lake.storage.root):
        raise ServeError(f"no lake at {options.lake!r} (run `hubscan demo` or a scan first)")
    return lake


class BackgroundServer:
    """The explorer in a background thread (tests, benchmarks, notebooks).

        >>> with BackgroundServer(ServeOptions(lake="demo-lake", port=0)) as srv:  # doctest: +SKIP
        ...     print(srv.url)
    """

    def __init__(self, options: ServeOptions, *, warm: bool = True) -> None:
        import uvicorn

        check_bind(options.host, options.token)
        self.catalog = Catalog(open_lake(options), refresh_s=options.refresh_s,
                               memory_limit=options.snapshot_memory)
        self.app = create_app(options, self.catalog)
        config = uvicorn.Config(self.app, host=options.host, port=options.port,
                                log_level="warning", access_log=options.access_log,
                                server_header=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="hubscan-serve", daemon=True)
        self._warm = warm
        self.options = options

    @property
    def url(self) -> str:
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    def start(self) -> "BackgroundServer":
        if self._warm:
            figures.warm_up()
            self.app.explorer.prerender()  # type: ignore[attr-defined]
        self.catalog.start()
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServeError("the explorer did not start (port in use?)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self.catalog.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(options: ServeOptions, *, echo: Callable[[str], None] = print) -> None:
    """Build the snapshot, then serve until interrupted (``hubscan serve``)."""
    import uvicorn

    check_bind(options.host, options.token)
    lake = open_lake(options)
    echo(f"hubscan serve: reading {lake.uri} …")
    catalog = Catalog(lake, refresh_s=options.refresh_s, memory_limit=options.snapshot_memory)
    snap = catalog.snapshot
    echo(f"snapshot: {snap.counts['latest']:,} live models ({snap.counts['models']:,} analyses), "
         f"{snap.counts['layers']:,} layer rows in {snap.build_s:.1f} s")
    # In the main thread, before serving: a daemon thread still importing torch or compiling
    # the KS kernel when Ctrl-C ends the process can crash the interpreter's shutdown.
    figures.warm_up()
    app = create_app(options, catalog)
    app.explorer.prerender()  # type: ignore[attr-defined]
    catalog.start()
    host = f"[{options.host}]" if ":" in options.host else options.host
    where = f"http://{host}:{options.port}/"
    if options.token:
        echo(f"explorer at {where} — open {where}?token=<your token> once in a browser, "
             "or send Authorization: Bearer <token>")
    else:
        echo(f"explorer at {where} (loopback only; Ctrl-C stops it)")
    if not is_loopback(options.host):
        echo("listening beyond loopback: every request needs the token")
    try:
        uvicorn.run(app, host=options.host, port=options.port, log_level="warning",
                    access_log=options.access_log, server_header=False, lifespan="off")
    finally:
        catalog.close()
