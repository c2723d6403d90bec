"""Attention score functions: how a query is compared with a key.

All functions map ``q [..., Lq, dq]`` and ``k [..., Lk, dk]`` to raw scores
``[..., Lq, Lk]``. Scaling and temperature are applied by :func:`attend`.
Scores with parameters (bilinear, additive) are also available as modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["dot_scores", "cosine_scores", "bilinear_scores", "BilinearScore", "AdditiveScore", "CosineScore"]


def dot_scores(q: Tensor, k: Tensor) -> Tensor:
    """``q kᵀ`` — ``q [..., Lq, d]``, ``k [..., Lk, d]`` → ``[..., Lq, Lk]``."""
    return torch.matmul(q, k.transpose(-2, -1))


def cosine_scores(q: Tensor, k: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine similarity in [-1, 1]; blind to the norms of ``q`` and ``k``."""
    return torch.matmul(F.normalize(q, dim=-1, eps=eps), F.normalize(k, dim=-1, eps=eps).transpose(-2, -1))


def bilinear_scores(q: Tensor, k: Tensor, weight: Tensor) -> Tensor:
    """``q W kᵀ`` — ``q [..., Lq, dq]``, ``W [dq, dk]``, ``k [..., Lk, dk]``."""
    return torch.matmul(torch.matmul(q, weight), k.transpose(-2, -1))


class BilinearScore(nn.Module):
    """Learned bilinear (Luong "general") score ``q W kᵀ``."""

    def __init__(self, dim_q: int, dim_k: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim_q, dim_k))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(dim_q))

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return bilinear_scores(q, k, self.weight)


class CosineScore(nn.Module):
    """Cosine score with a fixed or learned scale (a logit multiplier, stored in log form).

    ``scale * cos(q, k)``; ``learn_scale=True`` makes ``log(scale)`` a parameter
    (as in Swin-V2), clamped to at most ``max_scale``.
    """

    def __init__(self, scale: float = 10.0, learn_scale: bool = True, max_scale: float = 100.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"CosineScore: argument 'scale' = {scale}; expected > 0")
        log_scale = torch.tensor(math.log(scale))
        self.log_scale = nn.Parameter(log_scale) if learn_scale else nn.Buffer(log_scale)
        self.max_log_scale = math.log(max_scale)

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return cosine_scores(q, k) * self.log_scale.clamp(max=self.max_log_scale).exp()


class AdditiveScore(nn.Module):
    """Additive (Bahdanau) score ``wᵀ tanh(W_q q + W_k k)``.

    Memory is ``[..., Lq, Lk, hidden]``: meant for short sequences.
    """

    def __init__(self, dim_q: int, dim_k: int, hidden: int) -> None:
        super().__init__()
        self.proj_q = nn.Linear(dim_q, hidden, bias=False)
        self.proj_k = nn.Linear(dim_k, hidden, bias=True)
        self.w = nn.Linear(hidden, 1, bias=False)

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        hq = self.proj_q(q).unsqueeze(-2)  # [..., Lq, 1, h]
        hk = self.proj_k(k).unsqueeze(-3)  # [..., 1, Lk, h]
        return self.w(torch.tanh(hq + hk)).squeeze(-1)  # [..., Lq, Lk]
