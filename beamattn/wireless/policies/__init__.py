"""Beam-selection policies: one interface, a registry by name, one small module per family.

A policy looks at an :class:`~beamattn.wireless.measurement.Episode` (a batch of
drops × decisions) and returns a :class:`Decision` per drop and decision. It
must only read what it is allowed to: the oracles read the truth, every other
policy reads reported measurements of the beams it measures, and counts them
as overhead.

Families (one module each): :mod:`.oracles` (genie, MRT), :mod:`.sweeps`
(exhaustive, best of Set B, stale, hierarchical), :mod:`.references` (random,
uniform), :mod:`.attention` (the attention selector).

Adding a policy::

    @register("my-policy")
    class MyPolicy(Policy):
        def decide(self, ep):
            ...
            return Decision(beams=w, index=idx, measured=...)
"""

from .base import POLICIES, Decision, Policy, available_policies, make_policy, register
from .oracles import MRT, Genie
from .sweeps import BestOfSetB, Exhaustive, Hierarchical, Stale
from .references import Random, Uniform
from .attention import AttentionPolicy, AttentionUntrained
from .csi_codebooks import MRTFromReports, TypeI, TypeII  # noqa: F401  (registers type1*, type2*, mrt-reports)
from .omp import OMPBeam, OMPMRT  # noqa: F401  (registers omp-beam, omp-mrt)

__all__ = ["Decision", "Policy", "POLICIES", "register", "make_policy", "available_policies",
           "Genie", "MRT", "Exhaustive", "BestOfSetB", "Stale", "Hierarchical", "Random", "Uniform",
           "AttentionPolicy", "AttentionUntrained"]
