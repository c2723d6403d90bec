"""Bandits over the Set A beams: UCB1 and Thompson sampling, with a measurement budget per decision.

Every report instant the bandit chooses ``budget`` beams of Set A to measure (default ``|Set B|``:
the same overhead as the selector), reads their reports — the episode's pre-drawn reports with
common random numbers, so "measuring" a beam is reading its report — and uses the beam of the
highest estimated mean. Reward of a measured beam: its reported linear RSRP divided by ``N`` (the
largest beam gain of a unit-power single path), so rewards are of order 1.

The instants before decision 0 (the allowed history) are played too: the bandit starts the
evaluation with ``H − 1`` periods of exploration behind it.

Non-stationary variants discount the past (``gamma < 1``, discounted UCB of Garivier & Moulines):
counts and reward sums decay by ``gamma`` every period, so the estimate follows the drifting best beam.

- ``ucb1``: index ``μ̂_i + c·sqrt(2 ln n / n_i)`` (unmeasured beams first); ``gamma = 1``.
- ``ucb1-discounted``: the same with ``gamma = 0.8`` (``n`` and ``n_i`` discounted).
- ``thompson``: a Gaussian posterior ``N(μ̂_i, σ²/(n_i + 1))`` per beam (prior mean 1 = optimistic),
  the ``budget`` largest samples measured; ``gamma = 1``. Seeded per drop: reproducible and
  independent of the batching.
- ``thompson-discounted``: the same with ``gamma = 0.8``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..measurement import Episode, mix_seed
from .base import Decision, Policy, _pick, register


class _Bandit(Policy):
    default_gamma: float = 1.0

    def __init__(self, budget: int | None = None, gamma: float | None = None, c: float = 1.0, seed: int = 0) -> None:
        gamma = self.default_gamma if gamma is None else gamma
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
            raise ValueError(f"policy {self.name!r}: argument 'budget' = {budget!r}; expected an integer >= 1 "
                             "(or None for |Set B|)")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
            raise ValueError(f"policy {self.name!r}: argument 'gamma' = {gamma!r}; expected 0 < gamma <= 1")
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not c >= 0:
            raise ValueError(f"policy {self.name!r}: argument 'c' = {c!r}; expected a number >= 0")
        self.budget, self.gamma, self.c, self.seed = budget, float(gamma), float(c), seed

    def scores(self, mean: Tensor, count: Tensor, total: Tensor, tau: int, noise: Tensor | None) -> Tensor:
        raise NotImplementedError  # pragma: no cover

    def decide(self, ep: Episode) -> Decision:
        m = ep.num_beams
        k = ep.set_b.numel() if self.budget is None else self.budget
        if k > m:
            raise ValueError(f"policy {self.name!r}: argument 'budget' = {k} exceeds Set A ({m} beams)")
        reward = 10 ** (ep.reports_db[..., :m].to(torch.float64) / 10) / ep.codebook.num_ant  # [B, T, M]
        b, t, _ = reward.shape
        dev = reward.device
        noise = self._noise(ep, t, m)  # [B, T, M] standard normals (Thompson) or None
        count = torch.zeros(b, m, dtype=torch.float64, device=dev)  # (discounted) measurements per beam
        total = torch.zeros(b, m, dtype=torch.float64, device=dev)  # (discounted) reward sums
        picks = torch.empty(b, t, min(4, m), dtype=torch.long, device=dev)  # Top-K ranking, K <= M
        for tau in range(t):
            mean = total / count.clamp_min(1e-12)
            score = self.scores(mean, count, count.sum(-1, keepdim=True), tau, None if noise is None else noise[:, tau])
            arms = score.topk(k, dim=-1).indices  # [B, k] the beams measured now
            played = torch.zeros(b, m, dtype=torch.float64, device=dev).scatter_(-1, arms, 1.0)
            count = self.gamma * count + played
            total = self.gamma * total + played * reward[:, tau]
            mean = torch.where(count > 0, total / count.clamp_min(1e-12), torch.full_like(total, -1.0))
            picks[:, tau] = mean.topk(min(4, m), dim=-1).indices
        ranking = picks[:, ep.timeline.history - 1:]  # [B, D, 4]
        return _pick(ep, ranking[..., 0], float(k), ranking)

    def _noise(self, ep: Episode, t: int, m: int) -> Tensor | None:
        return None


@register("ucb1")
class UCB1(_Bandit):
    """UCB1 over Set A with ``budget`` beams measured per decision (module docstring).

    Args:
        budget: beams measured per decision (None = ``|Set B|``).
        gamma: discount per period (1 = stationary UCB1).
        c: exploration weight.
    """

    def scores(self, mean, count, total, tau, noise):
        bonus = self.c * torch.sqrt(2 * torch.log(total.clamp_min(1.0)) / count.clamp_min(1e-12))
        return torch.where(count > 1e-9, mean + bonus, torch.full_like(mean, math.inf))


@register("ucb1-discounted")
class UCB1Discounted(UCB1):
    """:class:`UCB1` discounting the past by ``gamma = 0.8`` per period (non-stationary)."""

    default_gamma = 0.8


@register("thompson")
class Thompson(_Bandit):
    """Gaussian Thompson sampling over Set A with ``budget`` beams per decision (module docstring).

    Args:
        budget, gamma: as :class:`UCB1`.
        c: posterior standard deviation of one reward (``σ``).
        seed: the sampling seed (mixed with each drop's id).
    """

    def scores(self, mean, count, total, tau, noise):
        post_mean = (mean * count + 1.0) / (count + 1)  # prior N(1, σ²) counts as one measurement
        return post_mean + self.c * noise / torch.sqrt(count + 1)

    def _noise(self, ep: Episode, t: int, m: int) -> Tensor:
        # Drawn on the CPU per drop (drop ids are CPU bookkeeping), then moved: same numbers on every device.
        draws = [torch.randn(t, m, generator=torch.Generator().manual_seed(mix_seed(self.seed, int(i))),
                             dtype=torch.float64) for i in ep.drop_ids]
        return torch.stack(draws).to(ep.device)  # [B, T, M]


@register("thompson-discounted")
class ThompsonDiscounted(Thompson):
    """:class:`Thompson` discounting the past by ``gamma = 0.8`` per period (non-stationary)."""

    default_gamma = 0.8
