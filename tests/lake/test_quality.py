"""Quality views on torchvision-style series: the correlations the lake computes equal scipy's,
the permutation p-values equal scipy's exact permutation test, the seeds' "all layers but the
last FC" variant leaves exactly that layer out, and empty lakes say so."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from hubscan.lake import Lake
from hubscan.lake.evals_csv import import_evals_csv, read_evals_csv
from hubscan.lake.quality import correlations, kendall_tau_b, permutation_p, spearman
from tests import quality_series as qs


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return qs.build_lake(tmp_path_factory.mktemp("quality"))


_MEANS: dict[tuple[str, str, bool], dict[str, float]] = {}


def _layer_means(lake: Lake, repo: str, *, drop_last_fc: bool) -> dict[str, float]:
    """A model's metric means computed here, in numpy, from its layer rows (memoised)."""
    key = (lake.uri, repo, drop_last_fc)
    if key not in _MEANS:
        _MEANS[key] = _compute_means(lake, repo, drop_last_fc=drop_last_fc)
    return _MEANS[key]


def _compute_means(lake: Lake, repo: str, *, drop_last_fc: bool) -> dict[str, float]:
    rows = lake.query(f"""SELECT tensor, kind, file, layer_id, status, alpha, alpha_weighted, log_norm,
                                 log_alpha_norm FROM layers WHERE repo_id = '{repo}'
                          ORDER BY file, layer_id""").to_pylist()
    analysed = [r for r in rows if r["status"] in ("ok", "fit-failed")]
    if drop_last_fc:
        last = [r for r in analysed if r["kind"] == "dense"][-1]
        analysed = [r for r in analysed if r is not last]
    ok = [r for r in analysed if r["status"] == "ok"]
    return {"alpha_mean": np.mean([r["alpha"] for r in ok]),
            "alpha_weighted_mean": np.mean([r["alpha_weighted"] for r in ok]),
            "log_norm_mean": np.mean([r["log_norm"] for r in analysed]),
            "log_alpha_norm_mean": np.mean([r["log_alpha_norm"] for r in ok])}


def test_evals_come_from_cards_and_the_csv(lake):
    ev = lake.query("SELECT repo_id, metric, value, origin FROM model_evals ORDER BY repo_id").to_pylist()
    got = {r["repo_id"]: (r["value"], r["origin"]) for r in ev}
    assert got == {**{n: (a, "card:model-index") for n, a in qs.VGG.items()},
                   **{n: (a, "csv:acc.csv") for n, a in qs.RESNET.items()}}


def test_model_metrics_match_the_layer_rows(lake):
    mm = lake.query("""SELECT m.repo_id, x.variant, x.metric, x.value FROM model_metrics x
                       JOIN models m USING (model_key)""").to_pylist()
    for repo in [*qs.VGG, *qs.RESNET]:
        for variant, drop in (("all", False), ("no_last_fc", True)):
            want = _layer_means(lake, repo, drop_last_fc=drop)
            got = {r["metric"]: r["value"] for r in mm if r["repo_id"] == repo and r["variant"] == variant}
            assert got.keys() == want.keys()
            for k in want:
                assert got[k] == pytest.approx(want[k], rel=1e-12), (repo, variant, k)
    # the classifier is Gaussian: leaving it out changes the mean alpha
    a = {(r["repo_id"], r["variant"]): r["value"] for r in mm if r["metric"] == "alpha_mean"}
    assert all(a[(n, "all")] != a[(n, "no_last_fc")] for n in qs.VGG)


def test_correlations_equal_scipy(lake):
    rows = lake.query("SELECT * FROM quality_correlations WHERE group_kind = 'family'").to_pylist()
    assert {(r["group_name"], r["n"]) for r in rows} == {("vgg", 4), ("resnet", 5)}
    assert {r["variant"] for r in rows} == {"all", "no_last_fc"}
    assert {r["metric"] for r in rows} == {"alpha_mean", "alpha_weighted_mean", "log_norm_mean",
                                           "log_alpha_norm_mean"}
    assert len(rows) == 2 * 2 * 4
    for r in rows:
        fam = qs.VGG if r["group_name"] == "vgg" else qs.RESNET
        xs = [_layer_means(lake, n, drop_last_fc=r["variant"] == "no_last_fc")[r["metric"]] for n in fam]
        ys = list(fam.values())
        assert r["spearman"] == pytest.approx(stats.spearmanr(xs, ys).statistic, abs=1e-12)
        assert r["kendall"] == pytest.approx(stats.kendalltau(xs, ys).statistic, abs=1e-12)
        assert r["pearson"] == pytest.approx(stats.pearsonr(xs, ys).statistic, abs=1e-12)
    # the planted relation: heavier tails (smaller alpha) with better accuracy
    rho = {(r["group_name"], r["variant"]): r["spearman"] for r in rows if r["metric"] == "alpha_mean"}
    assert rho[("resnet", "no_last_fc")] < -0.5 and rho[("vgg", "no_last_fc")] < 0


def test_permutation_p_values_equal_scipys_exact_test(lake):
    out = correlations(lake)
    fam_rows = [c for c in out if c.group_kind == "family"]
    assert len(fam_rows) == 16 and all(c.permutations == 0 for c in fam_rows)  # n ≤ 8: exact
    for c in fam_rows:
        fam = qs.VGG if c.group_name == "vgg" else qs.RESNET
        xs = np.array([_layer_means(lake, n, drop_last_fc=c.variant == "no_last_fc")[c.metric] for n in fam])
        ys = np.array(list(fam.values()))
        # the exact two-sided test, with scipy's statistics, pairing by pairing
        for stat, p in ((lambda a, b: stats.spearmanr(a, b).statistic, c.p_spearman),
                        (lambda a, b: stats.kendalltau(a, b).statistic, c.p_kendall)):
            obs = abs(stat(xs, ys))
            null = [abs(stat(xs, ys[list(perm)])) for perm in itertools.permutations(range(len(ys)))]
            assert p == pytest.approx(np.mean([v >= obs - 1e-12 for v in null]), abs=1e-12)


def test_random_permutations_are_seeded_and_close_to_exact():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(12)
    y = x + rng.standard_normal(12)
    a = permutation_p(x, y, permutations=4000, seed=1, exact_up_to=8)
    b = permutation_p(x, y, permutations=4000, seed=1, exact_up_to=8)
    assert a == b and a[2] == 4000
    ref_r = stats.permutation_test((x, y), lambda u, v: abs(stats.spearmanr(u, v).statistic),
                                   permutation_type="pairings", alternative="greater",
                                   n_resamples=3000, rng=0).pvalue
    assert a[0] == pytest.approx(ref_r, abs=0.03)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    ties = [1, 1, 2, 2, 3]
    assert kendall_tau_b(ties, [1, 2, 2, 3, 3]) == pytest.approx(
        stats.kendalltau(ties, [1, 2, 2, 3, 3]).statistic)
    assert spearman([1, 1, 1], [1, 2, 3]) is None and kendall_tau_b([1, 1, 1], [1, 2, 3]) is None


def test_no_accuracy_anywhere_gives_no_rows(tmp_path):
    lake = qs.build_lake(tmp_path, cards=False, csv=False)
    assert lake.query("SELECT count(*) AS n FROM model_evals").column("n")[0].as_py() == 0
    assert lake.query("SELECT count(*) AS n FROM quality_correlations").column("n")[0].as_py() == 0
    assert correlations(lake) == []


def test_csv_import_reports_bad_lines_and_overrides_cards(tmp_path, lake):
    p = tmp_path / "x.csv"
    p.write_text("model,metric,value\nlocal://vgg11,acc@1,50%\n,acc@1,3\nhf://a/b@abc,f1,0.5\n"
                 "tv://resnet50:IMAGENET1K_V2,acc@1,80.8\nlocal://vgg13,acc@1,inf\n")
    got = read_evals_csv(p)
    assert [(r["source"], r["repo_id"], r["revision"], r["value"]) for r in got.rows] == [
        ("local", "vgg11", None, 50.0), ("hf", "a/b", "abc", 0.5), ("tv", "resnet50", None, 80.8)]
    assert [line for line, _ in got.skipped] == [3, 6]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,score\nx,1\n")
    with pytest.raises(Exception, match="needs columns metric, value and model"):
        read_evals_csv(bad)
    # a user's number wins over the card's for the same (task, dataset, metric)
    lake2 = qs.build_lake(tmp_path / "l2", csv=False)
    over = tmp_path / "over.csv"
    over.write_text("model,task,dataset,dataset_split,metric,value\n"
                    "local://vgg11,image-classification,imagenet-1k,validation,acc@1,1.5\n")
    import_evals_csv(lake2, over)
    v = lake2.query("SELECT value, origin FROM model_evals WHERE repo_id = 'vgg11'").to_pylist()
    assert v == [{"value": 1.5, "origin": "csv:over.csv"}]


def test_base_model_groups(fakehub, tmp_path):
    """A base and its fine-tunes form a group; their card accuracies correlate within it."""
    from hubscan.engine.scan import run_scan
    from hubscan.engine.spec import loads_spec
    from tests import lineage_family as fam

    fam.add_family(fakehub)
    spec = loads_spec(f'[scan]\nname = "q"\nlake = "{tmp_path / "lk"}"\n[[sources]]\nkind = "hf"\nauthor = "acme"\n')
    assert run_scan(spec, executor="local", progress=False).status == "completed"
    lk = Lake(tmp_path / "lk")
    groups = {r["repo_id"]: r["group_name"] for r in lk.query(
        """SELECT m.repo_id, g.group_name FROM model_groups g JOIN models m USING (model_key)
           WHERE g.group_kind = 'base_model'""").to_pylist()}
    assert groups == {fam.BASE: fam.BASE, fam.LIGHT: fam.BASE, fam.HEAVY: fam.BASE, fam.FP16: fam.BASE,
                      fam.LORA: fam.BASE}
    rows = lk.query("""SELECT * FROM quality_correlations WHERE group_kind = 'base_model'
                       AND variant = 'all' AND metric = 'alpha_mean'""").to_pylist()
    assert len(rows) == 1 and rows[0]["n"] == 3  # base, ft-light, ft-heavy have accuracies
    acc = {fam.BASE: 0.80, fam.LIGHT: 0.81, fam.HEAVY: 0.62}
    alpha = {r["repo_id"]: r["alpha_mean"] for r in lk.query(
        "SELECT repo_id, alpha_mean FROM models").to_pylist()}
    xs = [alpha[k] for k in acc]
    assert rows[0]["spearman"] == pytest.approx(stats.spearmanr(xs, list(acc.values())).statistic)


def test_large_groups_use_the_asymptotic_kendall_p():
    rng = np.random.default_rng(7)
    x = rng.standard_normal(300)
    y = np.round(0.2 * x + rng.standard_normal(300), 1)  # ties in y
    p_r, p_t, b = permutation_p(x, y, permutations=2000, seed=0)
    assert b == 2000
    assert p_t == pytest.approx(stats.kendalltau(x, y, method="asymptotic").pvalue, rel=1e-9)
    assert p_r == pytest.approx(stats.spearmanr(x, y).pvalue, abs=0.02)  # the t test is close here
    from hubscan.lake.quality import kendall_p_asymptotic

    small = np.arange(40.0)
    noisy = small + rng.standard_normal(40) * 8
    assert kendall_p_asymptotic(small, noisy) == pytest.approx(
        stats.kendalltau(small, noisy, method="asymptotic").pvalue, rel=1e-9)
