"""Peak interpolation over Set B: a parabola through the best Set B report and its neighbours.

Set B is a (sub-)grid of the DFT codebook (every ``s``-th beam along each axis, ``s = M / |B|``
per axis). The reported peak and its two neighbours along each axis (circular: DFT spatial
frequencies wrap around) are fitted by a parabola ``f(x) = y0 + b x + a x²`` with ``x`` in Set B
steps, ``a = (y₋ − 2y₀ + y₊)/2`` and ``b = (y₊ − y₋)/2``; its vertex ``−b / 2a`` (within ±½ step,
since ``y0`` is the largest report) is the fractional peak. On a 2-D (UPA) grid the fit is
separable: one parabola per axis around the peak. The Set A beams around the peak are ranked by
the fitted curve (the sum of the axes' parabolas), so the chosen beam is the Set A beam nearest the
fractional peak and the Top-K ranking follows the curve.

``fit = "db"`` fits the reports in dB (default), ``"linear"`` in linear power. For a single path
and the orthogonal Set B of a 4x oversampled codebook (vehicular-60), the dB fit is the better one:
the main lobe of a DFT beam is nearer a parabola in dB (noiseless worst-case error 0.17 Set B step,
against 0.5 in linear power, where the neighbours sit near the lobe's nulls); on vehicular-60 with 2
reports averaged (``history=2``), loss to genie 1.03 dB (dB) against 1.24 dB (linear); from the
latest report only 1.35 dB against 1.49 dB; with the EWMA of ``interp-set-b-avg`` 0.94 against 1.16.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..measurement import Episode
from .base import _pick, rank_reports, read_reports, register, set_layout
from .sweeps import _Reads

FITS = ("db", "linear")


@register("interp-set-b")
class InterpSetB(_Reads):
    """Measure Set B, interpolate the reported peak over the DFT index, use the nearest Set A beam.

    Args:
        history, smoothing, alpha: reports read per beam (see :mod:`.sweeps`); default the latest.
        fit: ``"db"`` or ``"linear"`` (module docstring).
    """

    def __init__(self, history: int | None = ..., smoothing: str | None = None, alpha: float = 0.5,
                 fit: str = "db") -> None:
        super().__init__(history, smoothing, alpha)
        if fit not in FITS:
            raise ValueError(f"policy {self.name!r}: argument 'fit' = {fit!r}; expected one of {FITS}")
        self.fit = fit

    def decide(self, ep: Episode):
        ids = ep.set_b
        current, older = read_reports(self.name, ep, ids, self.history, self.smoothing, self.alpha)  # [B, D, J]
        ranking = interpolate_peak(ep, ids, current, older, self.fit)  # [B, D, K]
        return _pick(ep, ranking[..., 0], float(ids.numel()), ranking)


@register("interp-set-b-avg")
class InterpSetBAvg(InterpSetB):
    """:class:`InterpSetB` reading the whole allowed report history (EWMA, alpha 0.5)."""

    default_history = None
    default_smoothing = "ewma"


def parabola_vertex(y_minus: Tensor, y0: Tensor, y_plus: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Parabola through ``(-1, y₋), (0, y₀), (1, y₊)``: ``(a, b, vertex)`` with ``f(x) = y₀ + b x + a x²``.

    The vertex is clamped to [-½, ½] (it lies there whenever ``y₀`` is the largest); a flat or convex
    fit (``a >= 0``) gives vertex 0 and ``a = 0`` with ``b = 0`` (no information: stay on the peak).
    """
    a = (y_minus - 2 * y0 + y_plus) / 2
    b = (y_plus - y_minus) / 2
    concave = a < 0
    vertex = torch.where(concave, -b / (2 * torch.where(concave, a, -torch.ones_like(a))), torch.zeros_like(a))
    a = torch.where(concave, a, torch.zeros_like(a))
    b = torch.where(concave, b, torch.zeros_like(b))
    return a, b, vertex.clamp(-0.5, 0.5)


def interpolate_peak(ep: Episode, ids: Tensor, current_db: Tensor, older_db: Tensor | None, fit: str = "db",
                     k: int = 4) -> Tensor:
    """Top-``k`` Set A beams of the interpolated Set B curve, ``[B, D, k]`` long, best first.

    Args:
        ids: ``[J]`` the measured beams (ascending), a product sub-grid of the codebook grid.
        current_db: ``[B, D, J]`` their (aggregated) reports in dB.
        older_db: older reports for breaking ties of the peak (see :func:`~.base.rank_reports`).
    """
    grid = ep.codebook.grid
    layout = set_layout(ep, ids)
    r, c = layout
    if grid is None or grid[0] <= 1 or r * c != ids.numel() or (r == 1 and grid[0] > 1):
        axes_size = (1, ep.num_beams)  # one axis: the index itself (a ULA, or a non-grid Set B)
        coords = (torch.zeros(1, dtype=torch.long, device=ids.device), ids)
        layout = (1, ids.numel())
    else:
        axes_size = (grid[0], grid[1])
        rows = torch.div(ids, grid[1], rounding_mode="floor").reshape(r, c)[:, 0]  # [R]
        cols = (ids % grid[1]).reshape(r, c)[0]  # [C]
        coords = (rows, cols)
    peak = rank_reports(current_db, layout, older_db, 1)[..., 0]  # [B, D] position in the layout
    y = current_db if fit == "db" else 10 ** (current_db / 10)
    g = y.reshape(*y.shape[:-1], *layout)  # [B, D, R, C]
    pr, pc = torch.div(peak, layout[1], rounding_mode="floor"), peak % layout[1]  # [B, D]
    per_axis = []  # (candidate Set A coordinates [B, D, O], fitted values [B, D, O]) per axis
    for axis, (pos, n, size, coord) in enumerate(zip((pr, pc), layout, axes_size, coords)):
        base = coord[pos]  # [B, D] Set A coordinate of the peak along this axis
        if n < 2:
            per_axis.append((base.unsqueeze(-1), torch.zeros_like(base, dtype=y.dtype).unsqueeze(-1)))
            continue
        def at(p: Tensor) -> Tensor:  # value at layout position p (this axis), the peak's on the other
            rr, cc = (p, pc) if axis == 0 else (pr, p)
            return g[torch.arange(g.shape[0], device=g.device)[:, None], torch.arange(g.shape[1], device=g.device),
                     rr, cc]  # [B, D]
        a, b, _ = parabola_vertex(at((pos - 1) % n), at(pos), at((pos + 1) % n))
        step = size / n  # Set A beams per Set B step along this axis
        reach = math.ceil(step)
        off = torch.arange(-reach, reach + 1, device=ids.device)  # [O] Set A offsets around the peak
        # Nearer offsets first, so that a flat fit keeps the peak beam itself (stable ranking below).
        off = off[torch.argsort(off.abs(), stable=True)]
        x = off.to(y.dtype) / step  # [O] in Set B steps
        val = b.unsqueeze(-1) * x + a.unsqueeze(-1) * x ** 2  # [B, D, O]
        per_axis.append(((base.unsqueeze(-1) + off) % size, val))
    (cv, fv), (ch, fh) = per_axis
    cand = (cv.unsqueeze(-1) * axes_size[1] + ch.unsqueeze(-2)).flatten(-2)  # [B, D, Ov·Oh] Set A ids
    val = (fv.unsqueeze(-1) + fh.unsqueeze(-2)).flatten(-2)  # [B, D, Ov·Oh] fitted curve
    # Candidates are ordered by distance (offset 0 first): a stable sort keeps nearer beams first in ties.
    order = torch.sort(val, dim=-1, descending=True, stable=True).indices[..., :k]  # [B, D, k]
    return cand.gather(-1, order)
