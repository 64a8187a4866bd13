"""Every number of the report, aggregated in DuckDB over all selected rows.

One temporary table of the selected layer rows, then GROUP BYs: the report's tables never
sample, only its point clouds do (``figures``). ``ReportOptions`` lives here because it is
what the queries read (``where``, ``top_n``, …).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ReportOptions", "ReportData", "report_data"]

#: A warning label is one element of the comma-joined ``warning`` column.
_HAS = "list_contains(string_split(coalesce(warning, ''), ','), '{label}')"

#: The report shows warnings as a person should read them (``esd.phases.human_warning``):
#: weightwatcher's labels, without ``over-trained`` on a random-like layer. The lake's
#: ``warning`` column keeps weightwatcher's spelling; ``report_layers`` carries this one.
HUMAN_WARNING_SQL = """CASE WHEN phase = 'random-like'
    THEN nullif(array_to_string(list_filter(string_split(coalesce(warning, ''), ','),
                                            lambda w: w <> '' AND w <> 'over-trained'), ','), '')
    ELSE warning END"""


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    """What the report shows.

    Attributes:
        where: SQL predicate on layer rows (``layers`` view columns plus the model's
            ``accuracy``, ``params``, ``downloads``, ``likes``, ``library``).
        title: page title.
        top_n: rows in each "worst …" table.
        max_groups: architectures drawn in the alpha-by-architecture figure.
        sample_per_group: points drawn per architecture (statistics use every row).
        image_format: ``png`` (base64 ``<img>``) or ``svg`` (inline).
        dpi: PNG resolution.
        layer_figures: draw the per-layer pictures (ESD, fit, KS) of the picked layers.
    """

    where: str | None = None
    title: str = "hubscan report"
    top_n: int = 15
    max_groups: int = 25
    sample_per_group: int = 1500
    image_format: Literal["png", "svg"] = "png"
    dpi: int = 90
    layer_figures: bool = True


@dataclass
class ReportData:
    """The report's tables (lists of row dicts) and figures (name → matplotlib Figure)."""

    overview: dict[str, Any]
    scans: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    archs: list[dict[str, Any]]
    phases: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    worst_models: list[dict[str, Any]]
    under_layers: list[dict[str, Any]]
    over_layers: list[dict[str, Any]]
    collapsed_layers: list[dict[str, Any]]
    model_outliers: list[dict[str, Any]]
    poor_fits: list[dict[str, Any]]
    alpha_hist: Any
    alpha_groups: Any
    series_models: int
    picked_layers: list[dict[str, Any]]
    timings: dict[str, float]
    #: "alpha vs accuracy": quality_correlations rows with permutation p-values (whole lake)
    quality: list[dict[str, Any]] = field(default_factory=list)
    #: models with a reported metric (model_evals), whole lake
    quality_models: int = 0


def _rows(con, sql: str, params: Any = None) -> list[dict[str, Any]]:
    from ..plots.source import _rows as rows

    return rows(con, sql, params)


def _exec(con, sql: str) -> None:
    """Run a statement to completion (DuckDB ≥ 2 refuses new work while a result is open)."""
    con.execute(sql).fetchall()


def report_data(con, options: ReportOptions = ReportOptions()) -> ReportData:
    """Run every aggregate of the report on an open lake connection (``Lake.connect()``)."""
    from ..plots.source import alpha_groups_from_lake, alpha_histogram, base_relation

    t: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:  # seconds per step, for the report's footer and the benchmark
        now = time.perf_counter()
        t[name] = now - clock[0]
        clock[0] = now

    # One scan of the deduplicating views; every later query reads this table.
    _exec(con, f"""CREATE OR REPLACE TEMP TABLE report_layers AS
                   SELECT * REPLACE ({HUMAN_WARNING_SQL} AS warning)
                   FROM ({base_relation(options.where)})""")
    _exec(con, """CREATE OR REPLACE TEMP TABLE report_models AS
                   SELECT * FROM models_latest
                   WHERE model_key IN (SELECT DISTINCT model_key FROM report_layers)""")
    rel = "SELECT * FROM report_layers"
    lap("select")

    under, over, collapse = (_HAS.format(label=x) for x in
                             ("under-trained", "over-trained", "rank-collapse"))
    overview = _rows(con, f"""
        SELECT (SELECT count(*) FROM report_models) AS models,
               (SELECT count(*) FROM report_models WHERE status = 'ok') AS models_ok,
               (SELECT count(*) FROM report_models WHERE status = 'partial') AS models_partial,
               (SELECT count(*) FROM report_models WHERE status = 'failed') AS models_failed,
               (SELECT count(DISTINCT arch) FROM report_models) AS archs,
               (SELECT string_agg(DISTINCT source, ', ') FROM report_models) AS sources,
               (SELECT string_agg(DISTINCT convention, ', ') FROM report_models) AS conventions,
               (SELECT count(DISTINCT analysis_version) FROM report_models) AS analysis_versions,
               count(*) AS tensors,
               count(*) FILTER (WHERE status IN ('ok', 'fit-failed')) AS analysed,
               count(*) FILTER (WHERE valid) AS fitted,
               count(*) FILTER (WHERE status = 'skipped') AS skipped,
               count(*) FILTER (WHERE status = 'fit-failed') AS fit_failed,
               count(*) FILTER (WHERE status = 'error') AS errors,
               count(*) FILTER (WHERE {under}) AS under_trained,
               count(*) FILTER (WHERE {over}) AS over_trained,
               count(*) FILTER (WHERE {collapse}) AS rank_collapse,
               median(alpha) FILTER (WHERE valid) AS alpha_median,
               avg(alpha) FILTER (WHERE valid) AS alpha_mean,
               avg(CASE WHEN alpha BETWEEN 2 AND 4 THEN 1.0 ELSE 0.0 END) FILTER (WHERE valid) AS share_2_4,
               avg(CASE WHEN alpha BETWEEN 2 AND 6 THEN 1.0 ELSE 0.0 END) FILTER (WHERE valid) AS share_2_6,
               min(written_at) AS first_written, max(written_at) AS last_written
        FROM report_layers""")[0]
    lap("overview")

    scans = _rows(con, """
        SELECT scan_id, spec_name, started_at, finished_at, status, n_planned, n_skipped,
               n_done, n_failed, bytes_fetched
        FROM scans ORDER BY started_at DESC LIMIT 10""")
    failures = _rows(con, """
        SELECT stage, error_class, count(*) AS n, count(DISTINCT model_key) AS models,
               any_value(message) AS example
        FROM failures GROUP BY ALL ORDER BY n DESC LIMIT 20""")

    archs = _rows(con, f"""
        SELECT coalesce(arch, '(unknown)') AS arch,
               count(DISTINCT model_key) AS models,
               count(*) FILTER (WHERE status IN ('ok', 'fit-failed')) AS layers,
               count(*) FILTER (WHERE valid) AS fits,
               avg(alpha) FILTER (WHERE valid) AS alpha_mean,
               median(alpha) FILTER (WHERE valid) AS alpha_median,
               avg(CASE WHEN alpha BETWEEN 2 AND 4 THEN 1.0 ELSE 0.0 END) FILTER (WHERE valid) AS share_2_4,
               avg(CASE WHEN alpha BETWEEN 2 AND 6 THEN 1.0 ELSE 0.0 END) FILTER (WHERE valid) AS share_2_6,
               avg(log_norm) FILTER (WHERE valid AND isfinite(log_norm)) AS log_norm_mean,
               count(*) FILTER (WHERE {under}) AS under_trained,
               count(*) FILTER (WHERE {over}) AS over_trained,
               count(*) FILTER (WHERE {collapse}) AS rank_collapse
        FROM report_layers GROUP BY 1 ORDER BY layers DESC, arch""")
    phases = _rows(con, """
        SELECT coalesce(phase, '(none)') AS phase, count(*) AS layers,
               median(alpha) FILTER (WHERE valid) AS alpha_median
        FROM report_layers WHERE status IN ('ok', 'fit-failed')
        GROUP BY 1 ORDER BY layers DESC""")
    warnings = _rows(con, """
        SELECT w AS warning, count(*) AS layers, count(DISTINCT model_key) AS models
        FROM (SELECT model_key, unnest(string_split(warning, ',')) AS w
              FROM report_layers WHERE warning IS NOT NULL AND warning <> '')
        GROUP BY 1 ORDER BY layers DESC""")
    lap("tables")

    n = int(options.top_n)
    layer_cols = ("repo_id, arch, tensor, kind, N, M, num_evals, alpha, D, num_pl_spikes, "
                  "warning, phase, weak_rank_loss")
    worst_models = _rows(con, f"""
        SELECT repo_id, arch, count(*) FILTER (WHERE valid) AS fits,
               count(*) FILTER (WHERE {under}) AS under_trained,
               count(*) FILTER (WHERE {over}) AS over_trained,
               count(*) FILTER (WHERE {collapse}) AS rank_collapse,
               avg(alpha) FILTER (WHERE valid) AS alpha_mean,
               avg(CASE WHEN alpha BETWEEN 2 AND 6 THEN 1.0 ELSE 0.0 END) FILTER (WHERE valid) AS share_2_6,
               (count(*) FILTER (WHERE {under} OR {over} OR {collapse}))
                   / greatest(count(*) FILTER (WHERE status IN ('ok', 'fit-failed')), 1) AS warned_share,
               any_value(model_key) AS model_key
        FROM report_layers GROUP BY repo_id, arch, model_key
        HAVING count(*) FILTER (WHERE {under} OR {over} OR {collapse}) > 0
        ORDER BY warned_share DESC, under_trained + over_trained + rank_collapse DESC, repo_id
        LIMIT {n}""")
    under_layers = _rows(con, f"""SELECT {layer_cols}, model_key FROM report_layers
        WHERE valid AND {under} ORDER BY alpha DESC, repo_id, tensor LIMIT {n}""")
    over_layers = _rows(con, f"""SELECT {layer_cols}, model_key FROM report_layers
        WHERE valid AND {over} ORDER BY alpha ASC, repo_id, tensor LIMIT {n}""")
    collapsed_layers = _rows(con, f"""SELECT {layer_cols}, model_key,
               weak_rank_loss / greatest(num_evals, 1) AS zero_share
        FROM report_layers WHERE {collapse}
        ORDER BY zero_share DESC, repo_id, tensor LIMIT {n}""")
    # Models whose mean alpha is far from their architecture's (≥ 3 models to compare with).
    model_outliers = _rows(con, f"""
        WITH m AS (SELECT model_key, repo_id, coalesce(arch, '(unknown)') AS arch,
                          avg(alpha) FILTER (WHERE valid) AS alpha_mean,
                          count(*) FILTER (WHERE valid) AS fits
                   FROM report_layers GROUP BY ALL HAVING fits > 0),
             a AS (SELECT arch, avg(alpha_mean) AS arch_mean, stddev_samp(alpha_mean) AS arch_sd,
                          count(*) AS arch_models FROM m GROUP BY arch)
        SELECT m.repo_id, m.arch, m.fits, m.alpha_mean, a.arch_mean, a.arch_models,
               (m.alpha_mean - a.arch_mean) / nullif(a.arch_sd, 0) AS z
        FROM m JOIN a USING (arch)
        WHERE a.arch_models >= 3 AND abs((m.alpha_mean - a.arch_mean) / nullif(a.arch_sd, 0)) >= 2
        ORDER BY abs(z) DESC LIMIT {n}""")
    poor_fits = _rows(con, f"""SELECT {layer_cols}, model_key FROM report_layers
        WHERE valid ORDER BY D DESC, repo_id, tensor LIMIT {n}""")
    lap("worst")

    alpha_hist = alpha_histogram(con, relation=rel)
    groups = alpha_groups_from_lake(con, by="arch", relation=rel, max_groups=options.max_groups,
                                    sample_per_group=options.sample_per_group)
    series_models = _rows(con, """SELECT count(*) AS n FROM report_models
                                  WHERE accuracy IS NOT NULL""")[0]["n"]
    lap("figure_data")

    picked = _pick_layers(con, under_layers, over_layers)
    lap("pick_layers")
    quality, quality_models = _quality(con)
    lap("quality")
    return ReportData(overview=overview, scans=scans, failures=failures, archs=archs,
                      phases=phases, warnings=warnings, worst_models=worst_models,
                      under_layers=under_layers, over_layers=over_layers,
                      collapsed_layers=collapsed_layers, model_outliers=model_outliers,
                      poor_fits=poor_fits, alpha_hist=alpha_hist, alpha_groups=groups,
                      series_models=int(series_models), picked_layers=picked, timings=t,
                      quality=quality, quality_models=quality_models)


def _quality(con) -> tuple[list[dict[str, Any]], int]:
    """Rank correlations of model-level metrics with reported metrics, strongest first, and
    how many models report a metric at all (``hubscan.lake.quality``)."""
    from ..lake.quality import correlations

    n = _rows(con, "SELECT count(DISTINCT model_key) AS n FROM model_evals")[0]["n"]
    if not n:
        return [], 0
    rows = [c.as_dict() for c in correlations(con, permutations=1999)]
    rows.sort(key=lambda r: (r["group_kind"], r["group_name"], r["eval_metric"], r["variant"],
                             r["metric"]))
    return rows, int(n)


def _pick_layers(con, under: list[dict], over: list[dict]) -> list[dict[str, Any]]:
    """Layers worth a closer look, each with a stored spectrum: the best-fitted heavy tail
    (phase heavy-tailed, α in [2, 4], smallest D, most eigenvalues), the most under-trained,
    the most over-trained.

    Candidates are ranked first and checked for a spectrum one by one (a keyed lookup), never
    with a join of the whole ``spectra`` table."""
    best = _rows(con, """
        SELECT model_key, repo_id, tensor, file_sha256, analysis_version, alpha, D,
               'best-fitted heavy tail' AS why
        FROM report_layers
        WHERE valid AND alpha BETWEEN 2 AND 4 AND num_evals >= 50 AND phase = 'heavy-tailed'
        ORDER BY D ASC, num_evals DESC, repo_id, tensor LIMIT 10""")
    picked: list[dict[str, Any]] = []
    for rows, why in ((best, None), (under, "most under-trained"), (over, "most over-trained")):
        for r in rows:
            if _has_spectrum(con, r):
                picked.append({**r, "why": why or r["why"]})
                break
    return picked


def _has_spectrum(con, r: dict[str, Any]) -> bool:
    key = _rows(con, """SELECT file_sha256, analysis_version FROM report_layers
                        WHERE model_key = $k AND tensor = $t LIMIT 1""",
                {"k": r["model_key"], "t": r["tensor"]})
    if not key:
        return False
    return bool(_rows(con, """SELECT 1 AS ok FROM spectra WHERE file_sha256 = $s AND tensor = $t
                              AND analysis_version = $v LIMIT 1""",
                      {"s": key[0]["file_sha256"], "t": r["tensor"],
                       "v": key[0]["analysis_version"]}))


