"""The EKF tracker: exact beam pattern, vanishing error on a noiseless constant-rate path, re-acquisition.

Channels are single paths written directly in the DFT coordinate: ``h_n = exp(−j2π n x / M)`` puts
the path at fractional beam index ``x`` of an ``M``-beam DFT codebook (beam ``m`` has its peak at
``m = x``, gain ``D(m − x)``), so the truth of the tracked state is known at every sample.
"""

from __future__ import annotations

import math

import pytest
import torch

from beamattn.wireless.arrays import ULA, UPA
from beamattn.wireless.channels.base import ChannelSample
from beamattn.wireless.codebooks import dft_codebook
from beamattn.wireless.measurement import MeasurementConfig, build_episode
from beamattn.wireless.metrics import decision_metrics
from beamattn.wireless.policies import make_policy
from beamattn.wireless.policies.tracking import dft_pattern

DT = 0.005  # 4 samples per 20 ms period
N = 8
BOOK = dft_codebook(ULA(N), 4, dtype=torch.complex128)  # M = 32
M = BOOK.num_beams


def _path(x: torch.Tensor, amp: torch.Tensor | float = 1.0) -> torch.Tensor:
    """``[B, T]`` fractional beam indices → channel ``[B, T, N]`` (one path of amplitude ``amp``)."""
    n = torch.arange(N, dtype=torch.float64)
    return amp * torch.polar(torch.ones(*x.shape, N, dtype=torch.float64), -2 * math.pi * x[..., None] * n / M)


def _sample(h: torch.Tensor) -> ChannelSample:
    b, t = h.shape[:2]
    return ChannelSample(h=h, positions=torch.zeros(b, t, 3, dtype=torch.float64),
                         times=torch.arange(t, dtype=torch.float64) * DT, los=torch.zeros(b, t, dtype=torch.bool))


def _cfg(**kw) -> MeasurementConfig:
    base = dict(period=0.02, delay=0.005, snr_db=80.0, samples=1, quantization_db=0.0, history=4, set_b=8)
    base.update(kw)
    return MeasurementConfig(**base)


def test_dft_pattern_is_the_beam_gain_and_its_derivative():
    x = torch.tensor([0.0, 0.3, 3.7, 17.25, 31.9], dtype=torch.float64)
    h = _path(x[None])[0]  # [5, N]
    gains = (h @ BOOK.beams.T).abs() ** 2  # [5, M]
    delta = torch.arange(M, dtype=torch.float64)[None, :] - x[:, None]
    d, dd = dft_pattern(delta, N, M)
    torch.testing.assert_close(d, gains)
    eps = 1e-6
    num = (dft_pattern(delta + eps, N, M)[0] - dft_pattern(delta - eps, N, M)[0]) / (2 * eps)
    torch.testing.assert_close(dd, num, atol=1e-5, rtol=1e-5)


def test_ekf_tracks_a_noiseless_constant_rate_path_with_vanishing_error():
    t = 480
    rate = torch.tensor([0.03, -0.02, 0.045], dtype=torch.float64)  # beams per sample (0.08-0.18 per period)
    x0 = torch.tensor([3.3, 20.6, 11.1], dtype=torch.float64)
    x = x0[:, None] + rate[:, None] * torch.arange(t, dtype=torch.float64)  # [B, T]
    ep = build_episode(_sample(_path(x)), BOOK, None, _cfg(), 10.0, seed=0)
    pol = make_policy("ekf")
    track = pol.track(ep)  # [B, T_reports, 2]
    steps = ep.timeline.reports  # sample of each report instant
    truth = x[:, steps]  # [B, T_reports]
    err = torch.remainder(track[..., 0] - truth + M / 2, M) - M / 2
    period = ep.timeline.period_steps
    rate_err = track[..., 1] - rate[:, None] * period
    assert float(err[:, -20:].abs().max()) < 1e-3  # beams (the floor: 80 dB measurement SNR)
    assert float(rate_err[:, -20:].abs().max()) < 1e-3  # beams per period
    assert float(err[:, -20:].abs().max()) < 0.01 * float(err[:, :3].abs().max())  # it vanishes
    m = decision_metrics(ep, pol.decide(ep))
    assert bool((m.top1[:, -20:] == 1).all())  # the extrapolated beam is the genie beam of the use interval


def test_ekf_reacquires_after_a_blockage():
    t, tb = 400, 200
    time = torch.arange(t, dtype=torch.float64)
    x_los = 5.2 + 0.01 * time  # the tracked path ...
    x_ref = 21.7 + 0.0 * time  # ... and a reflection 16 beams away
    blocked = (time >= tb).double()
    amp_los = 1.0 - blocked * (1 - 10 ** (-25 / 20))  # -25 dB once blocked
    h = _path(x_los[None], amp_los[None, :, None]) + _path(x_ref[None], 0.5)
    ep = build_episode(_sample(h), BOOK, None, _cfg(snr_db=20.0, quantization_db=1.0, samples=4), 10.0, seed=1)
    dec = make_policy("ekf").decide(ep)
    genie = ep.gain_use.argmax(-1)[0]  # [D]
    use = ep.timeline.use_start
    before = use + ep.timeline.use_len <= tb
    after = use >= tb + 3 * ep.timeline.period_steps  # three periods to notice and restart
    # before: the reflection (-6 dB) biases the one-path model by at most one beam
    assert int((dec.index[0, before] - genie[before]).abs().max()) <= 1
    assert float((dec.index[0, before] == genie[before]).double().mean()) > 0.7
    assert bool((genie[after] != genie[before][-1]).all())  # the best beam did move
    assert bool((dec.index[0, after] == genie[after]).all())
    assert bool((dec.measured == 8).all())


def test_ekf_refuses_a_upa_grid():
    book = dft_codebook(UPA(2, 4), 2)
    h = torch.ones(1, 120, 8, dtype=torch.complex64)
    ep = build_episode(_sample(h), book, None, _cfg(set_b=8), 10.0, seed=0)
    with pytest.raises(ValueError, match=r"policy 'ekf': tracks one spatial frequency; the codebook is a 4 x 8 UPA"):
        make_policy("ekf").decide(ep)
    with pytest.raises(ValueError, match=r"argument 'rate_std' = -1"):
        make_policy("ekf", rate_std=-1)
