"""Bandits over Set A: convergence to the best arm on a stationary channel, tracking a changed best arm
with discounting, the measurement budget as overhead, reproducible Thompson draws."""

from __future__ import annotations

import math

import pytest
import torch

from beamattn.wireless.arrays import ULA, steering_vector, unit_vector
from beamattn.wireless.channels.base import ChannelSample
from beamattn.wireless.codebooks import dft_codebook
from beamattn.wireless.measurement import MeasurementConfig, build_episode
from beamattn.wireless.policies import make_policy

DT = 0.005
N = 8
BOOK = dft_codebook(ULA(N), 2, dtype=torch.complex128)  # M = 16


def _sample(h: torch.Tensor) -> ChannelSample:
    b, t = h.shape[:2]
    return ChannelSample(h=h, positions=torch.zeros(b, t, 3, dtype=torch.float64),
                         times=torch.arange(t, dtype=torch.float64) * DT, los=torch.zeros(b, t, dtype=torch.bool))


def _static(b: int, t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    az = (torch.rand(b, generator=g, dtype=torch.float64) - 0.5) * math.radians(120)
    a = steering_vector(ULA(N), unit_vector(az), dtype=torch.complex128)  # [B, N]
    return a.unsqueeze(1).expand(b, t, N).clone()


def _cfg(**kw) -> MeasurementConfig:
    base = dict(period=0.02, delay=0.005, snr_db=0.0, samples=4, quantization_db=1.0, history=4, set_b=4)
    base.update(kw)
    return MeasurementConfig(**base)


@pytest.mark.parametrize("name", ["ucb1", "thompson"])
def test_bandit_converges_to_the_best_arm_on_a_stationary_channel(name):
    ep = build_episode(_sample(_static(6, 800, 1)), BOOK, None, _cfg(), 10.0, seed=3)  # ~200 decisions
    dec = make_policy(name).decide(ep)
    genie = ep.gain_use.argmax(-1)  # [B, D], constant in time
    assert bool((dec.index[:, -30:] == genie[:, -30:]).all())
    early = (dec.index[:, :3] == genie[:, :3]).double().mean()
    assert float(early) < 1.0  # it had to learn (Set B = 4 of 16 arms per decision)
    assert bool((dec.measured == 4).all())  # the budget is the overhead
    assert bool((dec.ranking[..., 0] == dec.index).all())


def test_discounted_bandit_follows_a_changed_best_beam():
    h1, h2 = _static(4, 400, 5), _static(4, 400, 6)
    h = torch.cat([h1, h2], 1)  # the best beam changes at sample 400
    ep = build_episode(_sample(h), BOOK, None, _cfg(snr_db=10.0), 10.0, seed=4)
    genie = ep.gain_use.argmax(-1)
    late = ep.timeline.use_start >= 400 + 40 * ep.timeline.period_steps  # 40 periods after the change
    for name in ("ucb1-discounted", "thompson-discounted"):
        dec = make_policy(name).decide(ep)
        assert bool((dec.index[:, late] == genie[:, late]).all()), name


def test_thompson_is_reproducible_and_independent_of_the_batching():
    ep = build_episode(_sample(_static(4, 200, 2)), BOOK, None, _cfg(), 10.0, seed=0)
    a = make_policy("thompson", seed=7).decide(ep)
    b = make_policy("thompson", seed=7).decide(ep)
    assert torch.equal(a.index, b.index)
    part = build_episode(_sample(_static(4, 200, 2)[2:]), BOOK, None, _cfg(), 10.0, seed=0, drop_offset=2)
    torch.testing.assert_close(part.reports_db, ep.reports_db[2:])
    c = make_policy("thompson", seed=7).decide(part)
    assert torch.equal(c.index, a.index[2:])


def test_bandit_budget_and_arguments_are_checked():
    ep = build_episode(_sample(_static(2, 200, 2)), BOOK, None, _cfg(), 10.0, seed=0)
    assert bool((make_policy("ucb1", budget=6).decide(ep).measured == 6).all())
    with pytest.raises(ValueError, match=r"policy 'ucb1': argument 'budget' = 17 exceeds Set A \(16 beams\)"):
        make_policy("ucb1", budget=17).decide(ep)
    with pytest.raises(ValueError, match=r"policy 'thompson': argument 'gamma' = 0; expected 0 < gamma <= 1"):
        make_policy("thompson", gamma=0)
    with pytest.raises(ValueError, match=r"argument 'budget' = 0"):
        make_policy("ucb1", budget=0)


@pytest.mark.parametrize("name", ["ucb1", "thompson", "ucb1-discounted", "thompson-discounted"])
def test_bandit_on_a_two_beam_codebook_ranks_both_beams(name):
    # A Top-K ranking of width min(4, M): a 2-beam codebook used to crash writing 2 ids into 4 slots.
    book = dft_codebook(ULA(2), 1, dtype=torch.complex128)  # M = 2
    h = _static(3, 200, 2)[..., :2].contiguous()
    ep = build_episode(_sample(h), book, None, _cfg(set_b=1), 10.0, seed=1)
    dec = make_policy(name).decide(ep)
    assert dec.ranking.shape[-1] == 2
    assert bool((dec.ranking.sort(-1).values == torch.arange(2)).all())  # both beams, each once
