"""Attention diagnostics: how peaked, how spread and how sparse attention is,
and how much each head contributes.

All functions take attention weights ``[..., Lq, Lk]`` as returned by
``attend(..., return_weights=True)`` (rows over keys, non-negative, normally
summing to 1) or per-head outputs, and return plain tensors; they are cheap
enough to log every step. They do not renormalise: a row of zeros (a query
with nothing to attend, see :func:`attend`) has entropy 0, coverage 0 and
0 active keys.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["attention_entropy", "coverage", "head_output_share", "active_count"]


def attention_entropy(weights: Tensor, dim: int = -1, *, base: float = math.e) -> Tensor:
    """Shannon entropy of each attention distribution, ``-Σ_j p_j log p_j``.

    ``0 · log 0 = 0``, so the exact zeros of sparsemax/entmax give finite values
    (and finite gradients). Uniform weights over ``n`` keys give ``log n``,
    one-hot weights give 0.

    Args:
        weights: non-negative floating weights, e.g. ``[..., Lq, Lk]``.
        dim: the axis of the distribution (the key axis by default).
        base: logarithm base: ``math.e`` for nats (default), 2 for bits.

    Returns:
        ``weights`` without ``dim``, e.g. ``[..., Lq]``, in nats (or in units of
        ``log(base)``).
    """
    fn = "attention_entropy"
    _check_weights(fn, weights, 1)
    dim = _check_dim(fn, weights, dim)
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not (
            math.isfinite(base) and base > 0 and base != 1):
        raise ValueError(f"{fn}: argument 'base' = {base!r}; expected a finite float > 0 and != 1 "
                         "(math.e for nats, 2 for bits)")
    # log of 1 where p = 0: p·log p is then 0·0 = 0 with a zero (not NaN) gradient,
    # which torch.where over log(0) = -inf would not give.
    safe = torch.where(weights > 0, weights, torch.ones_like(weights))
    plogp = weights * torch.log(safe)  # [..., Lq, Lk]
    entropy = -plogp.sum(dim=dim)  # [..., Lq]
    return entropy if base == math.e else entropy / math.log(base)


def coverage(weights: Tensor) -> Tensor:
    """Total attention each key receives: the sum of the weights over the queries.

    ``weights [..., Lq, Lk]`` → ``[..., Lk]``. With rows that sum to 1 the
    coverage sums to ``Lq``; a key with coverage 0 is never looked at, one with
    coverage near ``Lq`` is looked at by everything.
    """
    fn = "coverage"
    _check_weights(fn, weights, 2)
    return weights.sum(dim=-2)  # [..., Lk]


def head_output_share(head_outputs: Tensor, *, per_example: bool = False) -> Tensor:
    """Share of each head in the total output norm.

    The norm of head ``h`` is the Frobenius norm ``||out_h||_F`` of its
    contribution over positions ``L`` and features ``E`` (e.g. each head's
    output after its slice of the output projection). The share is
    ``||out_h||_F / Σ_h' ||out_h'||_F``; shares are in ``[0, 1]`` and sum to 1.
    A head whose share stays near 0 contributes little and is a pruning candidate.

    Args:
        head_outputs: ``[..., H, L, E]`` real floating.
        per_example: if False (default), the norms are *summed* over the leading
            dims ``...`` before normalising (a pooled share, ``[H]``; larger
            examples weigh more). If True, one share per leading index, ``[..., H]``.

    Returns:
        ``[H]``, or ``[..., H]`` if ``per_example``. If all norms are 0 the
        shares are 0 (not NaN).
    """
    fn = "head_output_share"
    if not isinstance(head_outputs, Tensor):
        raise TypeError(f"{fn}: argument 'head_outputs' must be a torch.Tensor, got {type(head_outputs).__name__}")
    if not head_outputs.is_floating_point():
        raise TypeError(f"{fn}: argument 'head_outputs' has dtype {head_outputs.dtype}; expected a real floating "
                        "dtype")
    if head_outputs.dim() < 3:
        raise ValueError(f"{fn}: argument 'head_outputs' has shape {tuple(head_outputs.shape)}; expected at least "
                         "3 dims [..., H, L, E]")
    norms = torch.linalg.vector_norm(head_outputs, dim=(-2, -1))  # [..., H]
    if not per_example:
        norms = norms.reshape(-1, norms.shape[-1]).sum(dim=0)  # [H]
    total = norms.sum(dim=-1, keepdim=True)  # [..., 1]
    # Clamping the denominator turns 0/0 into 0 without a data-dependent branch.
    return norms / total.clamp_min(torch.finfo(norms.dtype).tiny)  # [..., H]


def active_count(weights: Tensor, dim: int = -1, threshold: float = 0.0) -> Tensor:
    """Number of weights above ``threshold`` per distribution (the support size).

    With the default threshold 0 this is the exact support size of sparsemax /
    entmax weights; softmax weights are all active (up to underflow).

    Args:
        weights: non-negative floating weights, e.g. ``[..., Lq, Lk]``.
        dim: the axis of the distribution (the key axis by default).
        threshold: a weight counts if it is strictly greater (>= 0).

    Returns:
        int64, ``weights`` without ``dim``, e.g. ``[..., Lq]``.
    """
    fn = "active_count"
    _check_weights(fn, weights, 1)
    dim = _check_dim(fn, weights, dim)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"{fn}: argument 'threshold' = {threshold!r}; expected a finite float >= 0")
    return (weights > threshold).sum(dim=dim)  # [..., Lq] int64


# --------------------------------------------------------------------------- checks


def _check_weights(fn: str, weights: object, min_dims: int) -> None:
    if not isinstance(weights, Tensor):
        raise TypeError(f"{fn}: argument 'weights' must be a torch.Tensor, got {type(weights).__name__}")
    if not weights.is_floating_point():
        raise TypeError(f"{fn}: argument 'weights' has dtype {weights.dtype}; expected a real floating dtype")
    if weights.dim() < min_dims:
        expected = "[..., Lq, Lk]" if min_dims >= 2 else "at least 1 dim"
        raise ValueError(f"{fn}: argument 'weights' has shape {tuple(weights.shape)}; expected {expected}")
    # ~(w >= 0) also catches NaN, which w < 0 would let through.
    bad = ~(weights >= 0)
    if bool(bad.any()):
        raise ValueError(f"{fn}: argument 'weights' has {int(bad.sum())} negative or NaN entries (e.g. "
                         f"{weights[bad][0].item()!r}); expected non-negative attention weights")


def _check_dim(fn: str, weights: Tensor, dim: object) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{fn}: argument 'dim' = {dim!r} must be an int")
    n = weights.dim()
    if not -n <= dim < n:
        raise ValueError(f"{fn}: argument 'dim' = {dim} is out of range for weights of shape "
                         f"{tuple(weights.shape)}; expected {-n} <= dim < {n}")
    return dim
