"""Explorer benchmark: p50/p95 latency of every page and API route of ``hubscan serve`` on a
generated lake of ≥ 1M layer rows, after compaction.

    python benchmarks/bench_serve.py                       # 10,000 repos x 100 layers (1.05M rows)
    python benchmarks/bench_serve.py --models 500 --repeat 10   # quick look

Builds the lake with ``write_synthetic_lake`` (``hubscan lake synth``), compacts it, starts the
explorer in process on loopback (a real uvicorn server; requests over one keep-alive HTTP
connection, one at a time), and times each route ``--repeat`` times on different targets
(random live models, revision pairs, layers). Layer pictures are timed *cold* (a layer not
drawn before: the eigenvalue lookup plus matplotlib) and *cached*. Goals (issue 15): p95 <
300 ms for leaderboard, model, compare and API; layer pictures < 1 s cold, < 50 ms cached.

Writes benchmarks/results/serve.json. Wall-clock on this machine, measured side by side in
one run; on a shared machine read them as orders of magnitude and ratios.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import duckdb

from hubscan.lake import Lake
from hubscan.lake.synthetic import SYNTH_ARCHS, write_synthetic_lake
from hubscan.serve import BackgroundServer, ServeOptions, figures

GOALS_MS = {"page/api": 300.0, "plot cold": 1000.0, "plot cached": 50.0}

#: The same numbers straight from the lake's views (what the explorer would cost without its
#: snapshot), timed side by side with the API route that answers them (a tuple: the page's
#: queries, run in turn).
DIRECT = {
    "api /api/models": """SELECT m.repo_id, s.alpha_mean FROM models_latest m
                          JOIN model_summary s USING (model_key) WHERE m.arch = $arch
                          ORDER BY s.n_warnings DESC, m.model_key DESC LIMIT 50""",
    "api /api/model": ("SELECT * FROM layers WHERE model_key = $a ORDER BY file, layer_id",
                       "SELECT * FROM model_summary WHERE model_key = $a",
                       """SELECT * FROM history WHERE repo_id = (SELECT repo_id FROM models
                          WHERE model_key = $a) ORDER BY revision_seq"""),
    "api /api/compare": """SELECT a.tensor, b.alpha - a.alpha AS d_alpha FROM
                           (SELECT * FROM layers WHERE model_key = $a) a FULL JOIN
                           (SELECT * FROM layers WHERE model_key = $b) b USING (tensor)""",
    "archs /archs": "SELECT * FROM arch_summary",
}


class Client:
    """One keep-alive HTTP connection; ``get`` returns (seconds, status, body)."""

    def __init__(self, url: str) -> None:
        u = urlsplit(url)
        self.con = http.client.HTTPConnection(u.hostname, u.port, timeout=120)

    def get(self, path: str) -> tuple[float, int, bytes]:
        t0 = time.perf_counter()
        self.con.request("GET", path)
        r = self.con.getresponse()
        body = r.read()
        return time.perf_counter() - t0, r.status, body


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    return statistics.quantiles(v, n=100, method="inclusive")[int(q) - 1]


def summarise(times: list[float]) -> dict:
    ms = [t * 1000 for t in times]
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 1), "p95_ms": round(pct(ms, 95), 1),
            "max_ms": round(max(ms), 1)}


def measure(client: Client, paths: list[str]) -> dict:
    times = []
    for p in paths:
        dt, status, body = client.get(p)
        if status != 200:
            raise SystemExit(f"{p} answered {status}: {body[:200]!r}")
        times.append(dt)
    return summarise(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=10_000)
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--evals", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--dir", type=Path, default=None, help="build the lake here (default: a temp dir, deleted)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve.json")
    args = ap.parse_args(argv)
    load_start = os.getloadavg()[0]
    tmp = tempfile.TemporaryDirectory(prefix="hubscan-bench-serve-") if args.dir is None else None
    root = (Path(tmp.name) if tmp else args.dir) / "lake"
    lake = Lake(str(root), fsync=False)

    gen = write_synthetic_lake(lake, models=args.models, layers=args.layers, n_evals=args.evals)
    print(f"lake: {gen.units:,} units, {gen.layer_rows:,} stored layer rows "
          f"({gen.model_layer_rows:,} in the layers view) in {gen.seconds:.1f} s")
    comp = lake.compact()
    print(f"compacted: {comp.files_before} → {comp.files_after} files in {comp.seconds:.1f} s")

    rng = random.Random(0)
    con = lake.connect()
    latest = [r[0] for r in con.execute("SELECT model_key FROM models_latest ORDER BY model_key").fetchall()]
    pairs = con.execute("""SELECT a.model_key, b.model_key FROM history a JOIN history b
                           ON a.repo_id = b.repo_id AND a.revision_seq = 1 AND b.revision_seq = 2
                           ORDER BY a.model_key""").fetchall()
    con.close()
    n = args.repeat
    models = rng.sample(latest, min(n, len(latest)))
    pairs = rng.sample(pairs, min(n, len(pairs)))

    t0 = time.perf_counter()
    opts = ServeOptions(lake=str(root), port=0, refresh_s=0)
    with BackgroundServer(opts) as srv:
        startup = time.perf_counter() - t0
        snap = srv.catalog.snapshot
        print(f"explorer up in {startup:.1f} s (snapshot {snap.build_s:.1f} s: "
              f"{snap.counts['layers']:,} layer rows, {snap.counts['models']:,} analyses)")
        c = Client(srv.url)
        layer_of, other_of = {}, {}
        for k in models:  # a fitted layer of each model, for the layer page and its pictures
            _, _, body = c.get("/api/model?" + urlencode({"key": k}))
            d = json.loads(body)
            fitted = [l for l in d["layers"] if l["valid"]]
            layer_of[k] = fitted[len(fitted) // 2]
            other_of[k] = fitted[0]  # for `hubscan plot`'s path: another layer, drawn cold too
        archs = [a for a, _ in SYNTH_ARCHS]
        results: dict[str, dict] = {}

        def run(name: str, paths: list[str], group: str) -> None:
            results[name] = {"group": group, **measure(c, paths)}
            r = results[name]
            print(f"{name:42s} p50 {r['p50_ms']:7.1f} ms   p95 {r['p95_ms']:7.1f} ms   max {r['max_ms']:7.1f} ms")

        # Follow up to 30 pages of "next" to time a page deep in the keyset order.
        deep, after = [], None
        for _ in range(30):
            _, _, body = c.get("/api/models?" + urlencode({"sort": "alpha_mean", "order": "desc",
                                                           **({"after": after} if after else {})}))
            after = json.loads(body)["next"]
            if after is None:
                break
            deep.append(after)
        lb = "/?"
        run("leaderboard /", [lb] * n, "page/api")
        run("leaderboard filtered+sorted", [lb + urlencode({"arch": archs[i % len(archs)], "sort": "alpha_mean",
                                                             "order": "desc"}) for i in range(n)], "page/api")
        run("leaderboard search q=", [lb + urlencode({"q": f"model-00{i % 100:02d}", "sort": "params"})
                                       for i in range(n)], "page/api")
        run(f"leaderboard page {len(deep) + 1} (keyset)",
            [lb + urlencode({"sort": "alpha_mean", "order": "desc", "after": deep[-1]})] * n, "page/api")
        run("api /api/models", ["/api/models?" + urlencode({"arch": archs[i % len(archs)], "sort": "n_warnings"})
                                for i in range(n)], "page/api")
        run("model /model", ["/model?" + urlencode({"key": k}) for k in models], "page/api")
        run("api /api/model", ["/api/model?" + urlencode({"key": k}) for k in models], "page/api")
        run("compare /compare (revisions)", ["/compare?" + urlencode({"a": a, "b": b}) for a, b in pairs], "page/api")
        run("api /api/compare", ["/api/compare?" + urlencode({"a": a, "b": b}) for a, b in pairs], "page/api")
        layer_q = [urlencode({"key": k, "file": layer_of[k]["file"], "tensor": layer_of[k]["tensor"]})
                   for k in models]
        run("layer /layer", ["/layer?" + q for q in layer_q], "page/api")
        run("api /api/layer", ["/api/layer?" + q for q in layer_q], "page/api")
        run("archs /archs", ["/archs"] * n, "page/api")
        run("changes /changes", ["/changes"] * n, "page/api")
        run("api /api/changes", ["/api/changes?since=2026-11-01"] * n, "page/api")
        run("sql /api/sql (count over a view)", ["/api/sql?" + urlencode({"q": "SELECT count(*) FROM models_latest"})]
            * max(5, n // 4), "sql")

        def plot_paths(kind: str, keys: list[str]) -> list[str]:
            out = []
            for k in keys:
                _, _, body = c.get("/api/layer?" + urlencode({"key": k, "file": layer_of[k]["file"],
                                                              "tensor": layer_of[k]["tensor"]}))
                row = json.loads(body)["layer"]
                out.append(f"/plot/{kind}/{row['file_sha256']}/{quote(row['analysis_version'])}/"
                           f"{quote(row['tensor'])}.svg")
            return out

        for kind in ("esd", "fit", "ks"):
            paths = plot_paths(kind, models)
            run(f"plot {kind} cold", paths, "plot cold")
            run(f"plot {kind} cached", paths, "plot cached")
        profiles = ["/plot/profile.svg?" + urlencode({"key": k}) for k in models]
        run("plot profile cold", profiles, "plot cold")
        run("plot profile cached", profiles, "plot cached")
        # The lake-wide picture is drawn once per snapshot, at start (and after each rebuild):
        # time that drawing on its own, then the route, which serves it from the cache.
        with snap.cursor() as cur:
            t1 = time.perf_counter()
            figures.archs_svg(cur, figures.FigureCache(), snap.signature)
            archs_draw = time.perf_counter() - t1
        print(f"archs picture drawn at start in {archs_draw * 1000:.0f} ms")
        run("plot archs (drawn at start)", ["/plot/archs.svg"] * n, "plot cached")
        counts = dict(snap.counts)
        snapshot_s = snap.build_s

    # The same questions asked of the lake's views directly, on this machine, right after.
    direct: dict[str, dict] = {}
    con = lake.connect()
    for name, sqls in DIRECT.items():
        times = []
        for i in range(max(3, n // 8)):
            a, b = pairs[i % len(pairs)]
            t1 = time.perf_counter()
            for sql in (sqls,) if isinstance(sqls, str) else sqls:  # a page's queries, in turn
                params = {k: v for k, v in {"arch": archs[i % len(archs)], "a": a, "b": b}.items()
                          if re.search(rf"\${k}\b", sql)}
                con.execute(sql, params).fetchall()
            times.append(time.perf_counter() - t1)
        direct[name] = {**summarise(times),
                        "explorer_p50_ms": results[name]["p50_ms"],
                        "ratio_p50": round(pct([t * 1000 for t in times], 50) / results[name]["p50_ms"], 1)}
        print(f"views directly for {name:28s} p50 {direct[name]['p50_ms']:7.1f} ms "
              f"= {direct[name]['ratio_p50']}x the explorer's")
    # Pictures through `hubscan plot`'s own path (plots.plot_* over the lake's views, then SVG),
    # of other layers of the same models (so they are drawn cold as well): what a cold picture
    # costs without the explorer around it.
    from hubscan.plots import esd as p_esd, fit as p_fit, ks as p_ks
    from hubscan.plots._style import figure_bytes, style

    for kind, plot in (("esd", p_esd.plot_esd), ("fit", p_fit.plot_fit), ("ks", p_ks.plot_ks)):
        times = []
        for k in models[: max(3, n // 8)]:
            t1 = time.perf_counter()
            fig = plot(con, k, other_of[k]["tensor"])
            with style():
                figure_bytes(fig, fmt="svg")
            times.append(time.perf_counter() - t1)
        route = f"plot {kind} cold"
        name = f"hubscan plot {kind} (other layers, cold)"
        direct[name] = {**summarise(times), "explorer_p50_ms": results[route]["p50_ms"],
                        "ratio_p50": round(pct([t * 1000 for t in times], 50) / results[route]["p50_ms"], 2)}
        print(f"{name:47s} p50 {direct[name]['p50_ms']:7.1f} ms "
              f"= {direct[name]['ratio_p50']}x the explorer's cold picture")
    con.close()

    goals = {}
    for name, r in results.items():
        goal = GOALS_MS.get(r["group"])
        if goal is not None:
            goals[name] = r["p95_ms"] < goal
    result = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cpus": os.cpu_count(), "duckdb": duckdb.__version__,
                    "load_avg_1min_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
                    "note": "shared machine: other work ran alongside; read as orders of magnitude"},
        "lake": {"repos": gen.repos, "units": gen.units, "stored_layer_rows": gen.layer_rows,
                 "layers_view_rows": gen.model_layer_rows, "spectra_rows": gen.spectra_rows,
                 "generate_s": round(gen.seconds, 2), "compact_s": round(comp.seconds, 2),
                 "files_after_compaction": comp.files_after},
        "explorer": {"startup_s": round(startup, 2), "snapshot_build_s": round(snapshot_s, 2),
                     "archs_picture_at_start_s": round(archs_draw, 2),
                     "snapshot_counts": counts, "requests_per_route": n},
        "routes": results,
        "views_directly": direct,
        "goals_ms": GOALS_MS,
        "p95_within_goal": goals,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    missed = [k for k, ok in goals.items() if not ok]
    print(f"wrote {args.out}; p95 goals missed: {missed or 'none'}")
    if tmp:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
