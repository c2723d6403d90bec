"""The attention selector as a policy (trained or untrained)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..measurement import Episode
from .base import Decision, Policy, register


@register("attention")
class AttentionPolicy(Policy):
    """The attention selector (:mod:`beamattn.wireless.selector`) as a policy.

    Without a checkpoint it is the untrained selector (fixed goal "more RSRP is better").
    It measures Set B every period; its overhead is ``|Set B|``.

    Args:
        config: :class:`SelectorConfig` (the scenario's ``[selector]`` table; its ``grid``, set by the
            scenario for a UPA, must match the checkpoint's).
        checkpoint: a ``.safetensors`` file written by ``beamattn train``.
    """

    def __init__(self, config=None, checkpoint: str | None = None, selector=None) -> None:
        from ..selector import SelectorConfig

        self.config = config or SelectorConfig(learned=False)
        self._grid_given = config is not None  # a checkpoint's grid is checked against a given config only
        self.checkpoint = checkpoint
        self.selector = selector  # a ready AttentionSelector (training, tests)

    def build(self, ep: Episode):
        """The selector for this episode's codebook and Set B (built once per distinct pair)."""
        from ..checkpoint import load_selector
        from ..selector import AttentionSelector, SelectorConfig

        dev = ep.device
        measured = torch.zeros(ep.num_beams, dtype=torch.bool, device=dev)
        measured[ep.set_b] = True
        beams = ep.codebook.beams
        if self.selector is not None and self.selector.beams.device != dev:
            self.selector.to(dev)  # e.g. a selector trained on the CPU, evaluated on the GPU (in place)
        if self.selector is not None and self.selector.num_beams == ep.num_beams \
                and torch.equal(self.selector.measured, measured) and torch.equal(self.selector.beams, beams):
            return self.selector
        if self.checkpoint is not None:
            self.selector = load_selector(self.checkpoint, beams, measured,
                                          overrides={"mode": self.config.mode, "topk": self.config.topk},
                                          **({"grid": self.config.grid} if self._grid_given else {}))
        elif self.config.learned and self.selector is not None:
            raise ValueError("policy 'attention': the given trained selector was made for another codebook or Set B")
        else:
            cfg = SelectorConfig(**{**self.config.to_dict(), "learned": False})
            self.selector = AttentionSelector(cfg, beams, measured)
        return self.selector

    def decide(self, ep: Episode) -> Decision:
        sel = self.build(ep)
        m = ep.num_beams
        rsrp, phase = ep.history(sel.config.history)  # [B, D, L, K]
        latest_phase = None if phase is None else phase[:, :, -1, :m]
        with torch.no_grad():
            out = sel(rsrp[..., :m], latest_phase)
        beams = out.beams.to(ep.cov_use.dtype)
        ranking = out.weights.topk(min(4, m), dim=-1).indices  # [B, D, 4]
        measured = torch.full(out.index.shape, float(ep.set_b.numel()), device=out.index.device)
        return Decision(beams=beams, index=out.index, measured=measured, ranking=ranking, weights=out.weights)


@register("attention-untrained")
class AttentionUntrained(AttentionPolicy):
    """The attention selector without training: fixed goal "more RSRP is better" over Set B
    (softmax/sparsemax of the reported RSRP in dB over ``temperature`` dB), whatever the checkpoint."""

    def __init__(self, config=None, checkpoint: str | None = None) -> None:
        from ..selector import SelectorConfig

        cfg = config or SelectorConfig(learned=False)
        super().__init__(config=SelectorConfig(**{**cfg.to_dict(), "learned": False}), checkpoint=None)
