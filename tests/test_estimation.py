"""Joint time-frequency LMMSE channel estimation: the closed form, its error variance, and its place
between LS and perfect CSI (channel MSE and BLER), against Sionna's own estimators."""

import math

import numpy as np
import pytest
import torch

from beamattn.linklevel.chain import LinkChain, LinkConfig
from beamattn.linklevel.estimation import LMMSESlotEstimator, slot_correlation


def _channels(b: int, s: int = 14, f: int = 72, seed: int = 0) -> torch.Tensor:
    """Random slot channels ``[b, s, f]``: a complex gain, a Doppler phase ramp over the symbols and a delay
    ramp over the subcarriers (a time- and frequency-selective channel with a low-rank correlation)."""
    g = torch.Generator().manual_seed(seed)
    gain = torch.randn(b, 1, 1, dtype=torch.complex64, generator=g)
    doppler = torch.randn(b, 1, 1, generator=g) * torch.linspace(0, 1, s)[None, :, None]
    delay = 3 * torch.randn(b, 1, 1, generator=g) * torch.linspace(0, 1, f)[None, None, :]
    return (gain * torch.polar(torch.ones(b, s, f), doppler + delay)).to(torch.complex64)


def _received(chain: LinkChain, h: torch.Tensor, no: float, seed: int) -> torch.Tensor:
    from sionna.phy import config

    config.seed = seed
    bits = chain.source([h.shape[0], 1, 1, chain.k])
    x = chain.rg_mapper(chain.mapper(chain.encoder(bits)))  # [B, 1, 1, S, F]
    return chain.channel(x, h[:, None, None, None, None], no)  # [B, 1, 1, S, F]


def test_slot_correlation_is_hermitian_psd_and_rejects_bad_input():
    h = _channels(50, 4, 6)
    r = slot_correlation(h)
    assert r.shape == (24, 24) and r.dtype == torch.complex128
    assert torch.allclose(r, r.mH)
    assert torch.linalg.eigvalsh(r).min() > -1e-10
    v = h.reshape(50, -1).to(torch.complex128)
    assert torch.allclose(r[3, 5], (v[:, 3] * v[:, 5].conj()).mean())
    with pytest.raises(ValueError, match=r"argument 'h'.*expected complex slot channels \[B, S, F\]"):
        slot_correlation(h.real)


def test_estimate_equals_the_closed_form_per_codeword():
    # ĥ = R[:, P] (R[P, P] + N0/|p|² I)⁻¹ (y_P p*/|p|²) solved independently in float64 with NumPy.
    chain = LinkChain(LinkConfig(num_subcarriers=24))
    h = _channels(40, 14, 24)
    no = 0.3
    y = _received(chain, h, no, seed=4)
    pp = chain.rg.pilot_pattern
    est = LMMSESlotEstimator(pp.mask, pp.pilots, slot_correlation(h))
    h_hat, err_var = est(y, no)
    assert h_hat.shape == err_var.shape == (40, 1, 1, 1, 1, 14, 24)

    r = slot_correlation(h).numpy()
    mask = pp.mask[0, 0].numpy().astype(bool).reshape(-1)
    p_idx = np.flatnonzero(mask)
    pil = pp.pilots[0, 0].numpy().astype(np.complex128)
    a = r[np.ix_(p_idx, p_idx)] + no / np.abs(pil) ** 2 * np.eye(len(p_idx))
    w = np.linalg.solve(a.T, r[:, p_idx].T).T  # R_xp A⁻¹
    y_p = y.reshape(40, -1).numpy().astype(np.complex128)[:, p_idx] * pil.conj() / np.abs(pil) ** 2
    ref = (y_p @ w.T).reshape(40, 14, 24)
    ref_err = np.real(np.diag(r) - np.einsum("ij,ij->i", w, r[:, p_idx].conj())).reshape(14, 24)
    np.testing.assert_allclose(h_hat[:, 0, 0, 0, 0].numpy(), ref, atol=2e-5, rtol=0)
    np.testing.assert_allclose(err_var[0, 0, 0, 0, 0].numpy(), ref_err, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("snr_db", [-5.0, 5.0])
def test_mse_below_ls_and_sionna_lmmse_and_error_variance_is_calibrated(snr_db):
    from sionna.phy.ofdm import LMMSEChannelEstimator

    chain = LinkChain(LinkConfig(num_subcarriers=36))
    b = 300
    h = _channels(b, 14, 36, seed=1)
    no = 10 ** (-snr_db / 10)
    y = _received(chain, h, no, seed=2)
    truth = h[:, None, None, None, None]
    pp = chain.rg.pilot_pattern
    h_ls, _ = chain.ls_estimator(y, no)
    h_ours, err_ours = LMMSESlotEstimator(pp.mask, pp.pilots, slot_correlation(h))(y, no)
    # Sionna's separable (frequency, then time) LMMSE with the same statistics, as marginal covariances.
    cov_f = torch.einsum("bsf,bsg->fg", h, h.conj()) / (b * 14)
    cov_t = torch.einsum("bsf,btf->st", h, h.conj()) / (b * 36)
    n_sn = 100  # Sionna's estimator recomputes its filters per slot: slow, so a subset
    h_sn, _ = LMMSEChannelEstimator(chain.rg, cov_t, cov_f, order="f-t")(y[:n_sn], no)

    def mse(x, t):
        return (x - t).abs().pow(2).flatten(1).mean(-1)  # [B] per-slot MSE

    m_ls, m_ours = float(mse(h_ls, truth).mean()), float(mse(h_ours, truth).mean())
    d = mse(h_ours[:n_sn], truth[:n_sn]) - mse(h_sn, truth[:n_sn])  # paired per-slot differences
    print(f"{snr_db} dB: MSE LS {m_ls:.4f}, joint LMMSE {m_ours:.4f}; joint - Sionna's separable LMMSE on "
          f"{n_sn} slots: {float(d.mean()):+.5f} ± {float(d.std() / n_sn ** 0.5):.5f}")
    assert m_ours < 0.2 * m_ls  # averaging over 2 x 36 pilots through the correlation
    # The joint estimator is the optimum that the separable passes approximate: not worse beyond 2 SE.
    assert float(d.mean()) <= 2 * float(d.std()) / n_sn ** 0.5
    # The reported error variance is the actual MSE (within sampling error of 300 x 504 REs).
    assert float(err_ours.mean()) == pytest.approx(m_ours, rel=0.1)


def test_bler_lmmse_between_ls_and_perfect_csi():
    h = _channels(400, 14, 72, seed=3)
    no = 1.0  # 0 dB: LS estimation noise costs blocks, LMMSE recovers most of the gap to perfect CSI
    bler = {}
    for est in ("ls", "lmmse", "perfect"):
        chain = LinkChain(LinkConfig(estimator=est))
        if est == "lmmse":
            chain.set_correlation(h)
        bler[est] = chain.errors(h, no, seed=5).float().mean().item()
    print(bler)
    n = h.shape[0]
    sd = math.sqrt(0.25 / n)
    assert bler["lmmse"] < bler["ls"] - 6 * sd
    assert bler["perfect"] <= bler["lmmse"] + 3 * sd
    assert bler["lmmse"] - bler["perfect"] < 0.5 * (bler["ls"] - bler["perfect"])


def test_lmmse_needs_statistics_and_checks_shapes():
    chain = LinkChain(LinkConfig(num_subcarriers=24, estimator="lmmse"))
    with pytest.raises(ValueError, match="estimator 'lmmse' needs the channel's statistics"):
        chain.errors(1.0, 0.5, batch=2)
    with pytest.raises(ValueError, match=r"set_correlation got slot channels \(5, 14, 12\); expected \[B, S=14, F=24\]"):
        chain.set_correlation(torch.ones(5, 14, 12, dtype=torch.complex64))
    pp = chain.rg.pilot_pattern
    with pytest.raises(ValueError, match=r"argument 'correlation' has shape \(10, 10\)"):
        LMMSESlotEstimator(pp.mask, pp.pilots, torch.eye(10, dtype=torch.complex128))
    est = LMMSESlotEstimator(pp.mask, pp.pilots, slot_correlation(_channels(8, 14, 24)))
    with pytest.raises(ValueError, match=r"noise variance 'no' = 0.0; expected a value > 0"):
        est(torch.zeros(1, 1, 1, 14, 24, dtype=torch.complex64), 0.0)
    with pytest.raises(ValueError, match=r"argument 'y' has shape \(1, 14, 12\)"):
        est(torch.zeros(1, 14, 12, dtype=torch.complex64), 0.1)
