"""Demo content for the fake hub: the demo zoo as Hub repos, a listing catalogue, and ``--demo``.

Two kinds of content, for two jobs:

* ``add_demo_repos`` / ``populate_demo`` — the demo zoo (``hubscan.testing.zoo``) as repos
  ``hubscan-demo/<name>``: real-sized weights whose spectra are what their names say, a
  ``config.json`` and a ``README.md`` model card (its YAML front matter is the listing's
  ``cardData``: library, task, tags and, for the ResNet series, a ``model-index`` accuracy).
  This is what ``hubscan demo`` scans and what ``python -m hubscan.testing.fakehub --demo N``
  serves, so a user who follows the README sees fitted alphas, phases and an
  alpha-vs-accuracy series, offline.
* ``formats.add_format_repos`` (also in ``--demo``, unless ``--no-formats``) — one repo per
  quantised / adapter / MoE layout (``formats/…``).
* ``populate_catalog`` — many tiny repos that differ the way real ones do (authors,
  libraries, tasks, downloads, gated ones) yet cost nothing to build: the listing tests'
  catalogue. Their matrices are too small to fit; they exist to be listed.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .hub import FakeHub
from .repos import FakeRepo, safetensors_bytes

__all__ = ["add_demo_repos", "main", "populate_catalog", "populate_demo"]


def add_demo_repos(hub: FakeHub, folders: Sequence[str | Path], *, in_memory: bool = False) -> list[FakeRepo]:
    """Serve demo model folders (``zoo.ensure_demo_models``) as ``hubscan-demo/<folder name>``.

    Repos are added in the given order, so their commit shas are the same every time the
    same folders are served (an incremental rescan then finds them already in the lake).
    ``in_memory`` holds every file in memory (the folders may then be deleted); otherwise
    weight files of 16 MiB or more are served from disk.
    """
    from ..zoo import DEMO_AUTHOR, hub_attributes

    repos = []
    for i, folder in enumerate(folders):
        folder = Path(folder)
        repos.append(hub.add_folder(f"{DEMO_AUTHOR}/{folder.name}", folder,
                                    in_memory_below=(1 << 62) if in_memory else 16 << 20,
                                    **hub_attributes(_model_of(folder), i)))
    return repos


def _model_of(folder: Path):
    """The ``DemoModel`` a folder was written from, rebuilt from its ``config.json`` record."""
    from ..checkpoints import HeavyTail
    from ..zoo import DemoModel

    record = json.loads((folder / "config.json").read_text()).get("hubscan_demo", {})
    tail = record.get("heavy_tailed")
    return DemoModel(name=folder.name, kind=record["kind"],
                     tail=HeavyTail(**tail) if tail else None,
                     shards=int(record.get("shards", 1)), accuracy=record.get("acc@1"),
                     seed=int(record.get("seed", 0)))


def populate_demo(hub: FakeHub, n: int, *, seed: int = 0) -> list[FakeRepo]:
    """``n`` models of the demo zoo (``zoo.demo_models(n, seed=seed)``) as repos, generated
    into a temporary folder and held in memory (about 4.5 MB per model)."""
    from ..zoo import ensure_demo_models

    with tempfile.TemporaryDirectory(prefix="hubscan-demo-") as tmp:
        folders = ensure_demo_models(tmp, n_models=n, seed=seed)
        return add_demo_repos(hub, folders, in_memory=True)


def populate_catalog(hub: FakeHub, n: int, *, seed: int = 0, authors: Sequence[str] = ("acme", "globex", "initech",
                     "umbrella", "hooli"), tiny: bool = True) -> list[FakeRepo]:
    """``n`` small repos with varied authors, names, libraries, tasks, downloads and sizes —
    the listing tests' catalogue. Deterministic for a given ``seed``; every repo has a real
    (tiny) safetensors file so parameter counts and sizes are genuine."""
    import numpy as np

    rng = np.random.default_rng(seed)
    libs = ["transformers", "timm", "diffusers", "sentence-transformers"]
    tasks = ["text-classification", "image-classification", "text-generation", "feature-extraction"]
    families = ["bert", "gpt", "vit", "resnet", "llama", "t5"]
    out = []
    for i in range(n):
        author = authors[i % len(authors)]
        fam = families[(i // len(authors)) % len(families)]
        rid = f"{author}/{fam}-{i:05d}"
        rows = int(rng.integers(2, 9))
        cols = int(rng.integers(2, 9)) if tiny else int(rng.integers(16, 64))
        w = rng.standard_normal((rows, cols)).astype(np.float32)
        files = {"model.safetensors": safetensors_bytes({"layer.weight": w}),
                 "config.json": json.dumps({"architectures": [f"{fam.capitalize()}Model"], "model_type": fam}).encode(),
                 "README.md": f"# {rid}\n".encode()}
        out.append(hub.add_repo(
            rid, files, downloads=int(rng.integers(0, 100_000)), likes=int(rng.integers(0, 500)),
            library_name=libs[i % len(libs)], pipeline_tag=tasks[(i // 2) % len(tasks)],
            tags=[fam, f"license:{'mit' if i % 3 else 'apache-2.0'}"], gated="manual" if i % 97 == 5 else False,
        ))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """What ``python -m hubscan.testing.fakehub`` runs: the demo zoo, served until idle or Ctrl-C."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m hubscan.testing.fakehub",
                                 description="Serve a fake Hugging Face Hub on 127.0.0.1 (for demos and tests).")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--demo", type=int, default=20,
                    help="number of demo repos (hubscan-demo/…: the demo zoo, cycled with new seeds)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated weights")
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--idle-timeout", type=float, default=600.0, help="stop after this many idle seconds")
    ap.add_argument("--no-formats", action="store_true",
                    help="leave out the formats/* repos (GGUF, GPTQ, AWQ, bnb, MLX, FP8, MXFP4, LoRA, tied)")
    args = ap.parse_args(argv)
    if not 1 <= args.demo <= 200:
        ap.error("--demo must be between 1 and 200")
    hub = FakeHub(port=args.port, page_size=args.page_size, idle_timeout=args.idle_timeout)
    print(f"generating {args.demo} demo models …", flush=True)
    repos = populate_demo(hub, args.demo, seed=args.seed)
    if not args.no_formats:
        from .formats import add_format_repos

        add_format_repos(hub)
    hub.start()
    print(f"fake hub with {len(hub.repos)} repos at {hub.url}"
          + ("" if args.no_formats else f" ({len(repos)} hubscan-demo/…, {len(hub.repos) - len(repos)} formats/…)"))
    print(f"  export HF_ENDPOINT={hub.url}")
    print(f"  e.g. HF_ENDPOINT={hub.url} hubscan analyze hf://{repos[0].repo_id} --lake lake/")
    print(f"  (stops after {args.idle_timeout:.0f} s idle; Ctrl-C to stop now)", flush=True)
    try:
        while not hub.stopped:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
