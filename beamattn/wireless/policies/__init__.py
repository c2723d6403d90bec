"""Beam-selection policies: one interface, a registry by name, one small module per family.

A policy looks at an :class:`~beamattn.wireless.measurement.Episode` (a batch of
drops × decisions) and returns a :class:`Decision` per drop and decision. It
must only read what it is allowed to: the oracles read the truth, every other
policy reads reported measurements of the beams it measures, and counts them
as overhead.

Families (one module each): :mod:`.oracles` (genie, MRT), :mod:`.sweeps`
(exhaustive, best of Set B, stale, hierarchical), :mod:`.interpolation` (peak
interpolation over Set B), :mod:`.references` (random, uniform),
:mod:`.attention` (the attention selector).

Fair reading (design.md §4): every policy that ranks reports reads them through
:func:`.base.read_reports` and :func:`.base.rank_reports`:

- ``history`` (argument, default 1 = the latest report; None = every report the
  measurement ``history`` allows, the bound on what a decision may read; the
  selector reads ``[selector] history`` <= that) reports per beam, averaged in
  linear power (``smoothing="mean"``) or exponentially (``"ewma"``, ``alpha``);
- ties among quantised reports go to the beam whose adjacent *measured* beams
  (along the DFT index, circular; the 2-D neighbours on a UPA grid) report more
  power, then to the newer of the older reports, then to the lower index.

Names ending in ``-avg`` are the same policies reading the whole allowed history
with an EWMA of ``alpha = 0.5``: ``exhaustive-avg``, ``best-of-set-b-avg``,
``stale-avg`` (its sweep instants only), ``hierarchical-avg``,
``interp-set-b-avg``. ``interp-set-b`` fits a parabola (in dB) through the best
Set B report and its neighbours, per grid axis, and uses the nearest Set A beam.

Adding a policy::

    @register("my-policy")
    class MyPolicy(Policy):
        def decide(self, ep):
            ...
            return Decision(beams=w, index=idx, measured=...)
"""

from .base import POLICIES, Decision, Policy, available_policies, make_policy, register
from .oracles import MRT, Genie
from .sweeps import BestOfSetB, BestOfSetBAvg, Exhaustive, ExhaustiveAvg, Hierarchical, HierarchicalAvg, Stale, StaleAvg
from .interpolation import InterpSetB, InterpSetBAvg
from .tracking import EKFTracker
from .bandits import UCB1, Thompson, ThompsonDiscounted, UCB1Discounted
from .references import Random, Uniform
from .attention import AttentionPolicy, AttentionUntrained
from .csi_codebooks import MRTFromReports, TypeI, TypeII  # noqa: F401  (registers type1*, type2*, mrt-reports)
from .omp import OMPBeam, OMPMRT  # noqa: F401  (registers omp-beam, omp-mrt)
from . import learned as learned  # the learned baselines (mlp, lstm, score-classifier, ...): registers them

__all__ = ["Decision", "Policy", "POLICIES", "register", "make_policy", "available_policies",
           "Genie", "MRT", "Exhaustive", "BestOfSetB", "Stale", "Hierarchical", "Random", "Uniform",
           "ExhaustiveAvg", "BestOfSetBAvg", "StaleAvg", "HierarchicalAvg", "InterpSetB", "InterpSetBAvg",
           "EKFTracker", "UCB1", "UCB1Discounted", "Thompson", "ThompsonDiscounted",
           "AttentionPolicy", "AttentionUntrained"]
