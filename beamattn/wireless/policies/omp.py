"""OMP: the dominant path angles from the complex Set B reports, then a beam for that channel.

A path towards direction ``u`` with gain ``x`` has channel ``h = x a(u)`` and gives the report
``y_b = hᵀ v_b = x a(u)ᵀ v_b`` on Set B beam ``b``. The dictionary is a fine angle grid: the
steering vectors (unit norm) of an ``oversampling``-times oversampled DFT grid (``a_g = conj(v_g)``
for the DFT beams ``v_g`` of :func:`~..codebooks.dft_codebook`: ``oversampling·N_h`` angles per
horizontal axis, as many per vertical axis of a UPA), keeping visible directions only, projected
on Set B: ``Φ[g, b] = a_gᵀ v_b``. Orthogonal matching pursuit picks, per decision, up to
``max_paths`` atoms greedily (largest normalised correlation ``|Φ_gᴴ r| / ||Φ_g||`` with the
residual ``r``), refits all picked gains by least squares and stops at the first ``K`` whose
residual energy ``||r||²`` is at most ``max(rel_tol ||y||², J σ²)`` — ``σ² = 1 / (ρ_m R)``, the
noise variance of one complex report (measurement SNR ``ρ_m``, ``R`` samples), known to the system.

The reconstructed channel ``ĥ = Σ_k x_k a_{g_k}`` gives two policies:

- ``omp-beam``: the Set A beam with the largest ``|ĥᵀ v_m|²`` (for one path: the beam closest to
  the estimated angle); a codebook beam, like a sweep's pick;
- ``omp-mrt``: MRT on the reconstructed channel, ``w = conj(ĥ) / ||ĥ||`` (a sparse, denoised
  version of ``mrt-reports``, which uses the raw reports).

``omp-beam-avg`` / ``omp-mrt-avg`` read the amplitudes as the selector reads its reports: the mean
RSRP of the whole measurement history less the noise power (``history``/``debias`` of
:class:`~.csi_codebooks.ReportPolicy`; phases: the latest).

All need phase reports (``[measurement] with_phase = true``); overhead ``|Set B|`` beams. Report:
unquantised, ``|Set B|`` complex values (``report_bits`` is None) — or, if the UE ran OMP, ``K``
angles and gains; the count here is of what the base station is sent in this package's model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..codebooks import dft_codebook
from ..measurement import Episode
from .base import Decision, _pick, register
from .csi_codebooks import ReportPolicy, _set_b_beams, _unit

__all__ = ["OMP", "OMPBeam", "OMPMRT", "OMPBeamAvg", "OMPMRTAvg"]


class OMP(ReportPolicy):
    """OMP over a fine angle grid (module docstring); subclasses choose the beam.

    Args:
        max_paths: at most ``K`` paths (1 to 3 is the useful range).
        oversampling: angle-grid oversampling per array axis (grid step ``1 / (oversampling·N_h)``
            in horizontal spatial frequency).
        rel_tol: stop once the residual holds at most this share of the report energy.
        history, debias: how the reports are read (:class:`~.csi_codebooks.ReportPolicy`).
    """

    def __init__(self, max_paths: int = 3, oversampling: int = 8, rel_tol: float = 0.01,
                 history: int | None = 1, debias: bool = False) -> None:
        super().__init__(history, debias)
        where = f"policy {self.name!r}"
        if isinstance(max_paths, bool) or not isinstance(max_paths, int) or max_paths < 1:
            raise ValueError(f"{where}: argument 'max_paths' = {max_paths!r}; expected an integer >= 1")
        if isinstance(oversampling, bool) or not isinstance(oversampling, int) or oversampling < 1:
            raise ValueError(f"{where}: argument 'oversampling' = {oversampling!r}; expected an integer >= 1")
        if isinstance(rel_tol, bool) or not isinstance(rel_tol, (int, float)) or not 0 <= rel_tol < 1:
            raise ValueError(f"{where}: argument 'rel_tol' = {rel_tol!r}; expected a number in [0, 1)")
        self.max_paths, self.oversampling, self.rel_tol = max_paths, oversampling, float(rel_tol)
        self._cache: dict = {}

    def report_bits(self, ep: Episode) -> None:
        return None

    def report_values(self, ep: Episode) -> int:
        return int(ep.set_b.numel())

    def dictionary(self, ep: Episode) -> tuple[Tensor, Tensor]:
        """Atoms ``a_g [G, N]`` (unit-norm steering vectors of visible directions) and their directions
        ``[G, 3]`` (unit vectors, the global frame of :mod:`..arrays`)."""
        arr = ep.codebook.array
        key = (arr, ep.cov_use.dtype, ep.device)
        if key not in self._cache:
            o = self.oversampling
            fine = dft_codebook(arr, (o if arr.num_rows > 1 else 1, o if arr.num_cols > 1 else 1),
                                dtype=ep.cov_use.dtype)
            visible = torch.isfinite(fine.directions).all(-1)  # [G]
            # A DFT beam v points at u when v ∝ conj(a(u)): the steering vector of its direction is conj(v).
            self._cache[key] = (fine.beams[visible].conj().to(ep.device), fine.directions[visible].to(ep.device))
        return self._cache[key]

    def estimate(self, ep: Episode) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per decision: atoms ``[B, D, K]`` (long, pick order), gains ``[B, D, K]`` (complex, 0 past the
        stop), paths used ``[B, D]`` (long, ``1..K``) and the channel estimate ``ĥ [B, D, N]``."""
        y = self.reports(ep)  # [B, D, J]
        atoms, _ = self.dictionary(ep)  # [G, N]
        phi = atoms @ _set_b_beams(ep).T  # [G, J]: Φ[g, b] = a_gᵀ v_b
        norm = torch.linalg.vector_norm(phi, dim=-1).clamp_min(1e-12)  # [G]
        b, d, j = y.shape
        ys = y.reshape(-1, j)  # [S, J]
        cfg = ep.config
        noise = 10 ** (-cfg.snr_db / 10) / cfg.samples  # σ² of one complex report
        floor = torch.clamp((ys.abs() ** 2).sum(-1) * self.rel_tol, min=j * noise)  # [S]
        r = ys
        support: list[Tensor] = []
        fits, done = [], []
        for _ in range(self.max_paths):
            corr = (r @ phi.conj().T).abs() / norm  # [S, G] |Φ_gᴴ r| / ||Φ_g||
            support.append(corr.argmax(-1))  # [S]
            sel = torch.stack(support, -1)  # [S, k]
            a_s = phi[sel].transpose(-2, -1)  # [S, J, k]: columns Φ_g
            x = torch.linalg.lstsq(a_s, ys.unsqueeze(-1)).solution.squeeze(-1)  # [S, k] LS gains
            r = ys - (a_s @ x.unsqueeze(-1)).squeeze(-1)  # [S, J]
            fits.append(x)
            done.append((r.abs() ** 2).sum(-1) <= floor)  # [S]
        k_max = self.max_paths
        stop = torch.stack(done, -1)  # [S, K]
        stop[:, -1] = True
        used = stop.to(torch.long).argmax(-1) + 1  # [S] first k that meets the threshold
        gains = torch.zeros(ys.shape[0], k_max, dtype=y.dtype, device=y.device)  # [S, K]
        for k, x in enumerate(fits, start=1):
            gains[:, :k] = torch.where((used == k).unsqueeze(-1), x, gains[:, :k])
        idx = torch.stack(support, -1)  # [S, K]
        h_hat = (gains.unsqueeze(-1) * atoms[idx]).sum(-2)  # [S, N] Σ_k x_k a_{g_k}
        return (idx.reshape(b, d, k_max), gains.reshape(b, d, k_max), used.reshape(b, d),
                h_hat.reshape(b, d, -1))

    def directions(self, ep: Episode, atoms: Tensor) -> Tensor:
        """Unit direction vectors ``[..., 3]`` of atom ids ``[...]`` from :meth:`estimate`."""
        return self.dictionary(ep)[1][atoms]

    def _gains(self, ep: Episode, h_hat: Tensor) -> Tensor:
        return (h_hat @ ep.codebook.beams.to(h_hat.dtype).T).abs() ** 2  # [B, D, M] |ĥᵀ v_m|²


@register("omp-beam")
class OMPBeam(OMP):
    """OMP angle estimation, then the Set A beam with the largest gain on the estimated channel."""

    def decide(self, ep: Episode) -> Decision:
        *_, h_hat = self.estimate(ep)
        ranking = self._gains(ep, h_hat).topk(min(4, ep.num_beams), dim=-1).indices  # [B, D, 4]
        return _pick(ep, ranking[..., 0], float(ep.set_b.numel()), ranking)


@register("omp-mrt")
class OMPMRT(OMP):
    """OMP angle estimation, then MRT on the reconstructed channel: ``conj(ĥ) / ||ĥ||``."""

    def decide(self, ep: Episode) -> Decision:
        *_, h_hat = self.estimate(ep)
        ranking = self._gains(ep, h_hat).topk(min(4, ep.num_beams), dim=-1).indices  # [B, D, 4]
        w = _unit(h_hat.conj())  # [B, D, N]
        index = torch.full(w.shape[:2], -1, dtype=torch.long, device=w.device)
        measured = torch.full(w.shape[:2], float(ep.set_b.numel()), device=w.device)
        return Decision(beams=w, index=index, measured=measured, ranking=ranking)


@register("omp-beam-avg")
class OMPBeamAvg(OMPBeam):
    """``omp-beam`` with the amplitudes of the whole report history, less the noise power."""

    def __init__(self) -> None:
        super().__init__(history=None, debias=True)


@register("omp-mrt-avg")
class OMPMRTAvg(OMPMRT):
    """``omp-mrt`` with the amplitudes of the whole report history, less the noise power."""

    def __init__(self) -> None:
        super().__init__(history=None, debias=True)
