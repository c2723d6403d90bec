"""Learned baselines as policies: MLP, LSTM, and the selector's score network as a plain classifier.

Each reads only the last ``L`` reports of Set B (its overhead is ``|Set B|`` beams per decision),
picks the beam of the largest logit and ranks its Top-4 by logit. The weights come from a checkpoint
written by ``beamattn train --model NAME`` (:func:`beamattn.wireless.learned.train.train_learned`),
given in the scenario as ``[policy.NAME] checkpoint = "PATH"``. See
:mod:`beamattn.wireless.learned.models` for the models and their sizes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..learned.models import MODEL_SPECS
from ..measurement import Episode
from .base import Decision, Policy, _pick, register

__all__ = ["LearnedPolicy", "MLPPolicy", "MLPSoftPolicy", "MLPLargePolicy", "LSTMPolicy", "LSTMLargePolicy",
           "ScoreClassifierPolicy", "ScoreClassifierHardPolicy", "ScoreClassifierLargePolicy"]


class LearnedPolicy(Policy):
    """Base of the learned baselines: a checkpointed model → argmax beam, Top-4 ranking by logit.

    Args:
        checkpoint: a ``.safetensors`` file of this policy's model kind (``beamattn train --model NAME``).
        model: a ready :class:`~beamattn.wireless.learned.models.LearnedModel` (tests, training).
    """

    def __init__(self, checkpoint: str | Path | None = None, model=None) -> None:
        if checkpoint is None and model is None:
            raise ValueError(f"policy {self.name!r}: argument 'checkpoint' is required; expected a file from "
                             f"`beamattn train --model {self.name}` (scenario: [policy.{self.name}] checkpoint = "
                             "\"PATH\")")
        if model is not None and model.config.kind != self.name:
            raise ValueError(f"policy {self.name!r}: the given model is a {model.config.kind!r}")
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.model = model

    @property
    def report_bits(self):
        """A model that reads the complex reports (``csi``) sends a CSI report: ``report_bits(ep)`` is None
        (unquantised phases, counted by :meth:`report_values`), as the attention selector with ``csi_keys``;
        None (no CSI report) for RSRP-only models."""
        return (lambda ep: None) if (self.model is not None and self.model.config.csi) else None

    def report_values(self, ep: Episode) -> int:
        """Phases per decision: one per Set B beam (the latest report's)."""
        return int(ep.set_b.numel())

    def build(self, ep: Episode):
        """The model for this episode's codebook and Set B (loaded once; a loaded model is re-checked)."""
        from ..learned.checkpoint import load_learned

        dev = ep.device
        measured = torch.zeros(ep.num_beams, dtype=torch.bool, device=dev)
        measured[ep.set_b] = True
        if self.model is not None:
            if self.model.measured.device != dev:
                self.model.to(dev)
            if self.model.num_beams == ep.num_beams and torch.equal(self.model.measured, measured):
                return self.model
            if self.checkpoint is None:
                raise ValueError(f"policy {self.name!r}: the given model was made for another codebook or Set B")
        self.model = load_learned(self.checkpoint, ep.codebook.beams, measured, kind=self.name)
        return self.model

    def decide(self, ep: Episode) -> Decision:
        model = self.build(ep)
        m = ep.num_beams
        rsrp, phase = ep.history(model.config.history)  # [B, D, L, K]
        if model.config.csi and phase is None:
            raise ValueError(f"policy {self.name!r} reads the complex reports (trained with csi): scenario field "
                             "[measurement] 'with_phase' = false; expected with_phase = true")
        with torch.no_grad():  # the model reads Set B only (with csi: their phases too)
            logits = model(rsrp[..., :m], phase[..., :m] if model.config.csi else None)  # [B, D, M]
        ranking = logits.topk(min(4, m), dim=-1).indices  # [B, D, 4]
        return _pick(ep, ranking[..., 0], float(ep.set_b.numel()), ranking)


def _doc(name: str) -> str:
    spec = MODEL_SPECS[name]
    return (f"Learned baseline {name!r}: {spec.description}; reads the Set B report history only (and their phases "
            "when the scenario's selector has csi_keys).")


@register("mlp")
class MLPPolicy(LearnedPolicy):
    __doc__ = _doc("mlp")


@register("mlp-soft")
class MLPSoftPolicy(LearnedPolicy):
    __doc__ = _doc("mlp-soft")


@register("mlp-large")
class MLPLargePolicy(LearnedPolicy):
    __doc__ = _doc("mlp-large")


@register("lstm")
class LSTMPolicy(LearnedPolicy):
    __doc__ = _doc("lstm")


@register("lstm-large")
class LSTMLargePolicy(LearnedPolicy):
    __doc__ = _doc("lstm-large")


@register("score-classifier")
class ScoreClassifierPolicy(LearnedPolicy):
    __doc__ = _doc("score-classifier")


@register("score-classifier-hard")
class ScoreClassifierHardPolicy(LearnedPolicy):
    __doc__ = _doc("score-classifier-hard")


@register("score-classifier-large")
class ScoreClassifierLargePolicy(LearnedPolicy):
    __doc__ = _doc("score-classifier-large")
