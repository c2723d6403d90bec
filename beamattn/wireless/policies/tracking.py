"""Classical tracking: an extended Kalman filter of the beam direction from Set B reports.

State (per drop) ``s = [x, ẋ, P]``: ``x`` the path's fractional DFT beam index (Set A units, i.e.
the DFT spatial frequency ``ν = x / M`` of the ULA, periodic modulo ``M``), ``ẋ`` its rate in beams
per period, ``P`` the path's gain in dB. Constant-velocity model between report instants (one period
apart); ``P`` a random walk.

Measurement model: the reported RSRP (dB) of every Set B beam ``m_j`` is
``z_j = 10 log10(g·D(m_j − x) + n₀)``, with ``g = 10^{P/10}``, the DFT beam pattern
``D(δ) = sin²(π N δ / M) / (N sin²(π δ / M))`` (``D(0) = N``: the gain of beam ``m`` on a unit path
at index ``x``) and ``n₀ = 10^{−snr_db/10}`` the report's noise bias (measurement config). The
measurement noise variance (dB²) per beam is the report's: ``(10/ln10)²·(2 s n₀ + n₀²)/(S (s + n₀)²)``
for ``S`` averaged samples of a beam of power ``s``, plus ``q²/12`` for quantisation steps ``q``,
plus ``model_var`` for what one path does not explain (other clusters), plus ``NULL_VAR·f N/(D + f N)``
with ``f = 10^{floor_db/10}``: beams in the pattern's nulls (``D ≪ f N``) report what the other paths
leave there, and count little (the model's mean stays the exact one-path pattern).

Re-acquisition: when the best Set B report sits more than ``reacquire_steps`` Set B steps away from
the filter's beam (default ½: it is not the Set B beam nearest the track) and exceeds the filter's
predicted report there by ``reacquire_db`` (the tracked path was blocked, another one took over), or the normalised innovation is beyond the 99.9% chi-square
quantile twice in a row, the filter restarts from the best Set B report (the dB-parabola
interpolated peak, rate 0).

The decision at instant ``t_d`` extrapolates ``x`` to the middle of the use interval
(``x + ẋ·(delay + (U − 1)/2)/P`` in samples: the mean of the ``U`` use samples) and uses the nearest Set A beam; the ranking lists the next nearest.
Overhead: ``|Set B|`` per decision. ULA DFT codebooks only (the state is one spatial frequency).
"""

from __future__ import annotations

import math

import torch
from scipy.stats import chi2
from torch import Tensor

from ..measurement import Episode
from .base import Decision, Policy, _pick, register

_DB = 10 / math.log(10)
NULL_VAR = 100.0  # dB², the variance of a report in a null of the tracked path's pattern


def dft_pattern(delta: Tensor, n: int, m: int) -> tuple[Tensor, Tensor]:
    """Gain ``D(δ)`` of DFT beam ``m_j`` on a unit path at ``x = m_j − δ`` and ``dD/dδ``, ``δ`` in Set A beams.

    ``D(δ) = sin²(π N δ/M) / (N sin²(π δ/M))``, periodic in ``M``, ``D(0) = N``.
    """
    a = math.pi * delta / m  # [...]
    s_n, s_1 = torch.sin(n * a), torch.sin(a)
    near = s_1.abs() < 1e-6
    s_1s = torch.where(near, torch.ones_like(s_1), s_1)
    d = torch.where(near, torch.full_like(a, float(n)), s_n ** 2 / (n * s_1s ** 2))
    # d/da of s_n² / (n s_1²) = 2 s_n (n c_n s_1 − s_n c_1) / (n s_1³); 0 at the peak
    dd_da = torch.where(near, torch.zeros_like(a),
                        2 * s_n * (n * torch.cos(n * a) * s_1s - s_n * torch.cos(a)) / (n * s_1s ** 3))
    return d, dd_da * math.pi / m


def _check_ula_dft(ep: Episode, policy: str) -> None:
    book = ep.codebook
    if book.grid is not None and book.grid[0] > 1:
        raise ValueError(f"policy {policy!r}: tracks one spatial frequency; the codebook is a {book.grid[0]} x "
                         f"{book.grid[1]} UPA grid; expected a ULA DFT codebook")
    m, n = book.num_beams, book.num_ant
    k = torch.arange(m, device=book.beams.device)[:, None] * torch.arange(n, device=book.beams.device)[None, :]
    ref = torch.polar(torch.ones(m, n, dtype=torch.float64, device=k.device), 2 * math.pi * (k % m).double() / m)
    if not torch.allclose(book.beams.to(torch.complex128) * math.sqrt(n), ref, atol=1e-4):
        raise ValueError(f"policy {policy!r}: codebook {book.name!r} is not a DFT codebook; expected dft_codebook beams")


@register("ekf")
class EKFTracker(Policy):
    """EKF of the beam index and its rate from Set B reports, with re-acquisition (module docstring).

    Args:
        rate_std: process noise of the rate (Set A beams per period, per period).
        power_std: process noise of the path gain (dB per period).
        model_var: measurement variance (dB²) that one path does not explain.
        reacquire_db: margin of the peak test (dB).
        floor_db: level (relative to the path's peak gain) below which a beam counts as in a null.
        reacquire_steps: distance (Set B steps) beyond which the best report counts as another path.

    The defaults are a starting point, not a tuned choice. A scenario tunes them on its *training* drops
    with ``scripts/tune_baselines.py`` (as the selector is trained on them) and sets the choice in its
    ``[policy.ekf]`` table: on vehicular-60's 64 training drops ``reacquire_steps = 0.75`` (1.159 dB loss
    to genie; 0.5: 1.192 dB, 1.0 and 1.5 worse), ``reacquire_db = 6`` (3 and 9 worse).
    """

    def __init__(self, rate_std: float = 0.05, power_std: float = 1.0, model_var: float = 4.0,
                 reacquire_db: float = 6.0, floor_db: float = -20.0, reacquire_steps: float = 0.5) -> None:
        for name, value in (("rate_std", rate_std), ("power_std", power_std), ("model_var", model_var),
                            ("reacquire_db", reacquire_db), ("reacquire_steps", reacquire_steps)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"policy {self.name!r}: argument {name!r} = {value!r}; expected a number >= 0")
        self.rate_std, self.power_std = float(rate_std), float(power_std)
        self.model_var, self.reacquire_db = float(model_var), float(reacquire_db)
        if not math.isfinite(floor_db):
            raise ValueError(f"policy {self.name!r}: argument 'floor_db' = {floor_db!r}; expected a finite dB value")
        self.floor = 10 ** (floor_db / 10)
        self.reacquire_steps = float(reacquire_steps)

    def decide(self, ep: Episode) -> Decision:
        _check_ula_dft(ep, self.name)
        x_hist = self.track(ep)  # [B, T, 2] (x, ẋ) after each report instant
        tl = ep.timeline
        h = tl.history
        ahead = (tl.delay_steps + (tl.use_len - 1) / 2) / tl.period_steps  # periods to the mean use sample
        est = x_hist[:, h - 1:]  # [B, D, 2] the decisions' instants
        x_use = est[..., 0] + est[..., 1] * ahead  # [B, D] fractional beam index at use
        m = ep.num_beams
        base = torch.round(x_use)
        off = torch.tensor([0, 1, -1, 2, -2], dtype=x_use.dtype, device=x_use.device)
        cand = base.unsqueeze(-1) + off  # [B, D, 5] nearest Set A beams around round(x_use)
        order = torch.argsort((cand - x_use.unsqueeze(-1)).abs(), dim=-1, stable=True)[..., :4]
        ranking = (cand.gather(-1, order).long() % m)  # [B, D, 4]
        return _pick(ep, ranking[..., 0], float(ep.set_b.numel()), ranking)

    def track(self, ep: Episode) -> Tensor:
        """Run the filter over every report instant: ``[B, T, 2]`` (x, ẋ) after each update (float64)."""
        cfg = ep.config
        m, n = ep.num_beams, ep.codebook.num_ant
        ids = ep.set_b
        mj = ids.to(torch.float64)  # [J] Set B beam indices
        z_all = ep.reports_db[..., ids].to(torch.float64)  # [B, T, J]
        b, t, j = z_all.shape
        dev = z_all.device
        n0 = 10 ** (-cfg.snr_db / 10)
        q = cfg.quantization_db
        step = m / j  # Set A beams per Set B step
        thresh = float(chi2.ppf(0.999, j))
        eye = torch.eye(3, dtype=torch.float64, device=dev)
        f = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64, device=dev)
        qn = torch.diag(torch.tensor([0.25 * self.rate_std ** 2, self.rate_std ** 2, self.power_std ** 2],
                                     dtype=torch.float64, device=dev))
        p0 = torch.diag(torch.tensor([(step / 2) ** 2, 0.5 ** 2, 10.0 ** 2], dtype=torch.float64, device=dev))

        def init(z: Tensor) -> tuple[Tensor, Tensor]:
            s = torch.zeros(z.shape[0], 3, dtype=torch.float64, device=dev)
            s[:, 0] = self._peak(z, mj, step, m)
            s[:, 2] = z.max(-1).values - _DB * math.log(n)  # the best report is ~ g·N
            return s, p0.expand(z.shape[0], 3, 3).clone()

        s, cov = init(z_all[:, 0])
        strikes = torch.zeros(b, dtype=torch.long, device=dev)
        out = torch.empty(b, t, 2, dtype=torch.float64, device=dev)
        out[:, 0] = s[:, :2]
        for tau in range(1, t):
            z = z_all[:, tau]  # [B, J]
            s = s @ f.T  # predict
            cov = f @ cov @ f.T + qn
            zh, hj, var = self._model(s, mj, n, m, n0, cfg.samples, q)  # [B, J], [B, J, 3], [B, J]
            innov = z - zh  # [B, J]
            sm = hj @ cov @ hj.transpose(1, 2) + torch.diag_embed(var)  # [B, J, J]
            gain = cov @ hj.transpose(1, 2) @ torch.linalg.inv(sm)  # [B, 3, J]
            nis = (innov.unsqueeze(1) @ torch.linalg.solve(sm, innov.unsqueeze(-1))).reshape(b)  # [B]
            s_new = s + (gain @ innov.unsqueeze(-1)).squeeze(-1)
            cov_new = (eye - gain @ hj) @ cov
            # Re-acquisition: the best report far from the track and well above what the track predicts.
            best = z.argmax(-1)  # [B]
            dist = torch.remainder(mj[best] - s_new[:, 0] + m / 2, m) - m / 2
            far = dist.abs() > self.reacquire_steps * step
            above = z.gather(-1, best[:, None])[:, 0] - zh.gather(-1, best[:, None])[:, 0] > self.reacquire_db
            strikes = torch.where(nis > thresh, strikes + 1, torch.zeros_like(strikes))
            restart = (far & above) | (strikes >= 2)
            if bool(restart.any()):
                s_re, c_re = init(z)
                s_new = torch.where(restart[:, None], s_re, s_new)
                cov_new = torch.where(restart[:, None, None], c_re, cov_new)
                strikes = torch.where(restart, torch.zeros_like(strikes), strikes)
            s_new[:, 0] = torch.remainder(s_new[:, 0], m)
            s, cov = s_new, 0.5 * (cov_new + cov_new.transpose(1, 2))  # keep it symmetric
            out[:, tau] = s[:, :2]
        return out

    def _model(self, s: Tensor, mj: Tensor, n: int, m: int, n0: float, samples: int, q: float
               ) -> tuple[Tensor, Tensor, Tensor]:
        """Predicted reports (dB) ``[B, J]``, Jacobian ``[B, J, 3]`` and measurement variance (dB²) ``[B, J]``."""
        delta = mj[None, :] - s[:, :1]  # [B, J]
        d, dd = dft_pattern(delta, n, m)
        g = 10 ** (s[:, 2:3] / 10)  # [B, 1]
        sig = g * d
        power = sig + n0  # [B, J]
        zh = _DB * torch.log(power)
        jac = torch.stack([-_DB * g * dd / power,  # dz/dx (δ = m_j − x)
                           torch.zeros_like(power),  # dz/dẋ
                           sig / power], dim=-1)  # dz/dP (P in dB)
        rel = (2 * sig * n0 + n0 ** 2) / (samples * power ** 2)
        # Beams in the pattern's nulls report what other paths leave there: trust them less.
        null = self.floor * n / (d + self.floor * n)  # [B, J] ~1 in a null, ~0 on the main lobe
        var = _DB ** 2 * rel + q ** 2 / 12 + self.model_var + NULL_VAR * null
        return zh, jac, var

    @staticmethod
    def _peak(z: Tensor, mj: Tensor, step: float, m: int) -> Tensor:
        """dB-parabola interpolated peak of Set B reports ``[B, J]`` → fractional Set A index ``[B]``."""
        from .interpolation import parabola_vertex

        j = z.shape[-1]
        best = z.argmax(-1)  # [B]
        y0 = z.gather(-1, best[:, None])[:, 0]
        ym = z.gather(-1, ((best - 1) % j)[:, None])[:, 0]
        yp = z.gather(-1, ((best + 1) % j)[:, None])[:, 0]
        _, _, v = parabola_vertex(ym, y0, yp)
        return torch.remainder(mj[best] + v * step, m)
