"""The explorer's safety, over real HTTP: a real uvicorn server on loopback (one per module).

Token on every request (401 without), a read-only SQL box (writes, ATTACH/INSTALL/COPY and
file reads refused, a query that runs forever cut off), plot routes that cannot reach a
file (path traversal → 404), filters that are data, and bad requests that are one line.
"""

from __future__ import annotations

import os
from urllib.parse import quote, urlencode

import pytest
from typer.testing import CliRunner

from hubscan.errors import ServeError
from hubscan.serve import BackgroundServer, Limits, ServeOptions
from hubscan.serve.security import check_bind
from tests.serve.client import fetch

TOKEN = "t0ken-for-the-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def lake_files(root) -> dict[str, tuple[int, int]]:
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            p = os.path.join(folder, f)
            st = os.stat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def server(serve_lake):
    opts = ServeOptions(lake=str(serve_lake.path), port=0, token=TOKEN, refresh_s=0,
                        limits=Limits(sql_seconds=2.0, sql_rows=50, max_query_string=4096))
    with BackgroundServer(opts, warm=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def open_server(serve_lake):
    """No token: loopback only, and the Host header must say so."""
    with BackgroundServer(ServeOptions(lake=str(serve_lake.path), port=0, refresh_s=0),
                          warm=False) as srv:
        yield srv


def assert_one_line(reply, status):
    assert reply.status == status, (reply.status, reply.text)
    text = reply.json()["error"] if reply.headers["content-type"].startswith("application/json") else reply.text
    assert "Traceback" not in reply.text and 'File "' not in reply.text
    if reply.headers["content-type"].startswith("text/plain"):
        assert text.count("\n") <= 1
    return text


# ---------------------------------------------------------------------------- the token
@pytest.mark.parametrize("path", ["/", "/api/models", "/model?key=x", "/archs", "/sql?q=select+1",
                                  "/api/sql?q=select+1", "/plot/archs.svg", "/static/style.css",
                                  "/favicon.ico", "/api", "/nope"])
def test_every_route_needs_the_token(server, path):
    r = fetch(server.url, path)
    assert_one_line(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert fetch(server.url, path, headers={"Authorization": "Bearer wrong-" + TOKEN}).status == 401
    assert fetch(server.url, path, headers={"Authorization": f"Bearer {TOKEN[:-1]}"}).status == 401
    ok = fetch(server.url, path, headers=AUTH)
    assert ok.status in (200, 404), ok.text  # /nope and /model?key=x: past the token, then 404


def test_token_in_the_url_once_sets_a_cookie(server):
    r = fetch(server.url, "/archs?token=" + TOKEN)
    assert r.status == 303 and r.headers["location"] == "/archs"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert fetch(server.url, "/archs", headers={"Cookie": cookie.split(";")[0]}).status == 200
    assert fetch(server.url, "/archs", headers={"Cookie": "hubscan_token=nope"}).status == 401
    assert fetch(server.url, "/archs?token=nope").status == 401


def test_public_bind_needs_a_token():
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        with pytest.raises(ServeError, match="without a token"):
            check_bind(host, None)
        check_bind(host, TOKEN)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, None)
    with pytest.raises(ServeError, match="at least"):
        check_bind("0.0.0.0", "short")
    with pytest.raises(ServeError, match="at least"):
        check_bind("0.0.0.0", "a token with spaces and ;")


def test_cli_refuses_public_bind_without_token_in_one_line(serve_lake, monkeypatch):
    from hubscan.cli import app

    monkeypatch.delenv("HUBSCAN_SERVE_TOKEN", raising=False)
    r = CliRunner().invoke(app, ["serve", "--lake", str(serve_lake.path), "--host", "0.0.0.0"])
    assert r.exit_code == 2
    assert "refusing to listen on 0.0.0.0 without a token" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(app, ["serve", "--lake", str(serve_lake.path) + "-missing"])
    assert r.exit_code == 2 and "no lake at" in r.output and len(r.output.strip().splitlines()) == 1


def test_without_token_only_loopback_host_names_are_answered(open_server):
    assert fetch(open_server.url, "/api").status == 200
    port = open_server.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert fetch(open_server.url, "/api", headers={"Host": host}).status == 200, host
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
        assert_one_line(fetch(open_server.url, "/api", headers={"Host": host}), 400)


def test_security_headers_on_every_response(server):
    for path in ("/", "/api/models", "/static/app.js", "/nope"):
        r = fetch(server.url, path, headers=AUTH)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "server" not in r.headers


# ---------------------------------------------------------------------------- the SQL box
REFUSED = [
    ("COPY (SELECT * FROM models) TO '{lake}/stolen.csv'", "COPY"),
    ("ATTACH '{lake}/x.duckdb' AS x", "ATTACH"),
    ("INSTALL httpfs", "INSTALL"),
    ("LOAD httpfs", "INSTALL/LOAD"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("CREATE OR REPLACE VIEW models AS SELECT 1", "CREATE"),
    ("DROP VIEW layers", "DROP"),
    ("INSERT INTO models SELECT * FROM models", "INSERT"),
    ("SET enable_external_access = true", "SET"),
    ("PRAGMA database_list", "PRAGMA"),
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", "read_csv_auto"),
    ("SELECT * FROM read_text('/etc/passwd')", "read_text"),
    ("SELECT * FROM '/etc/passwd'", "not a view name"),
    ("SELECT * FROM read_parquet('{lake}/models/**/*.parquet')", "read_parquet"),
    ("SELECT (SELECT count(*) FROM read_blob('/etc/passwd'))", "read_blob"),
    ("SELECT * FROM glob('/etc/*')", "glob"),
    ("SELECT * FROM query('COPY (SELECT 1) TO ''/tmp/x.csv''')", "query"),
    ("SELECT 1; COPY (SELECT 1) TO '/tmp/x.csv'", "one statement"),
]


@pytest.mark.parametrize("sql,why", REFUSED, ids=[w for _, w in REFUSED])
def test_sql_that_writes_or_reads_files_is_refused(server, serve_lake, sql, why):
    before = lake_files(serve_lake.path)
    sql = sql.format(lake=serve_lake.path)
    for path in ("/api/sql?" + urlencode({"q": sql}), "/sql?" + urlencode({"q": sql})):
        r = fetch(server.url, path, headers=AUTH)
        assert r.status == 400, r.text
        assert why in r.text
    r = fetch(server.url, "/api/sql", method="POST", body=urlencode({"q": sql}).encode(),
              headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400 and why in r.json()["error"]
    assert lake_files(serve_lake.path) == before


def test_sql_that_runs_forever_is_cut_off(server):
    sql = "SELECT count(*) FROM range(1000000) a, range(1000000) b WHERE a.range * b.range = -1"
    r = fetch(server.url, "/api/sql?" + urlencode({"q": sql}), headers=AUTH, timeout=30)
    assert r.status == 400 and "cut off after 2 s" in r.json()["error"]
    # and the box still answers afterwards
    ok = fetch(server.url, "/api/sql?" + urlencode({"q": "SELECT count(*) AS n FROM models"}), headers=AUTH)
    assert ok.status == 200 and ok.json()["rows"][0]["n"] > 0


def test_sql_rows_are_limited_and_errors_keep_duckdbs_hints(server, serve_lake):
    r = fetch(server.url, "/api/sql?" + urlencode({"q": "SELECT * FROM range(1000)"}), headers=AUTH)
    assert r.status == 200 and len(r.json()["rows"]) == 50 and r.json()["truncated"]
    r = fetch(server.url, "/api/sql?" + urlencode({"q": "SELECT alpah FROM layers"}), headers=AUTH)
    assert r.status == 400 and 'Candidate bindings: "alpha"' in r.json()["error"]
    r = fetch(server.url, "/sql?" + urlencode({"q": "SELECT * FROM layer"}), headers=AUTH)
    assert r.status == 400 and "Did you mean" in r.text and 'id="sql-error"' in r.text
    csv = fetch(server.url, "/api/sql?" + urlencode({"q": "SELECT arch, models FROM arch_summary",
                                                     "format": "csv"}), headers=AUTH)
    expected = serve_lake.lake.query("SELECT arch, models FROM arch_summary").to_pylist()
    lines = csv.text.strip().splitlines()
    assert lines[0] == '"arch","models"' and len(lines) == len(expected) + 1
    pq = fetch(server.url, "/api/sql?" + urlencode({"q": "SELECT * FROM models", "format": "parquet"}), headers=AUTH)
    import io

    import pyarrow.parquet as papq

    assert papq.read_table(io.BytesIO(pq.body)).num_rows == len(serve_lake.lake.query("SELECT * FROM models"))


# ---------------------------------------------------------------------------- plot routes
@pytest.mark.parametrize("path", [
    "/plot/esd/../../../../etc/passwd.svg",
    "/plot/esd/%2e%2e/%2e%2e/%2e%2e/etc/passwd.svg",
    "/plot/esd/..%2f..%2f..%2fetc/x/passwd.svg",
    "/plot/esd/sha/v/..%2F..%2F..%2F..%2Fetc%2Fpasswd.svg",
    "/plot/esd/sha/v/%2Fetc%2Fpasswd.svg",
    "/plot/esd/sha/v/t",
    "/plot/../../etc/passwd",
    "/plot/evil/sha/v/t.svg",
    "/static/../serve/app.py",
    "/static/%2e%2e/app.py",
    "/static/..%2fapp.py",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
])
def test_path_traversal_in_plot_and_static_routes_is_404(server, path):
    r = fetch(server.url, path, headers=AUTH)
    assert r.status == 404, (path, r.status, r.text[:200])
    assert b"root:" not in r.body and b"import" not in r.body


def test_a_plot_of_a_real_layer_is_svg(server, serve_lake):
    row = serve_lake.lake.query("""SELECT file_sha256, analysis_version, tensor FROM layers
                                   WHERE model_key = ? AND status = 'ok' LIMIT 1""",
                                [serve_lake.new_key]).to_pylist()[0]
    for kind in ("esd", "fit", "ks"):
        r = fetch(server.url, f"/plot/{kind}/{row['file_sha256']}/{row['analysis_version']}/"
                              f"{quote(row['tensor'])}.svg", headers=AUTH)
        assert r.status == 200 and r.headers["content-type"].startswith("image/svg+xml")
        assert r.body.lstrip().startswith(b"<?xml") and b"<svg" in r.body


# ---------------------------------------------------------------------------- bad requests
@pytest.mark.parametrize("path,status", [
    ("/?sort=alpha_mean%3B+DROP+TABLE+models", 400),
    ("/api/models?sort=random()", 400),
    ("/api/models?order=up", 400),
    ("/api/models?page_size=0", 400),
    ("/api/models?page_size=100000", 400),
    ("/api/models?page_size=abc", 400),
    ("/api/models?after=%%%", 400),
    ("/api/models?after=eyJ4Ijoi", 400),
    ("/api/models?min_params=many", 400),
    ("/api/models?arch=" + "x" * 400, 400),
    ("/api/models?after=a&before=b", 400),
    ("/api/changes?since=yesterday", 400),
    ("/changes?since=2026-13-45", 400),
    ("/api/model", 400),
    ("/model?key=", 400),
    ("/api/model?key=local%2Fnope%40x%23y", 404),
    ("/layer?key=a&file=b", 400),
    ("/api/layer?key=a&file=b&tensor=c", 404),
    ("/api/compare?a=x", 400),
    ("/api/compare?a=x&b=y", 404),
    ("/api/sql", 400),
    ("/api/sql?q=select+1&format=xml", 400),
    ("/api/sql?q=select+1&format=html", 400),
    ("/plot/profile.svg", 400),
    ("/plot/profile.svg?key=nope", 404),
    ("/no/such/page", 404),
    ("/api/models?q=" + "%00", 400),
])
def test_bad_requests_are_4xx_with_one_line(server, path, status):
    r = fetch(server.url, path, headers=AUTH)
    msg = assert_one_line(r, status)
    if path.startswith("/api/"):
        assert r.headers["content-type"].startswith("application/json") and msg


def test_methods_sizes_and_bodies_are_bounded(server):
    assert_one_line(fetch(server.url, "/", method="POST", headers=AUTH, body=b""), 405)
    assert_one_line(fetch(server.url, "/api/models", method="DELETE", headers=AUTH), 405)
    assert_one_line(fetch(server.url, "/api/models", method="PUT", headers=AUTH, body=b"x"), 405)
    assert_one_line(fetch(server.url, "/api/models?q=" + "a" * 5000, headers=AUTH), 414)
    big = urlencode({"q": "SELECT 1 -- " + "x" * 70_000}).encode()
    assert_one_line(fetch(server.url, "/api/sql", method="POST", body=big,
                          headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"}), 413)
    r = fetch(server.url, "/api/sql", method="POST", body=b'{"q": "select 1"}',
              headers={**AUTH, "Content-Type": "application/json"})
    assert_one_line(r, 400)


def test_filter_injection_has_no_effect_over_http(server, serve_lake):
    base = fetch(server.url, "/api/models?page_size=200", headers=AUTH).json()
    assert base["total"] == serve_lake.lake.query("SELECT count(*) FROM models_latest").column(0)[0].as_py()
    for name in ("arch", "source", "library", "pipeline_tag", "phase", "warning", "q"):
        for value in ("' OR '1'='1", "DemoMLP' --", "1) OR (1=1", "%' OR 1=1 OR '%'='"):
            r = fetch(server.url, "/api/models?" + urlencode({name: value}), headers=AUTH)
            assert r.status == 200 and r.json()["total"] == 0, (name, value)
    after = fetch(server.url, "/api/models?page_size=200", headers=AUTH).json()
    assert after["total"] == base["total"]
