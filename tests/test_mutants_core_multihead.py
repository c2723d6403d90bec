"""MultiHeadAttention checks written from the mutation run (scripts/mutation.py, group ``core-multihead``).

Each test states a property of the module on its own: head outputs of a cross-attention, heads of size
one, a single head, errors for a bias that is not a tensor, the device of a ``from_torch`` copy. The
reference is plain per-head math on slices of the fused weights (no call into ``attend``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from beamattn.core.multihead import MultiHeadAttention


def _per_head_reference(m: MultiHeadAttention, x: Tensor, k_in: Tensor, v_in: Tensor) -> Tensor:
    """Softmax dot-product attention head by head: ``x [B, Lq, E]``, ``k_in [B, Lk, kdim]``, ``v_in [B, Lk, vdim]``
    → the output ``[B, Lq, E]`` (default scale ``1/sqrt(d_h)``, no mask)."""
    outs, qo, vo = [], 0, 0
    for d, dv in zip(m.head_dims, m.value_head_dims):
        q = x @ m.q_proj.weight[qo:qo + d].T + m.q_proj.bias[qo:qo + d]  # [B, Lq, d]
        k = k_in @ m.k_proj.weight[qo:qo + d].T + m.k_proj.bias[qo:qo + d]  # [B, Lk, d]
        v = v_in @ m.v_proj.weight[vo:vo + dv].T + m.v_proj.bias[vo:vo + dv]  # [B, Lk, dv]
        a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1)  # [B, Lq, Lk]
        outs.append(a @ v)  # [B, Lq, dv]
        qo, vo = qo + d, vo + dv
    return torch.cat(outs, -1) @ m.out_proj.weight.T + m.out_proj.bias  # [B, Lq, E]


@pytest.mark.parametrize("head_dims", [None, [4, 8, 4]])
def test_head_outputs_of_a_cross_attention_sum_to_forward(head_dims):
    # Keys and values different from the queries: head_outputs must attend to the given keys.
    torch.manual_seed(1)
    m = MultiHeadAttention(16, None if head_dims else 4, head_dims=head_dims, kdim=6, vdim=10).double()
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    k, v = torch.randn(2, 7, 6, dtype=torch.float64), torch.randn(2, 7, 10, dtype=torch.float64)
    heads = m.head_outputs(x, k, v)  # [B, H, Lq, E]
    torch.testing.assert_close(heads.sum(1) + m.out_proj.bias, _per_head_reference(m, x, k, v), atol=1e-12, rtol=0)
    torch.testing.assert_close(m(x, k, v)[0], _per_head_reference(m, x, k, v), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kw", [{"num_heads": 1}, {"head_dims": [1, 3]}, {"head_dims": [1]},
                                {"head_dims": [2], "value_head_dims": [5]}])
def test_single_heads_and_heads_of_size_one_match_the_reference(kw):
    torch.manual_seed(2)
    m = MultiHeadAttention(8, **kw).double()
    x, kv = torch.randn(2, 4, 8, dtype=torch.float64), torch.randn(2, 5, 8, dtype=torch.float64)
    out, w = m(x, kv, need_weights=True)
    assert w is not None and w.shape == (2, m.num_heads, 4, 5)
    torch.testing.assert_close(out, _per_head_reference(m, x, kv, kv), atol=1e-12, rtol=0)


@pytest.mark.parametrize("bias", [[[0.0]], 1.5, "bias"])
def test_a_bias_that_is_not_a_tensor_is_a_value_error_naming_bias(bias):
    m = MultiHeadAttention(8, 2)
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="'bias'"):
        m(x, bias=bias)


def test_from_torch_keeps_the_source_device_and_dtype():
    # A copy made on the meta device (no memory) stays there: the module follows the source's device.
    mha = nn.MultiheadAttention(8, 2, batch_first=True, device="meta", dtype=torch.float64)
    m = MultiHeadAttention.from_torch(mha)
    assert all(p.device.type == "meta" and p.dtype == torch.float64 for p in m.parameters())


def _masked_reference(m: MultiHeadAttention, x: Tensor, kv: Tensor, mask: Tensor) -> Tensor:
    """As :func:`_per_head_reference` with a bool mask ``[B, H, Lq, Lk]`` (True = may attend)."""
    outs, qo, vo = [], 0, 0
    for h, (d, dv) in enumerate(zip(m.head_dims, m.value_head_dims)):
        q = x @ m.q_proj.weight[qo:qo + d].T + m.q_proj.bias[qo:qo + d]  # [B, Lq, d]
        k = kv @ m.k_proj.weight[qo:qo + d].T + m.k_proj.bias[qo:qo + d]  # [B, Lk, d]
        v = kv @ m.v_proj.weight[vo:vo + dv].T + m.v_proj.bias[vo:vo + dv]  # [B, Lk, dv]
        s = (q @ k.transpose(-2, -1) / math.sqrt(d)).masked_fill(~mask[:, h], float("-inf"))  # [B, Lq, Lk]
        outs.append(torch.softmax(s, dim=-1) @ v)  # [B, Lq, dv]
        qo, vo = qo + d, vo + dv
    return torch.cat(outs, -1) @ m.out_proj.weight.T + m.out_proj.bias  # [B, Lq, E]


@pytest.mark.parametrize("shape", ["per_sample", "per_head_key_padding"])
def test_heterogeneous_heads_with_3d_and_per_head_broadcast_masks(shape):
    # [B, Lq, Lk] (one mask for all heads) and [B, H, 1, Lk] (a per-head key mask broadcast over queries).
    torch.manual_seed(3)
    b, lq, lk = 2, 4, 6
    m = MultiHeadAttention(12, head_dims=[2, 4, 2]).double()
    x, kv = torch.randn(b, lq, 12, dtype=torch.float64), torch.randn(b, lk, 12, dtype=torch.float64)
    if shape == "per_sample":
        mask = torch.rand(b, lq, lk) > 0.4
        mask[..., 0] = True  # every query keeps one key
        full = mask.unsqueeze(1).expand(b, 3, lq, lk)
    else:
        mask = torch.rand(b, 3, 1, lk) > 0.4
        mask[..., 0] = True
        full = mask.expand(b, 3, lq, lk)
    torch.testing.assert_close(m(x, kv, mask=mask)[0], _masked_reference(m, x, kv, full), atol=1e-12, rtol=0)


def test_input_shape_errors_name_the_argument_and_its_expected_size():
    m = MultiHeadAttention(8, 2, kdim=6, vdim=5)
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"'key' has shape \(2, 4, 7\); expected \[B, Lk, kdim=6\]"):
        m(x, torch.randn(2, 4, 7), torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match=r"'value' has shape \(2, 4, 4\); expected \[B, Lk, vdim=5\]"):
        m(x, torch.randn(2, 4, 6), torch.randn(2, 4, 4))
    with pytest.raises(ValueError, match="'value' has batch size 1 but 'query' has 2"):
        m(x, torch.randn(2, 4, 6), torch.randn(1, 4, 5))
    with pytest.raises(ValueError, match="'key' has batch size 3 but 'query' has 2"):
        m(x, torch.randn(3, 4, 6), torch.randn(2, 4, 5))


def test_a_callable_normalizer_is_used_and_a_non_callable_one_is_refused():
    torch.manual_seed(4)
    m = MultiHeadAttention(8, 2, normalizer=lambda s, dim: torch.softmax(s, dim=dim)).double()
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    torch.testing.assert_close(m(x)[0], _per_head_reference(m, x, x, x), atol=1e-12, rtol=0)
    with pytest.raises(TypeError, match="'normalizer'"):
        MultiHeadAttention(8, 2, normalizer=5)
    with pytest.raises(TypeError, match="'score'"):
        MultiHeadAttention(8, 2, score=5)
