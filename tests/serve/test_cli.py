"""``hubscan serve`` as a user runs it: a real process on a free loopback port, answering the
leaderboard, its API and its assets, stopped with Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from tests.serve.client import fetch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hubscan_serve_serves_the_lake_until_interrupted(serve_lake):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HUBSCAN_SERVE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-c", "from hubscan.cli import main; main()",
                             "serve", "--lake", str(serve_lake.path),
                             "--port", str(port), "--refresh-s", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "explorer at" in line:
                break
        assert any(f"http://127.0.0.1:{port}/" in l for l in lines), lines
        assert any("live models" in l for l in lines), lines
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):  # uvicorn binds just after the line is printed
            try:
                r = fetch(base, "/")
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        assert r.status == 200 and b'id="leaderboard"' in r.body
        api = fetch(base, "/api/models").json()
        assert api["total"] == serve_lake.lake.query("SELECT count(*) FROM models_latest").column(0)[0].as_py()
        assert fetch(base, "/static/app.js").status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode in (0, 1, -signal.SIGINT), out
    assert "Traceback" not in out, out
