"""Sparse alternatives to softmax: sparsemax and 1.5-entmax.

``sparsemax(z) = argmin_{p in simplex} ||p - z||²`` (Martins & Astudillo, 2016):
the Euclidean projection of the scores onto the probability simplex. It gives
``p_i = max(z_i - tau, 0)`` for the threshold ``tau`` with ``sum_i p_i = 1``,
so scores below ``tau`` get an exact zero.

The usual algorithm sorts every row to find ``tau`` (O(n log n), and a CPU sort
is slow). Here ``tau`` is found with Newton's method on the piecewise-linear,
convex, decreasing ``f(tau) = sum_i max(z_i - tau, 0) - 1`` (this is also
Michelot's 1986 projection algorithm). Started below the root (``tau_0 =
max(z) - 1``), every Newton step stays below the root, grows ``tau`` and
shrinks the candidate support, so it ends *exactly* after a finite number of
steps (typically 4-7 on random rows of any length); each step is a few fused
O(n) passes. A row that does not settle within ``max_iter`` steps (possible
only for adversarial inputs) falls back to the sort-based threshold.

Style follows the ``entmax`` package's ``activations.py``: custom autograd
Functions with closed-form backward passes.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sparsemax", "entmax15"]

_MAX_NEWTON_STEPS = 50


def _shift_by_max(x: Tensor, dim: int) -> Tensor:
    """``x - max(x)`` along ``dim``; rows that are all ``-inf`` stay ``-inf`` (not NaN)."""
    x_max = x.amax(dim=dim, keepdim=True)
    x_max = torch.where(torch.isneginf(x_max), torch.zeros_like(x_max), x_max)
    return x - x_max


def _sparsemax_threshold_sort(z: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Reference threshold by sorting (used only as a fallback). Returns (tau, support size)."""
    z_srt, _ = torch.sort(z, dim=dim, descending=True)
    n = z.shape[dim]
    shape = [1] * z.dim()
    shape[dim] = n
    rho = torch.arange(1, n + 1, device=z.device, dtype=z.dtype).view(shape)
    z_cumsum = z_srt.nan_to_num(neginf=0.0).cumsum(dim) - 1  # -inf entries never enter the support
    support = (rho * z_srt > z_cumsum).sum(dim=dim, keepdim=True).clamp_min(1)
    tau = z_cumsum.gather(dim, support - 1) / support.to(z.dtype)
    return tau, support.to(z.dtype)


def _sparsemax_threshold(z: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Exact sparsemax threshold of max-shifted scores ``z`` (max 0) along ``dim``.

    Returns ``(tau, count)``, both with size 1 along ``dim``; ``count`` is the
    support size (0 for rows that are all ``-inf``).
    """
    # tau* >= max(z) - 1 = -1 because the largest probability is at most one.
    tau = torch.full_like(z.narrow(dim, 0, 1), -1.0)
    count_prev = None
    for _ in range(_MAX_NEWTON_STEPS):
        d = torch.sub(z, tau).clamp_min_(0)  # [..., n] positive part
        total = d.sum(dim=dim, keepdim=True)  # f(tau) + 1
        count = d.sign_().sum(dim=dim, keepdim=True)  # |support(tau)| = -f'(tau)
        # Newton step; a row of -inf has count 0: keep it finite, its output is 0 anyway.
        tau = tau + (total - 1) / count.clamp_min(1)
        if count_prev is not None and torch.equal(count, count_prev):
            return tau, count
        count_prev = count
    return _sparsemax_threshold_sort(z, dim)  # pragma: no cover - adversarial rows only


class _Sparsemax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:
        z = _shift_by_max(x, dim)
        tau, count = _sparsemax_threshold(z, dim)
        p = z.sub_(tau).clamp_min_(0)  # z is a fresh tensor: reuse it
        ctx.dim = dim
        ctx.save_for_backward(p, count)
        return p

    @staticmethod
    def backward(ctx, grad: Tensor):
        p, count = ctx.saved_tensors
        # Jacobian = diag(s) - s sᵀ/|S| with s the support indicator.
        support = p.sign()
        g = grad * support
        g_mean = g.sum(dim=ctx.dim, keepdim=True) / count.clamp_min(1)
        return g.sub_(support.mul_(g_mean)), None


class _Entmax15(torch.autograd.Function):
    """1.5-entmax (Peters, Niculae & Martins, 2019), exact sort-based threshold."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:
        all_masked = torch.isneginf(x.amax(dim=dim, keepdim=True))
        z = _shift_by_max(x, dim) / 2
        # Entries below max - 1 are always outside the support; clamping them
        # keeps -inf (masked) scores out of the cumulative sums below.
        z = z.clamp_min(-2.0)
        z_srt, _ = torch.sort(z, dim=dim, descending=True)
        n = z.shape[dim]
        shape = [1] * z.dim()
        shape[dim] = n
        rho = torch.arange(1, n + 1, device=z.device, dtype=z.dtype).view(shape)
        mean = z_srt.cumsum(dim) / rho
        mean_sq = (z_srt**2).cumsum(dim) / rho
        ss = rho * (mean_sq - mean**2)
        delta = ((1 - ss) / rho).clamp_min(0)
        tau = mean - torch.sqrt(delta)
        # A NaN score makes every comparison false (support 0): clamp so that the gather stays in range and
        # the NaN reaches the output, as with torch.softmax and sparsemax (rather than an index error).
        support = (tau <= z_srt).sum(dim=dim, keepdim=True).clamp_min(1)
        tau_star = tau.gather(dim, support - 1)
        p = torch.clamp(z - tau_star, min=0) ** 2
        p = p.masked_fill(all_masked, 0.0)
        ctx.dim = dim
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: Tensor):
        (p,) = ctx.saved_tensors
        gppr = p.sqrt()  # derivative of the 1.5-entmax mapping, up to scale
        dx = grad * gppr
        q = dx.sum(ctx.dim, keepdim=True) / gppr.sum(ctx.dim, keepdim=True).clamp_min(1e-30)
        return dx - q * gppr, None


def _check(x: Tensor, dim: int, name: str) -> int:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: argument 'x' must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: argument 'x' has dtype {x.dtype}; expected a real floating dtype")
    if x.dim() == 0:
        raise ValueError(f"{name}: argument 'x' is a 0-d tensor; expected at least one dimension")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"{name}: argument 'dim' = {dim} is out of range for a {x.dim()}-d tensor")
    return dim % x.dim()


def sparsemax(x: Tensor, dim: int = -1) -> Tensor:
    """Sparsemax along ``dim``: the Euclidean projection of ``x`` onto the simplex.

    Args:
        x: real scores, any shape ``[..., n, ...]``; ``-inf`` marks excluded entries.
        dim: the dimension that sums to one.

    Returns:
        Probabilities of the same shape and dtype; exact zeros off the support.
        A slice that is all ``-inf`` gives all zeros (never NaN); a slice with a NaN score gives NaN
        (as :func:`torch.softmax`), the other slices are unaffected.
    """
    dim = _check(x, dim, "sparsemax")
    return _Sparsemax.apply(x, dim)


def entmax15(x: Tensor, dim: int = -1) -> Tensor:
    """1.5-entmax along ``dim``: between softmax (dense) and sparsemax (sparser).

    Args:
        x: real scores, any shape; ``-inf`` marks excluded entries.
        dim: the dimension that sums to one.

    Returns:
        Probabilities of the same shape; a slice that is all ``-inf`` gives zeros; a slice with a NaN
        score gives NaN (as :func:`torch.softmax` and :func:`sparsemax`), the other slices are unaffected.
    """
    dim = _check(x, dim, "entmax15")
    return _Entmax15.apply(x, dim)
