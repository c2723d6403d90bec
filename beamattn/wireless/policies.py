"""Beam-selection policies: one interface, a registry by name, the baselines.

A policy looks at an :class:`~beamattn.wireless.measurement.Episode` (a batch of
drops × decisions) and returns a :class:`Decision` per drop and decision. It
must only read what it is allowed to: the genie and MRT read the truth, every
other baseline reads reported measurements of the beams it measures, and
counts them as overhead.

Adding a policy::

    @register("my-policy")
    class MyPolicy(Policy):
        def decide(self, ep):
            ...
            return Decision(beams=w, index=idx, measured=...)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .measurement import Episode

__all__ = ["Decision", "Policy", "POLICIES", "register", "make_policy", "available_policies"]


@dataclass
class Decision:
    """What a policy decided, for ``B`` drops × ``D`` decisions.

    Args:
        beams: ``[B, D, N]`` complex unit-norm beam used over each use interval.
        index: ``[B, D]`` long: the codebook beam it picked (the largest weight for soft
            combinations; -1 when the beam is not tied to one codebook beam).
        measured: ``[B, D]`` float: beams measured for this decision (overhead).
        ranking: ``[B, D, K]`` long: the policy's K best candidates, best first (Top-K accuracy);
            None → ``index`` only.
        weights: ``[B, D, M]`` attention weights over the codebook (soft selectors), else None.
        gain: ``[B, D]`` use-interval gain that overrides ``wᴴRw`` (MRT's per-instant bound).
    """

    beams: Tensor
    index: Tensor
    measured: Tensor
    ranking: Tensor | None = None
    weights: Tensor | None = None
    gain: Tensor | None = None


class Policy:
    """Base class. ``decide`` is batched over drops and decisions."""

    name: str = "policy"

    def decide(self, ep: Episode) -> Decision:  # pragma: no cover - interface
        raise NotImplementedError


POLICIES: dict[str, Callable[..., Policy]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make a policy available by ``name``."""

    def deco(cls: type) -> type:
        if name in POLICIES:
            raise ValueError(f"policy name {name!r} is registered twice")
        cls.name = name
        POLICIES[name] = cls
        return cls

    return deco


def available_policies() -> list[str]:
    return sorted(POLICIES)


def make_policy(name: str, **kwargs) -> Policy:
    """Build a registered policy; unknown names give an error listing the known ones."""
    if name not in POLICIES:
        import difflib

        close = difflib.get_close_matches(name, POLICIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"policies: unknown policy {name!r}{hint}; expected one of {available_policies()}")
    return POLICIES[name](**kwargs)


def _pick(ep: Episode, index: Tensor, measured: Tensor | float, ranking: Tensor | None = None) -> Decision:
    beams = ep.codebook.beams.to(ep.cov_use.dtype)[index]  # [B, D, N]
    if not isinstance(measured, Tensor):
        measured = torch.full(index.shape, float(measured), device=index.device)
    return Decision(beams=beams, index=index, measured=measured, ranking=ranking)


def _best_of(ep: Episode, ids: Tensor, k: int = 4) -> tuple[Tensor, Tensor]:
    """Argmax and top-k of the latest reports over narrow-beam ids ``[J]`` → index [B, D], ranking [B, D, k]."""
    r = ep.rsrp_db[..., ids]  # [B, D, J]
    top = r.topk(min(k, ids.numel()), dim=-1).indices  # [B, D, k]
    ranking = ids[top]
    return ranking[..., 0], ranking


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
        from .selector import SelectorConfig

        self.config = config or SelectorConfig(learned=False)
        self._grid_given = config is not None  # a checkpoint's grid is checked against a given config only
        self.checkpoint = checkpoint
        self.selector = selector  # a ready AttentionSelector (training, tests)

    def build(self, ep: Episode):
        """The selector for this episode's codebook and Set B (built once per distinct pair)."""
        from .checkpoint import load_selector
        from .selector import AttentionSelector, SelectorConfig

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
        from .selector import SelectorConfig

        cfg = config or SelectorConfig(learned=False)
        super().__init__(config=SelectorConfig(**{**cfg.to_dict(), "learned": False}), checkpoint=None)
