"""Tests of beamattn.core.positional: closed forms and the properties each encoding promises."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from beamattn.core.attend import attend
from beamattn.core.positional import (
    LearnedPositionalEmbedding,
    RelativePositionBias,
    periodic_encoding,
    sincos_2d_encoding,
    sinusoidal_encoding,
    sinusoidal_encoding_at,
)

# --------------------------------------------------------------------------- sinusoidal


def test_sinusoidal_matches_closed_form():
    dim, base = 16, 10000.0
    pe = sinusoidal_encoding(50, dim, dtype=torch.float64)
    assert pe.shape == (50, dim) and pe.dtype == torch.float64
    for p in (0, 1, 7, 49):
        for i in range(dim // 2):
            angle = p / base ** (2 * i / dim)
            assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-12)
            assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-12)


def test_sinusoidal_inner_product_depends_only_on_offset():
    pe = sinusoidal_encoding(64, 32, dtype=torch.float64)  # [L, d]
    for k in (0, 1, 5, 20):
        dots = (pe[: 64 - k] * pe[k:]).sum(-1)  # [L-k]  pe[p]·pe[p+k]
        expected = torch.cos(k * 10000.0 ** (-torch.arange(0, 32, 2, dtype=torch.float64) / 32)).sum()
        torch.testing.assert_close(dots, expected.expand_as(dots), rtol=0, atol=1e-10)


def test_sinusoidal_bounded_and_default_dtype():
    pe = sinusoidal_encoding(1000, 64)
    assert pe.dtype == torch.float32
    assert pe.abs().max() <= 1.0
    assert sinusoidal_encoding(0, 8).shape == (0, 8)


def test_sinusoidal_at_explicit_positions():
    table = sinusoidal_encoding(20, 8)
    pos = torch.tensor([[3, 0, 19], [5, 5, 1]])
    out = sinusoidal_encoding_at(pos, 8)
    assert out.shape == (2, 3, 8) and out.dtype == torch.float32
    torch.testing.assert_close(out, table[pos])
    half = sinusoidal_encoding_at(torch.tensor([0.5], dtype=torch.float64), 8)
    assert half.dtype == torch.float64
    assert half[0, 0].item() == pytest.approx(math.sin(0.5))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(length=-1, dim=8), ValueError, r"'length' = -1.*>= 0"),
        (dict(length=4, dim=7), ValueError, r"'dim' = 7.*even"),
        (dict(length=4, dim=0), ValueError, r"'dim' = 0"),
        (dict(length=4.0, dim=8), TypeError, r"'length'.*int"),
        (dict(length=4, dim=8, base=0.0), ValueError, r"'base' = 0.0"),
        (dict(length=4, dim=8, dtype=torch.int64), TypeError, r"'dtype'.*floating"),
    ],
)
def test_sinusoidal_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sinusoidal_encoding(**kwargs)


def test_sinusoidal_at_bad_positions():
    with pytest.raises(TypeError, match="'positions'"):
        sinusoidal_encoding_at([1, 2], 8)
    with pytest.raises(TypeError, match="'positions'"):
        sinusoidal_encoding_at(torch.tensor([True]), 8)


# --------------------------------------------------------------------------- periodic


@settings(max_examples=25, deadline=None)
@given(period=st.integers(1, 12), reps=st.integers(2, 4), half_dim=st.integers(1, 8))
def test_periodic_rows_repeat_bitwise(period, reps, half_dim):
    pe = periodic_encoding(period * reps + 3, 2 * half_dim, period)  # [L, d]
    for p in range(pe.shape[0] - period):
        assert torch.equal(pe[p], pe[p + period])


@pytest.mark.parametrize("period", [2, 3, 7, 24, 100])
@pytest.mark.parametrize("dim", [2, 16])
def test_periodic_rows_within_one_period_distinct(period, dim):
    pe = periodic_encoding(period, dim, period)  # [P, d]
    dist = torch.cdist(pe.double(), pe.double())  # [P, P]
    off_diagonal = dist[~torch.eye(period, dtype=torch.bool)]
    assert off_diagonal.min() > 1e-3


def test_periodic_closed_form():
    pe = periodic_encoding(10, 6, 4, dtype=torch.float64)
    for p in (1, 6, 9):
        for m in range(3):
            angle = 2 * math.pi * (m + 1) * (p % 4) / 4
            assert pe[p, 2 * m].item() == pytest.approx(math.sin(angle), abs=1e-12)
            assert pe[p, 2 * m + 1].item() == pytest.approx(math.cos(angle), abs=1e-12)


def test_periodic_same_input_same_output_through_attention():
    # The same vectors at positions p and p + P give bitwise identical attention outputs.
    torch.manual_seed(0)
    period, d = 5, 8
    x = torch.randn(period, d).repeat(3, 1) + periodic_encoding(3 * period, d, period)  # [3P, d]
    out = attend(x, x, x, window=2, normalizer="sparsemax")  # [3P, d]; local, so edges differ
    assert torch.equal(x[3], x[3 + period])
    assert torch.equal(out[6], out[6 + period])


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((8, 4, 0), ValueError, r"'period' = 0.*>= 1"),
        ((8, 4, -3), ValueError, r"'period' = -3"),
        ((8, 5, 4), ValueError, r"'dim' = 5.*even"),
        ((-2, 4, 4), ValueError, r"'length' = -2"),
        ((8, 4, 2.5), TypeError, r"'period'"),
    ],
)
def test_periodic_bad_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        periodic_encoding(*args)


# --------------------------------------------------------------------------- learned


def test_learned_shape_and_positions():
    emb = LearnedPositionalEmbedding(10, 6)
    assert emb.weight.shape == (10, 6)
    assert emb(7).shape == (7, 6)
    assert emb(10).shape == (10, 6)
    pos = torch.tensor([[0, 9], [3, 3]])
    torch.testing.assert_close(emb(pos), emb.weight[pos])
    assert emb(pos).shape == (2, 2, 6)


def test_learned_rejects_too_long_and_bad_positions():
    emb = LearnedPositionalEmbedding(10, 6)
    with pytest.raises(ValueError, match=r"'length' = 11 exceeds max_length = 10"):
        emb(11)
    with pytest.raises(ValueError, match=r"'length' = -1"):
        emb(-1)
    with pytest.raises(ValueError, match=r"'positions'.*\[0, 10\]"):
        emb(torch.tensor([0, 10]))
    with pytest.raises(TypeError, match=r"'positions'.*integer"):
        emb(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"'max_length' = 0"):
        LearnedPositionalEmbedding(0, 4)


def test_learned_gradients_flow():
    emb = LearnedPositionalEmbedding(8, 4)
    emb(5).pow(2).sum().backward()
    grad = emb.weight.grad
    assert grad is not None
    assert grad[:5].abs().sum() > 0
    assert torch.equal(grad[5:], torch.zeros_like(grad[5:]))  # unused rows get no gradient


# --------------------------------------------------------------------------- relative bias


def _randomised(rpb: RelativePositionBias, seed: int = 0) -> RelativePositionBias:
    torch.manual_seed(seed)
    with torch.no_grad():
        rpb.weight.normal_()
    return rpb


def test_relative_bias_zero_at_init_and_no_effect():
    rpb = RelativePositionBias(3, 4)
    bias = rpb(5, 7)
    assert bias.shape == (3, 5, 7)
    assert torch.equal(bias, torch.zeros(3, 5, 7))
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    torch.testing.assert_close(attend(q, k, v, bias=bias), attend(q, k, v))


def test_relative_bias_is_toeplitz_in_clipped_distance():
    max_d = 3
    rpb = _randomised(RelativePositionBias(2, max_d))
    bias = rpb(6, 9)  # [H, Lq, Lk]
    for h in range(2):
        for i in range(6):
            for j in range(9):
                rel = max(-max_d, min(max_d, j - i))
                assert bias[h, i, j] == rpb.weight[h, rel + max_d]
    # Distances beyond max_distance share one value per side.
    assert bias[0, 0, 3] == bias[0, 0, 8]
    assert bias[0, 5, 2] == bias[0, 5, 0]


def test_relative_bias_unidirectional_future_shares_distance_zero():
    rpb = _randomised(RelativePositionBias(2, 3, bidirectional=False))
    assert rpb.weight.shape == (2, 4)
    bias = rpb(5, 5)
    for i in range(5):
        for j in range(i, 5):
            assert bias[1, i, j] == rpb.weight[1, 3]  # distance 0
    assert bias[1, 4, 0] == rpb.weight[1, 0]  # distance -4 clipped to -3


def test_relative_bias_in_attend_equals_explicit_bias_and_is_shift_invariant():
    torch.manual_seed(1)
    rpb = _randomised(RelativePositionBias(4, 2), seed=1)
    n, m, a = 10, 5, 3
    q, k, v = torch.randn(2, 4, n, 8), torch.randn(2, 4, n, 8), torch.randn(2, 4, n, 8)
    # Explicit Shaw-style bias built by hand.
    i = torch.arange(n).unsqueeze(-1)
    j = torch.arange(n)
    explicit = rpb.weight[:, (j - i).clamp(-2, 2) + 2]  # [H, n, n]
    torch.testing.assert_close(attend(q, k, v, bias=rpb(n, n)), attend(q, k, v, bias=explicit))
    # A window of the sequence starting at position a sees the same bias as a fresh sequence.
    full = rpb(n, n)
    assert torch.equal(full[:, a:a + m, a:a + m], rpb(m, m))
    qs, ks, vs = (t[..., a:a + m, :] for t in (q, k, v))
    torch.testing.assert_close(attend(qs, ks, vs, bias=rpb(m, m)),
                               attend(qs, ks, vs, bias=full[:, a:a + m, a:a + m]))


def test_relative_bias_q_offset_matches_rows_of_full_bias():
    rpb = _randomised(RelativePositionBias(2, 3))
    assert torch.equal(rpb(2, 8, q_offset=6), rpb(8, 8)[:, 6:, :])


def test_relative_bias_gradients_flow():
    rpb = RelativePositionBias(2, 2)
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8)
    (attend(q, k, v, bias=rpb(4, 4)) * torch.randn(1, 2, 4, 8)).sum().backward()
    assert rpb.weight.grad is not None and rpb.weight.grad.abs().sum() > 0


def test_relative_bias_bad_arguments():
    with pytest.raises(ValueError, match=r"'num_heads' = 0"):
        RelativePositionBias(0, 4)
    with pytest.raises(ValueError, match=r"'max_distance' = 0"):
        RelativePositionBias(2, 0)
    with pytest.raises(ValueError, match=r"'lq' = -1"):
        RelativePositionBias(2, 2)(-1, 3)
    with pytest.raises(TypeError, match=r"'q_offset'"):
        RelativePositionBias(2, 2)(2, 3, q_offset=1.5)


# --------------------------------------------------------------------------- 2-D sin-cos


def _mae_get_2d_sincos_pos_embed(embed_dim: int, grid_size: tuple[int, int]) -> np.ndarray:
    """MAE's reference (facebookresearch/mae util/pos_embed.py), with a (h, w) grid size."""

    def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
        omega = np.arange(embed_dim // 2, dtype=np.float64)
        omega /= embed_dim / 2.0
        omega = 1.0 / 10000 ** omega
        pos = pos.reshape(-1)
        out = np.einsum("m,d->md", pos, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_h = np.arange(grid_size[0], dtype=np.float32)
    grid_w = np.arange(grid_size[1], dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size[0], grid_size[1]])
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


@pytest.mark.parametrize("height, width, dim", [(3, 5, 8), (7, 2, 16), (4, 4, 32), (1, 6, 4)])
def test_sincos_2d_matches_mae_reference(height, width, dim):
    pe = sincos_2d_encoding(height, width, dim, dtype=torch.float64)
    assert pe.shape == (height * width, dim)
    ref = torch.from_numpy(_mae_get_2d_sincos_pos_embed(dim, (height, width)))
    torch.testing.assert_close(pe, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("height, width", [(3, 5), (7, 2)])
def test_sincos_2d_halves_depend_on_one_coordinate(height, width):
    dim = 16
    pe = sincos_2d_encoding(height, width, dim).reshape(height, width, dim)  # row-major grid
    col_half, row_half = pe[..., : dim // 2], pe[..., dim // 2:]
    # Column half: same for every row; row half: same for every column.
    assert torch.equal(col_half, col_half[:1].expand_as(col_half))
    assert torch.equal(row_half, row_half[:, :1].expand_as(row_half))
    # And each half is the 1-D encoding of its coordinate.
    expected_row = torch.cat([torch.sin(torch.arange(height).double()), torch.cos(torch.arange(height).double())])
    torch.testing.assert_close(row_half[:, 0, [0, dim // 4]].double(), expected_row.reshape(2, height).T)
    flat = pe.reshape(-1, dim)
    assert torch.cdist(flat, flat).add(torch.eye(height * width)).min() > 1e-3  # all cells distinct


def test_sincos_2d_bad_arguments():
    with pytest.raises(ValueError, match=r"'dim' = 6.*multiple of 4"):
        sincos_2d_encoding(3, 3, 6)
    with pytest.raises(ValueError, match=r"'height' = 0"):
        sincos_2d_encoding(0, 3, 8)
    with pytest.raises(ValueError, match=r"'width' = -2"):
        sincos_2d_encoding(3, -2, 8)
