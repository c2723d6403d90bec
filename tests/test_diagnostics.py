"""Tests of beamattn.core.diagnostics on weights with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from beamattn.core.attend import attend
from beamattn.core.diagnostics import active_count, attention_entropy, coverage, head_output_share
from beamattn.core.sparsemax import sparsemax

# --------------------------------------------------------------------------- entropy


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_entropy_uniform_is_log_n(n):
    w = torch.full((3, 4, n), 1.0 / n, dtype=torch.float64)
    h = attention_entropy(w)
    assert h.shape == (3, 4)
    torch.testing.assert_close(h, torch.full((3, 4), math.log(n), dtype=torch.float64))


def test_entropy_one_hot_is_zero_and_base_2_gives_bits():
    one_hot = torch.eye(5)
    assert torch.equal(attention_entropy(one_hot), torch.zeros(5))
    w = torch.full((2, 8), 1 / 8)
    torch.testing.assert_close(attention_entropy(w, base=2), torch.full((2,), 3.0))  # 8 outcomes = 3 bits
    torch.testing.assert_close(attention_entropy(torch.tensor([0.5, 0.5, 0.0]), base=2), torch.tensor(1.0))


def test_entropy_along_other_dim():
    w = torch.full((4, 3), 0.25)  # distributions along dim 0
    torch.testing.assert_close(attention_entropy(w, dim=0), torch.full((3,), math.log(4)))


def test_entropy_of_sparsemax_with_zeros_is_finite_with_finite_gradient():
    torch.manual_seed(0)
    scores = (torch.randn(4, 6, 10) * 3).requires_grad_(True)
    w = sparsemax(scores, dim=-1)
    assert (w == 0).any()  # exact zeros present
    h = attention_entropy(w)
    assert torch.isfinite(h).all() and (h >= 0).all()
    assert (h <= math.log(10) + 1e-6).all()
    h.sum().backward()
    assert torch.isfinite(scores.grad).all()


def test_entropy_of_attend_weights_and_empty_rows():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 5, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    mask = torch.ones(5, 6, dtype=torch.bool)
    mask[2] = False  # query 2 has nothing to attend: all-zero weights
    _, w = attend(q, k, v, mask=mask, return_weights=True)
    h = attention_entropy(w)
    assert h.shape == (2, 5)
    assert torch.equal(h[:, 2], torch.zeros(2))
    assert (h[:, [0, 1, 3, 4]] > 0).all()


# --------------------------------------------------------------------------- coverage


def test_coverage_is_column_sum_and_totals_lq():
    torch.manual_seed(0)
    w = torch.softmax(torch.randn(2, 3, 7, 5, dtype=torch.float64), dim=-1)  # [B, H, Lq, Lk]
    c = coverage(w)
    assert c.shape == (2, 3, 5)
    torch.testing.assert_close(c, w.sum(-2))
    torch.testing.assert_close(c.sum(-1), torch.full((2, 3), 7.0, dtype=torch.float64))


# --------------------------------------------------------------------------- head output share


def test_head_output_share_sums_to_one_and_tracks_scale():
    torch.manual_seed(0)
    out = torch.randn(4, 3, 6, 8)  # [B, H, L, E]
    share = head_output_share(out)
    assert share.shape == (3,)
    torch.testing.assert_close(share.sum(), torch.tensor(1.0))
    scaled = out.clone()
    scaled[:, 1] *= 10
    new = head_output_share(scaled)
    assert new[1] > share[1]
    assert new[1] > 0.8  # dominates the other two heads
    torch.testing.assert_close(new.sum(), torch.tensor(1.0))


def test_head_output_share_per_example_and_pooled():
    out = torch.zeros(2, 2, 3, 4)  # [B, H, L, E]
    out[0, 0] = 1.0  # example 0: only head 0 (norm sqrt(12))
    out[1, 1] = 3.0  # example 1: only head 1 (norm 3 sqrt(12))
    per = head_output_share(out, per_example=True)
    assert per.shape == (2, 2)
    torch.testing.assert_close(per, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(head_output_share(out), torch.tensor([0.25, 0.75]))  # norms summed over B


def test_head_output_share_of_zeros_is_zero_not_nan():
    share = head_output_share(torch.zeros(3, 4, 5))
    assert torch.equal(share, torch.zeros(3))


# --------------------------------------------------------------------------- active count


def test_active_count_sparsemax_support():
    z = torch.tensor([[3.0, 1.0, -2.0, 2.9], [0.0, 0.0, 0.0, 0.0]])
    w = sparsemax(z, dim=-1)
    counts = active_count(w)
    assert counts.dtype == torch.int64
    assert counts.tolist() == [2, 4]  # 3.0 and 2.9 survive; a flat row keeps everything
    assert active_count(torch.tensor([0.6, 0.3, 0.1]), threshold=0.2).item() == 2
    assert active_count(torch.eye(3), dim=0).tolist() == [1, 1, 1]


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("fn", [attention_entropy, coverage, active_count])
def test_weights_validation(fn):
    # every message starts with the function's name, then names the argument
    with pytest.raises(TypeError, match=rf"^{fn.__name__}: argument 'weights'.*floating"):
        fn(torch.ones(3, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"'weights'.*torch.Tensor"):
        fn([[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"'weights'.*negative"):
        fn(torch.tensor([[0.5, -0.5], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"'weights'.*NaN"):
        fn(torch.tensor([[float("nan"), 1.0], [1.0, 0.0]]))


def test_other_argument_validation():
    w = torch.full((2, 4), 0.25)
    with pytest.raises(ValueError, match=r"'base' = 1"):
        attention_entropy(w, base=1)
    with pytest.raises(ValueError, match=r"'dim' = 2.*out of range"):
        attention_entropy(w, dim=2)
    with pytest.raises(ValueError, match=r"^active_count: argument 'threshold' = -0.1"):
        active_count(w, threshold=-0.1)
    for bad in (True, "0.1", float("inf"), float("nan")):  # a bool is not a threshold, nor a string, nor inf/NaN
        with pytest.raises(ValueError, match=r"^active_count: argument 'threshold'"):
            active_count(w, threshold=bad)
    assert active_count(w, threshold=0).tolist() == [4, 4] and active_count(w, threshold=0.25).tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"^active_count: argument 'dim' = 5"):
        active_count(w, dim=5)
    with pytest.raises(ValueError, match=r"'weights'.*\[\.\.\., Lq, Lk\]"):
        coverage(torch.ones(4))
    with pytest.raises(ValueError, match=r"^head_output_share: argument 'head_outputs'.*\[\.\.\., H, L, E\]"):
        head_output_share(torch.ones(3, 4))
    with pytest.raises(TypeError, match=r"^head_output_share: argument 'head_outputs'.*floating"):
        head_output_share(torch.ones(2, 3, 4, dtype=torch.int32))
    with pytest.raises(TypeError, match=r"^head_output_share: argument 'head_outputs' must be a torch.Tensor"):
        head_output_share([[[1.0]]])
