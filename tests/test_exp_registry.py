"""The experiment registry's replicates: criteria aggregated over seeds, 95% t-intervals, verdicts on the CI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from beamattn.experiments import EXPERIMENTS, run_experiment
from beamattn.experiments.registry import (SEED_STRIDE, Criterion, Outcome, at_least, at_most, deciding_criterion,
                                           experiment, replicate_seeds, summarize_criterion)
from beamattn.experiments.report import render_report


def test_summarize_criterion_equals_scipy_t_interval():
    values = [0.8, 1.1, 0.95, 1.3, 0.7]
    c = summarize_criterion("x", ">=", 0.5, values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert c["mean"] == pytest.approx(np.mean(values)) and c["sd"] == pytest.approx(np.std(values, ddof=1))
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((lo, hi))
    assert c["holds"] == (lo >= 0.5) and c["margin"] == pytest.approx(np.mean(values) - 0.5)
    assert c["margin_ci"] == pytest.approx([lo - 0.5, hi - 0.5])
    # "<=": the upper end must be below the threshold; the margin is threshold - mean
    d = summarize_criterion("y", "<=", 1.2, values)
    assert d["holds"] == (hi <= 1.2) and d["margin"] == pytest.approx(1.2 - np.mean(values))
    # one replicate: no interval, the value decides
    one = summarize_criterion("z", "<=", 1.0, [0.9])
    assert one["ci_low"] == one["ci_high"] == 0.9 and one["holds"]


def test_mean_on_the_right_side_is_not_enough():
    # every seed but one passes and the mean passes, but the CI crosses the threshold: not supported
    values = [0.9, 0.92, 0.3]
    c = summarize_criterion("recall", ">=", 0.5, values)
    assert np.mean(values) > 0.5 and c["ci_low"] < 0.5 and not c["holds"]
    assert deciding_criterion([summarize_criterion("a", ">=", 0.0, [5.0, 5.1, 4.9]), c]) is not None
    assert deciding_criterion([summarize_criterion("a", ">=", 0.0, [5.0, 5.1, 4.9]), c])["name"] == "recall"


def test_criterion_checks_its_fields():
    with pytest.raises(ValueError, match="op = '>'; expected '>=' or '<='"):
        Criterion("x", 1.0, ">", 0.0)
    with pytest.raises(ValueError, match="must be finite"):
        at_least("x", float("nan"), 0.0)
    assert at_most("x", 1.0, 1.0).holds() and not at_least("x", 0.99, 1.0).holds()


def test_replicate_seeds_are_spread_and_checked():
    assert replicate_seeds(7, 3) == [7, 7 + SEED_STRIDE, 7 + 2 * SEED_STRIDE]
    with pytest.raises(ValueError, match=r"^seed = 9223372036854775807; with 2 replicates"):
        replicate_seeds(2**63 - 1, 2)
    with pytest.raises(ValueError, match=r"^experiment: num_seeds = 0; expected an int >= 1"):
        run_experiment("permutation-equivariance", "/nonexistent", num_seeds=0)


def test_replicates_aggregate_and_the_verdict_follows_the_ci(tmp_path):
    name = "_test-replicates"
    calls = []

    @experiment(name, "a test experiment", "x is large", order=998, seeds=4)
    def _fn(out_dir, small, seed):
        calls.append(seed)
        (out_dir / "fig.png").write_bytes(b"png")
        x = 1.0 + (seed // SEED_STRIDE) * 0.1  # 1.0, 1.1, 1.2, 1.3 over the replicates
        crit = [at_least("x", x, 0.5), at_most("x small enough", x, 1.25)]
        return Outcome(numbers={"x": x}, verdict=f"x = {x}", supported=all(c.holds() for c in crit),
                       figures=["fig.png"], criteria=crit)

    try:
        r = run_experiment(name, tmp_path, small=False, seed=3)
        assert calls == [3 + i * SEED_STRIDE for i in range(4)] and r.seeds == calls
        first, second = r.criteria
        assert first["values"] == pytest.approx([1.0, 1.1, 1.2, 1.3]) and first["holds"]
        assert not second["holds"]  # seed 4 (1.3) fails, and the CI crosses 1.25 anyway
        assert not r.supported and r.verdict.startswith("Not supported over 4 seed(s)")
        saved = json.loads((tmp_path / name / "result.json").read_text())
        assert [rep["numbers"]["x"] for rep in saved["replicates"]] == pytest.approx([1.0, 1.1, 1.2, 1.3])
        assert saved["figures"] == ["fig.png", "criteria.png"] and (tmp_path / name / "criteria.png").stat().st_size > 10_000
        text = render_report([r])
        assert "0 of 1 claims supported" in text and "x small enough" in text and "| 4 |" in text
        # small scale: one replicate unless asked
        calls.clear()
        run_experiment(name, tmp_path / "s", small=True, seed=3)
        assert calls == [3]
        calls.clear()
        r2 = run_experiment(name, tmp_path / "t", small=True, seed=3, num_seeds=2)
        assert calls == [3, 3 + SEED_STRIDE]
        # 1.0 and 1.1 both pass, but two replicates give a wide interval (t = 12.7): [0.42, 1.69] crosses 1.25
        assert r2.criteria[1]["ci_high"] > 1.25 and not r2.supported
    finally:
        EXPERIMENTS.pop(name)


def test_a_verdict_that_disagrees_with_its_criteria_is_refused(tmp_path):
    name = "_test-inconsistent"

    @experiment(name, "inconsistent", "claims nothing", order=997)
    def _fn(out_dir, small, seed):
        return Outcome(numbers={}, verdict="?", supported=True, criteria=[at_least("x", 0.0, 1.0)])

    try:
        with pytest.raises(RuntimeError, match="disagrees with its criteria"):
            run_experiment(name, tmp_path, small=True)
    finally:
        EXPERIMENTS.pop(name)


def test_every_experiment_states_its_replicates():
    for name, e in EXPERIMENTS.items():
        if not name.startswith("_"):
            assert e.seeds == (5 if e.order in (4, 9, 13) else 3), name


def test_a_real_experiment_over_three_seeds(tmp_path):
    r = run_experiment("permutation-equivariance", tmp_path, small=True, num_seeds=3)
    assert len(r.seeds) == 3 and len(r.replicates) == 3 and r.criteria
    for c in r.criteria:
        assert len(c["values"]) == 3 and c["ci_low"] <= c["mean"] <= c["ci_high"]
        assert math.isfinite(c["ci_low"]) and math.isfinite(c["ci_high"])
    assert r.supported == all(c["holds"] for c in r.criteria)


def test_cli_seeds_option(tmp_path, capsys):
    from beamattn.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["experiment", "permutation-equivariance", "--small", "--seeds", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "beamattn experiment: error: argument --seeds: expected an integer >= 1, got 0"
    assert main(["experiment", "permutation-equivariance", "--small", "--seeds", "2", "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "permutation-equivariance" / "result.json").read_text())
    assert len(saved["seeds"]) == 2 and len(saved["replicates"]) == 2


def test_run_all_with_workers_gives_the_serial_numbers(tmp_path):
    import torch

    from beamattn.experiments import run_all

    saved = dict(EXPERIMENTS)
    EXPERIMENTS.clear()
    try:
        for i in range(3):
            @experiment(f"_w{i}", f"fake {i}", "claims nothing", order=i, seeds=2)
            def _fn(out_dir, small, seed, i=i):
                x = float(torch.rand(()).item()) + i  # drawn from the global generator the registry seeds
                return Outcome(numbers={"x": x}, verdict="v", supported=True, criteria=[at_least("x", x, -1.0)])
        serial = run_all(tmp_path / "a", progress=False)
        parallel = run_all(tmp_path / "b", progress=False, workers=2)
        assert [r.name for r in parallel] == ["_w0", "_w1", "_w2"]
        assert [r.criteria for r in serial] == [r.criteria for r in parallel]
        assert (tmp_path / "b" / "report.md").is_file() and (tmp_path / "b" / "_w2" / "result.json").is_file()
        with pytest.raises(ValueError, match="workers = 0; expected an int >= 1"):
            run_all(tmp_path / "c", workers=0)
    finally:
        EXPERIMENTS.clear()
        EXPERIMENTS.update(saved)
