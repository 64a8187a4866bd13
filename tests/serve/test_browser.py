"""The explorer in a real browser: headless Chromium driven by selenium through Debian's
``chromium-driver``, against a real server on loopback.

A user's path — open the leaderboard, filter by architecture, sort by alpha, open a model,
open a layer, compare two revisions — with every visible number checked against a DuckDB
query of the lake's views, no console error on any page (the browser's own log: uncaught
exceptions, failed loads, CSP refusals), and a screenshot of each step saved under the
test's tmp dir. A control test proves the console check catches an injected error.

Skips, saying why, where ``chromium``/``chromedriver`` or selenium are absent (``.ci/run``
installs Debian's ``chromium`` and ``chromium-driver``).
"""

from __future__ import annotations

import shutil
import tempfile
import time

import pytest

from hubscan.serve import BackgroundServer, ServeOptions

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="headless Chromium is not installed (Debian: apt-get install chromium chromium-driver)")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-extensions", "--disable-dev-shm-usage", "--window-size=1400,1000"]


def fmt(v, digits=3) -> str:
    """What the page shows for a metric (hubscan.serve.formats.fmt_num, re-stated)."""
    import math

    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


@pytest.fixture(scope="module")
def server(serve_lake):
    with BackgroundServer(ServeOptions(lake=str(serve_lake.path), port=0, refresh_s=0)) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="hubscan-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in [*FLAGS, f"--user-data-dir={profile}"]:
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


def console_errors(drv) -> list[str]:
    """Every error the page reported since the last call: console.error, uncaught exceptions,
    failed resource loads and CSP refusals (Chromium logs them all as SEVERE), plus images
    that did not decode."""
    broken = drv.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src)")
    return [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE"] + \
        [f"image did not load: {src}" for src in broken]


def settle(drv, *, timeout: float = 60) -> None:
    """Wait until the document and all its images have loaded (pictures are drawn on demand)."""
    WebDriverWait(drv, timeout).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && "
        "Array.from(document.images).every(i => i.complete)"))


def step(drv, shots, name) -> None:
    settle(drv)
    drv.save_screenshot(str(shots / f"{name}.png"))
    assert console_errors(drv) == [], name


def cells(drv, selector) -> list[str]:
    return [e.text for e in drv.find_elements(By.CSS_SELECTOR, selector)]


def test_a_users_path_shows_the_lakes_numbers(server, browser, shots, serve_lake):
    lake, drv = serve_lake.lake, browser
    summary = {r["model_key"]: r for r in lake.query(
        "SELECT m.model_key, m.repo_id, m.arch, s.alpha_mean FROM models_latest m "
        "LEFT JOIN model_summary s USING (model_key)").to_pylist()}

    # 1. the leaderboard: every live model, its mean alpha as the lake has it
    drv.get(server.url + "/")
    step(drv, shots, "1-leaderboard")
    rows = drv.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr[data-key]")
    assert {r.get_attribute("data-key") for r in rows} == set(summary)
    for r in rows:
        shown = r.find_element(By.CSS_SELECTOR, "td.alpha").text
        assert shown == fmt(summary[r.get_attribute("data-key")]["alpha_mean"])
    assert drv.find_element(By.CSS_SELECTOR, "#total b").text == str(len(summary))

    # 2. filter by architecture (the select submits itself: app.js)
    Select(drv.find_element(By.ID, "filter-arch")).select_by_value("DemoMLP")
    WebDriverWait(drv, 30).until(lambda d: "arch=DemoMLP" in d.current_url)
    step(drv, shots, "2-filtered")
    mlp = {k: r for k, r in summary.items() if r["arch"] == "DemoMLP"}
    assert set(cells(drv, "#leaderboard td.arch")) == {"DemoMLP"}
    shown = drv.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr[data-key]")
    assert {r.get_attribute("data-key") for r in shown} == set(mlp)

    # 3. sort by mean alpha, descending (the header toggles the default ascending order)
    drv.find_element(By.ID, "sort-alpha_mean").click()
    WebDriverWait(drv, 30).until(lambda d: "order=desc" in d.current_url)
    step(drv, shots, "3-sorted")
    values = sorted((r["alpha_mean"] for r in mlp.values() if r["alpha_mean"] is not None), reverse=True)
    assert cells(drv, "#leaderboard td.alpha") == [fmt(v) for v in values] + ["—"] * (len(mlp) - len(values))

    # 4. open the model with two revisions
    drv.find_element(By.LINK_TEXT, "demo/mlp-13").click()
    WebDriverWait(drv, 30).until(lambda d: "/model?" in d.current_url)
    step(drv, shots, "4-model")
    assert drv.find_element(By.ID, "model-name").text == "demo/mlp-13"
    assert drv.find_element(By.ID, "alpha-mean").text == fmt(summary[serve_lake.new_key]["alpha_mean"])
    layers = lake.query("""SELECT tensor, CASE WHEN status = 'ok' AND NOT isnan(alpha) THEN alpha END AS alpha
                           FROM layers WHERE model_key = ? ORDER BY file, layer_id, tensor""",
                        [serve_lake.new_key]).to_pylist()
    assert cells(drv, "#layers td.alpha") == [fmt(r["alpha"]) for r in layers]

    # 5. open its first fitted layer: the row's numbers and its three pictures
    first = next(r for r in layers if r["alpha"] is not None)
    drv.find_element(By.LINK_TEXT, first["tensor"]).click()
    WebDriverWait(drv, 30).until(lambda d: "/layer?" in d.current_url)
    step(drv, shots, "5-layer")
    row = lake.query("SELECT alpha, D, xmin FROM layers WHERE model_key = ? AND tensor = ?",
                     [serve_lake.new_key, first["tensor"]]).to_pylist()[0]
    assert drv.find_element(By.ID, "layer-name").text == first["tensor"]
    assert drv.find_element(By.ID, "layer-alpha").text == fmt(row["alpha"])
    assert drv.find_element(By.ID, "layer-D").text == fmt(row["D"])
    assert drv.find_element(By.ID, "layer-xmin").text == fmt(row["xmin"], 4)
    for pic in ("plot-esd", "plot-fit", "plot-ks"):
        assert drv.execute_script(f"return document.getElementById('{pic}').naturalWidth") > 100

    # 6. back to the model, compare its two revisions
    drv.back()
    settle(drv)
    drv.find_element(By.CSS_SELECTOR, "#history a.compare-link").click()
    WebDriverWait(drv, 30).until(lambda d: "/compare?" in d.current_url)
    step(drv, shots, "6-compare")
    old_mean = lake.query("SELECT alpha_mean FROM model_summary WHERE model_key = ?",
                          [serve_lake.old_key]).column(0)[0].as_py()
    assert drv.find_element(By.ID, "mean-alpha-a").text == fmt(old_mean)
    assert drv.find_element(By.ID, "mean-alpha-b").text == fmt(summary[serve_lake.new_key]["alpha_mean"])
    expected = {r["tensor"]: r for r in lake.query("""
        SELECT a.tensor, b.alpha - a.alpha AS d_alpha, b.log_norm - a.log_norm AS d_log_norm
        FROM (SELECT * FROM layers WHERE model_key = $a AND status = 'ok' AND NOT isnan(alpha)) a
        JOIN (SELECT * FROM layers WHERE model_key = $b AND status = 'ok' AND NOT isnan(alpha)) b USING (tensor)""",
        {"a": serve_lake.old_key, "b": serve_lake.new_key}).to_pylist()}
    shown = {r.get_attribute("data-tensor"): (r.find_element(By.CSS_SELECTOR, "td.d-alpha").text,
                                              r.find_element(By.CSS_SELECTOR, "td.d-log-norm").text)
             for r in drv.find_elements(By.CSS_SELECTOR, "#compare-layers tbody tr")}
    assert expected
    for tensor, e in expected.items():
        assert shown[tensor] == (fmt(e["d_alpha"]), fmt(e["d_log_norm"])), tensor


@pytest.mark.parametrize("path", ["/archs", "/changes?since=2000-01-01", "/sql?q=SELECT+*+FROM+arch_summary",
                                  "/compare", "/api"])
def test_other_pages_load_without_console_errors(server, browser, shots, path):
    browser.get(server.url + path)
    step(browser, shots, "page-" + path.strip("/").split("?")[0])


def test_console_check_catches_an_injected_error(server, browser):
    """The control: the same check that passes above fails on a page that errs."""
    browser.get(server.url + "/archs")
    settle(browser)
    assert console_errors(browser) == []
    browser.execute_script("""
        setTimeout(() => { throw new Error('injected failure for the control test'); }, 0);
        const img = document.createElement('img');
        img.src = '/static/no-such-picture.png';
        document.body.appendChild(img);""")
    deadline = time.monotonic() + 20
    errors: list[str] = []
    while time.monotonic() < deadline and len(errors) < 2:
        time.sleep(0.2)
        errors += console_errors(browser)
    assert any("injected failure for the control test" in e for e in errors), errors
    assert any("no-such-picture.png" in e for e in errors), errors
