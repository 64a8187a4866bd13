"""A client-side limiter for the Hub's per-class request quotas.

The Hub counts requests in fixed 5-minute windows, separately for two call classes:
``api`` (``/api/…``: listings, model info, paths-info) and ``resolve`` (``/{repo}/resolve/…``:
every file read, HEAD or GET, whole or ranged). Going over the quota earns 429s and a wait
until the window resets, so a long scan is faster if it never trips the limit at all.

Two sources of truth are combined:

* a **local sliding log** per class — at most ``quota`` requests in any ``window`` seconds.
  A sliding window is stricter than the server's fixed one, so obeying it can never exceed
  the server's count from this process;
* the **server's own counters**, read from every response's ``RateLimit`` /
  ``RateLimit-Policy`` headers (``"api";r=37;t=120`` = 37 left, reset in 120 s;
  ``"fixed window";"api";q=500;w=300``). They are global per user, so they also account for
  the other processes of a Ray scan that this process cannot see: when the server says
  ``r=0``, every process waits for the reset.

Presets (``TIERS``) are the published quotas; the server's policy header overrides them.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Quota", "TIERS", "CallClass", "RateLimiter", "default_tier", "parse_ratelimit"]

CallClass = str  # "api" | "resolve" | "other" ("other" is never limited)


@dataclass(frozen=True)
class Quota:
    """``requests`` allowed per ``window`` seconds for one call class."""

    requests: int
    window: float = 300.0


#: Published Hub quotas per 5-minute window (DESIGN.md "Sources").
TIERS: dict[str, dict[CallClass, Quota]] = {
    "anonymous": {"api": Quota(500), "resolve": Quota(3_000)},
    "free": {"api": Quota(1_000), "resolve": Quota(5_000)},
    "pro": {"api": Quota(2_500), "resolve": Quota(12_000)},
    # No client-side limit (tests, mirrors without quotas); server headers still apply.
    "unlimited": {},
}


def default_tier(token: str | None = None) -> str:
    """``HUBSCAN_HF_TIER`` if set, else ``free`` with a token and ``anonymous`` without."""
    tier = os.environ.get("HUBSCAN_HF_TIER")
    if tier:
        if tier not in TIERS:
            raise ValueError(f"HUBSCAN_HF_TIER must be one of {sorted(TIERS)}, not {tier!r}")
        return tier
    token = token if token is not None else (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))
    return "free" if token else "anonymous"


@dataclass(frozen=True)
class ServerLimit:
    """What one response's ``RateLimit`` headers said."""

    call_class: CallClass
    remaining: int
    reset_in: float
    quota: int | None = None
    window: float | None = None


def parse_ratelimit(headers: Mapping[str, str]) -> ServerLimit | None:
    """Parse the IETF-draft ``RateLimit``/``RateLimit-Policy`` headers the Hub sends.

    Delegates to ``huggingface_hub.utils.parse_ratelimit_headers`` so the two never disagree
    on the format.
    """
    from huggingface_hub.utils._http import parse_ratelimit_headers

    info = parse_ratelimit_headers(headers)
    if info is None:
        return None
    return ServerLimit(
        call_class=info.resource_type,
        remaining=info.remaining,
        reset_in=float(info.reset_in_seconds),
        quota=info.limit,
        window=float(info.window_seconds) if info.window_seconds else None,
    )


class _ClassState:
    def __init__(self, quota: Quota | None) -> None:
        self.quota = quota
        self.sent: deque[float] = deque()  # monotonic times of requests in the last window
        self.server_remaining: int | None = None
        self.server_reset_at: float = 0.0


class RateLimiter:
    """Blocks callers just long enough to stay inside each class's quota.

    Thread-safe; one per process (``hubscan.net.http`` owns it). ``clock`` and ``sleep``
    are injectable so the logic is testable without waiting.

    Example:
        >>> lim = RateLimiter.for_tier("anonymous")
        >>> lim.acquire("api")      # returns at once for the first 500 calls in 5 minutes
    """

    def __init__(
        self,
        quotas: Mapping[CallClass, Quota],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._states: dict[CallClass, _ClassState] = {c: _ClassState(q) for c, q in quotas.items()}
        self.waited: float = 0.0  # total seconds callers were held back (for reports)

    @classmethod
    def for_tier(cls, tier: str, **kw) -> RateLimiter:
        return cls(TIERS[tier], **kw)

    def _state(self, call_class: CallClass) -> _ClassState:
        st = self._states.get(call_class)
        if st is None:
            st = self._states[call_class] = _ClassState(None)
        return st

    def _wait_needed(self, st: _ClassState, now: float) -> float:
        """Seconds until one more request of this class is allowed (0 = now)."""
        wait = 0.0
        q = st.quota
        if q is not None:
            while st.sent and st.sent[0] <= now - q.window:
                st.sent.popleft()
            if len(st.sent) >= q.requests:
                wait = max(wait, st.sent[0] + q.window - now)
        if st.server_remaining is not None and st.server_remaining <= 0:
            if now < st.server_reset_at:
                wait = max(wait, st.server_reset_at - now)
            else:  # the server's window has rolled over
                st.server_remaining = None
        return wait

    def acquire(self, call_class: CallClass) -> float:
        """Wait until a request of ``call_class`` may be sent, then count it. Returns the wait."""
        if call_class == "other":
            return 0.0
        total = 0.0
        while True:
            with self._lock:
                st = self._state(call_class)
                now = self._clock()
                wait = self._wait_needed(st, now)
                if wait <= 0:
                    st.sent.append(now)
                    if st.server_remaining is not None:
                        st.server_remaining -= 1
                    self.waited += total
                    return total
            self._sleep(wait)
            total += wait

    def observe(self, call_class: CallClass, headers: Mapping[str, str]) -> ServerLimit | None:
        """Update the server-side view from a response's headers (no-op when absent)."""
        info = parse_ratelimit(headers)
        if info is None:
            return None
        with self._lock:
            st = self._state(info.call_class or call_class)
            now = self._clock()
            st.server_remaining = info.remaining
            st.server_reset_at = now + info.reset_in
            if info.quota and info.window:
                # The server knows the account's tier better than our preset does.
                if st.quota is None or (st.quota.requests, st.quota.window) != (info.quota, info.window):
                    st.quota = Quota(info.quota, info.window)
        return info

    def snapshot(self) -> dict[CallClass, dict[str, float | int | None]]:
        """Current state per class (for ``hubscan list`` and debugging)."""
        with self._lock:
            now = self._clock()
            out = {}
            for c, st in self._states.items():
                self._wait_needed(st, now)
                out[c] = {
                    "quota": st.quota.requests if st.quota else None,
                    "window": st.quota.window if st.quota else None,
                    "sent_in_window": len(st.sent),
                    "server_remaining": st.server_remaining,
                }
            return out
