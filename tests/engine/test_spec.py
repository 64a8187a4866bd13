"""Scan specs: every shipped job parses; unknown keys and bad values fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubscan.engine.spec import ScanSpec, load_spec, loads_spec, parse_bytes
from hubscan.errors import SpecError
from hubscan.options import AnalysisOptions

ROOT = Path(__file__).resolve().parents[2]

FULL = """
[scan]
name = "nightly-top"
lake = "s3://bucket/lake"
schedule = "0 2 * * *"

[[sources]]
kind = "demo"
path = "demo-ckpts"
n_models = 4

[[sources]]
kind = "demo"
path = "more"

[analysis]
convention = "seed"
min_evals = 10
keep_spectra = false

[resources]
workers = 3
models_per_worker = 1
max_inflight_bytes = "2GiB"
prefetch_bytes = 1048576
[resources.analyze]
num_cpus = 2
num_gpus = 0.5
[resources.fetch]
num_cpus = 0.5

[retry]
attempts = 5
backoff_s = 0.5
max_backoff_s = 10
model_timeout_s = 30

[limits]
max_models = 7
max_bytes_per_model = "20GB"
allow_bin = true
"""


def test_full_spec_round_trip():
    spec = loads_spec(FULL)
    assert isinstance(spec, ScanSpec)
    assert (spec.name, spec.lake, spec.schedule) == ("nightly-top", "s3://bucket/lake", "0 2 * * *")
    assert spec.timezone == "UTC"  # the default
    assert [s.kind for s in spec.sources] == ["demo", "demo"]
    assert dict(spec.sources[0].filters) == {"path": "demo-ckpts", "n_models": 4}
    assert spec.analysis == AnalysisOptions(convention="seed", min_evals=10, keep_spectra=False)
    r = spec.resources
    assert (r.workers, r.models_per_worker, r.max_inflight_bytes, r.prefetch_bytes) == (3, 1, 2 * 2**30, 2**20)
    assert (r.analyze.num_cpus, r.analyze.num_gpus, r.fetch.num_cpus) == (2.0, 0.5, 0.5)
    assert (spec.retry.attempts, spec.retry.backoff_s, spec.retry.model_timeout_s) == (5, 0.5, 30.0)
    assert (spec.limits.max_models, spec.limits.max_bytes_per_model, spec.limits.allow_bin) == (7, 20 * 10**9, True)
    d = spec.to_dict()
    assert d["sources"][0] == {"kind": "demo", "path": "demo-ckpts", "n_models": 4}
    assert '"convention": "seed"' in spec.to_json()


def test_defaults():
    spec = loads_spec('[scan]\nname="x"\nlake="lake"\n[[sources]]\nkind="demo"\n')
    assert spec.analysis == AnalysisOptions()
    assert spec.schedule is None and spec.limits.max_models is None
    assert spec.retry.attempts == 3 and spec.resources.models_per_worker == 2


@pytest.mark.parametrize("path", sorted((ROOT / "jobs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_jobs_parse(path):
    spec = load_spec(path)
    assert spec.name and spec.lake and spec.sources
    assert spec.path == str(path)


def test_shipped_jobs_exist():
    names = {p.name for p in (ROOT / "jobs").glob("*.toml")}
    assert {"demo.toml", "hf-top-text.toml", "torchvision-imagenet.toml"} <= names


BASE = '[scan]\nname="x"\nlake="lake"\n[[sources]]\nkind="demo"\n'


@pytest.mark.parametrize("text, needle", [
    ('[scan]\nname="x"\nlake="l"\nlimit=3\n[[sources]]\nkind="demo"\n', "[scan] unknown key 'limit'"),
    (BASE + "[limits]\nmax_model = 10\n", "[limits] unknown key 'max_model'"),
    (BASE + "[resources]\nworkers = -1\n", "workers must be >= 0"),
    (BASE + "[resources]\nmax_inflight_bytes = \"8 parsecs\"\n", "max_inflight_bytes"),
    (BASE + "[resources.analyze]\nnum_gpu = 1\n", "[resources.analyze] unknown key 'num_gpu'"),
    (BASE + "[resources.analyze]\nnum_gpus = 1.5\n", "whole number"),
    (BASE + "[analysis]\nconvention = \"both\"\n", "[analysis] convention must be one of 'ww', 'seed'"),
    (BASE + "[analysis]\nmin_evals = true\n", "min_evals must be an integer"),
    (BASE + "[analysis]\nmp_fit = 1\n", "mp_fit must be true or false"),
    (BASE + "[analysis]\nalpha = 2\n", "[analysis] unknown key 'alpha'"),
    (BASE + "[retry]\nattempts = 0\n", "attempts must be >= 1"),
    (BASE + "[retry]\nbackoff_s = 5\nmax_backoff_s = 1\n", "max_backoff_s must be >= backoff_s"),
    (BASE + "[limits]\nallow_bin = \"yes\"\n", "allow_bin must be bool"),
    ('[scan]\nname="x"\nlake="l"\nschedule="every night"\n[[sources]]\nkind="demo"\n', "not a valid cron"),
    ('[scan]\nname="x"\nlake="l"\ntimezone="Mars/Olympus"\n[[sources]]\nkind="demo"\n', "timezone 'Mars/Olympus' is not an IANA"),
    ('[scan]\nname="x"\nlake="l"\n', "at least one [[sources]]"),
    ('[scan]\nname="x"\nlake="l"\n[[sources]]\nkind="ftp"\n', "kind must be one of hf, tv, local, hf-cache, demo"),
    ('[scan]\nname="x"\nlake="l"\n[[sources]]\nkind="demo"\nfilter="a"\n', "unknown key 'filter'"),
    ('[scan]\nname="has space"\nlake="l"\n[[sources]]\nkind="demo"\n', "name must be"),
    ('[scan]\nname="x"\n[[sources]]\nkind="demo"\n', "lake is required"),
    ('[scan]\nname="x"\nlake="l"\n[[sources]]\nkind="demo"\n[extra]\na=1\n', "[top level] unknown key 'extra'"),
    ('[scan\nname="x"', "invalid TOML"),
])
def test_bad_specs_name_the_key(text, needle):
    with pytest.raises(SpecError) as info:
        loads_spec(text, origin="jobs/bad.toml")
    msg = str(info.value)
    assert needle in msg
    assert msg.startswith("jobs/bad.toml")


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "nope.toml")


@pytest.mark.parametrize("value, expected", [
    (0, 0), (4096, 4096), ("512MiB", 512 * 2**20), ("20GB", 20 * 10**9), ("1.5 GiB", int(1.5 * 2**30)),
    ("100", 100), ("3kb", 3000),
])
def test_parse_bytes(value, expected):
    assert parse_bytes(value) == expected


@pytest.mark.parametrize("value", [-1, True, "lots", "5 XB", 1.5])
def test_parse_bytes_rejects(value):
    with pytest.raises(SpecError):
        parse_bytes(value)


def test_retry_backoff_and_deadline():
    r = loads_spec(BASE + "[retry]\nbackoff_s = 1\nmax_backoff_s = 5\nmodel_timeout_s = 10\nmin_bytes_per_s = 100\n").retry
    assert [r.backoff(a) for a in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]
    assert r.backoff(2, jitter=0.5) == 3.0
    assert r.model_deadline_s(1000) == 20.0
