"""The spectra of dequantised weights (issue 13).

1. Parity: for every format, alpha, xmin and the norm columns hubscan computes on the
   matrix its reader dequantised equal weightwatcher 0.7.7's on the same float matrix
   (the reference dequantisation, which tests/readers/test_quant_dequant.py shows is
   bit-identical): |Δα| ≤ 1e-4.
2. What quantisation does to a heavy-tailed matrix (Student-t entries, ν = 2, α ≈ 2.7):
   |α(dequantised) − α(float original)| over four seeds, measured here with hubscan's
   round-to-nearest packers (max over the seeds):

   ======================  =========  ======================  =========
   format                  max |Δα|   format                  max |Δα|
   ======================  =========  ======================  =========
   gguf-Q8_0               0.0008     awq-4bit                0.064
   fp8-channel             0.004      bnb-nf4                 0.063
   gptq-8bit, mlx-8bit     0.005      mlx-4bit                0.043
   bnb-int8                0.028      ct-pack-4bit            0.047
   fp8-block               0.029      gguf-Q4_0               0.028
                                      gguf-Q4_K               0.051
                                      mxfp4                   0.079
                                      gptq-4bit (act-order)   0.32
   ======================  =========  ======================  =========

   Asserted: < 0.05 for the 8-bit formats, < 0.5 for the 4-bit ones (GPTQ's random
   act-order grouping of a heavy-tailed matrix is the worst case here; real GPTQ's
   error-compensating solve does better than round-to-nearest).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from hubscan.analysis.tensors import analyze_tensors
from hubscan.options import AnalysisOptions
from hubscan.refs import TensorRef
from hubscan.testing.checkpoints import student_t_matrix
from hubscan.testing.quantized import FORMATS, quantized_files, read_quantized

EIGHT_BIT = {"gptq-8bit", "bnb-int8", "mlx-8bit", "fp8-block", "fp8-channel", "gguf-Q8_0"}
OPTS = AnalysisOptions(mp_fit=False, compare=False)
NORMS = ["norm", "log_norm", "spectral_norm", "log_spectral_norm", "stable_rank", "sv_max", "alpha_weighted",
         "log_alpha_norm", "entropy"]


def _matrix(seed: int) -> torch.Tensor:
    return torch.from_numpy(student_t_matrix(256, 512, 2.0, seed=seed).astype(np.float32))


def _dequantised(path) -> TensorRef:
    """The format's logical ref as the reader yields it (an MXFP4 stack: its one expert)."""
    (ref,) = [r for r in read_quantized(path) if r.quant is not None]
    if len(ref.shape) == 3:
        d = ref.load()[0].t().contiguous()
        return TensorRef("layer.weight", tuple(d.shape), "F32", ref.file, load=lambda: d, quant=ref.quant)
    return TensorRef("layer.weight", ref.shape, ref.dtype, ref.file, load=ref.load, quant=ref.quant)


def _row(ref: TensorRef) -> dict:
    (lr,) = analyze_tensors([ref], OPTS)
    return lr.row


def _float_ref(w: torch.Tensor) -> TensorRef:
    return TensorRef("layer.weight", tuple(w.shape), "F32", "", load=lambda: w)


@pytest.fixture(scope="module")
def per_format(tmp_path_factory):
    """seed → (float row, {format: (dequantised matrix, row)})."""
    out = {}
    for seed in range(4):
        w = _matrix(seed)
        files = quantized_files(tmp_path_factory.mktemp(f"s{seed}"), w)
        rows = {}
        for fmt, path in files.items():
            ref = _dequantised(path)
            rows[fmt] = (ref.load(), _row(ref))
        out[seed] = (_row(_float_ref(w)), rows)
    return out


def test_alpha_xmin_and_norms_equal_weightwatcher(per_format):
    ww = pytest.importorskip("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    _, rows = per_format[0]
    model = torch.nn.Module()
    for i, fmt in enumerate(FORMATS):
        lin = torch.nn.Linear(512, 256, bias=False)
        with torch.no_grad():
            lin.weight.copy_(rows[fmt][0])
        model.add_module(f"f{i}", lin)
    details = ww.WeightWatcher(model=model).analyze(mp_fit=False).set_index("longname")
    assert len(details) == len(FORMATS)
    for i, fmt in enumerate(FORMATS):
        ours, ref = rows[fmt][1], details.loc[f"f{i}"]
        assert ours["status"] == "ok", fmt
        assert abs(ours["alpha"] - float(ref["alpha"])) <= 1e-4, fmt
        assert ours["xmin"] == pytest.approx(float(ref["xmin"]), rel=1e-9), fmt
        for col in NORMS:
            assert ours[col] == pytest.approx(float(ref[col]), rel=1e-6), (fmt, col)
        assert ours["num_pl_spikes"] == int(ref["num_pl_spikes"]) and ours["N"] == int(ref["N"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_quantisation_moves_alpha_by_a_bounded_amount(per_format, fmt):
    deltas = [abs(rows[fmt][1]["alpha"] - base["alpha"]) for base, rows in per_format.values()]
    bound = 0.05 if fmt in EIGHT_BIT else 0.5
    assert max(deltas) < bound, (fmt, deltas)
    # and the dequantised matrix is not the float one (the test would be empty otherwise)
    w = _matrix(0)
    assert not torch.equal(per_format[0][1][fmt][0], w)

