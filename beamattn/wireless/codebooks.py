"""Beam codebooks at the base station: DFT grids, wide beams, user codebooks, gains.

Conventions (see ``arrays.py``): the received signal is ``y = hᵀ w x`` (no
conjugate), so the gain of beam ``w`` on channel ``h`` is ``|hᵀ w|²`` and a
beam points at direction ``u`` when ``w ∝ conj(a(u))`` with
``a_n(u) = exp(j 2 pi u · r_n)``. Every beam has unit norm (fixed transmit
power), so the gain of a beam on a line-of-sight channel ``h = a(u)`` is at most
``||a(u)||² = N``.

DFT beams are the same as Sionna's ``sionna.phy.mimo.grid_of_beams_dft_ula``
and ``grid_of_beams_dft`` (same beams, same order; checked in tests). Their
pointing directions follow from ``hᵀ w``: for a horizontal beam index ``m`` out
of ``M = N O``, the wrapped spatial frequency is ``nu_m = m / M`` for
``m <= M // 2`` and ``(m - M) / M`` otherwise, and the beam points at
``u_y = sin(phi) = -nu_m / spacing_h`` (Sionna's docstring states ``+2 nu_m``
because it assumes ``hᴴ w``; with ``hᵀ w`` the index is mirrored). For a UPA the
vertical index gives ``u_z = +nu_v / spacing_v`` (row index grows along -z).

This module never imports Sionna (importing it takes seconds).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from beamattn.wireless.arrays import AntennaArray, steering_vector, unit_vector

__all__ = [
    "Codebook",
    "dft_codebook",
    "dft_grid_shape",
    "dft_invisible_beams",
    "wide_codebook",
    "user_codebook",
    "beam_gains",
    "beam_gain",
    "mrt_beam",
    "beam_pattern",
]

_NORM_TOL = 1e-4  # allowed deviation of a beam's norm from 1


def _check_complex_dtype(dtype: torch.dtype, where: str) -> None:
    if dtype not in (torch.complex64, torch.complex128):
        raise TypeError(f"{where}: dtype = {dtype!r}; expected torch.complex64 or torch.complex128")


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.complex128 else torch.float32


@dataclass
class Codebook:
    """A set of ``M`` transmit beams for one antenna array.

    Args:
        beams: ``[M, N]`` complex, each row of unit norm within 1e-4 (fixed
            transmit power; checked).
        array: the array the beams are for (``N = array.num_ant``).
        name: a label, e.g. ``"dft"``, ``"wide"``, ``"user"``.
        directions: ``[M, 3]`` real, nominal pointing unit vectors (x, y, z) in
            the global frame of ``arrays.py``; NaN rows for beams whose nominal
            direction is not in visible space; ``None`` when unknown (user
            codebooks).
        children: for wide beams, ``children[i]`` lists the indices (into the
            narrow codebook the wide beams were built from) of the narrow beams
            wide beam ``i`` covers; ``None`` otherwise.
        grid: ``(M_v, M_h)`` when the beams form a 2-D DFT grid (a UPA's
            codebook, beam ``m = m_v·M_h + m_h``); ``None`` otherwise (ULA, user,
            wide, subsets).
    """

    beams: Tensor
    array: AntennaArray
    name: str
    directions: Tensor | None = None
    children: list[list[int]] | None = None
    grid: tuple[int, int] | None = None  # (M_v, M_h) of a UPA DFT grid of beams, beam m = m_v·M_h + m_h

    def __post_init__(self) -> None:
        if not isinstance(self.array, AntennaArray):
            raise TypeError(f"Codebook: field 'array' = {self.array!r}; expected an AntennaArray")
        if not isinstance(self.beams, Tensor) or not self.beams.is_complex():
            raise TypeError(
                f"Codebook: field 'beams' has type {type(self.beams).__name__}"
                f"{'' if not isinstance(self.beams, Tensor) else ' dtype ' + str(self.beams.dtype)}; "
                "expected a complex torch.Tensor"
            )
        n = self.array.num_ant
        if self.beams.ndim != 2 or self.beams.shape[0] < 1 or self.beams.shape[1] != n:
            raise ValueError(
                f"Codebook: field 'beams' has shape {tuple(self.beams.shape)}; expected [M, {n}] with M >= 1"
            )
        norms = torch.linalg.vector_norm(self.beams.detach().to(torch.complex128), dim=-1)  # [M]
        off = ~((norms - 1).abs() <= _NORM_TOL)  # [M] (NaN counts as off)
        if bool(off.any()):
            row = int(torch.nonzero(off)[0, 0])
            raise ValueError(
                f"Codebook: beam {row} has norm {float(norms[row]):.6g}; expected unit norm (within {_NORM_TOL:g})"
            )
        m = self.beams.shape[0]
        if self.directions is not None and tuple(self.directions.shape) != (m, 3):
            raise ValueError(
                f"Codebook: field 'directions' has shape {tuple(self.directions.shape)}; expected [{m}, 3] or None"
            )
        if self.children is not None and len(self.children) != m:
            raise ValueError(
                f"Codebook: field 'children' has {len(self.children)} entries; expected one per beam ({m}) or None"
            )

    @property
    def num_beams(self) -> int:
        """Number of beams ``M``."""
        return self.beams.shape[0]

    @property
    def num_ant(self) -> int:
        """Number of antennas ``N``."""
        return self.beams.shape[1]

    def subset(self, indices: Sequence[int] | Tensor, name: str | None = None) -> Codebook:
        """The codebook made of beams ``indices`` (in that order), e.g. a measured Set B.

        Indices must be distinct and in ``[0, M)``; at least one is required.
        ``directions`` and ``children`` follow the selection.
        """
        idx = torch.as_tensor(indices)
        if idx.ndim != 1 or idx.numel() == 0 or idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            raise ValueError(f"Codebook.subset: indices = {indices!r}; expected a non-empty 1-D sequence of integers")
        idx = idx.to(torch.long)
        bad = (idx < 0) | (idx >= self.num_beams)
        if bool(bad.any()):
            first = int(idx[bad][0])
            raise ValueError(
                f"Codebook.subset: index {first} out of range; expected 0 <= index < {self.num_beams}"
            )
        if torch.unique(idx).numel() != idx.numel():
            raise ValueError(f"Codebook.subset: indices = {idx.tolist()} contain duplicates; expected distinct indices")
        return Codebook(
            beams=self.beams[idx],  # [K, N]
            array=self.array,
            name=f"{self.name}[subset]" if name is None else name,
            directions=None if self.directions is None else self.directions[idx],  # [K, 3]
            children=None if self.children is None else [list(self.children[i]) for i in idx.tolist()],
        )

    def to(self, device: torch.device | str) -> Codebook:
        """The same codebook with ``beams`` (and ``directions``) on ``device``; ``self`` when already there.

        The copy is exact, so the unit-norm check is not repeated (it would read a value back from
        the device).
        """
        device = torch.device(device)
        if self.beams.device == device:
            return self
        moved = copy.copy(self)  # a shallow copy skips __post_init__
        moved.beams = self.beams.to(device)
        moved.directions = None if self.directions is None else self.directions.to(device)
        return moved


# --------------------------------------------------------------------------- DFT


def _wrapped_frequency(num: int) -> Tensor:
    """Wrapped spatial frequencies ``nu_m`` of the ``num`` DFT beams, ``[num]`` float64 (cycles/element)."""
    m = torch.arange(num, dtype=torch.float64)
    return torch.where(m <= num // 2, m / num, (m - num) / num)


def _parse_oversampling(array: AntennaArray, oversampling: int | tuple[int, int]) -> tuple[int, int]:
    def check(value: object, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"dft_codebook: {field} = {value!r}; expected an integer >= 1")
        return value

    if isinstance(oversampling, tuple):
        if len(oversampling) != 2:
            raise ValueError(f"dft_codebook: oversampling = {oversampling!r}; expected an int or a pair (o_v, o_h)")
        o_v = check(oversampling[0], "oversampling[0] (vertical)")
        o_h = check(oversampling[1], "oversampling[1] (horizontal)")
    else:
        o = check(oversampling, "oversampling")
        # An int applies to every dimension that has more than one element.
        o_v = o if array.num_rows > 1 else 1
        o_h = o if array.num_cols > 1 else 1
    if array.num_rows == 1 and o_v != 1:
        raise ValueError(
            f"dft_codebook: vertical oversampling = {o_v} with num_rows = 1; expected 1 (it would repeat every beam)"
        )
    if array.num_cols == 1 and o_h != 1:
        raise ValueError(
            f"dft_codebook: horizontal oversampling = {o_h} with num_cols = 1; expected 1 (it would repeat every beam)"
        )
    return o_v, o_h


def dft_grid_shape(array: AntennaArray, oversampling: int | tuple[int, int] = 1) -> tuple[int, int]:
    """``(M_v, M_h)``: the grid of beams :func:`dft_codebook` builds for ``array`` and ``oversampling``,
    validated as it validates them, without building the ``[M, N]`` beams (scenario checks at load time)."""
    if not isinstance(array, AntennaArray):
        raise TypeError(f"dft_grid_shape: array = {array!r}; expected an AntennaArray")
    o_v, o_h = _parse_oversampling(array, oversampling)
    return array.num_rows * o_v, array.num_cols * o_h


def dft_invisible_beams(array: AntennaArray, oversampling: int | tuple[int, int] = 1) -> int:
    """How many beams of ``dft_codebook(array, oversampling)`` point into invisible space (NaN directions),
    computed from the spatial frequencies alone (``[M]`` numbers, not the ``[M, N]`` beams)."""
    m_v, m_h = dft_grid_shape(array, oversampling)
    u_z = _wrapped_frequency(m_v) / array.spacing_v  # [Mv]
    u_y = _wrapped_frequency(m_h) / array.spacing_h  # [Mh]
    s2 = u_z[:, None] ** 2 + u_y[None, :] ** 2  # [Mv, Mh]
    return int((s2 > 1 + 1e-12).sum())


def dft_codebook(
    array: AntennaArray,
    oversampling: int | tuple[int, int] = 1,
    dtype: torch.dtype = torch.complex64,
) -> Codebook:
    """DFT grid of beams, identical to Sionna's (same beams, same order).

    ``oversampling`` is an int (applied to every dimension with more than one
    element) or a pair ``(o_v, o_h)``. With ``M_v = num_rows·o_v`` and
    ``M_h = num_cols·o_h``, beam ``m = m_v·M_h + m_h`` has coefficient
    ``exp(j 2 pi (row·m_v / M_v + col·m_h / M_h)) / sqrt(N)`` on element
    ``col·num_rows + row``. For a ULA (``num_rows == 1``) this is
    ``grid_of_beams_dft_ula(N, o_h)``; for a UPA it is
    ``grid_of_beams_dft(num_rows, num_cols, o_v, o_h).reshape(-1, N)``.

    The beams do not depend on the spacing; their pointing directions do:
    ``u_y = -nu_h / spacing_h``, ``u_z = +nu_v / spacing_v`` and
    ``u_x = sqrt(1 - u_y² - u_z²)`` (front half-space), with ``nu`` the wrapped
    spatial frequencies (module docstring). A beam whose ``u_y² + u_z² > 1``
    (possible when a spacing is below 1/2 wavelength) points into invisible
    space: its direction row is NaN. With spacing above 1/2 the direction given
    is the principal one (``|u_y| <= 0.5 / spacing_h``); grating lobes exist.

    Returns:
        Codebook with ``beams [M_v·M_h, N]`` (``dtype``) and ``directions
        [M_v·M_h, 3]`` (the matching real dtype).
    """
    if not isinstance(array, AntennaArray):
        raise TypeError(f"dft_codebook: array = {array!r}; expected an AntennaArray")
    _check_complex_dtype(dtype, "dft_codebook")
    o_v, o_h = _parse_oversampling(array, oversampling)
    rows, cols = array.num_rows, array.num_cols
    m_v_count, m_h_count = rows * o_v, cols * o_h

    # Phases reduced modulo one turn with exact integer arithmetic, then float64.
    k_v = (torch.arange(m_v_count)[:, None] * torch.arange(rows)[None, :]) % m_v_count  # [Mv, R]
    k_h = (torch.arange(m_h_count)[:, None] * torch.arange(cols)[None, :]) % m_h_count  # [Mh, C]
    cyc_v = k_v.to(torch.float64) / m_v_count  # [Mv, R] cycles
    cyc_h = k_h.to(torch.float64) / m_h_count  # [Mh, C] cycles
    cycles = cyc_v[:, None, None, :] + cyc_h[None, :, :, None]  # [Mv, Mh, C, R]
    phase = 2 * math.pi * cycles.reshape(m_v_count * m_h_count, cols * rows)  # [M, N] element = col*R + row
    beams = torch.polar(torch.ones_like(phase), phase) / math.sqrt(array.num_ant)  # [M, N] complex128

    nu_v = _wrapped_frequency(m_v_count)  # [Mv]
    nu_h = _wrapped_frequency(m_h_count)  # [Mh]
    u_z = (nu_v / array.spacing_v)[:, None].expand(m_v_count, m_h_count).reshape(-1)  # [M]
    u_y = (-nu_h / array.spacing_h)[None, :].expand(m_v_count, m_h_count).reshape(-1)  # [M]
    s2 = u_y**2 + u_z**2  # [M]
    u_x = torch.sqrt(torch.clamp(1 - s2, min=0.0))  # [M]
    directions = torch.stack([u_x, u_y, u_z], dim=-1)  # [M, 3]
    directions[s2 > 1 + 1e-12] = float("nan")  # invisible beams

    name = f"dft{rows}x{cols}_o{o_v}x{o_h}" if rows > 1 else f"dft{cols}_o{o_h}"
    return Codebook(
        beams=beams.to(dtype),
        array=array,
        name=name,
        directions=directions.to(_real_dtype(dtype)),
        grid=(m_v_count, m_h_count) if rows > 1 else None,
    )


# --------------------------------------------------------------------------- wide beams


def wide_codebook(
    array: AntennaArray,
    num_wide: int,
    narrow: Codebook,
    oversample_fit: int = 32,
    overlap: float = 0.5,
) -> Codebook:
    """Wide beams for hierarchical (wide → narrow) search on a horizontal ULA.

    The narrow beams are sorted by their horizontal spatial frequency
    ``psi = spacing·sin(phi) = spacing·u_y`` (wrapped to ``[-1/2, 1/2)``), which
    is azimuth order whenever ``spacing <= 1/2`` and, for DFT codebooks, at any
    spacing. The sorted list is cut into ``num_wide`` contiguous groups of
    ``M / num_wide`` beams; wide beam ``g`` covers group ``g`` and
    ``children[g]`` lists its narrow indices in azimuth order.

    Design: least-squares synthesis of a flat-top pattern. The array factor is
    periodic in ``psi`` with period 1, so the sectors tile one period: the
    boundary between two adjacent groups is the midpoint between their
    neighbouring narrow beams (the gap across ``psi = ±1/2`` is split the same
    way). Each sector is widened by ``overlap / N`` on both sides (adjacent
    targets overlap symmetrically, so the crossover stays at the boundary while
    the roll-off moves out of the sector: with 0.5 the worst-case gain between
    sectors improves from about -6 dB to about -1 dB relative to the flat top,
    and the ripple over the sector drops below about 1.1 dB; measured in tests).
    On ``K = oversample_fit·N`` points uniform in ``psi`` over one period
    (uniform in ``sin(phi)``), with ``A [K, N]`` the rows ``a(psi_k)ᵀ``, the beam
    is the least-squares solution ``w_g = argmin ||A w - t_g||`` (``= Aᴴ t_g / K``:
    the columns of ``A`` are orthogonal over a full period) normalised to unit norm, where ``t_g`` is 1 on
    the widened sector of group ``g`` and 0 elsewhere, including invisible
    ``psi`` (``|psi| > spacing``, which occurs when spacing < 1/2; fitting there
    too keeps the problem well conditioned). The target has zero phase w.r.t.
    the array centre. ``directions[g]`` is the direction halfway (in ``psi``)
    between the first and last child.

    Args:
        array: a horizontal ULA (``num_rows == 1``); a UPA raises ValueError.
        num_wide: number of wide beams; must divide ``narrow.num_beams``.
        narrow: the narrow codebook for ``array``, with finite ``directions``.
        oversample_fit: fit points per antenna (>= 2).
        overlap: widening of each sector on each side, in units of ``1/N``
            (the array's resolution in ``psi``); ``0 <= overlap <= 2``.

    Returns:
        Codebook with ``beams [num_wide, N]`` (dtype of ``narrow.beams``),
        ``directions [num_wide, 3]`` and ``children``.
    """
    if not isinstance(array, AntennaArray):
        raise TypeError(f"wide_codebook: array = {array!r}; expected an AntennaArray")
    if array.num_rows != 1:
        raise ValueError(
            f"wide_codebook: array has num_rows = {array.num_rows}; expected a horizontal ULA (num_rows = 1)"
        )
    if not isinstance(narrow, Codebook):
        raise TypeError(f"wide_codebook: narrow = {type(narrow).__name__}; expected a Codebook")
    if narrow.array != array:
        raise ValueError(f"wide_codebook: narrow.array = {narrow.array!r}; expected the same array {array!r}")
    if narrow.directions is None or not bool(torch.isfinite(narrow.directions).all()):
        raise ValueError(
            "wide_codebook: narrow.directions is None or has NaN rows (invisible beams); "
            "expected finite directions (take a subset of visible beams first)"
        )
    m = narrow.num_beams
    if isinstance(num_wide, bool) or not isinstance(num_wide, int) or num_wide < 1 or m % num_wide != 0:
        raise ValueError(
            f"wide_codebook: num_wide = {num_wide!r}; expected a positive integer dividing narrow.num_beams = {m}"
        )
    if isinstance(oversample_fit, bool) or not isinstance(oversample_fit, int) or oversample_fit < 2:
        raise ValueError(f"wide_codebook: oversample_fit = {oversample_fit!r}; expected an integer >= 2")

    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap <= 2:
        raise ValueError(f"wide_codebook: overlap = {overlap!r}; expected a number in [0, 2] (units of 1/N)")

    d = array.spacing_h
    n = array.num_ant
    per = m // num_wide

    psi = narrow.directions[:, 1].to(torch.float64) * d  # [M] cycles per element
    eps = 1e-6  # rounding guard: psi = +1/2 - tiny is the same beam as psi = -1/2
    psi = torch.remainder(psi + 0.5 + eps, 1.0) - 0.5 - eps  # [M] wrapped to [-1/2 - eps, 1/2 - eps)
    order = torch.argsort(psi, stable=True)  # [M] azimuth order
    psi_sorted = psi[order]  # [M]
    groups = order.reshape(num_wide, per)  # [G, per] narrow indices
    first = psi_sorted.reshape(num_wide, per)[:, 0]  # [G]
    last = psi_sorted.reshape(num_wide, per)[:, -1]  # [G]

    # Sector boundaries over one period [lo, lo + 1).
    wrap_gap = first[0] + 1 - last[-1]
    lo = first[0] - wrap_gap / 2
    inner = (last[:-1] + first[1:]) / 2  # [G-1]

    # Sector g is [bounds[g], bounds[g+1]) on the circle, widened by `overlap / N` on each side.
    bounds = torch.cat([lo.reshape(1), inner, (lo + 1).reshape(1)])  # [G+1]
    start = bounds[:-1] - overlap / n  # [G]
    width = bounds[1:] - bounds[:-1] + 2 * overlap / n  # [G]

    # Fit points uniform in psi over one period; the target is 0 where psi is not visible.
    k = oversample_fit * n
    psi_fit = -0.5 + (torch.arange(k, dtype=torch.float64) + 0.5) / k  # [K]
    rel = torch.remainder(psi_fit[:, None] - start[None, :], 1.0)  # [K, G] position inside sector
    visible = psi_fit.abs() <= d  # [K]
    mask = (rel < width[None, :]) & visible[:, None]  # [K, G]
    # Centred positions give a(psi + 1) = a(psi) · exp(-j pi (N - 1)): the sign that keeps the
    # zero-phase target consistent where a sector crosses psi = ±1/2.
    turns = torch.round(psi_fit[:, None] - (start[None, :] + rel))  # [K, G] integers
    sign = torch.cos(math.pi * (n - 1) * turns)  # [K, G] ±1
    target = (mask.to(torch.float64) * sign).to(torch.complex128)  # [K, G]

    # Rows a(psi)ᵀ, a_n = exp(j 2 pi psi (n - (N-1)/2)): steering_vector() at u_y = psi / spacing,
    # extended to invisible psi (needed to keep the fit well conditioned when spacing < 1/2).
    offsets = torch.arange(n, dtype=torch.float64) - (n - 1) / 2  # [N]
    phase = 2 * math.pi * psi_fit[:, None] * offsets[None, :]  # [K, N]
    a_fit = torch.polar(torch.ones_like(phase), phase)  # [K, N]
    # The columns of A are orthogonal over a full, uniformly sampled period (AᴴA = K·I since
    # K > N), so the least-squares solution is w = Aᴴ t / K: Fourier coefficients of the target.
    w = a_fit.conj().T @ target / k  # [N, G]
    beams = (w / torch.linalg.vector_norm(w, dim=0, keepdim=True)).T  # [G, N]

    directions = _horizontal_directions((first + last) / 2 / d)  # [G, 3]
    return Codebook(
        beams=beams.to(narrow.beams.dtype),
        array=array,
        name=f"wide{num_wide}({narrow.name})",
        directions=directions.to(narrow.directions.dtype),
        children=[[int(i) for i in row] for row in groups.tolist()],
    )


def _horizontal_directions(u_y: Tensor) -> Tensor:
    """Unit vectors in the horizontal plane, front half-space, from ``u_y = sin(phi)``: ``[..., 3]``."""
    u_y = torch.clamp(u_y, -1.0, 1.0)
    u_x = torch.sqrt(1 - u_y**2)
    return torch.stack([u_x, u_y, torch.zeros_like(u_y)], dim=-1)


# --------------------------------------------------------------------------- user codebooks


def user_codebook(
    beams: Tensor | np.ndarray | Sequence,
    array: AntennaArray,
    *,
    normalize: bool = False,
    name: str = "user",
    dtype: torch.dtype = torch.complex64,
) -> Codebook:
    """A codebook from user-given beams, validated.

    ``beams`` is a tensor or array-like of numbers (real or complex), shape
    ``[M, N]`` with ``M >= 1`` and ``N == array.num_ant``, all finite. Each row
    must have unit norm within 1e-4 (transmit power is fixed): otherwise a
    ValueError names the first offending row and its norm — unless
    ``normalize=True``, in which case every row is rescaled to unit norm and a
    warning says how many rows were rescaled. A zero row is always rejected
    (it has no direction to keep). Rows are checked in float64 before the cast
    to ``dtype``. ``directions`` is None.
    """
    if not isinstance(array, AntennaArray):
        raise TypeError(f"user_codebook: array = {array!r}; expected an AntennaArray")
    _check_complex_dtype(dtype, "user_codebook")
    try:
        t = torch.as_tensor(np.asarray(beams)) if not isinstance(beams, Tensor) else beams
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"user_codebook: beams of type {type(beams).__name__} cannot be read as numbers: {err}") from err
    integer = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
    if not (t.is_complex() or t.is_floating_point() or t.dtype in integer):
        raise TypeError(f"user_codebook: beams have dtype {t.dtype}; expected real or complex numbers")
    n = array.num_ant
    if t.numel() == 0:
        raise ValueError(f"user_codebook: beams is empty (shape {tuple(t.shape)}); expected at least one beam [M >= 1, {n}]")
    if t.ndim != 2:
        raise ValueError(f"user_codebook: beams have shape {tuple(t.shape)}; expected [M, {n}]")
    if t.shape[1] != n:
        raise ValueError(
            f"user_codebook: beams have {t.shape[1]} columns (shape {tuple(t.shape)}); "
            f"expected N = array.num_ant = {n}"
        )
    t = t.to(torch.complex128)  # [M, N]
    finite = torch.isfinite(t.real) & torch.isfinite(t.imag)  # [M, N]
    if not bool(finite.all()):
        row = int(torch.nonzero(~finite.all(dim=1))[0, 0])
        raise ValueError(f"user_codebook: beam {row} has non-finite entries (NaN or inf); expected finite values")
    norms = torch.linalg.vector_norm(t, dim=1)  # [M]
    zero = norms == 0
    if bool(zero.any()):
        row = int(torch.nonzero(zero)[0, 0])
        raise ValueError(f"user_codebook: beam {row} is all zeros; expected a non-zero beam of unit norm")
    off = (norms - 1).abs() > _NORM_TOL  # [M]
    if bool(off.any()):
        if not normalize:
            row = int(torch.nonzero(off)[0, 0])
            raise ValueError(
                f"user_codebook: beam {row} has norm {float(norms[row]):.6g}; expected unit norm "
                f"(within {_NORM_TOL:g}); pass normalize=True to rescale"
            )
        warnings.warn(
            f"user_codebook: rescaled {int(off.sum())} of {t.shape[0]} beams to unit norm", stacklevel=2
        )
    if normalize:
        t = t / norms[:, None]  # [M, N]
    return Codebook(beams=t.to(dtype), array=array, name=name, directions=None)


# --------------------------------------------------------------------------- gains


def _promote(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    dtype = torch.promote_types(a.dtype, b.dtype)
    if not dtype.is_complex:
        dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    return a.to(dtype), b.to(dtype)


def beam_gains(h: Tensor, beams: Tensor) -> Tensor:
    """Gain ``|hᵀ w_m|²`` of every beam: ``h [..., N]``, ``beams [M, N]`` → ``[..., M]`` (real).

    Pass ``Codebook.beams``. Dtypes are promoted (complex64 with complex128 gives
    float64 gains).
    """
    if not isinstance(h, Tensor) or not isinstance(beams, Tensor):
        raise TypeError(
            f"beam_gains: h, beams have types {type(h).__name__}, {type(beams).__name__}; expected torch.Tensor"
        )
    if beams.ndim != 2:
        raise ValueError(f"beam_gains: beams have shape {tuple(beams.shape)}; expected [M, N]")
    if h.ndim < 1 or h.shape[-1] != beams.shape[-1]:
        raise ValueError(
            f"beam_gains: h has shape {tuple(h.shape)}; expected [..., {beams.shape[-1]}] to match beams [M, N]"
        )
    h, beams = _promote(h, beams)
    return torch.matmul(h, beams.T).abs() ** 2  # [..., M]


def beam_gain(h: Tensor, w: Tensor) -> Tensor:
    """Gain ``|Σ_n h_n w_n|²`` of one beam per channel: ``h [..., N]``, ``w [..., N]`` → ``[...]``.

    ``h`` and ``w`` broadcast over the leading dimensions.
    """
    if not isinstance(h, Tensor) or not isinstance(w, Tensor):
        raise TypeError(f"beam_gain: h, w have types {type(h).__name__}, {type(w).__name__}; expected torch.Tensor")
    if h.ndim < 1 or w.ndim < 1 or h.shape[-1] != w.shape[-1]:
        raise ValueError(
            f"beam_gain: h has shape {tuple(h.shape)} and w {tuple(w.shape)}; expected the same last dimension N"
        )
    h, w = _promote(h, w)
    return (h * w).sum(dim=-1).abs() ** 2  # [...]


def mrt_beam(h: Tensor) -> Tensor:
    """Maximum-ratio transmission beam ``conj(h) / ||h||``: ``[..., N]``, unit norm, gain ``||h||²``.

    Raises ValueError if any channel is all zeros (no direction).
    """
    if not isinstance(h, Tensor):
        raise TypeError(f"mrt_beam: h has type {type(h).__name__}; expected torch.Tensor")
    if h.ndim < 1:
        raise ValueError(f"mrt_beam: h has shape {tuple(h.shape)}; expected [..., N]")
    if not h.is_complex():
        h = h.to(torch.complex128 if h.dtype == torch.float64 else torch.complex64)
    norm = torch.linalg.vector_norm(h, dim=-1, keepdim=True)  # [..., 1]
    zero = norm == 0
    if bool(zero.any()):
        raise ValueError(f"mrt_beam: {int(zero.sum())} channel(s) are all zeros; expected non-zero channels")
    return h.conj() / norm  # [..., N]


def beam_pattern(
    w: Tensor,
    array: AntennaArray,
    azimuth: Tensor,
    zenith: Tensor | None = None,
) -> Tensor:
    """Gain ``|a(u)ᵀ w|²`` of beam(s) ``w [..., N]`` at angles ``azimuth [A]`` (rad) → ``[..., A]``.

    ``zenith`` (rad, broadcast with ``azimuth``) defaults to pi/2 (horizon).
    Along the beam's direction the gain of a unit-norm beam is at most ``N``.
    """
    if not isinstance(w, Tensor):
        raise TypeError(f"beam_pattern: w has type {type(w).__name__}; expected torch.Tensor")
    if w.ndim < 1 or w.shape[-1] != array.num_ant:
        raise ValueError(f"beam_pattern: w has shape {tuple(w.shape)}; expected [..., {array.num_ant}]")
    dtype = w.dtype if w.is_complex() else torch.complex64
    real = _real_dtype(dtype)
    azimuth = torch.as_tensor(azimuth, dtype=real)
    if zenith is not None:
        azimuth, zenith = torch.broadcast_tensors(azimuth, torch.as_tensor(zenith, dtype=real))
    u = unit_vector(azimuth, zenith)  # [A, 3]
    a = steering_vector(array, u, dtype=dtype)  # [A, N]
    return torch.matmul(w.to(dtype), a.transpose(-1, -2)).abs() ** 2  # [..., A]
