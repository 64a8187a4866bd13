"""Demo content for the fake hub: a generated catalogue, and the ``--demo`` command line.

The listing tests and ``python -m hubscan.testing.fakehub`` need many repos that differ the
way real ones do (authors, libraries, tasks, downloads, gated ones) yet cost nothing to
build; ``populate_catalog`` makes them from a seed, each with a genuine safetensors file so
parameter counts and sizes come from real headers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from .hub import FakeHub
from .repos import FakeRepo, safetensors_bytes

__all__ = ["main", "populate_catalog"]


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
    """What ``python -m hubscan.testing.fakehub`` runs: a generated catalogue, served until idle or Ctrl-C."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m hubscan.testing.fakehub",
                                 description="Serve a fake Hugging Face Hub on 127.0.0.1 (for demos and tests).")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--demo", type=int, default=20, help="number of generated repos")
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--idle-timeout", type=float, default=600.0, help="stop after this many idle seconds")
    ap.add_argument("--no-formats", action="store_true",
                    help="leave out the formats/* repos (GGUF, GPTQ, AWQ, bnb, MLX, FP8, MXFP4, LoRA, tied)")
    args = ap.parse_args(argv)
    hub = FakeHub(port=args.port, page_size=args.page_size, idle_timeout=args.idle_timeout)
    populate_catalog(hub, args.demo, tiny=False)
    if not args.no_formats:
        from .formats import add_format_repos

        add_format_repos(hub)
    hub.start()
    print(f"fake hub with {len(hub.repos)} repos at {hub.url}")
    print(f"  export HF_ENDPOINT={hub.url}")
    print(f"  (stops after {args.idle_timeout:.0f} s idle; Ctrl-C to stop now)", flush=True)
    try:
        while not hub.stopped:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
