"""References without measurement: a random beam, a uniform combination."""

from __future__ import annotations

import torch
from torch import Tensor

from ..measurement import Episode
from .base import Decision, Policy, _pick, register


@register("random")
class Random(Policy):
    """A uniformly random codebook beam (seeded per drop), no measurement."""

    def __init__(self, seed: int = 12345) -> None:
        self.seed = seed

    def decide(self, ep: Episode) -> Decision:
        # Drawn on the CPU (drop_ids are CPU bookkeeping), then moved: the same beams on every device.
        index = torch.stack([
            torch.randint(ep.num_beams, (ep.num_decisions,), generator=torch.Generator().manual_seed(self.seed + int(i)))
            for i in ep.drop_ids]).to(ep.device)  # [B, D]
        return _pick(ep, index, 0.0, index.unsqueeze(-1))


@register("uniform")
class Uniform(Policy):
    """Uniform combination of all codebook beams, normalised to unit power, no measurement."""

    def decide(self, ep: Episode) -> Decision:
        v = ep.codebook.beams.to(ep.cov_use.dtype)  # [M, N]
        w = v.sum(0)
        w = w / w.norm().clamp_min(1e-12)
        shape, dev = (ep.num_drops, ep.num_decisions), ep.device
        weights = torch.full((*shape, ep.num_beams), 1.0 / ep.num_beams, device=dev)
        return Decision(beams=w.expand(*shape, -1), index=torch.full(shape, -1, dtype=torch.long, device=dev),
                        measured=torch.zeros(shape, device=dev), weights=weights)
