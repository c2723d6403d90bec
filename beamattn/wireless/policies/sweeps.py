"""Beam sweeps: policies that rank reported RSRP of the beams they measure.

Every sweep reads ``history`` reports per beam (1 = the latest only, the default; None = all the
measurement ``history`` allows), averaged in linear power (``smoothing="mean"``) or exponentially
weighted (``"ewma"``, weight ``alpha (1 - alpha)^age``), and breaks ties among quantised reports with
the neighbours' reports, then the older reports (:func:`~.base.rank_reports`). The ``-avg`` names
are the same policies reading the whole allowed history with ``smoothing="ewma"``, ``alpha=0.5``
(each older report weighs half the next one): on vehicular-60 (8 reports of 20 ms) a plain mean of
all 8 reports averages over 160 ms of a moving user and loses (exhaustive 1.02 dB loss to genie
against 0.68 dB from the latest report), the EWMA gains (0.55 dB), as does a mean of the last 2
(``history=2``: 0.55 dB).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..measurement import Episode
from .base import (Decision, Policy, _best_of, _pick, aggregate_db, check_history, history_length, rank_reports,
                   register)


class _Reads(Policy):
    """A measuring policy's history arguments (see the module docstring)."""

    default_history: int | None = 1
    default_smoothing: str = "mean"

    def __init__(self, history: int | None = ..., smoothing: str | None = None, alpha: float = 0.5) -> None:
        history = self.default_history if history is ... else history
        smoothing = self.default_smoothing if smoothing is None else smoothing
        check_history(self.name, history, smoothing, alpha)
        self.history, self.smoothing, self.alpha = history, smoothing, alpha


@register("exhaustive")
class Exhaustive(_Reads):
    """Sweep all of Set A every period (noisy reports) and use the best reported beam."""

    def decide(self, ep: Episode) -> Decision:
        ids = torch.arange(ep.num_beams, device=ep.device)
        index, ranking = _best_of(ep, ids, 4, self.history, self.smoothing, self.alpha, self.name)
        return _pick(ep, index, float(ep.num_beams), ranking)


@register("exhaustive-avg")
class ExhaustiveAvg(Exhaustive):
    """:class:`Exhaustive` reading the whole allowed report history (EWMA, alpha 0.5)."""

    default_history = None
    default_smoothing = "ewma"


@register("best-of-set-b")
class BestOfSetB(_Reads):
    """Measure only Set B and use its best reported beam."""

    def decide(self, ep: Episode) -> Decision:
        index, ranking = _best_of(ep, ep.set_b, 4, self.history, self.smoothing, self.alpha, self.name)
        return _pick(ep, index, float(ep.set_b.numel()), ranking)


@register("best-of-set-b-avg")
class BestOfSetBAvg(BestOfSetB):
    """:class:`BestOfSetB` reading the whole allowed report history (EWMA, alpha 0.5)."""

    default_history = None
    default_smoothing = "ewma"


@register("stale")
class Stale(_Reads):
    """A full sweep every ``every`` periods; in between the last measured best beam is kept (stale).

    The overhead is ``M / every`` beams per decision on average. With ``history = L`` a sweep averages
    the reports of its own sweep instant and the ``L - 1`` previous sweep instants (``every`` periods
    apart), which must lie in the allowed history: ``(L - 1)·every <= H - 1``; None = as many as fit.
    """

    def __init__(self, every: int = 5, history: int | None = ..., smoothing: str | None = None,
                 alpha: float = 0.5) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"policy {self.name!r}: argument 'every' = {every!r}; expected an integer >= 1")
        self.every = every
        super().__init__(history, smoothing, alpha)

    def decide(self, ep: Episode) -> Decision:
        dev, h, m = ep.device, ep.timeline.history, ep.num_beams
        fit = 1 + (h - 1) // self.every  # sweep instants inside the allowed history of a sweep
        length = fit if self.history is None else self.history
        if length > fit:
            raise ValueError(f"policy {self.name!r}: argument 'history' = {length} sweeps every {self.every} periods "
                             f"need a measurement 'history' >= {(length - 1) * self.every + 1}; it is {h}")
        d = ep.num_decisions
        sweep = torch.div(torch.arange(d), self.every, rounding_mode="floor") * self.every  # [D] CPU
        # Report rows of the sweep instants a sweep reads, oldest first: row of decision s is s + H - 1.
        rows = sweep[:, None] + h - 1 - self.every * torch.arange(fit - 1, -1, -1)  # [D, fit]
        reps = ep.reports_db[:, rows.to(ep.reports_db.device), :m]  # [B, D, fit, M]
        current = aggregate_db(reps[..., fit - length:, :], self.smoothing, self.alpha)  # [B, D, M]
        older = reps[..., : fit - length, :] if length < fit else None
        top = rank_reports(current, _grid_layout(ep), older)  # [B, D, 4]
        measured = torch.zeros(top.shape[:2], device=dev)
        measured[:, :: self.every] = float(m)
        return _pick(ep, top[..., 0], measured, top)


@register("stale-avg")
class StaleAvg(Stale):
    """:class:`Stale` averaging every sweep instant of the allowed history (EWMA, alpha 0.5)."""

    default_history = None
    default_smoothing = "ewma"


def _grid_layout(ep: Episode) -> tuple[int, int]:
    grid = ep.codebook.grid
    return (grid[0], grid[1]) if grid is not None and grid[0] > 1 else (1, ep.num_beams)


@register("hierarchical")
class Hierarchical(_Reads):
    """Two-stage search: sweep the wide beams, then the narrow beams under the best wide beam.

    Overhead: ``W`` wide beams + the children of the chosen one. With ``history = L`` the wide beams
    (measured every period) are averaged over their ``L`` latest reports, and each child over the
    instants of that window at which it was measured (its group was chosen then).
    """

    def decide(self, ep: Episode) -> Decision:
        if ep.wide is None or ep.wide.children is None:
            raise ValueError("policy 'hierarchical' needs a wide codebook: set codebook 'num_wide' in the scenario")
        m, w, h = ep.num_beams, ep.wide.num_beams, ep.timeline.history
        length = history_length(self.name, ep, self.history)
        dev = ep.device
        size = max(len(c) for c in ep.wide.children)
        # Children as a padded table; padded slots get -inf reports (never chosen, no neighbour power).
        table = torch.tensor([c + [c[0]] * (size - len(c)) for c in ep.wide.children], device=dev)  # [W, S]
        pad = torch.tensor([[s >= len(c) for s in range(size)] for c in ep.wide.children], device=dev)  # [W, S]
        rep = ep.reports_db  # [B, T, K], T = D + H - 1 report instants
        # Stage 1 at every report instant over the window [τ - L + 1, τ] (shorter before the first reports).
        wide_win, wide_ok = _windows(rep[..., m: m + w], length)  # [B, T, L, W] each
        wide_cur = aggregate_db(wide_win, self.smoothing, self.alpha, wide_ok)  # [B, T, W]
        wide_best = rank_reports(wide_cur, (1, w), None, 1, circular=False)[..., 0]  # [B, T]
        # Which narrow beams each instant measured: the children of its chosen wide beam.
        measured = torch.zeros(*wide_best.shape, m, dtype=torch.bool, device=dev)  # [B, T, M]
        measured.scatter_(-1, table[wide_best], (~pad[wide_best]))
        narrow_win, narrow_ok = _windows(rep[..., :m], length, measured)  # [B, T, L, M]
        narrow_cur = aggregate_db(narrow_win, self.smoothing, self.alpha, narrow_ok)  # [B, T, M]
        best = wide_best[:, h - 1:]  # [B, D] the decisions' chosen groups
        cand = table[best]  # [B, D, S] narrow ids under the best wide beam
        r = narrow_cur[:, h - 1:].gather(-1, cand)  # [B, D, S]
        r = r.masked_fill(pad[best], float("-inf"))
        top = rank_reports(r, (1, size), None, min(4, size), circular=False)  # children are contiguous, not a ring
        ranking = cand.gather(-1, top)
        counts = torch.tensor([len(c) for c in ep.wide.children], dtype=torch.float32, device=dev)
        return _pick(ep, ranking[..., 0], w + counts[best], ranking)


@register("hierarchical-avg")
class HierarchicalAvg(Hierarchical):
    """:class:`Hierarchical` reading the whole allowed report history (EWMA, alpha 0.5)."""

    default_history = None
    default_smoothing = "ewma"


def _windows(rep: Tensor, length: int, measured: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Sliding windows of the last ``length`` report instants: ``[B, T, J]`` → ``[B, T, L, J]`` (oldest first)
    and their validity (inside the record and, when given, ``measured [B, T, J]``)."""
    b, t, j = rep.shape
    pad = torch.zeros(b, length - 1, j, dtype=rep.dtype, device=rep.device)
    win = torch.cat([pad, rep], 1).unfold(1, length, 1).transpose(-1, -2)  # [B, T, L, J]
    ok = torch.ones(b, t, j, dtype=torch.bool, device=rep.device) if measured is None else measured
    okw = torch.cat([torch.zeros(b, length - 1, j, dtype=torch.bool, device=rep.device), ok], 1)
    okw = okw.unfold(1, length, 1).transpose(-1, -2)  # [B, T, L, J]
    return win, okw
