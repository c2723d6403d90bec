"""CSI codebooks: phase-aware opponents of the selector's soft combinations.

NR's channel-state reports (3GPP TS 38.214 §5.2.2.2), adapted to this package's single-polarised
arrays and to reports over Set B, plus the unquantised limit they approach:

- ``type1``: NR Type I, single panel, one beam. For a single-polarised array the Type I precoder
  ``W = v_{l,m}`` is one DFT beam (the co-phasing ``φ_n`` of Type I acts between the two
  polarisations; with one polarisation it is a common phase that changes no gain), so Type I
  *reduces to one DFT beam*: here the best reported beam of Set B (the same decisions as
  ``best-of-set-b``, counted as a CSI report). Needs no phase.
- ``type1-oversampled``: Type I as a UE with per-port CSI-RS computes it: the channel is
  reconstructed from the complex reports over Set B (minimum-norm least squares, exact when Set B
  is an orthogonal basis) and the best beam of the whole oversampled grid (Set A) is reported.
- ``type1-oversampled-avg``: the same reconstruction for each report of the history, and the beam of the
  largest EWMA of its reconstructed gains (what the selector's ``csi_keys`` read, with a fixed smoothing).
- ``type2`` / ``type2-l{2,4}-{qpsk,8psk}``: NR Type II (§5.2.2.2.3, wideband amplitudes only,
  one polarisation): the ``L`` strongest beams of the orthogonal group of the strongest Set B
  beam, combined with 3-bit wideband amplitudes from ``{1, √0.5, √0.25, √0.125, √0.0625,
  √0.0313, √0.0156, 0}`` and QPSK/8PSK phases, both relative to the strongest beam (which has
  amplitude 1 and phase 0, not reported); the combination is normalised to unit power.
- ``mrt-reports``: "MRT from the latest reports": every Set B beam co-phased with its reported
  amplitude and phase, ``w ∝ Σ_b a_b e^{-jφ_b} v_b``, unquantised coefficients.

Sign convention (``y = hᵀ w``, no conjugate): the complex report of beam ``b`` is
``y_b = a_b e^{jφ_b} ≈ hᵀ v_b``, so ``Σ_b conj(y_b) v_b = Σ_b v_b v_bᴴ conj(h)`` is ``conj(h)``
projected on the span of Set B when Set B's beams are orthonormal: MRT on the measured subspace.
The selector co-phases its values the same way (``v_i e^{-jφ_i}``, :mod:`..selector`).

What a policy reads: the latest report of each Set B beam — amplitude ``a_b`` = the square root of
the reported (noisy, quantised) RSRP in linear units, and its phase — as every other measured policy
(overhead: ``|Set B|`` beams per decision). Two arguments let it read what the selector reads:
``history`` (the amplitude from the linear mean of the last ``history`` RSRP reports, None = all the
measurement ``history`` allows; the phase is always the latest, as the selector's co-phasing) and
``debias`` (subtract the known noise power ``1/ρ_m`` that every RSRP report carries, floored just
above 0, so beams below the noise get almost no amplitude instead of ``~1/sqrt(ρ_m)``). The ``-avg``
variants (``mrt-reports-avg``, ``type2-l4-8psk-avg``) use both, with the whole history;
``mrt-reports-mmse`` also ``shrink``s each coefficient to its linear MMSE estimate,
``y_b P_b / (P_b + σ²)`` with ``P_b`` the debiased power and ``σ² = 1/(ρ_m R)`` the noise variance
of the complex report (``R`` samples), so that beams near the noise, whose phases are mostly
noise, weigh less than their amplitude alone would make them.

Report size: each policy has ``report_bits(ep) -> int | None``, the bits of one CSI report (one
decision), or None when its coefficients are unquantised (then ``report_values(ep)`` complex
values per decision). ``Decision`` has no field for it: the lead surfaces it in the metrics.

Type II report bits (single polarisation, wideband), with ``N_g`` beams in the orthogonal group
and ``G`` orthogonal groups in Set B::

    ⌈log2 G⌉              orthogonal group (rotation q1, q2; 0 bits when Set B is one group)
  + ⌈log2 C(N_g, L)⌉      which L beams (i_{1,2}, combinatorial)
  + ⌈log2 L⌉              strongest coefficient (i_{1,3}; ⌈log2 2L⌉ with two polarisations)
  + 3 (L − 1)             wideband amplitudes of the other beams (i_{1,4})
  + p (L − 1)             their phases, p = 2 (QPSK) or 3 (8PSK) (i_2)

This is the brief's ``log2 C(N_B, L) + 3(L−1) + p(L−1)`` plus the two indices the standard also
sends (rounded up to whole bits, as fields are). It is the payload with every phase reported: the
standard omits the phase of a zero-amplitude coefficient, so it is an upper bound per report.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..measurement import Episode
from .base import Decision, Policy, _best_of, _pick, aggregate_db, check_history, history_length, register

__all__ = ["TYPE2_AMPLITUDES", "complex_reports", "quantize_amplitude", "quantize_phase", "ReportPolicy", "TypeI",
           "TypeIOversampled", "TypeIOversampledAvg", "TypeII", "TypeIIL2QPSK", "TypeIIL28PSK", "TypeIIL4QPSK", "TypeIIL48PSK",
           "TypeIIL48PSKAvg", "MRTFromReports", "MRTFromReportsAvg", "MRTFromReportsMMSE"]

# TS 38.214 Table 5.2.2.2.3-2: wideband amplitude values p^(1) (3 bits), as the standard writes them.
TYPE2_AMPLITUDES: tuple[float, ...] = (1.0, math.sqrt(0.5), math.sqrt(0.25), math.sqrt(0.125), math.sqrt(0.0625),
                                       math.sqrt(0.0313), math.sqrt(0.0156), 0.0)
_ORTH_TOL = 1e-3  # |v_iᴴ v_j| below this: the two beams are orthogonal (float32 DFT beams give ~1e-7)


def _check_phase(ep: Episode, policy: str) -> None:
    """One-line error naming ``policy`` and the scenario field when the episode's reports carry no phases."""
    if ep.phase is None:
        raise ValueError(f"policy {policy!r} needs phase reports: scenario field [measurement] 'with_phase' = "
                         "false; expected with_phase = true")


def complex_reports(ep: Episode, policy: str, history: int | None = 1, debias: bool = False,
                    shrink: bool = False) -> Tensor:
    """The complex report of each Set B beam, ``y_b = a_b e^{jφ_b} ≈ hᵀ v_b``: ``[B, D, J]``.

    ``a_b`` is the square root of the reported RSRP (linear; noisy, noise-biased and quantised like
    the report), averaged in linear power over the last ``history`` reports (None: all the measurement
    ``history`` allows) and, with ``debias``, less the noise power ``1/ρ_m`` (floored at 1e-12);
    ``φ_b`` is the latest reported phase. With ``shrink`` (after ``debias``), ``y_b`` is scaled by
    ``P_b / (P_b + σ²)``, ``P_b = a_b²``, ``σ² = 1 / (ρ_m R)``: the linear MMSE estimate of ``hᵀ v_b``
    from a report with noise ``CN(0, σ²)`` and prior power ``P_b``. Complex dtype of the episode (``cov_use``).

    Raises:
        ValueError: one line naming ``policy`` and the scenario field when the episode has no phases,
            or the argument ``history`` when it exceeds the measurement ``history``.
    """
    _check_phase(ep, policy)
    allowed = ep.timeline.history
    length = allowed if history is None else history
    if length > allowed:
        raise ValueError(f"policy {policy!r}: argument 'history' = {history} exceeds the measurement 'history' = "
                         f"{allowed}; expected history <= {allowed}")
    real = ep.cov_use.real.dtype
    rsrp, phase = ep.history(length)  # [B, D, L, K] each
    power = torch.pow(10.0, rsrp[..., ep.set_b].to(real) / 10).mean(-2)  # [B, D, J] linear, mean over L
    if debias:
        power = (power - 10 ** (-ep.config.snr_db / 10)).clamp_min(1e-12)  # E[report] = |hᵀv|² + 1/ρ_m
    amp = power.sqrt()  # [B, D, J]
    if shrink:
        amp = amp * power / (power + 10 ** (-ep.config.snr_db / 10) / ep.config.samples)
    return torch.polar(amp, phase[..., -1, ep.set_b].to(real)).to(ep.cov_use.dtype)  # [B, D, J]


class ReportPolicy(Policy):
    """A policy that reads the complex Set B reports (:func:`complex_reports`).

    Args:
        history: RSRP reports averaged per beam (1 = the latest; None = the measurement ``history``).
        debias: subtract the reports' noise power ``1/ρ_m``.
        shrink: scale each report to its linear MMSE estimate (:func:`complex_reports`).
    """

    def __init__(self, history: int | None = 1, debias: bool = False, shrink: bool = False) -> None:
        if history is not None and (isinstance(history, bool) or not isinstance(history, int) or history < 1):
            raise ValueError(f"policy {self.name!r}: argument 'history' = {history!r}; expected an integer >= 1 "
                             "or none (the measurement 'history')")
        if not isinstance(debias, bool):
            raise ValueError(f"policy {self.name!r}: argument 'debias' = {debias!r}; expected true or false")
        if not isinstance(shrink, bool):
            raise ValueError(f"policy {self.name!r}: argument 'shrink' = {shrink!r}; expected true or false")
        self.history, self.debias, self.shrink = history, debias, shrink

    def reports(self, ep: Episode) -> Tensor:
        """``y [B, D, J]`` complex, what this policy reads of Set B."""
        return complex_reports(ep, self.name, self.history, self.debias, self.shrink)

    def strongest(self, ep: Episode, y: Tensor, k: int = 4) -> tuple[Tensor, Tensor]:
        """The strongest Set B beam ``[B, D]`` (narrow id) and the ``k`` strongest ``[B, D, k]``: from one
        report, ``best-of-set-b``'s pick (ties broken as it does); from a history, by the averaged power."""
        if (ep.timeline.history if self.history is None else self.history) == 1:
            return _best_of(ep, ep.set_b, k)
        ranking = ep.set_b[(y.abs() ** 2).topk(min(k, y.shape[-1]), dim=-1).indices]  # [B, D, k]
        return ranking[..., 0], ranking


def quantize_amplitude(a: Tensor) -> Tensor:
    """Nearest (in linear amplitude) value of the Type II wideband amplitude set: ``[...]`` → ``[...]``.

    ``a`` is the amplitude relative to the strongest beam (in [0, 1]; larger values map to 1).
    """
    levels = torch.tensor(TYPE2_AMPLITUDES, dtype=a.dtype, device=a.device)  # [8]
    return levels[(a.unsqueeze(-1) - levels).abs().argmin(-1)]


def quantize_phase(theta: Tensor, bits: int) -> Tensor:
    """Nearest ``2^bits``-PSK phase (rad, in ``[0, 2π)``) of ``theta [...]`` (rad)."""
    step = 2 * math.pi / 2 ** bits
    return torch.remainder(torch.round(theta / step), 2 ** bits) * step


def _set_b_beams(ep: Episode) -> Tensor:
    """Set B's beams ``[J, N]`` in the episode's complex dtype."""
    return ep.codebook.beams.to(ep.cov_use.dtype)[ep.set_b]


def _unit(w: Tensor) -> Tensor:
    """``w [..., N]`` scaled to unit norm (a zero vector stays zero; callers never make one)."""
    return w / torch.linalg.vector_norm(w, dim=-1, keepdim=True).clamp_min(1e-30)


def _positions(ep: Episode, ids: Tensor) -> Tensor:
    """Positions in Set B of narrow-beam ids ``[...]`` that belong to Set B."""
    inv = torch.full((ep.num_beams,), -1, dtype=torch.long, device=ep.device)
    inv[ep.set_b] = torch.arange(ep.set_b.numel(), device=ep.device)
    return inv[ids]


def orthogonal_groups(ep: Episode, policy: str) -> Tensor:
    """``[J, J]`` bool: row ``i`` marks the Set B beams orthogonal to beam ``i`` (and ``i`` itself).

    For an ``O``-times oversampled DFT codebook, beams ``m`` and ``m'`` are orthogonal iff
    ``m ≡ m' (mod O)`` on each grid axis, so each row is the orthogonal group (the rotation of
    TS 38.214) of its beam within Set B. Checked: each group must be mutually orthogonal.

    Raises:
        ValueError: when some row is not a set of mutually orthogonal beams (e.g. a user codebook).
    """
    v = _set_b_beams(ep)  # [J, N]
    orth = (v.conj() @ v.T).abs() < _ORTH_TOL  # [J, J] |v_iᴴ v_j| ~ 0
    eye = torch.eye(v.shape[0], dtype=torch.bool, device=v.device)
    group = orth | eye  # [J, J]
    pair = group.unsqueeze(-1) & group.unsqueeze(-2) & ~eye  # [J, J, J]: j, k both in group i, j != k
    if bool((pair & ~orth).any()):
        raise ValueError(f"policy {policy!r}: Set B's beams do not fall into orthogonal groups; expected a DFT "
                         "codebook (scenario [codebook]) whose Set B holds orthogonal beams")
    return group


@register("type1")
class TypeI(Policy):
    """NR Type I, single panel, one polarisation: the best reported DFT beam of Set B.

    With one polarisation Type I's co-phasing is a common phase, so the precoder is one DFT beam
    and the decision is ``best-of-set-b``'s. Reads RSRP only (no phase). Report: the beam index,
    counted as NR's field ``i_1`` that addresses the whole oversampled grid (Set A):
    ``⌈log2 M_h⌉ + ⌈log2 M_v⌉`` bits (``⌈log2 M⌉`` for a ULA), co-phase ``i_2``: 0 bits.
    """

    def report_bits(self, ep: Episode) -> int:
        grid = ep.codebook.grid or (1, ep.num_beams)
        return sum(math.ceil(math.log2(g)) for g in grid)

    def decide(self, ep: Episode) -> Decision:
        index, ranking = _best_of(ep, ep.set_b)
        return _pick(ep, index, float(ep.set_b.numel()), ranking)


@register("type1-oversampled")
class TypeIOversampled(ReportPolicy):
    """NR Type I from the channel the complex Set B reports give: the best beam of all of Set A.

    A UE that measures non-precoded (per-port) CSI-RS knows the channel and reports the best beam of
    the oversampled grid. Here that channel is ``ĥ``, the minimum-norm least-squares solution of
    ``y_b = ĥᵀ v_b`` over Set B (``h`` itself when Set B is an orthogonal basis and the reports are
    exact); the beam reported is ``argmax_m |ĥᵀ v_m|²`` over Set A. Needs phase reports.
    Report bits: as ``type1``.
    """

    report_bits = TypeI.report_bits

    def decide(self, ep: Episode) -> Decision:
        gains = _set_a_gains(ep, self.reports(ep))  # [B, D, M] |ĥᵀ v_m|²
        ranking = gains.topk(min(4, ep.num_beams), dim=-1).indices  # [B, D, 4]
        return _pick(ep, ranking[..., 0], float(ep.set_b.numel()), ranking)


@register("type1-oversampled-avg")
class TypeIOversampledAvg(Policy):
    """:class:`TypeIOversampled` over the report history: each report's reconstructed channel gives every beam
    of Set A a gain ``|ĥ(t)ᵀ v_m|²``, and the beam of the largest EWMA of those gains (in linear power, weights
    ``alpha (1 - alpha)^age``, :func:`~.base.aggregate_db`) over the last ``history`` reports is picked.

    What the contextual selector's ``csi_keys`` read (the same reconstructed gains of the same reports), with a
    fixed smoothing rule instead of a learned one: the fair classical baseline for it. Each report's own phases
    make its channel (phases of different reports are not mixed), so no phase coherence across reports is needed.

    Args:
        history: reports read (None = the measurement ``history``).
        alpha: EWMA weight of the latest report (1 = :class:`TypeIOversampled`).
    """

    report_bits = TypeI.report_bits

    def __init__(self, history: int | None = None, alpha: float = 0.5) -> None:
        check_history(self.name, history, "ewma", alpha)
        self.history, self.alpha = history, alpha

    def decide(self, ep: Episode) -> Decision:
        _check_phase(ep, self.name)
        length = history_length(self.name, ep, self.history)
        real = ep.cov_use.real.dtype
        rsrp, phase = ep.history(length)  # [B, D, L, K]
        amp = torch.pow(10.0, rsrp[..., ep.set_b].to(real) / 20)  # [B, D, L, J]
        y = torch.polar(amp, phase[..., ep.set_b].to(real)).to(ep.cov_use.dtype)  # [B, D, L, J]
        gains = _set_a_gains(ep, y)  # [B, D, L, M] per report
        agg = aggregate_db(10 * torch.log10(gains.clamp_min(1e-30)), "ewma", self.alpha)  # [B, D, M]
        ranking = agg.topk(min(4, ep.num_beams), dim=-1).indices  # [B, D, 4]
        return _pick(ep, ranking[..., 0], float(ep.set_b.numel()), ranking)


def _set_a_gains(ep: Episode, y: Tensor) -> Tensor:
    """Every beam's gain ``|ĥᵀ v_m|²`` ``[..., M]`` on the channel ``ĥ`` of the complex Set B reports ``y [..., J]``:
    the minimum-norm least-squares solution of ``y_b = ĥᵀ v_b`` (``h`` itself for an orthogonal Set B and exact
    reports)."""
    h_hat = y @ torch.linalg.pinv(_set_b_beams(ep).T)  # [..., N]: ĥᵀ V_Bᵀ = yᵀ, min-norm
    return (h_hat @ ep.codebook.beams.to(y.dtype).T).abs() ** 2  # [..., M]


def _combination(ep: Episode, coef: Tensor, members: Tensor, index: Tensor, ranking: Tensor) -> Decision:
    """Unit-norm ``Σ_b coef_b v_b`` over Set B: ``coef [B, D, J]`` complex (0 off ``members [B, D, J]``).

    ``weights`` are each beam's power share ``|coef_b|² / Σ |coef|²`` (exact for orthogonal beams),
    ``index`` the strongest beam. A decision whose coefficients are all (numerically) zero — every
    report shrunk to 0 at a low measurement SNR — falls back to the strongest beam alone.
    """
    power = (coef.abs() ** 2) * members  # [B, D, J]
    dead = power.sum(-1, keepdim=True) <= 1e-20  # [B, D, 1] nothing left to combine
    if bool(dead.any()):
        lead = ep.set_b == index.unsqueeze(-1)  # [B, D, J] the strongest beam's position in Set B
        coef = torch.where(dead, lead.to(coef.dtype), coef)
        members = members | (dead & lead)
        power = (coef.abs() ** 2) * members
    w = _unit(coef @ _set_b_beams(ep))  # [B, D, N]
    share = power / power.sum(-1, keepdim=True).clamp_min(1e-30)  # [B, D, J]
    weights = torch.zeros(*share.shape[:2], ep.num_beams, dtype=share.dtype, device=share.device)  # [B, D, M]
    weights[..., ep.set_b] = share
    measured = torch.full(index.shape, float(ep.set_b.numel()), device=index.device)
    return Decision(beams=w, index=index, measured=measured, ranking=ranking, weights=weights.float())


@register("type2")
class TypeII(ReportPolicy):
    """NR Type II (TS 38.214 §5.2.2.2.3), one polarisation, wideband amplitudes: ``L`` combined beams.

    Per decision: the strongest reported Set B beam ``b*`` (``best-of-set-b``'s pick), its orthogonal
    group in Set B (:func:`orthogonal_groups`), the ``L`` strongest beams of that group (``b*``
    included), and coefficients relative to ``b*``:
    ``c_b = (a_b / a_b*) e^{-j(φ_b − φ_b*)}`` (``c_b* = 1``), with the amplitude quantised to the
    nearest value of :data:`TYPE2_AMPLITUDES` (linear amplitude) and the phase to the nearest
    ``2^phase_bits``-PSK point. The beam is ``Σ_b c_b v_b`` normalised to unit power; with
    ``L = |group|`` and no quantisation it is ``mrt-reports`` up to a common phase.

    Args:
        beams: ``L`` (NR: 2, 3 or 4); more than the group holds is refused.
        phase_bits: 2 (QPSK), 3 (8PSK) or None (unquantised phases).
        amplitude: quantise amplitudes to the 3-bit set (False: unquantised).
        history, debias: how the reports are read (:class:`ReportPolicy`).
    """

    def __init__(self, beams: int = 2, phase_bits: int | None = 2, amplitude: bool = True,
                 history: int | None = 1, debias: bool = False, shrink: bool = False) -> None:
        super().__init__(history, debias, shrink)
        where = f"policy {self.name!r}"
        if isinstance(beams, bool) or not isinstance(beams, int) or beams < 1:
            raise ValueError(f"{where}: argument 'beams' = {beams!r}; expected an integer L >= 1")
        if phase_bits is not None and (isinstance(phase_bits, bool) or not isinstance(phase_bits, int)
                                       or phase_bits < 1):
            raise ValueError(f"{where}: argument 'phase_bits' = {phase_bits!r}; expected 2 (QPSK), 3 (8PSK) "
                             "or none (unquantised)")
        if not isinstance(amplitude, bool):
            raise ValueError(f"{where}: argument 'amplitude' = {amplitude!r}; expected true or false")
        self.beams, self.phase_bits, self.amplitude = beams, phase_bits, amplitude

    def _groups(self, ep: Episode) -> Tensor:
        group = orthogonal_groups(ep, self.name)  # [J, J]
        smallest = int(group.sum(-1).min())
        if self.beams > smallest:
            raise ValueError(f"policy {self.name!r}: argument 'beams' = {self.beams} but an orthogonal group of "
                             f"Set B has only {smallest} beams; expected L <= {smallest}")
        return group

    def report_bits(self, ep: Episode) -> int | None:
        """Bits of one report (module docstring); None when amplitudes or phases are unquantised."""
        if self.phase_bits is None or not self.amplitude:
            return None
        group = self._groups(ep)
        num_groups = torch.unique(group, dim=0).shape[0]
        size, ell = int(group[0].sum()), self.beams
        return (math.ceil(math.log2(num_groups)) + math.ceil(math.log2(math.comb(size, ell)))
                + math.ceil(math.log2(ell)) + (3 + self.phase_bits) * (ell - 1))

    def report_values(self, ep: Episode) -> int:
        """Complex coefficients per report (the strongest beam's is 1 and not sent): ``L − 1``."""
        return self.beams - 1

    def coefficients(self, ep: Episode) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``coef [B, D, J]`` (0 off the chosen beams), chosen ``[B, D, J]`` bool, strongest beam id ``[B, D]``
        and the ranking ``[B, D, min(4, L)]`` (chosen beams by reported power)."""
        y = self.reports(ep)  # [B, D, J]
        group = self._groups(ep)  # [J, J]
        lead_id, _ = self.strongest(ep, y)  # [B, D] narrow id of the strongest beam
        lead = _positions(ep, lead_id)  # [B, D] its position in Set B
        power = y.abs() ** 2  # [B, D, J]
        score = power.masked_fill(~group[lead], -1.0)  # [B, D, J] off-group beams never chosen
        score = score.scatter(-1, lead.unsqueeze(-1), math.inf)  # the strongest beam is always one of the L
        top = score.topk(self.beams, dim=-1).indices  # [B, D, L]
        chosen = torch.zeros_like(power, dtype=torch.bool).scatter(-1, top, True)  # [B, D, J]
        y_lead = y.gather(-1, lead.unsqueeze(-1))  # [B, D, 1]
        rel = y.conj() / y_lead.conj()  # [B, D, J] c_b = (a_b/a_b*) e^{-j(φ_b − φ_b*)}
        amp, theta = rel.abs(), torch.angle(rel)
        if self.amplitude:
            amp = quantize_amplitude(amp.clamp_max(1.0))
        if self.phase_bits is not None:
            theta = quantize_phase(theta, self.phase_bits)
        coef = torch.polar(amp, theta) * chosen  # [B, D, J]
        ranking = ep.set_b[top[..., : min(4, self.beams)]]  # [B, D, <=4] (topk is sorted, strongest first)
        return coef, chosen, lead_id, ranking

    def decide(self, ep: Episode) -> Decision:
        coef, chosen, lead_id, ranking = self.coefficients(ep)
        return _combination(ep, coef, chosen, lead_id, ranking)


@register("type2-l2-qpsk")
class TypeIIL2QPSK(TypeII):
    """NR Type II with ``L = 2`` beams, 3-bit amplitudes, QPSK phases."""

    def __init__(self) -> None:
        super().__init__(beams=2, phase_bits=2)


@register("type2-l2-8psk")
class TypeIIL28PSK(TypeII):
    """NR Type II with ``L = 2`` beams, 3-bit amplitudes, 8PSK phases."""

    def __init__(self) -> None:
        super().__init__(beams=2, phase_bits=3)


@register("type2-l4-qpsk")
class TypeIIL4QPSK(TypeII):
    """NR Type II with ``L = 4`` beams, 3-bit amplitudes, QPSK phases."""

    def __init__(self) -> None:
        super().__init__(beams=4, phase_bits=2)


@register("type2-l4-8psk")
class TypeIIL48PSK(TypeII):
    """NR Type II with ``L = 4`` beams, 3-bit amplitudes, 8PSK phases."""

    def __init__(self) -> None:
        super().__init__(beams=4, phase_bits=3)


@register("type2-l4-8psk-avg")
class TypeIIL48PSKAvg(TypeII):
    """``type2-l4-8psk`` on the selector's report history: amplitudes from the mean RSRP of the whole
    measurement history, less the noise power (phases: the latest)."""

    def __init__(self) -> None:
        super().__init__(beams=4, phase_bits=3, history=None, debias=True)


@register("mrt-reports")
class MRTFromReports(ReportPolicy):
    """MRT from the latest reports: every Set B beam co-phased with its reported amplitude and phase.

    ``w ∝ Σ_b a_b e^{-jφ_b} v_b = Σ_b conj(y_b) v_b`` (unit norm): for an orthonormal Set B and exact
    reports, ``conj(h)`` projected on Set B's span — MRT on the measured subspace (for a Set B of
    non-orthogonal beams it is the matched filter ``V_Bᴴ``-weighted sum instead). Unquantised:
    ``report_bits`` is None; the report is ``|Set B|`` complex values (``report_values``).
    """

    def report_bits(self, ep: Episode) -> None:
        return None

    def report_values(self, ep: Episode) -> int:
        return int(ep.set_b.numel())

    def decide(self, ep: Episode) -> Decision:
        y = self.reports(ep)  # [B, D, J]
        index, ranking = self.strongest(ep, y)
        return _combination(ep, y.conj(), torch.ones_like(y, dtype=torch.bool), index, ranking)


@register("mrt-reports-avg")
class MRTFromReportsAvg(MRTFromReports):
    """``mrt-reports`` on the selector's report history: amplitudes from the mean RSRP of the whole
    measurement history, less the noise power (phases: the latest)."""

    def __init__(self) -> None:
        super().__init__(history=None, debias=True)


@register("mrt-reports-mmse")
class MRTFromReportsMMSE(MRTFromReports):
    """``mrt-reports-avg`` with each coefficient shrunk to its linear MMSE estimate (beams near the
    noise weigh less)."""

    def __init__(self) -> None:
        super().__init__(history=None, debias=True, shrink=True)
