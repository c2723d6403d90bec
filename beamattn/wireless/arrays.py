"""Antenna arrays at the base station: element positions and steering vectors.

Conventions (the same as Sionna's ``tr38901.AntennaArray``, checked in tests):

- Global frame: x is the array's boresight (broadside), y horizontal, z up.
  Azimuth ``phi`` is measured from x towards y; zenith ``theta`` from z
  (``theta = pi/2`` is the horizon).
- Element positions lie in the y-z plane, centred on the origin, in
  wavelengths. A UPA with ``num_rows`` x ``num_cols`` elements has column
  index growing along +y and row index growing along -z (row 0 on top);
  element index = ``col * num_rows + row`` (column-major). A ULA is a UPA
  with one row.
- Array response (departure towards unit vector ``u``):
  ``a_n(u) = exp(+j 2 pi u · r_n)`` with ``r_n`` in wavelengths — Sionna's
  ``exp_tx`` term. The channel of one path is ``h = g a(u)`` and the received
  signal is ``y = hᵀ w x``: beam ``w`` points at ``u`` when ``w ∝ conj(a(u))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .limits import check_range

__all__ = ["AntennaArray", "ULA", "UPA", "unit_vector", "steering_vector"]


@dataclass(frozen=True)
class AntennaArray:
    """A planar array of ``num_rows`` x ``num_cols`` isotropic elements.

    Args:
        num_rows: elements along z (vertical), in [1, 1024].
        num_cols: elements along y (horizontal), in [1, 1024].
        spacing_v: vertical spacing in wavelengths, in [0.001, 100].
        spacing_h: horizontal spacing in wavelengths, in [0.001, 100].
    """

    num_rows: int
    num_cols: int
    spacing_v: float = 0.5
    spacing_h: float = 0.5

    def __post_init__(self) -> None:
        # Within the physically meaningful ranges of beamattn.wireless.limits: 1..1024 elements per axis,
        # spacings 0.001..100 wavelengths (the memory of N x N covariances is checked per scenario).
        for name in ("num_rows", "num_cols", "spacing_v", "spacing_h"):
            check_range("AntennaArray", name, getattr(self, name))

    @property
    def num_ant(self) -> int:
        """Number of elements ``N``."""
        return self.num_rows * self.num_cols

    def positions(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        """Element positions in wavelengths, ``[N, 3]`` (x, y, z), column-major order."""
        col = torch.arange(self.num_cols, dtype=dtype, device=device)
        row = torch.arange(self.num_rows, dtype=dtype, device=device)
        y = (col - (self.num_cols - 1) / 2) * self.spacing_h  # [C]
        z = -(row - (self.num_rows - 1) / 2) * self.spacing_v  # [R] row 0 on top
        yy = y.repeat_interleave(self.num_rows)  # [N] index = col * R + row
        zz = z.repeat(self.num_cols)  # [N]
        return torch.stack([torch.zeros_like(yy), yy, zz], dim=-1)  # [N, 3]


def ULA(num_ant: int, spacing: float = 0.5) -> AntennaArray:
    """A horizontal uniform linear array (one row) of ``num_ant`` elements along y."""
    return AntennaArray(num_rows=1, num_cols=num_ant, spacing_h=spacing)


def UPA(num_rows: int, num_cols: int, spacing_v: float = 0.5, spacing_h: float = 0.5) -> AntennaArray:
    """A uniform planar array in the y-z plane."""
    return AntennaArray(num_rows=num_rows, num_cols=num_cols, spacing_v=spacing_v, spacing_h=spacing_h)


def unit_vector(azimuth: Tensor, zenith: Tensor | None = None) -> Tensor:
    """Unit direction vectors ``[..., 3]`` from azimuth and zenith angles (rad).

    ``zenith`` defaults to pi/2 (the horizontal plane).
    """
    azimuth = torch.as_tensor(azimuth)
    zenith = torch.full_like(azimuth, math.pi / 2) if zenith is None else torch.as_tensor(zenith, dtype=azimuth.dtype)
    s = torch.sin(zenith)
    return torch.stack([s * torch.cos(azimuth), s * torch.sin(azimuth), torch.cos(zenith)], dim=-1)


def steering_vector(array: AntennaArray, directions: Tensor, dtype: torch.dtype = torch.complex64) -> Tensor:
    """Array response ``a(u) = exp(j 2 pi u · r_n)`` for unit vectors ``directions [..., 3]``.

    Returns ``[..., N]`` complex, with ``|a_n| = 1`` (not normalised: ``||a||² = N``).
    """
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    pos = array.positions(dtype=real, device=directions.device)  # [N, 3]
    phase = 2 * math.pi * torch.matmul(directions.to(real), pos.T)  # [..., N]
    return torch.polar(torch.ones_like(phase), phase).to(dtype)
