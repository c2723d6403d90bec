"""What a policy returns is checked (beamattn.wireless.policies.checks) by the runner and the link level.

The contract: beams ``[B, D, N]`` finite and unit norm (transmit power is fixed), index in ``[-1, M)``
and, for a hard pick, the beam of that index, measured ``>= 0``, ranking ids in ``[0, M)``, weights a
distribution over the ``M`` beams, a given gain between 0 and the MRT bound. Each broken rule is
refused with one line that names the policy and the field.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beamattn.cli import main
from beamattn.wireless.arrays import ULA
from beamattn.wireless.channels.base import ChannelSample
from beamattn.wireless.codebooks import user_codebook
from beamattn.wireless.measurement import MeasurementConfig, build_episode
from beamattn.wireless.metrics import decision_metrics, used_beam
from beamattn.wireless.policies import POLICIES, Decision, Policy, available_policies, make_policy
from beamattn.wireless.policies.checks import NORM_TOL, DecisionError, check_decision
from beamattn.wireless.runner import episodes, make_policies, run_scenario
from beamattn.wireless.scenario import parse_scenario
from wireless_fixtures import tiny_scenario


@pytest.fixture(scope="module")
def tiny():
    scn = tiny_scenario()
    _, ep, _ = next(episodes(scn, scn.seed, scn.drops))
    return scn, ep


def _genie(ep) -> Decision:
    return make_policy("genie").decide(ep)


def _one_line(e: pytest.ExceptionInfo, *words: str) -> str:
    msg = str(e.value)
    assert len(msg.splitlines()) == 1, msg
    assert "policy 'p'" in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


# --------------------------------------------------------------------------- every rule, one line each


def _mutants(ep):
    """(label, words the message must hold, a bad Decision) built from the genie's valid decision."""
    b, d, m = ep.num_drops, ep.num_decisions, ep.num_beams
    g = _genie(ep)
    rep = dataclasses.replace
    nan_beams = g.beams.clone()
    nan_beams[1, 2, 0] = complex(float("nan"), 0.0)
    inf_gain = ep.mrt_gain.clone()
    inf_gain[0, 1] = float("inf")
    w = torch.full((b, d, m), 1.0 / m)
    neg_w = w.clone()
    neg_w[0, 0, 0], neg_w[0, 0, 1] = -0.5, 0.5 + 2.0 / m
    nan_w = w.clone()
    nan_w[0, 3, 5] = float("nan")
    other = (g.index + 1) % m  # another codebook beam than the one transmitted
    return [
        ("beams shape", ["'beams'", "[B, D, N]"], rep(g, beams=g.beams[..., :-1])),
        ("beams real", ["'beams'", "complex"], rep(g, beams=g.beams.real)),
        ("beams nan", ["'beams'", "nan", "drop", "decision 2", "finite"], rep(g, beams=nan_beams)),
        ("beams 10x", ["'beams'", "norm 10", "unit norm"], rep(g, beams=10 * g.beams)),
        ("beams 0.99", ["'beams'", "norm 0.99"], rep(g, beams=0.99 * g.beams)),
        ("index float", ["'index'", "integer"], rep(g, index=g.index.float())),
        ("index shape", ["'index'", "[B, D]"], rep(g, index=g.index[:, :-1])),
        ("index M", ["'index'", f"= {m}", f"[0, {m})"], rep(g, index=torch.full_like(g.index, m))),
        ("index -2", ["'index'", "= -2"], rep(g, index=torch.full_like(g.index, -2))),
        ("index not the beam", ["'index'", "not codebook beam"], rep(g, index=other)),
        ("measured shape", ["'measured'", "[B, D]"], rep(g, measured=g.measured[:1])),
        ("measured negative", ["'measured'", "-1", ">= 0"], rep(g, measured=g.measured - 1)),
        ("measured nan", ["'measured'", "nan"], rep(g, measured=torch.full_like(g.measured, float("nan")))),
        ("ranking 2-d", ["'ranking'", "[B, D, K]"], rep(g, ranking=g.ranking[..., 0])),
        ("ranking out of range", ["'ranking'", f"beam {m}"], rep(g, ranking=torch.full_like(g.ranking, m))),
        ("ranking negative", ["'ranking'", "beam -1"], rep(g, ranking=-torch.ones_like(g.ranking))),
        ("ranking float", ["'ranking'", "integer"], rep(g, ranking=g.ranking.float())),
        ("weights shape", ["'weights'", "[B, D, M]"], rep(g, weights=w[..., :-1] * m / (m - 1))),
        ("weights negative", ["'weights'", "-0.5", ">= 0"], rep(g, weights=neg_w)),
        ("weights sum 2", ["'weights'", "sums to 2"], rep(g, weights=2 * w)),
        ("weights nan", ["'weights'", "nan"], rep(g, weights=nan_w)),
        ("gain shape", ["'gain'", "[B, D]"], rep(g, gain=ep.mrt_gain[..., None])),
        ("gain inf", ["'gain'", "inf", "drop", "decision 1"], rep(g, gain=inf_gain)),
        ("gain negative", ["'gain'", ">= 0"], rep(g, gain=-ep.mrt_gain)),
        ("gain above MRT", ["'gain'", "MRT bound"], rep(g, gain=2 * ep.mrt_gain)),
        ("not a Decision", ["Decision"], (g.beams, g.index)),
    ]


def test_a_valid_decision_passes(tiny):
    _, ep = tiny
    check_decision("p", ep, _genie(ep))


_LABELS = ["beams shape", "beams real", "beams nan", "beams 10x", "beams 0.99", "index float", "index shape",
           "index M", "index -2", "index not the beam", "measured shape", "measured negative", "measured nan",
           "ranking 2-d", "ranking out of range", "ranking negative", "ranking float", "weights shape",
           "weights negative", "weights sum 2", "weights nan", "gain shape", "gain inf", "gain negative",
           "gain above MRT", "not a Decision"]


def test_the_mutant_list_is_complete(tiny):
    assert [x[0] for x in _mutants(tiny[1])] == _LABELS


@pytest.mark.parametrize("label", _LABELS)
def test_each_broken_rule_is_one_line_naming_the_policy_and_field(tiny, label):
    _, ep = tiny
    (_, words, dec), = [x for x in _mutants(ep) if x[0] == label]
    with pytest.raises(DecisionError) as e:
        check_decision("p", ep, dec)
    _one_line(e, *words)


def test_norm_tolerance_is_the_stated_one(tiny):
    _, ep = tiny
    g = _genie(ep)
    check_decision("p", ep, dataclasses.replace(g, beams=(1 + 0.5 * NORM_TOL) * g.beams))
    with pytest.raises(DecisionError, match="norm"):
        check_decision("p", ep, dataclasses.replace(g, beams=(1 + 2 * NORM_TOL) * g.beams))


# --------------------------------------------------------------------------- the cases of the issue, end to end


class _Loud(Policy):
    """The issue's custom policy: the genie's beams with 10x the norm (+20 dB of transmit power)."""

    def decide(self, ep):
        g = _genie(ep)
        return Decision(beams=10 * g.beams, index=torch.full_like(g.index, -1), measured=g.measured)


class _NaN(Policy):
    """The issue's custom policy whose beams are NaN (metrics were NaN and outage 0.000)."""

    def decide(self, ep):
        g = _genie(ep)
        return Decision(beams=torch.full_like(g.beams, complex(float("nan"), float("nan"))), index=g.index,
                        measured=g.measured)


@pytest.mark.parametrize("cls, words", [(_Loud, ["norm 10", "unit norm"]), (_NaN, ["'beams'", "nan", "finite"])])
def test_run_refuses_the_issues_custom_policies(monkeypatch, tmp_path, cls, words):
    monkeypatch.setitem(POLICIES, "p", cls)
    with pytest.raises(ValueError) as e:
        run_scenario(tiny_scenario(), tmp_path / "out", policies=["mrt", "p"], progress=False, figures=False)
    _one_line(e, *words)
    assert not (tmp_path / "out" / "metrics.json").exists()


_TOML = """
[scenario]
name = "tiny"
drops = 2
chunk_drops = 2
[channel]
speed_kmh = 30
duration = 0.2
sample_interval = 0.002
[array]
num_cols = 8
[codebook]
oversampling = 2
[measurement]
set_b = 4
history = 2
[selector]
history = 2
"""


def test_cli_run_prints_one_line_for_a_bad_policy(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(POLICIES, "p", _Loud)
    doc = tmp_path / "s.toml"
    doc.write_text(_TOML)
    assert main(["run", str(doc), "--policies", "genie,p", "--out", str(tmp_path / "o"), "--no-figures"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("beamattn run: error: policy 'p'") and "norm 10" in err[-1], err


def test_linklevel_refuses_a_bad_policy(monkeypatch):
    from beamattn.linklevel.run import run_linklevel

    monkeypatch.setitem(POLICIES, "p", _NaN)
    with pytest.raises(ValueError) as e:
        run_linklevel(tiny_scenario(), None, policies=["genie", "p"], snr_db_list=[0.0], max_blocks=1,
                      progress=False, figures=False)
    _one_line(e, "'beams'", "nan")


_BASELINES = ("genie", "mrt", "exhaustive", "best-of-set-b", "stale", "hierarchical", "random", "uniform",
              "attention", "attention-untrained")


def test_every_registered_policy_keeps_the_contract(tiny):
    """Every policy that can be built from the scenario alone; the learned predictors that need a trained
    checkpoint are the only ones left out (their own tests train one)."""
    scn, ep = tiny
    checked = []
    for name in available_policies():
        try:
            pol = make_policies(scn, [name])[name]
        except ValueError as e:
            assert "checkpoint" in str(e) and name not in _BASELINES, e
            continue
        check_decision(name, ep, pol.decide(ep))
        checked.append(name)
    assert set(_BASELINES) <= set(checked)


# --------------------------------------------------------------------------- Top-1 of a beam reported as index -1


def _one_beam_episode(n: int = 4):
    """A drop on ``n`` antennas whose codebook has ONE beam (a user codebook)."""
    g = torch.Generator().manual_seed(5)
    h = torch.randn(3, 60, n, generator=g, dtype=torch.complex128).to(torch.complex64)
    sample = ChannelSample(h=h, positions=torch.zeros(3, 60, 3), times=torch.arange(60) * 0.005,
                           los=torch.zeros(3, 60, dtype=torch.bool))
    beam = torch.randn(1, n, generator=g, dtype=torch.complex128)
    cb = user_codebook((beam / beam.norm()).to(torch.complex64), ULA(n))
    cfg = MeasurementConfig(snr_db=10.0, set_b=0, history=2)
    return build_episode(sample, cb, None, cfg, 10.0, seed=1)


def test_uniform_over_one_beam_is_that_beam():
    ep = _one_beam_episode()
    dec = make_policy("uniform").decide(ep)
    check_decision("uniform", ep, dec)
    assert bool((dec.index == -1).all())  # the policy reports no single beam ...
    m = decision_metrics(ep, dec)
    # ... but a uniform combination of one beam IS that beam: the genie's pick, Top-1 = 1, no switches.
    assert bool((m.top1 == 1).all()) and bool((m.topk == 1).all()) and bool((m.switch == 0).all())
    assert bool((m.index == 0).all())
    g = decision_metrics(ep, make_policy("genie").decide(ep))
    torch.testing.assert_close(m.snr_db, g.snr_db)


def test_index_minus_one_stays_none_for_a_real_combination(tiny):
    _, ep = tiny
    dec = make_policy("uniform").decide(ep)  # 16 beams combined: no codebook beam
    assert bool((used_beam(ep, dec) == -1).all())
    assert bool((decision_metrics(ep, dec).top1 == 0).all())
    # MRT on this multipath channel is no codebook beam either; a codebook beam given as -1 is that beam.
    assert bool((used_beam(ep, make_policy("mrt").decide(ep)) == -1).all())
    g = _genie(ep)
    same = used_beam(ep, dataclasses.replace(g, index=torch.full_like(g.index, -1),
                                             beams=g.beams * complex(0.6, 0.8)))  # a common phase
    assert torch.equal(same, g.index)


def test_one_antenna_mrt_is_the_only_beam():
    ep = _one_beam_episode(n=1)
    m = decision_metrics(ep, make_policy("mrt").decide(ep))
    assert bool((m.top1 == 1).all())



# --------------------------------------------------------------------------- property: any valid scenario


@st.composite
def _scenarios(draw):
    """Small valid scenarios over the settings that change what policies see: array size, oversampling,
    Set B, report history, phases, quantisation, measurement SNR, speed, wide beams, data type."""
    n = draw(st.sampled_from([2, 4, 8]))
    o = draw(st.sampled_from([1, 2]))
    m = n * o
    history = draw(st.integers(1, 3))
    doc = {
        "scenario": {"name": "prop", "seed": draw(st.integers(0, 2**31)), "drops": 2, "chunk_drops": 2,
                     "snr_db": draw(st.floats(-10, 30))},
        "channel": {"speed_kmh": draw(st.sampled_from([0, 30, 120])), "duration": 0.2, "sample_interval": 0.002,
                    "num_clusters": draw(st.integers(1, 4)), "rays_per_cluster": 2,
                    "los": draw(st.booleans())},
        "array": {"num_cols": n},
        "codebook": {"oversampling": o, "num_wide": draw(st.sampled_from([0] + [w for w in (2, 4) if w <= m]))},
        "measurement": {"set_b": draw(st.integers(0, m)), "history": history, "with_phase": draw(st.booleans()),
                        "snr_db": draw(st.floats(-10, 40)), "quantization_db": draw(st.sampled_from([0.0, 1.0])),
                        "period": 0.02, "delay": 0.004},
        "selector": {"history": draw(st.integers(1, history)), "d_model": 4, "neighbours": 1,
                     "normalizer": draw(st.sampled_from(["softmax", "sparsemax", "entmax15"])),
                     "mode": draw(st.sampled_from(["soft", "hard", "topk"])), "topk": draw(st.integers(1, m))},
    }
    return parse_scenario(doc, source="prop")


@pytest.mark.slow  # about a minute: every registered policy on each drawn scenario
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_scenarios())
def test_what_every_policy_returns_keeps_the_contract_on_any_scenario(scn):
    """Every policy on any small valid scenario: its decision keeps the contract and its KPIs are finite,
    or it refuses the episode with one line naming itself. All failures of one scenario are listed."""
    _, ep, _ = next(episodes(scn, scn.seed, scn.drops))
    failures = []
    for name in available_policies():
        if (name == "hierarchical" or name.startswith("hierarchical-")) and scn.codebook.num_wide == 0:
            continue  # a scenario listing it without wide beams is refused when parsed
        try:
            pol = make_policies(scn, [name])[name]
        except ValueError as e:
            if not ("checkpoint" in str(e) and name not in _BASELINES):  # learned predictors need training
                failures.append(f"{name}: {e}")
            continue
        try:
            dec = pol.decide(ep)
        except ValueError as e:  # a policy may refuse an episode it cannot serve, with one line naming it
            if not (name in str(e) and len(str(e).splitlines()) == 1 and name not in _BASELINES):
                failures.append(f"{name}: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - any crash is a failure of that policy
            failures.append(f"{name}: {type(e).__name__}: {e}")
            continue
        try:
            check_decision(name, ep, dec)
        except DecisionError as e:
            failures.append(str(e))
            continue
        m = decision_metrics(ep, dec)
        for f in ("snr_db", "loss_db", "se", "top1", "topk", "overhead", "active", "entropy"):
            if not bool(torch.isfinite(getattr(m, f)).all()):
                failures.append(f"{name}: KPI {f} is not finite")
        if not bool((m.topk >= m.top1).all()):
            failures.append(f"{name}: Top-K below Top-1")
        if dec.weights is None and dec.gain is None and bool((dec.index >= 0).all()) \
                and not bool((m.loss_db >= -1e-3).all()):
            failures.append(f"{name}: a codebook beam beats the genie beam")  # the genie is the best of them
    assert not failures, "\n".join(failures)
