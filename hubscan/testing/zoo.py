"""The demo zoo: the generated models ``hubscan demo`` and the demo hub serve.

A demo is only convincing if its models are what they claim, so each one is a Hub-shaped
folder — weights, ``config.json``, a ``README.md`` model card — whose spectra were checked
with the real analysis (``tests/testing/test_demo_models.py``):

* ``*-ht`` and the ``resnet-ep*`` series: every weight matrix an MP bulk that continues
  into a planted power-law tail (``checkpoints.HeavyTail``), so fitted alphas lie in
  [2, 4] and the phase is ``heavy-tailed``;
* ``*-gauss``: Gaussian weights — ``random-like`` (a Marchenko–Pastur bulk, alpha large);
* ``resnet-ep10`` … ``resnet-ep50``: one small ResNet "checkpointed during training", each
  with a known top-1 accuracy (on its model card's ``model-index`` and, torchvision-style,
  as ``acc@1`` in ``config.json``) that falls as its mean alpha rises, as in the papers'
  VGG and ResNet series — so ``hubscan plot series`` and the report's alpha-vs-accuracy
  picture have something to show offline.

Sizes are a few hundred wide (every matrix has ≥ 27 eigenvalues to fit, most 100–576);
the whole default zoo is 12 models, ≈ 55 MB. Everything is deterministic in ``seed``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .checkpoints import DemoKind, HeavyTail, make_demo_model, make_sharded_model

__all__ = [
    "DEMO_AUTHOR",
    "DemoModel",
    "ZOO",
    "demo_models",
    "ensure_demo_models",
    "hub_attributes",
    "model_card",
    "write_demo_model",
]

#: The owner of the demo repos on a loopback hub (``hf://hubscan-demo/<name>``).
DEMO_AUTHOR = "hubscan-demo"

#: Per kind: a few hundred wide, classifier heads of 100 classes (≥ 100 eigenvalues), the
#: CNN with an ImageNet-style 7×7 stem (its 3-channel conv pools 49 slices).
_SIZES: dict[str, dict[str, int]] = {
    "mlp": {"width": 256, "classes": 100},
    "cnn": {"width": 64, "classes": 100, "stem": 7},
    "gpt2": {"width": 256, "vocab": 2000},
    "bert-tiny": {"width": 256, "vocab": 2000},
}

#: What a Hub listing says about each kind (library, task).
_HUB: dict[str, tuple[str, str]] = {
    "mlp": ("pytorch", "image-classification"),
    "cnn": ("pytorch", "image-classification"),
    "gpt2": ("transformers", "text-generation"),
    "bert-tiny": ("transformers", "feature-extraction"),
}

#: The synthetic benchmark the demo accuracies are "measured" on (named as such on the cards).
_DATASET = ("DemoNet-100 (synthetic)", "hubscan-demo/demonet-100")


@dataclass(frozen=True)
class DemoModel:
    """One demo model: how it is generated and what its card says.

    Attributes:
        name: the repo name (``hubscan-demo/<name>`` on a hub) and the local folder name.
        kind: ``mlp``, ``cnn``, ``gpt2`` or ``bert-tiny`` (``checkpoints.demo_layout``).
        tail: ``None`` for Gaussian weights, else how the heavy tail is made.
        shards: weight files (``model-0000k-of-0000n.safetensors`` + index when > 1).
        accuracy: top-1 accuracy in percent, or ``None`` (no evaluation published).
        seed: the generator's seed (values depend on it and the tensor name only).
        description: one line for the model card.
    """

    name: str
    kind: DemoKind
    tail: HeavyTail | None
    shards: int = 1
    accuracy: float | None = None
    seed: int = 0
    description: str = ""

    @property
    def heavy_tailed(self) -> bool:
        return self.tail is not None

    @property
    def family(self) -> str:
        """``heavy-tailed`` or ``gaussian``: what the spectra are meant to be."""
        return "heavy-tailed" if self.tail is not None else "gaussian"


def _ht(alpha: float) -> HeavyTail:
    return HeavyTail("spectrum", alpha)


#: The base mix, in the order ``demo_models`` hands them out. The first six are the kinds a
#: scan meets (dense, conv, GPT-2 ``Conv1D``, BERT, heavy-tailed and Gaussian, a sharded
#: checkpoint); then BERT heavy-tailed and the ResNet series (planted α 3.4 → 2.4, accuracy up).
ZOO: tuple[DemoModel, ...] = (
    DemoModel("mlp-ht", "mlp", _ht(2.6), description="an MLP with heavy-tailed weight spectra"),
    DemoModel("cnn-gauss", "cnn", None, description="a small ResNet at initialisation (Gaussian weights)"),
    DemoModel("gpt2-ht", "gpt2", _ht(2.8), description="a GPT-2-shaped model with heavy-tailed weight spectra"),
    DemoModel("bert-gauss", "bert-tiny", None, description="a BERT-shaped model at initialisation (Gaussian weights)"),
    DemoModel("mlp-gauss", "mlp", None, description="an MLP at initialisation (Gaussian weights)"),
    DemoModel("gpt2-gauss", "gpt2", None, shards=2,
              description="a GPT-2-shaped model at initialisation, in two shards"),
    DemoModel("bert-ht", "bert-tiny", _ht(2.5), description="a BERT-shaped model with heavy-tailed weight spectra"),
    *(DemoModel(f"resnet-ep{ep}", "cnn", _ht(a), accuracy=acc,
                description=f"a small ResNet after {ep} epochs of (simulated) training")
      for ep, a, acc in ((10, 3.4, 61.2), (20, 3.15, 66.5), (30, 2.9, 70.1), (40, 2.65, 72.8), (50, 2.4, 74.6))),
)


def demo_models(n: int = len(ZOO), *, seed: int = 0) -> list[DemoModel]:
    """``n`` demo models: the zoo in order, cycled with fresh seeds (``mlp-ht-2`` …) past its end.

    Model ``i`` gets generator seed ``1000·seed + i``; a non-zero ``seed`` also suffixes the
    names (``-s<seed>``), so two demo sets never share a name.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    out = []
    for i in range(n):
        base = ZOO[i % len(ZOO)]
        cycle = i // len(ZOO)
        name = base.name + (f"-{cycle + 1}" if cycle else "") + (f"-s{seed}" if seed else "")
        out.append(replace(base, name=name, seed=seed * 1000 + i))
    return out


def model_card(model: DemoModel) -> str:
    """The ``README.md`` of a demo repo: YAML front matter (library, task, tags and, when the
    model has an accuracy, a ``model-index`` eval result, as the Hub's cards carry them),
    then what the model is."""
    from huggingface_hub import EvalResult, ModelCardData

    library, task = _HUB[model.kind]
    evals = None
    if model.accuracy is not None:
        evals = [EvalResult(task_type=task, dataset_name=_DATASET[0], dataset_type=_DATASET[1],
                            dataset_split="validation", metric_type="accuracy",
                            metric_value=model.accuracy, metric_name="Top-1 accuracy")]
    data = ModelCardData(library_name=library, pipeline_tag=task, license="apache-2.0",
                         tags=list(_tags(model)), model_name=model.name if evals else None,
                         eval_results=evals)
    spectra = ("every weight matrix is a Marchenko–Pastur bulk continued by a planted power-law "
               f"tail (α = {model.tail.exponent:g})" if model.tail is not None
               else "every weight matrix has i.i.d. Gaussian entries (a random-like spectrum)")
    acc = (f"\n\nTop-1 accuracy {model.accuracy:g} % on {_DATASET[0]} (a made-up benchmark: "
           "the number is part of the demo).") if model.accuracy is not None else ""
    return (f"---\n{data.to_yaml()}\n---\n\n# {DEMO_AUTHOR}/{model.name}\n\n"
            f"A generated demo model for hubscan: {model.description}; {spectra}.{acc}\n")


def _tags(model: DemoModel) -> tuple[str, ...]:
    return (DEMO_AUTHOR, model.family, model.kind)


def hub_attributes(model: DemoModel, index: int) -> dict[str, Any]:
    """What a hub's listing shows for the model (``FakeHub.add_repo`` keywords)."""
    library, task = _HUB[model.kind]
    return {"library_name": library, "pipeline_tag": task, "tags": list(_tags(model)),
            "downloads": 10_000 - 100 * index, "likes": 50 - index}


def write_demo_model(folder: str | Path, model: DemoModel) -> Path:
    """Write one demo model folder: weights, ``config.json`` (``hubscan_demo`` records how it
    was made and, torchvision-style, its ``acc@1``), and ``README.md`` (:func:`model_card`)."""
    folder = Path(folder)
    meta = {"name": model.name, **({"acc@1": model.accuracy} if model.accuracy is not None else {})}
    kw: dict[str, Any] = dict(seed=model.seed, heavy_tailed=model.tail or False,
                              metadata=meta, **_SIZES[model.kind])
    if model.shards > 1:
        make_sharded_model(folder, model.kind, shards=model.shards, **kw)
    else:
        make_demo_model(folder, model.kind, **kw)
    (folder / "README.md").write_text(model_card(model))
    return folder


_MARKER = ".hubscan-demo.json"
#: Bump when the zoo's content changes, so old demo folders are regenerated.
ZOO_VERSION = 2


def ensure_demo_models(path: str | Path, *, n_models: int = len(ZOO), seed: int = 0) -> list[Path]:
    """Write ``demo_models(n_models, seed=seed)`` under ``path`` unless already there.

    Returns the model folders, in zoo order. A marker file records what was generated, so a
    second call with the same arguments reuses the folders (and their content hashes).
    """
    root = Path(path)
    models = demo_models(n_models, seed=seed)
    want = {"n_models": n_models, "seed": seed, "version": ZOO_VERSION}
    folders = [root / m.name for m in models]
    marker = root / _MARKER
    if marker.exists() and _read(marker) == want and all(f.is_dir() for f in folders):
        return folders
    root.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for folder, model in zip(folders, models):
        if folder.is_dir():  # an older demo's folder: start clean (no stale shards)
            shutil.rmtree(folder)
        write_demo_model(folder, model)
    marker.write_text(json.dumps(want))
    return folders


def _read(marker: Path) -> Any:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
