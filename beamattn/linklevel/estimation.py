"""LMMSE channel estimation over the whole OFDM slot, from the pilots and the channel's correlation.

For a SISO slot with channel ``h = vec(H) ∈ C^{S·F}`` (OFDM symbols x subcarriers, symbol-major) and
known unit-modulus pilots ``p`` on the resource elements ``P``, the least-squares estimate at the
pilots is ``ĥ_P = y_P p* / |p|² = h_P + e`` with ``E[e eᴴ] = diag(N0 / |p|²)``. The linear MMSE
estimate of the whole slot is

    ĥ = R[:, P] (R[P, P] + diag(N0 / |p|²))⁻¹ ĥ_P,      err_var = diag(R - W R[P, :])

with ``R = E[h hᴴ]`` the channel's (time x frequency) correlation matrix. Unlike Sionna's
``LMMSEChannelEstimator`` (separable passes over frequency then time, filters recomputed for every
codeword), this is the joint 2-D estimator: its filter ``W [S·F, |P|]`` depends only on ``N0``, so it
is computed once per noise level (in float64, by a Cholesky solve) and applied to a whole batch as one
matrix product.

``R`` is estimated from channel realisations with :func:`slot_correlation` (second-order statistics
known to the receiver, as in Sionna's channel-estimation tutorial).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["LMMSESlotEstimator", "slot_correlation"]


def slot_correlation(h: Tensor) -> Tensor:
    """Empirical correlation ``R = E[vec(h) vec(h)ᴴ]`` of slot channels.

    Args:
        h: ``[B, S, F]`` complex channel realisations (OFDM symbols x subcarriers).

    Returns:
        ``[S·F, S·F]`` complex128 Hermitian, positive semi-definite.
    """
    if not (torch.is_tensor(h) and h.is_complex() and h.dim() == 3 and h.shape[0] >= 1):
        got = f"shape {tuple(h.shape)}, dtype {h.dtype}" if torch.is_tensor(h) else type(h).__name__
        raise ValueError(f"linklevel: argument 'h' ({got}); expected complex slot channels [B, S, F]")
    v = h.reshape(h.shape[0], -1).to(torch.complex128)  # [B, S·F]
    return v.T @ v.conj() / v.shape[0]  # [S·F, S·F]


class LMMSESlotEstimator:
    """Joint time-frequency LMMSE channel estimator for one SISO stream.

    Args:
        pilot_mask: ``[S, F]`` (or Sionna's ``[1, 1, S, F]``) — 1 on pilot resource elements.
        pilots: ``[|P|]`` (or ``[1, 1, |P|]``) complex pilot symbols, in the symbol-major order of the mask
            (Sionna's ``PilotPattern.pilots``).
        correlation: ``[S·F, S·F]`` complex channel correlation (:func:`slot_correlation`).

    ``__call__(y [B, 1, 1, S, F], no: float) -> (h_hat, err_var)``, both ``[B, 1, 1, 1, 1, S, F]`` (rx, rx antenna, tx, stream) like
    Sionna's channel estimators, so it drops into ``LMMSEEqualizer(y, h_hat, err_var, no)``.
    """

    def __init__(self, pilot_mask: Tensor, pilots: Tensor, correlation: Tensor) -> None:
        # The filter is computed on the CPU in float64 and moved to each input's device and dtype when used.
        mask = pilot_mask.detach().cpu().reshape(pilot_mask.shape[-2:]).bool()  # [S, F]
        self.shape = tuple(mask.shape)
        num_re = mask.numel()
        self.pilot_index = mask.flatten().nonzero().flatten()  # [|P|], symbol-major like Sionna's pilots
        self.pilots = pilots.detach().cpu().reshape(-1).to(torch.complex128)  # [|P|]
        if self.pilots.numel() != self.pilot_index.numel():
            raise ValueError(f"linklevel: {self.pilots.numel()} pilot symbols for {self.pilot_index.numel()} pilot "
                             "positions; expected one symbol per pilot resource element")
        if not bool((self.pilots.abs() > 0).all()):
            raise ValueError("linklevel: the pilot pattern has zero pilots; expected non-zero pilot symbols on "
                             "every pilot resource element")
        if correlation.shape != (num_re, num_re) or not correlation.is_complex():
            raise ValueError(f"linklevel: argument 'correlation' has shape {tuple(correlation.shape)}, dtype "
                             f"{correlation.dtype}; expected complex [S·F, S·F] = [{num_re}, {num_re}]")
        self.correlation = correlation.detach().cpu().to(torch.complex128)
        self._filters: dict[float, tuple[Tensor, Tensor]] = {}
        self._applied_cache: dict[tuple, tuple[Tensor, Tensor, Tensor, Tensor]] = {}

    def filter(self, no: float) -> tuple[Tensor, Tensor]:
        """``W [S·F, |P|]`` complex128 and ``err_var [S·F]`` float64 for noise variance ``no``."""
        key = float(no)
        if key not in self._filters:
            if not key > 0:
                raise ValueError(f"linklevel: noise variance 'no' = {no!r}; expected a value > 0")
            r = self.correlation
            p = self.pilot_index
            r_xp = r[:, p]  # [S·F, |P|]
            noise = key / self.pilots.abs() ** 2  # [|P|] LS error variance at the pilots
            a = r[p][:, p] + torch.diag(noise).to(r.dtype)  # [|P|, |P|] Hermitian positive definite
            chol = torch.linalg.cholesky(a)
            w = torch.cholesky_solve(r_xp.mH, chol).mH  # [S·F, |P|] = R_xp A⁻¹
            err = (r.diagonal().real - (w * r_xp.conj()).sum(-1).real).clamp_min(0.0)  # [S·F]
            self._filters[key] = (w, err)
        return self._filters[key]

    def __call__(self, y: Tensor, no: float) -> tuple[Tensor, Tensor]:
        s, f = self.shape
        if y.shape[-2:] != (s, f):
            raise ValueError(f"linklevel: argument 'y' has shape {tuple(y.shape)}; expected [..., S={s}, F={f}]")
        w_t, inv_p, err, index = self._applied(float(no), y.dtype, y.device)
        batch = y.shape[:-2]
        h_ls = y.reshape(*batch, s * f)[..., index] * inv_p  # [..., |P|] LS at the pilots
        h_hat = (h_ls @ w_t).reshape(*batch, 1, 1, s, f)  # [B, 1, 1, tx=1, stream=1, S, F]
        return h_hat, err.expand(h_hat.shape)

    def _applied(self, no: float, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The filter in the input's dtype and device (cached: one conversion per noise level)."""
        key = (no, dtype, device)
        if key not in self._applied_cache:
            w, err = self.filter(no)
            s, f = self.shape
            self._applied_cache[key] = (w.T.to(device=device, dtype=dtype),  # [|P|, S·F]
                                        (self.pilots.conj() / self.pilots.abs() ** 2).to(device=device, dtype=dtype),
                                        err.reshape(s, f).to(device=device, dtype=dtype.to_real()),
                                        self.pilot_index.to(device))
        return self._applied_cache[key]
