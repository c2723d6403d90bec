"""Ray-traced channels of city scenes (Sionna RT 2.2) behind the :class:`ChannelBackend` interface.

One drop is a user moving in a straight line on the streets of a scene, seen by one base station (BS)
whose position, orientation and array the configuration gives. The result is a :class:`ChannelSample`
like every other back-end's: ``h [B, T, N]`` (or ``[B, T, F, N]``), ``y = hᵀ w x`` (Sionna's convention, no
conjugate), positions in the BS's array frame (BS at the origin, broadside +x).

Drops (users on the ground)
---------------------------
The ground is found once per scene with a *height map*: rays cast straight down on a ``map_resolution``
grid over the scene's bounding box (``mi_scene.ray_intersect``); cells whose hit lies within 0.5 m of the
lowest hit are streets and squares. Cells closer than ``street_clearance`` to a non-ground cell are removed
(a car keeps off the walls). A track starts on a uniformly drawn ground cell (uniform within the cell), with
a uniform heading, and is kept only when every point of it (checked every half cell) is on the cleared
ground, at a 2-D distance from the BS in ``[min_distance, max_distance]`` and, with
``sector_half_width_deg < 180``, within that azimuth of the BS's pointing direction. Tracks are therefore
biased towards long free runs (squares, wide streets) over narrow lanes: a straight track has to fit.
The user's antenna is ``ut_height`` above the ground; all draws come from ``numpy.random.default_rng(seed)``.

Positions with no path
----------------------
Without diffraction, a street position can receive no path at all (47% of the ground cells within 150 m of
the Munich BS, measured). Such a position would be ``h = 0``: -inf dB for every beam. We **exclude the
track**: each candidate track is first probed at its first, middle and last traced positions, then traced
in full; a track with any traced position without a valid path is dropped and the next candidate drawn by
the seed takes its place (every returned drop has a path at every traced position). A configuration where
too few candidates pass after ``_MAX_ROUNDS`` rounds is refused with one line naming the fields to change
(``diffraction = true``, the BS position, ``max_distance``). ``diffraction = true`` lets paths reach around
corners instead (more paths, slower).

Time evolution
--------------
The track is traced at ``K = ceil(L / trace_spacing) + 1`` equally spaced positions (``L`` its length,
``trace_spacing <= 0.5 m``), each receiver with the track's velocity, so Sionna gives every path ``p`` its
coefficient ``a_p`` (the baseband coefficient ``a_p e^{-j2π f_c τ_p}`` of ``paths.cir`` with absolute
delays, per BS antenna), delay ``τ_p`` and Doppler shift ``f_D,p``. Between traces ``k`` and ``k + 1``
(times ``t_k``, ``t_{k+1}``) the channel at time ``t`` is

    h(t) = (1 - w) Σ_p a_p^(k) e^{j2π f_D,p^(k) (t - t_k)} + w Σ_p a_p^(k+1) e^{j2π f_D,p^(k+1) (t - t_{k+1})},

``w = (t - t_k) / (t_{k+1} - t_k)``: each trace is evolved by its paths' Doppler phases (exactly Sionna's
``cir(sampling_frequency, num_time_steps)``), and the two neighbouring traces are cross-faded, so ``h`` is
continuous, equals the trace at every traced position, and is never extrapolated more than one spacing.
Measured with Sionna's specular paths: a trace evolved 0.25 m correlates 0.999+ with a fresh trace there
(tests/test_sionna_rt.py). Delays are held at the trace's (their change over 0.5 m, ≤ 1.7 ns, shifts the
phase across 10 MHz by ≤ 0.05 rad). Wideband: ``h[t, f] = Σ_p a_p(t) e^{-j2π f τ_p}`` at the offsets
``sionna.phy.channel.subcarrier_frequencies(F, scs)``, i.e. ``paths.cfr(..., normalize_delays=False)``.

Normalisation
-------------
``normalization = "per-drop"`` (default) divides each drop by the root of its mean power over time,
subcarriers and antennas: the large-scale path loss is removed per drop, so ``E|h_n|² = 1`` over each
drop (the package's convention; ``snr_db`` is the SNR of the drop's mean channel), while the power changes
*within* a drop (entering a side street, losing the LoS) are kept. ``"none"`` keeps Sionna's absolute
coefficients (path loss included: ``|h|²`` ~ -80 to -120 dB at 28 GHz), for users who set ``snr_db``
from a link budget.

LoS flag: a sample is LoS when the nearest traced position has a valid path without any interaction.

Cost and the cache
------------------
A solve costs ~10-50 s on 2 cores whatever the scene (it follows ``samples_per_src``), so every solve's
result is stored in a content-addressed, checksummed disk cache (:mod:`.rt_cache`, ``$BEAMATTN_RT_CACHE``):
a second run of the same scenario reads it back in seconds and gives identical numbers. Dr.Jit's memory
grows with each solve in one process, so by default each :meth:`SionnaRTChannel.generate` call solves in one
fresh worker process (``subprocess = true``), which exits when the call returns; nothing of Sionna RT is
imported into the calling process then (and nothing at import time of :mod:`beamattn`).

Setup: ``pip install 'beamattn[rt]'`` (``sionna-rt==2.2.0``) and, on Debian, ``apt-get install libllvm19``:
Dr.Jit aborts the process on the first kernel with Debian's libLLVM 15 (see docs/raytracing.md).
"""

from __future__ import annotations

import importlib.util
import math
import os
import pickle
import struct
import subprocess as _subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..arrays import AntennaArray
from ..limits import check_range
from .base import ChannelSample, check_channel
from .rt_cache import TraceCache, cache_key, files_digest

__all__ = ["SionnaRTConfig", "SionnaRTChannel", "HeightMap", "SHIPPED_SCENES", "rt_available", "rt_ready", "scene_file",
           "evolve_trace", "RT_INSTALL_HINT", "RayTracerUnavailable"]

# Scenes shipped in sionna-rt 2.2 (sionna/rt/scenes/<name>/<name>.xml); checked against the package in the tests.
SHIPPED_SCENES = ("munich", "florence", "etoile", "san_francisco", "simple_street_canyon",
                  "simple_street_canyon_with_cars", "box", "box_knife", "box_one_screen", "box_two_screens",
                  "simple_reflector", "simple_wedge", "double_reflector", "triple_reflector", "floor_wall")
_PATTERNS = ("iso", "dipole", "hw_dipole", "tr38901")  # Sionna RT's element patterns
_NORMALIZATIONS = ("per-drop", "none")
_GROUND_TOLERANCE = 0.5  # m above the lowest hit that still counts as ground (kerbs, mesh noise)
_MAX_ROUNDS = 8  # rounds of candidate tracks before a configuration is refused
_LLVM19 = "/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1"
RT_INSTALL_HINT = ("install the ray tracer with `pip install 'beamattn[rt]'` (sionna-rt==2.2.0) and, on Debian, "
                   "`apt-get install -y libllvm19` (see docs/raytracing.md)")


def _fail(name: str, value: Any, expected: str) -> None:
    raise ValueError(f"SionnaRTConfig: field '{name}' = {value!r}; expected {expected}")


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        _fail(name, value, f"an integer in [{lo}, {hi}]")


def rt_available() -> bool:
    """Whether ``sionna.rt`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("sionna.rt") is not None
    except (ImportError, ValueError):
        return False


def _sionna_dir() -> Path | None:
    spec = importlib.util.find_spec("sionna")  # does not execute the package
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        if (Path(root) / "rt").is_dir():
            return Path(root)
    return None


def scene_file(scene: str) -> Path:
    """The Mitsuba XML file of ``scene``: a shipped scene's name or a path to an XML file."""
    if scene in SHIPPED_SCENES:
        root = _sionna_dir()
        if root is None:
            raise ValueError(f"SionnaRTConfig: field 'scene' = {scene!r} is a scene shipped with sionna-rt, which is "
                             f"not installed; {RT_INSTALL_HINT}")
        return root / "rt" / "scenes" / scene / f"{scene}.xml"
    return Path(scene).expanduser()


def _scene_files(xml: Path) -> list[Path]:
    """The XML and every file in its folder tree (meshes): what the cache key hashes."""
    return [xml] + sorted(p for p in xml.parent.rglob("*") if p.is_file() and p != xml and "__pycache__" not in
                          p.parts and p.suffix != ".py" and p.suffix != ".pyc")


@dataclass(frozen=True)
class SionnaRTConfig:
    """Configuration of :class:`SionnaRTChannel` (units: metres, seconds, Hz, degrees).

    Args:
        scene: a scene shipped with sionna-rt (:data:`SHIPPED_SCENES`, e.g. "munich") or a path to a Mitsuba
            XML scene file.
        array: BS array (single polarization "V"), element order as :class:`~beamattn.wireless.arrays.AntennaArray`.
        carrier_frequency: [Hz]; also the frequency of the scene's radio materials.
        bs_x: BS position in scene coordinates, x [m].
        bs_y: BS position, y [m].
        bs_z: BS position (antenna height above the scene's z = 0), z [m].
        yaw_deg: BS broadside azimuth, from +x towards +y [deg] (ignored with look_at_x/y/z).
        tilt_deg: BS downtilt [deg], positive down (ignored with look_at_x/y/z).
        look_at_x: a point the broadside points at, x [m]; give all three look_at fields or none.
        look_at_y: the look-at point, y [m].
        look_at_z: the look-at point, z [m].
        antenna_pattern: BS element pattern: "iso", "dipole", "hw_dipole" or "tr38901" (the UE has one "iso").
        num_subcarriers: ``None`` for narrowband ``h [B, T, N]``, else ``F`` subcarriers (``h [B, T, F, N]``).
        subcarrier_spacing: [Hz], used with ``num_subcarriers``.
        speed: user speed along the track [m/s].
        duration: drop length [s]; ``num_time_steps = round(duration / sample_interval)``.
        sample_interval: time between channel samples [s].
        trace_spacing: distance between traced positions along a track [m], in (0, 0.5].
        ut_height: user antenna above the ground [m].
        min_distance: smallest 2-D BS-user distance of every track point [m].
        max_distance: largest 2-D BS-user distance of every track point [m].
        sector_half_width_deg: every track point lies within this azimuth of the BS's broadside (180: anywhere).
        max_depth: Sionna's ``PathSolver`` maximum number of interactions (specular reflections and LoS always;
            no refraction, no diffuse scattering).
        samples_per_src: rays shot per solve (solve time follows it; 3e4-1e5 find the same paths in munich).
        diffraction: also diffracted paths (around corners: more paths, slower).
        solver_seed: the solver's seed.
        map_resolution: height-map cell size [m].
        street_clearance: distance a track keeps from walls (non-ground cells) [m].
        normalization: "per-drop" (path loss removed per drop, ``E|h_n|² = 1`` over each drop) or "none".
        subprocess: solve in a fresh worker process per ``generate`` call (bounded memory) or in this one.
    """

    scene: str = "munich"
    array: AntennaArray = AntennaArray(num_rows=1, num_cols=16)
    carrier_frequency: float = 28e9
    bs_x: float = 8.5
    bs_y: float = 21.0
    bs_z: float = 27.0
    yaw_deg: float = 0.0
    tilt_deg: float = 0.0
    look_at_x: float | None = None
    look_at_y: float | None = None
    look_at_z: float | None = None
    antenna_pattern: str = "tr38901"
    num_subcarriers: int | None = None
    subcarrier_spacing: float = 120e3
    speed: float = 10.0
    duration: float = 1.0
    sample_interval: float = 5e-3
    trace_spacing: float = 0.5
    ut_height: float = 1.5
    min_distance: float = 10.0
    max_distance: float = 150.0
    sector_half_width_deg: float = 180.0
    max_depth: int = 3
    samples_per_src: int = 100000
    diffraction: bool = False
    solver_seed: int = 42
    map_resolution: float = 1.0
    street_clearance: float = 1.0
    normalization: str = "per-drop"
    subprocess: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.scene, str) or not self.scene:
            _fail("scene", self.scene, f"a scene name {SHIPPED_SCENES[:4]}... or a path to a Mitsuba XML file")
        if self.scene not in SHIPPED_SCENES:
            path = Path(self.scene).expanduser()
            if path.suffix.lower() != ".xml" or not path.is_file():
                _fail("scene", self.scene, f"one of {list(SHIPPED_SCENES)} or the path of an existing Mitsuba XML "
                                           "scene file")
        if not isinstance(self.array, AntennaArray):
            _fail("array", self.array, "a beamattn.wireless.arrays.AntennaArray")
        for name in ("carrier_frequency", "speed", "duration", "sample_interval", "ut_height", "min_distance",
                     "max_distance", "subcarrier_spacing"):
            check_range("SionnaRTConfig", name, getattr(self, name))
        if self.sample_interval > self.duration:
            _fail("sample_interval", self.sample_interval, f"a value <= duration ({self.duration!r} s)")
        if self.max_distance <= self.min_distance:
            _fail("max_distance", self.max_distance, f"a distance > min_distance ({self.min_distance!r} m)")
        for name in ("bs_x", "bs_y", "bs_z", "yaw_deg", "tilt_deg", "trace_spacing", "sector_half_width_deg",
                     "max_depth", "samples_per_src", "solver_seed", "map_resolution", "street_clearance"):
            check_range("SionnaRTConfig", name, getattr(self, name))  # the ranges of beamattn.wireless.limits
        look = (self.look_at_x, self.look_at_y, self.look_at_z)
        if any(v is not None for v in look):
            for name, v in zip(("look_at_x", "look_at_y", "look_at_z"), look):
                if v is None:
                    _fail(name, v, "a number: give all three of look_at_x, look_at_y, look_at_z or none")
                check_range("SionnaRTConfig", name, v)
            if math.dist(look, (self.bs_x, self.bs_y, self.bs_z)) < 1e-6:
                _fail("look_at_x", self.look_at_x, "a point other than the BS position (bs_x, bs_y, bs_z)")
        if self.antenna_pattern not in _PATTERNS:
            _fail("antenna_pattern", self.antenna_pattern, "one of " + ", ".join(repr(p) for p in _PATTERNS))
        if self.num_subcarriers is not None:
            _check_int("num_subcarriers", self.num_subcarriers, 1, 4096)
        for name in ("diffraction", "subprocess"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, getattr(self, name), "true or false")
        if self.normalization not in _NORMALIZATIONS:
            _fail("normalization", self.normalization, "one of " + ", ".join(repr(n) for n in _NORMALIZATIONS))

    @property
    def num_time_steps(self) -> int:
        return max(1, int(round(self.duration / self.sample_interval)))

    @property
    def num_traces(self) -> int:
        """Traced positions per track ``K``: spaced at most ``trace_spacing`` apart (1 for a static user)."""
        length = self.speed * (self.num_time_steps - 1) * self.sample_interval
        return 1 if length <= 0 else int(math.ceil(length / self.trace_spacing - 1e-9)) + 1

    @property
    def bs_position(self) -> np.ndarray:
        return np.array([self.bs_x, self.bs_y, self.bs_z], dtype=np.float64)

    @property
    def bs_orientation(self) -> np.ndarray:
        """Sionna's (yaw, pitch, roll) in radians; positive pitch tilts the broadside down."""
        if self.look_at_x is None:
            return np.array([math.radians(self.yaw_deg), math.radians(self.tilt_deg), 0.0])
        d = np.array([self.look_at_x, self.look_at_y, self.look_at_z]) - self.bs_position
        return np.array([math.atan2(d[1], d[0]), math.atan2(-d[2], math.hypot(d[0], d[1])), 0.0])


def bs_rotation(orientation: np.ndarray) -> np.ndarray:
    """Rotation ``R = Rz(yaw) Ry(pitch) Rx(roll)`` from the array frame to the scene frame (Sionna's)."""
    a, b, c = orientation
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = np.array([[1, 0, 0], [0, math.cos(c), -math.sin(c)], [0, math.sin(c), math.cos(c)]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class HeightMap:
    """Heights of the first hit of downward rays: ``z [ny, nx]`` (NaN: nothing hit), cell ``(i, j)`` centred
    at ``(x0 + (j + 0.5) res, y0 + (i + 0.5) res)``; ``ground`` marks streets and squares."""

    x0: float
    y0: float
    res: float
    z: np.ndarray  # [ny, nx] float32 metres
    ground_z: float

    @property
    def ground(self) -> np.ndarray:
        return np.nan_to_num(self.z, nan=np.inf) < self.ground_z + _GROUND_TOLERANCE  # [ny, nx] bool

    @property
    def extent(self) -> tuple[float, float, float, float]:
        ny, nx = self.z.shape
        return self.x0, self.x0 + nx * self.res, self.y0, self.y0 + ny * self.res

    def cells(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row and column of points ``xy [..., 2]`` and whether they lie inside the map."""
        ny, nx = self.z.shape
        j = np.floor((xy[..., 0] - self.x0) / self.res).astype(np.int64)
        i = np.floor((xy[..., 1] - self.y0) / self.res).astype(np.int64)
        inside = (i >= 0) & (i < ny) & (j >= 0) & (j < nx)
        return np.clip(i, 0, ny - 1), np.clip(j, 0, nx - 1), inside


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Cells of ``mask`` whose whole disc of ``radius`` cells is in ``mask`` (outside the map counts as not)."""
    if radius <= 0:
        return mask.copy()
    out = mask.copy()
    ny, nx = mask.shape
    padded = np.zeros((ny + 2 * radius, nx + 2 * radius), dtype=bool)
    padded[radius:radius + ny, radius:radius + nx] = mask
    for di in range(-radius, radius + 1):
        for dj in range(-radius, radius + 1):
            if di * di + dj * dj <= radius * radius:
                out &= padded[radius + di:radius + di + ny, radius + dj:radius + dj + nx]
    return out


# --------------------------------------------------------------------------------------------------------------------
# The Sionna RT side: runs in a worker process (or in this one with subprocess = false)
# --------------------------------------------------------------------------------------------------------------------
class RayTracerUnavailable(OSError):
    """Sionna RT cannot run here (not installed, no usable libLLVM, or its worker process died); an OSError so
    that the command line reports it in one line."""


def rt_ready() -> tuple[bool, str]:
    """Whether the ray tracer can run here, and if not why: ``sionna.rt`` importable and a libLLVM that
    Dr.Jit can use (it aborts the process with Debian's libLLVM 15)."""
    if not rt_available():
        return False, f"sionna.rt is not importable; {RT_INSTALL_HINT}"
    if os.environ.get("DRJIT_LIBLLVM_PATH") or os.path.exists(_LLVM19):
        return True, ""
    libdir = Path("/usr/lib/x86_64-linux-gnu")
    if libdir.is_dir() and not any(libdir.glob("libLLVM*.so*")):
        return True, ""  # no system libLLVM at all: Dr.Jit looks elsewhere (e.g. a Homebrew or conda LLVM)
    if any(libdir.glob("libLLVM*1[6-9]*")) or any(libdir.glob("libLLVM*2[0-9]*")):
        return True, ""
    return False, ("only an old libLLVM (< 16) is installed, with which Dr.Jit aborts the process; expected "
                   "libLLVM 19: `apt-get install -y libllvm19` (or set DRJIT_LIBLLVM_PATH)")


def _import_rt():
    """``sionna.rt`` with a libLLVM that Dr.Jit can use, or one clear error."""
    ok, why = rt_ready()
    if not ok:
        raise RayTracerUnavailable(f"backend 'sionna-rt': {why}")
    if "DRJIT_LIBLLVM_PATH" not in os.environ and os.path.exists(_LLVM19):
        os.environ["DRJIT_LIBLLVM_PATH"] = _LLVM19  # explicit: Dr.Jit could pick Debian's libLLVM 15 first
    import sionna.rt as rt

    return rt


_WORKER_SCENES: dict[str, Any] = {}


def _worker_scene(spec: dict) -> Any:
    """The loaded scene with its arrays and BS for ``spec`` (cached per process)."""
    key = repr(sorted(spec.items()))
    if key not in _WORKER_SCENES:
        rt = _import_rt()
        _WORKER_SCENES.clear()  # one scene at a time
        scene = rt.load_scene(spec["scene_file"])
        scene.frequency = spec["frequency"]
        scene.tx_array = rt.PlanarArray(num_rows=spec["num_rows"], num_cols=spec["num_cols"],
                                        vertical_spacing=spec["spacing_v"], horizontal_spacing=spec["spacing_h"],
                                        pattern=spec["pattern"], polarization="V")
        scene.rx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
        scene.add(rt.Transmitter("bs", position=list(spec["bs_position"]), orientation=list(spec["bs_orientation"])))
        _WORKER_SCENES[key] = scene
    return _WORKER_SCENES[key]


def _job_height_map(spec: dict, res: float) -> dict[str, np.ndarray]:
    """Height map of the scene: first hits of rays cast straight down on a ``res`` grid over its bounding box."""
    import mitsuba as mi

    scene = _worker_scene(spec)
    bb = scene.mi_scene.bbox()
    lo, hi = np.array(bb.min, dtype=np.float64), np.array(bb.max, dtype=np.float64)
    nx, ny = max(1, int(math.ceil((hi[0] - lo[0]) / res))), max(1, int(math.ceil((hi[1] - lo[1]) / res)))
    xs = lo[0] + (np.arange(nx) + 0.5) * res  # [nx]
    ys = lo[1] + (np.arange(ny) + 0.5) * res  # [ny]
    gx, gy = np.meshgrid(xs, ys, indexing="xy")  # [ny, nx]
    n = gx.size
    origin = mi.Point3f(gx.ravel().astype(np.float32), gy.ravel().astype(np.float32),
                        np.full(n, hi[2] + 1.0, dtype=np.float32))
    down = mi.Vector3f(np.zeros(n, np.float32), np.zeros(n, np.float32), -np.ones(n, np.float32))
    si = scene.mi_scene.ray_intersect(mi.Ray3f(origin, down))
    z = np.where(np.array(si.is_valid()), np.array(si.p.z), np.nan).astype(np.float32).reshape(ny, nx)
    return {"x0": np.float64(lo[0]), "y0": np.float64(lo[1]), "z": z}


def _job_trace(spec: dict, solver: dict, positions: np.ndarray, velocities: np.ndarray) -> dict[str, np.ndarray]:
    """Trace receivers at ``positions [K, 3]`` moving at ``velocities [K, 3]`` (scene frame).

    Returns ``a [K, N, P]`` complex64 (baseband coefficients ``a e^{-j2π f_c τ}``, absolute delays), ``tau [K, P]``
    float32 [s], ``doppler [K, P]`` float32 [Hz], ``valid [K, P]`` and ``los [K]`` bool; invalid paths have
    ``a = 0``, ``tau = 0``, ``doppler = 0``.
    """
    rt = _import_rt()
    scene = _worker_scene(spec)
    for name in list(scene.receivers):
        scene.remove(name)
    for k in range(len(positions)):  # NumPy float64 must go through .tolist() (Mitsuba's Point3f)
        scene.add(rt.Receiver(f"ue{k}", position=positions[k].tolist(), velocity=velocities[k].tolist()))
    paths = rt.PathSolver()(scene, max_depth=solver["max_depth"], samples_per_src=solver["samples_per_src"],
                            los=True, specular_reflection=True, diffuse_reflection=False, refraction=False,
                            diffraction=solver["diffraction"], seed=solver["seed"])
    a, tau = paths.cir(normalize_delays=False, out_type="numpy")  # [K, 1, 1, N, P, 1], [K, 1, P]
    a = np.asarray(a)[:, 0, 0, :, :, 0]  # [K, N, P]
    tau = np.asarray(tau)[:, 0, :]  # [K, P]
    valid = np.asarray(paths.valid.numpy())[:, 0, :].astype(bool)  # [K, P]
    doppler = np.asarray(paths.doppler.numpy())[:, 0, :]  # [K, P]
    inter = np.asarray(paths.interactions.numpy())  # [depth, K, 1, P]; 0 = none
    no_interaction = (inter[:, :, 0, :] == 0).all(axis=0) if inter.size else np.ones_like(valid)  # [K, P]
    los = (valid & no_interaction).any(axis=-1)  # [K]
    a = np.where(valid[:, None, :], a, 0).astype(np.complex64)
    tau = np.where(valid, tau, 0).astype(np.float32)
    doppler = np.where(valid, doppler, 0).astype(np.float32)
    for name in list(scene.receivers):
        scene.remove(name)
    return {"a": a, "tau": tau, "doppler": doppler, "valid": valid, "los": los}


# --------------------------------------------------------------------------------------------------------------------
# The evolution between traces (torch, in the calling process)
# --------------------------------------------------------------------------------------------------------------------
def evolve_trace(a: Tensor, tau: Tensor, doppler: Tensor, dt: Tensor, freqs: Tensor | None = None) -> Tensor:
    """The channel of traced paths evolved by their Doppler phases over ``dt`` seconds.

    ``a [..., N, P]`` complex, ``tau [..., P]`` [s], ``doppler [..., P]`` [Hz], ``dt [...]`` [s] (broadcast
    together); returns ``Σ_p a_p e^{j2π f_D,p dt}`` as ``[..., N]``, or with ``freqs [F]`` (subcarrier offsets,
    Hz) ``Σ_p a_p e^{j2π f_D,p dt} e^{-j2π f τ_p}`` as ``[..., F, N]``: Sionna's ``cir`` / ``cfr`` time evolution.
    """
    phase = 2 * math.pi * doppler.double() * dt.double()[..., None]  # [..., P]
    coef = a * torch.polar(torch.ones_like(phase), phase).to(a.dtype)[..., None, :]  # [..., N, P]
    if freqs is None:
        return coef.sum(-1)  # [..., N]
    fphase = -2 * math.pi * tau.double()[..., :, None] * freqs.double()  # [..., P, F]
    e = torch.polar(torch.ones_like(fphase), fphase).to(a.dtype)
    return torch.matmul(coef, e).transpose(-1, -2)  # [..., N, F] -> [..., F, N]


# --------------------------------------------------------------------------------------------------------------------
# The back-end
# --------------------------------------------------------------------------------------------------------------------
_JOBS: dict[str, Callable[..., dict[str, np.ndarray]]] = {"height_map": _job_height_map, "trace": _job_trace}


class _Solver:
    """Runs the Sionna RT jobs, in one worker process started on the first cache miss, or in this process.

    The worker is ``python -m beamattn.wireless.channels.sionna_rt --worker``, fed length-prefixed pickles of
    (job name, arguments) on its stdin; it answers on a duplicate of its original stdout (anything Dr.Jit prints
    goes to stderr). Unlike ``multiprocessing``'s spawn it never re-imports the caller's ``__main__``. Only this
    package's own job tuples cross the pipe: nothing read from a user's files is unpickled.
    """

    def __init__(self, subprocess: bool) -> None:
        self.subprocess = subprocess
        self.proc: _subprocess.Popen | None = None

    def __call__(self, job: str, *args: Any) -> dict[str, np.ndarray]:
        if not self.subprocess:
            return _JOBS[job](*args)
        if self.proc is None:
            self.proc = _subprocess.Popen([sys.executable, "-m", __name__, "--worker"], stdin=_subprocess.PIPE,
                                          stdout=_subprocess.PIPE)
        try:
            _send(self.proc.stdin, (job, args))
            status, payload = _receive(self.proc.stdout)
        except (BrokenPipeError, EOFError):
            code = self.proc.wait()
            self.proc = None
            raise RayTracerUnavailable(f"backend 'sionna-rt': the ray-tracing worker exited with code {code} during "
                                       f"job {job!r} (134: Dr.Jit aborted, usually a libLLVM it cannot use: "
                                       "`apt-get install -y libllvm19`); its messages are above") from None
        if status == "error":  # e.g. a scene file Mitsuba cannot load: the first line of its message
            first = next((line for line in str(payload).splitlines() if line.strip()), "")[:300]
            raise ValueError(f"backend 'sionna-rt': job {job!r} failed in the ray-tracing worker: {first}")
        return payload

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            finally:
                self.proc.wait()
                self.proc = None


def _send(stream: Any, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream: Any) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    (size,) = struct.unpack("<Q", head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def _worker_main() -> None:
    """The worker loop: jobs in on stdin, results out on the original stdout, everything else to stderr."""
    try:  # Linux: die with the parent (a killed run must not leave a solver running)
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # C-level prints (Dr.Jit, Mitsuba) must not corrupt the result stream
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    while True:
        try:
            job, args = _receive(inp)
        except EOFError:
            return
        try:
            result = ("ok", _JOBS[job](*args))
        except Exception as e:  # reported to the caller as one line
            result = ("error", f"{type(e).__name__}: {e}")
        _send(out, result)


class SionnaRTChannel:
    """Ray-traced drops on a Sionna RT scene as a :class:`ChannelBackend` (see the module docstring).

    ``cache``: a :class:`~.rt_cache.TraceCache` (default: ``$BEAMATTN_RT_CACHE`` or ``~/.cache/beamattn/rt``).
    After :meth:`generate`, ``last_stats`` says how many solves, cache hits and rejected tracks it took, and
    ``last_tracks`` holds the drops' start positions and velocities ``([B, 3], [B, 3])`` in the scene frame in
    float64 (``positions`` are float32 in the array frame: ~1e-5 m off, a few hundredths of a radian at 28 GHz).
    """

    def __init__(self, config: SionnaRTConfig | None = None, cache: TraceCache | None = None) -> None:
        config = SionnaRTConfig() if config is None else config
        if not isinstance(config, SionnaRTConfig):
            raise TypeError(f"SionnaRTChannel: config has type {type(config).__name__}; expected SionnaRTConfig")
        self.config = config
        self.array = config.array
        self.carrier_frequency = float(config.carrier_frequency)
        self.cache = TraceCache() if cache is None else cache
        self.rotation = bs_rotation(config.bs_orientation)  # [3, 3] array frame -> scene frame
        self._height_map: HeightMap | None = None
        self.last_stats: dict[str, int] = {}
        self.last_tracks: tuple[np.ndarray, np.ndarray] | None = None
        xml = scene_file(config.scene)
        if not xml.is_file():
            raise ValueError(f"SionnaRTConfig: field 'scene' = {config.scene!r}: scene file {xml} not found")
        self._xml = xml
        self._scene_digest: str | None = None

    # ---- keys and jobs ------------------------------------------------------------------------------------------
    def _spec(self) -> dict:
        c = self.config
        return {"scene_file": str(self._xml), "frequency": float(c.carrier_frequency), "num_rows": c.array.num_rows,
                "num_cols": c.array.num_cols, "spacing_v": float(c.array.spacing_v),
                "spacing_h": float(c.array.spacing_h), "pattern": c.antenna_pattern,
                "bs_position": c.bs_position.tolist(), "bs_orientation": c.bs_orientation.tolist()}

    def _solver_settings(self) -> dict:
        c = self.config
        return {"max_depth": c.max_depth, "samples_per_src": c.samples_per_src, "diffraction": c.diffraction,
                "seed": c.solver_seed}

    def _key_settings(self) -> dict:
        if self._scene_digest is None:
            self._scene_digest = files_digest(_scene_files(self._xml))
        spec = {k: v for k, v in self._spec().items() if k != "scene_file"}  # the content, not where it lies
        return {"scene_sha256": self._scene_digest, **spec, **self._solver_settings(), "sionna_rt": _rt_version()}

    def _cached(self, kind: str, settings: dict, arrays: dict[str, np.ndarray], solve: _Solver, job: str,
                *args: Any) -> dict[str, np.ndarray]:
        key = cache_key({"kind": kind, **settings}, arrays)
        hit = self.cache.get(key)
        if hit is not None:
            self.last_stats["cache_hits"] = self.last_stats.get("cache_hits", 0) + 1
            return hit
        out = solve(job, *args)
        self.last_stats["solves"] = self.last_stats.get("solves", 0) + 1
        self.cache.put(key, out)
        return out

    def height_map(self, solve: _Solver | None = None) -> HeightMap:
        """The scene's height map (cached on disk and in this object)."""
        if self._height_map is None:
            own = solve is None
            solve = _Solver(self.config.subprocess) if own else solve
            try:
                settings = {"scene_sha256": self._key_settings()["scene_sha256"], "res": self.config.map_resolution}
                out = self._cached("height_map", settings, {}, solve, "height_map", self._spec(),
                                   self.config.map_resolution)
            finally:
                if own:
                    solve.close()
            z = out["z"]
            if not np.isfinite(z).any():
                raise ValueError(f"SionnaRTConfig: field 'scene' = {self.config.scene!r}: no surface below the "
                                 "scene's bounding box; expected a scene with a ground")
            self._height_map = HeightMap(float(out["x0"]), float(out["y0"]), self.config.map_resolution, z,
                                         float(np.nanmin(z)))
        return self._height_map

    def trace(self, positions: np.ndarray, velocities: np.ndarray, solve: _Solver | None = None
              ) -> dict[str, np.ndarray]:
        """Traced paths at ``positions [K, 3]`` with ``velocities [K, 3]`` (scene frame, m and m/s), from the cache
        or one solve: the arrays of :func:`_job_trace`."""
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        velocities = np.ascontiguousarray(velocities, dtype=np.float64)
        own = solve is None
        solve = _Solver(self.config.subprocess) if own else solve
        try:
            return self._cached("trace", self._key_settings(), {"positions": positions, "velocities": velocities},
                                solve, "trace", self._spec(), self._solver_settings(), positions, velocities)
        finally:
            if own:
                solve.close()

    # ---- drops --------------------------------------------------------------------------------------------------
    def to_scene(self, positions: Tensor | np.ndarray) -> np.ndarray:
        """Positions in the BS's array frame ``[..., 3]`` -> scene coordinates (the inverse of ``generate``'s)."""
        p = np.asarray(positions.cpu() if isinstance(positions, Tensor) else positions, dtype=np.float64)
        return p @ self.rotation.T + self.config.bs_position

    def _draw_tracks(self, hm: HeightMap, clear: np.ndarray, rng: np.random.Generator, n: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` track starts ``[n, 3]`` and velocities ``[n, 3]`` (scene frame) that stay on the cleared ground."""
        c = self.config
        length = c.speed * (c.num_time_steps - 1) * c.sample_interval
        s = np.linspace(0.0, length, max(2, int(math.ceil(length / (hm.res / 2))) + 1))  # [S] checks along the track
        ii, jj = np.nonzero(clear)
        yaw = c.bs_orientation[0]
        starts, heads = [], []
        found = 0
        for _ in range(200):
            m = 4096
            pick = rng.integers(len(ii), size=m)
            xy0 = np.stack([hm.x0 + (jj[pick] + rng.uniform(size=m)) * hm.res,
                            hm.y0 + (ii[pick] + rng.uniform(size=m)) * hm.res], -1)  # [m, 2]
            head = rng.uniform(0.0, 2 * math.pi, size=m)  # [m]
            u = np.stack([np.cos(head), np.sin(head)], -1)  # [m, 2]
            pts = xy0[:, None, :] + s[None, :, None] * u[:, None, :]  # [m, S, 2]
            i, j, inside = hm.cells(pts)
            ok = (inside & clear[i, j]).all(-1)
            rel = pts - c.bs_position[:2]  # [m, S, 2]
            dist = np.hypot(rel[..., 0], rel[..., 1])
            ok &= ((dist >= c.min_distance) & (dist <= c.max_distance)).all(-1)
            if c.sector_half_width_deg < 180:
                off = np.angle(np.exp(1j * (np.arctan2(rel[..., 1], rel[..., 0]) - yaw)))  # [m, S] wrapped
                ok &= (np.abs(off) <= math.radians(c.sector_half_width_deg)).all(-1)
            starts.append(xy0[ok])
            heads.append(head[ok])
            found += int(ok.sum())
            if found >= n:
                break
        if found < n:
            raise ValueError(f"SionnaRTConfig: no room for tracks of {length:.1f} m on the ground of scene "
                             f"{c.scene!r} within min_distance {c.min_distance} .. max_distance {c.max_distance} m "
                             f"of the BS (sector ±{c.sector_half_width_deg}°); expected a larger 'max_distance', a "
                             "shorter 'duration' or a smaller 'street_clearance'")
        xy0, head = np.concatenate(starts)[:n], np.concatenate(heads)[:n]
        z = np.full(n, hm.ground_z + c.ut_height)
        start = np.concatenate([xy0, z[:, None]], -1)  # [n, 3]
        vel = c.speed * np.stack([np.cos(head), np.sin(head), np.zeros(n)], -1)  # [n, 3]
        return start, vel

    def _trace_times(self) -> np.ndarray:
        c = self.config
        k = c.num_traces
        total = (c.num_time_steps - 1) * c.sample_interval
        return np.linspace(0.0, total, k) if k > 1 else np.zeros(1)  # [K]

    def generate(self, num_drops: int, seed: int, device: torch.device | str = "cpu") -> ChannelSample:
        """``num_drops`` ray-traced tracks of ``config.num_time_steps`` samples each (see the module docstring)."""
        if isinstance(num_drops, bool) or not isinstance(num_drops, int) or num_drops < 1:
            raise ValueError(f"generate: argument 'num_drops' = {num_drops!r}; expected an integer >= 1")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"generate: argument 'seed' = {seed!r}; expected an integer in [0, 2**63)")
        c = self.config
        self.last_stats = {"solves": 0, "cache_hits": 0, "rejected_tracks": 0}
        tt = self._trace_times()  # [K]
        k_num = len(tt)
        probe = sorted({0, k_num // 2, k_num - 1})  # traced positions checked before a full trace
        rng = np.random.default_rng(seed)
        starts, vels, traces = [], [], []
        with self._session() as solve:
            hm = self.height_map(solve)
            clear = _erode(hm.ground, int(math.ceil(c.street_clearance / hm.res)))
            for _ in range(_MAX_ROUNDS):
                need = num_drops - len(starts)
                s0, v0 = self._draw_tracks(hm, clear, rng, 3 * need + 4)  # [n, 3] each
                pos = s0[:, None, :] + tt[None, :, None] * v0[:, None, :]  # [n, K, 3]
                vel = np.broadcast_to(v0[:, None, :], pos.shape)
                pr = self.trace(pos[:, probe].reshape(-1, 3), vel[:, probe].reshape(-1, 3), solve)
                ok = pr["valid"].any(-1).reshape(len(s0), len(probe)).all(-1)  # [n]
                pick = np.nonzero(ok)[0][:need + max(2, need // 4)]
                self.last_stats["rejected_tracks"] += int((~ok).sum())
                if len(pick) == 0:
                    continue
                full = self.trace(pos[pick].reshape(-1, 3), vel[pick].reshape(-1, 3), solve)
                full = {k: v.reshape(len(pick), k_num, *v.shape[1:]) for k, v in full.items()}
                has_path = full["valid"].any(-1).all(-1)  # [n_pick]: a path at every traced position
                self.last_stats["rejected_tracks"] += int((~has_path).sum())
                for r in np.nonzero(has_path)[0][:need]:
                    starts.append(s0[pick[r]])
                    vels.append(v0[pick[r]])
                    traces.append({k: v[r] for k, v in full.items()})
                if len(starts) == num_drops:
                    break
            else:
                raise ValueError(f"SionnaRTConfig: only {len(starts)} of {num_drops} drops found with a path at every "
                                 f"traced position after {_MAX_ROUNDS} rounds of candidate tracks on scene "
                                 f"{c.scene!r}; expected diffraction = true, a BS position with a wider view (bs_x, "
                                 "bs_y, bs_z) or a smaller 'max_distance'")
        self.last_tracks = (np.stack(starts), np.stack(vels))
        return self._assemble(*self.last_tracks, traces, tt, device)

    @contextmanager
    def _session(self) -> Iterator[_Solver]:
        solve = _Solver(self.config.subprocess)
        try:
            yield solve
        finally:
            solve.close()

    def _assemble(self, starts: np.ndarray, vels: np.ndarray, traces: list[dict], tt: np.ndarray,
                  device: torch.device | str) -> ChannelSample:
        """Evolve and cross-fade the traces of each drop onto the sample times (see the module docstring)."""
        c = self.config
        b, t_num, k_num = len(starts), c.num_time_steps, len(tt)
        p_max = max(1, max(tr["a"].shape[-1] for tr in traces))

        def pad(x: np.ndarray) -> np.ndarray:  # paths of all drops on one axis; padding paths have a = 0
            return np.concatenate([x, np.zeros((*x.shape[:-1], p_max - x.shape[-1]), x.dtype)], -1)

        a = torch.from_numpy(np.stack([pad(tr["a"]) for tr in traces]))  # [B, K, N, P] complex64
        tau = torch.from_numpy(np.stack([pad(tr["tau"]) for tr in traces]))  # [B, K, P]
        fd = torch.from_numpy(np.stack([pad(tr["doppler"]) for tr in traces]))  # [B, K, P]
        los_k = torch.from_numpy(np.stack([tr["los"] for tr in traces]))  # [B, K]
        times = torch.arange(t_num, dtype=torch.float64) * c.sample_interval  # [T]
        freqs = None
        if c.num_subcarriers is not None:
            from sionna.phy.channel import subcarrier_frequencies

            freqs = subcarrier_frequencies(c.num_subcarriers, c.subcarrier_spacing, precision="double",
                                           device="cpu")  # [F]
        ttt = torch.from_numpy(tt)  # [K]
        if k_num == 1:
            h = evolve_trace(a[:, [0] * t_num], tau[:, [0] * t_num], fd[:, [0] * t_num], times.expand(b, t_num),
                             freqs)  # [B, T, (F,) N]
            nearest = torch.zeros(t_num, dtype=torch.long)
        else:
            step = tt[1] - tt[0]
            k0 = torch.clamp(torch.floor(times / step + 1e-9).long(), 0, k_num - 2)  # [T] trace before t
            k1 = k0 + 1
            w = ((times - ttt[k0]) / step).clamp(0, 1)  # [T]
            h0 = evolve_trace(a[:, k0], tau[:, k0], fd[:, k0], (times - ttt[k0]).expand(b, t_num), freqs)
            h1 = evolve_trace(a[:, k1], tau[:, k1], fd[:, k1], (times - ttt[k1]).expand(b, t_num), freqs)
            wb = w.view(1, t_num, *([1] * (h0.dim() - 2))).to(torch.float32)
            h = (1 - wb) * h0 + wb * h1  # [B, T, (F,) N]
            nearest = torch.where(w < 0.5, k0, k1)  # [T]
        dims = tuple(range(1, h.dim()))  # time, (subcarriers,) antennas
        power = h.abs().square().mean(dim=dims[1:])  # [B, T]
        if not bool((power > 0).all()):  # guarded by the track selection: never a silent h = 0
            bad = (power <= 0).nonzero()[0].tolist()
            raise RuntimeError(f"sionna-rt: drop {bad[0]} has a zero channel at sample {bad[1]} although every traced "
                               "position has a path; please report this scene and configuration")
        if c.normalization == "per-drop":
            h = h / torch.sqrt(h.abs().square().mean(dim=dims, keepdim=True))
        h = check_channel(h.to(torch.complex64))
        scene_pos = starts[:, None, :] + times.numpy()[None, :, None] * vels[:, None, :]  # [B, T, 3] scene frame
        positions = (scene_pos - c.bs_position) @ self.rotation  # [B, T, 3] array frame: R^T (p - bs)
        dev = torch.device(device)
        return ChannelSample(h=h.to(dev), positions=torch.from_numpy(positions).float().to(dev),
                             times=times.float().to(dev), los=los_k[:, nearest].to(dev),
                             subcarrier_frequencies=None if freqs is None else freqs.float().to(dev))


def _rt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sionna-rt")
    except PackageNotFoundError:
        return "none"


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker_main()
