"""Beam sweeps: policies that rank reported RSRP of the beams they measure."""

from __future__ import annotations

import torch
from torch import Tensor

from ..measurement import Episode
from .base import Decision, Policy, _best_of, _pick, register


@register("exhaustive")
class Exhaustive(Policy):
    """Sweep all of Set A every period (noisy reports) and use the best reported beam."""

    def decide(self, ep: Episode) -> Decision:
        ids = torch.arange(ep.num_beams, device=ep.device)
        index, ranking = _best_of(ep, ids)
        return _pick(ep, index, float(ep.num_beams), ranking)


@register("best-of-set-b")
class BestOfSetB(Policy):
    """Measure only Set B and use its best reported beam."""

    def decide(self, ep: Episode) -> Decision:
        index, ranking = _best_of(ep, ep.set_b)
        return _pick(ep, index, float(ep.set_b.numel()), ranking)


@register("stale")
class Stale(Policy):
    """A full sweep every ``every`` periods; in between the last measured best beam is kept (stale).

    The overhead is ``M / every`` beams per decision on average.
    """

    def __init__(self, every: int = 5) -> None:
        if every < 1:
            raise ValueError(f"policy 'stale': argument 'every' = {every}; expected an integer >= 1")
        self.every = every

    def decide(self, ep: Episode) -> Decision:
        dev = ep.device
        index, ranking = _best_of(ep, torch.arange(ep.num_beams, device=dev))  # [B, D]
        sweep = torch.div(torch.arange(ep.num_decisions, device=dev), self.every, rounding_mode="floor") * self.every
        measured = torch.zeros(index.shape, device=dev)
        measured[:, :: self.every] = float(ep.num_beams)
        return _pick(ep, index[:, sweep], measured, ranking[:, sweep])


@register("hierarchical")
class Hierarchical(Policy):
    """Two-stage search: sweep the wide beams, then the narrow beams under the best wide beam."""

    def decide(self, ep: Episode) -> Decision:
        if ep.wide is None or ep.wide.children is None:
            raise ValueError("policy 'hierarchical' needs a wide codebook: set codebook 'num_wide' in the scenario")
        m, w = ep.num_beams, ep.wide.num_beams
        wide_best = ep.rsrp_db[..., m : m + w].argmax(-1)  # [B, D]
        size = max(len(c) for c in ep.wide.children)
        # Children as a padded table; padding repeats the first child so it never wins a tie it should not.
        table = torch.tensor([c + [c[0]] * (size - len(c)) for c in ep.wide.children], device=ep.device)  # [W, S]
        cand = table[wide_best]  # [B, D, S] narrow ids under the best wide beam
        r = ep.rsrp_db[..., :m].gather(-1, cand)  # [B, D, S]
        top = r.topk(min(4, size), dim=-1).indices
        ranking = cand.gather(-1, top)
        counts = torch.tensor([len(c) for c in ep.wide.children], dtype=torch.float32, device=ep.device)
        return _pick(ep, ranking[..., 0], w + counts[wide_best], ranking)
