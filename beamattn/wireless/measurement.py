"""Beam-management timeline, beam measurements, and what each decision earns.

Timeline (all in channel samples of ``dt`` seconds):

- decision ``d`` measures beams at step ``t_d = t_0 + d·P`` (``P`` = period);
- its report is available after the reporting delay ``D``;
- the beam it picks is used over ``[t_d + D, t_d + D + P)``: its SNR is the
  received SNR averaged over that use interval and the band — what RSRP
  measures — and the genie best beam maximises that same average.

``t_0`` leaves room for ``history`` earlier measurements, so that decision 0
already has a full history.

Measurement (L1-RSRP-like): each measured beam ``v`` gets ``R`` samples
``y_r = sqrt(ρ_m) hᵀ v + n_r`` with ``n_r ~ CN(0, 1)``, taken at ``t_d`` (on ``R``
subcarriers spread over the band when wideband). The report is
``10 log10(mean_r |y_r|² / ρ_m)`` dB — the beam gain ``|hᵀv|²`` plus noise,
optionally quantised (1 dB steps like L1-RSRP) — and, with ``with_phase``
(CSI-RS-like), the phase of ``mean_r y_r``. ``ρ_m`` (``snr_db``) is the
measurement SNR of a unit-gain beam: with ``E|h_n|² = 1`` a random beam has
gain 1 on average, so ``snr_db`` is the average per-beam measurement SNR.

CSI-RS burst (``burst = K > 1``, with ``with_phase``): each report also carries the phases of ``K``
CSI-RS instances ``burst_spacing`` apart, the last one at the report instant (as 3GPP Rel-18 Doppler-domain
CSI prediction measures several instances a few ms apart in each period), so a phase slope (Doppler) can be
estimated without the aliasing of one phase per period. Each extra instance has its own noise (drawn from a
separate stream: the ordinary reports keep their noise); the overhead is ``K`` phases per measured beam and
report.

Common random numbers: the measurement noise of every (drop, decision, beam)
is drawn once from the seed; every policy that measures a beam sees the same
noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .channels.base import ChannelSample
from .codebooks import Codebook
from .limits import check_range

__all__ = ["MeasurementConfig", "Timeline", "Episode", "make_timeline", "build_episode", "set_b_indices", "mix_seed"]


@dataclass(frozen=True)
class MeasurementConfig:
    """How beams are measured and reported.

    Args:
        period: beam-management period (s): one decision per period, used for one period; in [1e-6, 10] s.
        delay: reporting delay (s) between the measurement and the first use of the decision; in [0, 10] s.
        snr_db: measurement SNR of a unit-gain beam (dB), per sample; in [-100, 100] dB.
        samples: resource elements averaged per report, in [1, 4096].
        quantization_db: report step in dB (1.0 like L1-RSRP); 0 for no quantisation; in [0, 30] dB.
        with_phase: also report the phase of each measured beam (CSI-RS-like).
        set_b: number of beams in Set B, the measured subset of Set A (0 = all of Set A).
        history: number of past measurements a decision may use, in [1, 1024].
        burst: CSI-RS instances per report whose phases are reported (1 = the report's own), in [1, 64]; needs
            ``with_phase`` when > 1.
        burst_spacing: time between the instances of a burst (s), in [1e-6, 1] s; ``burst · spacing`` must fit
            in one period.

    The ranges are those of :mod:`beamattn.wireless.limits` (physically meaningful ones).
    """

    period: float = 0.02
    delay: float = 0.005
    snr_db: float = 0.0
    samples: int = 1
    quantization_db: float = 1.0
    with_phase: bool = False
    set_b: int = 0
    history: int = 4
    burst: int = 1
    burst_spacing: float = 0.0025

    def __post_init__(self) -> None:
        # Physically meaningful ranges (beamattn.wireless.limits): e.g. snr_db in [-100, 100] dB keeps
        # 10^(snr_db / 10) and its square root exact in float32.
        for name in ("period", "delay", "snr_db", "samples", "quantization_db", "history", "burst", "burst_spacing"):
            check_range("measurement", name, getattr(self, name))
        if self.burst > 1 and not self.with_phase:
            raise ValueError(f"measurement: field 'burst' = {self.burst} reports phases; expected with_phase = true "
                             "(or burst = 1)")
        if self.burst > 1 and (self.burst - 1) * self.burst_spacing >= self.period:
            raise ValueError(f"measurement: field 'burst_spacing' = {self.burst_spacing} s x (burst - 1) = "
                             f"{(self.burst - 1) * self.burst_spacing:g} s; expected less than the period "
                             f"{self.period} s")
        if isinstance(self.set_b, bool) or not isinstance(self.set_b, int) or self.set_b < 0:
            raise ValueError(f"measurement: field 'set_b' = {self.set_b!r}; expected an integer >= 0 (0 = all beams)")
        if not isinstance(self.with_phase, bool):
            raise ValueError(f"measurement: field 'with_phase' = {self.with_phase!r}; expected true or false")


@dataclass(frozen=True)
class Timeline:
    """Sample indices of a drop's decisions. All tensors are ``[D]`` long."""

    measure: Tensor  # step at which decision d measures
    use_start: Tensor  # first step its beam is used
    use_len: int  # steps of use (one period)
    period_steps: int
    delay_steps: int
    history: int = 1  # reports a decision may read (its own and history - 1 earlier ones)
    burst_steps: tuple[int, ...] = (0,)  # offsets (steps, <= 0) of a report's CSI-RS burst instances, last = 0

    @property
    def num_decisions(self) -> int:
        return int(self.measure.numel())

    @property
    def reports(self) -> Tensor:
        """Steps of every measurement: the history of decision 0, then one per decision ``[D + H - 1]``."""
        first = self.measure[0] - (self.history - 1) * self.period_steps
        return torch.arange(int(first), int(self.measure[-1]) + 1, self.period_steps)


def make_timeline(num_steps: int, dt: float, cfg: MeasurementConfig) -> Timeline:
    """Decisions that fit a drop of ``num_steps`` samples of ``dt`` seconds."""
    period = max(1, round(cfg.period / dt))
    delay = round(cfg.delay / dt)
    spacing = max(1, round(cfg.burst_spacing / dt)) if cfg.burst > 1 else 0
    burst = tuple(-(cfg.burst - 1 - r) * spacing for r in range(cfg.burst))  # e.g. (-4, -2, 0)
    if cfg.burst > 1 and -burst[0] >= period:
        raise ValueError(f"measurement: a burst of {cfg.burst} instances {spacing} samples apart does not fit in "
                         f"a period of {period} samples of {dt:.3g} s; expected a smaller 'burst_spacing'")
    t0 = (cfg.history - 1) * period - burst[0]  # room for the history and the first report's burst
    last = num_steps - delay - period  # latest measure step whose use interval fits
    if last < t0:
        raise ValueError(
            f"measurement: a drop of {num_steps} samples ({num_steps * dt:.3g} s) is too short for history "
            f"{cfg.history} x period {cfg.period} s + delay {cfg.delay} s; expected a longer 'duration'")
    measure = torch.arange(t0, last + 1, period)
    return Timeline(measure=measure, use_start=measure + delay, use_len=period, period_steps=period, delay_steps=delay,
                    history=cfg.history, burst_steps=burst)


def set_b_indices(num_beams: int, size: int, device: torch.device | str = "cpu",
                  grid: tuple[int, int] | None = None) -> Tensor:
    """Set B: ``size`` beams spread evenly over the codebook (all beams when size is 0), ``[Mb]`` long.

    For a 2-D grid of beams ``grid = (M_v, M_h)`` (beam ``m_v·M_h + m_h``), Set B is a sub-grid
    ``b_v x b_h = size`` spread evenly over both axes, with ``b_v / b_h`` as close as the divisors of
    ``size`` allow to ``M_v / M_h`` (e.g. an 8 x 16 grid, size 32: every 2nd row and column, the
    orthogonal DFT basis of a 2x oversampled codebook); evenly spaced indices along ``m`` would take
    every row and only every few columns.
    """
    if size == 0 or size == num_beams:
        return torch.arange(num_beams, device=device)
    if size > num_beams:
        raise ValueError(f"measurement: field 'set_b' = {size} is larger than Set A ({num_beams} beams); "
                         f"expected 0 <= set_b <= {num_beams}")
    if grid is not None and grid[0] > 1:
        m_v, m_h = grid
        fits = [b for b in range(1, m_v + 1) if size % b == 0 and size // b <= m_h]
        if fits:
            b_v = min(fits, key=lambda b: abs(math.log(b * b * m_h / (size * m_v))))  # b_v/b_h ~ M_v/M_h
            rows = torch.div(torch.arange(b_v, device=device) * m_v, b_v, rounding_mode="floor")  # [b_v]
            cols = torch.div(torch.arange(size // b_v, device=device) * m_h, size // b_v, rounding_mode="floor")
            return (rows[:, None] * m_h + cols[None, :]).reshape(-1)  # [size], ascending
    return torch.div(torch.arange(size, device=device) * num_beams, size, rounding_mode="floor")


@dataclass
class Episode:
    """Everything policies and metrics need for a batch of drops, ``B`` drops × ``D`` decisions.

    Measured quantities (what a real system sees), for the ``K = M + W`` beams of the
    narrow codebook (ids ``0..M-1``) followed by the wide codebook (ids ``M..M+W-1``),
    measured at every report instant *if a policy asks for them* — which beams a policy
    may read is its own business (overhead is counted by the policy):

    - ``reports_db [B, D + H - 1, K]`` every reported RSRP (dB), noisy and quantised: the
      ``H - 1`` reports before decision 0, then one per decision (``H`` = config.history);
    - ``report_phase [B, D + H - 1, K]`` reported phases (rad) or None;
    - ``rsrp_db`` / ``phase`` ``[B, D, K]``: the latest report of each decision;
    - ``burst_phase [B, D + H - 1, R, K]`` the phases of each report's CSI-RS burst (``R`` =
      config.burst instances, the last one at the report instant), or None when ``burst = 1``.

    Truth (genie, MRT, metrics):

    - ``gain_use [B, D, M]`` each narrow beam's gain |hᵀv|² averaged over its use interval and the band;
    - ``cov_use [B, D, N, N]`` ``E[conj(h) hᵀ]`` over the use interval and band: the gain of any beam
      ``w`` is ``wᴴ R w``;
    - ``mrt_gain [B, D]`` = ``trace(R)`` = mean ``||h||²``, the per-instant MRT bound.

    Devices: every tensor above, ``set_b`` and the codebooks' beams live on the channel's device;
    the ``timeline`` indices and ``drop_ids`` are host-side bookkeeping and stay on the CPU.
    """

    codebook: Codebook
    wide: Codebook | None
    set_b: Tensor  # [Mb] indices of Set B in the narrow codebook
    timeline: Timeline
    config: MeasurementConfig
    reports_db: Tensor  # [B, D + H - 1, K]
    report_phase: Tensor | None  # [B, D + H - 1, K]
    gain_use: Tensor  # [B, D, M]
    cov_use: Tensor  # [B, D, N, N]
    mrt_gain: Tensor  # [B, D]
    snr_db: float  # transmit SNR ρ (dB) of the data link
    dt: float
    drop_ids: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # [B] global drop ids, CPU
    burst_phase: Tensor | None = None  # [B, D + H - 1, R, K] phases of each report's CSI-RS burst (R = burst > 1)

    @property
    def num_drops(self) -> int:
        return int(self.gain_use.shape[0])

    @property
    def num_decisions(self) -> int:
        return int(self.gain_use.shape[1])

    @property
    def num_beams(self) -> int:
        return self.codebook.num_beams

    @property
    def device(self) -> torch.device:
        """Where the episode's tensors live (the channel's device)."""
        return self.gain_use.device

    @property
    def rsrp_db(self) -> Tensor:
        """The latest report of each decision, ``[B, D, K]`` (dB)."""
        return self.reports_db[:, self.timeline.history - 1:]

    @property
    def phase(self) -> Tensor | None:
        """The latest reported phase of each decision, ``[B, D, K]`` (rad), or None."""
        return None if self.report_phase is None else self.report_phase[:, self.timeline.history - 1:]

    @property
    def burst(self) -> Tensor | None:
        """The CSI-RS burst phases of each decision's latest report, ``[B, D, R, K]`` (rad), or None."""
        return None if self.burst_phase is None else self.burst_phase[:, self.timeline.history - 1:]

    @property
    def burst_lead(self) -> float:
        """From a burst's last instance to the middle of the use interval, in burst spacings (None-safe: 0 when
        there is no burst)."""
        tl = self.timeline
        spacing = tl.burst_steps[-1] - tl.burst_steps[-2] if len(tl.burst_steps) > 1 else 0
        return 0.0 if spacing == 0 else (tl.delay_steps + (tl.use_len - 1) / 2) / spacing

    def gain(self, w: Tensor) -> Tensor:
        """Use-interval gain ``wᴴ R w`` of beams ``w [B, D, N]`` (or ``[B, D, J, N]``) → ``[B, D]`` (``[B, D, J]``)."""
        if w.dim() == 3:
            return torch.einsum("bdm,bdmn,bdn->bd", w.conj(), self.cov_use, w).real
        return torch.einsum("bdjm,bdmn,bdjn->bdj", w.conj(), self.cov_use, w).real

    def history(self, length: int) -> tuple[Tensor, Tensor | None]:
        """The last ``length`` reports of each decision, its own included: ``[B, D, length, K]``, oldest first."""
        h = self.timeline.history
        if not 1 <= length <= h:
            raise ValueError(f"episode: history length {length} is not available; expected 1 <= length <= "
                             f"measurement 'history' = {h}")
        dev = self.reports_db.device
        idx = torch.arange(self.num_decisions, device=dev).unsqueeze(-1) + torch.arange(h - length, h,
                                                                                       device=dev)  # [D, L]
        rsrp = self.reports_db[:, idx]  # [B, D, L, K]
        phase = None if self.report_phase is None else self.report_phase[:, idx]
        return rsrp, phase


def _sample_channel(h: Tensor, steps: Tensor, samples: int) -> Tensor:
    """Channels a measurement sees: ``[B, D, R, N]`` (R subcarriers spread over the band when wideband)."""
    h_t = h[:, steps]  # [B, D, N] or [B, D, F, N]
    if h_t.dim() == 3:
        return h_t.unsqueeze(2).expand(-1, -1, samples, -1)
    f = h_t.shape[2]
    sc = torch.div(torch.arange(samples, device=h.device) * f + f // 2, samples, rounding_mode="floor").clamp_max(f - 1)
    return h_t[:, :, sc]


def build_episode(sample: ChannelSample, codebook: Codebook, wide: Codebook | None, cfg: MeasurementConfig,
                  snr_db: float, seed: int, drop_offset: int = 0) -> Episode:
    """Measure every beam at every decision and compute the use-interval truth.

    ``seed`` and ``drop_offset`` fix the measurement noise per drop, so a drop's noise does
    not depend on how drops are batched.

    Everything is computed on the channel's device (``sample.h.device``); the codebooks are moved
    there. The noise is drawn on the CPU (per-drop generators) and moved once, so the same seed
    gives the same noise on every device.
    """
    h = sample.h  # [B, T, N] or [B, T, F, N]
    dev = h.device
    b, t = h.shape[:2]
    # One read of two numbers per chunk (the sample interval fixes the timeline's integer steps).
    dt = float(sample.times[1] - sample.times[0]) if sample.times.numel() > 1 else cfg.period
    tl = make_timeline(t, dt, cfg)
    codebook = codebook.to(dev)
    wide = None if wide is None else wide.to(dev)
    beams = codebook.beams if wide is None else torch.cat([codebook.beams, wide.beams])  # [K, N]
    beams = beams.to(h.dtype)
    k = beams.shape[0]
    steps = tl.reports.to(dev)  # [D + H - 1] every measurement instant (the timeline itself stays on the CPU)
    r_count = steps.numel()

    # Measurements: y = sqrt(ρ_m) hᵀv + n over R samples.
    rho_m = 10 ** (cfg.snr_db / 10)
    # Drawn in complex64 whatever the channel's precision, so double-precision runs see the same noise.
    noise = torch.empty(b, r_count, cfg.samples, k, dtype=torch.complex64)
    for i in range(b):  # per-drop generator: a drop's noise is independent of the batching
        g = torch.Generator().manual_seed(mix_seed(seed, drop_offset + i))
        noise[i] = torch.randn(r_count, cfg.samples, k, generator=g, dtype=torch.complex64)  # CN(0, 1)
    h_m = _sample_channel(h, steps, cfg.samples)  # [B, D+H-1, R, N]
    y = math.sqrt(rho_m) * torch.matmul(h_m, beams.T) + noise.to(device=dev, dtype=h.dtype)  # [B, D+H-1, R, K]
    rsrp = (y.abs() ** 2).mean(2) / rho_m  # [B, D+H-1, K] linear, noise-biased like a real RSRP
    rsrp_db = 10 * torch.log10(rsrp.clamp_min(1e-12))
    if cfg.quantization_db > 0:
        rsrp_db = torch.round(rsrp_db / cfg.quantization_db) * cfg.quantization_db
    phase = torch.angle(y.mean(2)) if cfg.with_phase else None  # [B, D+H-1, K]
    burst_phase = None
    if cfg.burst > 1:
        burst_phase = _burst_phases(h, steps, tl.burst_steps, beams, cfg, rho_m, seed, drop_offset, phase)

    # Truth over the use intervals: R = E[conj(h) hᵀ] over time (and band).
    use = (tl.use_start.unsqueeze(-1) + torch.arange(tl.use_len)).to(dev)  # [D, U]
    h_u = h[:, use]  # [B, D, U, N] or [B, D, U, F, N]
    if h_u.dim() == 5:
        h_u = h_u.flatten(2, 3)  # [B, D, U·F, N]
    n_avg = h_u.shape[2]
    cov = torch.matmul(h_u.conj().transpose(-2, -1), h_u) / n_avg  # [B, D, N, N]: (1/S) Σ conj(h) hᵀ
    narrow = codebook.beams.to(h.dtype)  # [M, N]
    gain_use = (torch.matmul(h_u, narrow.T).abs() ** 2).mean(2)  # [B, D, M]
    mrt = torch.diagonal(cov, dim1=-2, dim2=-1).real.sum(-1)  # [B, D]
    set_b = set_b_indices(codebook.num_beams, cfg.set_b, device=dev, grid=codebook.grid)
    return Episode(codebook=codebook, wide=wide, set_b=set_b, timeline=tl, config=cfg, reports_db=rsrp_db,
                   report_phase=phase, gain_use=gain_use, cov_use=cov, mrt_gain=mrt, snr_db=snr_db, dt=dt,
                   drop_ids=torch.arange(drop_offset, drop_offset + b), burst_phase=burst_phase)


_BURST_STREAM = 0x5EED_B0257  # the burst instances' noise: a stream apart from the reports' (theirs is unchanged)


def _burst_phases(h: Tensor, steps: Tensor, offsets: tuple[int, ...], beams: Tensor, cfg: MeasurementConfig,
                  rho_m: float, seed: int, drop_offset: int, latest: Tensor) -> Tensor:
    """Phases ``[B, D+H-1, R, K]`` of each report's burst: the ``R - 1`` earlier instances measured like a report
    (``R`` samples of noise each, their own stream), then the report's own phase ``latest [B, D+H-1, K]``."""
    b, r_count, k = h.shape[0], steps.numel(), beams.shape[0]
    extra = len(offsets) - 1
    noise = torch.empty(b, extra, r_count, cfg.samples, k, dtype=torch.complex64)
    for i in range(b):  # per-drop generators, as the reports' noise
        g = torch.Generator().manual_seed(mix_seed(seed ^ _BURST_STREAM, drop_offset + i))
        noise[i] = torch.randn(extra, r_count, cfg.samples, k, generator=g, dtype=torch.complex64)
    out = []
    for j, off in enumerate(offsets[:-1]):
        h_m = _sample_channel(h, steps + off, cfg.samples)  # [B, D+H-1, R, N]
        y = math.sqrt(rho_m) * torch.matmul(h_m, beams.T) + noise[:, j].to(device=h.device, dtype=h.dtype)
        out.append(torch.angle(y.mean(2)))  # [B, D+H-1, K]
    return torch.stack([*out, latest], dim=2)  # [B, D+H-1, R, K]


def mix_seed(seed: int, index: int) -> int:
    """A 63-bit seed for (seed, index), different streams for different drops (splitmix64)."""
    z = (seed * 0x9E3779B97F4A7C15 + index + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF
