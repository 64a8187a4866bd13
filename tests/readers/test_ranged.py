"""``RangedFile``: a remote safetensors file's tensors on demand, in the fewest requests."""

from __future__ import annotations

import numpy as np
import pytest

from hubscan.readers.stream import HEADER_PREFETCH, RangedFile, RemoteFile
from hubscan.testing.fakehub.repos import safetensors_bytes


@pytest.fixture
def remote(fakehub):
    rng = np.random.default_rng(0)
    tensors = {
        "a.weight": rng.standard_normal((64, 32)).astype(np.float32),       # 8 KiB: in the header bytes
        "big.weight": rng.standard_normal((200_000, 4)).astype(np.float32),  # 3.2 MB nobody wants
        "c.weight": rng.standard_normal((256, 128)).astype(np.float32),
        "c.bias": rng.standard_normal(256).astype(np.float32),
        "d.weight": rng.standard_normal((256, 128)).astype(np.float32),
    }
    data = safetensors_bytes(tensors, {"format": "pt"})
    fakehub.add_repo("acme/r", {"model.safetensors": data})
    sha = fakehub.repos["acme/r"].sha
    rf = RemoteFile(url=f"{fakehub.url}/acme/r/resolve/{sha}/model.safetensors", path="model.safetensors",
                    size=len(data), revision=sha)
    return fakehub, rf, tensors, len(data)


def _wanted(name, shape, dtype):
    return name.endswith(".weight") and name != "big.weight"


def _order(rf) -> list[str]:
    r = RangedFile(rf)
    names = sorted(r.names().items(), key=lambda kv: kv[1].begin)
    r.close()
    return [n for n, _ in names]


def test_in_order_reads_cost_one_request_per_run(remote):
    hub, rf, tensors, size = remote
    order = [n for n in _order(rf) if _wanted(n, None, None)]
    hub.reset_log()
    r = RangedFile(rf, wanted=_wanted)
    for name in order:
        got = r.read(name).load()
        assert np.array_equal(got.numpy(), tensors[name]), name
    r.close()
    data = hub.select("cdn", repo="acme/r")
    assert all(rec.range for rec in data)  # never the whole file
    # the header request, plus one per run of wanted tensors outside the header's bytes
    assert len(data) == 2
    assert hub.count("resolve", repo="acme/r") == 1  # later requests go straight to the CDN URL
    sent = hub.bytes_sent("cdn", repo="acme/r")
    assert sent < size - tensors["big.weight"].nbytes + HEADER_PREFETCH


def test_backwards_read_reopens_and_header_bytes_are_free(remote):
    hub, rf, tensors, _ = remote
    # safetensors orders by name: a.weight (in the first 256 KiB), big, c.bias, c.weight, d.weight
    assert _order(rf) == ["a.weight", "big.weight", "c.bias", "c.weight", "d.weight"]
    r = RangedFile(rf, wanted=_wanted)
    assert np.array_equal(r.read("a.weight").load().numpy(), tensors["a.weight"])
    hub.reset_log()
    assert np.array_equal(r.read("a.weight").load().numpy(), tensors["a.weight"])
    assert hub.count("cdn", repo="acme/r") == 0  # came with the header request
    assert np.array_equal(r.read("d.weight").load().numpy(), tensors["d.weight"])
    assert hub.count("cdn", repo="acme/r") == 1
    assert np.array_equal(r.read("c.weight").load().numpy(), tensors["c.weight"])  # behind: reopen
    assert hub.count("cdn", repo="acme/r") == 2
    assert np.array_equal(r.read("d.weight").load().numpy(), tensors["d.weight"])  # continues
    assert hub.count("cdn", repo="acme/r") == 2
    assert np.array_equal(r.read("c.bias").load().numpy(), tensors["c.bias"])  # not wanted: alone
    assert hub.count("cdn", repo="acme/r") == 3
    with pytest.raises(KeyError):
        r.read("nope")
    r.close()
