"""A policy of your own, for ``beamattn run/sweep/linklevel --plugin examples/my_policy.py``.

``smoothed-set-b`` measures Set B (like ``best-of-set-b``) and picks the beam whose report, *smoothed with
its neighbours'*, is the largest: ``s_j = p_j + weight · (p_{j-1} + p_{j+1})`` in linear power over the
adjacent measured beams (the DFT grid's neighbours on a UPA). A lone noisy report then loses to a beam in
the middle of a strong lobe. ``weight = 0`` is the plain argmax of the latest reports, i.e.
``best-of-set-b`` whenever no two reports are equal (unquantised reports).

Use it::

    beamattn run scenarios/vehicular-60.toml --plugin examples/my_policy.py \\
        --policies genie,exhaustive,best-of-set-b,smoothed-set-b --out results/mine

Its arguments come from the scenario file like any policy's::

    [policy.smoothed-set-b]
    weight = 0.3
"""

from __future__ import annotations

import torch

from beamattn.wireless.measurement import Episode
from beamattn.wireless.policies import Decision, Policy, register
from beamattn.wireless.policies.base import neighbour_power, read_reports, set_layout


@register("smoothed-set-b")
class SmoothedSetB(Policy):
    """Argmax over Set B of each report plus ``weight`` times its neighbours' (linear power)."""

    def __init__(self, weight: float = 0.5):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
            raise ValueError(f"policy 'smoothed-set-b': argument 'weight' = {weight!r}; expected a number in [0, 1]")
        self.weight = float(weight)

    def decide(self, ep: Episode) -> Decision:
        ids = ep.set_b  # [J] the measured beams (Set B), ascending codebook indices
        current, _ = read_reports(self.name, ep, ids, history=1)  # [B, D, J] latest reports, dB
        p = 10 ** (current.to(torch.float64) / 10)  # [B, D, J] linear power
        score = p + self.weight * neighbour_power(p, set_layout(ep, ids))  # [B, D, J]
        ranking = ids[score.topk(min(4, ids.numel()), dim=-1).indices]  # [B, D, 4] best first (Top-K accuracy)
        index = ranking[..., 0]  # [B, D]
        beams = ep.codebook.beams.to(ep.cov_use.dtype)[index]  # [B, D, N] unit-norm codebook beams
        measured = torch.full(index.shape, float(ids.numel()), device=index.device)  # [B, D] beams measured
        return Decision(beams=beams, index=index, measured=measured, ranking=ranking)

    def describe(self) -> dict:
        return {"weight": self.weight}
