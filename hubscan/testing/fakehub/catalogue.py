"""The fake hub's catalogue API: ``/api/models`` listings, model info, trees and paths-info.

This is what ``HfApi.list_models``, ``model_info``, ``list_repo_tree`` and ``get_paths_info``
call, answered as the Hub answers them — the same filters, sort keys, ``expand`` fields,
cursor pagination behind ``Link: <…>; rel="next"`` and error codes — because hubscan's
enumeration is tested through the real client against it. The payload builders are plain
functions of the repo model; ``CatalogueRoutes`` is the ``/api`` part of the request handler.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from .handler import BaseHandler
from .repos import FakeFile, FakeRepo

__all__ = ["CatalogueRoutes", "filter_models", "model_json", "tree_entries"]

_NUM_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


# ------------------------------------------------------------------------------ payloads


def filter_models(repos: list[FakeRepo], q: Mapping[str, list[str]]) -> list[FakeRepo]:
    """``repos`` (those the caller may see) filtered and sorted by a ``list_models`` query."""

    def one(k: str) -> str | None:
        v = q.get(k) or q.get(k + "[]")
        return v[0] if v else None

    def many(k: str) -> list[str]:
        return list(q.get(k, [])) + list(q.get(k + "[]", []))

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


def model_json(repo: FakeRepo, *, expand: Sequence[str] | None, full: bool = False,
               config: bool = False, blobs: bool = False, listing: bool = False,
               rev: str | None = None, card: bool = False) -> dict[str, Any]:
    """A repo as ``/api/models`` (``listing``) or ``/api/models/{repo}`` shows it, fields as ``expand`` asks."""
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
        "gguf": lambda: repo.gguf_info(files),
        "config": lambda: repo.config(files),
        "usedStorage": lambda: sum(f.size for f in files.values()),
        "cardData": lambda: repo.card_data(files) or {"tags": repo.tags},
        "baseModels": lambda: repo.base_models(files),
        "model-index": lambda: (repo.card_data(files) or {}).get("model-index"),
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
        if card:
            wanted += ["cardData"]
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


def tree_entries(files: Mapping[str, FakeFile], path: str, recursive: bool) -> list[dict]:
    """The ``list_repo_tree`` entries under ``path``: directories first, then files."""
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


# ------------------------------------------------------------------------------ /api requests


class CatalogueRoutes(BaseHandler):
    """The ``/api/...`` requests (``server.Handler`` routes them to ``_api``)."""

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

    def _find_repo(self, segs: list[str]) -> tuple[FakeRepo | None, str, list[str]]:
        with self.hub._lock:
            if len(segs) >= 2 and "/".join(segs[:2]) in self.hub.repos:
                rid = "/".join(segs[:2])
                return self.hub.repos[rid], rid, segs[2:]
            if segs and segs[0] in self.hub.repos:
                return self.hub.repos[segs[0]], segs[0], segs[1:]
        rid = "/".join(segs[:2])
        return None, rid, segs[2:]

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
        card = (self._q.get("cardData") or [""])[0].lower() == "true"
        body = [self.hub.model_json(r, expand=self._expand(), full=full, config=cfg, listing=True, card=card)
                for r in chunk]
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
