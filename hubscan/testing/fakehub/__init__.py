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

import base64
import contextlib
import hashlib
import http.server
import io
import json
import math
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .faults import Fault, RequestRecord, select_records, take_fault
from .repos import LFS_SUFFIXES, FakeFile, FakeRepo, commit_sha, commit_time, nbytes, safetensors_bytes

__all__ = ["LFS_SUFFIXES", "FakeHub", "FakeFile", "FakeRepo", "Fault", "RequestRecord", "safetensors_bytes",
           "populate_catalog"]

_NUM_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}

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
        self._server = _Server(("127.0.0.1", port), _Handler)
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
        def one(k: str) -> str | None:
            v = q.get(k) or q.get(k + "[]")
            return v[0] if v else None

        def many(k: str) -> list[str]:
            return list(q.get(k, [])) + list(q.get(k + "[]", []))

        with self._lock:
            repos = [r for r in self.repos.values() if self.can_see(r, user)]
        if (s := one("search")):
            repos = [r for r in repos if s.lower() in r.repo_id.lower()]
        if (a := one("author")):
            repos = [r for r in repos if r.author == a]
        for flt in many("filter"):
            repos = [r for r in repos if flt in r.all_tags()]
        if (p := one("pipeline_tag")):
            repos = [r for r in repos if r.pipeline_tag == p]
        if (g := one("gated")) is not None:
            want = g.lower() == "true"
            repos = [r for r in repos if bool(r.gated) == want]
        if (np_ := one("num_parameters")):
            lo, hi = _parse_num_range(np_)
            def total(r: FakeRepo) -> int | None:
                info = r.safetensors_info()
                return info["total"] if info else None
            repos = [r for r in repos if (t := total(r)) is not None and lo <= t <= hi]
        sort = one("sort")
        key = {"downloads": lambda r: r.downloads, "likes": lambda r: r.likes,
               "lastModified": lambda r: r.last_modified, "createdAt": lambda r: r.created_at,
               "trendingScore": lambda r: r.trending_score}.get(sort or "")
        if key is not None:
            repos.sort(key=lambda r: r.repo_id)
            repos.sort(key=key, reverse=(one("direction") or "-1") != "1")
        else:
            repos.sort(key=lambda r: r.created_at)
        return repos

    def model_json(self, repo: FakeRepo, *, expand: Sequence[str] | None, full: bool = False,
                   config: bool = False, blobs: bool = False, listing: bool = False,
                   rev: str | None = None) -> dict[str, Any]:
        sha, files = (repo.sha, repo.files) if rev is None else repo.snapshot(rev)  # type: ignore[misc]

        def siblings() -> list[dict]:
            out = []
            for p in sorted(files):
                f = files[p]
                d: dict[str, Any] = {"rfilename": p}
                if blobs:
                    d["size"] = f.size
                    d["blobId"] = f.git_oid
                    if f.lfs:
                        d["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
                out.append(d)
            return out

        props: dict[str, Any] = {
            "author": lambda: repo.author,
            "sha": lambda: sha,
            "lastModified": lambda: repo.last_modified,
            "createdAt": lambda: repo.created_at,
            "private": lambda: repo.private,
            "gated": lambda: repo.gated,
            "disabled": lambda: False,
            "downloads": lambda: repo.downloads,
            "downloadsAllTime": lambda: repo.downloads * 10,
            "likes": lambda: repo.likes,
            "library_name": lambda: repo.library_name,
            "tags": lambda: repo.all_tags(),
            "pipeline_tag": lambda: repo.pipeline_tag,
            "trendingScore": lambda: repo.trending_score,
            "siblings": siblings,
            "safetensors": lambda: repo.safetensors_info(files),
            "config": lambda: repo.config(files),
            "usedStorage": lambda: sum(f.size for f in files.values()),
            "cardData": lambda: {"tags": repo.tags},
        }
        out: dict[str, Any] = {"_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id}
        if expand:
            wanted = list(expand)
        elif listing:
            wanted = ["likes", "trendingScore", "private", "downloads", "tags", "pipeline_tag", "library_name",
                      "createdAt"]
            if full:
                wanted += ["author", "sha", "lastModified", "gated", "disabled", "siblings"]
            if config:
                wanted += ["config"]
        else:
            wanted = ["author", "sha", "lastModified", "private", "gated", "disabled", "downloads", "likes",
                      "library_name", "tags", "pipeline_tag", "createdAt", "siblings", "safetensors", "config",
                      "usedStorage", "cardData"]
            out["modelId"] = repo.repo_id
        for k in wanted:
            if k in props:
                v = props[k]()
                if v is not None or k in ("gated",):
                    out[k] = v
        return out

    def tree_entries(self, files: Mapping[str, FakeFile], path: str, recursive: bool) -> list[dict]:
        prefix = path.strip("/")
        prefix = prefix + "/" if prefix else ""
        dirs: dict[str, None] = {}
        entries = []
        for p in sorted(files):
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix):]
            parts = rest.split("/")
            for i in range(1, len(parts)):
                d = prefix + "/".join(parts[:i])
                if recursive or i == 1:
                    dirs.setdefault(d, None)
            if recursive or len(parts) == 1:
                entries.append(_file_entry(files[p]))
        out = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
               for d in dirs]
        return out + entries


def _file_entry(f: FakeFile) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
    if f.lfs:
        d["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
    return d


def _parse_num_range(spec: str) -> tuple[float, float]:
    lo, hi = 0.0, float("inf")
    for part in spec.split(","):
        k, _, v = part.partition(":")
        m = re.fullmatch(r"\s*([\d.]+)\s*([KMBT]?)\s*", v.upper())
        if not m:
            continue
        n = float(m.group(1)) * _NUM_SUFFIX[m.group(2)]
        if k.strip() == "min":
            lo = n
        elif k.strip() == "max":
            hi = n
    return lo, hi


def _parse_range(value: str | None, size: int) -> tuple[int, int] | None | str:
    """``(start, end_exclusive)``, ``None`` for no/ignored Range, ``"bad"`` if unsatisfiable."""
    if not value:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if not m:
        return None  # multi-range or garbage: serve the whole file (RFC 9110 allows it)
    a, b = m.groups()
    if a == "" and b == "":
        return None
    if a == "":
        n = int(b)
        start, end = max(0, size - n), size
    else:
        start = int(a)
        end = min(size, int(b) + 1) if b else size
    if start >= size or start >= end:
        return "bad"
    return start, end


# ------------------------------------------------------------------------------ HTTP layer


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    hub: FakeHub

    def handle_error(self, request, client_address):  # a client hanging up is not news
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, _Cut)):
            return
        super().handle_error(request, client_address)

    def process_request(self, request, client_address):  # bounded concurrency
        self.hub._conn_slots.acquire()
        try:
            super().process_request(request, client_address)
        except Exception:
            self.hub._conn_slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.hub._conn_slots.release()


class _Cut(Exception):
    """Raised to drop the connection mid-body (fault ``cut``)."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms ACK waits
    server: _Server
    timeout = 30  # idle keep-alive connections close after this many seconds

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    # -- plumbing

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def _begin(self) -> None:
        self.hub.touch()
        u = urllib.parse.urlsplit(self.path)
        self._upath = urllib.parse.unquote(u.path)
        self._rawpath = u.path
        self._query = u.query
        self._q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        auth = self.headers.get("Authorization", "")
        self._token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        self._user = self.hub.user_of(self._token)
        self._rec: dict[str, Any] = {"endpoint": "other", "repo": None, "file": None, "fault": None}
        self._status = 0
        self._record: RequestRecord | None = None

    @property
    def _sent(self) -> int:
        return self._record.bytes_sent if self._record is not None else 0

    @_sent.setter
    def _sent(self, n: int) -> None:
        if self._record is not None:
            self._record.bytes_sent = n

    def _log(self) -> None:
        if self._record is None:
            self._record = RequestRecord(
                method=self.command, path=self._upath, query=self._query, endpoint=self._rec["endpoint"],
                status=self._status, range=self.headers.get("Range"), bytes_sent=0, repo=self._rec["repo"],
                file=self._rec["file"], fault=self._rec["fault"], token=self._token, time=time.time(),
            )
            self.hub._record(self._record)

    def _finish(self) -> None:
        self._log()
        self.hub.touch()

    def _headers(self, status: int, headers: Mapping[str, str]) -> None:
        self._status = status
        self._log()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def _json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        h = {"Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(body)), **(headers or {})}
        self._headers(status, h)
        if self.command != "HEAD":
            self._sent += len(body)
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, extra: Mapping[str, str] | None = None) -> None:
        h = dict(extra or {})
        if code:
            h["X-Error-Code"] = code
        h["X-Error-Message"] = message
        self._json(status, {"error": message}, h)

    def _fault_or_limit(self, endpoint: str, repo: str | None, path: str | None) -> tuple[Fault | None, dict[str, str]]:
        """Apply rate limits and status faults; returns (body fault, extra headers) or sends the error."""
        rl_headers, over = self.hub._rate_check(endpoint, self._token or self.client_address[0])
        if over:
            retry = rl_headers.get("RateLimit", "t=1").rsplit("t=", 1)[-1]
            self._rec["fault"] = "ratelimit"
            self._error(429, None, "rate limited", {**rl_headers, "Retry-After": retry})
            return None, {}
        fault = self.hub._take_fault(endpoint, self.command, repo, path, "Range" in self.headers)
        if fault is not None:
            self._rec["fault"] = fault.kind
            if fault.kind == "status":
                extra = dict(rl_headers)
                if fault.retry_after is not None:
                    extra["Retry-After"] = str(int(fault.retry_after)) if float(fault.retry_after).is_integer() \
                        else str(fault.retry_after)
                self._error(fault.status, None, f"injected {fault.status}", extra)
                return None, {}
        return fault, rl_headers

    def _dispatch(self) -> None:
        self._begin()
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError, _Cut):
            self.close_connection = True
        finally:
            self._finish()

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    # -- routing

    def _route(self) -> None:
        p = self._upath
        if p.startswith("/api/"):
            self._rec["endpoint"] = "api"
            if self.command == "POST":
                n = int(self.headers.get("Content-Length") or 0)
                self._body = self.rfile.read(n) if n else b""
            return self._api(p[len("/api/"):])
        if p.startswith("/cdn/"):
            self._rec["endpoint"] = "cdn"
            return self._cdn(p[len("/cdn/"):])
        if p.startswith("/tv/"):
            self._rec["endpoint"] = "tv"
            return self._tv(p[len("/tv/"):])
        if "/resolve/" in p:
            self._rec["endpoint"] = "resolve"
            return self._resolve(p)
        self._error(404, None, "not found")

    def _moved(self, old_prefix: str, new_prefix: str) -> None:
        """307 to the same request under a renamed repo's new id (query string kept)."""
        path = self._rawpath.replace(old_prefix, new_prefix, 1)
        query = urllib.parse.urlsplit(self.path).query
        host = self.headers.get("Host")
        self._headers(307, {"Location": f"http://{host}{path}" + (f"?{query}" if query else ""),
                            "Content-Length": "0"})

    def _find_repo(self, segs: list[str]) -> tuple[FakeRepo | None, str, list[str]]:
        with self.hub._lock:
            if len(segs) >= 2 and "/".join(segs[:2]) in self.hub.repos:
                rid = "/".join(segs[:2])
                return self.hub.repos[rid], rid, segs[2:]
            if segs and segs[0] in self.hub.repos:
                return self.hub.repos[segs[0]], segs[0], segs[1:]
        rid = "/".join(segs[:2])
        return None, rid, segs[2:]

    def _repo_gate(self, repo: FakeRepo | None, rid: str, *, files: bool) -> bool:
        """Send the Hub's access errors; True when the request may go on."""
        user = self._user
        if repo is None or not self.hub.can_see(repo, user):
            self._error(401 if self._token is None else 404, "RepoNotFound", f"Repository {rid} not found")
            return False
        if files and repo.gated and not (user and (user in repo.granted or user == repo.author)):
            msg = f"Access to model {rid} is restricted. You must have access to it and be authenticated."
            self._error(401 if user is None else 403, "GatedRepo", msg)
            return False
        return True

    # -- /api

    def _api(self, rest: str) -> None:
        if rest in ("agent-harnesses", "agent-harnesses/"):
            return self._json(200, {"standardEnvVars": [], "harnesses": {}})
        if rest.startswith("whoami"):
            if self._user is None:
                return self._error(401, None, "Invalid credentials in Authorization header")
            return self._json(200, {"type": "user", "name": self._user, "auth": {"type": "access_token"}})
        if rest == "models" or rest == "models/":
            fault, rl = self._fault_or_limit("api", None, None)
            if self._status:
                return
            return self._list(rl)
        if rest.startswith("models/"):
            segs = [s for s in rest[len("models/"):].split("/") if s != ""]
            repo, rid, tail = self._find_repo(segs)
            self._rec["repo"] = rid
            fault, rl = self._fault_or_limit("api", rid, None)
            if self._status:
                return
            if repo is None and rid in self.hub.renamed:
                return self._moved(f"/api/models/{rid}", f"/api/models/{self.hub.renamed[rid]}")
            if not self._repo_gate(repo, rid, files=False):
                return
            assert repo is not None
            if not tail:
                return self._info(repo, None, rl)
            if tail[0] == "revision" and len(tail) >= 2:
                return self._info(repo, "/".join(tail[1:]), rl)
            if tail[0] == "tree" and len(tail) >= 2:
                return self._tree(repo, tail[1], "/".join(tail[2:]), rl)
            if tail[0] == "paths-info" and len(tail) >= 2 and self.command == "POST":
                return self._paths_info(repo, "/".join(tail[1:]), rl)
        self._error(404, None, f"unknown endpoint /api/{rest}")

    def _expand(self) -> list[str]:
        return list(self._q.get("expand", [])) + list(self._q.get("expand[]", []))

    def _list(self, rl: Mapping[str, str]) -> None:
        repos = self.hub.list_models(self._q, self._user)
        limit = self._q.get("limit")
        page = self.hub.page_size
        if limit:
            page = max(1, min(page, int(limit[0])))
        cursor = self._q.get("cursor")
        start = int(base64.urlsafe_b64decode(cursor[0].encode()).decode()) if cursor else 0
        chunk = repos[start : start + page]
        full = (self._q.get("full") or [""])[0].lower() == "true"
        cfg = (self._q.get("config") or [""])[0].lower() == "true"
        body = [self.hub.model_json(r, expand=self._expand(), full=full, config=cfg, listing=True) for r in chunk]
        headers = dict(rl)
        if start + page < len(repos):
            q = [(k, v) for k, vs in self._q.items() if k != "cursor" for v in vs]
            q.append(("cursor", base64.urlsafe_b64encode(str(start + page).encode()).decode()))
            host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
            nxt = f"http://{host}/api/models?{urllib.parse.urlencode(q)}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        self._json(200, body, headers)

    def _info(self, repo: FakeRepo, rev: str | None, rl: Mapping[str, str]) -> None:
        if rev is not None and repo.snapshot(rev) is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        blobs = (self._q.get("blobs") or [""])[0].lower() == "true"
        self._json(200, self.hub.model_json(repo, expand=self._expand(), blobs=blobs, rev=rev), rl)

    def _tree(self, repo: FakeRepo, rev: str, path: str, rl: Mapping[str, str]) -> None:
        snap = repo.snapshot(rev)
        if snap is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        recursive = (self._q.get("recursive") or [""])[0].lower() == "true"
        entries = self.hub.tree_entries(snap[1], path, recursive)
        if path and not entries:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {rev}")
        cursor = self._q.get("cursor")
        start = int(base64.urlsafe_b64decode(cursor[0].encode()).decode()) if cursor else 0
        page = self.hub.tree_page_size
        headers = dict(rl)
        if start + page < len(entries):
            q = [(k, v) for k, vs in self._q.items() if k != "cursor" for v in vs]
            q.append(("cursor", base64.urlsafe_b64encode(str(start + page).encode()).decode()))
            host = self.headers.get("Host")
            headers["Link"] = f'<http://{host}{self._rawpath}?{urllib.parse.urlencode(q)}>; rel="next"'
        self._json(200, entries[start : start + page], headers)

    def _paths_info(self, repo: FakeRepo, rev: str, rl: Mapping[str, str]) -> None:
        snap = repo.snapshot(rev)
        if snap is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            data = json.loads(self._body or b"{}")
            paths = data.get("paths", [])
        else:
            form = urllib.parse.parse_qs(self._body.decode(), keep_blank_values=True)
            paths = form.get("paths", []) + form.get("paths[]", [])
        files = snap[1]
        out = []
        for p in paths:
            p = p.strip("/")
            if p in files:
                out.append(_file_entry(files[p]))
            elif any(k.startswith(p + "/") for k in files):
                out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p})
        self._json(200, out, rl)

    # -- file bytes

    def _resolve(self, p: str) -> None:
        head, _, tail = p.lstrip("/").partition("/resolve/")
        rid = head
        repo = self.hub.repos.get(rid)
        rev, _, fpath = tail.partition("/")
        self._rec["repo"], self._rec["file"] = rid, fpath
        fault, rl = self._fault_or_limit("resolve", rid, fpath)
        if self._status:
            return
        if repo is None and rid in self.hub.renamed:
            return self._moved(f"/{rid}/", f"/{self.hub.renamed[rid]}/")
        if not self._repo_gate(repo, rid, files=True):
            return
        assert repo is not None
        snap = repo.snapshot(rev)
        if snap is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        sha, files = snap
        f = files.get(fpath)
        if f is None:
            return self._error(404, "EntryNotFound", f"{fpath} does not exist on {rev}", {"X-Repo-Commit": sha})
        meta = {"X-Repo-Commit": sha, **rl}
        if f.lfs:
            meta.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})
            if self.hub.lfs_redirect:
                host = self.headers.get("Host")
                qs = urllib.parse.urlencode({"repo": rid, "rev": sha, "path": fpath})
                loc = f"http://{host}/cdn/{f.sha256}?{qs}"
                self._headers(302, {"Location": loc, "ETag": f'"{f.git_oid}"', "Content-Length": "0", **meta})
                return
            meta["ETag"] = f'"{f.sha256}"'
        else:
            meta["ETag"] = f'"{f.git_oid}"'
        self._send_file(f, meta, fault)

    def _cdn(self, rest: str) -> None:
        sha = rest.strip("/")
        rid = (self._q.get("repo") or [None])[0]
        rev = (self._q.get("rev") or [None])[0]
        fpath = (self._q.get("path") or [None])[0]
        self._rec["repo"], self._rec["file"] = rid, fpath
        fault, rl = self._fault_or_limit("cdn", rid, fpath)
        if self._status:
            return
        f = None
        with self.hub._lock:
            repo = self.hub.repos.get(rid or "")
            if repo is not None:
                for files in repo.revisions.values():
                    cand = files.get(fpath or "")
                    if cand is not None and cand.sha256 == sha:
                        f = cand
                        break
        if f is None:
            return self._error(404, None, "NoSuchKey")
        meta = {"ETag": f'"{f.sha256}"', "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)}
        if rev:
            meta["X-Repo-Commit"] = rev
        self._send_file(f, meta, fault)

    def _tv(self, name: str) -> None:
        self._rec["file"] = name
        fault, rl = self._fault_or_limit("tv", None, name)
        if self._status:
            return
        f = self.hub.tv_files.get(name)
        if f is None:
            return self._error(404, None, "not found")
        self._send_file(f, {"ETag": f'"{f.sha256}"'}, fault)

    def _send_file(self, f: FakeFile, meta: Mapping[str, str], fault: Fault | None) -> None:
        rng = _parse_range(self.headers.get("Range"), f.size)
        if rng == "bad":
            return self._error(416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{f.size}"})
        start, end = rng if isinstance(rng, tuple) else (0, f.size)
        status = 206 if isinstance(rng, tuple) else 200
        body_len = end - start
        claimed = body_len
        send_len = body_len
        if fault is not None and fault.kind == "length_lie":
            claimed = max(0, body_len + fault.lie)
            send_len = min(body_len, claimed)
        h = {"Content-Length": str(claimed), "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
             **meta}
        if status == 206:
            h["Content-Range"] = f"bytes {start}-{end - 1}/{f.size}"
        self._headers(status, h)
        if self.command == "HEAD":
            return
        cut_at = fault.offset(body_len) if fault is not None and fault.kind in ("cut", "stall", "corrupt") else -1
        pos = 0
        for chunk in f.chunks(start, start + send_len):
            n = len(chunk)
            if fault is not None and fault.kind == "corrupt" and pos <= cut_at < pos + n:
                b = bytearray(chunk)
                b[cut_at - pos] ^= 0xFF
                chunk = bytes(b)
            if fault is not None and fault.kind in ("cut", "stall") and pos <= cut_at < pos + n:
                head = chunk[: cut_at - pos]
                self._sent += len(head)
                self.wfile.write(head)
                self.wfile.flush()
                if fault.kind == "cut":
                    self._drop()
                    raise _Cut()
                time.sleep(fault.delay)
                chunk = chunk[cut_at - pos :]
                pos = cut_at
                n = len(chunk)
            if fault is not None and fault.kind == "slow" and fault.delay:
                time.sleep(fault.delay)
            self._sent += n
            self.wfile.write(chunk)
            pos += n
            self.hub.touch()
        if fault is not None and fault.kind == "length_lie" and claimed > send_len:
            self.wfile.flush()
            self._drop()
            raise _Cut()

    def _drop(self) -> None:
        """Close the TCP connection now, mid-message (what a dying proxy does)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


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

