"""Tests of beamattn.wireless.policies and beamattn.wireless.metrics on hand-made channels.

On a STATIC channel measured at high SNR without quantisation the report ranks the beams exactly as their
use-interval gains do, so the measuring baselines have closed-form answers (the genie beam). Metrics are
checked against their definitions (design.md §4).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from beamattn.wireless.arrays import ULA, steering_vector, unit_vector
from beamattn.wireless.channels.base import ChannelSample
from beamattn.wireless.codebooks import Codebook, dft_codebook, wide_codebook
from beamattn.wireless.measurement import MeasurementConfig, build_episode
from beamattn.wireless.metrics import SUMMARY_KEYS, bootstrap_ci, decision_metrics, summarize
from beamattn.wireless.policies import POLICIES, Decision, available_policies, make_policy
from beamattn.wireless.selector import AttentionSelector, SelectorConfig

DT = 0.005


# --------------------------------------------------------------------------- helpers


def _sample(h: torch.Tensor, dt: float = DT) -> ChannelSample:
    b, t = h.shape[:2]
    return ChannelSample(h=h, positions=torch.zeros(b, t, 3, dtype=torch.float64),
                         times=torch.arange(t, dtype=torch.float64) * dt, los=torch.zeros(b, t, dtype=torch.bool))


def _los_static(b: int, t: int, n: int, seed: int) -> torch.Tensor:
    """Static line-of-sight channel h[b, t] = g_b a(u_b) (azimuth within ±60°): [B, T, N] complex128."""
    g = torch.Generator().manual_seed(seed)
    az = (torch.rand(b, generator=g, dtype=torch.float64) - 0.5) * math.radians(120)
    a = steering_vector(ULA(n), unit_vector(az), dtype=torch.complex128)  # [B, N]
    gain = torch.randn(b, generator=g, dtype=torch.complex128)
    return (gain[:, None] * a).unsqueeze(1).expand(b, t, n).clone()


def _gauss(b: int, t: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, n, generator=g, dtype=torch.complex128)


def _cfg(**kw) -> MeasurementConfig:
    base = dict(period=0.02, delay=0.005, snr_db=80.0, samples=1, quantization_db=0.0, history=4)
    base.update(kw)
    return MeasurementConfig(**base)


N = 8
NARROW = dft_codebook(ULA(N), 2, dtype=torch.complex128)  # M = 16
WIDE = wide_codebook(ULA(N), 4, NARROW)


def _static_episode(seed: int = 0, b: int = 6, set_b: int = 0, snr_db: float = 10.0, wide=WIDE):
    h = _los_static(b, 60, N, seed)
    return build_episode(_sample(h), NARROW, wide, _cfg(set_b=set_b), snr_db, seed=seed)


def _unit_norm(beams: torch.Tensor) -> bool:
    return bool(torch.allclose(torch.linalg.vector_norm(beams, dim=-1), torch.ones(beams.shape[:-1],
                                                                                      dtype=torch.float64),
                               atol=1e-6))


# --------------------------------------------------------------------------- registry


def test_registry_has_the_baselines():
    for name in ("genie", "mrt", "exhaustive", "best-of-set-b", "stale", "hierarchical", "random", "uniform",
                 "attention"):
        assert name in POLICIES
        assert make_policy(name).name == name
    assert available_policies() == sorted(POLICIES)


@pytest.mark.parametrize("wrong,right", [("exhaustve", "exhaustive"), ("geni", "genie"),
                                         ("best-of-setb", "best-of-set-b"), ("hierarchichal", "hierarchical")])
def test_misspelt_policy_suggests_the_right_name(wrong, right):
    with pytest.raises(ValueError, match=f"did you mean '{right}'"):
        make_policy(wrong)


def test_unknown_policy_lists_the_known_ones():
    with pytest.raises(ValueError, match="expected one of") as e:
        make_policy("zzzzzz")
    assert "genie" in str(e.value)


def test_stale_rejects_every_below_one():
    with pytest.raises(ValueError, match="'every'"):
        make_policy("stale", every=0)


# --------------------------------------------------------------------------- every policy


@pytest.mark.parametrize("name", ["genie", "mrt", "exhaustive", "best-of-set-b", "stale", "hierarchical", "random",
                                  "uniform", "attention"])
def test_every_policy_returns_unit_norm_beams_of_the_right_shapes(name):
    ep = _static_episode(1, set_b=4)
    dec = make_policy(name).decide(ep)
    shape = (ep.num_drops, ep.num_decisions)
    assert dec.beams.shape == (*shape, N)
    assert _unit_norm(dec.beams)
    assert dec.index.shape == shape and dec.index.dtype == torch.long
    assert bool(((dec.index >= -1) & (dec.index < ep.num_beams)).all())
    assert dec.measured.shape == shape and bool((dec.measured >= 0).all())
    if dec.ranking is not None:
        assert dec.ranking.shape[:2] == shape
        picked = dec.index >= 0
        assert torch.equal(dec.ranking[..., 0][picked], dec.index[picked])  # ranking is best first
    # a codebook pick (not a soft combination) transmits that codebook beam
    picked = dec.index >= 0
    if dec.weights is None and bool(picked.any()):
        torch.testing.assert_close(dec.beams[picked], NARROW.beams[dec.index[picked]], rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- static channel: closed forms


def test_genie_is_the_best_use_interval_beam():
    ep = _static_episode(2)
    dec = make_policy("genie").decide(ep)
    m = decision_metrics(ep, dec)
    assert torch.equal(dec.index, ep.gain_use.argmax(-1))
    assert bool((m.top1 == 1).all()) and bool((m.topk == 1).all())
    assert float(m.loss_db.abs().max()) < 1e-9
    assert bool((dec.measured == 0).all())
    # its ranking is the gain order
    g = ep.gain_use.gather(-1, dec.ranking)
    assert bool((g.diff(dim=-1) <= 0).all())


def test_genie_is_best_on_a_time_varying_channel_too():
    h = _gauss(3, 60, N, 3)
    ep = build_episode(_sample(h), NARROW, None, _cfg(snr_db=0.0, quantization_db=1.0), 10.0, seed=1)
    m = decision_metrics(ep, make_policy("genie").decide(ep))
    assert float(m.loss_db.abs().max()) < 1e-9 and bool((m.top1 == 1).all())
    # no other codebook beam does better over the use interval
    for name in ("exhaustive", "random", "stale", "best-of-set-b"):
        other = decision_metrics(ep, make_policy(name).decide(ep))
        assert bool((other.loss_db >= -1e-9).all()), name


def test_mrt_is_the_per_instant_bound():
    h = _gauss(3, 60, N, 4)
    ep = build_episode(_sample(h), NARROW, None, _cfg(), 10.0, seed=1)
    mrt = decision_metrics(ep, make_policy("mrt").decide(ep))
    genie = decision_metrics(ep, make_policy("genie").decide(ep))
    assert bool((mrt.snr_db >= genie.snr_db - 1e-9).all())
    assert float(mrt.gap_mrt_db.abs().max()) == 0.0
    torch.testing.assert_close(mrt.snr_db, 10 * torch.log10(10 ** (ep.snr_db / 10) * ep.mrt_gain))
    # its (fixed) beam is R's principal eigenvector: its gain is the largest eigenvalue of R
    dec = make_policy("mrt").decide(ep)
    top = torch.linalg.eigvalsh(ep.cov_use)[..., -1]
    torch.testing.assert_close(ep.gain(dec.beams), top, rtol=1e-6, atol=1e-9)
    assert bool((dec.index == -1).all()) and bool((dec.measured == 0).all())


def test_mrt_on_a_static_channel_reaches_norm_h_squared():
    ep = _static_episode(5)
    dec = make_policy("mrt").decide(ep)
    torch.testing.assert_close(ep.gain(dec.beams), ep.mrt_gain, rtol=1e-9, atol=1e-9)


def test_exhaustive_picks_the_genie_beam_on_a_static_channel():
    ep = _static_episode(3)
    dec = make_policy("exhaustive").decide(ep)
    m = decision_metrics(ep, dec)
    assert bool((m.top1 == 1).all())
    assert float(m.loss_db.abs().max()) < 1e-9
    assert bool((dec.measured == ep.num_beams).all())
    assert bool((m.overhead_saving == 0).all())


def test_best_of_all_of_set_a_is_exhaustive():
    ep = _static_episode(4, set_b=0)
    a = make_policy("exhaustive").decide(ep)
    b = make_policy("best-of-set-b").decide(ep)
    assert torch.equal(a.index, b.index) and torch.equal(a.ranking, b.ranking)
    assert torch.equal(a.measured, b.measured)


@pytest.mark.parametrize("set_b", [1, 2, 4, 8])
def test_best_of_set_b_is_the_best_measured_beam(set_b):
    ep = _static_episode(5, set_b=set_b)
    dec = make_policy("best-of-set-b").decide(ep)
    assert bool((dec.measured == set_b).all())
    assert bool(torch.isin(dec.index, ep.set_b).all())
    best_in_b = ep.set_b[ep.gain_use[..., ep.set_b].argmax(-1)]  # static, high SNR: reports rank as gains
    assert torch.equal(dec.index, best_in_b)
    m = decision_metrics(ep, dec)
    torch.testing.assert_close(m.overhead_saving, torch.full_like(m.overhead_saving, 1 - set_b / ep.num_beams))


def test_stale_every_one_is_exhaustive_and_every_k_holds_the_sweep():
    h = _gauss(3, 120, N, 6)  # time-varying: beams change between sweeps
    ep = build_episode(_sample(h), NARROW, None, _cfg(snr_db=5.0), 10.0, seed=2)
    ex = make_policy("exhaustive").decide(ep)
    s1 = make_policy("stale", every=1).decide(ep)
    assert torch.equal(s1.index, ex.index) and torch.equal(s1.measured, ex.measured)
    every = 3
    sk = make_policy("stale", every=every).decide(ep)
    for d in range(ep.num_decisions):
        last_sweep = d - d % every
        assert torch.equal(sk.index[:, d], ex.index[:, last_sweep])
        assert bool((sk.measured[:, d] == (ep.num_beams if d % every == 0 else 0)).all())
    # on average M / every beams per decision (exactly, when `every` divides D)
    d_full = ep.num_decisions - ep.num_decisions % every
    assert float(sk.measured[:, :d_full].mean()) == pytest.approx(ep.num_beams / every)


def test_hierarchical_picks_the_best_child_of_the_best_wide_beam():
    ep = _static_episode(6)
    dec = make_policy("hierarchical").decide(ep)
    m, w = ep.num_beams, ep.wide.num_beams
    wide_best = ep.rsrp_db[..., m:m + w].argmax(-1)  # [B, D]
    for b in range(ep.num_drops):
        for d in range(ep.num_decisions):
            group = ep.wide.children[int(wide_best[b, d])]
            assert int(dec.index[b, d]) in group
            best_child = group[int(ep.rsrp_db[b, d, group].argmax())]
            assert int(dec.index[b, d]) == best_child
            assert float(dec.measured[b, d]) == w + len(group)


def test_hierarchical_overhead_with_uneven_groups():
    # a hand-made wide codebook: three "wide" beams with groups of 5, 5 and 6 narrow beams
    children = [list(range(0, 5)), list(range(5, 10)), list(range(10, 16))]
    beams = torch.stack([NARROW.beams[c].sum(0) for c in children])
    beams = beams / torch.linalg.vector_norm(beams, dim=-1, keepdim=True)
    wide = Codebook(beams=beams, array=ULA(N), name="hand-wide", children=children)
    ep = _static_episode(7, b=8, wide=wide)
    dec = make_policy("hierarchical").decide(ep)
    wide_best = ep.rsrp_db[..., 16:19].argmax(-1)
    sizes = torch.tensor([5.0, 5.0, 6.0])
    torch.testing.assert_close(dec.measured.float(), 3 + sizes[wide_best])
    for g, c in enumerate(children):
        assert bool(torch.isin(dec.index[wide_best == g], torch.tensor(c)).all())


def test_hierarchical_without_wide_beams_says_so():
    ep = _static_episode(8, wide=None)
    with pytest.raises(ValueError, match="wide"):
        make_policy("hierarchical").decide(ep)


def test_random_is_reproducible_and_per_drop():
    h = _los_static(4, 60, N, 9)
    ep = build_episode(_sample(h), NARROW, None, _cfg(), 10.0, seed=0)
    a = make_policy("random", seed=3).decide(ep)
    b = make_policy("random", seed=3).decide(ep)
    c = make_policy("random", seed=4).decide(ep)
    assert torch.equal(a.index, b.index)
    assert not torch.equal(a.index, c.index)
    assert bool(((a.index >= 0) & (a.index < ep.num_beams)).all())
    assert bool((a.measured == 0).all())
    # the same drop gets the same beams whatever the batch it is evaluated in
    alone = build_episode(_sample(h[2:3].clone()), NARROW, None, _cfg(), 10.0, seed=0, drop_offset=2)
    assert torch.equal(make_policy("random", seed=3).decide(alone).index[0], a.index[2])
    # and drops are not copies of each other
    assert not torch.equal(a.index[0], a.index[1])


def test_uniform_combines_every_beam_with_equal_weight():
    ep = _static_episode(10)
    dec = make_policy("uniform").decide(ep)
    m = decision_metrics(ep, dec)
    torch.testing.assert_close(dec.weights.sum(-1), torch.ones(ep.num_drops, ep.num_decisions))
    assert bool((dec.weights == 1.0 / ep.num_beams).all())
    assert bool((m.active == ep.num_beams).all())
    expected = NARROW.beams.sum(0)
    expected = expected / torch.linalg.vector_norm(expected)
    torch.testing.assert_close(dec.beams, expected.expand_as(dec.beams))
    assert bool((dec.measured == 0).all())


@pytest.mark.parametrize("set_b", [0, 1, 3, 4, 8, 16])
def test_untrained_attention_in_hard_mode_is_best_of_set_b(set_b):
    h = _gauss(3, 80, N, 11)  # time-varying, no quantisation: no ties in the reports
    ep = build_episode(_sample(h), NARROW, None, _cfg(snr_db=5.0, set_b=set_b), 10.0, seed=3)
    att = make_policy("attention", config=SelectorConfig(learned=False, mode="hard")).decide(ep)
    ref = make_policy("best-of-set-b").decide(ep)
    assert torch.equal(att.index, ref.index)
    torch.testing.assert_close(att.beams, ref.beams)
    assert torch.equal(att.measured, ref.measured)


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax", "entmax15"])
def test_untrained_soft_attention_weights_only_set_b(normalizer):
    ep = _static_episode(12, set_b=4)
    cfg = SelectorConfig(learned=False, normalizer=normalizer, temperature=3.0)
    dec = make_policy("attention", config=cfg).decide(ep)
    unmeasured = torch.ones(ep.num_beams, dtype=torch.bool)
    unmeasured[ep.set_b] = False
    assert bool((dec.weights[..., unmeasured] == 0).all())
    torch.testing.assert_close(dec.weights.sum(-1), torch.ones_like(dec.weights[..., 0]))
    assert _unit_norm(dec.beams)
    m = decision_metrics(ep, dec)
    torch.testing.assert_close(m.active, (dec.weights > 0).sum(-1).float())


def test_attention_policy_instance_follows_each_episodes_set_b():
    """One policy object evaluated on two episodes with different Set B must read each episode's Set B
    (AttentionPolicy.build caches the selector of the first episode)."""
    h = _gauss(2, 80, N, 13)
    pol = make_policy("attention", config=SelectorConfig(learned=False, mode="hard"))
    for set_b in (16, 4):
        ep = build_episode(_sample(h), NARROW, None, _cfg(snr_db=5.0, set_b=set_b), 10.0, seed=3)
        ref = make_policy("best-of-set-b").decide(ep)
        got = pol.decide(ep).index
        outside = int((~torch.isin(got, ep.set_b)).sum())
        same = torch.equal(got, ref.index)
        assert same, f"set_b = {set_b}: {outside} of {got.numel()} picks are outside this episode's Set B"


def test_learned_attention_policy_runs_on_a_float_episode():
    h = _gauss(2, 80, N, 14).to(torch.complex64)
    ep = build_episode(_sample(h), dft_codebook(ULA(N), 2), None, _cfg(snr_db=5.0, set_b=8), 10.0, seed=3)
    torch.manual_seed(0)
    measured = torch.zeros(ep.num_beams, dtype=torch.bool)
    measured[ep.set_b] = True
    sel = AttentionSelector(SelectorConfig(history=4), ep.codebook.beams, measured)
    dec = make_policy("attention", selector=sel).decide(ep)
    assert dec.beams.shape == (2, ep.num_decisions, N)
    assert torch.allclose(torch.linalg.vector_norm(dec.beams, dim=-1), torch.ones(2, ep.num_decisions), atol=1e-5)
    assert bool((dec.measured == 8).all())
    torch.testing.assert_close(dec.weights.sum(-1), torch.ones(2, ep.num_decisions))


# --------------------------------------------------------------------------- metrics


def test_metrics_follow_their_definitions():
    h = _gauss(4, 100, N, 15)
    ep = build_episode(_sample(h), NARROW, None, _cfg(snr_db=0.0, quantization_db=1.0, set_b=4), 5.0, seed=0)
    for name in ("exhaustive", "best-of-set-b", "random", "stale"):
        dec = make_policy(name).decide(ep)
        m = decision_metrics(ep, dec, outage_db=3.0)
        rho = 10 ** (ep.snr_db / 10)
        snr = rho * ep.gain(dec.beams)
        genie_gain, genie_idx = ep.gain_use.max(-1)
        torch.testing.assert_close(m.snr_db, 10 * torch.log10(snr))
        torch.testing.assert_close(m.genie_db, 10 * torch.log10(rho * genie_gain))
        torch.testing.assert_close(m.loss_db, m.genie_db - m.snr_db)
        torch.testing.assert_close(m.gap_mrt_db, m.mrt_db - m.snr_db)
        assert bool((m.loss_db >= -1e-9).all()) and bool((m.gap_mrt_db >= m.loss_db - 1e-9).all())
        assert torch.equal(m.within_1db, (m.loss_db <= 1.0).float())
        assert torch.equal(m.top1, (dec.index == genie_idx).float())
        assert bool((m.topk >= m.top1).all())
        assert bool((m.within_1db >= m.top1).all())  # the genie beam has zero loss
        torch.testing.assert_close(m.se, torch.log2(1 + snr))
        assert torch.equal(m.outage, (m.snr_db < 3.0).float())
        torch.testing.assert_close(m.overhead_saving, 1 - dec.measured.float() / ep.num_beams)
        assert bool((m.active == 1).all())  # one beam
        # switches: count of index changes between consecutive decisions
        expected = torch.zeros_like(m.switch)
        for d in range(1, ep.num_decisions):
            expected[:, d] = (dec.index[:, d] != dec.index[:, d - 1]).float()
        assert torch.equal(m.switch, expected)


def test_switch_rate_on_a_hand_made_sequence():
    ep = _static_episode(16, b=1)
    d = ep.num_decisions
    seq = torch.tensor([0, 0, 1, 1, 2, 0, 0, 5, 5, 5, 1][:d] + [1] * max(0, d - 11))
    dec = Decision(beams=NARROW.beams[seq].unsqueeze(0), index=seq.unsqueeze(0), measured=torch.zeros(1, d))
    m = decision_metrics(ep, dec)
    changes = [0] + [int(seq[i] != seq[i - 1]) for i in range(1, d)]
    assert m.switch[0].tolist() == [float(c) for c in changes]
    assert int(m.switch.sum()) == sum(changes)


def test_topk_uses_the_ranking():
    ep = _static_episode(17)
    genie = ep.gain_use.argmax(-1)
    wrong = (genie + 1) % ep.num_beams
    ranking = torch.stack([wrong, genie], dim=-1)  # genie second
    dec = Decision(beams=NARROW.beams[wrong], index=wrong, measured=torch.zeros(wrong.shape), ranking=ranking)
    m = decision_metrics(ep, dec)
    assert bool((m.top1 == 0).all()) and bool((m.topk == 1).all())


def test_bootstrap_ci_contains_the_mean_and_is_reproducible():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 1.0, 200)
    mean, lo, hi = bootstrap_ci(x, seed=1)
    assert mean == pytest.approx(float(x.mean()))
    assert lo < mean < hi
    assert bootstrap_ci(x, seed=1) == (mean, lo, hi)
    # a wider level gives a wider interval
    _, lo99, hi99 = bootstrap_ci(x, seed=1, level=0.99)
    assert lo99 <= lo and hi99 >= hi


def test_bootstrap_ci_of_constant_or_single_data_has_zero_width():
    assert bootstrap_ci(np.full(50, 3.25)) == (3.25, 3.25, 3.25)
    assert bootstrap_ci(np.array([1.5])) == (1.5, 1.5, 1.5)


def test_bootstrap_ci_width_shrinks_as_one_over_sqrt_n():
    rng = np.random.default_rng(1)
    w100 = [np.subtract(*bootstrap_ci(rng.normal(0, 1, 100), seed=s)[2:0:-1]) for s in range(5)]
    w1600 = [np.subtract(*bootstrap_ci(rng.normal(0, 1, 1600), seed=s)[2:0:-1]) for s in range(5)]
    ratio = float(np.mean(w100) / np.mean(w1600))
    assert 2.5 < ratio < 6.0, ratio  # sqrt(1600/100) = 4
    # and matches the normal-theory width 2·1.96·σ/sqrt(n) within a generous margin
    assert float(np.mean(w100)) == pytest.approx(2 * 1.96 / 10, rel=0.3)


def test_summarize_reports_mean_and_interval_for_every_kpi():
    rng = np.random.default_rng(2)
    per_drop = {k: rng.normal(size=20) for k in SUMMARY_KEYS}
    loss = np.abs(rng.normal(size=500))
    out = summarize(per_drop, loss)
    for k in SUMMARY_KEYS:
        assert out[k]["mean"] == pytest.approx(float(per_drop[k].mean()))
        lo, hi = out[k]["ci95"]
        assert lo <= out[k]["mean"] <= hi
    assert out["loss_db_p95"] == pytest.approx(float(np.quantile(loss, 0.95)))
    assert out["loss_db_median"] == pytest.approx(float(np.median(loss)))
    assert summarize(per_drop, np.array([]))["loss_db_median"] is None  # undefined: null in strict JSON
