-- hubscan lake views (DuckDB). Registered by hubscan.lake.views.register_views after the
-- raw_<table> relations (every row of every file, hive columns source/scan_date included).
--
-- Rules every view follows:
--  * at-least-once writes, idempotent keys: each key is shown once, the newest written_at wins
--    (ties: the greatest source, then scan_date — the copy compaction keeps);
--  * the models row is the commit marker: a model, its model_files and its layers are visible
--    only once its models row exists (a unit that died half-way is invisible);
--  * layers/spectra rows are stored per WEIGHT FILE (file_sha256, tensor, analysis_version), so
--    a file shared by many repos is analysed once; models reach them through model_files.
--  * a "valid alpha" is a layer with status 'ok' and a finite alpha.

-- One row per model_key (source/repo@revision#analysis_version).
CREATE OR REPLACE VIEW models AS
SELECT * FROM raw_models
QUALIFY row_number() OVER (PARTITION BY model_key ORDER BY written_at DESC, source DESC, scan_date DESC) = 1;

-- Which weight files (by content hash) make up each committed model.
CREATE OR REPLACE VIEW model_files AS
SELECT * FROM raw_model_files
WHERE model_key IN (SELECT model_key FROM raw_models)
QUALIFY row_number() OVER (PARTITION BY model_key, file ORDER BY written_at DESC, source DESC, scan_date DESC) = 1;

-- Layer rows per weight file, one per (file_sha256, tensor, analysis_version); model_key here
-- is provenance (the model whose scan computed the row), not ownership.
CREATE OR REPLACE VIEW file_layers AS
SELECT * FROM raw_layers
QUALIFY row_number() OVER (PARTITION BY file_sha256, tensor, analysis_version
                           ORDER BY written_at DESC, source DESC, scan_date DESC) = 1;

-- Per-model layers: every layer of every file of every committed model.
-- computed_by = the model whose scan produced the row (differs when a file was reused).
CREATE OR REPLACE VIEW layers AS
SELECT m.model_key, m.source, m.repo_id, m.revision, m.arch, m.model_type, m.scan_date,
       f.file,
       l.* EXCLUDE (model_key, file, source, scan_date),
       l.model_key AS computed_by
FROM model_files AS f
JOIN models AS m ON m.model_key = f.model_key
JOIN file_layers AS l ON l.file_sha256 = f.file_sha256 AND l.analysis_version = f.analysis_version;

-- Eigenvalues per weight-file tensor (join through model_files for a model's spectra).
CREATE OR REPLACE VIEW spectra AS
SELECT * FROM raw_spectra
QUALIFY row_number() OVER (PARTITION BY file_sha256, tensor, analysis_version
                           ORDER BY written_at DESC, source DESC, scan_date DESC) = 1;

-- Failure rows (not filtered by commit: a model that never committed still failed).
CREATE OR REPLACE VIEW failures AS
SELECT * FROM raw_failures
QUALIFY row_number() OVER (PARTITION BY model_key, stage, file, attempt
                           ORDER BY written_at DESC, source DESC, scan_date DESC) = 1;

-- One row per scan run (a scan rewrites its row when it finishes: newest wins).
CREATE OR REPLACE VIEW scans AS
SELECT * FROM raw_scans
QUALIFY row_number() OVER (PARTITION BY scan_id ORDER BY written_at DESC, scan_date DESC) = 1;

-- Changes seen in a source between scans (new revision, deleted, renamed, restored).
CREATE OR REPLACE VIEW repo_events AS
SELECT * FROM raw_repo_events
QUALIFY row_number() OVER (PARTITION BY source, repo_id, event, revision
                           ORDER BY written_at DESC, source DESC, scan_date DESC) = 1;

-- The latest analysed revision of each (source, repo_id, analysis_version), by written_at.
CREATE OR REPLACE VIEW models_latest AS
SELECT * FROM models
QUALIFY row_number() OVER (PARTITION BY source, repo_id, analysis_version
                           ORDER BY written_at DESC, model_key DESC) = 1;

CREATE OR REPLACE VIEW layers_latest AS
SELECT * FROM layers
WHERE model_key IN (SELECT model_key FROM models_latest);

-- Per-model metrics computed from the layer rows (METHOD.md §5: as SQL over the layer table,
-- so they never disagree with it). Alpha-dependent means/median over valid fits; the
-- fit-independent ones (log_norm, log_spectral_norm, stable_rank) over every analysed matrix,
-- exactly as hubscan.analysis.model_summary fills the models table.
CREATE OR REPLACE VIEW model_summary AS
WITH l AS (
    SELECT *, (status = 'ok' AND alpha IS NOT NULL AND NOT isnan(alpha)) AS valid,
              (status IN ('ok', 'fit-failed')) AS analysed,
              coalesce(string_split(warning, ','), []) AS warnings
    FROM layers
)
SELECT model_key,
       count(*)                                                      AS n_layers,
       count(*) FILTER (WHERE valid)                                 AS n_fits,
       avg(alpha) FILTER (WHERE valid)                               AS alpha_mean,
       median(alpha) FILTER (WHERE valid)                            AS alpha_median,
       count(*) FILTER (WHERE valid AND alpha BETWEEN 2 AND 4)
           / nullif(count(*) FILTER (WHERE valid), 0)                AS frac_alpha_2_4,
       count(*) FILTER (WHERE valid AND alpha BETWEEN 2 AND 6)
           / nullif(count(*) FILTER (WHERE valid), 0)                AS frac_alpha_2_6,
       avg(alpha_weighted) FILTER (WHERE valid AND NOT isnan(alpha_weighted)) AS alpha_weighted_mean,
       avg(log_norm) FILTER (WHERE analysed AND NOT isnan(log_norm)) AS log_norm_mean,
       avg(log_spectral_norm) FILTER (WHERE analysed AND NOT isnan(log_spectral_norm))
                                                                     AS log_spectral_norm_mean,
       avg(log_alpha_norm) FILTER (WHERE valid AND NOT isnan(log_alpha_norm))
                                                                     AS log_alpha_norm_mean,
       avg(stable_rank) FILTER (WHERE analysed AND NOT isnan(stable_rank)) AS stable_rank_mean,
       count(*) FILTER (WHERE list_contains(warnings, 'over-trained')
                              AND phase IS DISTINCT FROM 'random-like') AS n_over_trained,
       count(*) FILTER (WHERE list_contains(warnings, 'under-trained')) AS n_under_trained,
       count(*) FILTER (WHERE warning IS NOT NULL AND warning <> '') AS n_warnings
FROM l
GROUP BY model_key;

-- Per architecture (and analysis version: alphas of different fitters are not pooled), over
-- the latest revision of each model. A layer counts once per model that contains it.
CREATE OR REPLACE VIEW arch_summary AS
WITH m AS (
    SELECT arch, analysis_version, count(*) AS models
    FROM models_latest
    GROUP BY ALL
), l AS (
    SELECT arch, analysis_version,
           count(*)                                                      AS layers,
           count(*) FILTER (WHERE valid)                                 AS fits,
           avg(alpha) FILTER (WHERE valid)                               AS alpha_mean,
           median(alpha) FILTER (WHERE valid)                            AS alpha_median,
           count(*) FILTER (WHERE valid AND alpha BETWEEN 2 AND 4)
               / nullif(count(*) FILTER (WHERE valid), 0)                AS frac_alpha_2_4,
           count(*) FILTER (WHERE valid AND alpha BETWEEN 2 AND 6)
               / nullif(count(*) FILTER (WHERE valid), 0)                AS frac_alpha_2_6,
           avg(alpha_weighted) FILTER (WHERE valid AND NOT isnan(alpha_weighted))
                                                                         AS alpha_weighted_mean,
           count(*) FILTER (WHERE list_contains(warnings, 'over-trained')
                              AND phase IS DISTINCT FROM 'random-like') AS n_over_trained,
           count(*) FILTER (WHERE list_contains(warnings, 'under-trained')) AS n_under_trained,
           count(*) FILTER (WHERE warning IS NOT NULL AND warning <> '') AS n_warnings
    FROM (SELECT *, (status = 'ok' AND alpha IS NOT NULL AND NOT isnan(alpha)) AS valid,
                 coalesce(string_split(warning, ','), []) AS warnings
          FROM layers_latest)
    GROUP BY ALL
)
SELECT m.arch, m.analysis_version, m.models,
       coalesce(l.layers, 0) AS layers, coalesce(l.fits, 0) AS fits,
       l.alpha_mean, l.alpha_median, l.frac_alpha_2_4, l.frac_alpha_2_6, l.alpha_weighted_mean,
       coalesce(l.n_over_trained, 0) AS n_over_trained,
       coalesce(l.n_under_trained, 0) AS n_under_trained,
       coalesce(l.n_warnings, 0) AS n_warnings
FROM m
LEFT JOIN l ON l.arch IS NOT DISTINCT FROM m.arch AND l.analysis_version = m.analysis_version
ORDER BY m.arch NULLS LAST, m.analysis_version;

-- A model's metrics across revisions and scan dates (one row per analysed revision), e.g.
--   SELECT * FROM history WHERE repo_id = 'bert-base-uncased' ORDER BY revision_seq;
CREATE OR REPLACE VIEW history AS
SELECT m.source, m.repo_id, m.analysis_version,
       row_number() OVER (PARTITION BY m.source, m.repo_id, m.analysis_version
                          ORDER BY m.written_at, m.model_key) AS revision_seq,
       m.revision, m.scan_date, m.written_at, m.model_key,
       m.model_key IN (SELECT model_key FROM models_latest) AS is_latest,
       m.arch, m.model_type, m.status, m.params, m.downloads, m.accuracy,
       s.* EXCLUDE (model_key)
FROM models AS m
LEFT JOIN model_summary AS s ON s.model_key = m.model_key;

-- ---------------------------------------------------------------------------------------------
-- Lineage, fine-tune deltas and quality (docs/lake.md "Lineage and quality")
-- ---------------------------------------------------------------------------------------------

-- Base-model links, one per key (model revision, base, origin). Not filtered by commit: a link
-- is a fact of the listing, true whether or not the model's analysis committed.
CREATE OR REPLACE VIEW lineage AS
SELECT * FROM raw_lineage
QUALIFY row_number() OVER (PARTITION BY source, repo_id, revision, base_source, base_repo_id, origin
                           ORDER BY written_at DESC, source DESC, scan_date DESC) = 1;

-- One link per (model revision, base): the origins that name it merged, the relation of the
-- most authoritative one (the Hub's model tree, then the card, the adapter config, torchvision).
CREATE OR REPLACE VIEW lineage_links AS
SELECT source, repo_id, revision, base_source, base_repo_id,
       arg_min(base_revision, p) AS base_revision,
       arg_min(relation, p) AS relation,
       list(origin ORDER BY p) AS origins,
       max(written_at) AS written_at
FROM (SELECT *, CASE origin WHEN 'hub:baseModels' THEN 0 WHEN 'card:base_model' THEN 1
                            WHEN 'adapter_config' THEN 2 ELSE 3 END AS p
      FROM lineage)
GROUP BY source, repo_id, revision, base_source, base_repo_id;

-- Every analysed model with a base that the lake holds under the same analysis version: the
-- base's pinned revision when the link pins one, else its latest analysed revision.
CREATE OR REPLACE VIEW model_bases AS
SELECT m.model_key, m.source, m.repo_id, m.revision, m.analysis_version, l.relation,
       l.base_source, l.base_repo_id, b.revision AS base_revision, b.model_key AS base_model_key
FROM models AS m
JOIN lineage_links AS l ON l.source = m.source AND l.repo_id = m.repo_id AND l.revision = m.revision
JOIN models AS b ON b.source = l.base_source AND b.repo_id = l.base_repo_id
                AND b.analysis_version = m.analysis_version
                AND (l.base_revision IS NULL AND b.model_key IN (SELECT model_key FROM models_latest)
                     OR b.revision = l.base_revision);

-- Distance rows of committed models (weightwatcher distances(), per tensor).
CREATE OR REPLACE VIEW deltas AS
SELECT * FROM raw_deltas
WHERE model_key IN (SELECT model_key FROM raw_models)
QUALIFY row_number() OVER (PARTITION BY model_key, base_source, base_repo_id, base_revision, tensor
                           ORDER BY written_at DESC, source DESC, scan_date DESC) = 1;

-- Per layer of a model (latest revision) and its base in the lake, matched by tensor name:
-- the change of alpha, log_norm and log_spectral_norm, the distances where computed, and ranks
-- (1 = the layer that moved most: by |delta_alpha|, and by the relative Frobenius move).
CREATE OR REPLACE VIEW finetune_deltas AS
WITH p AS (
    SELECT mb.*, f.tensor, f.longname, f.layer_id, f.file, f.kind, f.N, f.M,
           CASE WHEN f.status = 'ok' AND NOT isnan(f.alpha) THEN f.alpha END AS alpha,
           CASE WHEN b.status = 'ok' AND NOT isnan(b.alpha) THEN b.alpha END AS base_alpha,
           f.log_norm, b.log_norm AS base_log_norm,
           f.log_spectral_norm, b.log_spectral_norm AS base_log_spectral_norm
    FROM model_bases AS mb
    JOIN layers AS f ON f.model_key = mb.model_key
    JOIN layers AS b ON b.model_key = mb.base_model_key AND b.tensor = f.tensor
    WHERE mb.model_key IN (SELECT model_key FROM models_latest)
      AND f.status IN ('ok', 'fit-failed') AND b.status IN ('ok', 'fit-failed')
)
SELECT p.model_key, p.repo_id, p.revision, p.relation, p.base_model_key, p.base_repo_id,
       p.base_revision, p.analysis_version, p.tensor, p.longname, p.layer_id, p.file, p.kind,
       p.N, p.M, p.alpha, p.base_alpha, p.alpha - p.base_alpha AS delta_alpha,
       p.log_norm, p.base_log_norm, p.log_norm - p.base_log_norm AS delta_log_norm,
       p.log_spectral_norm, p.base_log_spectral_norm,
       p.log_spectral_norm - p.base_log_spectral_norm AS delta_log_spectral_norm,
       d.delta_raw, d.delta_euclidean, d.delta_cka, d.rel_delta,
       d.diff_alpha, d.diff_log_norm, d.diff_log_spectral_norm,
       rank() OVER (PARTITION BY p.model_key, p.base_model_key
                    ORDER BY abs(p.alpha - p.base_alpha) DESC NULLS LAST) AS delta_alpha_rank,
       CASE WHEN d.rel_delta IS NOT NULL THEN
           rank() OVER (PARTITION BY p.model_key, p.base_model_key
                        ORDER BY d.rel_delta DESC NULLS LAST) END AS move_rank
FROM p
LEFT JOIN deltas AS d ON d.model_key = p.model_key AND d.base_source = p.base_source
                     AND d.base_repo_id = p.base_repo_id AND d.base_revision = p.base_revision
                     AND d.tensor = p.tensor;

-- Reported quality numbers, one per key.
CREATE OR REPLACE VIEW evals AS
SELECT * FROM raw_evals
QUALIFY row_number() OVER (PARTITION BY source, repo_id, revision, task, dataset, dataset_config,
                                        dataset_split, metric, origin
                           ORDER BY written_at DESC, source DESC, scan_date DESC) = 1;

-- The numbers of each latest analysed model: rows for its revision or for every revision
-- (revision NULL); one value per (task, dataset, config, split, metric): a user CSV wins over
-- the card, the card over torchvision's enums, then the newest.
CREATE OR REPLACE VIEW model_evals AS
SELECT m.model_key, m.source, m.repo_id, m.revision, m.analysis_version,
       e.task, e.dataset, e.dataset_config, e.dataset_split, e.metric, e.metric_name, e.value,
       e.verified, e.origin
FROM models_latest AS m
JOIN evals AS e ON e.source = m.source AND e.repo_id = m.repo_id
               AND (e.revision IS NULL OR e.revision = m.revision)
QUALIFY row_number() OVER (
    PARTITION BY m.model_key, e.task, e.dataset, e.dataset_config, e.dataset_split, e.metric
    ORDER BY CASE WHEN e.origin LIKE 'csv%' THEN 0 WHEN e.origin LIKE 'card%' THEN 1 ELSE 2 END,
             e.written_at DESC) = 1;

-- Model-level spectral metrics in long form, over all layers ('all') and over all but the last
-- analysed dense layer ('no_last_fc': the seeds leave VGG's final classifier out). Same rules as
-- model_summary: alpha-based means over valid fits, log_norm over every analysed matrix.
-- "Last" = the greatest (file, layer_id): layer ids restart in each shard.
CREATE OR REPLACE VIEW model_metrics AS
WITH l AS (
    SELECT model_key, alpha, alpha_weighted, log_norm, log_alpha_norm,
           (status = 'ok' AND alpha IS NOT NULL AND NOT isnan(alpha)) AS valid,
           (status IN ('ok', 'fit-failed')) AS analysed,
           (status IN ('ok', 'fit-failed') AND kind = 'dense') AS fc,
           row_number() OVER (PARTITION BY model_key, (status IN ('ok', 'fit-failed') AND kind = 'dense')
                              ORDER BY file DESC, layer_id DESC) AS from_end
    FROM layers
    WHERE model_key IN (SELECT model_key FROM models_latest)
), a AS (
    SELECT l.model_key, v.variant,
           avg(alpha) FILTER (WHERE valid)                                      AS alpha_mean,
           avg(alpha_weighted) FILTER (WHERE valid AND NOT isnan(alpha_weighted)) AS alpha_weighted_mean,
           avg(log_norm) FILTER (WHERE analysed AND NOT isnan(log_norm))        AS log_norm_mean,
           avg(log_alpha_norm) FILTER (WHERE valid AND NOT isnan(log_alpha_norm)) AS log_alpha_norm_mean
    FROM l CROSS JOIN (VALUES ('all'), ('no_last_fc')) AS v(variant)
    WHERE v.variant = 'all' OR NOT (l.fc AND l.from_end = 1)
    GROUP BY l.model_key, v.variant
)
UNPIVOT a ON alpha_mean, alpha_weighted_mean, log_norm_mean, log_alpha_norm_mean
INTO NAME metric VALUE value;

-- The groups models are compared within: their family (config model_type, torchvision's
-- series, else the leading letters of the name: vgg11 -> vgg) and their base-model group (the
-- base a model derives from, a base model standing for its own group).
CREATE OR REPLACE VIEW model_groups AS
SELECT m.model_key, 'family' AS group_kind,
       coalesce(m.model_type, nullif(regexp_extract(lower(regexp_replace(m.repo_id, '^.*/', '')),
                                                    '^[a-z]+', 0), ''), m.repo_id) AS group_name
FROM models_latest AS m
UNION ALL
SELECT m.model_key, 'base_model' AS group_kind,
       coalesce((SELECT min(l.base_repo_id) FROM lineage_links AS l
                 WHERE l.source = m.source AND l.repo_id = m.repo_id AND l.revision = m.revision),
                m.repo_id) AS group_name
FROM models_latest AS m;

-- One point per (group, model, spectral metric, reported metric): the inputs of the correlations.
CREATE OR REPLACE VIEW quality_points AS
SELECT g.group_kind, g.group_name, m.analysis_version, mm.variant, mm.metric,
       e.task, e.dataset, e.dataset_config, e.dataset_split, e.metric AS eval_metric,
       m.model_key, m.repo_id, mm.value AS metric_value, e.value AS eval_value
FROM models_latest AS m
JOIN model_groups AS g ON g.model_key = m.model_key
JOIN model_metrics AS mm ON mm.model_key = m.model_key
JOIN model_evals AS e ON e.model_key = m.model_key
WHERE isfinite(mm.value) AND isfinite(e.value);

-- Rank correlation of each model-level metric with each reported metric, within each group of
-- at least 3 models: Spearman's rho (Pearson on average ranks) and Kendall's tau-b (pairs, ties
-- as scipy counts them); NULL where a side is constant. The permutation p-values are computed
-- from quality_points by hubscan.lake.quality.correlations (not expressible in SQL).
CREATE OR REPLACE VIEW quality_correlations AS
WITH p AS (
    SELECT *, dense_rank() OVER (ORDER BY group_kind, group_name, analysis_version, variant, metric,
                                          task NULLS FIRST, dataset NULLS FIRST,
                                          dataset_config NULLS FIRST, dataset_split NULLS FIRST,
                                          eval_metric) AS pid
    FROM quality_points
), r AS (
    SELECT *,
           rank() OVER (PARTITION BY pid ORDER BY metric_value)
               + (count(*) OVER (PARTITION BY pid, metric_value) - 1) / 2.0 AS rx,
           rank() OVER (PARTITION BY pid ORDER BY eval_value)
               + (count(*) OVER (PARTITION BY pid, eval_value) - 1) / 2.0 AS ry
    FROM p
), s AS (
    SELECT pid, any_value(group_kind) AS group_kind, any_value(group_name) AS group_name,
           any_value(analysis_version) AS analysis_version, any_value(variant) AS variant,
           any_value(metric) AS metric, any_value(task) AS task, any_value(dataset) AS dataset,
           any_value(dataset_config) AS dataset_config, any_value(dataset_split) AS dataset_split,
           any_value(eval_metric) AS eval_metric, count(*) AS n,
           corr(rx, ry) AS rho, corr(metric_value, eval_value) AS r
    FROM r GROUP BY pid
), k AS (
    SELECT a.pid,
           sum(sign(a.metric_value - b.metric_value) * sign(a.eval_value - b.eval_value)) AS s,
           count(*) AS n0,
           count(*) FILTER (WHERE a.metric_value = b.metric_value) AS tx,
           count(*) FILTER (WHERE a.eval_value = b.eval_value) AS ty
    FROM p AS a JOIN p AS b ON a.pid = b.pid AND a.model_key < b.model_key
    GROUP BY a.pid
)
SELECT s.group_kind, s.group_name, s.analysis_version, s.variant, s.metric, s.task, s.dataset,
       s.dataset_config, s.dataset_split, s.eval_metric, s.n,
       CASE WHEN isnan(s.rho) THEN NULL ELSE s.rho END AS spearman,
       k.s / nullif(sqrt((k.n0 - k.tx) * (k.n0 - k.ty)), 0) AS kendall,
       CASE WHEN isnan(s.r) THEN NULL ELSE s.r END AS pearson
FROM s JOIN k ON k.pid = s.pid
WHERE s.n >= 3;
