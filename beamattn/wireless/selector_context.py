"""Parts of the contextual ("transformer") selector: beam self-attention, its circular position bias, phase prediction.

All attention here runs on :class:`beamattn.core.MultiHeadAttention` (itself on :func:`beamattn.core.attend`);
the relative position tables are :class:`beamattn.core.RelativePositionBias` tables, indexed by the
*circular* distance between beams on the codebook grid (a DFT index is spatial frequency: it wraps around).

- :class:`BeamPositionBias`: a learned bias per head and circular DFT-index distance, 1-D (ULA) or the sum
  of one table per grid axis (UPA, ``grid = (M_v, M_h)``), from the beams' grid positions ``[M, 2]``.
- :class:`BeamSelfAttention`: one pre-LN block — every beam token attends to the measured beams' tokens (the
  only ones that carry a report), plus a small MLP; both residual. A function of the tokens and their
  positions only: equivariant to a joint permutation of beams and positions.
- :func:`predict_phase`: per-beam phase extrapolation from a phase history (a per-beam Doppler estimate):
  the unwrapped phases' least-squares line evaluated ``lead`` sample spacings after the last sample. Exact for
  a constant phase slope below the aliasing limit ``|Δφ| < π`` between samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..core import MultiHeadAttention, RelativePositionBias

__all__ = ["BeamPositionBias", "BeamSelfAttention", "grid_positions", "predict_phase", "wrap_phase"]


def grid_positions(num_beams: int, grid: tuple[int, int] | None, device: torch.device | str = "cpu") -> Tensor:
    """Grid coordinates ``[M, 2]`` long ``(m_v, m_h)`` of beam ``m = m_v·M_h + m_h`` (``m_v = 0`` for 1-D)."""
    m = torch.arange(num_beams, device=device)  # [M]
    if grid is None:
        return torch.stack([torch.zeros_like(m), m], -1)  # [M, 2]
    return torch.stack([torch.div(m, grid[1], rounding_mode="floor"), m % grid[1]], -1)  # [M, 2]


def _circular(d: Tensor, size: int) -> Tensor:
    """Signed circular distance in ``[-size // 2, (size - 1) // 2]`` of integer differences ``d``."""
    return (d + size // 2) % size - size // 2


class BeamPositionBias(nn.Module):
    """Attention bias ``[H, M, J]`` from the circular grid distance between query beams and key beams.

    Args:
        num_heads: ``H``.
        grid: ``(M_v, M_h)``; ``(1, M)`` for a 1-D codebook.
        max_distance: largest distinguished distance on each axis (farther beams share one bias per side).

    A ``RelativePositionBias`` table per axis (both start at zero: a fresh module adds no bias); the
    bias of a pair is the sum of the two axes' entries.
    """

    def __init__(self, num_heads: int, grid: tuple[int, int], max_distance: int = 8) -> None:
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        self.h_table = RelativePositionBias(num_heads, max(1, min(max_distance, grid[1] // 2)))
        self.v_table = RelativePositionBias(num_heads, max(1, min(max_distance, grid[0] // 2))) if grid[0] > 1 else None

    def forward(self, pos_q: Tensor, pos_k: Tensor) -> Tensor:
        """``pos_q [M, 2]``, ``pos_k [J, 2]`` long grid coordinates → bias ``[H, M, J]``."""
        d = pos_k[None, :, :] - pos_q[:, None, :]  # [M, J, 2]
        dh = _circular(d[..., 1], self.grid[1]).clamp(-self.h_table.max_distance, self.h_table.max_distance)
        bias = self.h_table.weight[:, dh + self.h_table.max_distance]  # [H, M, J]
        if self.v_table is not None:
            dv = _circular(d[..., 0], self.grid[0]).clamp(-self.v_table.max_distance, self.v_table.max_distance)
            bias = bias + self.v_table.weight[:, dv + self.v_table.max_distance]  # [H, M, J]
        return bias


class BeamSelfAttention(nn.Module):
    """One pre-LN self-attention block over beam tokens (see the module docstring).

    Args:
        d_model: token size ``d``.
        num_heads: heads (``d_model`` must be a multiple).
        grid: ``(M_v, M_h)`` of the codebook (``(1, M)`` for 1-D), for the position bias.
        mlp_ratio: hidden size of the MLP in units of ``d`` (0 = no MLP).
    """

    def __init__(self, d_model: int, num_heads: int, grid: tuple[int, int], mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.pos = BeamPositionBias(num_heads, grid)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(),
                                 nn.Linear(mlp_ratio * d_model, d_model)) if mlp_ratio > 0 else None

    def forward(self, x: Tensor, positions: Tensor, key_mask: Tensor) -> Tensor:
        """Tokens ``x [S, M, d]``, grid positions ``[M, 2]`` long, ``key_mask [M]`` bool (the beams that may be
        attended to: the measured ones) → ``[S, M, d]``."""
        y = self.norm1(x)  # [S, M, d]
        keys = y[:, key_mask]  # [S, J, d]: only measured beams carry a report
        bias = self.pos(positions, positions[key_mask]).to(x.dtype)  # [H, M, J]
        a, _ = self.attn(y, keys, keys, bias=bias)  # [S, M, d]
        x = x + a
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))  # [S, M, d]
        return x


def wrap_phase(x: Tensor) -> Tensor:
    """Angles wrapped to ``[-π, π)``."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def predict_phase(phase: Tensor, lead: float) -> Tensor:
    """Extrapolate each beam's phase ``lead`` sample spacings after its last sample.

    Args:
        phase: ``[..., T, M]`` phases (rad), oldest first, equally spaced in time (``T >= 1``).
        lead: how far ahead, in sample spacings (e.g. (reporting delay + half the use interval) / period).

    Returns:
        ``[..., M]`` (rad, wrapped): ``φ_T + slope · lead``, where ``slope`` is the least-squares slope of the
        unwrapped phases (each step's increment wrapped to ``[-π, π)``: no aliasing while ``|Δφ| < π``).
        With ``T = 1`` the latest phase itself.
    """
    t = phase.shape[-2]
    if t == 1:
        return phase[..., 0, :]
    inc = wrap_phase(phase.diff(dim=-2))  # [..., T-1, M]
    unwrapped = torch.cat([torch.zeros_like(phase[..., :1, :]), inc.cumsum(-2)], dim=-2)  # [..., T, M] rel. to φ_1
    tau = torch.arange(t, dtype=phase.dtype, device=phase.device) - (t - 1) / 2  # [T] centred times
    slope = (tau[:, None] * unwrapped).sum(-2) / (tau ** 2).sum()  # [..., M] rad per sample spacing
    # The fitted line at the last sample, then ``lead`` spacings on.
    fit_last = unwrapped.mean(-2) + slope * tau[-1]  # [..., M]
    return wrap_phase(phase[..., 0, :] + fit_last + slope * lead)
