"""A Hugging Face Hub on loopback that misbehaves on purpose — for tests and offline demos.

Why not mock ``huggingface_hub``? Because the point is to test hubscan *with the real
client*: its URL building, query encoding, pagination, redirects and error mapping. So this
is an HTTP server (stdlib ``ThreadingHTTPServer``, bound to 127.0.0.1 only) that speaks the
endpoints ``huggingface_hub`` 2.4 actually calls, found by running the client against it:

====================================================  =========  ================================
endpoint                                              class      used by
====================================================  =========  ================================
``GET  /api/models?search&author&filter&pipeline_tag  api        ``HfApi.list_models`` (pages
&gated&num_parameters&sort&limit&expand&full&config``            linked by ``Link: <…>; rel="next"``)
``GET  /api/models/{repo}[/revision/{rev}]``          api        ``model_info`` (``blobs=true``
                                                                 adds sizes + LFS sha256)
``GET  /api/models/{repo}/tree/{rev}[/{path}]``       api        ``list_repo_tree`` (paginated)
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
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .catalogue import filter_models, model_json, tree_entries
from .faults import Fault, RequestRecord, select_records, take_fault
from .repos import LFS_SUFFIXES, FakeFile, FakeRepo, commit_sha, commit_time, nbytes, safetensors_bytes
from .server import Handler, Server

__all__ = ["LFS_SUFFIXES", "FakeHub", "FakeFile", "FakeRepo", "Fault", "RequestRecord", "safetensors_bytes",
           "populate_catalog"]

# ------------------------------------------------------------------------------ the hub


class FakeHub:
    """The loopback hub: repos, faults, request log, and the HTTP server around them.

    Example:
        >>> with FakeHub() as hub:
        ...     hub.add_model("acme/tiny", {"w": np.ones((4, 4), np.float32)})
        ...     os.environ["HF_ENDPOINT"] = hub.url
    """

    def __init__(
        self,
        *,
        port: int = 0,
        page_size: int = 100,
        tree_page_size: int = 1000,
        max_repos: int = 20_000,
        max_bytes: int = 2 << 30,
        max_connections: int = 64,
        idle_timeout: float | None = 300.0,
        lfs_redirect: bool = True,
        rate_limits: Mapping[str, tuple[int, float]] | None = None,
        tokens: Mapping[str, str] | None = None,
    ) -> None:
        self.page_size = page_size
        self.tree_page_size = tree_page_size
        self.max_repos = max_repos
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.lfs_redirect = lfs_redirect
        self.rate_limits = dict(rate_limits or {})
        self.tokens: dict[str, str] = dict(tokens or {})  # token → user name
        self.repos: dict[str, FakeRepo] = {}
        self.renamed: dict[str, str] = {}  # old repo id → new one (answered with a 307)
        self.tv_files: dict[str, FakeFile] = {}
        self.faults: list[Fault] = []
        self._log: list[RequestRecord] = []
        self._lock = threading.RLock()
        self._bytes_held = 0
        self._counter = 0
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}
        self._last_activity = time.monotonic()
        self._stopped = threading.Event()
        self._closing = False
        self._conn_slots = threading.BoundedSemaphore(max_connections)
        self._server = Server(("127.0.0.1", port), Handler)
        self._server.hub = self
        self._threads: list[threading.Thread] = []
        self.started = False

    # -- lifecycle

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        if self.started:
            return self
        t = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                             name="fakehub", daemon=True)
        t.start()
        self._threads.append(t)
        if self.idle_timeout:
            w = threading.Thread(target=self._watchdog, name="fakehub-idle", daemon=True)
            w.start()
            self._threads.append(w)
        self.started = True
        return self

    def stop(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
        if self.started:
            self._server.shutdown()
        self._server.server_close()
        self._stopped.set()  # only now: a caller that sees `stopped` finds the port closed

    @contextlib.contextmanager
    def environ(self, tmp: str | os.PathLike[str], *, token: str | None = None,
                fast_retries: bool = True) -> Iterator[FakeHub]:
        """Point ``huggingface_hub`` and hubscan at this hub for the duration of the block.

        Sets ``HF_ENDPOINT`` (env *and* ``huggingface_hub.constants``, which froze it at
        import), an empty ``HF_HUB_CACHE``/``HF_HOME`` under ``tmp``, ``HF_TOKEN`` (unset
        unless ``token``), ``HUBSCAN_HF_TIER=unlimited``; installs hubscan's client with a
        fast retry policy (tests must not sleep for seconds). Everything is restored after.
        """
        from huggingface_hub import constants

        from ...sources import http

        tmp = Path(tmp)
        env = {"HF_ENDPOINT": self.url, "HF_HUB_CACHE": str(tmp / "hf-cache"), "HF_HOME": str(tmp / "hf-home"),
               "HF_TOKEN": token, "HUGGING_FACE_HUB_TOKEN": None, "HUBSCAN_HF_TIER": "unlimited",
               "HF_HUB_OFFLINE": None, "HF_HUB_DISABLE_TELEMETRY": "1"}
        consts = {"ENDPOINT": self.url,
                  "HUGGINGFACE_CO_URL_TEMPLATE": self.url + "/{repo_id}/resolve/{revision}/{filename}",
                  "HF_HUB_CACHE": env["HF_HUB_CACHE"], "HF_HOME": env["HF_HOME"],
                  "HF_HUB_OFFLINE": False, "AGENT_HARNESSES_PATH": str(tmp / "hf-home" / ".agent_harnesses.json"),
                  "HF_TOKEN_PATH": str(tmp / "hf-home" / "token")}
        old_env = {k: os.environ.get(k) for k in env}
        old_consts = {k: getattr(constants, k, None) for k in consts}
        from huggingface_hub.utils import _detect_agent

        old_registry = _detect_agent._registry
        try:
            # The client fetches an agent registry from /api/agent-harnesses once per process;
            # pin it (empty) so request counts do not depend on test order.
            _detect_agent._registry = {"standardEnvVars": [], "harnesses": {}}
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            for k, v in consts.items():
                setattr(constants, k, v)
            policy = http.RetryPolicy(base_delay=0.01, max_delay=0.05, max_retry_after=5.0, read_timeout=2.0,
                                      connect_timeout=2.0) if fast_retries else None
            http.install(policy=policy, tier="unlimited", force=True)
            yield self
        finally:
            _detect_agent._registry = old_registry
            http.uninstall()
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            for k, v in old_consts.items():
                setattr(constants, k, v)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def touch(self) -> None:
        self._last_activity = time.monotonic()

    def _watchdog(self) -> None:
        while not self._stopped.wait(0.25):
            if time.monotonic() - self._last_activity > (self.idle_timeout or 0):
                self.stop()
                return

    # -- repos

    def _account(self, files: Mapping[str, FakeFile]) -> int:
        return sum(len(f.data) for f in files.values() if f.data is not None)

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str | Path | FakeFile],
        *,
        gated: Any = False,
        private: bool = False,
        downloads: int = 0,
        likes: int = 0,
        tags: Sequence[str] = (),
        library_name: str | None = "transformers",
        pipeline_tag: str | None = None,
        created_at: str | None = None,
        granted: Sequence[str] = (),
    ) -> FakeRepo:
        """Add (or replace) a repo. ``files`` values: bytes, a path on disk, or a ``FakeFile``."""
        built = {p: self._file(p, v) for p, v in files.items()}
        with self._lock:
            if repo_id not in self.repos and len(self.repos) >= self.max_repos:
                raise ValueError(f"fake hub is full ({self.max_repos} repos)")
            old = self.repos.get(repo_id)
            held = self._bytes_held - (self._account(old.files) if old else 0) + self._account(built)
            if held > self.max_bytes:
                raise ValueError(f"fake hub would hold {held} bytes in memory (max {self.max_bytes})")
            self._bytes_held = held
            self._counter += 1
            sha = commit_sha(repo_id, built, self._counter)
            ts = created_at or commit_time(self._counter)
            repo = FakeRepo(
                repo_id=repo_id, files=built, sha=sha, gated=gated, private=private, downloads=downloads,
                likes=likes, tags=list(tags), library_name=library_name, pipeline_tag=pipeline_tag,
                created_at=ts, last_modified=ts, granted=set(granted),
            )
            repo.revisions[sha] = built
            self.repos[repo_id] = repo
            return repo

    def update_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str | Path | FakeFile | None] | None = None,
        **attrs: Any,
    ) -> str:
        """Commit a change: ``files`` adds/replaces (``None`` deletes) paths; ``attrs`` set
        metadata (downloads, likes, tags, gated …). Returns the new commit sha; the old one
        stays resolvable."""
        with self._lock:
            repo = self.repos[repo_id]
            new_files = dict(repo.files)
            for p, v in (files or {}).items():
                if v is None:
                    new_files.pop(p, None)
                else:
                    new_files[p] = self._file(p, v)
            for k, v in attrs.items():
                if not hasattr(repo, k):
                    raise AttributeError(f"FakeRepo has no attribute {k!r}")
                setattr(repo, k, set(v) if k == "granted" else v)
            if files:
                self._bytes_held += self._account({p: f for p, f in new_files.items() if p not in repo.files
                                                   or repo.files[p] is not f})
                self._counter += 1
                repo.files = new_files
                repo.sha = commit_sha(repo_id, new_files, self._counter)
                repo.revisions[repo.sha] = new_files
                repo.last_modified = commit_time(self._counter)
            return repo.sha

    def delete_repo(self, repo_id: str) -> None:
        with self._lock:
            repo = self.repos.pop(repo_id)
            self._bytes_held -= self._account(repo.files)

    def rename_repo(self, old: str, new: str) -> None:
        """Move a repo to a new id, as the Hub does: same files, revisions and shas, and every
        request for the old id (API and resolve) answered with a 307 to the new one."""
        with self._lock:
            if new in self.repos:
                raise ValueError(f"{new} exists")
            repo = self.repos.pop(old)
            repo.repo_id = new
            self.repos[new] = repo
            self.renamed = {k: (new if v == old else v) for k, v in self.renamed.items()}
            self.renamed[old] = new
            self.renamed.pop(new, None)

    def add_model(
        self,
        repo_id: str,
        tensors: Mapping[str, Any],
        *,
        shards: int = 1,
        config: Mapping[str, Any] | None = None,
        bin: bool = False,
        safetensors: bool = True,
        extra_files: Mapping[str, bytes] | None = None,
        **repo_kw: Any,
    ) -> FakeRepo:
        """A model repo from tensors: ``model.safetensors`` (or ``shards`` shards plus
        ``model.safetensors.index.json``), optional ``pytorch_model.bin`` and ``config.json``."""
        files: dict[str, bytes] = {}
        names = list(tensors)
        if safetensors:
            if shards <= 1:
                files["model.safetensors"] = safetensors_bytes(tensors, {"format": "pt"})
            else:
                weight_map, total = {}, 0
                per = -(-len(names) // shards)
                for i in range(shards):
                    part = {k: tensors[k] for k in names[i * per : (i + 1) * per]}
                    fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
                    files[fname] = safetensors_bytes(part, {"format": "pt"})
                    weight_map.update({k: fname for k in part})
                    total += sum(nbytes(v) for v in part.values())
                files["model.safetensors.index.json"] = json.dumps(
                    {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2).encode()
        if bin:
            import torch

            buf = io.BytesIO()
            torch.save({k: (v if hasattr(v, "detach") else torch.from_numpy(v)) for k, v in tensors.items()}, buf)
            files["pytorch_model.bin"] = buf.getvalue()
        if config is not None:
            files["config.json"] = json.dumps(dict(config), indent=2).encode()
        files.update(extra_files or {})
        return self.add_repo(repo_id, files, **repo_kw)

    def add_folder(self, repo_id: str, folder: str | os.PathLike[str], *, in_memory_below: int = 16 << 20,
                   **repo_kw: Any) -> FakeRepo:
        """A repo holding every file under ``folder`` (small ones in memory, big ones served
        from disk), e.g. a folder written by ``hubscan.testing.checkpoints.make_demo_model``."""
        root = Path(folder)
        files: dict[str, bytes | Path] = {}
        for p in sorted(root.rglob("*")):
            if p.is_file():
                rel = p.relative_to(root).as_posix()
                files[rel] = p.read_bytes() if p.stat().st_size < in_memory_below else p
        return self.add_repo(repo_id, files, **repo_kw)

    def add_tv_file(self, filename: str, content: bytes | str | Path) -> FakeFile:
        """Serve a torchvision weight file at ``/tv/<filename>`` (base-URL override target)."""
        f = self._file(filename, content)
        with self._lock:
            self.tv_files[filename] = f
        return f

    def _file(self, path: str, v: bytes | str | Path | FakeFile) -> FakeFile:
        if isinstance(v, FakeFile):
            return replace(v, path=path)
        if isinstance(v, (bytes, bytearray, memoryview)):
            return FakeFile.from_bytes(path, bytes(v))
        return FakeFile.from_disk(path, v)

    def grant(self, repo_id: str, user: str) -> None:
        with self._lock:
            self.repos[repo_id].granted.add(user)

    # -- faults

    def inject(self, kind: str, **kw: Any) -> Fault:
        """Add a fault (see module doc); returns it so a test can read ``fault.hits``."""
        if kind not in Fault.KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {Fault.KINDS}")
        f = Fault(kind=kind, **kw)
        with self._lock:
            self.faults.append(f)
        return f

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def _take_fault(self, endpoint: str, method: str, repo: str | None, path: str | None, ranged: bool) -> Fault | None:
        with self._lock:
            return take_fault(self.faults, endpoint, method, repo, path, ranged)

    # -- log

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            if len(self._log) < 1_000_000:
                self._log.append(rec)

    def count(self, endpoint: str | None = None, *, method: str | None = None, repo: str | None = None,
              file: str | None = None, ranged: bool | None = None, path_prefix: str | None = None) -> int:
        """Number of logged requests matching every given criterion."""
        return len(self.select(endpoint, method=method, repo=repo, file=file, ranged=ranged, path_prefix=path_prefix))

    def select(self, endpoint: str | None = None, *, method: str | None = None, repo: str | None = None,
               file: str | None = None, ranged: bool | None = None,
               path_prefix: str | None = None) -> list[RequestRecord]:
        return select_records(self.requests, endpoint, method=method, repo=repo, file=file, ranged=ranged,
                              path_prefix=path_prefix)

    def bytes_sent(self, endpoint: str | None = None, **kw: Any) -> int:
        return sum(r.bytes_sent for r in self.select(endpoint, **kw))

    # -- rate limits (server side)

    def _rate_check(self, endpoint: str, who: str) -> tuple[dict[str, str], bool]:
        """Headers to send, and whether the request is over quota."""
        cls = "resolve" if endpoint in ("resolve",) else endpoint
        if cls not in self.rate_limits:
            return {}, False
        quota, window = self.rate_limits[cls]
        now = time.monotonic()
        with self._lock:
            start, used = self._windows.get((cls, who), (now, 0))
            if now - start >= window:
                start, used = now, 0
            over = used >= quota
            if not over:
                used += 1
            self._windows[(cls, who)] = (start, used)
        reset = max(1, math.ceil(start + window - now))  # never promise a reset too early
        headers = {
            "RateLimit": f'"{cls}";r={max(0, quota - used)};t={reset}',
            "RateLimit-Policy": f'"fixed window";"{cls}";q={quota};w={int(window)}',
        }
        return headers, over

    # -- listing / info payloads

    def user_of(self, token: str | None) -> str | None:
        return self.tokens.get(token) if token else None

    def can_see(self, repo: FakeRepo, user: str | None) -> bool:
        return not repo.private or (user is not None and (user in repo.granted or user == repo.author))

    def list_models(self, q: Mapping[str, list[str]], user: str | None) -> list[FakeRepo]:
        with self._lock:
            repos = [r for r in self.repos.values() if self.can_see(r, user)]
        return filter_models(repos, q)

    # The catalogue's payload builders, as methods: the handler asks the hub for them.
    model_json = staticmethod(model_json)
    tree_entries = staticmethod(tree_entries)


# ------------------------------------------------------------------------------ catalogues


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


def _main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m hubscan.testing.fakehub",
                                 description="Serve a fake Hugging Face Hub on 127.0.0.1 (for demos and tests).")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--demo", type=int, default=20, help="number of generated repos")
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--idle-timeout", type=float, default=600.0, help="stop after this many idle seconds")
    args = ap.parse_args(argv)
    hub = FakeHub(port=args.port, page_size=args.page_size, idle_timeout=args.idle_timeout)
    populate_catalog(hub, args.demo, tiny=False)
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

