"""The fake hub's file bytes: ``/resolve/`` (302 to the CDN for LFS), ``/cdn/``, ``/tv/``.

Downloads are where a scan meets the network, so this is where the body faults live: a
file is sent in 64 KiB chunks through ``_send_file``, which honours ``Range`` (206/416) and
applies ``cut``, ``stall``, ``slow``, ``corrupt`` and ``length_lie`` at exact byte offsets,
so a test knows which byte the client saw last. Headers are the Hub's (``X-Repo-Commit``,
``ETag``, ``X-Linked-Etag``/``X-Linked-Size``) because ``huggingface_hub`` checks them.
"""

from __future__ import annotations

import re
import socket
import time
import urllib.parse
from collections.abc import Mapping

from .faults import Fault
from .handler import BaseHandler, Cut
from .repos import FakeFile

__all__ = ["FileRoutes"]


class FileRoutes(BaseHandler):
    """The file requests (``server.Handler`` routes them to ``_resolve``, ``_cdn`` and ``_tv``)."""

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
                    raise Cut()
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
            raise Cut()

    def _drop(self) -> None:
        """Close the TCP connection now, mid-message (what a dying proxy does)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


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
