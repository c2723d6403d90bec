"""Positional encodings: fixed sinusoids, periodic sinusoids, learned tables,
learned relative-position biases and 2-D sin-cos encodings of a grid.

Attention is blind to order: permuting the keys (with their values) permutes
nothing in the output. These encodings put position back in, either added to
the inputs (absolute encodings, ``[L, dim]`` tables) or added to the attention
scores (:class:`RelativePositionBias`, an ``[H, Lq, Lk]`` bias for
``attend(..., bias=...)``).

Positions are integer indices ``0, 1, ..., L-1`` (unitless). Angles of the
sinusoids are in radians. Tables are computed in float64 (float32 on MPS,
which has no float64) and then cast to ``dtype``, so large positions keep their
precision.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "sinusoidal_encoding",
    "sinusoidal_encoding_at",
    "periodic_encoding",
    "sincos_2d_encoding",
    "LearnedPositionalEmbedding",
    "RelativePositionBias",
]

# --------------------------------------------------------------------------- fixed encodings


def sinusoidal_encoding(
    length: int,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sinusoidal position encoding of Vaswani et al. (2017), ``[length, dim]``.

    ``pe[p, 2i] = sin(p · ω_i)`` and ``pe[p, 2i+1] = cos(p · ω_i)`` with angular
    frequencies ``ω_i = base^(-2i/dim)`` (radians per position), ``i = 0 .. dim/2-1``:
    wavelengths from ``2π`` to ``2π·base`` positions.

    Because ``sin(a)sin(b) + cos(a)cos(b) = cos(a - b)``, the inner product
    ``pe[p] · pe[p+k] = Σ_i cos(k ω_i)`` depends only on the offset ``k``.

    Args:
        length: number of positions ``L >= 0``.
        dim: encoding size, even and ``>= 2``.
        base: wavelength base (> 0).
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        ``[length, dim]``, values in ``[-1, 1]``.
    """
    fn = "sinusoidal_encoding"
    _check_int(fn, "length", length, 0)
    _check_even_dim(fn, "dim", dim, 2)
    _check_base(fn, base)
    _check_dtype(fn, dtype)
    work = _work_dtype(device)
    positions = torch.arange(length, dtype=work, device=device)  # [L]
    return _interleaved_sincos(positions, dim, base).to(dtype)  # [L, dim]


def sinusoidal_encoding_at(
    positions: Tensor,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """:func:`sinusoidal_encoding` at explicit positions, ``[..., dim]``.

    Args:
        positions: positions of any shape ``[...]``, integer or floating
            (fractional positions, e.g. times in units of one step, are allowed).
        dim: encoding size, even and ``>= 2``.
        base: wavelength base (> 0).
        dtype: floating dtype of the result; default: the dtype of ``positions``
            if it is floating, else float32.

    Returns:
        ``[..., dim]`` on the device of ``positions``; for ``positions =
        arange(L)`` it equals ``sinusoidal_encoding(L, dim)``.
    """
    fn = "sinusoidal_encoding_at"
    if not isinstance(positions, Tensor):
        raise TypeError(f"{fn}: argument 'positions' must be a torch.Tensor, got {type(positions).__name__}")
    if positions.is_complex() or positions.dtype == torch.bool:
        raise TypeError(f"{fn}: argument 'positions' has dtype {positions.dtype}; expected an integer or real "
                        "floating dtype")
    _check_even_dim(fn, "dim", dim, 2)
    _check_base(fn, base)
    if dtype is None:
        dtype = positions.dtype if positions.is_floating_point() else torch.float32
    _check_dtype(fn, dtype)
    work = _work_dtype(positions.device)
    return _interleaved_sincos(positions.to(work), dim, base).to(dtype)  # [..., dim]


def periodic_encoding(
    length: int,
    dim: int,
    period: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sinusoids with period ``period`` positions, ``[length, dim]``.

    ``pe[p, 2m] = sin(p' · ω_m)`` and ``pe[p, 2m+1] = cos(p' · ω_m)`` with the
    harmonics ``ω_m = 2π (m+1) / period`` (radians per position), ``m = 0 .. dim/2-1``,
    evaluated at ``p' = p mod period``. Computing from ``p mod period`` (and not
    from ``p``) makes rows ``p`` and ``p + period`` bitwise identical, not just
    equal up to rounding: a model that sees the same input at positions ``p``
    and ``p + period`` gives exactly the same output.

    Rows within one period are distinct: the first harmonic alone puts position
    ``p'`` at angle ``2π p'/period`` on the unit circle. Harmonics ``m+1 >
    period/2`` alias lower ones (up to sign), so ``dim > period`` adds no new
    information.

    Args:
        length: number of positions ``L >= 0``.
        dim: encoding size, even and ``>= 2``.
        period: period in positions, ``>= 1``.
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        ``[length, dim]``, values in ``[-1, 1]``.
    """
    fn = "periodic_encoding"
    _check_int(fn, "length", length, 0)
    _check_even_dim(fn, "dim", dim, 2)
    _check_int(fn, "period", period, 1)
    _check_dtype(fn, dtype)
    work = _work_dtype(device)
    phase = torch.arange(length, device=device) % period  # [L] integer, in [0, period)
    harmonics = torch.arange(1, dim // 2 + 1, dtype=work, device=device)  # [dim/2]
    omega = (2 * math.pi / period) * harmonics  # [dim/2] radians per position
    angles = phase.to(work).unsqueeze(-1) * omega  # [L, dim/2]
    return _interleave(torch.sin(angles), torch.cos(angles)).to(dtype)  # [L, dim]


def sincos_2d_encoding(
    height: int,
    width: int,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """2-D sin-cos encoding of a ``height × width`` grid (MAE / ViT style), ``[height*width, dim]``.

    Rows of the result follow the grid in row-major order: index ``r*width + c``
    is grid cell (row ``r``, column ``c``). Half of the features encode one
    coordinate with a 1-D sin-cos encoding of size ``dim/2``, half the other:

    - ``[:, :dim/2]`` encodes the column ``c`` (the x coordinate),
    - ``[:, dim/2:]`` encodes the row ``r`` (the y coordinate),

    each laid out as ``[sin(pos·ω_0..), cos(pos·ω_0..)]`` (sines first, then
    cosines) with ``ω_i = base^(-i/(dim/4))``. This is exactly MAE's
    ``get_2d_sincos_pos_embed`` (He et al., 2022), whose first half encodes the
    column because ``np.meshgrid(w, h)`` puts the x coordinate first. Non-square
    grids are supported.

    Args:
        height: grid rows, ``>= 1``.
        width: grid columns, ``>= 1``.
        dim: encoding size, divisible by 4.
        base: wavelength base (> 0).
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        ``[height*width, dim]``, values in ``[-1, 1]``.
    """
    fn = "sincos_2d_encoding"
    _check_int(fn, "height", height, 1)
    _check_int(fn, "width", width, 1)
    _check_int(fn, "dim", dim, 4)
    if dim % 4 != 0:
        raise ValueError(f"{fn}: argument 'dim' = {dim}; expected a multiple of 4 (sin and cos for each of the "
                         "2 coordinates)")
    _check_base(fn, base)
    _check_dtype(fn, dtype)
    work = _work_dtype(device)
    rows = torch.arange(height, dtype=work, device=device)  # [Hg]
    cols = torch.arange(width, dtype=work, device=device)  # [Wg]
    row_of, col_of = torch.meshgrid(rows, cols, indexing="ij")  # [Hg, Wg] each
    emb_col = _concat_sincos(col_of.reshape(-1), dim // 2, base)  # [Hg*Wg, dim/2]
    emb_row = _concat_sincos(row_of.reshape(-1), dim // 2, base)  # [Hg*Wg, dim/2]
    return torch.cat([emb_col, emb_row], dim=-1).to(dtype)  # [Hg*Wg, dim]


# --------------------------------------------------------------------------- learned encodings


class LearnedPositionalEmbedding(nn.Module):
    """A learned table of absolute position vectors (BERT / GPT-2 style).

    Args:
        max_length: number of positions in the table, ``>= 1``.
        dim: vector size, ``>= 1``.
        init_std: standard deviation of the normal initialisation (0.02 as in
            GPT-2; small so the table starts as a mild perturbation of the inputs).

    ``weight``: ``[max_length, dim]``.
    """

    def __init__(self, max_length: int, dim: int, *, init_std: float = 0.02) -> None:
        super().__init__()
        fn = "LearnedPositionalEmbedding"
        _check_int(fn, "max_length", max_length, 1)
        _check_int(fn, "dim", dim, 1)
        self.max_length = max_length
        self.dim = dim
        self.weight = nn.Parameter(torch.empty(max_length, dim))
        nn.init.normal_(self.weight, std=init_std)

    def forward(self, length_or_positions: int | Tensor) -> Tensor:
        """Position vectors.

        Args:
            length_or_positions: an int ``L`` (positions ``0 .. L-1``) or an
                integer tensor of positions of any shape ``[...]``, each in
                ``[0, max_length)``.

        Returns:
            ``[L, dim]`` for an int, ``[..., dim]`` for a tensor.
        """
        fn = "LearnedPositionalEmbedding"
        x = length_or_positions
        if isinstance(x, Tensor):
            if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
                raise TypeError(f"{fn}: argument 'positions' has dtype {x.dtype}; expected an integer dtype")
            if x.numel() > 0:
                lo, hi = int(x.min()), int(x.max())
                if lo < 0 or hi >= self.max_length:
                    raise ValueError(f"{fn}: argument 'positions' has values in [{lo}, {hi}]; expected values in "
                                     f"[0, max_length) = [0, {self.max_length})")
            return self.weight[x]  # [..., dim]
        _check_int(fn, "length", x, 0)
        if x > self.max_length:
            raise ValueError(f"{fn}: argument 'length' = {x} exceeds max_length = {self.max_length}; expected "
                             f"length <= {self.max_length}")
        return self.weight[:x]  # [L, dim]

    def extra_repr(self) -> str:
        return f"max_length={self.max_length}, dim={self.dim}"


class RelativePositionBias(nn.Module):
    """A learned attention bias per head and clipped relative distance (Shaw et al., 2018).

    The bias added to the score of query ``i`` and key ``j`` in head ``h`` is
    ``weight[h, clip(j - i) + max_distance]``, with ``j - i`` clipped to
    ``[-max_distance, max_distance]``: all keys farther than ``max_distance``
    share one bias per side. The bias depends only on ``j - i`` (a Toeplitz
    matrix), so the attention is invariant to shifting a whole sequence.

    With ``bidirectional=False`` (causal models) ``j - i`` is clipped to
    ``[-max_distance, 0]``: future keys (``j > i``, normally masked anyway)
    share the bias of distance 0 and the table has ``max_distance + 1`` entries.

    The table starts at zero, so a fresh module is "no bias".

    Args:
        num_heads: number of heads ``H >= 1``.
        max_distance: largest distinguished distance, ``>= 1``.
        bidirectional: distinguish keys before and after the query.

    ``weight``: ``[H, 2*max_distance + 1]`` (``[H, max_distance + 1]`` if not
    bidirectional); column ``max_distance`` is distance 0.
    """

    def __init__(self, num_heads: int, max_distance: int, *, bidirectional: bool = True) -> None:
        super().__init__()
        fn = "RelativePositionBias"
        _check_int(fn, "num_heads", num_heads, 1)
        _check_int(fn, "max_distance", max_distance, 1)
        self.num_heads = num_heads
        self.max_distance = max_distance
        self.bidirectional = bool(bidirectional)
        num_distances = 2 * max_distance + 1 if self.bidirectional else max_distance + 1
        self.weight = nn.Parameter(torch.zeros(num_heads, num_distances))

    def forward(self, lq: int, lk: int, *, q_offset: int = 0) -> Tensor:
        """The bias ``[H, Lq, Lk]`` for ``attend(q, k, v, bias=...)``.

        Args:
            lq: number of queries ``>= 0``.
            lk: number of keys ``>= 0``.
            q_offset: position of the first query counted on the key axis
                (e.g. ``lk - lq`` when decoding new queries against a cache of
                ``lk`` keys); query ``i`` is at position ``q_offset + i``.

        Returns:
            ``[H, Lq, Lk]`` in the dtype of ``weight``; it broadcasts against
            ``q [B, H, Lq, d]``. Cast it to the dtype of ``q`` for low precision.
        """
        fn = "RelativePositionBias"
        _check_int(fn, "lq", lq, 0)
        _check_int(fn, "lk", lk, 0)
        if isinstance(q_offset, bool) or not isinstance(q_offset, int):
            raise TypeError(f"{fn}: argument 'q_offset' = {q_offset!r} must be an int")
        return self.weight[:, self.bucket(lq, lk, q_offset=q_offset)]  # [H, Lq, Lk]

    def bucket(self, lq: int, lk: int, *, q_offset: int = 0) -> Tensor:
        """Column of ``weight`` for each (query, key) pair, ``[Lq, Lk]`` int64."""
        device = self.weight.device
        i = torch.arange(q_offset, q_offset + lq, device=device).unsqueeze(-1)  # [Lq, 1]
        j = torch.arange(lk, device=device)  # [Lk]
        hi = self.max_distance if self.bidirectional else 0
        rel = (j - i).clamp(-self.max_distance, hi)  # [Lq, Lk] clipped j - i
        return rel + self.max_distance  # [Lq, Lk] in [0, num_distances)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, max_distance={self.max_distance}, bidirectional={self.bidirectional}"


# --------------------------------------------------------------------------- helpers


def _interleaved_sincos(positions: Tensor, dim: int, base: float) -> Tensor:
    """Vaswani layout: ``[..., dim]`` with sin at even and cos at odd features."""
    i = torch.arange(0, dim, 2, dtype=positions.dtype, device=positions.device)  # [dim/2] = 2i
    omega = base ** (-i / dim)  # [dim/2] radians per position
    angles = positions.unsqueeze(-1) * omega  # [..., dim/2]
    return _interleave(torch.sin(angles), torch.cos(angles))  # [..., dim]


def _concat_sincos(positions: Tensor, dim: int, base: float) -> Tensor:
    """MAE layout: ``[N, dim]`` with all sines then all cosines; ``positions [N]``."""
    i = torch.arange(dim // 2, dtype=positions.dtype, device=positions.device)  # [dim/2]
    omega = 1.0 / base ** (i / (dim / 2))  # [dim/2]
    angles = positions.unsqueeze(-1) * omega  # [N, dim/2]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # [N, dim]


def _interleave(a: Tensor, b: Tensor) -> Tensor:
    """``[..., n]``, ``[..., n]`` → ``[..., 2n]`` as ``a0, b0, a1, b1, ...``."""
    return torch.stack([a, b], dim=-1).flatten(-2)  # [..., 2n]


def _work_dtype(device: torch.device | str | None) -> torch.dtype:
    # float64 keeps the angles of large positions exact enough; MPS has no float64.
    return torch.float32 if device is not None and torch.device(device).type == "mps" else torch.float64


def _check_int(fn: str, name: str, value: object, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{fn}: argument '{name}' = {value!r} must be an int")
    if value < lo:
        raise ValueError(f"{fn}: argument '{name}' = {value}; expected an int >= {lo}")


def _check_even_dim(fn: str, name: str, value: object, lo: int) -> None:
    _check_int(fn, name, value, lo)
    if value % 2 != 0:  # type: ignore[operator]
        raise ValueError(f"{fn}: argument '{name}' = {value}; expected an even int (sin and cos pairs)")


def _check_base(fn: str, base: object) -> None:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not (math.isfinite(base) and base > 0):
        raise ValueError(f"{fn}: argument 'base' = {base!r}; expected a finite float > 0")


def _check_dtype(fn: str, dtype: object) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{fn}: argument 'dtype' = {dtype!r}; expected a floating torch.dtype")
