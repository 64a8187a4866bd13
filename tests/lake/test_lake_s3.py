"""The same lake on s3://, against moto's S3 server on 127.0.0.1 (no network, no extensions)."""

from __future__ import annotations

import os
import threading
from collections import Counter

import pytest

pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")

from hubscan.lake import Lake  # noqa: E402
from hubscan.lake.synthetic import ANALYSIS_VERSION, file_sha, synthetic_result  # noqa: E402

_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true"}


class _RequestLog:
    """Every S3 request moto served (method, path): to show that no object is ever renamed."""

    def __init__(self):
        self.lines: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, method, path, copy_source=None):
        with self._lock:
            self.lines.append((method, path + (" <copy>" if copy_source else "")))


@pytest.fixture(scope="module")
def s3():
    from moto.server import ThreadedMotoServer

    old = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    log = _RequestLog()
    app = server._server.app  # werkzeug WSGI app: record requests

    def recording(environ, start_response):
        log.add(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                environ.get("HTTP_X_AMZ_COPY_SOURCE"))
        return app(environ, start_response)

    server._server.app = recording
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="hub")
    try:
        yield endpoint, client, log
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_s3_lake_write_query_compact(s3, monkeypatch):
    endpoint, client, log = s3
    lake = Lake("s3://hub/lakes/a", storage_options={"endpoint_override": endpoint})
    assert not lake.is_local
    results = [synthetic_result(repo_id=f"org/m{i}", arch=("A", "B")[i % 2], n_layers=4, seed=i,
                                scan_date=("2026-11-01", "2026-11-02")[i % 2]) for i in range(6)]
    fork = synthetic_result(repo_id="org/fork", reused=["org/m0@r1/model.safetensors"], files=[],
                            n_layers=4, seed=9)
    for r in [*results, fork, results[0]]:  # results[0] twice: a retry
        lake.write(r)
    keys = client.list_objects_v2(Bucket="hub", Prefix="lakes/a/")["Contents"]
    names = [k["Key"] for k in keys]
    assert all(n.endswith(".parquet") for n in names), names  # no temp objects, ever
    assert any(n.startswith("lakes/a/layers/source=local/scan_date=2026-11-02/") for n in names)
    # Writes are single PUTs of the final names (no copy/rename, no multipart for small files).
    writes = [(m, p) for m, p in log.lines if m in ("PUT", "POST") and "/lakes/a/" in p]
    assert writes and all(m == "PUT" and p.endswith(".parquet") for m, p in writes)

    # queries: views over registered pyarrow datasets, no DuckDB extension needed
    assert lake.query("SELECT count(*) FROM models").column(0)[0].as_py() == 7
    per_model = Counter(lake.query("SELECT repo_id FROM layers").column(0).to_pylist())
    assert per_model == {f"org/m{i}": 4 for i in range(6)} | {"org/fork": 4}
    summary = {r["arch"]: r["models"] for r in lake.query("SELECT * FROM arch_summary").to_pylist()}
    assert summary == {"A": 3, "B": 3, "BertModel": 1}
    assert lake.known_file_hashes(ANALYSIS_VERSION) >= {file_sha("org/m0@r1/model.safetensors")}
    con = lake.connect()
    extensions = con.sql("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()
    assert ("httpfs",) not in extensions
    con.close()

    before = sorted(map(repr, lake.query("SELECT * FROM layers ORDER BY ALL").to_pylist()))
    n_before = len(names)
    log.lines.clear()
    rep = lake.compact()
    assert rep.files_before == n_before and rep.files_after < n_before
    after_names = [k["Key"] for k in client.list_objects_v2(Bucket="hub", Prefix="lakes/a/")["Contents"]
                   if not k["Key"].endswith("/")]  # pyarrow keeps empty folder markers on delete
    assert len(after_names) == rep.files_after
    assert sorted(map(repr, lake.query("SELECT * FROM layers ORDER BY ALL").to_pylist())) == before
    puts = [p for m, p in log.lines if m in ("PUT", "POST")]
    assert puts and all(p.endswith((".parquet", "/")) for p in puts)  # merged files: single PUTs
    assert any(m == "DELETE" for m, _ in log.lines)
    assert lake.check(strict=True).ok
    st = lake.stats()
    assert st.by_table()["layers"]["rows"] == 7 * 4 - 4  # the fork's rows are the base's


def test_s3_endpoint_from_environment(s3, monkeypatch):
    endpoint, client, _ = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    lake = Lake("s3://hub/lakes/env")
    lake.write(synthetic_result(repo_id="org/x", n_layers=2))
    assert lake.done_model_keys() == {synthetic_result(repo_id="org/x").model_key}
    script = lake.sql_script()
    assert "s3://hub/lakes/env/layers/**/*.v2.parquet" in script and "httpfs" in script
