"""Oracles: policies that read the truth (upper bounds, no measurement overhead)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..measurement import Episode
from .base import Decision, Policy, _pick, register


@register("genie")
class Genie(Policy):
    """The best codebook beam for the use interval, with perfect knowledge (an upper bound, no overhead)."""

    def decide(self, ep: Episode) -> Decision:
        ranking = ep.gain_use.topk(min(4, ep.num_beams), dim=-1).indices  # [B, D, 4]
        return _pick(ep, ranking[..., 0], 0.0, ranking)


@register("mrt")
class MRT(Policy):
    """Maximum-ratio transmission with perfect, instantaneous CSI: ``ρ ||h||²`` at every instant (the bound)."""

    def decide(self, ep: Episode) -> Decision:
        # The reported gain is the per-instant MRT bound mean ||h||² = trace(R). The beam kept for
        # plots is the best single fixed beam over the interval, R's principal eigenvector, found by
        # power iteration from the genie beam (batched eigh is ~100x slower on CPU).
        w = ep.codebook.beams.to(ep.cov_use.dtype)[ep.gain_use.argmax(-1)]  # [B, D, N]
        for _ in range(30):
            w = torch.einsum("bdmn,bdn->bdm", ep.cov_use, w)
            w = w / torch.linalg.vector_norm(w, dim=-1, keepdim=True).clamp_min(1e-30)
        index = torch.full(w.shape[:2], -1, dtype=torch.long, device=w.device)
        return Decision(beams=w, index=index, measured=torch.zeros(w.shape[:2], device=w.device), gain=ep.mrt_gain)
