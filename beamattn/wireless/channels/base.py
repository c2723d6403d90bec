"""The one interface every channel back-end implements.

A back-end turns a seed into a batch of independent *drops* (a user moving
along a trajectory for a while) and returns the base station's channel to the
single-antenna user over time:

- ``h``: ``[B, T, N]`` complex (narrowband) or ``[B, T, F, N]`` (OFDM, ``F``
  subcarriers), with ``y = hᵀ w x + n`` (no conjugate; Sionna's convention)
  and ``E|h_n|² = 1`` before path loss (no large-scale path loss is applied).
- ``positions``: ``[B, T, 3]`` user positions in metres (base station at the
  origin, its array broadside along +x).
- ``times``: ``[T]`` seconds from the start of the drop.
- ``los``: ``[B, T]`` bool, whether a line-of-sight path is present and
  unblocked (all False where the model has none).
- ``subcarrier_frequencies``: ``[F]`` Hz offsets from the carrier (None when
  narrowband).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ..arrays import AntennaArray

__all__ = ["ChannelSample", "ChannelBackend", "check_channel"]


@dataclass
class ChannelSample:
    """Channels of ``B`` drops over ``T`` samples (``y = hᵀ w x + n``, ``E|h_n|² = 1`` before path loss)."""

    h: Tensor  # [B, T, N] or [B, T, F, N] complex
    positions: Tensor  # [B, T, 3] metres
    times: Tensor  # [T] seconds
    los: Tensor  # [B, T] bool
    subcarrier_frequencies: Tensor | None = None  # [F] Hz, None when narrowband

    @property
    def wideband(self) -> bool:
        return self.h.dim() == 4

    def to(self, device: torch.device | str) -> "ChannelSample":
        f = None if self.subcarrier_frequencies is None else self.subcarrier_frequencies.to(device)
        return ChannelSample(self.h.to(device), self.positions.to(device), self.times.to(device), self.los.to(device), f)


class ChannelBackend(Protocol):
    """What a channel back-end offers."""

    array: AntennaArray
    carrier_frequency: float  # Hz

    def generate(self, num_drops: int, seed: int, device: torch.device | str = "cpu") -> ChannelSample:
        """``num_drops`` independent drops; the same seed gives the same channels."""
        ...


def check_channel(h: Tensor, name: str = "h") -> Tensor:
    """Reject NaN/Inf and non-complex channels with a message that names the field."""
    if not isinstance(h, Tensor) or not h.is_complex():
        got = h.dtype if isinstance(h, Tensor) else type(h).__name__
        raise TypeError(f"channel: field '{name}' has type {got}; expected a complex tensor [B, T, (F,) N]")
    if h.dim() not in (3, 4):
        raise ValueError(f"channel: field '{name}' has shape {tuple(h.shape)}; expected [B, T, N] or [B, T, F, N]")
    bad = ~torch.isfinite(torch.view_as_real(h)).all(-1)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"channel: field '{name}' has {int(bad.sum())} NaN/Inf entries (first at index {idx}); "
                         "expected finite values")
    return h
