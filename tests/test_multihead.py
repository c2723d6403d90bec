"""Tests of beamattn.core.multihead.MultiHeadAttention."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import beamattn.core.multihead as multihead
from beamattn.core.multihead import MultiHeadAttention

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
DTYPES = [torch.float64, torch.float32]
HETERO = [16, 32, 64, 64]


def _close(a: Tensor, b: Tensor, dtype: torch.dtype) -> None:
    torch.testing.assert_close(a, b, atol=TOL[dtype], rtol=TOL[dtype])


def _torch_mha(e: int, h: int, dtype: torch.dtype, batch_first: bool, **kw) -> nn.MultiheadAttention:
    mha = nn.MultiheadAttention(e, h, batch_first=batch_first, dtype=dtype, **kw).eval()
    with torch.no_grad():  # torch zeroes the in/out biases at init: make them random
        for p in mha.parameters():
            p.normal_(0.0, 0.3)
    return mha


def _run_torch(mha: nn.MultiheadAttention, q: Tensor, k: Tensor, v: Tensor, **kw):
    """Run torch's module on batch-first tensors, transposing for batch_first=False."""
    if not mha.batch_first:
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [L, B, E]
    out, w = mha(q, k, v, **kw)
    return (out if mha.batch_first else out.transpose(0, 1)), w


def _reference(m: MultiHeadAttention, x: Tensor, kv: Tensor, mask: Tensor | None = None,
               bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Slow reference: head by head, explicit per-head projections sliced from the fused weights, plain math.

    ``x [B, Lq, E]``, ``kv [B, Lk, kdim]`` (key = value), ``mask`` bool ``[B, H, Lq, Lk]`` or None,
    ``bias`` float ``[B|1, H, Lq, Lk]`` (head ``h`` adds ``bias[:, h]`` after scaling) or None.
    """
    outs, weights = [], []
    qo = vo = 0
    for h, (d, dv) in enumerate(zip(m.head_dims, m.value_head_dims)):
        w_q, b_q = m.q_proj.weight[qo:qo + d], m.q_proj.bias[qo:qo + d]
        w_k, b_k = m.k_proj.weight[qo:qo + d], m.k_proj.bias[qo:qo + d]
        w_v, b_v = m.v_proj.weight[vo:vo + dv], m.v_proj.bias[vo:vo + dv]
        q = x @ w_q.T + b_q  # [B, Lq, d]
        k = kv @ w_k.T + b_k  # [B, Lk, d]
        v = kv @ w_v.T + b_v  # [B, Lk, dv]
        scale = m.shared_scale if m.shared_scale is not None else 1.0 / math.sqrt(d)
        s = (q @ k.transpose(-2, -1)) * scale  # [B, Lq, Lk]
        if bias is not None:
            s = s + bias[:, h]
        if mask is not None:
            s = s.masked_fill(~mask[:, h], float("-inf"))
        a = torch.softmax(s, dim=-1)  # [B, Lq, Lk]
        outs.append(a @ v)  # [B, Lq, dv]
        weights.append(a)
        qo, vo = qo + d, vo + dv
    out = torch.cat(outs, -1) @ m.out_proj.weight.T + m.out_proj.bias  # [B, Lq, E]
    return out, torch.stack(weights, 1)  # [B, Lq, E], [B, H, Lq, Lk]


# --------------------------------------------------------------------------- equality with torch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [True, False])
def test_self_attention_matches_torch(dtype: torch.dtype, batch_first: bool) -> None:
    torch.manual_seed(0)
    mha = _torch_mha(32, 4, dtype, batch_first)
    ours = MultiHeadAttention.from_torch(mha)
    x = torch.randn(3, 7, 32, dtype=dtype)
    expected, _ = _run_torch(mha, x, x, x, need_weights=False)
    out, w = ours(x)
    assert w is None
    assert out.shape == (3, 7, 32) and out.dtype == dtype
    _close(out, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [True, False])
def test_cross_attention_kdim_vdim_masks_and_weights_match_torch(dtype: torch.dtype, batch_first: bool) -> None:
    torch.manual_seed(1)
    b, lq, lk, e, h = 3, 5, 9, 24, 3
    mha = _torch_mha(e, h, dtype, batch_first, kdim=10, vdim=6)
    ours = MultiHeadAttention.from_torch(mha)
    assert ours.kdim == 10 and ours.vdim == 6 and ours.head_dims == (8, 8, 8)
    q = torch.randn(b, lq, e, dtype=dtype)  # [B, Lq, E]
    k, v = torch.randn(b, lk, 10, dtype=dtype), torch.randn(b, lk, 6, dtype=dtype)  # [B, Lk, kdim], [B, Lk, vdim]

    key_padding = torch.zeros(b, lk, dtype=torch.bool)  # torch: True = ignore
    key_padding[0, -3:] = True
    key_padding[2, :2] = True
    attn_mask = torch.rand(lq, lk) < 0.3  # torch: True = not allowed
    attn_mask[:, 4] = False  # every query keeps a key
    allowed = ~attn_mask & ~key_padding[:, None, None, :]  # ours: True = attend, [B, 1, Lq, Lk]

    exp_out, exp_avg = _run_torch(mha, q, k, v, key_padding_mask=key_padding, attn_mask=attn_mask,
                                  need_weights=True, average_attn_weights=True)
    _, exp_heads = _run_torch(mha, q, k, v, key_padding_mask=key_padding, attn_mask=attn_mask,
                              need_weights=True, average_attn_weights=False)
    out, w = ours(q, k, v, mask=allowed, need_weights=True)
    assert w is not None and w.shape == (b, h, lq, lk)
    _close(out, exp_out, dtype)
    _close(w.mean(1), exp_avg, dtype)
    _close(w, exp_heads, dtype)
    # Without weights (the fused SDPA path) the output is the same.
    out_fast, _ = ours(q, k, v, mask=allowed)
    _close(out_fast, exp_out, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_key_padding_mask_and_causal_match_torch(dtype: torch.dtype) -> None:
    torch.manual_seed(2)
    mha = _torch_mha(16, 2, dtype, True)
    ours = MultiHeadAttention.from_torch(mha)
    x = torch.randn(2, 6, 16, dtype=dtype)
    key_padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    causal = torch.ones(6, 6, dtype=torch.bool).triu(1)  # torch: True = not allowed
    expected, exp_w = _run_torch(mha, x, x, x, key_padding_mask=key_padding, need_weights=True,
                                 average_attn_weights=False)
    out, w = ours(x, mask=~key_padding[:, None, :], need_weights=True)  # [B, 1, Lk] → [B, 1, 1, Lk]
    _close(out, expected, dtype)
    _close(w, exp_w, dtype)
    expected, _ = _run_torch(mha, x, x, x, attn_mask=causal, need_weights=False)
    _close(ours(x, causal=True)[0], expected, dtype)
    _close(ours(x, mask=~causal)[0], expected, dtype)


def test_from_torch_without_bias_and_packed_weights() -> None:
    torch.manual_seed(3)
    mha = _torch_mha(12, 3, torch.float64, True, bias=False)
    ours = MultiHeadAttention.from_torch(mha)
    assert ours.q_proj.bias is None and ours.out_proj.bias is None
    x = torch.randn(2, 4, 12, dtype=torch.float64)
    _close(ours(x)[0], mha(x, x, x, need_weights=False)[0], torch.float64)


# --------------------------------------------------------------------------- heterogeneous heads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shared_scale", [None, 0.05])
def test_heterogeneous_heads_match_reference(dtype: torch.dtype, shared_scale: float | None) -> None:
    torch.manual_seed(4)
    x, kv = torch.randn(2, 5, 48, dtype=dtype), torch.randn(2, 7, 20, dtype=dtype)
    # self-attention
    m = MultiHeadAttention(48, head_dims=HETERO, shared_scale=shared_scale).to(dtype)
    out, w = m(x, need_weights=True)
    ref_out, ref_w = _reference(m, x, x)
    _close(out, ref_out, dtype)
    _close(w, ref_w, dtype)
    _close(m(x)[0], ref_out, dtype)  # the path without weights
    # cross-attention, key = value of another size
    m = MultiHeadAttention(48, head_dims=HETERO, kdim=20, vdim=20, shared_scale=shared_scale).to(dtype)
    out, w = m(x, kv, need_weights=True)
    ref_out, ref_w = _reference(m, x, kv)
    _close(out, ref_out, dtype)
    _close(w, ref_w, dtype)


def test_default_scale_is_per_head_and_shared_scale_is_used() -> None:
    torch.manual_seed(5)
    x = torch.randn(2, 6, 40, dtype=torch.float64)
    per_head = MultiHeadAttention(40, head_dims=HETERO).double()
    shared = MultiHeadAttention(40, head_dims=HETERO, shared_scale=1.0).double()
    shared.load_state_dict(per_head.state_dict())
    w_per, w_shared = per_head(x, need_weights=True)[1], shared(x, need_weights=True)[1]
    # per-head default: head h uses 1/sqrt(d_h) — the reference with per-head scales
    _close(w_per, _reference(per_head, x, x)[1], torch.float64)
    # shared: every head uses 1.0 — the reference with the shared scale, not the per-head one
    _close(w_shared, _reference(shared, x, x)[1], torch.float64)
    assert not torch.allclose(w_shared, w_per)
    # with the shared unscaled dot product the larger heads give sharper weights
    entropy = -(w_shared * w_shared.clamp_min(1e-300).log()).sum(-1).mean((0, 2))  # [H]
    assert entropy[0] > entropy[3]


def test_per_head_mask_and_noncontiguous_groups_match_reference() -> None:
    torch.manual_seed(6)
    dims = [32, 16, 32, 16, 8]  # groups (0, 2), (1, 3), (4,): non-consecutive heads
    m = MultiHeadAttention(24, head_dims=dims, value_head_dims=[8, 8, 8, 8, 4]).double()
    assert [g[0] for g in m.groups] == [(0, 2), (1, 3), (4,)]
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    mask = torch.rand(2, 5, 5, 5) < 0.6  # [B, H, Lq, Lk], different per head
    mask[..., 0] = True
    out, w = m(x, mask=mask, need_weights=True)
    ref_out, ref_w = _reference(m, x, x, mask=mask)
    _close(out, ref_out, torch.float64)
    _close(w, ref_w, torch.float64)
    _close(m(x, mask=mask)[0], ref_out, torch.float64)
    _close(m.head_outputs(x, mask=mask).sum(1) + m.out_proj.bias, out, torch.float64)


@pytest.mark.parametrize("dims", [[32, 16, 32, 16, 8], [16, 16, 32, 8, 8]])  # non-consecutive and consecutive groups
@pytest.mark.parametrize("batched_bias", [False, True])
def test_heterogeneous_heads_add_each_heads_own_bias(dims: list[int], batched_bias: bool) -> None:
    # A score bias that differs per head (and per batch item): every head must get its own slice, also when the
    # heads are split into groups of one size. The reference adds bias[:, h] to head h.
    torch.manual_seed(8)
    h = len(dims)
    m = MultiHeadAttention(24, head_dims=dims).double()
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    bias = 2.0 * torch.randn(2 if batched_bias else 1, h, 5, 5, dtype=torch.float64)  # [B|1, H, Lq, Lk]
    mask = torch.rand(2, h, 5, 5) < 0.7
    mask[..., 0] = True
    arg = bias if batched_bias else bias[0]  # [B, H, Lq, Lk] or [H, Lq, Lk]
    for mk in (None, mask):
        out, w = m(x, mask=mk, bias=arg, need_weights=True)
        ref_out, ref_w = _reference(m, x, x, mask=mk, bias=bias)
        _close(w, ref_w, torch.float64)
        _close(out, ref_out, torch.float64)
        _close(m(x, mask=mk, bias=arg)[0], ref_out, torch.float64)  # the path without weights
        _close(m.head_outputs(x, mask=mk, bias=arg).sum(1) + m.out_proj.bias, ref_out, torch.float64)
    # the bias matters: without it the weights differ
    assert not torch.allclose(m(x, need_weights=True)[1], ref_w)


def test_attend_called_once_per_head_group(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    real = multihead.attend

    def counting(q, k, v, **kw):
        calls.append(tuple(q.shape))
        return real(q, k, v, **kw)

    monkeypatch.setattr(multihead, "attend", counting)
    x = torch.randn(2, 3, 64)
    MultiHeadAttention(64, head_dims=HETERO)(x)
    assert calls == [(2, 1, 3, 16), (2, 1, 3, 32), (2, 2, 3, 64)]
    calls.clear()
    MultiHeadAttention(64, 4)(x)
    assert calls == [(2, 4, 3, 16)]


# --------------------------------------------------------------------------- diagnostics, normalisers, gradients


@pytest.mark.parametrize("head_dims", [None, HETERO])
def test_head_outputs_sum_plus_bias_equals_forward(head_dims: list[int] | None) -> None:
    torch.manual_seed(7)
    m = MultiHeadAttention(32, None if head_dims else 4, head_dims=head_dims, vdim=12).double()
    x, v = torch.randn(2, 5, 32, dtype=torch.float64), torch.randn(2, 5, 12, dtype=torch.float64)
    heads = m.head_outputs(x, x, v, causal=True)
    assert heads.shape == (2, m.num_heads, 5, 32)
    _close(heads.sum(1) + m.out_proj.bias, m(x, x, v, causal=True)[0], torch.float64)


def test_sparsemax_weights_have_exact_zeros_and_sum_to_one() -> None:
    torch.manual_seed(8)
    m = MultiHeadAttention(32, head_dims=[8, 8, 16], normalizer="sparsemax")
    x = 3.0 * torch.randn(2, 10, 32)
    out, w = m(x, need_weights=True)
    assert w is not None and w.shape == (2, 3, 10, 10)
    assert out.shape == (2, 10, 32)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 10))
    assert (w >= 0).all()
    for h in range(3):
        assert (w[:, h] == 0).any(), f"head {h} has no exact zero"


def test_options_pass_through_topk_window_temperature_dropout() -> None:
    torch.manual_seed(9)
    x = torch.randn(2, 6, 16)
    w = MultiHeadAttention(16, 2, topk=2)(x, need_weights=True)[1]
    assert ((w > 0).sum(-1) <= 2).all()
    w = MultiHeadAttention(16, 2, window=1)(x, need_weights=True)[1]
    i = torch.arange(6)
    assert (w[..., (i[:, None] - i).abs() > 1] == 0).all()
    cold = MultiHeadAttention(16, 2, temperature=0.25)
    scaled = MultiHeadAttention(16, 2, shared_scale=4.0 / math.sqrt(8))  # temperature divides the scores
    scaled.load_state_dict(cold.state_dict())
    torch.testing.assert_close(cold(x, need_weights=True)[1], scaled(x, need_weights=True)[1])
    m = MultiHeadAttention(16, 2, dropout=0.5)
    torch.testing.assert_close(m.eval()(x)[0], m(x)[0])
    assert not torch.allclose(m.train()(x)[0], m.eval()(x)[0])
    cos = MultiHeadAttention(16, head_dims=[4, 8], score="cosine", normalizer="entmax15")
    assert cos(x)[0].shape == (2, 6, 16)


def test_gradients_reach_all_parameters() -> None:
    torch.manual_seed(10)
    m = MultiHeadAttention(32, head_dims=HETERO, kdim=8, vdim=12, normalizer="softmax")
    q, k, v = torch.randn(2, 4, 32), torch.randn(2, 5, 8), torch.randn(2, 5, 12)
    out, w = m(q, k, v, need_weights=True)
    (out.square().mean() + w.square().mean()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(embed_dim=30, num_heads=4), ValueError, r"'embed_dim' = 30 .*'num_heads' = 4"),
        (dict(embed_dim=32), ValueError, r"num_heads.*head_dims"),
        (dict(embed_dim=32, num_heads=4, head_dims=[8, 8]), ValueError, r"num_heads.*head_dims"),
        (dict(embed_dim=32, head_dims=[8, 0]), ValueError, r"'head_dims' = \[8, 0\]"),
        (dict(embed_dim=32, head_dims=[]), ValueError, r"'head_dims'"),
        (dict(embed_dim=32, head_dims=[8, 8], value_head_dims=[8]), ValueError, r"'value_head_dims'"),
        (dict(embed_dim=32, num_heads=0), ValueError, r"'num_heads' = 0"),
        (dict(embed_dim=32.0, num_heads=4), TypeError, r"'embed_dim'"),
        (dict(embed_dim=32, num_heads=4, score="bilinear"), ValueError, r"'score' = 'bilinear'"),
        (dict(embed_dim=32, num_heads=4, score="additive"), ValueError, r"'score' = 'additive'"),
        (dict(embed_dim=32, num_heads=4, normalizer="max"), ValueError, r"'normalizer' = 'max'"),
        (dict(embed_dim=32, num_heads=4, shared_scale=-1.0), ValueError, r"'shared_scale' = -1.0"),
        (dict(embed_dim=32, num_heads=4, temperature=0.0), ValueError, r"'temperature' = 0.0"),
        (dict(embed_dim=32, num_heads=4, dropout=1.0), ValueError, r"'dropout' = 1.0"),
        (dict(embed_dim=32, num_heads=4, topk=0), ValueError, r"'topk' = 0"),
        (dict(embed_dim=32, num_heads=4, kdim=-2), ValueError, r"'kdim' = -2"),
    ],
)
def test_bad_constructor_arguments_raise(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        MultiHeadAttention(**kwargs)


def test_bad_forward_inputs_raise() -> None:
    m = MultiHeadAttention(16, 2, kdim=8)
    x, k = torch.randn(2, 3, 16), torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match=r"'query' has shape \(2, 3, 12\).*embed_dim=16"):
        m(torch.randn(2, 3, 12), k, k)
    with pytest.raises(ValueError, match=r"'query' has shape \(3, 16\)"):
        m(torch.randn(3, 16), k, k)
    with pytest.raises(ValueError, match=r"'key' has shape \(2, 4, 16\).*kdim=8"):
        m(x, torch.randn(2, 4, 16), torch.randn(2, 4, 16))
    with pytest.raises(ValueError, match=r"'key' has batch size 3 but 'query' has 2"):
        m(x, torch.randn(3, 4, 8), torch.randn(3, 4, 16))
    with pytest.raises(ValueError, match=r"'value' has 5"):
        m(x, k, torch.randn(2, 5, 16))
    with pytest.raises(TypeError, match=r"'query' must be a torch.Tensor"):
        m([[1.0]])
    with pytest.raises(TypeError, match=r"'mask' has dtype torch.float32"):
        m(x, k, torch.randn(2, 4, 16), mask=torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"'mask' has shape \(2, 4\)"):
        m(x, k, torch.randn(2, 4, 16), mask=torch.ones(2, 4, dtype=torch.bool))  # [B, Lk] is not [Lq, Lk]
    with pytest.raises(ValueError, match=r"'mask' has shape \(2, 3, 3, 4\)"):
        m(x, k, torch.randn(2, 4, 16), mask=torch.ones(2, 3, 3, 4, dtype=torch.bool))  # 3 heads, not 2
    with pytest.raises(TypeError, match=r"'mha'"):
        MultiHeadAttention.from_torch(nn.Linear(2, 2))
