"""Physically meaningful ranges of the wireless configuration fields, and the one range check.

A value that passes validation must not crash or mislead later: ``snr_db = 1e300``
overflows ``10 ** (snr_db / 10)``, ``blockage_duration = 1e6`` asks for millions of
blockage events, an array of 100000 columns for covariances of 10^10 entries per
decision. Every numeric field of the configuration dataclasses (scenario, channel
back-ends, array, codebook, measurement, training) is therefore bounded to a range
that no real beam-management study leaves; the ranges are chosen wide (a factor of
10 or more beyond the extremes of 3GPP TR 38.901 / TR 38.843 studies), so they
exclude only nonsense. What each range stands on:

======================================  ==========================  =============================================
field(s)                                range                       why
======================================  ==========================  =============================================
``snr_db``, ``outage_db``               [-100, 100] dB              link budgets span ~-30..60 dB; 10^(±10) stays
                                                                    exact in float32 (10^(±39) underflows)
``k_factor_db``                         [-100, 100] dB or +inf      TR 38.901: ~-10..20 dB; +inf = LoS only
``cluster_shadowing_db``                [0, 50] dB                  TR 38.901 per-cluster shadowing: 3 dB
``blockage_attenuation_db``             [0, 100] dB                 measured body/vehicle blockage: 10..40 dB
``quantization_db``                     [0, 30] dB                  L1-RSRP: 1 dB steps
``carrier_frequency``                   [100 MHz, 1 THz]            NR FR1/FR2 and sub-THz studies
``subcarrier_spacing``                  [1 kHz, 10 MHz]             NR numerologies: 15..960 kHz
``num_subcarriers``                     [0, 4096]                   NR: at most 3300 per carrier
``speed`` (``speed_kmh``)               [0, 1000] m/s ([0, 3600])   high-speed trains 140 m/s, aircraft 280 m/s
``duration``                            [1 µs, 3600 s]              one drop (a user's track)
``sample_interval``                     [100 ns, 10 s]              an OFDM symbol at 960 kHz is ~1 µs
``turn_start``                          [0, 3600] s                 within the longest drop
``blockage_rate``                       [0, 100] events/s           measured: 0.1..10 /s
``blockage_duration``                   [100 µs, 60 s]              mean hold; measured 0.1..few s
``blockage_transition``                 [0, 60] s                   ramp of one event
``period``                              [1 µs, 10 s]                NR beam-management periods: 0.125..160 ms
``delay``                               [0, 10] s                   reporting delay, a few ms
``power_delay_constant``,               [1 ps, 1 ms]                delay spreads: 10 ns..a few µs
``delay_spread``
``min_distance``, ``max_distance``,     [1 cm, 100 km]              cells are at most a few tens of km
``turn_radius``, ``ring_radius``,
``nominal_distance``
``bs_height``, ``ut_height``            [0, 10 km]                  towers ~300 m, drones and HAPS below 10 km
``heading_deg``                         [-360, 360] deg             one turn either way
``turn_angle_deg``                      [-3600, 3600] deg           ten full turns
``cluster_angular_spread_deg``,         [0, 180] deg                a half circle
``cluster_zenith_spread_deg``
``num_clusters``                        [0, 1000]                   TR 38.901: at most 24 (rings for Clarke: 100s)
``rays_per_cluster``                    [1, 1000]                   TR 38.901: 20
``num_rows``, ``num_cols``              [1, 1024] elements          massive MIMO: 64..1024 elements in all
``spacing_v``, ``spacing_h``            [0.001, 100] wavelengths    half a wavelength, sparse arrays a few
``oversampling``                        [1, 64]                     DFT codebooks: 1..8
``samples``                             [1, 4096]                   resource elements per report
``history``                             [1, 1024]                   reports a decision may read
``drops``                               [1, 10^7]                   a 95% CI over 10^7 drops is ~0.001 dB wide
``chunk_drops``                         [1, 10^6]                   drops per batch (the memory check decides)
``steps``, ``batch``                    [1, 10^8], [1, 10^7]        training
``lr``, ``weight_decay``                (0, 10], [0, 10]            AdamW
``temperature`` (selector)              [0.001, 1000]               score scale; 1e-300 made 1/T overflow
``d_model``, ``neighbours``, ``topk``   [1, 4096], [0, 512],        the selector's keys
                                        [1, 65536]
``trace_spacing`` (sionna-rt)          (0, 0.5] m                  Doppler evolution holds over ~0.5 m (measured)
``max_depth``, ``samples_per_src``      [0, 10], [10^3, 10^8]       ray bounces; rays shot per solve
``map_resolution``, ``street_clearance``  [0.1, 20] m, [0, 50] m    height-map cell; distance kept from walls
``sector_half_width_deg``               (0, 180] deg                half a circle either side
``yaw_deg``, ``tilt_deg``               [-360, 360], [-90, 90] deg  BS orientation (tilt: down is positive)
``bs_x`` .. ``look_at_z``               [-100 km, 100 km]           scene coordinates
``solver_seed``                         [0, 2^31 - 1]               Sionna RT's PathSolver seed
======================================  ==========================  =============================================

Channels read from the user's files (``backend = "file"``, :mod:`beamattn.wireless.channels.file`) have
no such fields in the scenario: the values the file implies are checked against the same ranges instead,
naming the file (its ``times`` give ``sample_interval`` and the drop length ``duration``; ``h`` gives
``drops`` and ``num_subcarriers``; its ``carrier_frequency``), and the whole file, held in memory, is
counted by the memory estimate.

Sizes that are each in range can still multiply to more memory than the machine has
(``chunk_drops x T x F x N`` channels, ``N x N`` covariances per decision):
:func:`beamattn.wireless.scenario.estimate_memory` adds up the largest tensors before
anything is allocated and :func:`beamattn.wireless.scenario.check_memory` refuses a
scenario above :func:`memory_limit`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

__all__ = ["Range", "RANGES", "SNR_DB_RANGE", "check_range", "memory_limit", "format_bytes", "MEMORY_LIMIT_ENV"]


@dataclass(frozen=True)
class Range:
    """A closed range ``[lo, hi]`` (``(lo, hi]`` when ``open_lo``) in ``unit``; ``integer`` for counts."""

    lo: float
    hi: float
    unit: str = ""
    integer: bool = False
    open_lo: bool = False

    def contains(self, value: float) -> bool:
        return (self.lo < value if self.open_lo else self.lo <= value) and value <= self.hi

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        left = "(" if self.open_lo else "["
        unit = f" {self.unit}" if self.unit else ""
        return f"{kind} in {left}{self.lo:g}, {self.hi:g}]{unit}"


SNR_DB_RANGE = Range(-100.0, 100.0, "dB")

# The documented ranges of the table above, by field name (the same name means the same quantity in every
# config that has it; a config may demand more, e.g. a positive BS height for Sionna's urban models).
RANGES: dict[str, Range] = {
    "snr_db": SNR_DB_RANGE,
    "outage_db": SNR_DB_RANGE,
    "k_factor_db": Range(-100.0, 100.0, "dB"),
    "cluster_shadowing_db": Range(0.0, 50.0, "dB"),
    "blockage_attenuation_db": Range(0.0, 100.0, "dB"),
    "quantization_db": Range(0.0, 30.0, "dB"),
    "carrier_frequency": Range(1e8, 1e12, "Hz"),
    "subcarrier_spacing": Range(1e3, 1e7, "Hz"),
    "num_subcarriers": Range(0, 4096, integer=True),
    "speed": Range(0.0, 1000.0, "m/s"),
    "speed_kmh": Range(0.0, 3600.0, "km/h"),
    "duration": Range(1e-6, 3600.0, "s"),
    "sample_interval": Range(1e-7, 10.0, "s"),
    "turn_start": Range(0.0, 3600.0, "s"),
    "blockage_rate": Range(0.0, 100.0, "events/s"),
    "blockage_duration": Range(1e-4, 60.0, "s"),
    "blockage_transition": Range(0.0, 60.0, "s"),
    "period": Range(1e-6, 10.0, "s"),
    "delay": Range(0.0, 10.0, "s"),
    "power_delay_constant": Range(1e-12, 1e-3, "s"),
    "delay_spread": Range(1e-12, 1e-3, "s"),
    "min_distance": Range(0.01, 1e5, "m"),
    "max_distance": Range(0.01, 1e5, "m"),
    "turn_radius": Range(0.01, 1e5, "m"),
    "ring_radius": Range(0.01, 1e5, "m"),
    "nominal_distance": Range(0.01, 1e5, "m"),
    "bs_height": Range(0.0, 1e4, "m"),
    "ut_height": Range(0.0, 1e4, "m"),
    "heading_deg": Range(-360.0, 360.0, "degrees"),
    "turn_angle_deg": Range(-3600.0, 3600.0, "degrees"),
    "cluster_angular_spread_deg": Range(0.0, 180.0, "degrees"),
    "cluster_zenith_spread_deg": Range(0.0, 180.0, "degrees"),
    "num_clusters": Range(0, 1000, integer=True),
    "rays_per_cluster": Range(1, 1000, integer=True),
    "num_rows": Range(1, 1024, "elements", integer=True),
    "num_cols": Range(1, 1024, "elements", integer=True),
    "spacing_v": Range(1e-3, 100.0, "wavelengths"),
    "spacing_h": Range(1e-3, 100.0, "wavelengths"),
    "oversampling": Range(1, 64, integer=True),
    "samples": Range(1, 4096, integer=True),
    "history": Range(1, 1024, integer=True),
    "burst": Range(1, 64, integer=True),
    "burst_spacing": Range(1e-6, 1.0, "s"),
    "drops": Range(1, 10**7, integer=True),
    "chunk_drops": Range(1, 10**6, integer=True),
    "steps": Range(1, 10**8, integer=True),
    "batch": Range(1, 10**7, integer=True),
    "lr": Range(0.0, 10.0, open_lo=True),
    "weight_decay": Range(0.0, 10.0),
    "temperature": Range(1e-3, 1e3),
    "d_model": Range(1, 4096, integer=True),
    "neighbours": Range(0, 512, integer=True),
    "topk": Range(1, 65536, integer=True),
    # the ray-traced back-end (beamattn.wireless.channels.sionna_rt)
    "trace_spacing": Range(0.0, 0.5, "m", open_lo=True),
    "max_depth": Range(0, 10, integer=True),
    "samples_per_src": Range(1000, 10**8, integer=True),
    "map_resolution": Range(0.1, 20.0, "m"),
    "street_clearance": Range(0.0, 50.0, "m"),
    "sector_half_width_deg": Range(0.0, 180.0, "degrees", open_lo=True),
    "yaw_deg": Range(-360.0, 360.0, "degrees"),
    "tilt_deg": Range(-90.0, 90.0, "degrees"),
    **{name: Range(-1e5, 1e5, "m") for name in ("bs_x", "bs_y", "bs_z", "look_at_x", "look_at_y", "look_at_z")},
    "solver_seed": Range(0, 2**31 - 1, integer=True),
}


def check_range(owner: str, name: str, value: object, rng: Range | None = None) -> None:
    """Raise one ``ValueError`` line naming ``owner``, field ``name`` and ``value`` unless ``value`` is a
    number (an integer when the range is one of counts) inside ``rng`` (default: ``RANGES[name]``)."""
    rng = RANGES[name] if rng is None else rng
    ok = isinstance(value, int) if rng.integer else isinstance(value, (int, float))
    ok = ok and not isinstance(value, bool) and not (isinstance(value, float) and math.isnan(value))
    if not (ok and rng.contains(value)):
        raise ValueError(f"{owner}: field '{name}' = {value!r}; expected {rng.describe()}")


MEMORY_LIMIT_ENV = "BEAMATTN_MEMORY_LIMIT"
_MEMORY_FRACTION = 0.5  # of the machine's physical memory, when the environment sets no limit


def memory_limit() -> tuple[int, str]:
    """The largest working set (bytes) a scenario may need, and where that number comes from.

    ``$BEAMATTN_MEMORY_LIMIT`` (bytes, or with a suffix K, M, G, T: powers of 1024) when set, else half
    of the machine's physical memory (``psutil`` when installed, else ``os.sysconf``).
    """
    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if text:
        scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
        unit = text[-1].upper()
        try:
            value = float(text[:-1]) * scale[unit] if unit in scale else float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"environment: {MEMORY_LIMIT_ENV} = {text!r}; expected a size in bytes > 0 "
                             "(suffixes K, M, G, T allowed, e.g. '16G')")
        return int(value), f"${MEMORY_LIMIT_ENV}"
    try:
        import psutil

        total = int(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover - psutil comes with dask; sysconf is the fallback
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total * _MEMORY_FRACTION), f"half of this machine's {format_bytes(total)} RAM; set ${MEMORY_LIMIT_ENV}"


def format_bytes(n: float) -> str:
    """``1.5e9`` -> ``'1.4 GiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover
