"""Fixtures for tests that need a hub: a loopback fake Hugging Face Hub, HF env pointed at it.

Loaded as a pytest plugin by ``tests/conftest.py``. At import it also points ``HF_ENDPOINT``
at a closed loopback port (unless set), so that no test in the suite can reach the public
Hub by accident — ``huggingface_hub`` reads ``HF_ENDPOINT`` once, at its import.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused

from hubscan.testing.fakehub import FakeHub, populate_catalog  # noqa: E402


@pytest.fixture
def fakehub(tmp_path):
    """A fresh fake hub (function scope) with ``HF_ENDPOINT``/``HF_HUB_CACHE``/``HF_HOME`` pointed
    at it and at ``tmp_path``, and hubscan's client installed with fast retries."""
    hub = FakeHub(idle_timeout=120, page_size=100).start()
    try:
        with hub.environ(tmp_path):
            yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def fakehub_module(tmp_path_factory):
    """A module-scoped fake hub (for expensive catalogues); faults and the log are cleared
    by ``fakehub_clean``."""
    hub = FakeHub(idle_timeout=300, page_size=100).start()
    try:
        with hub.environ(tmp_path_factory.mktemp("fakehub")):
            yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def fakehub_catalog(fakehub_module):
    """The module hub with 1,000 generated repos (``populate_catalog(hub, 1000, seed=0)``)."""
    repos = populate_catalog(fakehub_module, 1000, seed=0)
    fakehub_module.catalog = repos
    return fakehub_module


@pytest.fixture
def fakehub_clean(fakehub_catalog):
    """The catalogue hub with no faults and an empty request log."""
    fakehub_catalog.clear_faults()
    fakehub_catalog.reset_log()
    yield fakehub_catalog
    fakehub_catalog.clear_faults()
