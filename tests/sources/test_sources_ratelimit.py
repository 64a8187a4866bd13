"""Rate limits and retries: the limiter's arithmetic on a fake clock, and end to end against a
hub that enforces a quota — hubscan waits instead of collecting 429s."""

from __future__ import annotations

import email.utils
import time

import httpx2
import pytest

from hubscan.errors import RateLimited, SpecError, TransientFetchError
from hubscan.net import http
from hubscan.net.ratelimit import TIERS, Quota, RateLimiter, default_tier
from hubscan.sources import FetchStats, list_models
from hubscan.testing.fakehub import FakeHub, populate_catalog


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def test_sliding_window_quota():
    clk = FakeClock()
    lim = RateLimiter({"api": Quota(3, 10.0)}, clock=clk, sleep=clk.sleep)
    assert [lim.acquire("api") for _ in range(3)] == [0, 0, 0]
    clk.t += 4
    assert lim.acquire("api") == pytest.approx(6.0)  # until the first call leaves the window
    assert lim.acquire("resolve") == 0 and lim.acquire("other") == 0  # other classes unaffected
    assert lim.waited == pytest.approx(6.0)


def test_server_headers_override_the_preset():
    clk = FakeClock()
    lim = RateLimiter(TIERS["pro"], clock=clk, sleep=clk.sleep)
    lim.observe("api", {"RateLimit": '"api";r=0;t=42', "RateLimit-Policy": '"fixed window";"api";q=500;w=300'})
    assert lim.acquire("api") == pytest.approx(42)
    assert lim.snapshot()["api"]["quota"] == 500  # the account is not pro after all
    lim.observe("resolve", {"RateLimit": '"resolve";r=2;t=100'})
    assert [lim.acquire("resolve") for _ in range(3)] == [0, 0, pytest.approx(100)]


def test_tier_presets(monkeypatch):
    assert TIERS["anonymous"]["api"] == Quota(500, 300) and TIERS["anonymous"]["resolve"] == Quota(3000, 300)
    assert TIERS["free"]["api"].requests == 1000 and TIERS["pro"]["resolve"].requests == 12000
    monkeypatch.delenv("HUBSCAN_HF_TIER", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert default_tier() == "anonymous" and default_tier("hf_x") == "free"
    monkeypatch.setenv("HUBSCAN_HF_TIER", "pro")
    assert default_tier() == "pro"
    monkeypatch.setenv("HUBSCAN_HF_TIER", "gold")
    with pytest.raises(ValueError):
        default_tier()


def test_backoff_and_retry_after():
    p = http.RetryPolicy(base_delay=1.0, max_delay=8.0)
    for k, base in [(0, 1), (1, 2), (2, 4), (5, 8)]:
        waits = [p.backoff(k) for _ in range(200)]
        assert min(waits) >= 0.5 * base and max(waits) < 1.5 * base and len(set(waits)) > 100  # jittered
    assert p.backoff(0, retry_after=30) >= 30
    assert http.retry_after_seconds({"retry-after": "120"}) == 120
    date = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 < http.retry_after_seconds({"retry-after": date}) <= 61
    assert http.retry_after_seconds({"ratelimit": '"api";r=0;t=17'}) == 17
    assert http.retry_after_seconds({"ratelimit": '"api";r=5;t=17'}) is None


def test_too_long_a_wait_is_rate_limited_at_once(fakehub):
    fakehub.add_repo("a/b", {"x.txt": b"x"})
    fakehub.inject("status", endpoint="api", status=429, retry_after=3600, times=None)
    stats = FetchStats()
    with pytest.raises(RateLimited) as info:
        list(list_models("hf", stats=stats))
    assert info.value.retry_after == 3600 and stats.api_calls == 1  # no hour-long sleep, no hammering


def test_client_waits_for_the_server_window(tmp_path):
    with FakeHub(page_size=2, rate_limits={"api": (3, 1)}) as hub, hub.environ(tmp_path):
        populate_catalog(hub, 10)
        stats = FetchStats()
        refs = list(list_models("hf", stats=stats))
        assert len(refs) == 10 and stats.api_calls == 5
        statuses = [r.status for r in hub.select("api")]
        assert statuses == [200] * 5  # never a 429: the limiter read the RateLimit headers
        assert http.limiter().waited > 0


def test_transport_counts_and_raises_our_errors(fakehub):
    fakehub.add_repo("a/b", {"x.txt": b"x"})
    fakehub.inject("status", endpoint="api", status=502, times=2)
    stats = FetchStats()
    with http.tracking(stats):
        r = http.session().get(f"{fakehub.url}/api/models/a/b")
    assert r.status_code == 200 and stats.api_calls == 3 and stats.retries == 2
    assert http.call_class(f"{fakehub.url}/a/b/resolve/main/x") == "resolve"
    assert http.call_class(httpx2.URL(f"{fakehub.url}/cdn/abc")) == "other"


def test_retry_policy_from_environment():
    """Every RetryPolicy knob has a HUBSCAN_HTTP_* variable (the Ray executor forwards them to
    its workers); a bad value is a SpecError that names the variable."""
    p = http.RetryPolicy.from_env({
        "HUBSCAN_HTTP_RETRIES": "2", "HUBSCAN_HTTP_BACKOFF": "0.25", "HUBSCAN_HTTP_MAX_BACKOFF": "4",
        "HUBSCAN_HTTP_TIMEOUT": "7.5", "HUBSCAN_HTTP_CONNECT_TIMEOUT": "3",
        "HUBSCAN_HTTP_MAX_RETRY_AFTER": "60"})
    assert (p.max_retries, p.base_delay, p.max_delay, p.read_timeout, p.connect_timeout,
            p.max_retry_after) == (2, 0.25, 4.0, 7.5, 3.0, 60.0)
    assert http.RetryPolicy.from_env({}) == http.RetryPolicy()
    assert http.RetryPolicy.from_env({"HUBSCAN_HTTP_RETRIES": " "}) == http.RetryPolicy()
    for var, bad in [("HUBSCAN_HTTP_RETRIES", "two"), ("HUBSCAN_HTTP_RETRIES", "1.5"),
                     ("HUBSCAN_HTTP_TIMEOUT", "0"), ("HUBSCAN_HTTP_BACKOFF", "-1"),
                     ("HUBSCAN_HTTP_MAX_RETRY_AFTER", "nan")]:
        with pytest.raises(SpecError, match=var):
            http.RetryPolicy.from_env({var: bad})


def test_retry_budget_from_environment_end_to_end(tmp_path, monkeypatch):
    """HUBSCAN_HTTP_RETRIES=1: one retry, then the transport gives up with our error."""
    monkeypatch.setenv("HUBSCAN_HTTP_RETRIES", "1")
    monkeypatch.setenv("HUBSCAN_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("HUBSCAN_HTTP_MAX_BACKOFF", "0.02")
    with FakeHub() as hub, hub.environ(tmp_path, fast_retries=False):
        hub.add_repo("a/b", {"x.txt": b"x"})
        hub.inject("status", endpoint="api", status=502, times=3)
        stats = FetchStats()
        with http.tracking(stats), pytest.raises(TransientFetchError):
            http.session().get(f"{hub.url}/api/models/a/b")
        assert stats.retries == 1 and [r.status for r in hub.select("api")] == [502, 502]
