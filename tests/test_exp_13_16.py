"""Experiments 13, 15 and 16 at small scale: files are written, the numbers are consistent, and each
claim's verdict follows from the measurements."""

from __future__ import annotations

import math

import pytest

from beamattn.experiments import EXPERIMENTS
from experiment_checks import run_small



@pytest.mark.parametrize("name, order", [("adversarial-vs-entropy", 13), ("local-attention-positions", 15),
                                         ("beam-selector-entropy", 16)])
def test_registered(name, order):
    assert EXPERIMENTS[name].order == order


def test_minimal_eps_equals_the_analytic_minimum_on_a_linear_model():
    """Two classes, logits [0, w·x + b]: the smallest L∞ perturbation on the coordinates S that flips the
    sign of f(x) = w·x + b is |f(x)| / ||w_S||_1 (closed form); bisection with PGD finds it within its
    tolerance eps_max / 2^steps."""
    import torch

    from beamattn.experiments.e13_adversarial import margin, minimal_eps

    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(6, generator=g), 0.3
    x = torch.randn(40, 6, generator=g)
    f = x @ w + b
    y = (f > 0).long()  # the model is right on every example
    where = torch.tensor([True, False, True, True, False, True])  # the attack may touch these coordinates

    def fn(inp, temperature):
        z = inp @ w + b
        return torch.stack([torch.zeros_like(z), z], -1)

    assert (margin(fn(x, 1.0), y) > 0).all()
    exact = f.abs() / w[where].abs().sum()
    eps_max, steps = 8.0, 14
    eps = minimal_eps(fn, x, y, where, eps_max, g, bisect_steps=steps, steps=5, soft_temperature=None)
    inside = exact < eps_max
    assert inside.sum() > 30
    tol = eps_max / 2**steps
    assert torch.all((eps[inside] - exact[inside]).abs() <= tol + 1e-5), (eps - exact).abs().max()
    assert torch.all(eps[~inside] == eps_max)  # censored at eps_max


def test_adversarial_vs_entropy(tmp_path):
    res = run_small("adversarial-vs-entropy", tmp_path)
    n = res.numbers
    sharp, smooth = n["models"]["sharp"], n["models"]["smooth"]
    # Both models solve the redundant-marker task; the regulariser sets the entropies apart, and the smooth
    # model spreads over the marked tokens, not over the distractors.
    assert sharp["clean_accuracy"] >= 0.95 and smooth["clean_accuracy"] >= 0.95
    assert sharp["entropy_nats"] < 0.6 < 0.9 < smooth["entropy_nats"] <= math.log(8) + 1e-6
    assert smooth["weight_on_marked"] > 0.9 and sharp["max_weight"] > smooth["max_weight"]
    for r in (sharp, smooth):
        for attack in ("markers", "distractor_contents"):
            a = r[attack]
            assert all(0 <= e <= n["eps_max"] for e in a["eps_star"])
            assert 0 <= a["censored_fraction"] <= 1 and 0 <= a["random_corner_below_eps_star_fraction"] <= 1
            lo, hi = a["eps_star_quartiles"]
            assert lo <= a["eps_star_median"] <= hi
        # the marker attack always succeeds by eps_max (no gradient masking), and it moves the attention
        assert r["markers"]["censored_fraction"] == 0.0
        assert 0.0 < r["markers"]["tv_shift_at_eps"] <= 1.0
    # a model that puts almost no weight on the distractors is almost never flipped through their contents
    assert sharp["distractor_contents"]["censored_fraction"] > 0.5
    assert res.supported == all(c["holds"] for c in res.criteria)
    s = n["summary"]
    assert s["marker_ratio_eps_over_margin_smooth_over_sharp"] == pytest.approx(
        smooth["markers"]["eps_star_over_margin_median"] / sharp["markers"]["eps_star_over_margin_median"])


def test_local_attention_positions(tmp_path):
    res = run_small("local-attention-positions", tmp_path)
    n = res.numbers
    s = n["summary"]
    assert abs(s["relative"]["interior"] - 0.5) <= n["chance_margin"]
    assert s["sinusoidal"]["interior"] >= 0.9 and s["learned"]["interior"] >= 0.9
    assert s["relative + global token"]["interior"] >= s["relative"]["interior"] + 0.1
    assert len(n["accuracy_by_position"]["relative"]) == n["length"]
    assert n["receptive_field"] == n["layers"] * n["window"]
    assert res.supported == (n["relative_interior_at_chance"] and n["absolute_beats_relative"])
    assert res.supported


def test_beam_selector_entropy(tmp_path):
    res = run_small("beam-selector-entropy", tmp_path)
    n = res.numbers
    m = n["margin_nats"]
    assert n["uniform_entropy_nats"] == pytest.approx(math.log(n["num_beams"]), abs=1e-12)  # closed form: ln M
    for channel, by_norm in n["vs_snr"].items():
        for norm, r in by_norm.items():
            assert all(0 <= e <= n["uniform_entropy_nats"] + 1e-6 for e in r["entropy"])
            assert r["entropy"][0] - r["entropy"][-1] >= m, (channel, norm)  # noisier → more spread
            if norm == "softmax":
                assert all(a == n["num_beams"] for a in r["active"])  # no exact zeros
            else:
                assert all(1 <= a < n["num_beams"] for a in r["active"])
    los, rich = n["vs_snr"]["strong LoS (K = 20 dB)"], n["vs_snr"]["rich scattering (no LoS)"]
    for norm in ("softmax", "sparsemax"):
        assert rich[norm]["entropy"][-1] - los[norm]["entropy"][-1] >= m  # one dominant beam → sharper
        k = n["vs_k_factor"]["20 dB"][norm]["entropy"]
        assert k[0] - k[-1] >= m
        # sparsemax is sharper than softmax at the same temperature
        assert all(s < x for s, x in zip(los["sparsemax"]["entropy"], los["softmax"]["entropy"]))
    assert res.supported
