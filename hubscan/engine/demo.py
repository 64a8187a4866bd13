"""The offline demo: the demo zoo on a loopback hub, scanned the way a Hub scan is.

``hubscan demo`` must show, on a fresh clone with no network, what an overnight Hub scan
does. So it does not take a shortcut through local files: it writes the demo zoo
(``hubscan.testing.zoo``: heavy-tailed and Gaussian MLPs, CNNs, GPT-2 and BERT shapes, a
sharded checkpoint, a ResNet series with model-card accuracies) into ``demo-models/``, serves
it from an in-process ``FakeHub`` on 127.0.0.1 and runs ``jobs/demo.toml`` — a ``kind = "hf"``
source — with ``HF_ENDPOINT`` pointing there: the real ``huggingface_hub`` listing, one
streaming GET per weight file, sha256 checks, the lake, the views. ``HF_ENDPOINT`` and the
client settings are restored afterwards.

The ``kind = "demo"`` source of a spec is the same zoo as local folders (no hub), which the
engine's tests use; :func:`demo_refs` lists it, with each model's ``acc@1`` (torchvision
style, from its ``config.json``) in ``ModelRef.meta`` so ``models.accuracy`` is filled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..refs import ModelRef
from ..testing.zoo import DEMO_AUTHOR, ZOO, ensure_demo_models

__all__ = ["DEMO_AUTHOR", "DEMO_TOML", "DemoHub", "demo_hub", "demo_refs", "demo_spec",
           "ensure_demo_models"]


@dataclass(frozen=True)
class DemoHub:
    """The running demo hub: where it listens and what it serves."""

    url: str
    repos: tuple[str, ...]
    hub: Any  # hubscan.testing.fakehub.FakeHub (its request log: what the scan cost)

    def requests(self, endpoint: str | None = None) -> int:
        return self.hub.count(endpoint)

    def bytes_served(self) -> int:
        return self.hub.bytes_sent()


@contextlib.contextmanager
def demo_hub(models: str | Path = "demo-models", *, n_models: int = len(ZOO),
             seed: int = 0) -> Iterator[DemoHub]:
    """Generate the demo zoo into ``models`` (once; reused while unchanged), serve it from a
    loopback hub in this process, and point ``huggingface_hub`` and hubscan at it.

    Inside the block ``HF_ENDPOINT`` is the hub's URL and the HF cache is an empty temporary
    folder (so every weight file is really streamed); everything is restored on exit and the
    hub stopped. Works with no network at all: nothing leaves 127.0.0.1.
    """
    from ..testing.fakehub import FakeHub
    from ..testing.fakehub.demo import add_demo_repos

    folders = ensure_demo_models(models, n_models=n_models, seed=seed)
    hub = FakeHub(idle_timeout=None)
    repos = add_demo_repos(hub, folders)
    with hub, tempfile.TemporaryDirectory(prefix="hubscan-demo-") as tmp, \
            hub.environ(tmp, fast_retries=False), _no_proxy_for_loopback():
        yield DemoHub(url=hub.url, repos=tuple(r.repo_id for r in repos), hub=hub)


@contextlib.contextmanager
def _no_proxy_for_loopback() -> Iterator[None]:
    """Keep a configured HTTP(S) proxy out of loopback traffic (restored on exit)."""
    import os

    old = {k: os.environ.get(k) for k in ("NO_PROXY", "no_proxy")}
    try:
        for k, v in old.items():
            os.environ[k] = ",".join(x for x in (v, "127.0.0.1", "localhost") if x)
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def demo_refs(filters: dict[str, Any]) -> list[ModelRef]:
    """The ``kind = "demo"`` source: the zoo written under ``path`` (once), as local models,
    each with its ``acc@1`` (where it has one) in ``ModelRef.meta``."""
    from .. import sources

    folders = ensure_demo_models(filters.get("path", "demo-checkpoints"),
                                 n_models=int(filters.get("n_models", len(ZOO))),
                                 seed=int(filters.get("seed", 0)))
    out = []
    for folder in folders:
        acc = _acc1(folder)
        for ref in sources.resolve(str(folder)):
            out.append(dataclasses.replace(ref, meta={**(ref.meta or {}), "acc@1": acc})
                       if acc is not None else ref)
    return out


def _acc1(folder: Path) -> float | None:
    try:
        record = json.loads((folder / "config.json").read_text()).get("hubscan_demo", {})
    except (OSError, ValueError):
        return None
    acc = record.get("acc@1")
    return float(acc) if isinstance(acc, (int, float)) and not isinstance(acc, bool) else None


def demo_spec(*, lake: str = "demo-lake"):
    """The spec of ``jobs/demo.toml``, built in code (for ``hubscan demo`` from an installed
    package, where the ``jobs/`` folder is not at hand)."""
    from .spec import loads_spec

    return loads_spec(DEMO_TOML.format(lake=lake, author=DEMO_AUTHOR), origin="<demo>")


DEMO_TOML = """
[scan]
name = "demo"
lake = "{lake}"

[[sources]]
kind = "hf"
author = "{author}"
file_metadata = "paths-info"

[analysis]
convention = "ww"

[resources]
workers = 2
models_per_worker = 1
max_inflight_bytes = "1GiB"

[resources.analyze]
num_cpus = 1

[retry]
attempts = 2
backoff_s = 0.5
model_timeout_s = 120
"""
