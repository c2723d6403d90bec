"""Geometric channel back-end: physics against theory, seeding, trajectories, validation."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.special import j0, jn_zeros

from beamattn.wireless.arrays import ULA, UPA, steering_vector
from beamattn.wireless.channels.base import ChannelSample, check_channel
from beamattn.wireless.channels import geometric
from beamattn.wireless.channels.geometric import SPEED_OF_LIGHT, GeometricChannel, GeometricConfig


def dft_beams(num_ant: int) -> torch.Tensor:
    """``[N, N]`` unit-norm DFT beams of a half-wavelength ULA, ``w_i = conj(a(u_i)) / sqrt(N)``."""
    u = -1 + (2 * torch.arange(num_ant, dtype=torch.float64) + 1) / num_ant  # sin(azimuth) grid
    dirs = torch.stack([torch.sqrt(1 - u**2), u, torch.zeros_like(u)], dim=-1)
    return steering_vector(ULA(num_ant), dirs).conj() / math.sqrt(num_ant)


def beam_gains(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``|hᵀ w_i|²`` for every beam: ``[..., M]``."""
    return (h @ w.T).abs() ** 2


def los_only(**kw) -> GeometricConfig:
    return GeometricConfig(num_clusters=0, los=True, **kw)


# ----------------------------------------------------------------- interface
def test_sample_shapes_dtypes_and_protocol():
    cfg = GeometricConfig(array=UPA(2, 4), duration=0.1, sample_interval=0.01)
    ch = GeometricChannel(cfg)
    assert ch.array == cfg.array and ch.carrier_frequency == 28e9
    s = ch.generate(3, seed=0)
    assert isinstance(s, ChannelSample) and not s.wideband
    assert s.h.shape == (3, 10, 8) and s.h.dtype == torch.complex64
    assert s.positions.shape == (3, 10, 3) and s.times.shape == (10,) and s.los.shape == (3, 10)
    assert s.los.dtype == torch.bool and s.los.all() and s.subcarrier_frequencies is None
    torch.testing.assert_close(s.times, torch.arange(10, dtype=torch.float64) * 0.01)
    check_channel(s.h)
    wb = GeometricChannel(GeometricConfig(duration=0.05, sample_interval=0.01, num_subcarriers=6,
                                          dtype=torch.complex128)).generate(2, seed=0)
    assert wb.wideband and wb.h.shape == (2, 5, 6, 32) and wb.h.dtype == torch.complex128
    torch.testing.assert_close(wb.subcarrier_frequencies, torch.arange(-3, 3, dtype=torch.float64) * 120e3)
    nb = GeometricChannel(GeometricConfig(num_clusters=2, los=False, num_subcarriers=1, duration=0.05,
                                          sample_interval=0.01)).generate(2, seed=0)
    assert nb.h.shape == (2, 5, 32) and not nb.los.any()


# -------------------------------------------------------------------- Clarke
def test_clarke_time_autocorrelation_is_j0():
    """Ring of scatterers around the user, no LoS: E[h(t+τ) h*(t)] / E|h|² = J0(2π f_D τ)."""
    B, T, P, dt = 96, 300, 200, 5e-5
    cfg = GeometricConfig(array=ULA(1), scatterer_layout="ring", num_clusters=1, rays_per_cluster=P, los=False,
                          speed=10.0, ring_radius=50.0, sample_interval=dt, duration=T * dt, heading_deg=None)
    f_d = cfg.max_doppler  # 934 Hz: 15 ms is ~14 coherence times
    h = GeometricChannel(cfg).generate(B, seed=1).h[:, :, 0].to(torch.complex128)  # [B, T]
    lags = np.arange(int(math.ceil(jn_zeros(0, 2)[1] / (2 * math.pi * f_d * dt))) + 1)  # up to the 2nd zero
    r = np.array([(h[:, lag:] * h[:, : T - lag].conj()).mean().real.item() for lag in lags])
    r /= (h.abs() ** 2).mean().item()  # average over drops and time origins
    err = np.abs(r - j0(2 * math.pi * f_d * lags * dt)).max()
    assert err < 0.05, f"max |R(τ) - J0| = {err:.3f}"  # over 20 seeds: mean 0.016, max 0.032


# ----------------------------------------------------------------------- LoS
def test_los_only_matched_beam_gain_is_n_and_azimuth_follows_position():
    arr = UPA(2, 8)
    cfg = los_only(array=arr, speed=15.0, duration=1.0, sample_interval=0.02, bs_height=12.0, ut_height=1.5)
    s, paths = GeometricChannel(cfg).generate(8, seed=3, return_paths=True)
    u = paths.departure_los  # [B, T, 3]
    torch.testing.assert_close(u, s.positions / s.positions.norm(dim=-1, keepdim=True))
    az = torch.atan2(u[..., 1], u[..., 0])
    torch.testing.assert_close(az, torch.atan2(s.positions[..., 1], s.positions[..., 0]))
    w = steering_vector(arr, u).conj() / math.sqrt(arr.num_ant)  # [B, T, N] beam at the LoS
    gain = ((s.h * w).sum(-1)).abs() ** 2
    torch.testing.assert_close(gain, torch.full_like(gain, arr.num_ant), rtol=1e-4, atol=0)
    torch.testing.assert_close(s.h.abs(), torch.ones(s.h.shape), rtol=1e-5, atol=0)  # pure LoS: |h_n| = 1


def test_best_dft_beam_drifts_monotonically_when_moving_tangentially():
    N = 16
    cfg = los_only(array=ULA(N), speed=10.0, duration=5.0, sample_interval=0.05, min_distance=39.0,
                   max_distance=39.0, min_azimuth_deg=-40.0, max_azimuth_deg=-40.0, heading_deg=90.0)
    s = GeometricChannel(cfg).generate(2, seed=0)  # from azimuth -40° to about +40°, moving along +y
    best = beam_gains(s.h, dft_beams(N)).argmax(-1)  # [B, T]
    assert (best.diff(dim=-1) >= 0).all(), best
    assert all(len(torch.unique(b)) >= N // 2 for b in best)


def test_doppler_phase_increment_is_radial_path_change():
    """LoS: arg(g(t+Δt)/g(t)) = -2π f_c Δ|r| / c, the radial-velocity Doppler (no separate Doppler term)."""
    arr = ULA(8)
    cfg = los_only(array=arr, speed=20.0, duration=0.02, sample_interval=1e-4, min_distance=15.0, max_distance=40.0)
    s, paths = GeometricChannel(cfg).generate(16, seed=5, return_paths=True)
    g = (s.h * steering_vector(arr, paths.departure_los).conj()).sum(-1) / arr.num_ant  # path gain [B, T]
    step = torch.angle(g[:, 1:] * g[:, :-1].conj()).double()
    dist = s.positions.norm(dim=-1)
    expected = -2 * math.pi * cfg.carrier_frequency * dist.diff(dim=-1) / SPEED_OF_LIGHT
    torch.testing.assert_close(step, expected, atol=2e-3, rtol=0)
    # the same from the radial velocity v·r̂ at mid-step
    vel = s.positions.diff(dim=1) / cfg.sample_interval
    mid = (s.positions[:, 1:] + s.positions[:, :-1]) / 2
    radial = (vel * mid / mid.norm(dim=-1, keepdim=True)).sum(-1)
    torch.testing.assert_close(step, -2 * math.pi * radial * cfg.sample_interval / cfg.wavelength, atol=2e-3, rtol=0)


def test_scattered_path_phase_and_direction_follow_the_fixed_scatterer():
    arr = ULA(8)
    cfg = GeometricConfig(array=arr, num_clusters=1, rays_per_cluster=1, los=False, speed=20.0, duration=0.01,
                          sample_interval=1e-4)
    s, paths = GeometricChannel(cfg).generate(8, seed=2, return_paths=True)
    u = paths.departure_nlos[:, 0]  # [B, 3] fixed: the direction to the scatterer
    torch.testing.assert_close(u, paths.scatterers[:, 0] / paths.scatterers[:, 0].norm(dim=-1, keepdim=True))
    a = steering_vector(arr, u).unsqueeze(1)  # [B, 1, N]
    g = (s.h * a.conj()).sum(-1) / arr.num_ant
    torch.testing.assert_close(s.h, g.unsqueeze(-1) * a, atol=1e-5, rtol=0)  # rank one, fixed direction
    leg = (paths.scatterers[:, :1] - s.positions).norm(dim=-1)  # |S - r(t)|
    torch.testing.assert_close(paths.delays[..., 0], (paths.scatterers[:, :1].norm(dim=-1) + leg) / SPEED_OF_LIGHT)
    step = torch.angle(g[:, 1:] * g[:, :-1].conj()).double()
    torch.testing.assert_close(step, -2 * math.pi * leg.diff(dim=-1) / cfg.wavelength, atol=2e-3, rtol=0)


# --------------------------------------------------------- gains and powers
def test_mrt_bounds_every_beam_and_power_is_normalised():
    N = 16
    cfg = GeometricConfig(array=ULA(N), duration=0.5, sample_interval=0.01)  # clusters + LoS (K = 9 dB)
    s, paths = GeometricChannel(cfg).generate(128, seed=4, return_paths=True)
    torch.testing.assert_close(paths.powers.sum(-1), torch.ones(128, dtype=torch.float64))
    k = 10 ** (cfg.k_factor_db / 10)
    torch.testing.assert_close(paths.powers[:, 0], torch.full((128,), k / (k + 1), dtype=torch.float64))
    mrt = (s.h.abs() ** 2).sum(-1)  # ||h||²
    assert (beam_gains(s.h, dft_beams(N)) <= mrt.unsqueeze(-1) * (1 + 1e-5)).all()
    mean = (s.h.abs() ** 2).mean().item()
    assert abs(mean - 1) < 0.01, mean  # E|h_n|² = 1 (over 30 seeds: std 0.002)
    ring = GeometricChannel(GeometricConfig(array=ULA(4), scatterer_layout="ring", num_clusters=64, los=False,
                                            duration=1.0, sample_interval=0.01)).generate(128, seed=4)
    mean = (ring.h.abs() ** 2).mean().item()
    assert abs(mean - 1) < 0.04, mean  # over 30 seeds: std 0.009


# ------------------------------------------------------------------ blockage
def test_blockage_attenuates_los_ramps_and_clears_los_flag():
    N, att, tr, hold, rate, dt = 8, 20.0, 0.02, 0.1, 2.0, 1e-3
    cfg = los_only(array=ULA(N), duration=2.0, sample_interval=dt, blockage_rate=rate, blockage_duration=hold,
                   blockage_attenuation_db=att, blockage_transition=tr)
    s, paths = GeometricChannel(cfg).generate(16, seed=6, return_paths=True)
    power_db = 10 * torch.log10((s.h.abs() ** 2).sum(-1).double() / N)  # LoS power relative to unblocked
    torch.testing.assert_close(power_db, -paths.los_attenuation_db, atol=1e-3, rtol=0)
    assert torch.equal(s.los, paths.los_attenuation_db == 0)
    assert power_db.min() > -att - 1e-3 and (power_db < -att + 1e-3).any()  # full attenuation is reached
    # linear-in-dB ramps over `tr`: att * dt / tr = 1 dB per sample at most, and such steps occur
    steps = power_db.diff(dim=-1).abs()
    assert steps.max() < att * dt / tr + 1e-3
    assert ((steps - att * dt / tr).abs() < 1e-3).sum() > 100
    # Poisson (Boolean) model: fraction of time blocked = 1 - exp(-rate * E[event length])
    expected = 1 - math.exp(-rate * (hold + 2 * tr))  # 0.244
    cfg_many = los_only(array=ULA(1), duration=3.0, sample_interval=5e-3, blockage_rate=rate, blockage_duration=hold,
                        blockage_attenuation_db=att, blockage_transition=tr)
    blocked = ~GeometricChannel(cfg_many).generate(256, seed=6).los
    assert abs(blocked.double().mean().item() - expected) < 0.03  # over 30 seeds: std 0.007, max error 0.017
    # without transition the change is a step of the full attenuation
    cfg0 = los_only(array=ULA(N), duration=2.0, sample_interval=dt, blockage_rate=rate, blockage_transition=0.0,
                    blockage_attenuation_db=att)
    a0 = GeometricChannel(cfg0).paths(16, seed=6).los_attenuation_db
    assert set(torch.unique(a0).tolist()) == {0.0, att}


# ------------------------------------------------------------------ wideband
def test_wideband_matches_narrowband_at_carrier_and_the_path_model():
    base = dict(array=ULA(8), num_clusters=3, rays_per_cluster=2, duration=0.05, sample_interval=0.01,
                blockage_rate=20.0, blockage_duration=0.01, blockage_transition=0.005)
    nb = GeometricChannel(GeometricConfig(**base)).generate(4, seed=7)
    wb_ch = GeometricChannel(GeometricConfig(num_subcarriers=9, subcarrier_spacing=1e6, **base))
    wb, paths = wb_ch.generate(4, seed=7, return_paths=True)
    assert wb.subcarrier_frequencies[4] == 0
    torch.testing.assert_close(wb.h[:, :, 4], nb.h, atol=1e-5, rtol=0)
    # reconstruct h = Σ_l amp_l sqrt(P_l) e^{jφ_l} e^{-j2π(f_c + f) τ_l(t)} a(u_l) in float64
    cfg = wb_ch.config
    f = cfg.carrier_frequency + wb.subcarrier_frequencies  # [F]
    amp = torch.sqrt(paths.powers).unsqueeze(1).repeat(1, 5, 1)  # [B, T, L]
    amp[..., 0] *= 10 ** (-paths.los_attenuation_db / 20)
    coeff = amp.unsqueeze(2) * torch.exp(1j * (paths.phases[:, None, None, :]
                                              - 2 * math.pi * f.view(1, 1, -1, 1) * paths.delays.unsqueeze(2)))
    a_los = steering_vector(cfg.array, paths.departure_los, dtype=torch.complex128)  # [B, T, N]
    a_nlos = steering_vector(cfg.array, paths.departure_nlos, dtype=torch.complex128)  # [B, P, N]
    ref = coeff[..., :1] * a_los.unsqueeze(2) + torch.einsum("btfp,bpn->btfn", coeff[..., 1:], a_nlos)
    torch.testing.assert_close(wb.h.to(torch.complex128), ref, atol=1e-4, rtol=0)
    wb64 = GeometricChannel(GeometricConfig(num_subcarriers=9, subcarrier_spacing=1e6, dtype=torch.complex128,
                                            **base)).generate(4, seed=7)
    torch.testing.assert_close(wb64.h, ref, atol=1e-9, rtol=0)


def test_wideband_single_path_is_a_delay_phase_ramp():
    cfg = los_only(array=ULA(4), num_subcarriers=16, subcarrier_spacing=240e3, duration=0.03, sample_interval=0.01)
    s, paths = GeometricChannel(cfg).generate(3, seed=8, return_paths=True)
    tau = paths.delays[..., 0]  # [B, T]
    ramp = torch.exp(-2j * math.pi * s.subcarrier_frequencies.view(1, 1, -1) * tau.unsqueeze(-1))  # [B, T, F]
    ref = s.h[:, :, 8:9].to(torch.complex128) * ramp.unsqueeze(-1)
    torch.testing.assert_close(s.h.to(torch.complex128), ref, atol=2e-4, rtol=0)


def test_wideband_frequency_correlation_matches_the_delays():
    """Frequency correlation Σ_p P_p e^{-j2π Δf τ_p} of a static channel (averaged over antennas)."""
    base = dict(array=ULA(64), num_clusters=4, rays_per_cluster=1, los=False, speed=0.0, duration=0.01,
                sample_interval=0.01, num_subcarriers=64, subcarrier_spacing=2e6)
    s, paths = GeometricChannel(GeometricConfig(**base)).generate(256, seed=9, return_paths=True)
    h = s.h[:, 0].to(torch.complex128)  # [B, F, N]
    lag = 5  # Δf = 10 MHz
    est = (h[:, lag:] * h[:, :-lag].conj()).mean(dim=(1, 2))  # per drop
    theory = (paths.powers * torch.exp(-2j * math.pi * lag * 2e6 * paths.delays[:, 0])).sum(-1)
    # cross-path terms average out over antennas and drops; compare the drop-average
    assert abs((est - theory).mean().item()) < 0.05


@pytest.mark.parametrize("subcarriers", [0, 5])
def test_time_chunking_does_not_change_the_result(monkeypatch, subcarriers):
    cfg = GeometricConfig(array=ULA(8), num_clusters=4, rays_per_cluster=3, duration=0.2, sample_interval=0.01,
                          num_subcarriers=subcarriers, blockage_rate=5.0)
    whole = GeometricChannel(cfg).generate(3, seed=10)
    monkeypatch.setattr(geometric, "_CHUNK_ELEMENTS", 1)  # one time step per chunk
    chunked = GeometricChannel(cfg).generate(3, seed=10)
    torch.testing.assert_close(chunked.h, whole.h, atol=1e-6, rtol=0)


# -------------------------------------------------------------------- seeds
def test_same_seed_identical_different_seed_differs_drops_independent():
    cfg = GeometricConfig(array=ULA(8), duration=0.2, sample_interval=0.01, blockage_rate=3.0, trajectory="turn")
    ch = GeometricChannel(cfg)
    a, b, c = ch.generate(4, seed=11), ch.generate(4, seed=11), ch.generate(4, seed=12)
    for name in ("h", "positions", "times", "los"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.h, c.h) and not torch.equal(a.positions, c.positions)
    assert not torch.allclose(a.h[0], a.h[1]) and not torch.allclose(a.positions[0], a.positions[1])
    # common random numbers: another speed or trajectory keeps the start points and the scatterers
    other = GeometricChannel(dataclasses.replace(cfg, speed=3.0, trajectory="waypoints")).paths(4, seed=11)
    torch.testing.assert_close(other.scatterers, ch.paths(4, seed=11).scatterers, rtol=0, atol=0)
    assert torch.equal(GeometricChannel(dataclasses.replace(cfg, speed=3.0)).generate(4, seed=11).positions[:, 0],
                       a.positions[:, 0])
    static = GeometricChannel(GeometricConfig(array=ULA(8), speed=0.0, duration=0.1, sample_interval=0.01))
    h = static.generate(2, seed=0).h  # speed 0, no blockage: the channel does not change
    assert torch.equal(h, h[:, :1].expand_as(h))


# --------------------------------------------------------------- trajectories
@pytest.mark.parametrize("trajectory", ["line", "turn", "waypoints"])
def test_positions_move_at_the_configured_speed(trajectory):
    v, dt = 12.0, 0.05
    cfg = GeometricConfig(array=ULA(4), num_clusters=1, speed=v, duration=10.0, sample_interval=dt,
                          trajectory=trajectory, turn_radius=15.0, turn_angle_deg=-120.0, turn_start=2.0)
    pos = GeometricChannel(cfg).generate(16, seed=13).positions  # [B, T, 3]
    assert torch.allclose(pos[..., 2], torch.tensor(cfg.ut_height - cfg.bs_height, dtype=torch.float64))
    start = pos[:, 0, :2]
    assert (start.norm(dim=-1) >= cfg.min_distance - 1e-9).all() and (start.norm(dim=-1) <= cfg.max_distance).all()
    az = torch.rad2deg(torch.atan2(start[:, 1], start[:, 0]))
    assert (az >= cfg.min_azimuth_deg - 1e-9).all() and (az <= cfg.max_azimuth_deg + 1e-9).all()
    speed = pos.diff(dim=1).norm(dim=-1) / dt  # chord speed
    if trajectory == "line":
        torch.testing.assert_close(speed, torch.full_like(speed, v), rtol=1e-9, atol=0)
    elif trajectory == "turn":
        chord = 1 - (v * dt / cfg.turn_radius) ** 2 / 24  # chord / arc on the circle
        assert (speed <= v * (1 + 1e-9)).all() and (speed >= v * chord * (1 - 1e-9)).all()
        vel = pos.diff(dim=1)
        h0 = torch.atan2(vel[:, 0, 1], vel[:, 0, 0])
        h1 = torch.atan2(vel[:, -1, 1], vel[:, -1, 0])
        turned = torch.rad2deg(torch.remainder(h1 - h0 + math.pi, 2 * math.pi) - math.pi)
        torch.testing.assert_close(turned, torch.full_like(turned, cfg.turn_angle_deg))
        # on the arc the user is at turn_radius from the turn centre (to the right for a negative angle)
        p1 = pos[:, 0, :2] + v * cfg.turn_start * torch.stack([h0.cos(), h0.sin()], -1)
        centre = p1 + cfg.turn_radius * torch.stack([h0.sin(), -h0.cos()], -1)
        t = torch.arange(pos.shape[1]) * dt
        on_arc = (t > cfg.turn_start) & (t < cfg.turn_start + cfg.turn_radius * math.radians(120) / v)
        r = (pos[:, on_arc, :2] - centre.unsqueeze(1)).norm(dim=-1)
        torch.testing.assert_close(r, torch.full_like(r, cfg.turn_radius))
    else:
        assert (speed <= v * (1 + 1e-9)).all()  # corners cut the chord
        assert (torch.isclose(speed, torch.full_like(speed, v), rtol=1e-9, atol=0)).double().mean() > 0.9
        assert (pos[..., :2].norm(dim=-1) <= cfg.max_distance + 1e-9).all()  # inside the (convex) disc
        turns = (pos[:, 2:, :2] - pos[:, 1:-1, :2]) - (pos[:, 1:-1, :2] - pos[:, :-2, :2])
        assert (turns.norm(dim=-1) > 1e-6).any(dim=-1).all()  # every drop changes direction


def test_time_steps_count():
    assert GeometricConfig(duration=1.0, sample_interval=0.01).num_time_steps == 100
    assert GeometricConfig(duration=0.1, sample_interval=1e-3).num_time_steps == 100
    assert GeometricConfig(duration=0.0999, sample_interval=0.01).num_time_steps == 10
    assert GeometricConfig(duration=0.004, sample_interval=0.005).num_time_steps == 1


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("field, value", [
    ("speed", -1.0), ("rays_per_cluster", 0), ("duration", 0.0), ("duration", -2.0), ("sample_interval", 0.0),
    ("carrier_frequency", float("nan")), ("trajectory", "zigzag"), ("scatterer_layout", "grid"),
    ("max_distance", 5.0), ("num_subcarriers", -1), ("num_clusters", 1.5), ("k_factor_db", float("nan")),
    ("blockage_rate", -0.1), ("blockage_duration", 0.0), ("blockage_attenuation_db", -3.0), ("los", "yes"),
    ("dtype", torch.float32), ("array", "ula32"), ("min_azimuth_deg", -200.0), ("turn_radius", 0.0),
    ("cluster_angular_spread_deg", -1.0), ("heading_deg", float("inf")), ("turn_start", -1.0),
])
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"'{field}' = "):
        GeometricConfig(**{field: value})


def test_bad_config_combinations():
    with pytest.raises(ValueError, match="'num_clusters'"):
        GeometricConfig(num_clusters=0, los=False)
    with pytest.raises(ValueError, match="'duration'"):
        GeometricConfig(duration=0.001, sample_interval=0.01)
    with pytest.raises(ValueError, match="'max_azimuth_deg'"):
        GeometricConfig(min_azimuth_deg=10.0, max_azimuth_deg=0.0)
    with pytest.raises(ValueError, match="'trajectory'"):
        GeometricConfig(trajectory="waypoints", min_distance=50.0, max_distance=50.0, min_azimuth_deg=0.0,
                        max_azimuth_deg=0.0)
    with pytest.raises(ValueError, match="num_drops"):
        GeometricChannel().generate(0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        GeometricChannel().generate(1, seed=1.5)
