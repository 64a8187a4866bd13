"""Model cards on the Hub → ``models.accuracy``: the listing's ``cardData`` (YAML front matter,
``model-index`` eval results) through the real ``huggingface_hub`` client, against the fake
hub, which serves a repo's ``README.md`` front matter as the Hub does."""

from __future__ import annotations

from huggingface_hub import HfApi

from hubscan.analysis.model import analyze_model
from hubscan.options import AnalysisOptions
from hubscan.sources.hf import HfSource, card_accuracy
from hubscan.testing.checkpoints import make_demo_model
from hubscan.testing.fakehub.demo import add_demo_repos
from hubscan.testing.zoo import DemoModel, model_card


def _repo(hub, tmp_path, name, accuracy):
    folder = make_demo_model(tmp_path / name, "mlp", width=32, layers=2, seed=1)
    card = model_card(DemoModel(name, "mlp", None, accuracy=accuracy, description="a test model"))
    (folder / "README.md").write_text(card)
    return add_demo_repos(hub, [folder])[0]


def test_listing_and_resolve_carry_the_cards_accuracy_into_the_models_row(fakehub, tmp_path):
    with_acc = _repo(fakehub, tmp_path, "scored", 74.6)
    _repo(fakehub, tmp_path, "unscored", None)
    info = HfApi().model_info(with_acc.repo_id)
    assert [(r.metric_type, r.metric_value) for r in info.card_data.eval_results] == [("accuracy", 74.6)]

    refs = {r.repo_id: r for r in HfSource().list(author="hubscan-demo")}
    scored, unscored = refs["hubscan-demo/scored"], refs["hubscan-demo/unscored"]
    assert scored.meta["accuracy"] == 74.6
    assert scored.meta["accuracy_source"] == "model-index: DemoNet-100 (synthetic) / validation / Top-1 accuracy"
    assert "accuracy" not in unscored.meta
    (resolved,) = HfSource().resolve("hf://hubscan-demo/scored")
    assert resolved.meta["accuracy"] == 74.6

    result = analyze_model(scored, AnalysisOptions(compare=False))
    assert result.model["status"] == "ok" and result.model["accuracy"] == 74.6
    assert analyze_model(unscored, AnalysisOptions(compare=False)).model["accuracy"] is None


def test_a_repo_without_card_metadata_shows_no_accuracy(fakehub):
    fakehub.add_model("acme/plain", {"w.weight": __import__("numpy").ones((8, 8), "float32")},
                      extra_files={"README.md": b"# no front matter\n"})
    (ref,) = HfSource().list(author="acme")
    assert "accuracy" not in ref.meta


def test_card_accuracy_reads_only_accuracy_metrics():
    from huggingface_hub import EvalResult, ModelCardData

    def card(*results):
        return ModelCardData(model_name="m", eval_results=list(results))

    f1 = EvalResult(task_type="text-classification", dataset_type="glue", dataset_name="GLUE",
                    metric_type="f1", metric_value=0.91)
    acc = EvalResult(task_type="text-classification", dataset_type="glue", dataset_name="GLUE",
                     metric_type="accuracy", metric_value=0.88)
    assert card_accuracy(card(f1, acc)) == {"accuracy": 0.88, "accuracy_source": "model-index: GLUE"}
    assert card_accuracy(card(f1)) == {}
    assert card_accuracy(None) == {}
    assert card_accuracy(ModelCardData()) == {}
