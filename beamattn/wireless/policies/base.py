"""Beam-selection policies: the interface, the registry by name, and shared helpers.

See the package docstring (:mod:`beamattn.wireless.policies`) for the contract and how to add a policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..measurement import Episode

__all__ = ["Decision", "Policy", "POLICIES", "register", "make_policy", "available_policies", "aggregate_db",
           "rank_reports", "neighbour_power", "set_layout", "read_reports", "check_history", "history_length"]


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
        if name in POLICIES:  # a plugin reusing a built-in's (or another plugin's) name is refused by name
            owner = POLICIES[name]
            raise ValueError(f"policy name {name!r} is already registered (by {owner.__module__}."
                             f"{owner.__qualname__}); expected a new name")
        cls.name = name
        POLICIES[name] = cls
        return cls

    return deco


def available_policies() -> list[str]:
    """The registered policy names, sorted."""
    return sorted(POLICIES)


def make_policy(name: str, **kwargs) -> Policy:
    """Build a registered policy; unknown names give an error listing the known ones."""
    if name not in POLICIES:
        import difflib

        from ...plugins import find_policy

        if find_policy(name):  # a policy of an installed plugin (entry point), loaded on first use
            return POLICIES[name](**kwargs)

        close = difflib.get_close_matches(name, POLICIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"policies: unknown policy {name!r}{hint}; expected one of {available_policies()}")
    return POLICIES[name](**kwargs)


def _pick(ep: Episode, index: Tensor, measured: Tensor | float, ranking: Tensor | None = None) -> Decision:
    beams = ep.codebook.beams.to(ep.cov_use.dtype)[index]  # [B, D, N]
    if not isinstance(measured, Tensor):
        measured = torch.full(index.shape, float(measured), device=index.device)
    return Decision(beams=beams, index=index, measured=measured, ranking=ranking)


# --------------------------------------------------------------------------- reading and ranking reports
#
# Every policy that ranks reports goes through the helpers below, so they all read the same way:
# ``history`` reports per beam (the latest and ``history - 1`` earlier ones, at most the measurement
# ``history`` = what a decision may read), aggregated in linear power, and ties among (quantised)
# reports broken with what the policy has measured: first the neighbours' reports of the same
# aggregate, then the older reports of the allowed history, newest first.

SMOOTHINGS = ("mean", "ewma")
TIE_DB = 1e-6  # aggregates closer than this (dB) count as tied (float sums of equal reports in another order)


def check_history(policy: str, history: int | None, smoothing: str = "mean", alpha: float = 0.5) -> None:
    """One-line errors for a policy's history arguments (``history`` None = the whole allowed history)."""
    if history is not None and (isinstance(history, bool) or not isinstance(history, int) or history < 1):
        raise ValueError(f"policy {policy!r}: argument 'history' = {history!r}; expected an integer >= 1 "
                         "(or None for the measurement 'history')")
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"policy {policy!r}: argument 'smoothing' = {smoothing!r}; expected one of {SMOOTHINGS}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha <= 1):
        raise ValueError(f"policy {policy!r}: argument 'alpha' = {alpha!r}; expected 0 < alpha <= 1")


def history_length(policy: str, ep: Episode, history: int | None) -> int:
    """The number of reports a policy reads per decision: ``history``, or all the episode allows (None)."""
    allowed = ep.timeline.history
    if history is None:
        return allowed
    if history > allowed:
        raise ValueError(f"policy {policy!r}: argument 'history' = {history} exceeds the measurement 'history' = "
                         f"{allowed} (the reports a decision may read); expected history <= {allowed}")
    return history


def aggregate_db(reports_db: Tensor, smoothing: str = "mean", alpha: float = 0.5,
                 valid: Tensor | None = None) -> Tensor:
    """Aggregate reports over their history axis in linear power → dB.

    Args:
        reports_db: ``[..., L, J]`` reported RSRP (dB), oldest first.
        smoothing: ``"mean"`` (plain average of the ``L`` reports) or ``"ewma"`` (weights
            ``alpha (1 - alpha)^age``, normalised; age 0 = the latest report).
        valid: ``[..., L, J]`` bool, reports that were measured (others are ignored); None = all.
            Every beam must have at least one valid report (the latest, for the callers here).

    Returns:
        ``[..., J]`` dB. With ``L = 1`` the latest report itself (bit for bit).
    """
    length = reports_db.shape[-2]
    if length == 1 and valid is None:
        return reports_db[..., 0, :]
    age = torch.arange(length - 1, -1, -1, device=reports_db.device, dtype=torch.float64)  # [L] 0 = latest
    w = torch.ones_like(age) if smoothing == "mean" else alpha * (1 - alpha) ** age  # [L]
    w = w[:, None].expand(length, reports_db.shape[-1])  # [L, J]
    if valid is not None:
        w = w * valid.to(w.dtype)  # [..., L, J]
    lin = 10 ** (reports_db.to(torch.float64) / 10)  # [..., L, J]
    mean = (w * lin).sum(-2) / w.sum(-2).clamp_min(1e-300)  # [..., J]
    return (10 * torch.log10(mean.clamp_min(1e-30))).to(reports_db.dtype)


def set_layout(ep: Episode, ids: Tensor) -> tuple[int, int]:
    """The measured beams ``ids`` (ascending) as a ``(rows, cols)`` sub-grid of the codebook's DFT grid.

    Set A and Set B of a UPA are product grids (``set_b_indices``): neighbours along each axis are
    the adjacent measured rows / columns. Anything else is one row (neighbours along the index).
    """
    j = int(ids.numel())
    grid = ep.codebook.grid
    if grid is None or grid[0] <= 1:
        return 1, j
    rows = torch.unique(torch.div(ids, grid[1], rounding_mode="floor"))
    r = int(rows.numel())
    if j % r == 0:
        cols = (ids % grid[1]).reshape(r, j // r)
        if bool((cols == cols[:1]).all()):  # the same columns on every measured row: a product grid
            return r, j // r
    return 1, j


def neighbour_power(p_lin: Tensor, layout: tuple[int, int], circular: bool = True) -> Tensor:
    """Sum of the adjacent measured beams' linear power, ``[..., J]`` → ``[..., J]``.

    ``p_lin`` lists the measured beams in DFT order on a ``layout = (rows, cols)`` grid (row-major);
    adjacent = ±1 along each axis with more than one entry, wrapping around when ``circular`` (DFT
    spatial frequencies are periodic) and stopping at the edges otherwise (a group of children).
    Entries of power 0 (padding) add nothing.
    """
    r, c = layout
    g = p_lin.reshape(*p_lin.shape[:-1], r, c)  # [..., R, C]
    out = torch.zeros_like(g)
    for dim, size in ((-1, c), (-2, r)):
        if size < 2:
            continue
        if circular:
            out = out + g.roll(1, dim) + g.roll(-1, dim)
        else:
            zero = torch.zeros_like(g.narrow(dim, 0, 1))
            out = out + torch.cat([zero, g.narrow(dim, 0, size - 1)], dim) + torch.cat([g.narrow(dim, 1, size - 1), zero], dim)
    return out.reshape(p_lin.shape)


def rank_reports(current_db: Tensor, layout: tuple[int, int], older_db: Tensor | None = None, k: int = 4,
                 circular: bool = True) -> Tensor:
    """Positions of the ``k`` best measured beams, best first, with ties broken by what was measured.

    Keys, most significant first: the (aggregated) report; the neighbours' linear power in that same
    report (:func:`neighbour_power`: a beam next to strong beams sits nearer the peak); then each
    older report of the allowed history, newest first; finally the lower position (deterministic).

    Args:
        current_db: ``[..., J]`` dB of the ``J`` measured beams (``-inf`` = padding, ranked last).
        layout: ``(rows, cols)`` with ``rows·cols = J`` (see :func:`set_layout`).
        older_db: ``[..., L', J]`` older reports (dB), oldest first, or None.
        circular: neighbours wrap around (DFT order) or stop at the edges.

    Returns:
        ``[..., min(k, J)]`` long positions into the last axis.
    """
    cur = torch.round(current_db.to(torch.float64) / TIE_DB) * TIE_DB  # [..., J]
    keys = [cur, neighbour_power(10 ** (cur / 10), layout, circular)]
    if older_db is not None:
        keys += [older_db[..., i, :].to(torch.float64) for i in range(older_db.shape[-2] - 1, -1, -1)]
    order = torch.arange(cur.shape[-1], device=cur.device).expand(cur.shape).contiguous()  # [..., J]
    for key in reversed(keys):  # least significant first; stable sorts keep the later keys' order in ties
        _, idx = torch.sort(key.gather(-1, order), dim=-1, descending=True, stable=True)
        order = order.gather(-1, idx)
    return order[..., : min(k, cur.shape[-1])]


def read_reports(policy: str, ep: Episode, ids: Tensor, history: int | None = 1, smoothing: str = "mean",
                 alpha: float = 0.5) -> tuple[Tensor, Tensor | None]:
    """What a measuring policy reads of beams ``ids [J]`` at each decision.

    Returns:
        current: ``[B, D, J]`` dB, the last ``history`` reports aggregated (:func:`aggregate_db`);
        older: ``[B, D, H - history, J]`` the earlier reports of the allowed history ``H``, oldest
        first (tie-breakers), or None when the policy reads the whole history.
    """
    length = history_length(policy, ep, history)
    allowed = ep.timeline.history
    rsrp, _ = ep.history(allowed)  # [B, D, H, K]
    rsrp = rsrp[..., ids]  # [B, D, H, J]
    current = aggregate_db(rsrp[..., allowed - length:, :], smoothing, alpha)  # [B, D, J]
    older = rsrp[..., : allowed - length, :] if length < allowed else None
    return current, older


def _best_of(ep: Episode, ids: Tensor, k: int = 4, history: int | None = 1, smoothing: str = "mean",
             alpha: float = 0.5, policy: str = "policy") -> tuple[Tensor, Tensor]:
    """Best and top-k of the reports of narrow-beam ids ``[J]`` → index [B, D], ranking [B, D, k].

    The last ``history`` reports are aggregated and ties broken by :func:`rank_reports`.
    """
    current, older = read_reports(policy, ep, ids, history, smoothing, alpha)
    top = rank_reports(current, set_layout(ep, ids), older, k)  # [B, D, k] positions
    ranking = ids[top]
    return ranking[..., 0], ranking
