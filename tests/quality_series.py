"""Torchvision-style model series with known accuracies, analysed into a real lake.

Two families, as in the seeds' figures: ``vgg11 … vgg19`` (accuracy in each folder's model
card, ``model-index``) and ``resnet18 … resnet152`` (accuracy from a user CSV). Each model is
three dense layers whose entries are Pareto with an exponent that falls as the model gets
"better", so mean alpha and accuracy are (noisily) anti-correlated, plus a Gaussian final
classifier whose alpha the seeds' "all layers but the last FC" variant leaves out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hubscan.analysis.model import analyze_model
from hubscan.lake import Lake
from hubscan.options import AnalysisOptions
from hubscan.sources import resolve
from hubscan.testing import checkpoints as ck

VGG = {"vgg11": 69.02, "vgg13": 69.93, "vgg16": 71.59, "vgg19": 72.38}
RESNET = {"resnet18": 69.76, "resnet34": 73.31, "resnet50": 76.13, "resnet101": 77.37, "resnet152": 78.31}
#: Pareto entry exponents per model (smaller = heavier tail = "better"), a little out of order
TAIL = {"vgg11": 3.2, "vgg13": 2.6, "vgg16": 2.9, "vgg19": 2.2,
        "resnet18": 3.4, "resnet34": 3.0, "resnet50": 2.4, "resnet101": 2.7, "resnet152": 2.1}
OPTIONS = AnalysisOptions(compare=False, mp_fit=False)


def _card(acc: float) -> str:
    return "\n".join([
        "---", "license: bsd-3-clause", "model-index:", "- name: m", "  results:", "  - task:",
        "      type: image-classification", "    dataset:", "      type: imagenet-1k",
        "      name: ImageNet", "      split: validation", "    metrics:", "    - type: acc@1",
        f"      value: {acc}", "---", "", "# a series model", ""])


def write_series(root: Path, *, cards: bool = True) -> dict[str, Path]:
    """Model folders under ``root``; VGG cards carry accuracies when ``cards``."""
    out = {}
    for i, name in enumerate([*VGG, *RESNET]):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        t = {f"features.{j}.weight": ck.pareto_matrix(96, 48, TAIL[name], seed=100 * i + j) for j in range(3)}
        t["classifier.weight"] = ck.gaussian_matrix(10, 48, seed=100 * i + 9)
        ck.write_safetensors(folder / "model.safetensors", t)
        if cards and name in VGG:
            (folder / "README.md").write_text(_card(VGG[name]))
        out[name] = folder
    return out


def write_csv(path: Path) -> Path:
    lines = ["model,source,task,dataset,metric,value"]
    lines += [f"{n},local,image-classification,imagenet-1k,acc@1,{a}" for n, a in RESNET.items()]
    lines.append("ghost,local,image-classification,imagenet-1k,acc@1,not-a-number")
    path.write_text("\n".join(lines) + "\n")
    return path


def build_lake(tmp: Path, *, cards: bool = True, csv: bool = True) -> Lake:
    lake = Lake(tmp / "lake")
    for folder in write_series(tmp / "models", cards=cards).values():
        lake.write(analyze_model(resolve(str(folder))[0], OPTIONS))
    if csv:
        from hubscan.lake.evals_csv import import_evals_csv

        import_evals_csv(lake, write_csv(tmp / "acc.csv"))
    return lake
