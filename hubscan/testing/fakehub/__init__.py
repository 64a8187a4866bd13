"""A Hugging Face Hub on loopback that misbehaves on purpose — for tests and offline demos.

Why not mock ``huggingface_hub``? Because the point is to test hubscan *with the real
client*: its URL building, query encoding, pagination, redirects and error mapping. So this
is an HTTP server (stdlib ``ThreadingHTTPServer``, bound to 127.0.0.1 only) that speaks the
endpoints ``huggingface_hub`` 2.4 actually calls, found by running the client against it:

====================================================  =========  ================================
endpoint                                              class      used by
====================================================  =========  ================================
``GET  /api/models?search&author&filter&pipeline_tag  api        ``HfApi.list_models`` (pages
&gated&num_parameters&sort&direction&limit&expand                linked by ``Link: <…>; rel="next"``)
&full&config``
``GET  /api/models/{repo}[/revision/{rev}]``          api        ``model_info`` (``blobs=true``
                                                                 adds sizes + LFS sha256)
``GET  /api/models/{repo}/tree/{rev}[/{path}]``       api        ``list_repo_tree`` (paginated;
                                                                 ``recursive=true`` walks down)
``POST /api/models/{repo}/paths-info/{rev}``          api        ``get_paths_info``
``HEAD|GET /{repo}/resolve/{rev}/{path}``             resolve    ``hf_hub_download``, streaming;
                                                                 LFS files answer ``302`` to the CDN
``HEAD|GET /cdn/{sha256}?repo&rev&path``              cdn        the redirect target (Range → 206)
``GET  /tv/{file}``                                   tv         torchvision weight mirror
``GET  /api/agent-harnesses``, ``/api/whoami-v2``     api        ``huggingface_hub`` internals
====================================================  =========  ================================

Headers are the Hub's: ``X-Repo-Commit``, ``ETag`` (git oid, or sha256 for LFS),
``X-Linked-Etag`` / ``X-Linked-Size`` on LFS resolves, ``Accept-Ranges``/``Content-Range``,
``X-Error-Code: RepoNotFound|RevisionNotFound|EntryNotFound|GatedRepo``, a ``307`` to the new id
for every API and resolve request naming a repo renamed with ``rename_repo``, and — when
``rate_limits`` is set — ``RateLimit`` / ``RateLimit-Policy`` with real fixed-window
enforcement (429 when a class is exhausted).

Fault knobs (``hub.inject(kind, …)``), matched per endpoint class / repo / file / method,
for ``times`` requests after ``skip`` clean ones:

* ``status``  — answer ``status`` (500, 503, 429 + ``Retry-After`` …) instead of the body;
* ``cut``     — send full headers, then close the connection after ``at`` body bytes;
* ``stall``   — pause ``delay`` seconds after ``at`` bytes (a client read timeout = a cut);
* ``slow``    — sleep ``delay`` seconds between 64 KiB chunks;
* ``corrupt`` — flip one byte at ``at`` (sha256 mismatch, sizes all correct);
* ``length_lie`` — ``Content-Length`` off by ``lie`` bytes (positive: body ends early;
  negative: the body is truncated to match the lie).

``at`` is a byte offset in the body (int) or a fraction of it (float). Every request is
logged (``hub.requests``, ``hub.count(…)``) so tests can assert what the client did.

The hub is bounded (``max_repos``, ``max_bytes`` held in memory, ``max_connections``) and
stops by itself after ``idle_timeout`` seconds without a request. Repos are mutable
(``update_repo``, ``delete_repo``, ``rename_repo``) with old revisions still resolvable by sha, as
on the Hub.

Run ``python -m hubscan.testing.fakehub --demo 20`` for a demo hub, then point
``HF_ENDPOINT`` at the printed URL.

The package, by what it serves; at run time each module imports only those above it:

* ``repos``     — the repo model: files, repos, revisions, git/LFS ids, ``safetensors_bytes``;
* ``faults``    — ``Fault`` (which request it hits) and ``RequestRecord`` (the request log);
* ``handler``   — what every endpoint shares: parsing, logging, JSON errors, rate limits,
  ``status`` faults, access rules for private and gated repos;
* ``catalogue`` — ``/api/...``: listings, model info, trees, paths-info;
* ``files``     — ``/resolve/``, ``/cdn/``, ``/tv/``: file bytes, ``Range``, the body faults;
* ``server``    — routing by path and the bounded ``ThreadingHTTPServer``;
* ``hub``       — ``FakeHub``: repos, users, faults, log, rate limits, lifecycle, ``environ``;
* ``demo``      — ``populate_catalog`` and the ``--demo`` command line (``__main__``).
* ``formats``   — ``add_format_repos``: GGUF, GPTQ, AWQ, bnb, MLX, FP8, compressed-tensors,
                  MXFP4 MoE, LoRA adapter and tied-embedding repos (in ``--demo`` too).
"""

from __future__ import annotations

from .demo import populate_catalog
from .faults import Fault, RequestRecord
from .formats import FORMAT_REPOS, add_format_repos
from .hub import FakeHub
from .repos import LFS_SUFFIXES, FakeFile, FakeRepo, safetensors_bytes

__all__ = ["LFS_SUFFIXES", "FakeHub", "FakeFile", "FakeRepo", "Fault", "RequestRecord", "safetensors_bytes",
           "populate_catalog", "add_format_repos", "FORMAT_REPOS"]
