"""One HTTP client for every hub request hubscan makes: retried, rate-limited, counted.

``huggingface_hub`` 2.x sends everything through one shared ``httpx2.Client`` built by a
replaceable factory (``huggingface_hub.utils.set_client_factory``). Its own retries are
uneven (``model_info`` and ``get_paths_info`` never retry; listings retry with fixed waits),
so hubscan installs a client whose *transport* owns the policy for every call, the
library's and our streaming reader's alike:

* exponential backoff with jitter on 408/429/5xx and on connection errors, honouring
  ``Retry-After`` and the ``RateLimit`` reset;
* a client-side ``RateLimiter`` per call class (``api`` / ``resolve``), fed by the server's
  ``RateLimit`` headers;
* when the retries run out the transport raises ``hubscan.errors.RateLimited`` /
  ``TransientFetchError`` itself — so ``huggingface_hub``'s own backoff loop never sees a
  retryable status and cannot multiply the waits;
* timeouts on every request (the library passes ``timeout=None`` = wait forever);
* per-unit-of-work accounting: requests are counted into the ``FetchStats`` made current
  with ``tracking(stats)``.

Environment (read at call time, not import time): ``HF_ENDPOINT``, ``HF_TOKEN``,
``HF_HUB_OFFLINE``, ``HUBSCAN_HF_TIER`` (``anonymous|free|pro|unlimited``), and the
``RetryPolicy`` knobs ``HUBSCAN_HTTP_TIMEOUT`` (read timeout, s), ``HUBSCAN_HTTP_CONNECT_TIMEOUT``
(s), ``HUBSCAN_HTTP_RETRIES``, ``HUBSCAN_HTTP_BACKOFF`` (base delay, s),
``HUBSCAN_HTTP_MAX_BACKOFF`` (s) and ``HUBSCAN_HTTP_MAX_RETRY_AFTER`` (s). The Ray executor
forwards every ``HUBSCAN_*`` variable to its workers, so one setting on the driver governs the
whole cluster's fetches.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field

import httpx2

from ..errors import (
    GatedRepo,
    NotFound,
    RateLimited,
    SourceError,
    SpecError,
    TransientFetchError,
)
from .ratelimit import RateLimiter, default_tier, parse_ratelimit
from .stats import FetchStats

__all__ = [
    "RetryPolicy",
    "current_policy",
    "call_class",
    "tracking",
    "current_stats",
    "RetryingTransport",
    "make_client",
    "install",
    "uninstall",
    "session",
    "limiter",
    "hub_endpoint",
    "hub_token",
    "is_offline",
    "hub_headers",
    "raise_for_hub_status",
    "map_hf_error",
    "retry_after_seconds",
]

_STATS: ContextVar[FetchStats | None] = ContextVar("hubscan_fetch_stats", default=None)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard to try before a fetch becomes a failure row.

    Attributes:
        max_retries: attempts after the first (429/5xx/connection errors each count).
        base_delay / max_delay: exponential backoff ``base·2^k`` capped, with ±50 % jitter
            so that many workers hit by the same outage do not come back in lockstep.
        max_retry_after: longest server-requested wait (``Retry-After``, rate-limit reset)
            that is honoured by sleeping; longer ones raise ``RateLimited`` at once so the
            engine can park the model instead of holding a worker.
        connect_timeout / read_timeout: seconds; a stalled body is a cut after ``read_timeout``.
    """

    max_retries: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 330.0
    retry_statuses: frozenset[int] = field(default=frozenset({408, 429, 500, 502, 503, 504}))
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        base = min(self.max_delay, self.base_delay * (2.0**attempt))
        delay = base * (0.5 + random.random())  # jitter in [0.5, 1.5)·base
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetryPolicy:
        """The default policy with the ``HUBSCAN_HTTP_*`` overrides (module docstring).

        Raises:
            SpecError: a variable that is not a number in its range (named in the message).
        """
        env = os.environ if environ is None else environ
        kwargs: dict[str, float | int] = {}
        for var, (name, kind, lowest) in _POLICY_ENV.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                value = kind(raw)
            except ValueError:
                raise SpecError(f"{var}={raw!r}: not {'an integer' if kind is int else 'a number'}") from None
            if not value >= lowest:
                raise SpecError(f"{var}={raw!r}: must be >= {lowest}")
            kwargs[name] = value
        return cls(**kwargs)


# HUBSCAN_HTTP_* variable → (RetryPolicy field, type, smallest allowed value)
_POLICY_ENV: dict[str, tuple[str, type, float]] = {
    "HUBSCAN_HTTP_TIMEOUT": ("read_timeout", float, 0.001),
    "HUBSCAN_HTTP_CONNECT_TIMEOUT": ("connect_timeout", float, 0.001),
    "HUBSCAN_HTTP_RETRIES": ("max_retries", int, 0),
    "HUBSCAN_HTTP_BACKOFF": ("base_delay", float, 0.0),
    "HUBSCAN_HTTP_MAX_BACKOFF": ("max_delay", float, 0.0),
    "HUBSCAN_HTTP_MAX_RETRY_AFTER": ("max_retry_after", float, 0.0),
}


def call_class(url: str | httpx2.URL) -> str:
    """The Hub's rate-limit class of a URL: ``api``, ``resolve`` or ``other``."""
    path = url.path if isinstance(url, httpx2.URL) else httpx2.URL(str(url)).path
    if path.startswith("/api/"):
        return "api"
    if "/resolve/" in path:
        return "resolve"
    return "other"


@contextlib.contextmanager
def tracking(stats: FetchStats | None) -> Iterator[FetchStats | None]:
    """Count the requests sent inside this block (same thread) into ``stats``.

    Do not ``yield`` from a generator inside this block: a context variable set in a
    generator leaks into its consumer. Wrap each step instead.
    """
    token = _STATS.set(stats)
    try:
        yield stats
    finally:
        _STATS.reset(token)


def current_stats() -> FetchStats | None:
    return _STATS.get()


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Server-requested wait: ``Retry-After`` (seconds or HTTP date), else a 0-remaining
    ``RateLimit`` header's reset time."""
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value) if value else None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    info = parse_ratelimit(headers)
    if info is not None and info.remaining <= 0:
        return info.reset_in
    return None


class RetryingTransport(httpx2.BaseTransport):
    """An ``httpx2`` transport that retries, rate-limits and counts (see module doc)."""

    def __init__(
        self,
        inner: httpx2.BaseTransport | None = None,
        *,
        policy: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._inner = inner or httpx2.HTTPTransport()
        self.policy = policy or RetryPolicy()
        self.limiter = limiter
        self._sleep = sleep

    def _apply_timeouts(self, request: httpx2.Request) -> None:
        t = dict(request.extensions.get("timeout") or {})
        p = self.policy
        defaults = {"connect": p.connect_timeout, "read": p.read_timeout, "write": p.read_timeout, "pool": p.read_timeout}
        request.extensions["timeout"] = {k: (t.get(k) if t.get(k) is not None else v) for k, v in defaults.items()}

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self._apply_timeouts(request)
        cls = call_class(request.url)
        stats = _STATS.get()
        p = self.policy
        attempt = 0
        while True:
            if self.limiter is not None:
                self.limiter.acquire(cls)
            if stats is not None:
                stats.count_call(cls)
            what = f"{request.method} {request.url}"
            try:
                response = self._inner.handle_request(request)
            except httpx2.TransportError as exc:
                if attempt >= p.max_retries:
                    raise TransientFetchError(f"{what}: {type(exc).__name__}: {exc} (after {attempt} retries)") from exc
                wait = p.backoff(attempt)
            else:
                if self.limiter is not None:
                    self.limiter.observe(cls, response.headers)
                if response.status_code not in p.retry_statuses:
                    return response
                retry_after = retry_after_seconds(response.headers)
                response.close()
                status = response.status_code
                too_long = retry_after is not None and retry_after > p.max_retry_after
                if attempt >= p.max_retries or too_long:
                    msg = f"{what}: HTTP {status} (after {attempt} retries)"
                    if status == 429:
                        raise RateLimited(msg, retry_after=retry_after)
                    raise TransientFetchError(msg)
                wait = p.backoff(attempt, retry_after)
            attempt += 1
            if stats is not None:
                stats.bump("retries")
            self._sleep(wait)

    def close(self) -> None:
        self._inner.close()


# ---------------------------------------------------------------- the process-wide client

_LOCK = threading.Lock()
_LIMITER: RateLimiter | None = None
_INSTALLED: tuple | None = None
_POLICY: RetryPolicy | None = None


def current_policy() -> RetryPolicy:
    """The retry policy of the installed client (what stream resumption follows too)."""
    return _POLICY or RetryPolicy.from_env()


def limiter() -> RateLimiter:
    """The process's rate limiter (created from ``default_tier()`` on first use)."""
    global _LIMITER
    with _LOCK:
        if _LIMITER is None:
            _LIMITER = RateLimiter.for_tier(default_tier())
        return _LIMITER


def make_client(*, policy: RetryPolicy | None = None, limiter_: RateLimiter | None = None) -> httpx2.Client:
    """An ``httpx2.Client`` like ``huggingface_hub``'s default one, with our transport."""
    from huggingface_hub.utils._http import hf_request_event_hook

    policy = policy or RetryPolicy.from_env()
    return httpx2.Client(
        transport=RetryingTransport(httpx2.HTTPTransport(), policy=policy, limiter=limiter_),
        event_hooks={"request": [hf_request_event_hook]},
        follow_redirects=True,
        timeout=httpx2.Timeout(policy.read_timeout, connect=policy.connect_timeout),
    )


def install(*, policy: RetryPolicy | None = None, tier: str | None = None, force: bool = False) -> None:
    """Make ``huggingface_hub`` (and hubscan) use the retrying, rate-limited client.

    Idempotent: calling again with the same settings keeps the live client (and its
    connection pool). ``tier`` replaces the limiter (``anonymous|free|pro|unlimited``).
    """
    global _INSTALLED, _LIMITER, _POLICY
    from huggingface_hub.utils import set_client_factory

    policy = policy or RetryPolicy.from_env()
    key = (policy, tier, os.environ.get("HUBSCAN_HF_TIER"))
    with _LOCK:
        if _INSTALLED == key and not force:
            return
        if tier is not None:
            _LIMITER = RateLimiter.for_tier(tier)
    lim = limiter()
    set_client_factory(lambda: make_client(policy=policy, limiter_=lim))
    with _LOCK:
        _INSTALLED = key
        _POLICY = policy


def uninstall() -> None:
    """Give ``huggingface_hub`` its default client back (tests restore the process state)."""
    global _INSTALLED, _POLICY, _LIMITER
    from huggingface_hub.utils import set_client_factory
    from huggingface_hub.utils._http import default_client_factory

    set_client_factory(default_client_factory)
    with _LOCK:
        _INSTALLED = None
        _POLICY = None
        _LIMITER = None


def session() -> httpx2.Client:
    """The shared client (installing hubscan's factory first if nobody did)."""
    from huggingface_hub.utils import get_session

    if _INSTALLED is None:
        install()
    return get_session()


# ---------------------------------------------------------------- environment, errors


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` at call time (``huggingface_hub`` reads it once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_token() -> str | None:
    """``HF_TOKEN`` (or the token saved by ``hf auth login``)."""
    from huggingface_hub import get_token

    return get_token()


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` at call time."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE")
    if env is not None:
        return env.strip().upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.HF_HUB_OFFLINE)


def hub_headers(token: str | bool | None = None) -> dict[str, str]:
    """The Hub's standard request headers (auth, user agent) for our own requests."""
    from huggingface_hub.utils import build_hf_headers

    return build_hf_headers(token=token, library_name="hubscan")


def raise_for_hub_status(response: httpx2.Response, *, what: str) -> None:
    """Map a non-2xx/3xx hub response to the hubscan error tree.

    401/403 with ``X-Error-Code: GatedRepo`` (or any 403) → ``GatedRepo``; 401/404 with
    ``RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound`` → ``NotFound`` (the Hub
    answers a private repo like a missing one); 429 → ``RateLimited``; 5xx → transient.
    """
    status = response.status_code
    if status < 400:
        return
    code = response.headers.get("x-error-code", "")
    msg = response.headers.get("x-error-message", "")
    detail = f"{what}: HTTP {status}" + (f" {code}" if code else "") + (f": {msg}" if msg else "")
    if code == "GatedRepo" or status == 403:
        raise GatedRepo(detail)
    if status in (401, 404, 410) or code.endswith("NotFound"):
        if status == 401 and not code:
            raise GatedRepo(detail)
        raise NotFound(detail)
    if status == 429:
        raise RateLimited(detail, retry_after=retry_after_seconds(response.headers))
    if status >= 500 or status == 408:
        raise TransientFetchError(detail)
    raise SourceError(detail)


def map_hf_error(exc: BaseException, *, what: str) -> BaseException:
    """The hubscan error for an exception raised inside ``huggingface_hub``.

    Our own errors (raised by the transport) pass through unchanged.
    """
    from huggingface_hub import errors as hfe

    if isinstance(exc, (SourceError,)):
        return exc
    text = f"{what}: {type(exc).__name__}: {exc}".splitlines()[0]
    if isinstance(exc, hfe.GatedRepoError):
        return GatedRepo(text)
    if isinstance(exc, (hfe.RepositoryNotFoundError, hfe.RevisionNotFoundError, hfe.EntryNotFoundError)):
        return NotFound(text)
    if isinstance(exc, hfe.OfflineModeIsEnabled):
        return NotFound(f"{what}: HF_HUB_OFFLINE is set and the data is not in the local cache")
    if isinstance(exc, hfe.HfHubHTTPError):
        resp = getattr(exc, "response", None)
        if resp is not None:
            try:
                raise_for_hub_status(resp, what=what)
            except SourceError as mapped:
                return mapped
        return SourceError(text)
    if isinstance(exc, httpx2.TransportError):
        return TransientFetchError(text)
    return exc
