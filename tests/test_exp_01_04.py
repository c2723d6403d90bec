"""Experiments 1-4 (scaling, head sizes, LayerNorm, multi-head gradient variance) at small scale."""

from __future__ import annotations

import math

import numpy as np

import pytest

from beamattn.experiments import EXPERIMENTS
from experiment_checks import assert_mc_mean, query_norm_scale, run_small, softmax_rows_mc



@pytest.mark.parametrize("name, order", [("unscaled-dot-products", 1), ("shared-scale-heads", 2),
                                         ("post-ln-shouting-head", 3), ("multihead-gradient-variance", 4)])
def test_registered(name, order):
    assert EXPERIMENTS[name].order == order


def test_unscaled_dot_products(tmp_path):
    r = run_small("unscaled-dot-products", tmp_path)
    n = r.numbers
    sweep = n["sweep"]
    # Variance: unscaled ~ d_k, scaled ~ 1.
    assert all(0.7 <= v <= 1.3 for v in n["unscaled_var_over_d"])
    assert all(0.7 <= v <= 1.3 for v in sweep["scaled"]["var"])
    # Saturation at the largest d_k, healthy softmax when scaled.
    assert sweep["unscaled"]["max_weight"][-1] > 0.9 > 0.5 > sweep["scaled"]["max_weight"][-1]
    assert sweep["unscaled"]["entropy"][-1] < 0.5 < 3.0 < sweep["scaled"]["entropy"][-1]
    # The query gradient vanishes without the scale.
    assert sweep["unscaled"]["grad_q_median"][-1] < 0.1 * sweep["scaled"]["grad_q_median"][-1]
    # Learning is slower without the scale.
    tr = n["training"]
    assert tr["unscaled"]["mean_loss"] >= 2 * tr["scaled"]["mean_loss"]
    # Independent reference (NumPy Monte Carlo of the stated setup, q, k ~ N(0, I_d), num_keys keys): given q the
    # scores are N(0, ||q||²) unscaled and N(0, ||q||²/d) scaled; the softmax's mean largest weight and entropy.
    rng = np.random.default_rng(123)
    for i, d in enumerate(sweep["d_k"]):
        sigma = query_norm_scale(d, 20_000, rng)  # [draws] ||q||/√d
        for tag, s in (("unscaled", sigma * math.sqrt(d)), ("scaled", sigma)):
            w = softmax_rows_mc(s, sweep["num_keys"], rng=rng)  # [draws, Lk]
            entropy = -(w * np.log(np.maximum(w, 1e-300))).sum(-1)
            assert_mc_mean(sweep[tag]["max_weight"][i], w.max(-1), sweep["trials"], (tag, d, "max_weight"))
            assert_mc_mean(sweep[tag]["entropy"][i], entropy, sweep["trials"], (tag, d, "entropy"))
    assert r.supported == all(n["checks"][k] for k in ("variance", "saturation", "gradient", "training"))
    assert r.supported


def test_shared_scale_heads(tmp_path):
    r = run_small("shared-scale-heads", tmp_path)
    init = r.numbers["at_init"]
    shared, per_head = init["shared"], init["per_head"]
    # Shared scale: the largest head (d=128) takes > 2x the smallest head's (d=8) gradient share.
    assert shared["grad_share_mean"][-1] > 2 * shared["grad_share_mean"][0]
    # Per-head scales: close to balanced, and closer than with the shared scale.
    assert 0.5 <= per_head["largest_over_smallest"] <= 2.0
    assert abs(per_head["largest_over_smallest"] - 1) < abs(shared["largest_over_smallest"] - 1) / 2
    # Larger heads are sharper under the shared scale; per-head scales give the same entropy for all heads.
    assert shared["entropy_mean"][-1] < shared["entropy_mean"][0] - 0.3
    assert max(per_head["entropy_mean"]) - min(per_head["entropy_mean"]) < 0.1
    assert all(abs(sum(s) - 1) < 1e-6 for s in (shared["grad_share_mean"], per_head["grad_share_mean"]))
    assert r.supported


def test_post_ln_shouting_head(tmp_path):
    r = run_small("post-ln-shouting-head", tmp_path)
    c = r.numbers["checks"]
    rel = c["relative_at_check_factor"]
    # The shouting head dominates the attention output and the variance entering LayerNorm.
    i = r.numbers["block"]["factors"].index(c["check_factor"])
    assert r.numbers["block"]["post"]["output_share"][i][0] > 0.9
    assert c["shout_var_share_at_check_factor"] > 0.9
    # Post-LN: the residual sum and the other heads get a fraction of their gradient; pre-LN keeps it.
    for key in ("grad_residual_sum", "grad_other_heads"):
        assert rel["post"][key] < 0.5
        assert rel["pre"][key] > 0.8
        assert rel["post"][key] < rel["pre"][key] / 2
    # `supported` is the conjunction of the stated checks (training is too short at small scale to assert).
    assert r.supported == (c["post_squashed"] and c["pre_kept"] and c["training_post_hurt_more"])
    t = r.numbers["training"]
    assert all(len(t[norm][tag]["loss"]) == t["steps"] for norm in ("pre", "post") for tag in ("baseline", "shouting"))


def test_noise_to_signal_pieces_are_unbiased():
    """Gradients g_i = μ + noise (known μ, known covariance): the estimator's tr Σ and ||μ||² are unbiased
    (Monte Carlo mean over many repeats equals the truth), while the plain ||ḡ||² is biased by tr Σ / M."""
    import torch

    from beamattn.experiments.e04_multihead_variance import noise_to_signal

    g = torch.Generator().manual_seed(0)
    p, m, reps = 20, 8, 4000
    mu = 0.1 * torch.ones(p)  # ||μ||² = 0.2
    sd = torch.linspace(0.2, 1.0, p)  # tr Σ = Σ sd²
    grads = mu + sd * torch.randn(reps, m, p, generator=g)
    est = [noise_to_signal(grads[r]) for r in range(reps)]
    trace = np.array([e["trace_cov"] for e in est])
    signal = np.array([e["mean_sq_unbiased"] for e in est])
    plain = (grads.mean(1) ** 2).sum(-1).numpy()
    true_trace, true_signal = float((sd ** 2).sum()), float((mu ** 2).sum())
    assert abs(trace.mean() - true_trace) < 4 * trace.std() / math.sqrt(reps)
    assert abs(signal.mean() - true_signal) < 4 * signal.std() / math.sqrt(reps)
    assert plain.mean() - true_signal > 0.9 * true_trace / m  # the biased version the old experiment used


def test_matched_loss_ratio_and_stability_rules():
    from beamattn.experiments.e04_multihead_variance import matched_loss_ratio, spikes, stable

    # H=8's variance is half H=1's at every loss: the ratio is 0.5 whatever the runs' step spacing
    loss1, loss8 = [2.0, 1.5, 1.0, 0.5], [1.9, 1.2, 0.8]
    var1 = [math.exp(lo) for lo in loss1]
    var8 = [0.5 * math.exp(lo) for lo in loss8]
    assert matched_loss_ratio(loss1, var1, loss8, var8) == pytest.approx(0.5, rel=1e-9)
    assert matched_loss_ratio([2.0, 1.5], [1, 1], [1.0, 0.5], [1, 1]) is None  # no common loss range
    assert spikes([1.0] * 25 + [1.6] + [1.0] * 5) == 1
    assert stable([3.0] * 5 + [1.0] * 10, 15) and not stable([3.0] * 5 + [2.5] * 10, 15)
    assert not stable([3.0] * 5 + [float("nan")] + [1.0] * 9, 15)


def test_multihead_gradient_variance(tmp_path):
    r = run_small("multihead-gradient-variance", tmp_path)
    n = r.numbers
    # Same parameter count for every number of heads.
    assert n["equal_param_counts"]
    runs = n["runs"]
    for h in map(str, n["heads"]):
        cps = runs[h]["checkpoints"]
        assert len(cps) == len(n["checkpoints"])
        assert all(c[g]["trace_cov"] > 0 for c in cps for g in ("attention", "qkv", "w_o", "upstream"))
        # the run learns: the probe loss falls from initialisation to the end
        assert cps[-1]["loss"] < cps[0]["loss"] - 0.2
    # same minibatches, same seeds: at initialisation (near-uniform attention) H does not change the variance much
    a0 = [runs[h]["checkpoints"][0]["attention"]["trace_cov"] for h in ("1", "8")]
    assert 0.5 < a0[1] / a0[0] < 2.0
    lr = n["lr_sweep"]
    for h in ("1", "8"):
        assert len(lr[h]["stable"]) == len(n["lr_grid"]) and all(s >= 0 for s in lr[h]["spikes"])
    # `supported` is exactly the stated comparison (not asserted either way at small scale).
    assert r.supported == all(c["holds"] for c in r.criteria)
