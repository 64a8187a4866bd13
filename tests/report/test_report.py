"""The HTML report: its numbers against independent computations on the same layer rows, its
filter, and the file itself (self-contained, balanced tags, decodable images, no script).

Rendering in a real browser is tests/test_report_chromium.py; the report's speed on a lake of
100k layer rows is benchmarks/report_bench.py.
"""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest

from hubscan.report import ReportOptions, build_report, report_data
from tests.plot_lakes import shared_lake

VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "wbr", "area", "base"}


@pytest.fixture(scope="module")
def lake():
    return shared_lake()


@pytest.fixture(scope="module")
def rows(lake):
    return lake.query("SELECT * FROM layers_latest").to_pylist()


@pytest.fixture(scope="module")
def data(lake):
    con = lake.connect()
    try:
        yield report_data(con, ReportOptions(top_n=5))
    finally:
        con.close()


@pytest.fixture(scope="module")
def page(lake):
    return build_report(lake)


def _valid(r) -> bool:
    return r["status"] == "ok" and r["alpha"] is not None and not np.isnan(r["alpha"])


def _labels(r) -> set[str]:
    return set((r["warning"] or "").split(",")) - {""}


def test_overview_numbers(data, rows):
    o = data.overview
    alphas = np.array([r["alpha"] for r in rows if _valid(r)])
    assert o["models"] == 7 and o["archs"] == 4
    assert o["tensors"] == len(rows)
    assert o["analysed"] == sum(r["status"] in ("ok", "fit-failed") for r in rows)
    assert o["fitted"] == alphas.size
    assert o["skipped"] == sum(r["status"] == "skipped" for r in rows)
    assert o["share_2_4"] == pytest.approx(np.mean((alphas >= 2) & (alphas <= 4)))
    assert o["share_2_6"] == pytest.approx(np.mean((alphas >= 2) & (alphas <= 6)))
    assert o["alpha_median"] == pytest.approx(np.median(alphas))
    assert o["under_trained"] == sum("under-trained" in _labels(r) for r in rows) > 0
    assert o["rank_collapse"] == sum("rank-collapse" in _labels(r) for r in rows) == 1


def test_architecture_table(data, rows):
    by = {a["arch"]: a for a in data.archs}
    assert set(by) == {r["arch"] for r in rows}
    for arch, a in by.items():
        mine = [r for r in rows if r["arch"] == arch]
        alphas = np.array([r["alpha"] for r in mine if _valid(r)])
        assert a["models"] == len({r["model_key"] for r in mine})
        assert a["fits"] == alphas.size
        assert a["alpha_mean"] == pytest.approx(alphas.mean())
        assert a["share_2_4"] == pytest.approx(np.mean((alphas >= 2) & (alphas <= 4)))
        assert a["share_2_6"] == pytest.approx(np.mean((alphas >= 2) & (alphas <= 6)))
        assert a["under_trained"] == sum("under-trained" in _labels(r) for r in mine)
    # the figure's groups carry the same exact shares
    g = data.alpha_groups
    for name, s24 in zip(g.names, g.share_2_4):
        assert s24 == pytest.approx(by[name]["share_2_4"])


def test_warnings_and_worst_tables(data, rows):
    counts: dict[str, int] = {}
    for r in rows:
        for w in _labels(r):
            counts[w] = counts.get(w, 0) + 1
    assert {w["warning"]: w["layers"] for w in data.warnings} == counts
    # most under-trained: the 5 largest alphas among under-trained layers, in order
    under = sorted((r["alpha"] for r in rows if _valid(r) and "under-trained" in _labels(r)),
                   reverse=True)[:5]
    assert [r["alpha"] for r in data.under_layers] == pytest.approx(under)
    assert all(r["alpha"] > 6 for r in data.under_layers)
    assert data.over_layers == [] or all(r["alpha"] < 2 for r in data.over_layers)
    assert [r["tensor"] for r in data.collapsed_layers] == ["collapsed.weight"]
    assert data.collapsed_layers[0]["zero_share"] > 0.5
    # worst models: ordered by the share of warned layers
    shares = [m["warned_share"] for m in data.worst_models]
    assert shares == sorted(shares, reverse=True) and shares[0] > 0
    worst = data.worst_models[0]
    mine = [r for r in rows if r["repo_id"] == worst["repo_id"] and r["status"] in ("ok", "fit-failed")]
    warned = [r for r in mine if _labels(r) & {"under-trained", "over-trained", "rank-collapse"}]
    assert worst["warned_share"] == pytest.approx(len(warned) / len(mine))
    # poorest fits: largest D first
    ds = [r["D"] for r in data.poor_fits]
    assert ds == sorted(ds, reverse=True)
    assert ds[0] == pytest.approx(max(r["D"] for r in rows if _valid(r)))
    # layers picked for pictures all have a stored spectrum and the reason they were picked
    assert {p["why"] for p in data.picked_layers} >= {"best-fitted heavy tail", "most under-trained"}


def test_where_filters_layer_rows(lake, rows):
    con = lake.connect()
    try:
        d = report_data(con, ReportOptions(where="arch = 'DemoCNN' AND kind = 'conv2d'"))
    finally:
        con.close()
    mine = [r for r in rows if r["arch"] == "DemoCNN" and r["kind"] == "conv2d"]
    assert d.overview["models"] == 2 and d.overview["tensors"] == len(mine)
    assert [a["arch"] for a in d.archs] == ["DemoCNN"]
    assert d.series_models == 2


class _Checker(HTMLParser):
    """Balanced tags, and every resource inline."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.imgs: list[str] = []
        self.ids: set[str] = set()
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if "id" in a:
            self.ids.add(a["id"])
        for k in ("src", "href"):
            v = a.get(k)
            if v and not (v.startswith("data:") or v.startswith("#")):
                self.errors.append(f"external {k}: {v[:60]}")
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def test_html_is_self_contained_balanced_and_its_images_decode(page):
    from PIL import Image

    c = _Checker()
    c.feed(page)
    c.close()
    assert c.errors == [] and c.stack == []
    assert "script" not in c.tags
    assert {"overview", "archs", "universality", "warnings", "outliers", "pictures"} <= c.ids
    # alpha histogram, by-arch, 2 series, layer profile, ESD+fit+KS of the best layer,
    # ESD+fit of the most under-trained one
    assert len(c.imgs) >= 9
    for src in c.imgs:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
        assert img.size[0] > 300 and img.size[1] > 200
    for text in ("Scan overview", "Per architecture", "Universality", "Warnings", "Outliers",
                 "demo/mlp-16", "collapsed.weight", "DemoCNN"):
        assert text in page


def test_svg_report_inlines_parseable_svg(lake):
    page = build_report(lake, image_format="svg", layer_figures=False)
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) >= 4 and "<img" not in page
    for s in svgs:
        root = ET.fromstring(s)
        assert root.tag.endswith("svg")


def test_cli_report(lake, tmp_path):
    from typer.testing import CliRunner

    from hubscan.cli import app

    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", "--lake", lake.uri, "-o", str(out),
                                   "--where", "arch <> 'BertModel'", "--no-layer-figures"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "BertModel" not in text.split("Per architecture", 1)[1].split("</section>", 1)[0]
    assert "arch &lt;&gt; &#x27;BertModel&#x27;" in text  # the filter, escaped, in the header
    bad = CliRunner().invoke(app, ["report", "--lake", lake.uri, "-o", str(tmp_path / "b.html"),
                                   "--where", "no_such_column = 1"])
    assert bad.exit_code == 2 and "no_such_column" in bad.output
    assert not (tmp_path / "b.html").exists()
