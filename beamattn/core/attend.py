"""The one attention primitive of beamattn: ``attend(q, k, v, ...)``.

Every attention in the package — the wireless beam selector, the NLP encoder,
the ViT — calls this function. It is deliberately free of projections and of
domain words (like x-transformers' ``Attend``): scores, masks, normalisation,
sparsity and dropout live here; projections live in the modules that call it.

Shapes: ``q [..., Lq, d]``, ``k [..., Lk, d]``, ``v [..., Lk, dv]`` with batch
dimensions ``...`` that broadcast; output ``[..., Lq, dv]``; weights
``[..., Lq, Lk]``.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .scores import bilinear_scores, cosine_scores, dot_scores
from .sparsemax import entmax15, sparsemax
from .topk_search import IVFSearch, check_search, ivf_topk

__all__ = ["attend", "SCORES", "NORMALIZERS"]

ScoreFn = Callable[[Tensor, Tensor], Tensor]
NormalizerFn = Callable[[Tensor, int], Tensor]

SCORES = ("dot", "cosine", "bilinear")
NORMALIZERS: dict[str, NormalizerFn] = {
    "softmax": lambda x, dim: torch.softmax(x, dim=dim),
    "sparsemax": sparsemax,
    "entmax15": entmax15,
}

# Score elements per chunk of queries in the top-k path (16 MiB in float32).
_TOPK_CHUNK_ELEMENTS = 1 << 22


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    causal: bool = False,
    scale: Union[float, Tensor, None] = None,
    score: Union[str, ScoreFn] = "dot",
    score_weight: Tensor | None = None,
    normalizer: Union[str, NormalizerFn] = "softmax",
    temperature: float = 1.0,
    topk: int | None = None,
    window: int | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
    return_weights: bool = False,
    chunk_size: int | None = None,
    topk_search: Union[str, IVFSearch, None] = None,
) -> Union[Tensor, tuple[Tensor, Tensor]]:
    """Attention: compare queries with keys, normalise the scores, average the values.

    Args:
        q: queries ``[..., Lq, d]`` (real floating point).
        k: keys ``[..., Lk, d]`` (``[..., Lk, dk]`` for bilinear or callable scores).
        v: values ``[..., Lk, dv]``.
        mask: boolean, broadcastable to ``[..., Lq, Lk]``; True = may attend.
            A query with no key to attend gets zero weights and a zero output.
        bias: additive float bias on the scores, broadcastable to ``[..., Lq, Lk]``
            (relative-position bias, ALiBi).
        causal: query ``i`` attends only to keys ``j <= i``.
        scale: multiplier of the raw scores. Default ``1/sqrt(d)`` for ``"dot"``
            and ``"bilinear"``; ``sqrt(d)`` for ``"cosine"`` (so random unit vectors
            get unit-variance scores, like scaled dot products); 1 for a callable.
            A tensor (e.g. a learned per-head scale ``[H, 1, 1]``) broadcasts.
        score: ``"dot"``, ``"cosine"``, ``"bilinear"`` (needs ``score_weight``),
            or a callable ``(q, k) -> [..., Lq, Lk]`` such as :class:`AdditiveScore`.
        score_weight: ``W [d, dk]`` of the bilinear score ``q W kᵀ``.
        normalizer: ``"softmax"``, ``"sparsemax"``, ``"entmax15"``, or a callable
            ``(scores, dim) -> weights``.
        temperature: scores are divided by it before normalising (> 0).
        topk: keep only the ``topk`` largest scores per query (1 <= topk <= Lk).
            Queries are processed in chunks, so memory is ~``Lq·topk``, not ``Lq·Lk``
            (unless ``return_weights`` asks for the dense weights).
        window: local attention, query ``i`` attends to keys with ``|i - j| <= window``.
        dropout_p: attention dropout: weights are zeroed with this probability and
            the rest rescaled by ``1/(1-p)``; only when ``training`` is True.
        training: whether dropout is active.
        return_weights: also return the weights ``[..., Lq, Lk]`` (before dropout).
        chunk_size: queries per chunk in the top-k path (default: automatic).
        topk_search: how the top-k candidates are found: ``None``/``"exact"`` computes every score;
            ``"ivf"`` (or an :class:`~beamattn.core.topk_search.IVFSearch` with its options) searches an
            inverted-file k-means index of the keys, ``O(L^1.5 d)`` instead of ``O(L² d)``, approximate
            (exact when ``probes`` = ``clusters``). Needs ``topk``, ``score="dot"``, a float ``scale``, and no
            ``mask``, ``bias``, ``causal`` or ``window``.

    Returns:
        ``out [..., Lq, dv]``, or ``(out, weights)`` if ``return_weights``.

    The plain dot/softmax path without weights calls
    :func:`torch.nn.functional.scaled_dot_product_attention`.
    """
    _check_tensors(q, k, v, score)
    lq, lk = q.shape[-2], k.shape[-2]
    norm_fn = _check_normalizer(normalizer)
    _check_options(lk, mask, bias, topk, window, dropout_p, temperature, chunk_size, q)
    if score == "bilinear":
        _check_score_weight(score_weight, q, k)
    elif score_weight is not None:
        raise ValueError(f"attend: argument 'score_weight' is only used with score='bilinear', got score={score!r}")

    if scale is None:
        d = q.shape[-1]
        scale = {"dot": 1 / math.sqrt(d), "bilinear": 1 / math.sqrt(d), "cosine": math.sqrt(d)}.get(score, 1.0)  # type: ignore[arg-type]
    if temperature != 1.0:
        scale = scale / temperature
    search = check_search(topk_search)
    if search is not None:  # checked before the SDPA fast path, which would otherwise ignore it
        _check_ivf(topk, score, scale, mask, bias, causal, window)
    dropout_p = dropout_p if training else 0.0
    allowed = _allowed(mask, causal, window, lq, lk, q.device)  # bool [..., Lq, Lk] or None

    if score == "dot" and normalizer == "softmax" and topk is None and not return_weights:
        # Causal alone uses SDPA's own flag (faster kernels); otherwise a boolean mask.
        only_causal = causal and mask is None and window is None and bias is None
        return _sdpa(q, k, v, None if only_causal else allowed, bias, only_causal, scale, dropout_p)

    if search is not None:
        return _attend_ivf(q, k, v, scale, norm_fn, topk, dropout_p, return_weights, chunk_size, search)

    if topk is not None:
        return _attend_topk(q, k, v, allowed, bias, scale, score, score_weight, norm_fn, topk, dropout_p,
                            return_weights, chunk_size)

    scores = _scores(q, k, scale, score, score_weight)  # [..., Lq, Lk]
    if bias is not None:
        scores = scores + bias
    weights = _normalize(scores, allowed, norm_fn)  # [..., Lq, Lk]
    dropped = F.dropout(weights, dropout_p, training=True) if dropout_p > 0 else weights
    out = torch.matmul(dropped, v)  # [..., Lq, dv]
    return (out, weights) if return_weights else out


# --------------------------------------------------------------------------- paths


def _sdpa(q, k, v, allowed, bias, is_causal, scale, dropout_p) -> Tensor:
    if isinstance(scale, Tensor):
        # SDPA takes a float scale only: fold a tensor scale into the queries.
        q, scale = q * scale, 1.0
    attn_mask = allowed
    if bias is not None:
        attn_mask = bias if allowed is None else bias.masked_fill(~allowed, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                                         scale=scale)
    if allowed is not None:
        # Some back-ends give NaN for a query with nothing to attend: define it as zero.
        out = out.masked_fill(~allowed.any(-1, keepdim=True), 0.0)
    return out


def _scores(q, k, scale, score, score_weight) -> Tensor:
    if score == "dot":
        # Scaling q (Lq·d numbers) is cheaper than scaling the scores (Lq·Lk numbers).
        return dot_scores(q * scale, k)
    if score == "cosine":
        return cosine_scores(q, k) * scale
    if score == "bilinear":
        return bilinear_scores(q * scale, k, score_weight)
    s = score(q, k)
    if not isinstance(s, Tensor) or s.shape[-2:] != (q.shape[-2], k.shape[-2]):
        got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
        raise ValueError(f"attend: the callable 'score' returned {got}; expected a tensor [..., Lq={q.shape[-2]}, "
                         f"Lk={k.shape[-2]}]")
    return s if isinstance(scale, float) and scale == 1.0 else s * scale


def _normalize(scores: Tensor, allowed: Tensor | None, norm_fn: NormalizerFn) -> Tensor:
    if allowed is None:
        return norm_fn(scores, -1)
    scores = scores.masked_fill(~allowed, float("-inf"))
    empty = ~allowed.any(-1, keepdim=True)  # queries with nothing to attend
    # Always applied (a no-op on rows that have keys): testing `empty.any()` first would read a value
    # back from the device, a host sync on every masked call on a GPU.
    scores = scores.masked_fill(empty, 0.0)  # avoid NaN inside the normaliser
    return norm_fn(scores, -1).masked_fill(empty, 0.0)


def _attend_topk(q, k, v, allowed, bias, scale, score, score_weight, norm_fn, topk, dropout_p, return_weights,
                 chunk_size):
    """Top-k attention, chunked over queries: memory ~ chunk·Lk + Lq·topk."""
    lq, lk = q.shape[-2], k.shape[-2]
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    if chunk_size is None:
        chunk_size = max(1, min(lq, _TOPK_CHUNK_ELEMENTS // max(1, math.prod(batch) * lk)))
    k_b = k.expand(*batch, *k.shape[-2:])
    v_b = v.expand(*batch, *v.shape[-2:])  # [*B, Lk, dv]
    q_b = q.expand(*batch, *q.shape[-2:])
    outs, dense = [], []
    for start in range(0, lq, chunk_size):
        stop = min(lq, start + chunk_size)
        s = _scores(q_b[..., start:stop, :], k_b, scale, score, score_weight)  # [*B, C, Lk]
        if bias is not None:
            s = s + _rows(bias, start, stop)
        a = None if allowed is None else _rows(allowed, start, stop).expand_as(s)
        if a is not None:
            s = s.masked_fill(~a, float("-inf"))
        top_s, top_i = s.topk(topk, dim=-1)  # [*B, C, topk]
        if a is not None:
            top_a = a.gather(-1, top_i)
            w = _normalize(top_s, top_a, norm_fn)
        else:
            w = norm_fn(top_s, -1)  # [*B, C, topk]
        if return_weights:
            dense.append(torch.zeros_like(s).scatter(-1, top_i, w))
        w_drop = F.dropout(w, dropout_p, training=True) if dropout_p > 0 else w
        # Gather the selected values without copying v: [*B, C, topk, dv].
        c = stop - start
        v_sel = v_b.unsqueeze(-3).expand(*batch, c, lk, v.shape[-1]).gather(
            -2, top_i.unsqueeze(-1).expand(*batch, c, topk, v.shape[-1]))
        outs.append(torch.matmul(w_drop.unsqueeze(-2), v_sel).squeeze(-2))  # [*B, C, dv]
        del s, top_s, w, w_drop, v_sel  # free this chunk's scores before the next chunk allocates its own
    out = torch.cat(outs, dim=-2)
    return (out, torch.cat(dense, dim=-2)) if return_weights else out


def _attend_ivf(q, k, v, scale, norm_fn, topk, dropout_p, return_weights, chunk_size, search):
    """Top-k attention with candidates from an IVF index per batch element: ``O(L^1.5 d)`` compute."""
    lq, lk, dv = q.shape[-2], k.shape[-2], v.shape[-1]
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    q_b = q.expand(*batch, *q.shape[-2:]).reshape(-1, lq, q.shape[-1])  # [B, Lq, d]
    k_b = k.expand(*batch, *k.shape[-2:]).reshape(-1, lk, k.shape[-1])  # [B, Lk, d]
    v_b = v.expand(*batch, *v.shape[-2:]).reshape(-1, lk, dv)  # [B, Lk, dv]
    if chunk_size is None:  # gathered keys and values of one chunk: chunk·topk·(d + dv) numbers, 4 MiB
        chunk_size = max(1, min(lq, (_TOPK_CHUNK_ELEMENTS // 4) // (topk * (q.shape[-1] + dv))))
    outs, dense = [], []
    for b in range(q_b.shape[0]):
        idx = ivf_topk(q_b[b], k_b[b], topk, search)  # [Lq, topk], -1 = no candidate
        valid = idx >= 0
        idx0 = idx.clamp(min=0)
        rows = []
        for start in range(0, lq, chunk_size):
            stop = min(lq, start + chunk_size)
            i, ok = idx0[start:stop], valid[start:stop]  # [C, topk]
            k_sel, v_sel = k_b[b][i], v_b[b][i]  # [C, topk, d], [C, topk, dv]
            s = torch.matmul(k_sel, (q_b[b, start:stop] * scale).unsqueeze(-1)).squeeze(-1)  # [C, topk]
            w = _normalize(s, ok, norm_fn)  # [C, topk]
            if return_weights:
                dense.append(torch.zeros(stop - start, lk, dtype=w.dtype, device=w.device).scatter_add(-1, i, w))
            w_drop = F.dropout(w, dropout_p, training=True) if dropout_p > 0 else w
            rows.append(torch.matmul(w_drop.unsqueeze(-2), v_sel).squeeze(-2))  # [C, dv]
        outs.append(torch.cat(rows, dim=0))
    out = torch.stack(outs).reshape(*batch, lq, dv)
    return (out, torch.cat(dense).reshape(*batch, lq, lk)) if return_weights else out


def _rows(t: Tensor, start: int, stop: int) -> Tensor:
    """Rows [start, stop) of a tensor broadcastable to [..., Lq, Lk] (size-1 row dims stay)."""
    return t if t.shape[-2] == 1 else t[..., start:stop, :]


def _allowed(mask, causal, window, lq, lk, device) -> Tensor | None:
    allowed = mask
    if causal or window is not None:
        i = torch.arange(lq, device=device).unsqueeze(-1)  # [Lq, 1]
        j = torch.arange(lk, device=device)  # [Lk]
        band = torch.ones(lq, lk, dtype=torch.bool, device=device)
        if causal:
            band &= j <= i
        if window is not None:
            band &= (i - j).abs() <= window
        allowed = band if allowed is None else allowed & band
    return allowed


# --------------------------------------------------------------------------- checks


def _describe(t: Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}"


def _check_tensors(q, k, v, score) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"attend: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
        if t.is_complex():
            raise TypeError(f"attend: argument '{name}' is complex ({_describe(t)}); expected a real floating "
                            "tensor (split complex features into real and imaginary parts)")
        if not t.is_floating_point():
            raise TypeError(f"attend: argument '{name}' has dtype {t.dtype}; expected a floating dtype")
        if t.dim() < 2:
            raise ValueError(f"attend: argument '{name}' has {_describe(t)}; expected at least 2 dims [..., L, d]")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"attend: q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.device == k.device == v.device:
        raise ValueError(f"attend: q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if isinstance(score, str):
        if score not in SCORES:
            raise ValueError(f"attend: argument 'score' = {score!r} is unknown; expected one of {SCORES} or a callable")
        if score != "bilinear" and q.shape[-1] != k.shape[-1]:
            raise ValueError(f"attend: q has feature size d={q.shape[-1]} but k has {k.shape[-1]}; score={score!r} "
                             "needs equal sizes")
    elif not callable(score):
        raise TypeError(f"attend: argument 'score' must be a name or a callable, got {type(score).__name__}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"attend: k has Lk={k.shape[-2]} keys but v has {v.shape[-2]} values; expected equal")
    if k.shape[-2] == 0:
        raise ValueError("attend: k has Lk=0 keys; expected at least one key")
    if q.shape[:-2] == k.shape[:-2] == v.shape[:-2]:
        return  # the common case; torch.broadcast_shapes costs ~0.1 ms of Python
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(f"attend: batch dims of q {tuple(q.shape[:-2])}, k {tuple(k.shape[:-2])} and v "
                         f"{tuple(v.shape[:-2])} do not broadcast") from None


def _check_normalizer(normalizer) -> NormalizerFn:
    if isinstance(normalizer, str):
        if normalizer not in NORMALIZERS:
            raise ValueError(f"attend: argument 'normalizer' = {normalizer!r} is unknown; expected one of "
                             f"{tuple(NORMALIZERS)} or a callable")
        return NORMALIZERS[normalizer]
    if not callable(normalizer):
        raise TypeError(f"attend: argument 'normalizer' must be a name or a callable, got {type(normalizer).__name__}")
    return normalizer


def _check_options(lk, mask, bias, topk, window, dropout_p, temperature, chunk_size, q) -> None:
    target = (*q.shape[:-1], lk)
    for name, t in (("mask", mask), ("bias", bias)):
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"attend: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
        if name == "mask" and t.dtype != torch.bool:
            raise TypeError(f"attend: argument 'mask' has dtype {t.dtype}; expected torch.bool (True = attend)")
        if name == "bias" and not t.is_floating_point():
            raise TypeError(f"attend: argument 'bias' has dtype {t.dtype}; expected a floating dtype")
        if t.dim() < 2:
            raise ValueError(f"attend: argument '{name}' has {_describe(t)}; expected [..., Lq, Lk] (use size-1 dims "
                             "to broadcast)")
        try:
            torch.broadcast_shapes(t.shape, target)
        except RuntimeError:
            raise ValueError(f"attend: argument '{name}' has shape {tuple(t.shape)}, which does not broadcast to "
                             f"[..., Lq, Lk] = {target}") from None
    for name, val, lo in (("topk", topk, 1), ("window", window, 0), ("chunk_size", chunk_size, 1)):
        if val is None:
            continue
        if isinstance(val, bool) or not isinstance(val, int):
            raise TypeError(f"attend: argument '{name}' = {val!r} must be an int")
        if val < lo:
            raise ValueError(f"attend: argument '{name}' = {val}; expected an int >= {lo}")
    if topk is not None and topk > lk:
        raise ValueError(f"attend: argument 'topk' = {topk} is larger than the number of keys Lk = {lk}; "
                         f"expected 1 <= topk <= {lk}")
    if not (isinstance(dropout_p, (int, float)) and 0.0 <= dropout_p < 1.0):
        raise ValueError(f"attend: argument 'dropout_p' = {dropout_p!r}; expected a float in [0, 1)")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"attend: argument 'temperature' = {temperature!r}; expected a finite float > 0")


def _check_ivf(topk, score, scale, mask, bias, causal, window) -> None:
    if topk is None:
        raise ValueError("attend: argument 'topk_search' needs 'topk' (the number of keys kept per query); got "
                         "topk=None")
    if score != "dot":
        raise ValueError(f"attend: topk_search (an inner-product index) needs score='dot', got score={score!r}")
    if isinstance(scale, Tensor) or not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"attend: topk_search needs a float 'scale' > 0 (the index ranks raw dot products), got "
                         f"{type(scale).__name__ if isinstance(scale, Tensor) else repr(scale)}")
    for name, val in (("mask", mask), ("bias", bias), ("window", window)):
        if val is not None:
            raise ValueError(f"attend: topk_search does not combine with '{name}' (the index searches every key); "
                             f"got {name}={'a tensor' if isinstance(val, Tensor) else repr(val)}")
    if causal:
        raise ValueError("attend: topk_search does not combine with causal=True (the index searches every key)")


def _check_score_weight(w, q, k) -> None:
    if not isinstance(w, Tensor):
        raise ValueError("attend: score='bilinear' needs argument 'score_weight', a tensor W [d, dk]; got "
                         f"{type(w).__name__}")
    if w.shape != (q.shape[-1], k.shape[-1]):
        raise ValueError(f"attend: argument 'score_weight' has shape {tuple(w.shape)}; expected "
                         f"[d, dk] = ({q.shape[-1]}, {k.shape[-1]})")
