"""The README's "Try the Hub path offline", pasted as written: ``python -m hubscan.testing.fakehub
--demo 20`` serves the demo zoo; ``hubscan list hf`` and ``hubscan analyze hf://…`` against it
(real processes, the real client) list the repos and fit every matrix of the one analysed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubscan.lake import Lake
from hubscan.testing.fakehub import FakeHub
from hubscan.testing.fakehub.demo import populate_demo


@pytest.fixture(scope="module")
def demo_hub_process():
    """``python -m hubscan.testing.fakehub --demo 20``, as the README runs it; yields its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "hubscan.testing.fakehub", "--demo", "20",
                             "--idle-timeout", "300"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, seen, end = None, [], time.monotonic() + 300
        while url is None and time.monotonic() < end and proc.poll() is None:
            line = proc.stdout.readline()
            seen.append(line)
            if m := re.search(r"fake hub with (\d+) repos at (http://127\.0\.0\.1:\d+)", line):
                assert "(20 hubscan-demo/" in line  # and the formats/* repos
                url = m.group(2)
        assert url, "".join(seen)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _hubscan(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("hubscan")
    if not script.exists():
        pytest.skip("the hubscan console script is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=url, HF_HOME=str(cwd / "hf-home"), CI="true", COLUMNS="200")
    return subprocess.run([str(script), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=600)


def test_list_then_analyze_a_demo_repo(demo_hub_process, tmp_path):
    listed = _hubscan(demo_hub_process, "list", "hf", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "hubscan-demo/resnet-ep50" in listed.stdout and "hubscan-demo/gpt2-gauss" in listed.stdout

    done = _hubscan(demo_hub_process, "analyze", "hf://hubscan-demo/resnet-ep50", "--lake", "lake/",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lake = Lake(str(tmp_path / "lake"))
    layers = lake.query("SELECT status, alpha, phase FROM layers WHERE status <> 'skipped'").to_pylist()
    assert len(layers) == 7 and all(r["status"] == "ok" and 2 <= r["alpha"] <= 4 for r in layers)
    assert lake.query("SELECT accuracy FROM models").to_pylist() == [{"accuracy": 74.6}]
    archs = lake.query("SELECT arch, alpha_mean FROM arch_summary").to_pylist()
    assert [a["arch"] for a in archs] == ["DemoCNN"] and archs[0]["alpha_mean"] is not None


def test_populate_demo_serves_cards_and_real_sized_weights(tmp_path):
    """In process: each repo carries its card (cardData with model-index for the series) and
    weights big enough to fit (no tensor of the zoo is skipped for too few eigenvalues)."""
    from huggingface_hub import HfApi

    from hubscan.sources.hf import HfSource

    with FakeHub(idle_timeout=60) as hub, hub.environ(tmp_path):
        repos = populate_demo(hub, 13)
        assert [r.repo_id for r in repos][-1] == "hubscan-demo/mlp-ht-2"
        infos = {m.id: m for m in HfApi().list_models(author="hubscan-demo", expand=["cardData", "safetensors"])}
        assert len(infos) == 13
        assert infos["hubscan-demo/resnet-ep10"].card_data.eval_results[0].metric_value == 61.2
        assert infos["hubscan-demo/gpt2-ht"].card_data.eval_results is None
        assert all(i.safetensors.total > 100_000 for i in infos.values())
        accs = {r.repo_id: r.meta.get("accuracy") for r in HfSource().list(author="hubscan-demo")}
        assert sorted(a for a in accs.values() if a is not None) == [61.2, 66.5, 70.1, 72.8, 74.6]
