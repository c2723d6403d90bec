"""Beam-selection policies: the interface, the registry by name, and shared helpers.

See the package docstring (:mod:`beamattn.wireless.policies`) for the contract and how to add a policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..measurement import Episode

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
