"""What a policy returns is checked before any KPI is computed from it.

The runner (``beamattn run``, sweeps) and the link level call :func:`check_decision` on every
:class:`~.base.Decision`: a custom policy whose beams are not unit-norm would "beat" MRT (transmit
power is fixed, see the design notes), and NaN beams would give NaN KPIs that look like results
(an outage of 0.000). A bad decision is refused with one line naming the policy, the field, where
(drop, decision) and the value.

Contract (``B`` drops, ``D`` decisions, ``N`` antennas, ``M`` codebook beams of the episode):

- ``beams [B, D, N]`` complex, finite, unit norm: ``|‖w‖ − 1| ≤`` :data:`NORM_TOL` (1e-3, i.e. the transmit
  power within ±0.009 dB; float32 rounding of a normalised beam is ~1e-7, so the tolerance is loose for
  honest policies and tight for wrong ones, for complex64 and complex128 alike);
- ``index [B, D]`` integer in ``[-1, M)``; ``-1`` = the beam is not one codebook beam (MRT, a
  combination). A hard pick (``index >= 0`` without ``weights``) must *be* codebook beam ``index``:
  ``|v_indexᴴ w|² ≥ 1 −`` :data:`PICK_TOL`, else Top-1 would credit a beam that was not used;
- ``measured [B, D]`` real, finite, ``>= 0`` (beams measured: the overhead);
- ``ranking [B, D, K]`` (optional) integer, ``K >= 1``, ids in ``[0, M)``;
- ``weights [B, D, M]`` (optional) real, finite, ``>= 0``, each row summing to 1 within :data:`SUM_TOL`;
- ``gain [B, D]`` (optional, it replaces ``wᴴRw``) real, finite, ``>= 0`` and at most the per-instant MRT
  bound ``ep.mrt_gain`` (relative tolerance :data:`PICK_TOL`): no beam gains more than MRT.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..measurement import Episode
from .base import Decision

__all__ = ["check_decision", "DecisionError", "NORM_TOL", "PICK_TOL", "SUM_TOL"]

NORM_TOL = 1e-3  # |‖w‖ − 1| of every beam
PICK_TOL = 1e-3  # 1 − |v_iᴴ w|² of a hard pick; relative excess of a given gain over MRT's
SUM_TOL = 1e-3  # |Σ_m weights − 1|


class DecisionError(ValueError):
    """A policy returned a decision that breaks the contract; the message names the policy and the field."""


def _where(ep: Episode, bad: Tensor) -> str:
    """``"drop i, decision j"`` of the first True entry of ``bad [B, D, ...]``."""
    b, d = (int(x) for x in bad.nonzero()[0][:2].tolist())
    drop = int(ep.drop_ids[b]) if ep.drop_ids.numel() == ep.num_drops else b
    return f"drop {drop}, decision {d}"


def _shape(name: str, field: str, x: Tensor, want: tuple[int, ...], label: str) -> None:
    if not isinstance(x, Tensor):
        raise DecisionError(f"policy {name!r}: decision field {field!r} is {type(x).__name__}; expected a tensor "
                            f"{label}")
    if tuple(x.shape) != want:
        raise DecisionError(f"policy {name!r}: decision field {field!r} has shape {list(x.shape)}; expected "
                            f"{label} = {list(want)}")


def _finite(name: str, field: str, ep: Episode, x: Tensor) -> None:
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        value = x[tuple(bad.nonzero()[0].tolist())].item()
        raise DecisionError(f"policy {name!r}: decision field {field!r} = {value} at {_where(ep, bad)}; expected "
                            "finite values")


def check_decision(name: str, ep: Episode, dec: Decision) -> None:
    """Raise :class:`DecisionError` (one line naming policy ``name``) unless ``dec`` keeps the contract above.

    Args:
        name: the policy's name, for the message.
        ep: the episode the decision was made on (its sizes ``B, D, N, M``, codebook and MRT bound).
        dec: what the policy returned.
    """
    if not isinstance(dec, Decision):
        raise DecisionError(f"policy {name!r}: decide() returned {type(dec).__name__}; expected a Decision")
    b, d, m = ep.num_drops, ep.num_decisions, ep.num_beams
    n = int(ep.codebook.beams.shape[-1])

    _shape(name, "beams", dec.beams, (b, d, n), "[B, D, N]")
    if not dec.beams.is_complex():
        raise DecisionError(f"policy {name!r}: decision field 'beams' has dtype {dec.beams.dtype}; expected a "
                            "complex dtype")
    _finite(name, "beams", ep, torch.view_as_real(dec.beams))
    norm = torch.linalg.vector_norm(dec.beams, dim=-1)  # [B, D]
    bad = (norm - 1).abs() > NORM_TOL
    if bool(bad.any()):
        raise DecisionError(f"policy {name!r}: decision field 'beams' has norm {float(norm[bad][0]):.6g} at "
                            f"{_where(ep, bad)}; expected unit norm (|‖w‖ − 1| <= {NORM_TOL:g}: transmit power "
                            "is fixed)")

    _shape(name, "index", dec.index, (b, d), "[B, D]")
    if dec.index.is_floating_point() or dec.index.is_complex() or dec.index.dtype == torch.bool:
        raise DecisionError(f"policy {name!r}: decision field 'index' has dtype {dec.index.dtype}; expected an "
                            "integer dtype")
    bad = (dec.index < -1) | (dec.index >= m)
    if bool(bad.any()):
        raise DecisionError(f"policy {name!r}: decision field 'index' = {int(dec.index[bad][0])} at "
                            f"{_where(ep, bad)}; expected a codebook beam in [0, {m}) or -1 (not one codebook beam)")

    _shape(name, "measured", dec.measured, (b, d), "[B, D]")
    if dec.measured.is_complex():
        raise DecisionError(f"policy {name!r}: decision field 'measured' is complex; expected real beam counts")
    _finite(name, "measured", ep, dec.measured.double())
    bad = dec.measured < 0
    if bool(bad.any()):
        raise DecisionError(f"policy {name!r}: decision field 'measured' = {float(dec.measured[bad][0]):g} at "
                            f"{_where(ep, bad)}; expected beams measured >= 0")

    if dec.ranking is not None:
        r = dec.ranking
        if not isinstance(r, Tensor) or r.dim() != 3 or tuple(r.shape[:2]) != (b, d) or r.shape[2] < 1:
            shown = list(r.shape) if isinstance(r, Tensor) else type(r).__name__
            raise DecisionError(f"policy {name!r}: decision field 'ranking' has shape {shown}; expected "
                                f"[B, D, K] = [{b}, {d}, K >= 1]")
        if r.is_floating_point() or r.is_complex() or r.dtype == torch.bool:
            raise DecisionError(f"policy {name!r}: decision field 'ranking' has dtype {r.dtype}; expected an "
                                "integer dtype")
        bad = (r < 0) | (r >= m)
        if bool(bad.any()):
            raise DecisionError(f"policy {name!r}: decision field 'ranking' holds beam {int(r[bad][0])} at "
                                f"{_where(ep, bad)}; expected codebook beams in [0, {m})")

    if dec.weights is not None:
        w = dec.weights
        _shape(name, "weights", w, (b, d, m), "[B, D, M]")
        if w.is_complex():
            raise DecisionError(f"policy {name!r}: decision field 'weights' is complex; expected real weights")
        _finite(name, "weights", ep, w)
        bad = w < 0
        if bool(bad.any()):
            raise DecisionError(f"policy {name!r}: decision field 'weights' = {float(w[bad][0]):.6g} at "
                                f"{_where(ep, bad)}; expected weights >= 0")
        total = w.double().sum(-1)  # [B, D]
        bad = (total - 1).abs() > SUM_TOL
        if bool(bad.any()):
            raise DecisionError(f"policy {name!r}: decision field 'weights' sums to {float(total[bad][0]):.6g} at "
                                f"{_where(ep, bad)}; expected each decision's weights to sum to 1 (within "
                                f"{SUM_TOL:g})")
    else:
        picked = dec.index >= 0  # [B, D] hard picks: the beam must be that codebook beam
        if bool(picked.any()):
            v = ep.codebook.beams.to(dec.beams.device, dec.beams.dtype)[dec.index.clamp_min(0)]  # [B, D, N]
            match = torch.einsum("bdn,bdn->bd", v.conj(), dec.beams).abs().square()  # [B, D] |v_iᴴ w|²
            bad = picked & (match < 1 - PICK_TOL)
            if bool(bad.any()):
                i = int(dec.index[bad][0])
                raise DecisionError(f"policy {name!r}: decision field 'index' = {i} at {_where(ep, bad)} but the "
                                    f"beam is not codebook beam {i} (|v_{i}ᴴ w|² = {float(match[bad][0]):.4g}); "
                                    "expected the beam of the index, or index -1 for another beam")

    if dec.gain is not None:
        g = dec.gain
        _shape(name, "gain", g, (b, d), "[B, D]")
        if g.is_complex():
            raise DecisionError(f"policy {name!r}: decision field 'gain' is complex; expected a real gain")
        _finite(name, "gain", ep, g)
        bad = g < 0
        if bool(bad.any()):
            raise DecisionError(f"policy {name!r}: decision field 'gain' = {float(g[bad][0]):.6g} at "
                                f"{_where(ep, bad)}; expected a gain >= 0")
        bound = ep.mrt_gain.to(g.device, torch.float64)
        bad = g.double() > bound * (1 + PICK_TOL)
        if bool(bad.any()):
            raise DecisionError(f"policy {name!r}: decision field 'gain' = {float(g[bad][0]):.6g} at "
                                f"{_where(ep, bad)} exceeds the MRT bound {float(bound[bad][0]):.6g}; expected a "
                                "gain <= mrt_gain (no beam gains more than MRT)")
