"""attend(): equality with PyTorch's attention, invariances, sparsity, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from beamattn.core import NORMALIZERS, AdditiveScore, BilinearScore, CosineScore, attend, dot_scores, entmax15, sparsemax


def qkv(*batch, lq=7, lk=9, d=8, dv=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*batch, lq, d, generator=g, dtype=dtype), torch.randn(*batch, lk, d, generator=g, dtype=dtype),
            torch.randn(*batch, lk, dv, generator=g, dtype=dtype))


def reference(q, k, v, allowed=None, scale=None, bias=None, normalizer=torch.softmax):
    """Plain three-line attention in float64."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q.double() @ k.double().transpose(-2, -1)) * scale
    if bias is not None:
        s = s + bias.double()
    if allowed is not None:
        s = s.masked_fill(~allowed, float("-inf"))
    w = normalizer(s, -1)
    return w @ v.double(), w


@pytest.mark.parametrize("return_weights", [False, True])
def test_softmax_equals_sdpa(return_weights):
    q, k, v = qkv(2, 3)
    out = attend(q, k, v, return_weights=return_weights)
    out = out[0] if return_weights else out
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("return_weights", [False, True])
def test_softmax_with_mask_equals_sdpa(return_weights):
    q, k, v = qkv(2, 3)
    mask = torch.rand(2, 1, 7, 9, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[..., 0] = True  # every query has a key
    out = attend(q, k, v, mask=mask, return_weights=return_weights)
    out = out[0] if return_weights else out
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_causal_and_bias_equal_reference():
    q, k, v = qkv(2, lq=9, lk=9)
    bias = torch.randn(9, 9)
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    ref, _ = reference(q, k, v, allowed=causal, bias=bias)
    for rw in (False, True):
        out = attend(q, k, v, causal=True, bias=bias, return_weights=rw)
        torch.testing.assert_close((out[0] if rw else out).double(), ref, atol=1e-5, rtol=0)


def test_weights_are_returned_and_sum_to_one():
    q, k, v = qkv(4)
    out, w = attend(q, k, v, return_weights=True)
    ref_out, ref_w = reference(q, k, v)
    torch.testing.assert_close(w.double(), ref_w, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.double(), ref_out, atol=1e-6, rtol=0)


def test_fully_masked_row_gives_zeros():
    q, k, v = qkv(2)
    mask = torch.ones(7, 9, dtype=torch.bool)
    mask[3] = False
    for normalizer in ("softmax", "sparsemax", "entmax15"):
        for rw in (False, True):
            res = attend(q, k, v, mask=mask, normalizer=normalizer, return_weights=rw)
            out = res[0] if rw else res
            assert torch.isfinite(out).all()
            assert torch.equal(out[:, 3], torch.zeros(2, 5))
            if rw:
                assert torch.equal(res[1][:, 3], torch.zeros(2, 9))
    # Gradients stay finite.
    qg = q.clone().requires_grad_()
    attend(qg, k, v, mask=mask, normalizer="softmax", return_weights=True)[0].sum().backward()
    assert torch.isfinite(qg.grad).all()


def test_cosine_scores_ignore_norms():
    q, k, v = qkv(3)
    out = attend(q, k, v, score="cosine")
    scale_q = torch.rand(3, 7, 1) * 10 + 0.1
    scale_k = torch.rand(3, 9, 1) * 10 + 0.1
    torch.testing.assert_close(attend(q * scale_q, k * scale_k, v, score="cosine"), out)
    # With dot products the key norm does change the output.
    assert not torch.allclose(attend(q, k * scale_k, v), attend(q, k, v))


def test_cosine_default_scale_gives_unit_variance_for_random_vectors():
    q, k, v = qkv(lq=256, lk=256, d=64, seed=3)
    _, w = attend(q, k, v, score="cosine", return_weights=True)
    s = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T * 8.0  # sqrt(64)
    torch.testing.assert_close(w, torch.softmax(s, -1))
    assert 0.8 < s.var().item() < 1.2


def test_topk_equal_lk_is_dense_and_topk_matches_masked_dense():
    q, k, v = qkv(2, 3, lq=20, lk=30)
    for normalizer in ("softmax", "sparsemax"):
        dense = attend(q, k, v, normalizer=normalizer, return_weights=True)
        out, w = attend(q, k, v, normalizer=normalizer, topk=30, chunk_size=6, return_weights=True)
        torch.testing.assert_close(out, dense[0])
        torch.testing.assert_close(w, dense[1])
    # topk < Lk equals dense scores masked to their top k.
    s = q @ k.transpose(-2, -1) / math.sqrt(8)
    keep = torch.zeros_like(s, dtype=torch.bool).scatter(-1, s.topk(4, -1).indices, True)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    for cs in (None, 1, 7, 20):
        torch.testing.assert_close(attend(q, k, v, topk=4, chunk_size=cs), ref)
    _, w = attend(q, k, v, topk=4, return_weights=True)
    assert torch.equal((w > 0).sum(-1), torch.full((2, 3, 20), 4))


def test_topk_with_mask_and_broadcast_batch():
    q, k, v = qkv(2, 3, lq=10, lk=12)
    k1, v1 = k[:1, :1], v[:1, :1]  # broadcast batch dims
    mask = torch.rand(10, 12, generator=torch.Generator().manual_seed(9)) > 0.4
    mask[4] = False
    dense = attend(q, k1, v1, mask=mask, topk=12)
    torch.testing.assert_close(dense, attend(q, k1, v1, mask=mask))
    assert torch.equal(dense[..., 4, :], torch.zeros(2, 3, 5))


def test_window_at_least_length_is_dense_and_window_is_banded():
    q, k, v = qkv(2, lq=11, lk=11)
    dense = attend(q, k, v)
    torch.testing.assert_close(attend(q, k, v, window=10), dense)
    torch.testing.assert_close(attend(q, k, v, window=50, normalizer="sparsemax"), attend(q, k, v, normalizer="sparsemax"))
    _, w = attend(q, k, v, window=2, return_weights=True)
    i, j = torch.meshgrid(torch.arange(11), torch.arange(11), indexing="ij")
    assert torch.all(w[:, (i - j).abs() > 2] == 0)
    band = (i - j).abs() <= 2
    torch.testing.assert_close(attend(q, k, v, window=2), F.scaled_dot_product_attention(q, k, v, attn_mask=band))


def test_self_attention_without_positions_is_permutation_equivariant():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 13, 8, generator=g)
    perm = torch.randperm(13, generator=g)
    for normalizer in ("softmax", "sparsemax", "entmax15"):
        for kw in ({}, {"topk": 5}, {"score": "cosine"}):
            out = attend(x, x, x, normalizer=normalizer, **kw)
            torch.testing.assert_close(attend(x[:, perm], x[:, perm], x[:, perm], normalizer=normalizer, **kw),
                                       out[:, perm])


def test_dropout_is_identity_in_eval_and_unbiased_in_training():
    q, k, v = qkv(lq=4, lk=16, seed=5)
    torch.testing.assert_close(attend(q, k, v, dropout_p=0.5, training=False), attend(q, k, v))
    _, w = attend(q, k, v, return_weights=True, normalizer="sparsemax")
    torch.manual_seed(0)
    n = 4000
    outs = torch.stack([attend(q, k, v, dropout_p=0.3, training=True, normalizer="sparsemax") for _ in range(n)])
    mean = outs.mean(0)
    expected = w @ v
    # Monte Carlo: the standard error of the mean shrinks as 1/sqrt(n).
    se = outs.std(0) / math.sqrt(n)
    assert torch.all((mean - expected).abs() <= 5 * se + 1e-6)
    # Some outputs really were changed by dropout.
    assert (outs[0] - expected).abs().max() > 1e-3


def test_sdpa_dropout_path_is_unbiased():
    q, k, v = qkv(lq=3, lk=6, seed=6)
    torch.manual_seed(1)
    outs = torch.stack([attend(q, k, v, dropout_p=0.2, training=True) for _ in range(4000)])
    se = outs.std(0) / math.sqrt(4000)
    assert torch.all((outs.mean(0) - attend(q, k, v)).abs() <= 5 * se + 1e-6)


def test_score_variance_scaling():
    # Unit-variance q, k: the raw dot product (dot_scores) has variance d; the scores attend() normalises with its
    # default scale have variance 1. An identity "normaliser" hands attend's scaled scores back as the weights.
    g = torch.Generator().manual_seed(7)
    identity = lambda s, dim: s  # noqa: E731
    for d in (16, 256):
        q = torch.randn(512, d, generator=g)
        k = torch.randn(512, d, generator=g)
        v = torch.zeros(512, 1)
        raw = dot_scores(q, k)  # [512, 512]
        torch.testing.assert_close(raw, q @ k.T)
        assert abs(raw.var().item() / d - 1) < 0.1
        _, scaled = attend(q, k, v, normalizer=identity, return_weights=True)  # [512, 512] scores · 1/sqrt(d)
        torch.testing.assert_close(scaled, raw / math.sqrt(d))
        assert abs(scaled.var().item() - 1) < 0.1
        for normalizer in ("softmax", "sparsemax"):  # the same scale on the named normalisers' path
            _, w = attend(q[:4], k[:6], v[:6], normalizer=normalizer, return_weights=True)
            ref = NORMALIZERS[normalizer](raw[:4, :6] / math.sqrt(d), -1)
            torch.testing.assert_close(w, ref)
        # cosine scores: the default scale sqrt(d) also gives unit variance for random vectors
        _, c = attend(q, k, v, score="cosine", normalizer=identity, return_weights=True)
        assert abs(c.var().item() - 1) < 0.1


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax", "entmax15"])
@pytest.mark.parametrize("bias_rows", ["full", "broadcast"])
def test_topk_with_bias_equals_a_float64_reference(normalizer, bias_rows):
    # Independent reference: float64 scores + bias, keep each query's top k of the biased scores, normalise.
    # A bias large enough to reorder the top k: dropping it (or adding it after the top-k choice) fails.
    q, k, v = qkv(2, lq=10, lk=12, seed=3)
    g = torch.Generator().manual_seed(4)
    bias = 3.0 * torch.randn(10 if bias_rows == "full" else 1, 12, generator=g)  # [Lq or 1, Lk]
    mask = torch.rand(10, 12, generator=g) > 0.2
    mask[:, 0] = True
    norm = {"softmax": torch.softmax, "sparsemax": sparsemax, "entmax15": entmax15}[normalizer]
    for m in (None, mask):
        s = (q.double() @ k.double().transpose(-2, -1)) / math.sqrt(8) + bias.double()  # [2, 10, 12]
        if m is not None:
            s = s.masked_fill(~m, float("-inf"))
        keep = torch.zeros_like(s, dtype=torch.bool).scatter(-1, s.topk(4, -1).indices, True)
        w_ref = norm(s.masked_fill(~keep, float("-inf")), -1)  # [2, 10, 12]
        assert not torch.equal(keep, torch.zeros_like(keep).scatter(-1, (s - bias.double()).topk(4, -1).indices, True))
        for cs in (None, 1, 3):
            out, w = attend(q, k, v, bias=bias, mask=m, topk=4, normalizer=normalizer, chunk_size=cs,
                            return_weights=True)
            torch.testing.assert_close(w.double(), w_ref, atol=1e-5, rtol=0)
            torch.testing.assert_close(out.double(), w_ref @ v.double(), atol=1e-5, rtol=0)
            torch.testing.assert_close(attend(q, k, v, bias=bias, mask=m, topk=4, normalizer=normalizer,
                                              chunk_size=cs), out)


def test_temperature_and_scale():
    q, k, v = qkv(2)
    torch.testing.assert_close(attend(q, k, v, temperature=2.0), attend(q, k, v, scale=1 / (2 * math.sqrt(8))))
    # A tensor scale (learned, per head) broadcasts.
    q, k, v = qkv(2, 3)
    s = torch.tensor([0.1, 0.5, 1.0]).view(3, 1, 1)
    ref = torch.stack([attend(q[:, h], k[:, h], v[:, h], scale=float(s[h])) for h in range(3)], 1)
    torch.testing.assert_close(attend(q, k, v, scale=s), ref)
    torch.testing.assert_close(attend(q, k, v, scale=s, return_weights=True)[0], ref)
    # Low temperature -> argmax.
    _, w = attend(q, k, v, temperature=1e-4, return_weights=True)
    assert torch.allclose(w.max(-1).values, torch.ones(()))


def test_bilinear_and_additive_scores():
    q, k, v = qkv(2, d=8)
    k6 = torch.randn(2, 9, 6)
    w = torch.randn(8, 6)
    out, wts = attend(q, k6, v, score="bilinear", score_weight=w, return_weights=True)
    ref = torch.softmax(q @ w @ k6.transpose(-2, -1) / math.sqrt(8), -1)
    torch.testing.assert_close(wts, ref)
    bil = BilinearScore(8, 6)
    torch.testing.assert_close(attend(q, k6, v, score=bil), torch.softmax(q @ bil.weight @ k6.transpose(-2, -1), -1) @ v)
    add = AdditiveScore(8, 6, hidden=16)
    _, wa = attend(q, k6, v, score=add, normalizer="sparsemax", return_weights=True)
    hq, hk = add.proj_q(q), add.proj_k(k6)
    e = torch.stack([torch.stack([add.w(torch.tanh(hq[b, i] + hk[b])).squeeze(-1) for i in range(7)]) for b in range(2)])
    torch.testing.assert_close(wa, sparsemax(e))


def test_additive_and_cosine_score_modules_closed_forms():
    # Bahdanau: e_ij = wᵀ tanh(W_q q_i + W_k k_j + b_k), with one bias (in the key projection) and none elsewhere.
    torch.manual_seed(3)
    add = AdditiveScore(8, 6, hidden=16)
    assert add.proj_q.bias is None and add.proj_k.bias is not None and add.w.bias is None
    assert sum(p.numel() for p in add.parameters()) == 8 * 16 + 6 * 16 + 16 + 16
    q, k = torch.randn(2, 7, 8, dtype=torch.float64), torch.randn(2, 9, 6, dtype=torch.float64)
    add = add.double()
    ref = torch.einsum("h,bijh->bij", add.w.weight[0],
                       torch.tanh((q @ add.proj_q.weight.T).unsqueeze(-2)
                                  + (k @ add.proj_k.weight.T + add.proj_k.bias).unsqueeze(-3)))  # [2, 7, 9]
    torch.testing.assert_close(add(q, k), ref)
    # Cosine with a learned scale: scale·cos(q, k), the scale stored as its log and clamped at max_scale.
    cos = CosineScore(scale=4.0, max_scale=20.0).double()
    assert isinstance(cos.log_scale, torch.nn.Parameter)
    kk = torch.randn(2, 9, 8, dtype=torch.float64)
    cq = F.normalize(q, dim=-1) @ F.normalize(kk, dim=-1).transpose(-2, -1)
    torch.testing.assert_close(cos(q, kk), 4.0 * cq)
    with torch.no_grad():
        cos.log_scale.fill_(math.log(1000.0))
    torch.testing.assert_close(cos(q, kk), 20.0 * cq)  # clamped
    fixed = CosineScore(scale=2.0, learn_scale=False)
    assert not list(fixed.parameters())
    torch.testing.assert_close(fixed.double()(q, kk), 2.0 * cq)
    with pytest.raises(ValueError, match="'scale' = 0"):
        CosineScore(scale=0)


def test_callable_score_is_multiplied_by_an_explicit_scale():
    q, k, v = qkv(2, d=8)
    raw = lambda a, b: a @ b.transpose(-2, -1)  # noqa: E731
    for scale in (2.0, 0.5, 1.0):
        _, w = attend(q, k, v, score=raw, scale=scale, return_weights=True)
        torch.testing.assert_close(w, torch.softmax(scale * (q @ k.transpose(-2, -1)), -1))
    _, w = attend(q, k, v, score=raw, return_weights=True)  # a callable's default scale is 1
    torch.testing.assert_close(w, torch.softmax(q @ k.transpose(-2, -1), -1))


def test_topk_dropout_is_identity_in_eval_and_unbiased_in_training():
    q, k, v = qkv(lq=4, lk=16, seed=5)
    torch.testing.assert_close(attend(q, k, v, topk=5, dropout_p=0.5, training=False), attend(q, k, v, topk=5))
    expected = attend(q, k, v, topk=5)
    torch.manual_seed(2)
    n = 2000
    outs = torch.stack([attend(q, k, v, topk=5, dropout_p=0.3, training=True) for _ in range(n)])
    se = outs.std(0) / math.sqrt(n)
    assert torch.all((outs.mean(0) - expected).abs() <= 5 * se + 1e-6)
    assert (outs[0] - expected).abs().max() > 1e-3  # dropout did change outputs


def test_sparsemax_normalizer_gives_exact_zeros_and_gradients():
    q, k, v = qkv(2, lq=5, lk=40, seed=8)
    q = (q * 3).requires_grad_()
    out, w = attend(q, k, v, normalizer="sparsemax", return_weights=True)
    assert (w == 0).any()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_double_precision_path():
    q, k, v = qkv(2, dtype=torch.float64)
    out = attend(q, k, v, normalizer="sparsemax")
    assert out.dtype == torch.float64
    ref, _ = reference(q, k, v, normalizer=sparsemax)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        ({"topk": 10}, ValueError, r"'topk' = 10 .*Lk = 9"),
        ({"topk": 0}, ValueError, r"'topk' = 0"),
        ({"window": -1}, ValueError, r"'window' = -1"),
        ({"score": "dott"}, ValueError, r"'score' = 'dott'"),
        ({"normalizer": "softmx"}, ValueError, r"'normalizer' = 'softmx'"),
        ({"temperature": 0.0}, ValueError, r"'temperature' = 0.0"),
        ({"dropout_p": 1.0}, ValueError, r"'dropout_p' = 1.0"),
        ({"mask": torch.ones(7, 9)}, TypeError, r"'mask'.*float32.*bool"),
        ({"mask": torch.ones(7, 8, dtype=torch.bool)}, ValueError, r"'mask' has shape \(7, 8\)"),
        ({"score": "bilinear"}, ValueError, r"'score_weight'"),
        ({"topk": 2.5}, TypeError, r"'topk' = 2.5"),
        # bias checked also without a mask (the mask's absence must not skip it)
        ({"bias": torch.ones(7, 8)}, ValueError, r"'bias' has shape \(7, 8\)"),
        ({"bias": torch.ones(7, 9, dtype=torch.int64)}, TypeError, r"'bias' has dtype torch.int64"),
        ({"bias": [[0.0]]}, TypeError, r"'bias' must be a torch.Tensor"),
        ({"chunk_size": 0, "topk": 2}, ValueError, r"'chunk_size' = 0"),
    ],
)
def test_bad_options(kwargs, exc, pattern):
    q, k, v = qkv(2)
    with pytest.raises(exc, match=pattern):
        attend(q, k, v, **kwargs)


def test_bad_tensors():
    q, k, v = qkv(2)
    with pytest.raises(TypeError, match="'q' is complex"):
        attend(q.to(torch.complex64), k, v)
    with pytest.raises(TypeError, match="'k' has dtype torch.int64"):
        attend(q, k.long(), v)
    with pytest.raises(ValueError, match="d=8 but k has 6"):
        attend(q, k[..., :6], v)
    for name, args in (("q", (q.long(), k, v)), ("k", (q, k.long(), v)), ("v", (q, k, v.long()))):
        with pytest.raises(TypeError, match=f"^attend: argument '{name}' has dtype torch.int64"):
            attend(*args)
    with pytest.raises(ValueError, match="^attend: argument 'v' has shape"):
        attend(q, k, v[0, 0])
    with pytest.raises(ValueError, match="Lk=9 keys but v has 8"):
        attend(q, k, v[:, :8])
    with pytest.raises(ValueError, match="do not broadcast"):
        attend(q, k.expand(2, 9, 8)[None].expand(3, 2, 9, 8).reshape(6, 9, 8), v)
    with pytest.raises(TypeError, match="one dtype"):
        attend(q, k.double(), v)


# --------------------------------------------------------------------------- sub-quadratic top-k (IVF index)


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax"])
def test_ivf_topk_with_every_cluster_probed_is_exact_topk(normalizer):
    from beamattn.core.topk_search import IVFSearch

    q, k, v = qkv(2, 3, lq=40, lk=150, d=8, dv=5, seed=4)
    k = k.requires_grad_(True)
    search = IVFSearch(clusters=12, probes=12)  # every key is a candidate
    out, w = attend(q, k, v, topk=6, normalizer=normalizer, topk_search=search, return_weights=True)
    ref, w_ref = attend(q, k, v, topk=6, normalizer=normalizer, return_weights=True)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(w, w_ref)
    # gradients reach the keys through the gathered candidates, as in exact top-k
    (g,) = torch.autograd.grad(out.square().sum(), k)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), k)
    torch.testing.assert_close(g, g_ref)


def test_ivf_topk_recall_on_planted_neighbours_is_one():
    from beamattn.core.topk_search import IVFSearch, ivf_topk

    # 8 groups of 20 keys around orthogonal centres 10·e_g: a query near centre g has its 5 largest dot
    # products inside group g (same-group scores ~100, other groups ~0). k-means puts every group inside
    # one cluster, or splits it over at most a few: 3 probes of 8 clusters cover the whole group.
    g = torch.Generator().manual_seed(1)
    groups, per, d = 8, 20, 16
    centres = 10 * torch.eye(d)[:groups]  # [8, 16]
    label = torch.arange(groups).repeat_interleave(per)  # [160]
    k = centres[label] + 0.1 * torch.randn(groups * per, d, generator=g)
    q_label = torch.randint(0, groups, (50,), generator=g)
    q = centres[q_label] + 0.1 * torch.randn(50, d, generator=g)
    true = (q @ k.T).topk(5, dim=-1).indices  # [50, 5]
    assert (label[true] == q_label[:, None]).all()  # the planted neighbours are the true top-5
    for seed in range(5):
        idx = ivf_topk(q, k, 5, IVFSearch(clusters=8, probes=3, seed=seed))
        assert torch.equal(idx.sort(-1).values, true.sort(-1).values)
    v = torch.randn(groups * per, 3, generator=g)
    torch.testing.assert_close(attend(q, k, v, topk=5, topk_search=IVFSearch(clusters=8, probes=3)),
                               attend(q, k, v, topk=5))


def test_ivf_topk_is_approximate_with_few_probes_and_marks_missing_candidates():
    from beamattn.core.topk_search import IVFSearch, ivf_topk

    q, k, _ = qkv(lq=64, lk=400, d=8, seed=2)
    idx = ivf_topk(q, k, 10, IVFSearch(clusters=20, probes=1))
    true = (q @ k.T).topk(10, -1).indices
    recall = (idx.unsqueeze(-1) == true.unsqueeze(-2)).any(-2).float().mean().item()
    assert 0.0 < recall < 1.0  # random keys have no cluster structure: one probe misses some
    # a probe that holds fewer keys than topk leaves -1 slots, and attend gives them zero weight
    idx = ivf_topk(q, k, 100, IVFSearch(clusters=20, probes=1))
    assert (idx == -1).any() and ((idx >= -1) & (idx < 400)).all()
    v = torch.randn(400, 3)
    out, w = attend(q, k, v, topk=100, topk_search=IVFSearch(clusters=20, probes=1), return_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(64))
    assert torch.isfinite(out).all()


def test_kmeans_is_seeded_and_assigns_to_the_nearest_centroid():
    from beamattn.core.topk_search import kmeans

    x = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
    c1, a1 = kmeans(x, 7, 5, seed=3)
    c2, a2 = kmeans(x, 7, 5, seed=3)
    assert torch.equal(c1, c2) and torch.equal(a1, a2)
    assert torch.equal(a1, torch.cdist(x, c1).argmin(-1))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"topk_search": "ivf"}, r"'topk_search' needs 'topk'"),
        ({"topk_search": "annoy", "topk": 2}, r"'topk_search' = 'annoy'; expected None, 'exact', 'ivf'"),
        ({"topk_search": "ivf", "topk": 2, "score": "cosine"}, r"needs score='dot', got score='cosine'"),
        ({"topk_search": "ivf", "topk": 2, "mask": torch.ones(7, 9, dtype=torch.bool)}, r"combine with 'mask'"),
        ({"topk_search": "ivf", "topk": 2, "causal": True}, r"causal=True"),
        ({"topk_search": "ivf", "topk": 2, "window": 1}, r"combine with 'window'"),
        ({"topk_search": "ivf", "topk": 2, "scale": torch.tensor(0.5)}, r"float 'scale' > 0"),
    ],
)
def test_ivf_bad_options(kwargs, pattern):
    q, k, v = qkv(2)
    with pytest.raises(ValueError, match=pattern):
        attend(q, k, v, **kwargs)


@pytest.mark.parametrize("field, value", [("probes", 0), ("clusters", 0), ("iters", -1), ("probes", 2.0),
                                          ("seed", -3)])
def test_ivf_search_fields_are_checked(field, value):
    from beamattn.core.topk_search import IVFSearch

    with pytest.raises(ValueError, match=rf"^IVFSearch: field '{field}' = {value!r}; expected an int"):
        IVFSearch(**{field: value})
