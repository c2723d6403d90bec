"""Positional-encoding checks written from the mutation run (scripts/mutation.py, group ``core-positional``).

Closed forms at the smallest sizes the docstrings allow, and errors that name the function and the argument.
"""

from __future__ import annotations

import math

import pytest
import torch

from beamattn.core.positional import (
    LearnedPositionalEmbedding,
    RelativePositionBias,
    periodic_encoding,
    sincos_2d_encoding,
    sinusoidal_encoding,
    sinusoidal_encoding_at,
)


def test_smallest_dim_is_one_sin_cos_pair_at_unit_frequency():
    # dim = 2: ω_0 = base^0 = 1, so pe[p] = [sin p, cos p] for any position, fractional ones included.
    p = torch.tensor([0.0, 0.5, 3.0, 100.0], dtype=torch.float64)
    expected = torch.stack([torch.sin(p), torch.cos(p)], dim=-1)  # [4, 2]
    torch.testing.assert_close(sinusoidal_encoding_at(p, 2), expected, atol=1e-15, rtol=0)
    q = torch.arange(4, dtype=torch.float64)
    torch.testing.assert_close(sinusoidal_encoding(4, 2, dtype=torch.float64),
                               torch.stack([torch.sin(q), torch.cos(q)], -1), atol=1e-15, rtol=0)
    # periodic, dim 2: angle 2π p / period
    pe = periodic_encoding(5, 2, 4, dtype=torch.float64)
    ang = 2 * math.pi * (torch.arange(5) % 4).double() / 4
    torch.testing.assert_close(pe, torch.stack([torch.sin(ang), torch.cos(ang)], -1), atol=1e-15, rtol=0)


def test_sincos_2d_smallest_dim_4_is_sin_cos_of_column_then_row():
    pe = sincos_2d_encoding(2, 3, 4, dtype=torch.float64)  # [6, 4]: ω_0 = 1 for each half of size 2
    r, c = torch.meshgrid(torch.arange(2.0), torch.arange(3.0), indexing="ij")
    r, c = r.reshape(-1).double(), c.reshape(-1).double()
    expected = torch.stack([torch.sin(c), torch.cos(c), torch.sin(r), torch.cos(r)], -1)
    torch.testing.assert_close(pe, expected, atol=1e-15, rtol=0)


@pytest.mark.parametrize("call, match", [
    (lambda: sinusoidal_encoding_at(torch.arange(3), 3), "sinusoidal_encoding_at: argument 'dim' = 3"),
    (lambda: sinusoidal_encoding_at(torch.arange(3), 0), "sinusoidal_encoding_at: argument 'dim' = 0"),
    (lambda: sinusoidal_encoding(3, 5), "sinusoidal_encoding: argument 'dim' = 5"),
    (lambda: periodic_encoding(3, 4, 0), "periodic_encoding: argument 'period' = 0"),
    (lambda: sincos_2d_encoding(2, 2, 6), "sincos_2d_encoding: argument 'dim' = 6"),
    (lambda: LearnedPositionalEmbedding(4, 0), "LearnedPositionalEmbedding: argument 'dim' = 0"),
    (lambda: LearnedPositionalEmbedding(0, 4), "LearnedPositionalEmbedding: argument 'max_length' = 0"),
    (lambda: RelativePositionBias(0, 2), "RelativePositionBias: argument 'num_heads' = 0"),
    (lambda: RelativePositionBias(2, 0), "RelativePositionBias: argument 'max_distance' = 0"),
])
def test_errors_name_the_function_the_argument_and_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_learned_embedding_records_its_sizes():
    emb = LearnedPositionalEmbedding(5, 3)
    assert (emb.max_length, emb.dim) == (5, 3) and emb.weight.shape == (5, 3)
    assert emb.extra_repr() == "max_length=5, dim=3"
    assert emb(2).shape == (2, 3) and emb(torch.tensor([[4, 0]])).shape == (1, 2, 3)


@pytest.mark.parametrize("make, shape", [
    (lambda dev: sinusoidal_encoding(5, 6, device=dev), (5, 6)),
    (lambda dev: sinusoidal_encoding_at(torch.arange(5, device=dev), 6), (5, 6)),
    (lambda dev: periodic_encoding(5, 6, 3, device=dev), (5, 6)),
    (lambda dev: sincos_2d_encoding(2, 3, 8, device=dev), (6, 8)),
    (lambda dev: RelativePositionBias(2, 3).to(dev)(4, 5), (2, 4, 5)),
])
def test_every_encoding_is_built_on_the_requested_device(make, shape):
    # The meta device holds no data: every intermediate must be created there too (a CPU tensor mixed in fails).
    out = make("meta")
    assert out.device.type == "meta" and tuple(out.shape) == shape


def test_learned_embedding_lookup_errors_name_the_class_and_the_range():
    emb = LearnedPositionalEmbedding(4, 2)
    with pytest.raises(ValueError, match=r"LearnedPositionalEmbedding: argument 'positions' has values in \[0, 4\]"):
        emb(torch.tensor([0, 4]))
    with pytest.raises(TypeError, match="LearnedPositionalEmbedding: argument 'positions' has dtype torch.float32"):
        emb(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="LearnedPositionalEmbedding: argument 'length' = 5 exceeds max_length = 4"):
        emb(5)
