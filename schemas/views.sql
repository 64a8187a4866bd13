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
