"""The attention selector as a policy (trained or untrained)."""

from __future__ import annotations

import sys
from typing import Iterable

import torch
from torch import Tensor

from ..measurement import Episode
from .base import Decision, Policy, register


@register("attention")
class AttentionPolicy(Policy):
    """The attention selector (:mod:`beamattn.wireless.selector`) as a policy.

    Without a checkpoint it is the untrained selector (fixed goal "more RSRP is better").
    It measures Set B every period; its overhead is ``|Set B|``.

    What runs, when a checkpoint is given, is the checkpoint's selector: its stored config (normalizer,
    cophase, d_model, history, ...; the weights were trained for it), with the evaluation-only fields
    ``mode`` and ``topk`` taken from ``config`` (a note on stderr names each one that differs from the
    checkpoint's). A field named in ``explicit`` (set by the scenario file) whose value differs from the
    checkpoint's is refused, one line per field: a run labelled "softmax" must not run a sparsemax
    checkpoint. :meth:`describe` gives the configuration that really runs, for the records.

    Args:
        config: :class:`SelectorConfig` (the scenario's ``[selector]`` table; its ``grid``, set by the
            scenario for a UPA, must match the checkpoint's).
        checkpoint: a ``.safetensors`` file written by ``beamattn train``.
        selector: a ready :class:`AttentionSelector` (training, tests).
        explicit: the ``config`` fields the user set (``Scenario.selector_explicit``); a checkpoint must
            agree with each of them, except the evaluation-only ``mode`` and ``topk``.
    """

    def __init__(self, config=None, checkpoint: str | None = None, selector=None,
                 explicit: Iterable[str] = ()) -> None:
        from ..selector import SelectorConfig

        self.config = config or SelectorConfig(learned=False)
        self._grid_given = config is not None  # a checkpoint's grid is checked against a given config only
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.selector = selector  # a ready AttentionSelector (training, tests)
        self.explicit = frozenset(explicit)
        self.checkpoint_config = None  # the SelectorConfig that runs from the checkpoint
        self.checkpoint_sha256: str | None = None
        if self.checkpoint is not None:
            self._read_checkpoint()

    def _read_checkpoint(self) -> None:
        """Read the checkpoint's config (no weights), refuse conflicting explicit fields, note overrides."""
        from ..checkpoint import (EVAL_FIELDS, CheckpointError, check_grid, checkpoint_selector_config, file_sha256,
                                  read_checkpoint_config)

        path = self.checkpoint
        meta = read_checkpoint_config(path)
        overrides = {k: getattr(self.config, k) for k in EVAL_FIELDS}
        stored = checkpoint_selector_config(meta, path)  # as trained
        runs = checkpoint_selector_config(meta, path, overrides)
        conflicts = []
        for key in sorted(self.explicit - set(EVAL_FIELDS) - {"grid"}):  # grid: by check_grid below
            mine, theirs = getattr(self.config, key, None), getattr(stored, key, None)
            if mine != theirs:
                conflicts.append(f"checkpoint {path}: [selector] field {key!r} = {mine!r} in the scenario, but the "
                                 f"checkpoint was trained with {key} = {theirs!r}; expected the checkpoint's value "
                                 "(remove the field from [selector], or retrain)")
        if conflicts:
            raise CheckpointError("\n".join(conflicts))
        if self._grid_given:  # the scenario's codebook grid (a UPA's, or its explicit [selector] grid)
            check_grid(stored, self.config.grid, path)
        for key in EVAL_FIELDS:
            if getattr(runs, key) != getattr(stored, key) and (key != "topk" or "topk" in (runs.mode, stored.mode)):
                print(f"note: checkpoint {path}: [selector] field {key!r} = {getattr(runs, key)!r} from the scenario "
                      f"replaces the checkpoint's {getattr(stored, key)!r} (an evaluation-only field)",
                      file=sys.stderr)
        self.checkpoint_config = runs
        self.checkpoint_sha256 = file_sha256(path)

    def describe(self) -> dict:
        """The selector configuration that runs (plain JSON types), with the checkpoint's path and SHA-256
        (None without a checkpoint): what ``metrics.json`` records as ``policies_config``."""
        from ..selector import SelectorConfig

        if self.checkpoint is not None:
            cfg = self.checkpoint_config
        elif self.selector is not None:
            cfg = self.selector.config
        else:  # built by build(): the untrained selector
            cfg = SelectorConfig(**{**self.config.to_dict(), "learned": False})
        return {**cfg.to_dict(), "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256}

    def build(self, ep: Episode):
        """The selector for this episode's codebook and Set B (built once per distinct pair)."""
        from ..checkpoint import CheckpointError, file_sha256, load_selector
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
            if file_sha256(self.checkpoint) != self.checkpoint_sha256:  # the records name the file that ran
                raise CheckpointError(f"checkpoint {self.checkpoint}: the file changed during the run; expected "
                                      "it unchanged")
        elif self.config.learned and self.selector is not None:
            raise ValueError("policy 'attention': the given trained selector was made for another codebook or Set B")
        else:
            cfg = SelectorConfig(**{**self.config.to_dict(), "learned": False})
            self.selector = AttentionSelector(cfg, beams, measured)
        return self.selector

    @property
    def report_bits(self):
        """For a selector that reads phases (co-phased values or ``csi_keys``), a CSI report: ``report_bits(ep)``
        is None (unquantised phases) and :meth:`report_values` counts them. None (no CSI report) for RSRP-only
        selectors, so the run records a report size only for the ones that read phases."""
        cfg = self.checkpoint_config or (self.selector.config if self.selector is not None else self.config)
        return (lambda ep: None) if (cfg.cophase or (cfg.csi_keys and cfg.learned)) else None

    def report_values(self, ep: Episode) -> int:
        """Phases per decision: one per Set B beam and CSI-RS instance (``burst`` instances per report)."""
        return int(ep.set_b.numel()) * ep.config.burst

    def decide(self, ep: Episode) -> Decision:
        sel = self.build(ep)
        m = ep.num_beams
        rsrp, phase = ep.history(sel.config.history)  # [B, D, L, K]
        from ..selector import selector_forward

        with torch.no_grad():  # latest phases for co-phasing, the history for the phase predictor
            burst = None if ep.burst is None else ep.burst[..., :m]  # [B, D, R, M] the latest report's burst
            out = selector_forward(sel, rsrp[..., :m], None if phase is None else phase[..., :m], burst,
                                   ep.burst_lead)
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
