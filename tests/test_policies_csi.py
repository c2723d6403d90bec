"""Tests of the phase-aware CSI policies (NR Type I/II, MRT from the reports) and OMP.

Closed forms on hand-made channels: a STATIC channel with exact reports (no noise, no quantisation) gives
complex reports ``y_b = hᵀ v_b``, so MRT from the reports of an orthonormal Set B is MRT
on Set B's span, Type II with every beam and no quantisation is that same beam, and OMP's first
atom on one path is the grid angle nearest to the path (the correlation with a steering vector
falls monotonically within the main lobe).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from beamattn.wireless.arrays import ULA, steering_vector, unit_vector
from beamattn.wireless.channels.base import ChannelSample
from beamattn.wireless.codebooks import dft_codebook
from beamattn.wireless.measurement import MeasurementConfig, build_episode
from beamattn.wireless.policies import make_policy
from beamattn.wireless.policies.checks import check_decision
from beamattn.wireless.policies.csi_codebooks import TYPE2_AMPLITUDES, complex_reports, quantize_phase
from beamattn.wireless.runner import episodes

sys.path.insert(0, str(Path(__file__).parent))
from wireless_fixtures import tiny_scenario  # noqa: E402

NEW = ["type1", "type1-oversampled", "type1-oversampled-avg", "type2-l2-qpsk", "type2-l2-8psk", "type2-l4-qpsk", "type2-l4-8psk",
       "type2-l4-8psk-avg", "mrt-reports", "mrt-reports-avg", "mrt-reports-mmse", "omp-beam", "omp-mrt", "omp-beam-avg", "omp-mrt-avg"]
NEEDS_PHASE = [n for n in NEW if n != "type1"]


def _sample(h: torch.Tensor, dt: float = 0.005) -> ChannelSample:
    b, t = h.shape[:2]
    return ChannelSample(h=h, positions=torch.zeros(b, t, 3, dtype=torch.float64),
                         times=torch.arange(t, dtype=torch.float64) * dt, los=torch.zeros(b, t, dtype=torch.bool))


def _static(h0: torch.Tensor, t: int = 12) -> torch.Tensor:
    """A static channel ``[B, T, N]`` from ``h0 [B, N]``."""
    return h0.unsqueeze(1).expand(-1, t, -1).clone()


def _exact_episode(h0: torch.Tensor, oversampling: int, set_b: int, **kw):
    """Noiseless, unquantised, phase-reporting episode of a static channel ``h0 [B, N]``.

    Measured at 100 dB (the largest measurement SNR a scenario may set), then the reports are replaced by
    the exact ``|hᵀv|²`` (dB) and ``angle(hᵀv)``: noiseless to float64 rounding.
    """
    cfg = dict(period=0.02, delay=0.005, snr_db=100.0, samples=1, quantization_db=0.0, with_phase=True,
               set_b=set_b, history=1)
    cfg.update(kw)
    book = dft_codebook(ULA(h0.shape[-1]), oversampling, dtype=torch.complex128)
    ep = build_episode(_sample(_static(h0)), book, None, MeasurementConfig(**cfg), 10.0, seed=0)
    y = (h0 @ book.beams.T).unsqueeze(1).expand(-1, ep.reports_db.shape[1], -1)  # [B, D + H - 1, M] hᵀv
    ep.reports_db = 10 * torch.log10(y.abs() ** 2)
    ep.report_phase = torch.angle(y)
    return ep


def _gauss(b: int, n: int, seed: int) -> torch.Tensor:
    return torch.randn(b, n, generator=torch.Generator().manual_seed(seed), dtype=torch.complex128)


def _paths(az: torch.Tensor, gains: torch.Tensor, n: int) -> torch.Tensor:
    """``Σ_p g_p a(u_p)``: azimuths ``[B, P]`` (rad), gains ``[B, P]`` → ``[B, N]`` complex128."""
    a = steering_vector(ULA(n), unit_vector(az), dtype=torch.complex128)  # [B, P, N]
    return (gains.unsqueeze(-1) * a).sum(-2)


def _set_b_beams(ep) -> torch.Tensor:
    return ep.codebook.beams[ep.set_b]  # [J, N]


def _align(w: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``w`` rotated by the common phase that best matches ``ref`` (a common phase changes no gain)."""
    inner = (w.conj() * ref).sum(-1, keepdim=True)  # [..., 1]
    return w * inner / inner.abs()


# --------------------------------------------------------------------------- MRT from the reports


def test_mrt_from_reports_with_a_full_orthogonal_basis_reaches_norm_h_squared():
    ep = _exact_episode(_gauss(5, 8, 0), oversampling=2, set_b=8)  # Set B: the 8 orthogonal beams (every 2nd)
    dec = make_policy("mrt-reports").decide(ep)
    torch.testing.assert_close(ep.gain(dec.beams), ep.mrt_gain, rtol=1e-9, atol=0)


def test_mrt_from_reports_is_conj_h_projected_on_set_b():
    # Set B = 4 of the 8 orthogonal beams: w must be conj(h) projected on their span, normalised. The
    # opposite sign (v_b e^{+jφ_b}) or hᴴ instead of hᵀ would give another vector and a lower gain.
    h0 = _gauss(5, 8, 1)
    ep = _exact_episode(h0, oversampling=2, set_b=4)
    v = _set_b_beams(ep)  # [4, N]
    proj = v.T @ v.conj()  # [N, N] Σ_b v_b v_bᴴ
    p = h0.conj() @ proj.T  # [B, N] P conj(h)
    want = p / torch.linalg.vector_norm(p, dim=-1, keepdim=True)
    dec = make_policy("mrt-reports").decide(ep)
    torch.testing.assert_close(dec.beams, want.unsqueeze(1).expand_as(dec.beams), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ep.gain(dec.beams)[:, 0], (p.abs() ** 2).sum(-1), rtol=1e-9, atol=0)


# --------------------------------------------------------------------------- reading the reports


def test_reports_average_linear_power_over_the_history_and_keep_the_latest_phase():
    scn = tiny_scenario(measurement={"history": 3, "quantization_db": 1.0})
    _, ep, _ = next(episodes(scn, 0, 2))
    rsrp, phase = ep.history(3)  # [B, D, 3, K]
    want_amp = (10 ** (rsrp[..., ep.set_b].double() / 10)).mean(-2).sqrt()
    y = complex_reports(ep, "t", history=None)
    torch.testing.assert_close(y.abs().double(), want_amp, rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.angle(y), phase[:, :, -1][..., ep.set_b].to(torch.float32), rtol=0, atol=1e-5)
    torch.testing.assert_close(complex_reports(ep, "t"), complex_reports(ep, "t", history=1))
    with pytest.raises(ValueError, match="policy 'mrt-reports': argument 'history' = 4 exceeds"):
        make_policy("mrt-reports", history=4).decide(ep)
    with pytest.raises(ValueError, match="argument 'debias' = 1"):
        make_policy("omp-mrt", debias=1)


def test_debiased_reports_estimate_the_beam_gain_without_the_noise_power():
    # RSRP = mean_r |sqrt(ρ_m) hᵀv + n_r|² / ρ_m has mean |hᵀv|² + 1/ρ_m: at ρ_m = 0 dB the bias is 1, as large
    # as a weak beam's gain. Debiased, the mean over many decisions of a strong beam's power is |hᵀv|².
    book = dft_codebook(ULA(8), 2, dtype=torch.complex128)
    h0 = math.sqrt(8) * (3 * book.beams[0] + 2 * book.beams[2]).conj().unsqueeze(0)  # |hᵀv|² = 72 and 32
    cfg = MeasurementConfig(period=0.02, delay=0.005, snr_db=0.0, samples=1, quantization_db=0.0, with_phase=True,
                            set_b=8, history=4)
    h = h0.expand(64, -1)  # 64 drops of the same static channel, independent noise
    ep = build_episode(_sample(_static(h, t=400)), book, None, cfg, 10.0, seed=1)
    true = (h0 @ book.beams[ep.set_b].T).abs() ** 2  # [1, J]
    strong = true[0] > 8  # beams far above the noise: the floor at 1e-12 never acts
    assert int(strong.sum()) == 2
    for hist in (1, 4):
        est = complex_reports(ep, "t", history=hist, debias=True).abs() ** 2  # [B, D, J]
        raw = complex_reports(ep, "t", history=hist).abs() ** 2
        n = est.shape[0] * est.shape[1]
        mean, err = est.mean((0, 1)), 4 * est.std((0, 1)) / math.sqrt(n / hist)  # correlated over the history
        assert bool(((mean - true[0]).abs() <= err)[strong].all())
        assert bool(((raw.mean((0, 1)) - mean - 1).abs()[strong] < 1e-9).all())  # exactly 1/ρ_m less


def test_shrunk_reports_are_the_linear_mmse_estimates():
    # y_b P/(P + σ²): σ² = 1/(ρ_m R) is the variance of the mean of R samples CN(0, 1)/sqrt(ρ_m); here 10 dB, R = 2.
    _, ep, _ = next(episodes(tiny_scenario(), 0, 2))
    assert ep.config.snr_db == 10.0 and ep.config.samples == 2
    y = complex_reports(ep, "t", history=None, debias=True)
    z = complex_reports(ep, "t", history=None, debias=True, shrink=True)
    p = y.abs() ** 2
    torch.testing.assert_close(z, y * (p / (p + 0.1 / 2)), rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- Type II


def test_type2_unquantised_with_every_beam_of_the_basis_is_mrt_from_the_reports():
    # On noisy, quantised reports of a moving channel: the identity is algebraic.
    scn = tiny_scenario()  # ULA 8, Set B = the 8 orthogonal beams of a 2x DFT codebook
    _, ep, _ = next(episodes(scn, 0, 2))
    t2 = make_policy("type2", beams=8, phase_bits=None, amplitude=False).decide(ep)
    mrt = make_policy("mrt-reports").decide(ep)
    torch.testing.assert_close(_align(t2.beams, mrt.beams), mrt.beams, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t2.weights, mrt.weights, rtol=1e-5, atol=1e-6)


def test_type2_coefficients_lie_in_the_standard_sets():
    ep = _exact_episode(_gauss(16, 8, 2), oversampling=2, set_b=8)
    amps = torch.tensor(TYPE2_AMPLITUDES, dtype=torch.float64)
    for beams, bits in ((2, 2), (4, 3)):
        pol = make_policy("type2", beams=beams, phase_bits=bits)
        coef, chosen, lead, _ = pol.coefficients(ep)
        assert bool((chosen.sum(-1) == beams).all())
        c = coef[chosen]
        assert bool(((c.abs().unsqueeze(-1) - amps).abs().min(-1).values < 1e-12).all())
        on = c.abs() > 0
        theta = torch.remainder(torch.angle(c[on]), 2 * math.pi) / (2 * math.pi / 2 ** bits)
        assert bool(((theta - theta.round()).abs() < 1e-9).all())
        lead_pos = (ep.set_b == lead.unsqueeze(-1)).to(torch.long).argmax(-1)  # [B, D]
        torch.testing.assert_close(coef.gather(-1, lead_pos.unsqueeze(-1)),
                                   torch.ones_like(coef[..., :1]))  # the strongest beam: 1, not reported
        dec = pol.decide(ep)
        want = coef @ _set_b_beams(ep)
        torch.testing.assert_close(dec.beams, want / torch.linalg.vector_norm(want, dim=-1, keepdim=True))


def test_phase_quantiser_error_is_at_most_half_a_step():
    theta = torch.linspace(-7, 7, 1001, dtype=torch.float64)
    for bits in (1, 2, 3):
        err = torch.angle(torch.polar(torch.ones_like(theta), theta - quantize_phase(theta, bits)))
        assert float(err.abs().max()) <= math.pi / 2 ** bits + 1e-12


@pytest.mark.parametrize("beams,bits", [(2, 2), (2, 3), (4, 2), (4, 3)])
def test_type2_report_bits_follow_the_closed_form(beams, bits):
    # ULA 16, 4x oversampled (64 beams), Set B = 16: one orthogonal group of 16 (the scenarios' layout).
    ep = _exact_episode(_gauss(1, 16, 3), oversampling=4, set_b=16)
    want = math.ceil(math.log2(math.comb(16, beams))) + math.ceil(math.log2(beams)) + (3 + bits) * (beams - 1)
    assert make_policy(f"type2-l{beams}-{'qpsk' if bits == 2 else '8psk'}").report_bits(ep) == want
    # Set B = all 16 beams of a 2x codebook of 8 antennas: two orthogonal groups of 8, one more bit.
    ep2 = _exact_episode(_gauss(1, 8, 3), oversampling=2, set_b=16)
    want2 = 1 + math.ceil(math.log2(math.comb(8, beams))) + math.ceil(math.log2(beams)) + (3 + bits) * (beams - 1)
    assert make_policy("type2", beams=beams, phase_bits=bits).report_bits(ep2) == want2


def test_report_sizes_of_type1_and_the_unquantised_policies():
    ep = _exact_episode(_gauss(1, 16, 3), oversampling=4, set_b=16)
    assert make_policy("type1").report_bits(ep) == 6  # i_1 addresses 64 beams, no co-phase bits
    assert make_policy("type1-oversampled").report_bits(ep) == 6
    for name in ("mrt-reports", "omp-beam", "omp-mrt"):
        pol = make_policy(name)
        assert pol.report_bits(ep) is None and pol.report_values(ep) == 16
    assert make_policy("type2", beams=2, phase_bits=None).report_bits(ep) is None


def test_more_bits_and_more_beams_never_lower_the_noiseless_gain_on_average():
    ep = _exact_episode(_gauss(64, 8, 4), oversampling=2, set_b=8)

    def mean_gain(name: str, **kw) -> float:
        return float(ep.gain(make_policy(name, **kw).decide(ep).beams).mean())

    t1 = mean_gain("type1")
    q = {(ell, bits): mean_gain("type2", beams=ell, phase_bits=bits) for ell in (2, 4, 8) for bits in (2, 3, None)}
    exact = mean_gain("type2", beams=8, phase_bits=None, amplitude=False)
    assert t1 <= q[(2, 2)]
    for ell in (2, 4, 8):
        assert q[(ell, 2)] <= q[(ell, 3)] <= q[(ell, None)]
    for bits in (2, 3, None):
        assert q[(2, bits)] <= q[(4, bits)] <= q[(8, bits)]
    assert q[(8, None)] <= exact
    assert exact == pytest.approx(float(ep.mrt_gain.mean()), rel=1e-9)  # the MRT bound, reached


def test_type2_refuses_more_beams_than_the_orthogonal_group_holds():
    ep = _exact_episode(_gauss(1, 8, 3), oversampling=2, set_b=8)
    with pytest.raises(ValueError, match="'beams' = 9 .* only 8 beams"):
        make_policy("type2", beams=9).decide(ep)
    with pytest.raises(ValueError, match="'beams' = 0"):
        make_policy("type2", beams=0)
    with pytest.raises(ValueError, match="'phase_bits' = 0"):
        make_policy("type2", phase_bits=0)


# --------------------------------------------------------------------------- Type I


def test_type1_is_the_best_reported_set_b_beam_and_oversampled_type1_the_genie_beam():
    ep = _exact_episode(_gauss(8, 8, 5), oversampling=4, set_b=8)  # 32 beams; Set B = the orthogonal basis
    t1 = make_policy("type1").decide(ep)
    assert torch.equal(t1.index, make_policy("best-of-set-b").decide(ep).index)
    # The complex reports of a full basis give h exactly: the best of all 32 beams is the genie beam.
    t1o = make_policy("type1-oversampled").decide(ep)
    assert torch.equal(t1o.index, ep.gain_use.argmax(-1))


# --------------------------------------------------------------------------- OMP

N_OMP, O_FINE = 16, 8
STEP_U = 1 / (O_FINE * N_OMP * 0.5)  # grid step in u_y = sin(azimuth) (half-wavelength ULA)


def test_omp_recovers_the_angle_of_one_path_to_half_a_grid_step():
    g = torch.Generator().manual_seed(6)
    az = (torch.rand(24, 1, generator=g, dtype=torch.float64) - 0.5) * math.radians(120)
    gains = torch.randn(24, 1, generator=g, dtype=torch.complex128)
    ep = _exact_episode(_paths(az, gains, N_OMP), oversampling=4, set_b=16)
    pol = make_policy("omp-beam", oversampling=O_FINE)
    atoms, _, _, _ = pol.estimate(ep)
    u_hat = pol.directions(ep, atoms[:, 0, 0])[:, 1]  # [B] u_y of the first atom
    assert float((u_hat - torch.sin(az[:, 0])).abs().max()) <= STEP_U / 2 + 1e-9


def test_omp_recovers_two_well_separated_paths_to_a_grid_step():
    g = torch.Generator().manual_seed(7)
    u1 = (torch.rand(24, generator=g, dtype=torch.float64) - 0.5) * 1.2  # u_y in ±0.6
    sep = (4 + 4 * torch.rand(24, generator=g, dtype=torch.float64)) * 2 / N_OMP  # 4 to 8 beam widths
    u2 = torch.where(u1 > 0, u1 - sep, u1 + sep)
    az = torch.asin(torch.stack([u1, u2], -1))  # [B, 2]
    mag = torch.stack([torch.ones(24, dtype=torch.float64), 0.6 + 0.4 * torch.rand(24, generator=g,
                                                                                    dtype=torch.float64)], -1)
    phase = 2 * math.pi * torch.rand(24, 2, generator=g, dtype=torch.float64)
    ep = _exact_episode(_paths(az, torch.polar(mag, phase), N_OMP), oversampling=4, set_b=16)
    pol = make_policy("omp-mrt", oversampling=O_FINE)
    atoms, _, used, _ = pol.estimate(ep)
    assert bool((used[:, 0] >= 2).all())
    u_hat = pol.directions(ep, atoms[:, 0, :2])[..., 1]  # [B, 2]
    true = torch.stack([u1, u2], -1)  # [B, 2]
    err = torch.minimum((u_hat - true).abs().amax(-1), (u_hat - true.flip(-1)).abs().amax(-1))  # either order
    assert float(err.max()) <= STEP_U + 1e-9


def test_omp_mrt_on_one_path_gains_at_least_the_grid_mismatch_bound():
    # ĥ is h projected on the picked atoms, so MRT on it gains ||ĥ||² >= |a_gᴴ h|² of the first, nearest
    # atom: at most half a grid step off, i.e. at least the Dirichlet kernel at delta = 1/(2 O N) of ||h||².
    g = torch.Generator().manual_seed(8)
    az = (torch.rand(16, 1, generator=g, dtype=torch.float64) - 0.5) * math.radians(120)
    ep = _exact_episode(_paths(az, torch.ones(16, 1, dtype=torch.complex128), N_OMP), oversampling=4, set_b=16)
    delta = 1 / (2 * O_FINE * N_OMP)
    bound = (math.sin(math.pi * N_OMP * delta) / (N_OMP * math.sin(math.pi * delta))) ** 2
    gain = ep.gain(make_policy("omp-mrt", oversampling=O_FINE).decide(ep).beams)
    assert bool((gain >= bound * ep.mrt_gain * (1 - 1e-9)).all())


def test_omp_stops_at_one_path_on_a_grid_angle():
    # A path exactly on an atom of the grid: one atom explains the reports, OMP stops there.
    fine = dft_codebook(ULA(N_OMP), O_FINE, dtype=torch.complex128)
    h0 = 2.0 * fine.beams[[5, 40, 99]].conj()  # [3, N] paths towards atoms 5, 40, 99
    ep = _exact_episode(h0, oversampling=4, set_b=16)
    atoms, gains, used, h_hat = make_policy("omp-beam", oversampling=O_FINE).estimate(ep)
    assert bool((used == 1).all())
    assert atoms[:, 0, 0].tolist() == [5, 40, 99]
    torch.testing.assert_close(h_hat[:, 0], h0, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- every new policy


@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("name", NEW)
def test_every_new_policy_returns_unit_norm_finite_beams(name, grid):
    # Noisy, quantised reports of a moving channel, ULA 8 or UPA 2x4 (Set B: a 2x4 sub-grid, the basis).
    extra = {"array": {"num_rows": 2, "num_cols": 4}, "codebook": {"oversampling": 2, "num_wide": 0}} if grid else {}
    scn = tiny_scenario(**extra)
    _, ep, _ = next(episodes(scn, 0, 2))
    dec = make_policy(name).decide(ep)
    check_decision(name, ep, dec)  # shapes, finite, unit norm, a hard pick is its codebook beam
    norm = torch.linalg.vector_norm(dec.beams, dim=-1)
    assert bool(torch.isfinite(torch.view_as_real(dec.beams)).all())
    assert float((norm - 1).abs().max()) < 1e-5
    assert bool((dec.measured == ep.set_b.numel()).all())


@pytest.mark.parametrize("name", NEEDS_PHASE)
def test_policies_that_need_phases_name_the_scenario_field(name):
    scn = tiny_scenario(measurement={"with_phase": False})
    _, ep, _ = next(episodes(scn, 0, 2))
    with pytest.raises(ValueError, match=rf"^policy '{name}' needs phase reports: .*'with_phase' = false"):
        make_policy(name).decide(ep)


def test_type1_runs_without_phases():
    _, ep, _ = next(episodes(tiny_scenario(measurement={"with_phase": False}), 0, 2))
    check_decision("type1", ep, make_policy("type1").decide(ep))


def test_a_combination_shrunk_to_nothing_falls_back_to_the_strongest_beam():
    # Every coefficient shrunk to 0 (all reports below the noise power): the beam is the strongest Set B
    # beam alone, with weight 1, instead of weights summing to ~0.
    h0 = _gauss(3, 8, 4)
    ep = _exact_episode(h0, 2, 8)
    dec = make_policy("mrt-reports").decide(ep)
    from beamattn.wireless.policies.csi_codebooks import _combination

    zero = torch.zeros(*dec.index.shape, ep.set_b.numel(), dtype=torch.complex128)
    members = torch.ones_like(zero, dtype=torch.bool)
    out = _combination(ep, zero, members, dec.index, dec.ranking)
    torch.testing.assert_close(out.beams, ep.codebook.beams[dec.index].to(out.beams.dtype))
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(dec.index.shape))
    assert bool((out.weights.gather(-1, dec.index.unsqueeze(-1)) == 1).all())
    check_decision("mrt-reports", ep, out)


def test_run_records_the_report_size_of_csi_policies():
    from beamattn.wireless.runner import run_scenario

    res = run_scenario(tiny_scenario(), None, policies=["genie", "type1", "type2-l2-qpsk", "mrt-reports"],
                       progress=False, figures=False)
    _, ep, _ = next(episodes(tiny_scenario(), 0, 2))
    assert res.summary["type1"]["report"]["bits"] == make_policy("type1").report_bits(ep) == 4  # 16 beams
    assert res.summary["type2-l2-qpsk"]["report"] == {"bits": make_policy("type2-l2-qpsk").report_bits(ep),
                                                      "complex_values": 1}
    assert res.summary["mrt-reports"]["report"] == {"bits": None, "complex_values": ep.set_b.numel()}
    assert "report" not in res.summary["genie"]
