"""The explorer's pictures: the same bytes ``hubscan.plots`` draws for the layer, a bounded
LRU cache that renders each key once, and a placeholder (not a broken image) where the lake
has no spectrum."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET

import pytest

from hubscan.errors import PageNotFound
from hubscan.lake import Lake
from hubscan.lake.synthetic import synthetic_result
from hubscan.serve import figures
from hubscan.serve.catalog import build_snapshot


@pytest.fixture(scope="module")
def snap(serve_lake, tmp_path_factory):
    s = build_snapshot(serve_lake.lake, str(tmp_path_factory.mktemp("fig-snap")))
    yield s
    s.retire()


def test_cache_is_bounded_in_entries_and_bytes_and_drops_the_least_recent():
    c = figures.FigureCache(max_entries=3, max_bytes=100)
    for k in "abc":
        c.put((k,), b"x" * 10)
    assert c.get(("a",)) is not None  # a is now the most recent
    c.put(("d",), b"x" * 10)
    assert c.get(("b",)) is None and len(c) == 3
    c.put(("e",), b"x" * 90)
    assert c.nbytes <= 100 and c.get(("e",)) is not None
    c.put(("huge",), b"x" * 101)
    assert c.get(("huge",)) is None


def test_a_picture_is_checked_once_per_snapshot_and_redrawn_after_a_refit():
    c = figures.FigureCache()
    c.put(("k",), b"<svg>1</svg>", stamp="written-1", generation=1)
    assert c.peek(("k",), 1) == b"<svg>1</svg>"  # same snapshot: no question asked
    assert c.peek(("k",), 2) is None  # a new snapshot: the stamp must be compared once
    assert c.get(("k",), stamp="written-1", generation=2) == b"<svg>1</svg>"
    assert c.peek(("k",), 2) == b"<svg>1</svg>"
    data, cached = c.get_or_render(("k",), lambda: b"<svg>2</svg>", stamp="written-2", generation=3)
    assert (data, cached) == (b"<svg>2</svg>", False)  # the row was rewritten (a refit)
    assert len(c) == 1 and c.nbytes == len(b"<svg>2</svg>")


def test_get_or_render_renders_a_key_once_under_concurrency():
    c = figures.FigureCache()
    calls = []

    def render():
        calls.append(1)
        time.sleep(0.2)
        return b"<svg/>"

    out = []
    threads = [threading.Thread(target=lambda: out.append(c.get_or_render(("k",), render)))
               for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(cached for _, cached in out) == [False, True, True, True, True]


@pytest.mark.parametrize("kind", figures.LAYER_KINDS)
def test_layer_pictures_are_the_plots_modules_own(serve_lake, snap, kind):
    from hubscan.plots._style import figure_bytes, style
    from hubscan.plots.esd import esd_figure
    from hubscan.plots.fit import fit_figure
    from hubscan.plots.ks import ks_figure
    from hubscan.plots.source import layer_spectrum

    row = serve_lake.lake.query("""SELECT model_key, file_sha256, tensor, analysis_version FROM layers
                                   WHERE repo_id = 'demo/mlp-16' AND status = 'ok'
                                   ORDER BY num_evals DESC LIMIT 1""").to_pylist()[0]
    cache = figures.FigureCache()
    with snap.cursor() as cur:
        svg, cached = figures.layer_svg(cur, cache, kind, row["file_sha256"], row["tensor"],
                                        row["analysis_version"])
        again, cached_again = figures.layer_svg(cur, cache, kind, row["file_sha256"], row["tensor"],
                                                row["analysis_version"])
    assert not cached and cached_again and again == svg
    ls = layer_spectrum(serve_lake.lake, row["model_key"], row["tensor"])
    fig = {"esd": esd_figure, "fit": fit_figure, "ks": ks_figure}[kind](ls)
    with style():
        expected = figure_bytes(fig, fmt="svg")
    assert svg == expected
    ET.fromstring(svg)  # well-formed XML


def test_unknown_layers_are_404_and_undrawable_ones_a_placeholder(tmp_path):
    lake = Lake(str(tmp_path / "lake"), fsync=False)
    r = synthetic_result(repo_id="x/no-spectra", spectra=False, n_layers=8)
    lake.write(r)
    s = build_snapshot(lake, str(tmp_path / "snap"))
    try:
        ok = next(l for l in r.layers if l["status"] == "ok")
        skipped = next(l for l in r.layers if l["status"] == "skipped")
        cache = figures.FigureCache()
        with s.cursor() as cur:
            svg, _ = figures.layer_svg(cur, cache, "esd", ok["file_sha256"], ok["tensor"], ok["analysis_version"])
            assert b"no spectrum stored" in svg
            ET.fromstring(svg)
            svg, _ = figures.layer_svg(cur, cache, "fit", skipped["file_sha256"], skipped["tensor"],
                                       skipped["analysis_version"])
            assert b"was skipped" in svg
            for args in (("esd", "0" * 64, ok["tensor"], ok["analysis_version"]),
                         ("esd", ok["file_sha256"], "../../etc/passwd", ok["analysis_version"]),
                         ("esd", ok["file_sha256"], ok["tensor"], "other-version"),
                         ("svg", ok["file_sha256"], ok["tensor"], ok["analysis_version"])):
                with pytest.raises(PageNotFound):
                    figures.layer_svg(cur, cache, *args)
    finally:
        s.retire()


def test_model_and_lake_pictures(serve_lake, snap):
    cache = figures.FigureCache()
    with snap.cursor() as cur:
        svg, _ = figures.profile_svg(cur, cache, serve_lake.new_key)
        assert b"demo/mlp-13: layer" in svg
        empty, _ = figures.profile_svg(cur, cache, serve_lake.empty_key)
        assert b"no picture" in empty
        with pytest.raises(PageNotFound):
            figures.profile_svg(cur, cache, "local/none@x#y")
        archs, cached = figures.archs_svg(cur, cache, snap.signature)
        assert b"DemoMLP" in archs and b"BertModel" in archs and not cached
        assert figures.archs_svg(cur, cache, snap.signature)[1]
