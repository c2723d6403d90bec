"""Tests of beamattn.wireless.measurement: timeline, L1-RSRP reports, use-interval truth, common random numbers.

Channels are hand-made (static line-of-sight ``h = g a(u)`` or i.i.d. complex Gaussian per sample) so the
tests do not depend on the channel simulator. Conventions (design.md §3): ``y = hᵀ w x``, gain ``|hᵀ v|²``.
"""

from __future__ import annotations

import math

import pytest
import torch

from beamattn.wireless.arrays import ULA, steering_vector, unit_vector
from beamattn.wireless.channels.base import ChannelSample
from beamattn.wireless.codebooks import dft_codebook, wide_codebook
from beamattn.wireless.measurement import (
    MeasurementConfig,
    build_episode,
    make_timeline,
    set_b_indices,
)

DT = 0.005  # s per channel sample; period 0.02 s = 4 steps, delay 0.005 s = 1 step


# --------------------------------------------------------------------------- helpers


def _sample(h: torch.Tensor, dt: float = DT) -> ChannelSample:
    b, t = h.shape[:2]
    freqs = None if h.dim() == 3 else torch.arange(h.shape[2], dtype=torch.float64) * 30e3
    return ChannelSample(h=h, positions=torch.zeros(b, t, 3, dtype=torch.float64),
                         times=torch.arange(t, dtype=torch.float64) * dt,
                         los=torch.zeros(b, t, dtype=torch.bool), subcarrier_frequencies=freqs)


def _gauss(b: int, t: int, n: int, seed: int, f: int | None = None) -> torch.Tensor:
    """I.i.d. CN(0, 1) channel, a new draw at every sample (and subcarrier): [B, T, (F,) N] complex128."""
    g = torch.Generator().manual_seed(seed)
    shape = (b, t, n) if f is None else (b, t, f, n)
    return torch.randn(*shape, generator=g, dtype=torch.complex128)


def _los_static(b: int, t: int, n: int, seed: int) -> torch.Tensor:
    """Static line-of-sight channel h[b, t] = g_b a(u_b): [B, T, N] complex128."""
    g = torch.Generator().manual_seed(seed)
    az = (torch.rand(b, generator=g, dtype=torch.float64) - 0.5) * math.radians(120)
    a = steering_vector(ULA(n), unit_vector(az), dtype=torch.complex128)  # [B, N]
    gain = torch.randn(b, generator=g, dtype=torch.complex128)  # [B]
    return (gain[:, None] * a).unsqueeze(1).expand(b, t, n).clone()


def _cfg(**kw) -> MeasurementConfig:
    base = dict(period=0.02, delay=0.005, snr_db=80.0, samples=1, quantization_db=0.0, history=4)
    base.update(kw)
    return MeasurementConfig(**base)


def _assert_report_matches(report_db: torch.Tensor, gain: torch.Tensor, rho: float, samples: int = 1) -> None:
    """A report ``10 log10(mean_r |sqrt(ρ) g + n_r|² / ρ)`` is ``|g|²`` plus noise of std about
    ``sqrt(2|g|²/ρ + 1/ρ²)/sqrt(R)``; allow 10 such standard deviations."""
    lin = 10 ** (report_db / 10)
    tol = 10 * torch.sqrt(2 * gain / rho + 1 / rho**2) / math.sqrt(samples) + 1e-12
    err = (lin - gain).abs()
    worst = int((err / tol).flatten().argmax())
    ok = bool((err <= tol).all())
    assert ok, (
        f"report off by {float(err.flatten()[worst]):.3g} (tolerance {float(tol.flatten()[worst]):.3g}) "
        f"at flat index {worst}; {int((err > tol).sum())} of {err.numel()} reports off")


# --------------------------------------------------------------------------- config and timeline


@pytest.mark.parametrize("field,value", [
    ("period", 0.0), ("delay", -0.001), ("snr_db", float("nan")), ("samples", 0), ("samples", 1.5),
    ("quantization_db", -1.0), ("set_b", -1), ("history", 0),
])
def test_measurement_config_rejects_bad_fields_naming_them(field, value):
    with pytest.raises(ValueError, match=f"'{field}'"):
        MeasurementConfig(**{field: value})


@pytest.mark.parametrize("period,delay,history,num_steps,dt", [
    (0.02, 0.005, 4, 60, 0.005),
    (0.02, 0.0, 1, 37, 0.005),
    (0.01, 0.012, 3, 101, 0.001),
    (0.001, 0.0, 2, 20, 0.005),  # period shorter than a sample: one step
])
def test_timeline_use_intervals_follow_measurements_and_fit_the_drop(period, delay, history, num_steps, dt):
    cfg = _cfg(period=period, delay=delay, history=history)
    tl = make_timeline(num_steps, dt, cfg)
    p, dly = tl.period_steps, tl.delay_steps
    assert p == max(1, round(period / dt)) and dly == round(delay / dt)
    assert tl.use_len == p
    assert torch.equal(tl.use_start, tl.measure + dly)
    # one decision per period
    assert bool((tl.measure.diff() == p).all())
    # every use interval [use_start, use_start + use_len) lies inside the drop
    assert int(tl.use_start.min()) >= 0 and int(tl.use_start.max()) + tl.use_len <= num_steps
    # decision 0 leaves room for its `history` measurements (itself and history-1 earlier ones) at steps >= 0
    assert int(tl.measure[0]) - (history - 1) * p >= 0
    # and decisions fill the drop: one more would not fit
    assert int(tl.measure[-1]) + p + dly + p > num_steps
    assert tl.num_decisions == tl.measure.numel() >= 1


def test_timeline_too_short_drop_names_duration_at_the_boundary():
    cfg = _cfg(period=0.02, delay=0.005, history=4)
    p, dly = 4, 1
    shortest = (cfg.history - 1) * p + dly + p  # one decision exactly fits
    assert make_timeline(shortest, DT, cfg).num_decisions == 1
    with pytest.raises(ValueError, match="duration"):
        make_timeline(shortest - 1, DT, cfg)
    with pytest.raises(ValueError, match="duration"):
        build_episode(_sample(_gauss(1, shortest - 1, 8, 0)), dft_codebook(ULA(8)), None, cfg, 10.0, seed=0)


def test_dt_is_taken_from_the_sample_times():
    h = _gauss(1, 120, 8, 1)
    ep = build_episode(_sample(h, dt=0.001), dft_codebook(ULA(8)), None, _cfg(history=1), 10.0, seed=0)
    assert ep.dt == pytest.approx(0.001)
    assert ep.timeline.period_steps == 20 and ep.timeline.delay_steps == 5


# --------------------------------------------------------------------------- Set B


def test_set_b_indices_evenly_spaced_when_size_divides():
    assert torch.equal(set_b_indices(16, 4), torch.tensor([0, 4, 8, 12]))
    assert torch.equal(set_b_indices(16, 8), torch.arange(0, 16, 2))
    for size in (1, 2, 4, 8):
        idx = set_b_indices(16, size)
        assert idx.numel() == size
        if size > 1:
            assert bool((idx.diff() == 16 // size).all())


@pytest.mark.parametrize("m,size", [(16, 5), (16, 7), (12, 5), (8, 3)])
def test_set_b_indices_size_distinct_spread(m, size):
    idx = set_b_indices(m, size)
    assert idx.numel() == size
    assert torch.unique(idx).numel() == size
    assert int(idx.min()) >= 0 and int(idx.max()) < m
    gaps = torch.cat([idx.diff(), (idx[:1] + m - idx[-1:])])  # circular gaps
    assert int(gaps.max()) - int(gaps.min()) <= 1  # as even as integers allow


def test_set_b_on_a_upa_grid_is_the_orthogonal_dft_basis():
    # 4 x 8 UPA, 2x oversampled: an 8 x 16 grid of 128 beams. Set B of 32 = every 2nd row and column,
    # i.e. the orthogonal DFT basis: mutually orthogonal beams that tile both angle axes.
    from beamattn.wireless.arrays import UPA

    cb = dft_codebook(UPA(4, 8), 2)
    assert cb.grid == (8, 16) and dft_codebook(ULA(8), 2).grid is None
    idx = set_b_indices(cb.num_beams, 32, grid=cb.grid)
    rows, cols = idx // 16, idx % 16
    assert set(rows.tolist()) == {0, 2, 4, 6} and set(cols.tolist()) == set(range(0, 16, 2))
    gram = cb.beams[idx].conj() @ cb.beams[idx].T  # [32, 32]
    torch.testing.assert_close(gram, torch.eye(32, dtype=gram.dtype), atol=1e-5, rtol=0)
    # Sizes with no balanced factorisation still give distinct beams spread over both axes.
    for size in (8, 12, 20):
        idx = set_b_indices(128, size, grid=(8, 16))
        assert torch.unique(idx).numel() == size and len(set((idx // 16).tolist())) > 1
    # A one-row grid is the 1-D rule.
    assert torch.equal(set_b_indices(16, 4, grid=(1, 16)), set_b_indices(16, 4))


def test_set_b_zero_or_full_means_all_beams():
    assert torch.equal(set_b_indices(16, 0), torch.arange(16))
    assert torch.equal(set_b_indices(16, 16), torch.arange(16))


def test_set_b_larger_than_codebook_names_set_b():
    with pytest.raises(ValueError, match="set_b"):
        set_b_indices(8, 9)
    with pytest.raises(ValueError, match="set_b"):
        build_episode(_sample(_gauss(1, 40, 8, 0)), dft_codebook(ULA(8)), None, _cfg(set_b=9), 10.0, seed=0)


def test_episode_set_b_follows_config():
    ep = build_episode(_sample(_gauss(1, 40, 8, 0)), dft_codebook(ULA(8), 2), None, _cfg(set_b=4), 10.0, seed=0)
    assert torch.equal(ep.set_b, set_b_indices(16, 4))


# --------------------------------------------------------------------------- RSRP reports


def test_rsrp_at_high_snr_is_the_beam_gain_at_the_measurement_step():
    h = _gauss(3, 60, 8, 2)  # changes every sample: the report must be taken exactly at measure[d]
    cb = dft_codebook(ULA(8), 2, dtype=torch.complex128)
    cfg = _cfg(snr_db=80.0)
    ep = build_episode(_sample(h), cb, None, cfg, 10.0, seed=3)
    g2 = (h[:, ep.timeline.measure] @ cb.beams.T).abs() ** 2  # [B, D, M] |hᵀ v|²
    assert ep.rsrp_db.shape == g2.shape
    _assert_report_matches(ep.rsrp_db, g2, 1e8)
    assert ep.phase is None


def test_rsrp_of_wide_beams_follows_the_narrow_ones():
    n = 8
    narrow = dft_codebook(ULA(n), 2, dtype=torch.complex128)
    wide = wide_codebook(ULA(n), 4, narrow)
    h = _los_static(4, 40, n, 5)
    ep = build_episode(_sample(h), narrow, wide, _cfg(snr_db=80.0), 10.0, seed=1)
    beams = torch.cat([narrow.beams, wide.beams])  # [K, N]
    g2 = (h[:, ep.timeline.measure] @ beams.T).abs() ** 2  # [B, D, K]
    assert ep.rsrp_db.shape[-1] == narrow.num_beams + wide.num_beams
    _assert_report_matches(ep.rsrp_db, g2, 1e8)
    # truth is over the narrow beams only
    assert ep.gain_use.shape[-1] == narrow.num_beams


def test_quantised_reports_are_rounded_unquantised_reports():
    h = _gauss(2, 60, 8, 4)
    cb = dft_codebook(ULA(8), dtype=torch.complex128)
    raw = build_episode(_sample(h), cb, None, _cfg(snr_db=5.0, quantization_db=0.0), 10.0, seed=7)
    for step in (1.0, 0.5, 3.0):
        q = build_episode(_sample(h), cb, None, _cfg(snr_db=5.0, quantization_db=step), 10.0, seed=7)
        k = q.rsrp_db / step
        assert torch.equal(k, torch.round(k))  # multiples of the step
        assert bool(((q.rsrp_db - raw.rsrp_db).abs() <= step / 2 + 1e-9).all())  # nearest multiple
    q1 = build_episode(_sample(h), cb, None, _cfg(snr_db=5.0, quantization_db=1.0), 10.0, seed=7)
    assert torch.equal(q1.rsrp_db, torch.round(raw.rsrp_db))


def test_mean_linear_report_is_gain_plus_noise_over_snr():
    """E[mean_r |sqrt(ρ)g + n_r|² / ρ] = |g|² + 1/ρ, Var = (1 + 2ρ|g|²) / (ρ² R)."""
    n, b, t, r = 8, 6, 200, 2
    h = _los_static(b, t, n, 11)
    cb = dft_codebook(ULA(n), dtype=torch.complex128)
    snr_db = 3.0
    rho = 10 ** (snr_db / 10)
    cfg = _cfg(period=DT, delay=0.0, history=1, snr_db=snr_db, samples=r)
    ep = build_episode(_sample(h), cb, None, cfg, 10.0, seed=21)
    lin = 10 ** (ep.rsrp_db / 10)  # [B, D, M]
    d = lin.shape[1]
    assert d == t  # one report per sample
    g2 = (h[:, 0] @ cb.beams.T).abs() ** 2  # [B, M] static
    expected = g2 + 1 / rho
    var = (1 + 2 * rho * g2) / (rho**2 * r)
    z = (lin.mean(1) - expected) / torch.sqrt(var / d)  # [B, M] standard scores
    assert float(z.abs().max()) < 5.0, z
    # the spread of the reports matches the variance for R averaged samples (a check that R samples are averaged)
    ratio = lin.var(1) / var  # [B, M], each ≈ 1
    assert 0.6 < float(ratio.mean()) < 1.5, ratio


def test_reported_phase_at_high_snr_is_the_phase_of_htv():
    h = _gauss(3, 60, 8, 6)
    cb = dft_codebook(ULA(8), 2, dtype=torch.complex128)
    ep = build_episode(_sample(h), cb, None, _cfg(snr_db=80.0, with_phase=True, samples=3), 10.0, seed=2)
    g = h[:, ep.timeline.measure] @ cb.beams.T  # [B, D, M]
    assert ep.phase is not None and ep.phase.shape == g.shape
    strong = g.abs() > 1e-2  # the phase of a beam in a null is noise
    err = (torch.polar(torch.ones_like(ep.phase), ep.phase) - g / g.abs()).abs()
    assert bool((err[strong] < 10 * 1e-4 / g.abs()[strong]).all())


def test_wideband_report_averages_the_measured_subcarriers():
    n, f = 8, 4
    h = _gauss(2, 50, n, 8, f=f)
    cb = dft_codebook(ULA(n), dtype=torch.complex128)
    ep = build_episode(_sample(h), cb, None, _cfg(snr_db=80.0, samples=f), 10.0, seed=0)
    g2 = ((h[:, ep.timeline.measure] @ cb.beams.T).abs() ** 2).mean(2)  # R = F: every subcarrier once
    _assert_report_matches(ep.rsrp_db, g2, 1e8, samples=f)
    # a frequency-flat channel gives the narrowband report whatever R is
    flat = _gauss(2, 50, n, 9).unsqueeze(2).expand(-1, -1, f, -1).clone()
    ep1 = build_episode(_sample(flat), cb, None, _cfg(snr_db=80.0, samples=1), 10.0, seed=0)
    g2 = (flat[:, ep1.timeline.measure, 0] @ cb.beams.T).abs() ** 2
    _assert_report_matches(ep1.rsrp_db, g2, 1e8)


# --------------------------------------------------------------------------- history


def _report_at(h: torch.Tensor, steps: torch.Tensor, beams: torch.Tensor) -> torch.Tensor:
    return (h[:, steps] @ beams.T).abs() ** 2


def test_history_is_the_previous_reports_oldest_first():
    h = _gauss(2, 80, 8, 12)
    cb = dft_codebook(ULA(8), dtype=torch.complex128)
    cfg = _cfg(snr_db=80.0, history=3)
    ep = build_episode(_sample(h), cb, None, cfg, 10.0, seed=1)
    tl = ep.timeline
    rsrp, phase = ep.history(3)
    assert rsrp.shape == (2, ep.num_decisions, 3, cb.num_beams) and phase is None
    assert torch.equal(rsrp[:, :, -1], ep.rsrp_db)  # the latest report is the decision's own
    for d in range(2, ep.num_decisions):
        for slot in range(3):
            assert torch.equal(rsrp[:, d, slot], ep.rsrp_db[:, d - 2 + slot])
    # and those reports are the gains at the earlier measurement steps
    steps = tl.measure[2:].unsqueeze(-1) - tl.period_steps * torch.arange(2, -1, -1)  # [D-2, 3]
    _assert_report_matches(rsrp[:, 2:], _report_at(h, steps, cb.beams), 1e8)


def test_decision_zero_has_a_full_history_of_real_measurements():
    """The timeline leaves room for ``history`` measurements before decision 0 (module docstring:
    "so that decision 0 already has a full history"), so the history of decision 0 must hold the
    reports at steps measure[0] - l·period, not copies of decision 0's own report."""
    h = _gauss(2, 80, 8, 13)  # a new channel every sample: old reports differ from new ones
    cb = dft_codebook(ULA(8), dtype=torch.complex128)
    length = 4
    ep = build_episode(_sample(h), cb, None, _cfg(snr_db=80.0, history=length), 10.0, seed=1)
    tl = ep.timeline
    rsrp, _ = ep.history(length)
    steps = tl.measure[0] - tl.period_steps * torch.arange(length - 1, -1, -1)  # [L] oldest first
    assert int(steps.min()) >= 0
    _assert_report_matches(rsrp[:, 0], _report_at(h, steps, cb.beams), 1e8)


# --------------------------------------------------------------------------- truth over the use interval


def _by_hand_use_gain(h: torch.Tensor, tl, beams: torch.Tensor):
    """Mean |hᵀ v|² and mean ||h||² over each use interval (and subcarriers), by explicit loops."""
    b = h.shape[0]
    gains = torch.zeros(b, tl.num_decisions, beams.shape[0], dtype=torch.float64)
    mrt = torch.zeros(b, tl.num_decisions, dtype=torch.float64)
    for d in range(tl.num_decisions):
        start = int(tl.use_start[d])
        window = h[:, start:start + tl.use_len]  # [B, U, (F,) N]
        window = window.reshape(b, -1, h.shape[-1])  # [B, S, N]
        gains[:, d] = ((window @ beams.T).abs() ** 2).mean(1)
        mrt[:, d] = (window.abs() ** 2).sum(-1).mean(1)
    return gains, mrt


@pytest.mark.parametrize("f", [None, 3])
def test_use_interval_truth_matches_hand_computation(f):
    n = 8
    h = _gauss(2, 60, n, 14, f=f)
    cb = dft_codebook(ULA(n), 2, dtype=torch.complex128)
    ep = build_episode(_sample(h), cb, None, _cfg(snr_db=0.0, period=0.02, delay=0.01), 10.0, seed=0)
    gains, mrt = _by_hand_use_gain(h, ep.timeline, cb.beams)
    torch.testing.assert_close(ep.gain_use, gains, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ep.mrt_gain, mrt, rtol=1e-10, atol=1e-12)
    # wᴴ R w is the same gain for every codebook beam
    w = cb.beams.expand(2, ep.num_decisions, -1, -1)  # [B, D, M, N]
    torch.testing.assert_close(ep.gain(w), gains, rtol=1e-10, atol=1e-12)
    # one beam per decision ([B, D, N]) too
    torch.testing.assert_close(ep.gain(w[:, :, 3]), gains[..., 3], rtol=1e-10, atol=1e-12)
    # MRT bound (Cauchy–Schwarz): mean ||h||² >= every unit-norm beam's gain
    assert bool((ep.mrt_gain.unsqueeze(-1) >= ep.gain_use - 1e-12).all())
    # the MRT trace equals trace(R)
    torch.testing.assert_close(ep.mrt_gain, torch.diagonal(ep.cov_use, dim1=-2, dim2=-1).real.sum(-1))


def test_use_gain_of_a_random_beam_and_cov_is_hermitian_psd():
    n = 8
    h = _gauss(2, 60, n, 15)
    ep = build_episode(_sample(h), dft_codebook(ULA(n), dtype=torch.complex128), None, _cfg(), 10.0, seed=0)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, ep.num_decisions, n, generator=g, dtype=torch.complex128)
    w = w / torch.linalg.vector_norm(w, dim=-1, keepdim=True)
    expected = torch.zeros(2, ep.num_decisions, dtype=torch.float64)
    for d in range(ep.num_decisions):
        s = int(ep.timeline.use_start[d])
        window = h[:, s:s + ep.timeline.use_len]  # [B, U, N]
        expected[:, d] = (torch.einsum("bun,bn->bu", window, w[:, d]).abs() ** 2).mean(1)
    torch.testing.assert_close(ep.gain(w), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ep.cov_use, ep.cov_use.conj().transpose(-2, -1))
    assert bool((torch.linalg.eigvalsh(ep.cov_use) > -1e-10).all())
    # the gain of the principal eigenvector is the largest eigenvalue <= trace = mrt_gain
    top = torch.linalg.eigvalsh(ep.cov_use)[..., -1]
    assert bool((top <= ep.mrt_gain + 1e-10).all())


def test_static_channel_truth_equals_the_instantaneous_gain():
    h = _los_static(3, 40, 16, 16)
    cb = dft_codebook(ULA(16), dtype=torch.complex128)
    ep = build_episode(_sample(h), cb, None, _cfg(), 10.0, seed=0)
    g2 = (h[:, 0] @ cb.beams.T).abs() ** 2  # [B, M]
    torch.testing.assert_close(ep.gain_use, g2.unsqueeze(1).expand_as(ep.gain_use))
    # line of sight on an orthonormal DFT basis: sum of beam gains = ||h||² = N |g|² (Parseval)
    torch.testing.assert_close(ep.gain_use.sum(-1), ep.mrt_gain)


# --------------------------------------------------------------------------- common random numbers


def test_same_seed_same_episode_other_seed_other_noise():
    h = _gauss(3, 60, 8, 17)
    cb = dft_codebook(ULA(8), dtype=torch.complex128)
    cfg = _cfg(snr_db=0.0, with_phase=True)
    a = build_episode(_sample(h), cb, None, cfg, 10.0, seed=5)
    b = build_episode(_sample(h.clone()), cb, None, cfg, 10.0, seed=5)
    c = build_episode(_sample(h), cb, None, cfg, 10.0, seed=6)
    assert torch.equal(a.rsrp_db, b.rsrp_db) and torch.equal(a.phase, b.phase)
    assert torch.equal(a.gain_use, b.gain_use) and torch.equal(a.cov_use, b.cov_use)
    assert not torch.equal(a.rsrp_db, c.rsrp_db)
    torch.testing.assert_close(a.gain_use, c.gain_use)  # truth does not depend on the noise seed


def test_a_drops_noise_does_not_depend_on_batching():
    h = _gauss(4, 60, 8, 18)
    cb = dft_codebook(ULA(8), dtype=torch.complex128)
    cfg = _cfg(snr_db=0.0, with_phase=True)
    full = build_episode(_sample(h), cb, None, cfg, 10.0, seed=9, drop_offset=0)
    for i in range(4):
        alone = build_episode(_sample(h[i:i + 1].clone()), cb, None, cfg, 10.0, seed=9, drop_offset=i)
        assert torch.equal(alone.rsrp_db[0], full.rsrp_db[i])
        assert torch.equal(alone.phase[0], full.phase[i])
        assert alone.drop_ids.tolist() == [i]
    pair = build_episode(_sample(h[2:4].clone()), cb, None, cfg, 10.0, seed=9, drop_offset=2)
    assert torch.equal(pair.rsrp_db, full.rsrp_db[2:4])
    assert full.drop_ids.tolist() == [0, 1, 2, 3]


def _recovered_noise(ep, h: torch.Tensor, beams: torch.Tensor) -> torch.Tensor:
    """With R = 1, no quantisation and phases: y = sqrt(ρ·report) e^{jφ}; n = y - sqrt(ρ) hᵀv."""
    rho = 10 ** (ep.config.snr_db / 10)
    y = torch.polar(torch.sqrt(rho * 10 ** (ep.rsrp_db / 10)), ep.phase)
    return y - math.sqrt(rho) * (h[:, ep.timeline.measure] @ beams.T)


def test_measurement_noise_is_unit_complex_gaussian_shared_across_channels_and_independent_across_drops():
    n = 8
    cb = dft_codebook(ULA(n), dtype=torch.complex128)
    cfg = _cfg(snr_db=0.0, with_phase=True, period=DT, delay=0.0, history=1)
    h1, h2 = _gauss(4, 150, n, 19), _los_static(4, 150, n, 20)
    e1 = build_episode(_sample(h1), cb, None, cfg, 10.0, seed=3)
    e2 = build_episode(_sample(h2), cb, None, cfg, 10.0, seed=3)
    n1, n2 = _recovered_noise(e1, h1, cb.beams), _recovered_noise(e2, h2, cb.beams)
    # the same seed draws the same noise whatever the channel (common random numbers)
    torch.testing.assert_close(n1, n2, rtol=0, atol=1e-8)
    # CN(0, 1): zero mean, unit power, circular, drops not copies of each other
    count = n1.numel()
    assert abs(complex(n1.mean())) < 5 / math.sqrt(count)
    assert abs(float((n1.abs() ** 2).mean()) - 1) < 5 / math.sqrt(count)
    assert abs(complex((n1**2).mean())) < 5 / math.sqrt(count)
    corr = (n1[0] * n1[1].conj()).mean()
    assert abs(complex(corr)) < 5 / math.sqrt(n1[0].numel())


# --------------------------------------------------------------------------- CSI-RS bursts (issue 13)


def _doppler_los(b: int, t: int, n: int, doppler_hz: float, dt: float, seed: int) -> torch.Tensor:
    """One line-of-sight path with a constant Doppler shift: h[b, t] = g_b e^{j 2π f_D t dt} a(u_b)."""
    phase = torch.exp(2j * math.pi * doppler_hz * torch.arange(t, dtype=torch.float64) * dt)  # [T]
    return _los_static(b, t, n, seed) * phase[None, :, None]


@pytest.mark.parametrize("field,value,match", [
    ("burst", 0, "field 'burst' = 0"), ("burst", 65, "field 'burst' = 65"), ("burst_spacing", 0.0, "burst_spacing"),
])
def test_burst_fields_are_range_checked_naming_them(field, value, match):
    with pytest.raises(ValueError, match=match):
        _cfg(with_phase=True, **{field: value})


def test_a_burst_needs_phases_and_must_fit_in_a_period():
    with pytest.raises(ValueError, match="field 'burst' = 3 reports phases; expected with_phase = true"):
        _cfg(burst=3)
    with pytest.raises(ValueError, match="field 'burst_spacing' = 0.01 s x \\(burst - 1\\) = 0.02 s"):
        _cfg(with_phase=True, burst=3, burst_spacing=0.01)


def test_without_a_burst_the_episode_has_no_burst_phases():
    ep = build_episode(_sample(_gauss(2, 40, 4, seed=0)), dft_codebook(ULA(4)), None, _cfg(with_phase=True), 0.0, 0)
    assert ep.burst_phase is None and ep.burst is None and ep.timeline.burst_steps == (0,)


def test_burst_instances_are_noiseless_phases_spacing_apart_ending_at_the_report():
    # dt = 1 ms, period 20 ms, burst of 3 instances 2 ms apart: steps t_r - 4, t_r - 2, t_r for every report t_r.
    dt, n = 0.001, 4
    h = _gauss(2, 200, n, seed=1)
    cb = dft_codebook(ULA(n), 2)
    cfg = _cfg(period=0.02, delay=0.005, with_phase=True, burst=3, burst_spacing=0.002, snr_db=100.0)
    ep = build_episode(_sample(h, dt), cb, None, cfg, 0.0, 5)
    assert ep.timeline.burst_steps == (-4, -2, 0)
    steps = ep.timeline.reports  # [D + H - 1]
    assert int(steps[0]) == 4  # room for the first report's burst
    for j, off in enumerate(ep.timeline.burst_steps):
        truth = torch.angle(h[:, steps + off] @ cb.beams.to(h.dtype).T)  # [B, D+H-1, M]
        err = torch.angle(torch.exp(1j * (ep.burst_phase[:, :, j] - truth)))
        assert float(err.abs().max()) < 1e-3, off
    torch.testing.assert_close(ep.burst_phase[:, :, -1], ep.report_phase)  # the last instance is the report
    assert ep.burst.shape == (2, ep.num_decisions, 3, cb.num_beams)


def test_burst_noise_is_its_own_stream_and_fixed_by_the_seed():
    h = _gauss(2, 200, 4, seed=2)
    cfg = _cfg(period=0.02, with_phase=True, burst=3, burst_spacing=0.002, snr_db=0.0)
    one = build_episode(_sample(h, 0.001), dft_codebook(ULA(4)), None, cfg, 0.0, 7)
    again = build_episode(_sample(h, 0.001), dft_codebook(ULA(4)), None, cfg, 0.0, 7)
    other = build_episode(_sample(h, 0.001), dft_codebook(ULA(4)), None, cfg, 0.0, 8)
    assert torch.equal(one.burst_phase, again.burst_phase)
    assert not torch.equal(one.burst_phase[:, :, 0], other.burst_phase[:, :, 0])
    # The earlier instances' noise is not the report's: at 0 dB they differ from the report's phase.
    assert not torch.allclose(one.burst_phase[:, :, 0], one.burst_phase[:, :, -1])


def test_a_burst_predicts_a_doppler_that_aliases_at_the_report_rate():
    # 40 Hz Doppler: 2π·0.8 rad per 20 ms period (aliased: seen as -2π·0.2), 2π·0.08 rad per 2 ms burst spacing.
    # The predictor on the burst gives the true phase at the middle of the use interval; on the period history
    # it extrapolates the alias and misses by far.
    from beamattn.wireless.selector_context import predict_phase

    dt, n, f_d = 0.001, 4, 40.0
    h = _doppler_los(2, 300, n, f_d, dt, seed=3)
    cb = dft_codebook(ULA(n), 2)
    cfg = _cfg(period=0.02, delay=0.005, with_phase=True, burst=4, burst_spacing=0.002, snr_db=100.0)
    ep = build_episode(_sample(h, dt), cb, None, cfg, 0.0, 9)
    tl = ep.timeline
    assert ep.burst_lead == pytest.approx((5 + 9.5) / 2)  # (delay + (period - 1) / 2) steps over 2-step spacing
    t_mid = tl.use_start.double() + (tl.use_len - 1) / 2  # [D] steps
    gain = h[:, :1, :] @ cb.beams.to(h.dtype).T  # [B, 1, M] at t = 0
    truth = torch.angle(gain * torch.exp(2j * math.pi * f_d * t_mid * dt)[None, :, None])  # [B, D, M]
    strong = gain.abs().squeeze(1) > 0.3 * gain.abs().max()  # phases of beams in a null are noise-limited
    pred = predict_phase(ep.burst, ep.burst_lead)  # [B, D, M]
    err = torch.angle(torch.exp(1j * (pred - truth))).abs()  # [B, D, M]
    assert float(err[strong.unsqueeze(1).expand_as(err)].max()) < 1e-3
    rsrp, phase = ep.history(4)
    lead = (tl.delay_steps + (tl.use_len - 1) / 2) / tl.period_steps
    alias = torch.angle(torch.exp(1j * (predict_phase(phase[..., : cb.num_beams], lead) - truth))).abs()
    assert float(alias[strong.unsqueeze(1).expand_as(alias)].min()) > 1.0
