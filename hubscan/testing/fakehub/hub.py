"""The fake hub itself: its repos, users, faults, log and rate limits, and its lifecycle.

``FakeHub`` is what a test holds. It owns all mutable state under one lock (the request
handlers run on server threads and read it), commits repo changes the way the Hub does (new
sha per commit, old revisions still resolvable, renames answered with 307s), keeps memory
and connections bounded, and stops itself when idle so that a crashed test leaves no
server behind. It speaks no HTTP itself: ``server.Server`` runs ``server.Handler`` against it.
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
from .repos import (
    FakeFile,
    FakeRepo,
    commit_sha,
    commit_time,
    nbytes,
    safetensors_bytes,
)
from .server import Handler, Server

__all__ = ["FakeHub"]


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

        from ...net import http

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

    # -- users, and the catalogue the handlers serve

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
