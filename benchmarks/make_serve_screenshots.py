"""The README's explorer screenshots, from the demo lake, in headless Chromium.

    hubscan demo && python benchmarks/make_serve_screenshots.py --lake demo-lake

Writes docs/img/serve_leaderboard.png (the leaderboard) and docs/img/serve_layer.png (the
layer page of the layer docs/img/esd.png shows: among the heavy-tailed demo models, the
fitted layer with α in [2, 6] with the most eigenvalues, smallest KS distance first). Needs
Debian's ``chromium`` and ``chromium-driver`` and selenium (the test extra).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from hubscan.lake import Lake
from hubscan.serve import BackgroundServer, ServeOptions

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def main(argv: list[str] | None = None) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", default="demo-lake")
    ap.add_argument("--out", type=Path, default=IMG)
    args = ap.parse_args(argv)
    layer = Lake(args.lake).query("""
        SELECT model_key AS key, file, tensor FROM layers_latest
        WHERE status = 'ok' AND alpha BETWEEN 2 AND 6 AND repo_id LIKE '%-ht%'
        ORDER BY num_evals DESC, D ASC, repo_id, tensor LIMIT 1""").to_pylist()[0]
    profile = tempfile.mkdtemp(prefix="hubscan-shots-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for f in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
              f"--user-data-dir={profile}"):
        opts.add_argument(f)
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts)
    ready = ("return document.readyState === 'complete' && "
             "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    try:
        with BackgroundServer(ServeOptions(lake=args.lake, port=0, refresh_s=0)) as srv:
            args.out.mkdir(parents=True, exist_ok=True)
            drv.set_window_size(1440, 600)
            drv.get(srv.url + "/")
            WebDriverWait(drv, 60).until(lambda d: d.execute_script(ready))
            drv.save_screenshot(str(args.out / "serve_leaderboard.png"))
            drv.set_window_size(1320, 1540)
            drv.get(srv.url + "/layer?" + urlencode(layer))
            WebDriverWait(drv, 60).until(lambda d: d.execute_script(ready))
            drv.save_screenshot(str(args.out / "serve_layer.png"))
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"wrote {args.out / 'serve_leaderboard.png'} and {args.out / 'serve_layer.png'} "
          f"({layer['tensor']} of {layer['key'].split('@')[0]})")


if __name__ == "__main__":
    main()
