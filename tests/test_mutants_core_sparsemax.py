"""Sparsemax / entmax-1.5 checks written from the mutation run (scripts/mutation.py, group ``core-sparsemax``).

Every tensor the normalisers build (the ranks ``1..n`` of the sort-based thresholds) must live on the
input's device: on the meta device (shapes only, no data) a rank vector made on the CPU fails at once.
"""

from __future__ import annotations

import importlib

import pytest
import torch

# The module, not the function of the same name that beamattn.core exports.
sm = importlib.import_module("beamattn.core.sparsemax")


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_entmax15_is_computed_on_the_input_device(dim):
    x = torch.randn(3, 5, 4, device="meta")
    out = sm.entmax15(x, dim=dim)
    assert out.device.type == "meta" and out.shape == x.shape


@pytest.mark.parametrize("dim", [-1, 1])
def test_sort_threshold_of_sparsemax_is_computed_on_the_input_device(dim):
    # The sort-based threshold (the fallback of sparsemax's fast path): tau and the support size keep the
    # input's device and dtype, with one entry per slice along dim.
    z = torch.randn(2, 6, 3, device="meta", dtype=torch.float64)
    tau, support = sm._sparsemax_threshold_sort(z, dim)
    shape = list(z.shape)
    shape[dim] = 1
    assert tau.device.type == support.device.type == "meta"
    assert list(tau.shape) == list(support.shape) == shape and tau.dtype == support.dtype == torch.float64
