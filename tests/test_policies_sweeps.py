"""Sweeps that read what the selector reads: tie-breaking, report history, peak interpolation over Set B.

Closed forms on hand-made reports and channels: a tie among quantised reports goes to the beam whose
measured neighbours are stronger (then to the newer older report); averaged reports equal an
independent NumPy average in linear power; a parabola through three samples of a parabola has its
vertex; on a noiseless single path, interpolating Set B finds the genie beam that best-of-Set-B misses.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from beamattn.wireless.arrays import ULA, UPA, steering_vector, unit_vector
from beamattn.wireless.channels.base import ChannelSample
from beamattn.wireless.codebooks import dft_codebook, wide_codebook
from beamattn.wireless.measurement import MeasurementConfig, build_episode
from beamattn.wireless.metrics import decision_metrics
from beamattn.wireless.policies import make_policy
from beamattn.wireless.policies.base import aggregate_db, neighbour_power, rank_reports
from beamattn.wireless.policies.interpolation import parabola_vertex

DT = 0.005
N = 8
NARROW = dft_codebook(ULA(N), 4, dtype=torch.complex128)  # M = 32
WIDE = wide_codebook(ULA(N), 4, NARROW)


def _sample(h: torch.Tensor) -> ChannelSample:
    b, t = h.shape[:2]
    return ChannelSample(h=h, positions=torch.zeros(b, t, 3, dtype=torch.float64),
                         times=torch.arange(t, dtype=torch.float64) * DT, los=torch.zeros(b, t, dtype=torch.bool))


def _cfg(**kw) -> MeasurementConfig:
    base = dict(period=0.02, delay=0.005, snr_db=80.0, samples=1, quantization_db=0.0, history=4)
    base.update(kw)
    return MeasurementConfig(**base)


def _los(array, directions: torch.Tensor, t: int = 60) -> torch.Tensor:
    """Static single path h[b, t] = a(u_b), ``[B, T, N]`` complex128 (noiseless, unit gain)."""
    a = steering_vector(array, directions, dtype=torch.complex128)  # [B, N]
    return a.unsqueeze(1).expand(-1, t, -1).clone()


def _episode(b: int = 4, seed: int = 0, **cfg):
    g = torch.Generator().manual_seed(seed)
    az = (torch.rand(b, generator=g, dtype=torch.float64) - 0.5) * math.radians(120)
    return build_episode(_sample(_los(ULA(N), unit_vector(az))), NARROW, WIDE, _cfg(**cfg), 10.0, seed=seed)


def _with_reports(ep, reports: torch.Tensor):
    """The episode with hand-made reports ``[B, D + H - 1, K]`` (dB)."""
    return dataclasses.replace(ep, reports_db=reports.to(ep.reports_db.dtype))


# --------------------------------------------------------------------------- tie-breaking


def _tied_reports(ep, winner: int, loser: int) -> torch.Tensor:
    """Every report -20 dB except two tied maxima (0 dB); the winner's neighbours are stronger."""
    rep = torch.full_like(ep.reports_db, -20.0)
    m = ep.num_beams
    rep[..., winner], rep[..., loser] = 0.0, 0.0
    rep[..., (winner + 1) % m] = -3.0  # one strong neighbour: the path lies between winner and winner + 1
    rep[..., (loser - 1) % m] = -6.0
    return rep


@pytest.mark.parametrize("winner,loser", [(5, 12), (12, 5), (0, 20), (20, 0)])
def test_exhaustive_tie_goes_to_the_beam_with_stronger_neighbours(winner, loser):
    # Mirrored cases: a rule that prefers the lower (or higher) index, like topk's, fails one of each pair.
    ep = _episode()
    ep = _with_reports(ep, _tied_reports(ep, winner, loser))
    dec = make_policy("exhaustive").decide(ep)
    assert bool((dec.index == winner).all())
    assert bool((dec.ranking[..., 1] == loser).all())
    assert bool((dec.ranking[..., 2] == (winner + 1) % ep.num_beams).all())  # -3 dB is the next best report


def test_tie_with_equal_neighbours_goes_to_the_newer_older_report():
    ep = _episode()
    rep = torch.full_like(ep.reports_db, -20.0)
    h = ep.timeline.history
    rep[:, h - 1:, 3], rep[:, h - 1:, 9] = 0.0, 0.0  # every decision's latest: tied, identical neighbours
    rep[:, h - 2, 9] = -1.0  # decision 0's newest older report favours beam 9 ...
    rep[:, : h - 2, 3] = -0.5  # ... its oldest ones favour beam 3: the newest older report decides
    ep = _with_reports(ep, rep)
    dec = make_policy("exhaustive").decide(ep)
    assert bool((dec.index[:, 0] == 9).all())


def test_neighbours_are_measured_ones_in_the_grid_and_wrap_around():
    p = torch.arange(1.0, 7.0)  # [6] a 2 x 3 grid
    out = neighbour_power(p, (2, 3))
    g = p.reshape(2, 3)
    ref = g.roll(1, 1) + g.roll(-1, 1) + g.roll(1, 0) + g.roll(-1, 0)
    torch.testing.assert_close(out, ref.reshape(-1))
    line = neighbour_power(torch.tensor([1.0, 2.0, 4.0]), (1, 3), circular=False)
    torch.testing.assert_close(line, torch.tensor([2.0, 5.0, 2.0]))


def test_set_b_ties_are_broken_by_set_b_neighbours():
    ep = _episode(set_b=8)  # every 4th beam: neighbours are the adjacent Set B beams (±4)
    rep = torch.full_like(ep.reports_db, -20.0)
    rep[..., 8], rep[..., 20] = 0.0, 0.0
    rep[..., 9] = 10.0  # not in Set B: must not count
    rep[..., 24] = -5.0  # Set B neighbour of 20
    dec = make_policy("best-of-set-b").decide(_with_reports(ep, rep))
    assert bool((dec.index == 20).all())


def test_tie_fixed_exhaustive_beats_topk_on_quantised_single_paths():
    # High SNR, 1 dB steps: adjacent oversampled beams often round to the same report; the genie beam
    # is the one nearer the path, whose neighbours are more even (the main lobe is concave).
    ep = _episode(b=64, seed=3, quantization_db=1.0)
    new = decision_metrics(ep, make_policy("exhaustive").decide(ep))
    old_index = ep.rsrp_db[..., : ep.num_beams].topk(1, dim=-1).indices[..., 0]  # the old rule
    old = decision_metrics(ep, make_policy("genie").decide(ep))  # shape donor
    old_top1 = (old_index == ep.gain_use.argmax(-1)).float()
    r = ep.rsrp_db[..., : ep.num_beams]
    tied = ((r == r.max(-1, keepdim=True).values).sum(-1) > 1)  # [B, D]
    assert float(tied.float().mean()) > 0.2  # the case the fix is about is common here
    # Where the tied beams' neighbours differ, they decide, and always for the genie beam; some ties
    # remain (neighbours that round to the same reports, and on a static channel every older report too).
    nb = neighbour_power(10 ** (r / 10), (1, ep.num_beams))  # [B, D, M]
    top = r == r.max(-1, keepdim=True).values  # [B, D, M] the tied maxima
    nb_top = nb.masked_fill(~top, float("-inf"))
    decided = tied & ((nb_top == nb_top.max(-1, keepdim=True).values).sum(-1) == 1)
    assert float(decided.float().mean()) > 0.1
    assert float(new.top1[decided].float().mean()) == 1.0
    assert float(new.top1[tied].float().mean()) > float(old_top1[tied].mean())
    assert float(new.top1.float().mean()) > float(old_top1.mean())
    assert old.top1.shape == new.top1.shape


def test_rank_reports_breaks_ties_by_lower_position_last():
    cur = torch.zeros(1, 5)  # all equal, equal neighbours (circular), no history
    assert rank_reports(cur, (1, 5), None, 5).tolist() == [[0, 1, 2, 3, 4]]


# --------------------------------------------------------------------------- history


def test_aggregate_db_is_the_linear_power_mean_and_the_ewma():
    rep = torch.tensor([[0.0, 10.0], [10.0, 10.0], [3.0, -7.0]]).T.unsqueeze(0)  # [1, L=2, J=3]
    mean = aggregate_db(rep, "mean")
    lin = 10 ** (rep.numpy() / 10)
    np.testing.assert_allclose(mean.numpy(), 10 * np.log10(lin.mean(1)), rtol=1e-5)
    ew = aggregate_db(rep, "ewma", alpha=0.25)
    w = np.array([0.25 * 0.75, 0.25])  # oldest, latest
    np.testing.assert_allclose(ew.numpy(), 10 * np.log10((w[:, None] * lin[0]).sum(0) / w.sum())[None], rtol=1e-5)
    torch.testing.assert_close(aggregate_db(rep[:, -1:], "mean"), rep[:, -1])


@pytest.mark.parametrize("name,ids", [("exhaustive", None), ("best-of-set-b", "set_b")])
def test_history_two_averages_the_last_two_reports(name, ids):
    ep = _episode(b=6, seed=1, snr_db=0.0, quantization_db=0.0, set_b=8)  # noisy: reports differ
    dec = make_policy(name, history=2).decide(ep)
    beams = np.arange(ep.num_beams) if ids is None else ep.set_b.numpy()
    rsrp, _ = ep.history(2)
    lin = 10 ** (rsrp[..., beams].numpy().astype(np.float64) / 10)  # [B, D, 2, J]
    ref = beams[lin.mean(2).argmax(-1)]
    np.testing.assert_array_equal(dec.index.numpy(), ref)
    assert not np.array_equal(ref, beams[lin[:, :, -1].argmax(-1)])  # history changes decisions here


def test_avg_variants_read_the_whole_history_with_ewma():
    ep = _episode(b=4, seed=2, snr_db=0.0, quantization_db=1.0, set_b=8)
    for name in ("exhaustive", "best-of-set-b", "stale", "hierarchical", "interp-set-b"):
        a = make_policy(f"{name}-avg").decide(ep)
        b = make_policy(name, history=None if name != "stale" else 1, smoothing="ewma").decide(ep)
        if name != "stale":
            assert torch.equal(a.index, b.index), name
            assert torch.equal(a.measured, b.measured), name


def test_history_longer_than_allowed_is_one_line_error():
    ep = _episode()
    with pytest.raises(ValueError, match=r"policy 'exhaustive': argument 'history' = 5 exceeds the measurement "
                                         r"'history' = 4"):
        make_policy("exhaustive", history=5).decide(ep)
    with pytest.raises(ValueError, match=r"argument 'history' = 0; expected an integer >= 1"):
        make_policy("best-of-set-b", history=0)
    with pytest.raises(ValueError, match=r"argument 'smoothing' = 'median'"):
        make_policy("exhaustive", smoothing="median")
    with pytest.raises(ValueError, match=r"argument 'fit' = 'cubic'"):
        make_policy("interp-set-b", fit="cubic")
    with pytest.raises(ValueError, match=r"'history' = 2 sweeps every 5 periods need a measurement 'history' >= 6"):
        make_policy("stale", every=5, history=2).decide(ep)


def test_stale_averages_its_sweep_instants_only():
    ep = _episode(b=3, history=7)
    every, h, m = 3, ep.timeline.history, ep.num_beams
    g = torch.Generator().manual_seed(5)
    rep = -20 * torch.rand(ep.reports_db.shape, generator=g, dtype=torch.float64)  # continuous: no ties
    t = torch.arange(rep.shape[1])
    sweep_rows = ((t - (h - 1)) % every == 0)  # rows of sweep instants (decision s reads row s + H - 1)
    rep[:, ~sweep_rows, 11] = 30.0  # between sweeps (never read by stale) beam 11 would win any average
    ep = _with_reports(ep, rep)
    one = make_policy("stale", every=every).decide(ep)
    two = make_policy("stale", every=every, history=2).decide(ep)
    lin = 10 ** (rep[..., :m].numpy() / 10)  # [B, T, M]
    for d in range(ep.num_decisions):
        s = d - d % every
        ref1 = lin[:, s + h - 1].argmax(-1)
        ref2 = (lin[:, s + h - 1] + lin[:, s + h - 1 - every]).argmax(-1)
        np.testing.assert_array_equal(one.index[:, d].numpy(), ref1)
        np.testing.assert_array_equal(two.index[:, d].numpy(), ref2)
    assert not torch.equal(one.index, two.index)
    assert not bool((two.index == 11).any())
    assert torch.equal(one.measured, two.measured)


def test_hierarchical_history_on_a_static_channel_keeps_the_genie_choice():
    ep = _episode(b=6, seed=4)  # static, noiseless, unquantised: every report window agrees
    a = make_policy("hierarchical").decide(ep)
    b = make_policy("hierarchical", history=4).decide(ep)
    assert torch.equal(a.index, b.index) and torch.equal(a.measured, b.measured)


# --------------------------------------------------------------------------- interpolation


def test_parabola_vertex_of_a_parabola():
    x0 = torch.tensor([-0.4, -0.1, 0.0, 0.3, 0.45])
    f = lambda x: 2.0 - 3.0 * (x - x0) ** 2  # noqa: E731
    a, b, v = parabola_vertex(f(-1.0), f(0.0), f(1.0))
    torch.testing.assert_close(v, x0)
    torch.testing.assert_close(a, torch.full_like(x0, -3.0))
    _, _, flat = parabola_vertex(torch.ones(2), torch.ones(2), torch.ones(2))
    assert flat.tolist() == [0.0, 0.0]


def _path_between_beams(m: int, offsets: torch.Tensor) -> torch.Tensor:
    """Azimuths of single paths at fractional DFT index ``offsets`` of an ``N``-element ULA, M beams."""
    nu = offsets / m  # wrapped spatial frequency of the beam coordinate
    nu = torch.where(nu > 0.5, nu - 1, nu)
    return torch.asin(-nu / 0.5)  # u_y = -nu / spacing


def test_interpolation_over_oversampled_set_b_finds_the_genie_beam():
    # Set B = every 2nd beam of a 4x codebook: the dB parabola's error is <= 0.021 Set B step = 0.042
    # Set A step (closed form of the Dirichlet main lobe), so paths within 0.35 of a beam find that beam.
    g = torch.Generator().manual_seed(0)
    frac = (torch.rand(48, generator=g, dtype=torch.float64) - 0.5) * 0.7  # within 0.35 of a Set A beam
    offsets = torch.randint(2, 14, (48,), generator=g).double() + frac
    offsets = torch.cat([offsets, -offsets])  # both halves of the spatial frequency circle
    az = _path_between_beams(NARROW.num_beams, offsets % NARROW.num_beams)
    h = _los(ULA(N), unit_vector(az))
    ep = build_episode(_sample(h), NARROW, None, _cfg(set_b=16), 10.0, seed=0)
    interp = decision_metrics(ep, make_policy("interp-set-b").decide(ep))
    setb = decision_metrics(ep, make_policy("best-of-set-b").decide(ep))
    assert float(interp.top1.float().mean()) == 1.0
    assert float(setb.top1.float().mean()) < 0.6  # half the genie beams are not in Set B
    assert float(interp.loss_db.mean()) < float(setb.loss_db.mean())


def test_interpolation_over_orthogonal_set_b_is_within_one_set_a_step():
    # Orthogonal Set B (every 4th of 4x): worst-case dB-parabola error 0.17 Set B step = 0.67 Set A
    # step, so the chosen beam is the genie beam or its neighbour, and better than best-of-Set-B.
    offsets = torch.linspace(0.05, 31.95, 97, dtype=torch.float64)
    az = _path_between_beams(NARROW.num_beams, offsets)
    ok = az.abs() < math.radians(75)
    ep = build_episode(_sample(_los(ULA(N), unit_vector(az[ok]))), NARROW, None, _cfg(set_b=8), 10.0, seed=0)
    dec = make_policy("interp-set-b").decide(ep)
    genie = ep.gain_use.argmax(-1)
    m = ep.num_beams
    dist = torch.minimum((dec.index - genie) % m, (genie - dec.index) % m)
    assert int(dist.max()) <= 1
    interp = decision_metrics(ep, dec)
    setb = decision_metrics(ep, make_policy("best-of-set-b").decide(ep))
    assert float(interp.loss_db.mean()) < 0.5 * float(setb.loss_db.mean())


def test_interpolation_2d_over_a_upa_grid_finds_the_genie_beam():
    array = UPA(4, 4)
    book = dft_codebook(array, 4, dtype=torch.complex128)  # 16 x 16 grid
    g = torch.Generator().manual_seed(1)
    az = (torch.rand(24, generator=g, dtype=torch.float64) - 0.5) * math.radians(100)
    zen = math.pi / 2 + (torch.rand(24, generator=g, dtype=torch.float64) - 0.5) * math.radians(60)
    h = _los(array, unit_vector(az, zen))
    ep = build_episode(_sample(h), book, None, _cfg(set_b=64), 10.0, seed=0)  # every 2nd row and column
    assert ep.set_b.numel() == 64
    dec = make_policy("interp-set-b").decide(ep)
    genie = ep.gain_use.argmax(-1)
    mh = book.grid[1]
    dv = (dec.index // mh - genie // mh).abs()
    dh = (dec.index % mh - genie % mh).abs()
    assert int(torch.maximum(dv, dh).max()) <= 1
    interp = decision_metrics(ep, dec)
    setb = decision_metrics(ep, make_policy("best-of-set-b").decide(ep))
    assert float(interp.top1.float().mean()) > 0.8 > float(setb.top1.float().mean())
    assert float(interp.loss_db.mean()) < float(setb.loss_db.mean())
    assert bool((dec.ranking[..., 0] == dec.index).all()) and dec.ranking.shape[-1] == 4


# --------------------------------------------------------------------------- every new policy


NEW_POLICIES = ["exhaustive-avg", "best-of-set-b-avg", "stale-avg", "hierarchical-avg", "interp-set-b",
                "interp-set-b-avg", "ekf", "ucb1", "ucb1-discounted", "thompson", "thompson-discounted"]


@pytest.mark.parametrize("name", NEW_POLICIES)
def test_new_policies_make_valid_decisions_with_their_overhead(name):
    from beamattn.wireless.policies.checks import check_decision

    ep = _episode(b=3, seed=6, snr_db=0.0, quantization_db=1.0, samples=4, set_b=8)
    dec = make_policy(name).decide(ep)
    check_decision(name, ep, dec)  # shapes, finite, unit-norm beams, index/ranking in range
    want = {"exhaustive-avg": ep.num_beams, "hierarchical-avg": None}.get(name, 8.0)
    if name == "stale-avg":
        assert float(dec.measured[:, ::5].min()) == ep.num_beams and float(dec.measured[:, 1:5].max()) == 0
    elif want is not None:
        assert bool((dec.measured == want).all())
    assert bool((dec.ranking[..., 0] == dec.index).all())


def test_new_policies_stay_on_the_device_with_cpu_numbers():
    # The simulated CUDA device of test_device.py: implicit host<->device mixing raises or is recorded.
    from simdevice import SimulatedCuda
    from wireless_fixtures import tiny_scenario

    from beamattn.wireless.runner import run_scenario

    scn = tiny_scenario(scenario={"drops": 2, "chunk_drops": 2})
    ref = run_scenario(scn, None, policies=NEW_POLICIES, device="cpu", progress=False, figures=False)
    with SimulatedCuda() as sim:
        res = run_scenario(scn, None, policies=NEW_POLICIES, device="cuda:0", progress=False, figures=False)
    assert not sim.implicit, sim.report()
    assert res.summary == ref.summary
