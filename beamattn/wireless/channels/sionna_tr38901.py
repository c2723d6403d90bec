"""Sionna's 3GPP TR 38.901 channel models behind the :class:`ChannelBackend` interface.

Two back-ends, both returning a :class:`ChannelSample` (``h [B, T, N]`` or
``[B, T, F, N]``, ``y = hᵀ w x``, no conjugate):

- :class:`SionnaCDLChannel`: clustered delay line CDL-A … CDL-E (TR 38.901
  §7.7.1). CDL has no geometry: the cluster angles come from the tables (the
  same for every drop unless ``random_rotation_deg`` rotates them), and they
  are FIXED within one call — only the fast fading (Doppler of each ray at the
  UT's velocity) evolves over time. ``positions`` are *nominal*: a straight
  line at ``speed`` from a start at ``nominal_distance`` m in the direction of
  the model's 0° AoD (where the strongest cluster of every CDL profile departs).
  They are consistent with the velocity that drives the Doppler, but the
  channel's angles do not follow them.
- :class:`SionnaUrbanChannel`: UMi / UMa / RMa (TR 38.901 §7.5) with spatial
  consistency (§7.6.3). Each drop is one straight track; its ``T`` positions are
  passed as ``T`` UTs of ONE ``set_topology`` call sharing one
  ``spatial_consistency_track_ids`` value, so the large-scale parameters,
  LoS state, cluster delays/powers/angles drift continuously with position.

Time continuity along a UMi/UMa/RMa track (what we measured and what we do)
---------------------------------------------------------------------------
Sionna 2.2 keeps no random state between ``set_topology`` calls and does not
implement the mobility procedure of §7.6.3.2; each position is a separate UT
sampled at ``t = 0``, so its Doppler term is 1. The per-ray initial phases are
spatially consistent (§7.6.3.1), but on the correlation distance of the
scenario (UMi 12/15 m, UMa 40/50 m, RMa 50/60 m for LoS/NLoS), not on the
wavelength scale. Measured (UMi NLoS, 3.5 GHz, 8-element ULA, 32 tracks, steps
of 0.023 λ; |autocorrelation| of h over drops, times and antennas):

==========================  =======  =======  =======  =======
lag                          0.23 λ   0.47 λ   0.93 λ   1.87 λ
==========================  =======  =======  =======  =======
raw per-position snapshots    0.95     0.92     0.87     0.78
``time_continuous=True``      0.54     0.18     0.13     0.11
Sionna Doppler, one UT        0.58     0.16     0.07     0.10
Clarke |J0(2π d/λ)|           0.53     0.24     0.11     0.01
==========================  =======  =======  =======  =======

Raw snapshots miss the fast fading: only the LoS ray, whose phase
``exp(-j2π d_3D/λ)`` follows the position, rotates. With
``time_continuous=True`` (default) we therefore apply procedure A of §7.6.3.2
to the NLoS rays: the phase of ray (n, m) at position k is its spatially
consistent initial phase at the start of the track plus the accumulated
Doppler phase ``Σ_{j<k} 2π/λ · r̂_rx,n,m(j)ᵀ v Δt``, computed from the ray's
arrival direction at each position (which drifts along the track). Rays are
identified across positions by their delay-unsorted cluster index (Sionna
sorts clusters by delay per UT) and their ray slot. With ``time_continuous=False``
the output equals Sionna's own ``UMi(...)(1, fs)`` bit for bit.

Known limitations: (1) the exponential spatial correlation of §7.6.3.1 gives
rough (non-differentiable) cluster angles and powers, so consecutive positions
jitter slightly beyond the Doppler decorrelation: with 8 antennas and steps of
0.006 λ, 1 − ρ = 0.0037 between neighbours instead of 0.0003 for one antenna
(which follows J0); the effect vanishes against the Doppler decorrelation at
steps of ~0.1 λ. (2) A change of LoS state along a track swaps the cluster set
(a blockage-like jump). (3) The sub-cluster ray grouping of the two strongest
clusters is re-drawn when these clusters change. (4) Cost: every position is a
full UT (its own rays and coefficients) and the spatial-consistency matrices
are ``T × T`` per drop, so keep ``T`` to a few hundred positions per track; on
2 loaded CPU cores UMi gave ~400 snapshots/s against ~3,500 for CDL.

Sionna's path loss and shadow fading are disabled, so ``E|h_n|² = 1`` before
path loss (omni elements; the "38.901" element adds its directive gain, up to
8 dBi). ``normalize_per_drop=True`` divides each drop by the root of its mean
power over time, subcarriers and antennas instead.

Narrowband ``h`` is the sum of the path coefficients, i.e. the channel at the
carrier frequency (zero subcarrier offset). With ``num_subcarriers`` set,
``h[b, t, f, n] = Σ_p a_p exp(-j2π f_k τ_p)`` at the subcarrier offsets
``sionna.phy.channel.subcarrier_frequencies(F, scs)``: Sionna's
``cir_to_ofdm_channel(..., normalize=False)`` (checked equal in the tests),
computed as a matmul over paths; no normalisation, so the power matches the
narrowband channel.

Seeding: ``generate(seed=s)`` sets ``sionna.phy.config.seed = s`` (which also
reseeds torch's default generators: we save and restore their state so callers
are not affected) and draws the track geometry from a private
``torch.Generator`` seeded with ``s``. The same seed gives bit-identical output
on the same device and precision.

``import sionna.phy`` takes seconds: Sionna is imported lazily, inside the
constructors and ``generate``, never when this module is imported.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor

from ..arrays import AntennaArray
from ..limits import check_range
from .base import ChannelSample, check_channel

__all__ = ["SionnaCDLConfig", "SionnaCDLChannel", "SionnaUrbanConfig", "SionnaUrbanChannel", "sionna_bs_array"]

SPEED_OF_LIGHT = 299792458.0  # m/s, the value Sionna uses
_PATTERNS = ("omni", "38.901")
_PRECISIONS = ("single", "double")

# Per-scenario drop geometry (TR 38.901 Table 7.2-1 style): BS height, min and max BS-UT 2D distance [m].
_URBAN_DEFAULTS = {"umi": (10.0, 10.0, 100.0), "uma": (25.0, 35.0, 250.0), "rma": (35.0, 35.0, 500.0)}


# --------------------------------------------------------------------------------------------------------------------
# validation helpers: errors name the config, the field, the value and what was expected
# --------------------------------------------------------------------------------------------------------------------
def _fail(cls: str, name: str, value: Any, expected: str) -> None:
    raise ValueError(f"{cls}: field '{name}' = {value!r}; expected {expected}")


def _check_real(cls: str, name: str, value: Any, *, positive: bool = False, nonneg: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if ok and nonneg:
        ok = value >= 0
    if not ok:
        what = "a finite number" + (" > 0" if positive else " >= 0" if nonneg else "")
        _fail(cls, name, value, what)


def _check_int(cls: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(cls, name, value, f"an integer >= {minimum}")


def _check_choice(cls: str, name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        _fail(cls, name, value, "one of " + ", ".join(repr(c) for c in choices))


def _num_steps(duration: float, sample_interval: float) -> int:
    return max(1, int(round(duration / sample_interval)))


def _check_ranges(cls: str, cfg: Any, names: tuple[str, ...]) -> None:
    """Each field within its physically meaningful range (documented in :mod:`beamattn.wireless.limits`)."""
    for name in names:
        check_range(cls, name, getattr(cfg, name))


def _check_common(cls: str, cfg: Any) -> None:
    if not isinstance(cfg.array, AntennaArray):
        _fail(cls, "array", cfg.array, "a beamattn.wireless.arrays.AntennaArray")
    _check_ranges(cls, cfg, ("carrier_frequency", "speed", "duration", "sample_interval"))
    if cfg.sample_interval > cfg.duration:
        _fail(cls, "sample_interval", cfg.sample_interval, f"a value <= duration ({cfg.duration!r} s)")
    _check_choice(cls, "antenna_pattern", cfg.antenna_pattern, _PATTERNS)
    if cfg.num_subcarriers is not None:
        _check_int(cls, "num_subcarriers", cfg.num_subcarriers, 1)
        _check_ranges(cls, cfg, ("num_subcarriers",))
    _check_ranges(cls, cfg, ("subcarrier_spacing",))
    _check_choice(cls, "precision", cfg.precision, _PRECISIONS)
    if not isinstance(cfg.normalize_per_drop, bool):
        _fail(cls, "normalize_per_drop", cfg.normalize_per_drop, "a bool")


def _check_generate_args(num_drops: Any, seed: Any) -> None:
    if isinstance(num_drops, bool) or not isinstance(num_drops, int) or num_drops < 1:
        raise ValueError(f"generate: argument 'num_drops' = {num_drops!r}; expected an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"generate: argument 'seed' = {seed!r}; expected an integer in [0, 2**63)")


# --------------------------------------------------------------------------------------------------------------------
# shared machinery
# --------------------------------------------------------------------------------------------------------------------
def _device_str(device: torch.device | str) -> str:
    """Sionna keys its generators by strings such as 'cpu' and 'cuda:0'."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return str(dev)


@contextmanager
def _sionna_seed(seed: int) -> Iterator[None]:
    """Seed Sionna (``config.seed``) without leaving torch's global generators reseeded."""
    import sionna.phy

    cpu_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    sionna.phy.config.seed = seed
    try:
        yield
    finally:
        torch.random.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def sionna_bs_array(array: AntennaArray, carrier_frequency: float, antenna_pattern: str = "omni",
                    precision: str = "single", device: str | None = None):
    """Sionna ``tr38901.AntennaArray`` with the geometry (and element order) of our ``array``.

    Single polarization "V"; spacings in wavelengths as in ``array``.
    """
    from sionna.phy.channel.tr38901 import AntennaArray as SionnaArray

    return SionnaArray(num_rows=array.num_rows, num_cols=array.num_cols, polarization="single",
                       polarization_type="V", antenna_pattern=antenna_pattern, carrier_frequency=carrier_frequency,
                       vertical_spacing=array.spacing_v, horizontal_spacing=array.spacing_h,
                       precision=precision, device=device)


def _ut_antenna(carrier_frequency: float, precision: str, device: str):
    from sionna.phy.channel.tr38901 import AntennaArray as SionnaArray

    return SionnaArray(num_rows=1, num_cols=1, polarization="single", polarization_type="V", antenna_pattern="omni",
                       carrier_frequency=carrier_frequency, precision=precision, device=device)


def _finish(cfg: Any, a: Tensor, tau: Tensor) -> tuple[Tensor, Tensor | None]:
    """Path coefficients ``a [B, T, N, P]`` and delays ``tau [B, T or 1, P]`` -> ``h`` and the subcarrier offsets."""
    from sionna.phy.channel import subcarrier_frequencies

    if cfg.num_subcarriers is None:
        h = a.sum(dim=-1)  # [B, T, N] channel at the carrier
        freqs = None
    else:
        freqs = subcarrier_frequencies(cfg.num_subcarriers, cfg.subcarrier_spacing, precision=cfg.precision,
                                       device=str(a.device))  # [F]
        # The same sum as sionna.phy.channel.cir_to_ofdm_channel(freqs, a, tau, normalize=False), written as a
        # matmul over paths: Sionna's version materialises exp(-j2π f τ) per antenna (N times the work).
        phase = -2 * math.pi * tau.to(freqs.dtype)[..., None] * freqs  # [B, T or 1, P, F]
        e = torch.polar(torch.ones_like(phase), phase).to(a.dtype)
        h = torch.matmul(a, e).transpose(-1, -2)  # [B, T, N, F] -> [B, T, F, N]
    if cfg.normalize_per_drop:
        dims = tuple(range(1, h.dim()))
        p = h.abs().square().mean(dim=dims, keepdim=True)  # [B, 1, 1(, 1)]
        h = h / torch.sqrt(torch.clamp(p, min=torch.finfo(p.dtype).tiny))
    return h, freqs


def _out_dtypes(precision: str) -> tuple[torch.dtype, torch.dtype]:
    return (torch.float64, torch.complex128) if precision == "double" else (torch.float32, torch.complex64)


# --------------------------------------------------------------------------------------------------------------------
# CDL
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SionnaCDLConfig:
    """Configuration of :class:`SionnaCDLChannel`.

    Args:
        model: CDL profile, "A" … "E" (D and E have a LoS cluster).
        array: base-station array (single polarization "V" elements).
        delay_spread: RMS delay spread [s] that scales the normalised CDL delays.
        carrier_frequency: [Hz].
        speed: UT speed [m/s]; the heading is horizontal, uniform per drop.
        duration: length of one drop [s]; ``num_time_steps = round(duration / sample_interval)``.
        sample_interval: time between channel samples [s] (Sionna's sampling frequency is its inverse).
        antenna_pattern: BS element pattern, "omni" or "38.901" (the UT has one omni antenna).
        num_subcarriers: ``None`` for a narrowband ``h [B, T, N]``; else ``F`` for ``h [B, T, F, N]``.
        subcarrier_spacing: [Hz], used with ``num_subcarriers``.
        nominal_distance: distance of the nominal start position from the BS [m] (CDL has no geometry).
        random_rotation_deg: each drop rotates the whole cluster geometry in azimuth by a uniform random angle in
            ``[-x, x]`` degrees relative to the array broadside (implemented as a BS yaw). 0 keeps the tabulated
            angles, so every drop has the same cluster directions and the same best beam on average.
        precision: "single" (complex64 output) or "double" (complex128).
        normalize_per_drop: divide each drop by the root of its mean power.
    """

    model: str = "C"
    array: AntennaArray = AntennaArray(num_rows=1, num_cols=32)
    delay_spread: float = 100e-9
    carrier_frequency: float = 3.5e9
    speed: float = 10.0
    duration: float = 0.1
    sample_interval: float = 1e-3
    antenna_pattern: str = "omni"
    num_subcarriers: int | None = None
    subcarrier_spacing: float = 30e3
    nominal_distance: float = 50.0
    random_rotation_deg: float = 0.0
    precision: str = "single"
    normalize_per_drop: bool = False

    def __post_init__(self) -> None:
        cls = type(self).__name__
        _check_choice(cls, "model", self.model, ("A", "B", "C", "D", "E"))
        _check_ranges(cls, self, ("delay_spread",))
        _check_common(cls, self)
        _check_ranges(cls, self, ("nominal_distance",))
        _check_real(cls, "random_rotation_deg", self.random_rotation_deg, nonneg=True)
        if self.random_rotation_deg > 180:
            _fail(cls, "random_rotation_deg", self.random_rotation_deg, "a value in [0, 180] degrees")

    @property
    def num_time_steps(self) -> int:
        return _num_steps(self.duration, self.sample_interval)


class SionnaCDLChannel:
    """3GPP TR 38.901 CDL channel (Sionna) as a :class:`ChannelBackend`.

    Downlink, BS array = ``config.array`` (broadside +x), one omni UT antenna.
    See the module docstring for what is fixed (cluster angles) and what evolves
    (fast fading) within one call, and for the nominal positions.
    """

    def __init__(self, config: SionnaCDLConfig | None = None) -> None:
        config = SionnaCDLConfig() if config is None else config
        if not isinstance(config, SionnaCDLConfig):
            raise TypeError(f"SionnaCDLChannel: config has type {type(config).__name__}; expected SionnaCDLConfig")
        self.config = config
        self.array = config.array
        self.carrier_frequency = float(config.carrier_frequency)
        self._arrays: dict[str, tuple[Any, Any]] = {}
        import sionna.phy  # noqa: F401  (lazy: fail early if Sionna is missing)

    def _sionna_arrays(self, device: str) -> tuple[Any, Any]:
        if device not in self._arrays:
            c = self.config
            self._arrays[device] = (
                sionna_bs_array(c.array, c.carrier_frequency, c.antenna_pattern, c.precision, device),
                _ut_antenna(c.carrier_frequency, c.precision, device))
        return self._arrays[device]

    @property
    def los(self) -> bool:
        """CDL-D and CDL-E have a LoS cluster."""
        return self.config.model in ("D", "E")

    def generate(self, num_drops: int, seed: int, device: torch.device | str = "cpu") -> ChannelSample:
        """``num_drops`` independent CDL drops of ``config.num_time_steps`` samples each."""
        from sionna.phy.channel.tr38901 import CDL

        _check_generate_args(num_drops, seed)
        c = self.config
        dev = _device_str(device)
        real, cplx = _out_dtypes(c.precision)
        B, T, dt = num_drops, c.num_time_steps, c.sample_interval

        # Geometry in the array frame (BS at the origin, broadside +x), from a private generator.
        g = torch.Generator().manual_seed(seed)
        heading = 2 * math.pi * torch.rand(B, generator=g, dtype=torch.float64)  # [B]
        yaw = math.radians(c.random_rotation_deg) * (2 * torch.rand(B, generator=g, dtype=torch.float64) - 1)  # [B]
        # Sionna's frame is the array frame rotated by `yaw` about z: the tabulated 0° AoD lies at -yaw in ours.
        start = c.nominal_distance * torch.stack([torch.cos(-yaw), torch.sin(-yaw), torch.zeros_like(yaw)], -1)
        v_arr = c.speed * torch.stack([torch.cos(heading), torch.sin(heading), torch.zeros_like(heading)], -1)
        v_sionna = c.speed * torch.stack([torch.cos(heading + yaw), torch.sin(heading + yaw),
                                          torch.zeros_like(heading)], -1)  # [B, 3]
        times = torch.arange(T, dtype=torch.float64) * dt  # [T]
        positions = start[:, None, :] + times[None, :, None] * v_arr[:, None, :]  # [B, T, 3]
        bs_orientation = torch.stack([yaw, torch.zeros_like(yaw), torch.zeros_like(yaw)], -1)  # [B, 3]

        bs_array, ut_array = self._sionna_arrays(dev)
        cdl = CDL(model=c.model, delay_spread=c.delay_spread, carrier_frequency=c.carrier_frequency,
                  ut_array=ut_array, bs_array=bs_array, direction="downlink",
                  bs_orientation=bs_orientation.to(real), ut_velocity=v_sionna.to(real),
                  precision=c.precision, device=dev)
        with _sionna_seed(seed):
            a, tau = cdl(B, T, 1.0 / dt)  # a [B, 1, 1, 1, N, P, T], tau [B, 1, 1, P]
        a = a[:, 0, 0, 0].permute(0, 3, 1, 2)  # [B, T, N, P]
        tau = tau[:, 0, 0, None, :]  # [B, 1, P] (CDL delays do not change over time)
        h, freqs = _finish(c, a, tau)
        h = check_channel(h.to(cplx))
        los = torch.full((B, T), self.los, dtype=torch.bool, device=dev)
        return ChannelSample(h=h, positions=positions.to(device=dev, dtype=real), times=times.to(device=dev,
                             dtype=real), los=los, subcarrier_frequencies=None if freqs is None else freqs.to(dev))


# --------------------------------------------------------------------------------------------------------------------
# UMi / UMa / RMa along a track
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SionnaUrbanConfig:
    """Configuration of :class:`SionnaUrbanChannel`.

    Args:
        scenario: "umi", "uma" or "rma".
        array: base-station array (single polarization "V"), broadside +x facing the sector.
        carrier_frequency: [Hz].
        speed: UT speed along the track [m/s].
        duration: length of one track [s]; ``num_time_steps = round(duration / sample_interval)`` positions.
        sample_interval: [s] between positions (``speed * sample_interval`` metres apart).
        antenna_pattern: BS element pattern, "omni" or "38.901".
        num_subcarriers, subcarrier_spacing: as in :class:`SionnaCDLConfig`.
        los: ``None`` draws the LoS state from TR 38.901's LoS probability (spatially consistent along the track);
            ``True`` / ``False`` force LoS / NLoS.
        bs_height: [m] (default 10 UMi, 25 UMa, 35 RMa). ``ut_height``: [m].
        min_distance, max_distance: range of the BS-UT 2D distance of the track start [m] (defaults UMi 10-100,
            UMa 35-250, RMa 35-500); the whole track keeps at least ``min_distance``.
        sector_half_width_deg: the start lies within ±this azimuth of the array broadside.
        time_continuous: apply procedure A of §7.6.3.2 (accumulated Doppler phases) so the small-scale fading
            evolves on the wavelength scale; ``False`` returns Sionna's raw per-position snapshots.
        precision, normalize_per_drop: as in :class:`SionnaCDLConfig`.
    """

    scenario: str = "umi"
    array: AntennaArray = AntennaArray(num_rows=1, num_cols=32)
    carrier_frequency: float = 3.5e9
    speed: float = 10.0
    duration: float = 0.1
    sample_interval: float = 1e-3
    antenna_pattern: str = "omni"
    num_subcarriers: int | None = None
    subcarrier_spacing: float = 30e3
    los: bool | None = None
    bs_height: float | None = None
    ut_height: float = 1.5
    min_distance: float | None = None
    max_distance: float | None = None
    sector_half_width_deg: float = 60.0
    time_continuous: bool = True
    precision: str = "single"
    normalize_per_drop: bool = False

    def __post_init__(self) -> None:
        cls = type(self).__name__
        _check_choice(cls, "scenario", self.scenario, tuple(_URBAN_DEFAULTS))
        _check_common(cls, self)
        if self.los is not None and not isinstance(self.los, bool):
            _fail(cls, "los", self.los, "None, True or False")
        for name in ("bs_height", "min_distance", "max_distance"):
            if getattr(self, name) is not None:
                _check_real(cls, name, getattr(self, name), positive=True)
                _check_ranges(cls, self, (name,))
        _check_real(cls, "ut_height", self.ut_height, positive=True)
        _check_ranges(cls, self, ("ut_height",))
        if self.resolved_bs_height <= self.ut_height:
            _fail(cls, "bs_height", self.bs_height, f"a height above ut_height ({self.ut_height!r} m)")
        dmin, dmax = self.distance_range
        if dmax <= dmin:
            _fail(cls, "max_distance", self.max_distance, f"a distance > min_distance ({dmin!r} m)")
        _check_real(cls, "sector_half_width_deg", self.sector_half_width_deg, positive=True)
        if self.sector_half_width_deg > 180:
            _fail(cls, "sector_half_width_deg", self.sector_half_width_deg, "a value in (0, 180] degrees")
        if not isinstance(self.time_continuous, bool):
            _fail(cls, "time_continuous", self.time_continuous, "a bool")

    @property
    def num_time_steps(self) -> int:
        return _num_steps(self.duration, self.sample_interval)

    @property
    def resolved_bs_height(self) -> float:
        return _URBAN_DEFAULTS[self.scenario][0] if self.bs_height is None else float(self.bs_height)

    @property
    def distance_range(self) -> tuple[float, float]:
        _, dmin, dmax = _URBAN_DEFAULTS[self.scenario]
        return (dmin if self.min_distance is None else float(self.min_distance),
                dmax if self.max_distance is None else float(self.max_distance))


def _segment_min_distance(start: Tensor, step: Tensor, length: int) -> Tensor:
    """Smallest 2D distance to the origin of the segment ``start + s * step``, ``s in [0, length - 1]``."""
    p, d = start[..., :2], step[..., :2]
    dd = (d * d).sum(-1)
    s = torch.where(dd > 0, -(p * d).sum(-1) / torch.where(dd > 0, dd, torch.ones_like(dd)), torch.zeros_like(dd))
    s = s.clamp(0, length - 1)
    return (p + s[..., None] * d).norm(dim=-1)


class SionnaUrbanChannel:
    """3GPP TR 38.901 UMi / UMa / RMa (Sionna) along user tracks, as a :class:`ChannelBackend`.

    One drop = one BS at ``(0, 0, bs_height)`` with its array broadside along +x
    (orientation 0) and one outdoor UT moving along a straight line at
    ``speed``. All positions of a track are UTs of one ``set_topology`` call
    with one track id, so angles drift with position; see the module docstring
    for the time continuity of the fast fading. ``positions`` are relative to
    the BS (so ``z = ut_height - bs_height``).
    """

    def __init__(self, config: SionnaUrbanConfig | None = None) -> None:
        config = SionnaUrbanConfig() if config is None else config
        if not isinstance(config, SionnaUrbanConfig):
            raise TypeError(f"SionnaUrbanChannel: config has type {type(config).__name__}; "
                            "expected SionnaUrbanConfig")
        self.config = config
        self.array = config.array
        self.carrier_frequency = float(config.carrier_frequency)
        self._models: dict[str, Any] = {}
        import sionna.phy  # noqa: F401

    def _model(self, device: str) -> Any:
        if device not in self._models:
            from sionna.phy.channel.tr38901 import RMa, UMa, UMi

            c = self.config
            bs = sionna_bs_array(c.array, c.carrier_frequency, c.antenna_pattern, c.precision, device)
            ut = _ut_antenna(c.carrier_frequency, c.precision, device)
            kw = dict(ut_array=ut, bs_array=bs, direction="downlink", enable_pathloss=False,
                      enable_shadow_fading=False, enable_spatial_consistency=True, precision=c.precision,
                      device=device)
            if c.scenario == "rma":
                model = RMa(c.carrier_frequency, **kw)
            else:
                model = (UMi if c.scenario == "umi" else UMa)(c.carrier_frequency, "low", **kw)
            self._models[device] = model
        return self._models[device]

    def _tracks(self, B: int, seed: int) -> tuple[Tensor, Tensor]:
        """Start positions ``[B, 3]`` (relative to the BS) and velocities ``[B, 3]`` in float64."""
        c = self.config
        T, dt = c.num_time_steps, c.sample_interval
        dmin, dmax = c.distance_range
        g = torch.Generator().manual_seed(seed)
        # Uniform over the area of the annular sector.
        r = torch.sqrt(dmin**2 + (dmax**2 - dmin**2) * torch.rand(B, generator=g, dtype=torch.float64))
        phi = math.radians(c.sector_half_width_deg) * (2 * torch.rand(B, generator=g, dtype=torch.float64) - 1)
        z = torch.full_like(r, c.ut_height - c.resolved_bs_height)
        start = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)
        heading = 2 * math.pi * torch.rand(B, generator=g, dtype=torch.float64)
        # Redraw headings whose track would come closer than min_distance (keeps TR 38.901 d_2D >= min).
        for _ in range(64):
            step = c.speed * dt * torch.stack([torch.cos(heading), torch.sin(heading), torch.zeros_like(heading)], -1)
            bad = _segment_min_distance(start, step, T) < dmin
            if not bool(bad.any()):
                break
            heading = torch.where(bad, 2 * math.pi * torch.rand(B, generator=g, dtype=torch.float64), heading)
        else:  # a start so close that no heading works: head straight away from the BS
            heading = torch.where(bad, phi, heading)
        velocity = c.speed * torch.stack([torch.cos(heading), torch.sin(heading), torch.zeros_like(heading)], -1)
        return start, velocity

    def generate(self, num_drops: int, seed: int, device: torch.device | str = "cpu") -> ChannelSample:
        """``num_drops`` independent tracks of ``config.num_time_steps`` positions each."""
        from sionna.phy.channel.tr38901 import Topology
        from sionna.phy.channel.utils import deg_2_rad

        _check_generate_args(num_drops, seed)
        c = self.config
        dev = _device_str(device)
        real, cplx = _out_dtypes(c.precision)
        B, T, dt = num_drops, c.num_time_steps, c.sample_interval

        start, velocity = self._tracks(B, seed)
        times = torch.arange(T, dtype=torch.float64) * dt  # [T]
        positions = start[:, None, :] + times[None, :, None] * velocity[:, None, :]  # [B, T, 3] relative to BS
        bs_loc = torch.tensor([0.0, 0.0, c.resolved_bs_height], dtype=torch.float64)
        ut_loc = positions + bs_loc  # [B, T, 3] Sionna frame (ground at z = 0)

        model = self._model(dev)
        sc = model._scenario
        kw = {}
        if c.scenario == "rma":
            kw["in_car"] = torch.zeros(B, T, dtype=torch.bool, device=dev)  # vehicle-mounted, no car penetration
        with _sionna_seed(seed):
            model.reset_topology()  # batch size and number of positions may change between calls
            model.set_topology(
                ut_loc=ut_loc.to(device=dev, dtype=real),
                bs_loc=bs_loc.expand(B, 1, 3).to(device=dev, dtype=real),
                ut_orientations=torch.zeros(B, T, 3, device=dev, dtype=real),
                bs_orientations=torch.zeros(B, 1, 3, device=dev, dtype=real),  # broadside +x
                ut_velocities=velocity[:, None, :].expand(B, T, 3).to(device=dev, dtype=real),
                in_state=torch.zeros(B, T, dtype=torch.bool, device=dev),
                los="random" if c.los is None else c.los,
                spatial_consistency_track_ids=torch.zeros(B, T, dtype=torch.int64, device=dev),
                **kw)
            # The downlink branch of SystemLevelChannel.__call__ (Sionna 2.2), with the ray phases replaced
            # before the coefficients are computed. Each position is sampled once, at t = 0.
            lsp = model._lsp
            rays = model._ray_sampler(lsp)
            if c.time_continuous and T > 1:
                rays.phases = _doppler_phases(rays, sc.ut_velocities, dt, c.carrier_frequency)
            topology = Topology(velocities=sc.ut_velocities, moving_end="rx", los_aoa=deg_2_rad(sc.los_aoa),
                                los_aod=deg_2_rad(sc.los_aod), los_zoa=deg_2_rad(sc.los_zoa),
                                los_zod=deg_2_rad(sc.los_zod), los=sc.los, distance_3d=sc.distance_3d,
                                tx_orientations=sc.bs_orientations, rx_orientations=sc.ut_orientations)
            c_ds = sc.get_param("cDS") * 1e-9
            a, tau = model._cir_sampler(1, 1.0 / dt, lsp.k_factor, rays, topology, c_ds)
            a = model._step_12(a, lsp.sf, lsp.pathloss)  # path loss and shadow fading are disabled: gain 1
            los = sc.los[:, 0, :].clone()  # [B, T]
        # a [B, tx=1, rx=T, P, rx_ant=1, N, time=1], tau [B, tx=1, rx=T, P]
        a = a[:, 0, :, :, 0, :, 0].transpose(-1, -2)  # [B, T, N, P]
        tau = tau[:, 0]  # [B, T, P]
        h, freqs = _finish(c, a, tau)
        h = check_channel(h.detach().to(cplx))
        return ChannelSample(h=h, positions=positions.to(device=dev, dtype=real),
                             times=times.to(device=dev, dtype=real), los=los.to(dev),
                             subcarrier_frequencies=None if freqs is None else freqs.to(dev))


def _doppler_phases(rays: Any, velocities: Tensor, dt: float, carrier_frequency: float) -> Tensor:
    """Procedure A of TR 38.901 §7.6.3.2 for positions that are UTs of one track.

    ``rays.phases [B, 1, T, C, M, 4]`` (spatially consistent initial phases, clusters sorted by delay per position)
    become ``Φ(k) = Φ(0) + Σ_{j<k} 2π/λ r̂_rx(j)ᵀ v Δt`` per ray, where ray identity across positions is the
    delay-unsorted cluster index (``rays.cluster_sort_indices``) and the ray slot.
    """
    idx = rays.cluster_sort_indices  # [B, 1, T, C] sorted[c] = raw[idx[c]]
    phases = rays.phases  # [B, 1, T, C, M, 4]
    zoa, aoa = rays.zoa.double(), rays.aoa.double()  # [B, 1, T, C, M] arrival directions at the UT (GCS)
    r_hat = torch.stack([torch.sin(zoa) * torch.cos(aoa), torch.sin(zoa) * torch.sin(aoa), torch.cos(zoa)], -1)
    v = velocities.double()[:, None, :, None, None, :]  # [B, 1, T, 1, 1, 3]
    inc = (2 * math.pi * carrier_frequency / SPEED_OF_LIGHT * dt) * (r_hat * v).sum(-1)  # [B, 1, T, C, M]
    idx5 = idx[..., None].expand_as(inc)
    raw_inc = torch.zeros_like(inc).scatter(3, idx5, inc)  # raw cluster order
    cum = torch.cumsum(raw_inc, dim=2) - raw_inc  # exclusive: Σ_{j<k}
    phase0 = phases[:, :, :1].double()  # [B, 1, 1, C, M, 4]
    raw0 = torch.zeros_like(phase0).scatter(3, idx[:, :, :1, :, None, None].expand_as(phase0), phase0)
    raw = raw0 + cum[..., None]  # [B, 1, T, C, M, 4]
    out = torch.gather(raw, 3, idx[..., None, None].expand_as(raw))  # back to each position's delay order
    out = torch.remainder(out + math.pi, 2 * math.pi) - math.pi
    return out.to(phases.dtype)
