"""The ``kind = "demo"`` source of a scan spec: small generated checkpoints, offline.

``jobs/demo.toml`` must run on a fresh clone with no network, so its models are generated on
first use (deterministic in ``seed``: the same folders, bytes and hashes every time) and then
listed like any local folder. The mix covers what a scan meets: dense MLPs, a CNN (conv
slices), GPT-2 (``Conv1D`` orientation), BERT, heavy-tailed and Gaussian weights, and a
sharded checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["ensure_demo_models", "demo_spec", "DEMO_MIX"]

#: (kind, heavy_tailed, shards) cycled over the demo models.
DEMO_MIX = (
    ("mlp", True, 1),
    ("cnn", False, 1),
    ("gpt2", True, 1),
    ("bert-tiny", False, 1),
    ("mlp", False, 1),
    ("gpt2", False, 2),
)

_MARKER = ".hubscan-demo.json"


def ensure_demo_models(path: str | Path, *, n_models: int = 6, seed: int = 0) -> list[Path]:
    """Generate ``n_models`` demo model folders under ``path`` unless already there.

    Returns the model folders. A marker file records what was generated, so a second call
    with the same arguments reuses the folders (and their content hashes) as they are.
    """
    from ..testing.checkpoints import make_demo_model, make_sharded_model

    root = Path(path)
    want = {"n_models": n_models, "seed": seed, "version": 1}
    folders = [root / _name(i, seed) for i in range(n_models)]
    marker = root / _MARKER
    if marker.exists() and json.loads(marker.read_text()) == want and all(f.is_dir() for f in folders):
        return folders
    root.mkdir(parents=True, exist_ok=True)
    for i, folder in enumerate(folders):
        kind, heavy, shards = DEMO_MIX[i % len(DEMO_MIX)]
        s = seed * 1000 + i
        if shards > 1:
            make_sharded_model(folder, kind, shards=shards, seed=s, heavy_tailed=heavy)
        else:
            make_demo_model(folder, kind, seed=s, heavy_tailed=heavy)
    marker.write_text(json.dumps(want))
    return folders


def _name(i: int, seed: int) -> str:
    kind, heavy, shards = DEMO_MIX[i % len(DEMO_MIX)]
    tail = "ht" if heavy else "gauss"
    sharded = f"-{shards}shards" if shards > 1 else ""
    return f"demo-{i:03d}-{kind}-{tail}{sharded}" + (f"-s{seed}" if seed else "")


def demo_spec(*, lake: str = "demo-lake", path: str = "demo-models", n_models: int = 6,
              seed: int = 0):
    """The spec of ``jobs/demo.toml``, built in code (for ``hubscan demo`` from an installed
    package, where the ``jobs/`` folder is not at hand)."""
    from .spec import loads_spec

    return loads_spec(DEMO_TOML.format(lake=lake, path=path, n_models=n_models, seed=seed),
                      origin="<demo>")


DEMO_TOML = """
[scan]
name = "demo"
lake = "{lake}"

[[sources]]
kind = "demo"
path = "{path}"
n_models = {n_models}
seed = {seed}

[analysis]
convention = "ww"

[resources]
models_per_worker = 1
max_inflight_bytes = "1GiB"

[resources.analyze]
num_cpus = 1

[retry]
attempts = 2
backoff_s = 0.5
model_timeout_s = 120
"""
