"""Sionna TR 38.901 back-ends: array geometry, shapes, seeding, power, time and angle behaviour, OFDM, validation."""

import math

import pytest
import torch

pytest.importorskip("sionna.phy")

from beamattn.wireless.arrays import ULA, UPA, AntennaArray, steering_vector, unit_vector  # noqa: E402
from beamattn.wireless.channels.sionna_tr38901 import (  # noqa: E402
    SPEED_OF_LIGHT,
    SionnaCDLChannel,
    SionnaCDLConfig,
    SionnaUrbanChannel,
    SionnaUrbanConfig,
    _finish,
    sionna_bs_array,
)

FC = 3.5e9
LAMBDA = SPEED_OF_LIGHT / FC


def beams(array: AntennaArray, num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid ``u_y [K]`` and unit-norm horizontal beams ``w [K, N]`` (conjugate steering, gain ``|hᵀw|²``).

    The grid is uniform in ``u_y`` over (-1, 1); an odd ``num`` puts a beam on the broadside, where the tabulated
    CDL clusters are strongest (an even grid would split them between two beams, a near tie).
    """
    uy = torch.linspace(-1, 1, num + 2)[1:-1]
    w = steering_vector(array, unit_vector(torch.asin(uy))).conj() / math.sqrt(array.num_ant)
    return uy, w


def autocorr(h: torch.Tensor, lag: int) -> float:
    """|E[h(t) h*(t+lag)]| / E|h|² over drops, times and antennas (h [B, T, N])."""
    x, y = h[:, :-lag], h[:, lag:]
    return float(((x * y.conj()).mean() / (x.abs().square().mean() * y.abs().square().mean()).sqrt()).abs())


# ---------------------------------------------------------------------------------------------------------------------
# array geometry: our column-major order equals Sionna's
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("array", [ULA(8), UPA(2, 4), UPA(3, 2, spacing_v=0.7, spacing_h=0.4)], ids=["ula8", "upa2x4",
                                                                                                     "upa3x2"])
def test_positions_match_sionna_ant_pos(array):
    ours = array.positions() * LAMBDA  # [N, 3] metres
    theirs = sionna_bs_array(array, FC, precision="double", device="cpu").ant_pos.to(torch.float64)
    assert theirs.shape == ours.shape
    torch.testing.assert_close(theirs, ours, rtol=1e-3, atol=1e-3 * LAMBDA)


# ---------------------------------------------------------------------------------------------------------------------
# shared samples (module scope keeps the run short)
# ---------------------------------------------------------------------------------------------------------------------
CDL_CFG = SionnaCDLConfig(model="C", array=ULA(8), speed=30.0, duration=0.02, sample_interval=1e-3)
UMI_CFG = SionnaUrbanConfig(scenario="umi", array=UPA(2, 4), speed=15.0, duration=0.02, sample_interval=1e-3)


@pytest.fixture(scope="module")
def cdl():
    return SionnaCDLChannel(CDL_CFG)


@pytest.fixture(scope="module")
def umi():
    return SionnaUrbanChannel(UMI_CFG)


@pytest.fixture(scope="module")
def cdl_sample(cdl):
    return cdl.generate(4, seed=7)


@pytest.fixture(scope="module")
def umi_sample(umi):
    return umi.generate(3, seed=7)


@pytest.mark.parametrize("which", ["cdl", "umi"])
def test_shapes_dtype_times_positions(which, cdl, umi, cdl_sample, umi_sample):
    backend, s, cfg, B = (cdl, cdl_sample, CDL_CFG, 4) if which == "cdl" else (umi, umi_sample, UMI_CFG, 3)
    T, N = cfg.num_time_steps, cfg.array.num_ant
    assert T == 20 and backend.array == cfg.array and backend.carrier_frequency == FC
    assert s.h.shape == (B, T, N) and s.h.dtype == torch.complex64 and not s.wideband
    assert torch.isfinite(torch.view_as_real(s.h)).all()
    assert s.positions.shape == (B, T, 3) and s.los.shape == (B, T) and s.los.dtype == torch.bool
    assert s.subcarrier_frequencies is None
    torch.testing.assert_close(s.times, torch.arange(T, dtype=torch.float32) * cfg.sample_interval)
    step = (s.positions[:, 1:] - s.positions[:, :-1]).double()  # [B, T-1, 3]
    torch.testing.assert_close(step.norm(dim=-1), torch.full((B, T - 1), cfg.speed * cfg.sample_interval,
                                                             dtype=torch.float64), rtol=1e-3, atol=1e-5)
    assert (step[:, 1:] - step[:, :-1]).abs().max() < 1e-4  # straight line at constant speed
    if which == "umi":
        torch.testing.assert_close(s.positions[..., 2], torch.full((B, T), 1.5 - 10.0))  # relative to a 10 m BS
        assert s.positions[..., :2].norm(dim=-1).min() >= 10.0
    else:
        assert not s.los.any()  # CDL-C has no LoS cluster


def test_cdl_los_flag_for_d_and_e():
    for model, los in (("A", False), ("D", True), ("E", True)):
        ch = SionnaCDLChannel(SionnaCDLConfig(model=model, array=ULA(4), duration=0.002, sample_interval=1e-3))
        assert ch.generate(2, seed=0).los.all() == los


@pytest.mark.parametrize("which", ["cdl", "umi"])
def test_seeded_bit_identical(which, cdl, umi, cdl_sample, umi_sample):
    backend, s, B = (cdl, cdl_sample, 4) if which == "cdl" else (umi, umi_sample, 3)
    before = torch.random.get_rng_state()
    again = backend.generate(B, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global torch generator is left untouched
    assert torch.equal(again.h, s.h) and torch.equal(again.positions, s.positions) and torch.equal(again.los, s.los)
    other = backend.generate(B, seed=8)
    assert not torch.allclose(other.h, s.h) and not torch.allclose(other.positions, s.positions)


def test_double_precision():
    cfg = SionnaCDLConfig(model="B", array=ULA(4), duration=0.005, sample_interval=1e-3, precision="double")
    s = SionnaCDLChannel(cfg).generate(2, seed=1)
    assert s.h.dtype == torch.complex128 and s.positions.dtype == torch.float64
    s = SionnaUrbanChannel(SionnaUrbanConfig(array=ULA(4), duration=0.005, sample_interval=1e-3,
                                             precision="double")).generate(2, seed=1)
    assert s.h.dtype == torch.complex128 and s.times.dtype == torch.float64


# ---------------------------------------------------------------------------------------------------------------------
# power normalisation
# ---------------------------------------------------------------------------------------------------------------------
def test_power_is_unit_on_average():
    # CDL: powers sum to one; each of 64 drops averages ~5 Doppler periods, so the mean is within a few percent.
    cfg = SionnaCDLConfig(model="C", array=ULA(8), speed=30.0, duration=0.02, sample_interval=1e-3)
    h = SionnaCDLChannel(cfg).generate(64, seed=3).h
    assert abs(h.abs().square().mean().item() - 1) < 0.1
    # UMi: path loss and shadow fading disabled -> E|h_n|² = 1 (spread from the per-drop LSPs: 15%).
    h = SionnaUrbanChannel(SionnaUrbanConfig(array=ULA(8), duration=0.01, sample_interval=1e-3)).generate(32, 3).h
    assert abs(h.abs().square().mean().item() - 1) < 0.15
    # normalize_per_drop: exactly one per drop
    h = SionnaCDLChannel(SionnaCDLConfig(model="A", array=ULA(8), duration=0.01, sample_interval=1e-3,
                                         normalize_per_drop=True)).generate(3, seed=3).h
    torch.testing.assert_close(h.abs().square().mean(dim=(1, 2)), torch.ones(3))


# ---------------------------------------------------------------------------------------------------------------------
# CDL: fixed angles, fast fading at the Doppler scale
# ---------------------------------------------------------------------------------------------------------------------
def test_cdl_best_beam_fixed_while_fading_decorrelates():
    speed, dt = 30.0, 1e-3
    f_d = speed / LAMBDA  # 350 Hz
    array = ULA(16)
    cfg = SionnaCDLConfig(model="C", array=array, speed=speed, duration=0.2, sample_interval=dt)
    h = SionnaCDLChannel(cfg).generate(4, seed=0).h  # [4, 200, 16]; 70 m of travel
    _, w = beams(array, 17)
    g = (h @ w.T).abs().square()  # [B, T, K]
    start, end = g[:, :50].mean(dim=(0, 1)), g[:, -50:].mean(dim=(0, 1))  # [K]
    assert start.argmax() == end.argmax()
    assert torch.dot(start, end) / (start.norm() * end.norm()) > 0.97  # the whole angular profile is unchanged
    # The instantaneous channel decorrelates like Clarke's J0(2π f_d τ): near 1 at f_d τ = 0.035, small beyond 0.35.
    fine = SionnaCDLChannel(SionnaCDLConfig(model="C", array=ULA(8), speed=speed, duration=0.01,
                                            sample_interval=1e-4)).generate(16, seed=0).h
    assert autocorr(fine, 1) > 0.97  # f_d τ = 0.035, J0 = 0.988
    assert autocorr(fine, 10) < 0.35  # f_d τ = 0.35, J0 = 0.11
    assert f_d * 10 * 1e-4 == pytest.approx(0.35, rel=0.01)


def test_cdl_random_rotation_moves_the_best_beam_between_drops():
    array = ULA(16)
    uy, w = beams(array, 17)
    fixed = SionnaCDLChannel(SionnaCDLConfig(model="D", array=array, duration=0.02, sample_interval=1e-3))
    rotated = SionnaCDLChannel(SionnaCDLConfig(model="D", array=array, duration=0.02, sample_interval=1e-3,
                                               random_rotation_deg=60.0))
    best_fixed = ((fixed.generate(8, seed=2).h @ w.T).abs().square().mean(1)).argmax(-1)
    s = rotated.generate(8, seed=2)
    best_rot = ((s.h @ w.T).abs().square().mean(1)).argmax(-1)
    assert best_fixed.unique().numel() == 1 and best_rot.unique().numel() >= 4
    # The nominal start lies in the (rotated) direction of the LoS cluster: the best beam points at it.
    geo = s.positions[:, 0, 1] / s.positions[:, 0].norm(dim=-1)
    assert ((uy[best_rot] - geo).abs() <= 2 / 16).float().mean() >= 0.75


# ---------------------------------------------------------------------------------------------------------------------
# UMi track: angles drift with position; fast fading is time-continuous
# ---------------------------------------------------------------------------------------------------------------------
def test_umi_best_beam_follows_the_los_direction_along_a_60m_track():
    array = ULA(16)
    cfg = SionnaUrbanConfig(scenario="umi", array=array, los=True, speed=20.0, duration=3.0, sample_interval=0.1)
    s = SionnaUrbanChannel(cfg).generate(8, seed=0)  # 30 positions over 58 m
    assert s.los.all()
    uy, w = beams(array, 63)
    best = uy[(s.h @ w.T).abs().square().argmax(-1)]  # [B, T] direction cosine of the best beam
    p = s.positions.double()
    geo = (p[..., 1] / p.norm(dim=-1)).float()  # LoS direction cosine along y from the geometry
    assert ((best - geo).abs() <= 2 / 16).float().mean() >= 0.8  # mostly the LoS beam (K-factor varies per drop)
    moving = (geo[:, -1] - geo[:, 0]).abs() > 4 / 16  # tracks whose LoS direction sweeps > 2 beam widths
    assert moving.sum() >= 4
    start, end = best[:, :3].mean(1), best[:, -3:].mean(1)
    assert ((start - end).abs() > 2 / 16)[moving].float().mean() >= 0.75  # the best beam changes: the angles drift


def test_umi_time_continuity_follows_doppler():
    # NLoS, steps of 0.023 λ. Raw per-position snapshots keep the phases of the NLoS rays spatially consistent on the
    # 15 m correlation distance only (no fast fading); with time_continuous=True (accumulated Doppler phases, §7.6.3.2
    # procedure A) the channel decorrelates on the wavelength scale like Sionna's own Doppler evolution.
    base = dict(scenario="umi", array=ULA(4), los=False, speed=10.0, duration=25 * 2e-4, sample_interval=2e-4)
    cont = SionnaUrbanChannel(SionnaUrbanConfig(**base)).generate(16, seed=5).h
    raw = SionnaUrbanChannel(SionnaUrbanConfig(**base, time_continuous=False)).generate(16, seed=5).h
    assert autocorr(cont, 1) > 0.97 and autocorr(raw, 1) > 0.97  # neighbours stay correlated in both
    assert autocorr(cont, 20) < 0.5  # 0.47 λ: |J0| = 0.24; Sionna's own Doppler evolution of one UT: 0.16
    assert autocorr(raw, 20) > 0.8  # raw snapshots barely change over half a wavelength
    torch.testing.assert_close(cont[:, 0], raw[:, 0])  # the phases start from the same spatially consistent draw


def test_umi_raw_mode_equals_sionna_call():
    # Our downlink copy of SystemLevelChannel.__call__ (needed to replace the ray phases) reproduces Sionna's own.
    from beamattn.wireless.channels.sionna_tr38901 import _sionna_seed

    cfg = SionnaUrbanConfig(scenario="umi", array=ULA(4), speed=10.0, duration=0.005, sample_interval=1e-3,
                            time_continuous=False)
    ch = SionnaUrbanChannel(cfg)
    s = ch.generate(2, seed=3)
    start, velocity = ch._tracks(2, 3)
    T = cfg.num_time_steps
    times = torch.arange(T, dtype=torch.float64) * cfg.sample_interval
    loc = (start[:, None] + times[None, :, None] * velocity[:, None] + torch.tensor([0.0, 0.0, 10.0],
                                                                                    dtype=torch.float64)).float()
    model = ch._model("cpu")
    with _sionna_seed(3):
        model.reset_topology()
        model.set_topology(ut_loc=loc, bs_loc=torch.tensor([[[0.0, 0.0, 10.0]]]).expand(2, 1, 3),
                           ut_orientations=torch.zeros(2, T, 3), bs_orientations=torch.zeros(2, 1, 3),
                           ut_velocities=velocity[:, None].expand(2, T, 3).float(),
                           in_state=torch.zeros(2, T, dtype=torch.bool), los="random",
                           spatial_consistency_track_ids=torch.zeros(2, T, dtype=torch.int64))
        a, _ = model(1, 1 / cfg.sample_interval)  # [B, rx=T, 1, 1, N, P, 1]
    assert torch.equal(a.sum(-2)[:, :, 0, 0, :, 0], s.h)


# ---------------------------------------------------------------------------------------------------------------------
# OFDM
# ---------------------------------------------------------------------------------------------------------------------
def test_ofdm_single_subcarrier_equals_narrowband():
    base = dict(model="B", array=ULA(4), duration=0.005, sample_interval=1e-3)
    nb = SionnaCDLChannel(SionnaCDLConfig(**base)).generate(2, seed=4)
    wb = SionnaCDLChannel(SionnaCDLConfig(**base, num_subcarriers=1)).generate(2, seed=4)
    assert wb.h.shape == (2, 5, 1, 4) and wb.wideband and wb.subcarrier_frequencies.tolist() == [0.0]
    torch.testing.assert_close(wb.h[:, :, 0], nb.h, rtol=1e-5, atol=1e-5)
    base = dict(scenario="umi", array=ULA(4), duration=0.005, sample_interval=1e-3)
    nb = SionnaUrbanChannel(SionnaUrbanConfig(**base)).generate(2, seed=4)
    wb = SionnaUrbanChannel(SionnaUrbanConfig(**base, num_subcarriers=12, subcarrier_spacing=30e3)).generate(2, 4)
    assert wb.h.shape == (2, 5, 12, 4) and wb.subcarrier_frequencies.shape == (12,)
    zero = int((wb.subcarrier_frequencies == 0).nonzero())
    torch.testing.assert_close(wb.h[:, :, zero], nb.h, rtol=1e-5, atol=1e-5)


def test_ofdm_matches_sionna_cir_to_ofdm_channel():
    from sionna.phy.channel import cir_to_ofdm_channel, subcarrier_frequencies

    g = torch.Generator().manual_seed(0)
    B, T, N, P, F = 2, 3, 4, 6, 16
    a = torch.complex(torch.randn(B, T, N, P, generator=g), torch.randn(B, T, N, P, generator=g))
    tau = torch.rand(B, T, P, generator=g) * 1e-6
    cfg = SionnaCDLConfig(num_subcarriers=F, subcarrier_spacing=30e3)
    h, freqs = _finish(cfg, a, tau)  # [B, T, F, N]
    ref = cir_to_ofdm_channel(subcarrier_frequencies(F, 30e3), a[:, :, None, None, :, :, None], tau[:, :, None, :],
                              normalize=False)  # [B, T, 1, 1, N, 1, F]
    torch.testing.assert_close(h, ref[:, :, 0, 0, :, 0, :].transpose(-1, -2), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(freqs, subcarrier_frequencies(F, 30e3))


# ---------------------------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, kwargs, field", [
    (SionnaCDLConfig, dict(model="F"), "model"),
    (SionnaCDLConfig, dict(model="c"), "model"),
    (SionnaCDLConfig, dict(speed=-1.0), "speed"),
    (SionnaCDLConfig, dict(delay_spread=0.0), "delay_spread"),
    (SionnaCDLConfig, dict(carrier_frequency=float("nan")), "carrier_frequency"),
    (SionnaCDLConfig, dict(sample_interval=1.0, duration=0.1), "sample_interval"),
    (SionnaCDLConfig, dict(antenna_pattern="dipole"), "antenna_pattern"),
    (SionnaCDLConfig, dict(num_subcarriers=0), "num_subcarriers"),
    (SionnaCDLConfig, dict(precision="half"), "precision"),
    (SionnaCDLConfig, dict(array=(1, 8)), "array"),
    (SionnaCDLConfig, dict(random_rotation_deg=-5.0), "random_rotation_deg"),
    (SionnaUrbanConfig, dict(scenario="inh"), "scenario"),
    (SionnaUrbanConfig, dict(speed=-3.0), "speed"),
    (SionnaUrbanConfig, dict(los="yes"), "los"),
    (SionnaUrbanConfig, dict(min_distance=50.0, max_distance=20.0), "max_distance"),
    (SionnaUrbanConfig, dict(bs_height=1.0), "bs_height"),
    (SionnaUrbanConfig, dict(duration=0.0), "duration"),
])
def test_bad_config_names_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: field '{field}' = "):
        cls(**kwargs)


def test_bad_generate_arguments(cdl):
    with pytest.raises(ValueError, match="num_drops"):
        cdl.generate(0, seed=1)
    with pytest.raises(ValueError, match="seed"):
        cdl.generate(2, seed=-1)
    with pytest.raises(TypeError, match="SionnaCDLConfig"):
        SionnaCDLChannel(SionnaUrbanConfig())
