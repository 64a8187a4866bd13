"""Shared fixtures. One real Ray cluster per test session (ray.init(num_cpus=2) costs ~6 s and
~0.8 GiB here), started lazily by the first test that asks for it."""

from __future__ import annotations

import os

import pytest

# Tests never talk to the public Hub: huggingface_hub is pointed at loopback servers by the
# fixtures that need it, and everything else runs offline.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# numpy's OpenBLAS threads busy-wait after each call and starve torch's threads on 2 cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

pytest_plugins = ["tests.fixtures_hub"] if os.path.exists(os.path.join(os.path.dirname(__file__), "fixtures_hub.py")) else []


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster shared by the whole session; shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()
