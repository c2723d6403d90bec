"""`beamattn compare`: paired differences over the same drops, across training seeds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from beamattn.wireless.compare import (COMPARE_METRICS, compare_runs, format_comparison, paired_difference,
                                       plot_comparison, read_run)
from beamattn.wireless.runner import STEP_FIELDS


def _write_run(folder: Path, per_policy: dict[str, np.ndarray], *, seed: int = 0, scenario: dict | None = None,
               decisions: int = 3) -> Path:
    """A run folder whose per-decision loss_db values are ``per_policy[name][drop] + small zero-mean wiggle``."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"scenario": scenario or {"name": "toy"}, "seed": seed}))
    with open(folder / "steps.csv", "w", newline="") as f:
        w = csv.DictWriter(f, STEP_FIELDS)
        w.writeheader()
        wiggle = np.linspace(-0.1, 0.1, decisions)  # mean 0: the per-drop mean is exactly the given value
        for name, per_drop in per_policy.items():
            for drop, v in enumerate(per_drop):
                for j in range(decisions):
                    row = {k: 0 for k in STEP_FIELDS}
                    row.update(drop=drop, decision=j, policy=name, loss_db=round(v + wiggle[j], 6),
                               snr_db=round(10 - v, 6), top1=1.0 if v < 0.5 else 0.0, measured=16)
                    w.writerow(row)
    return folder


def test_read_run_averages_decisions_per_drop(tmp_path):
    vals = np.array([0.3, 1.2, 0.8, 2.5])
    run = read_run(_write_run(tmp_path / "r", {"genie": np.zeros(4), "exhaustive": vals}))
    np.testing.assert_allclose(run.values["exhaustive"]["loss_db"], vals, atol=1e-6)
    np.testing.assert_allclose(run.values["exhaustive"]["snr_db"], 10 - vals, atol=1e-6)
    assert set(run.values["genie"]) == set(COMPARE_METRICS)


def test_paired_difference_mean_and_interval_level():
    rng = np.random.default_rng(3)
    n, sigma = 4000, 2.0
    a = rng.normal(0, 5, n)  # a large drop-to-drop variation shared by both policies
    b = a + rng.normal(0.3, sigma, n)
    d = paired_difference(b, a, seed=1)
    assert d["mean"] == pytest.approx(float((b - a).mean()), abs=1e-12)
    lo, hi = d["ci95"]
    assert lo < d["mean"] < hi
    # The 95% half-width of a mean of n Gaussian values is z_0.975 σ/√n: a 90% interval (z 1.645) would fail.
    half = (hi - lo) / 2
    expected = stats.norm.ppf(0.975) * (b - a).std(ddof=1) / np.sqrt(n)
    assert half == pytest.approx(expected, rel=0.08)
    # Pairing removes the shared variation: the unpaired interval is far wider.
    unpaired = stats.norm.ppf(0.975) * np.sqrt(a.var() / n + b.var() / n)
    assert half < 0.5 * unpaired


def test_paired_difference_refuses_unpaired_shapes():
    with pytest.raises(ValueError, match="same 1-D shape"):
        paired_difference(np.zeros(3), np.zeros(4))


def test_compare_single_run_known_differences(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 3, 64)
    run = _write_run(tmp_path / "r", {"genie": np.zeros(64), "exhaustive": base, "attention": base - 0.25})
    res = compare_runs([run], "exhaustive")
    att = res["policies"]["attention"]
    assert att["diff"]["mean"] == pytest.approx(-0.25, abs=1e-5)
    assert att["diff"]["ci95"][0] == pytest.approx(-0.25, abs=1e-5)  # a constant difference has a zero-width CI
    assert res["policies"]["exhaustive"]["diff"]["mean"] == 0.0
    table = format_comparison(res)
    assert "| attention |" in table and "better" in table.split("| attention |")[1].split("\n")[0]
    assert "| genie |" in table and "better" in table.split("| genie |")[1].split("\n")[0]


def test_compare_training_seeds_average_per_drop(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 3, 40)
    offsets = [-0.3, -0.1, -0.2]  # three training seeds of the learned policy
    runs = [_write_run(tmp_path / f"s{i}", {"exhaustive": base, "attention": base + o + 0.05 * rng.normal(size=40)})
            for i, o in enumerate(offsets)]
    res = compare_runs(runs, "exhaustive")
    att = res["policies"]["attention"]
    assert att["num_seeds"] == 3 and att["varies_with_seed"]
    per_seed = [s["mean"] for s in att["per_seed"]]
    np.testing.assert_allclose(per_seed, offsets, atol=0.05)
    assert att["diff"]["mean"] == pytest.approx(np.mean(per_seed), abs=1e-9)
    assert att["seed_spread"]["std"] == pytest.approx(np.std([base.mean() + p for p in per_seed], ddof=1), abs=1e-9)
    assert not res["policies"]["exhaustive"]["varies_with_seed"]
    plot = plot_comparison(res, tmp_path / "fig" / "compare.png")
    assert plot.stat().st_size > 5000


@pytest.mark.parametrize("bad", ["seed", "scenario", "drops", "reference", "metric", "no-files"])
def test_compare_refuses_runs_that_do_not_share_drops(tmp_path, bad):
    a = _write_run(tmp_path / "a", {"genie": np.zeros(5), "exhaustive": np.ones(5)})
    kwargs = {"seed": 1} if bad == "seed" else {"scenario": {"name": "other"}} if bad == "scenario" else {}
    n = 6 if bad == "drops" else 5
    policies = {"genie": np.zeros(n), "exhaustive": np.ones(n)}
    b = _write_run(tmp_path / "b", policies, **kwargs)
    if bad == "no-files":
        (b / "steps.csv").unlink()
    ref, metric = ("nope" if bad == "reference" else "genie"), ("bogus" if bad == "metric" else "loss_db")
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        compare_runs([a, b], ref, metric=metric)
    msg = str(err.value)
    assert msg.startswith("compare:") and "\n" not in msg


def test_compare_merges_runs_of_different_policies_over_the_same_drops(tmp_path):
    """Baselines in one run, each training seed of a learned policy in its own: paired drop by drop."""
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 3, 30)
    learned = [base - 0.4 + 0.05 * rng.normal(size=30) for _ in range(3)]
    runs = [_write_run(tmp_path / "baselines", {"genie": np.zeros(30), "exhaustive": base})]
    runs += [_write_run(tmp_path / f"seed{i}", {"genie": np.zeros(30), "mlp": v}) for i, v in enumerate(learned)]
    res = compare_runs(runs, "exhaustive")
    mlp = res["policies"]["mlp"]
    assert mlp["num_seeds"] == 3 and mlp["runs"] == [1, 2, 3] and mlp["varies_with_seed"]
    expected = np.mean(learned, 0) - base  # the seed-averaged per-drop values against the one reference run
    assert mlp["diff"]["mean"] == pytest.approx(expected.mean(), abs=1e-5)
    for s, v in zip(mlp["per_seed"], learned):
        assert s["mean"] == pytest.approx((v - base).mean(), abs=1e-5)
    assert res["policies"]["exhaustive"]["num_seeds"] == 1 and res["policies"]["genie"]["num_seeds"] == 4
    assert not res["policies"]["genie"]["varies_with_seed"]
    table = format_comparison(res)
    assert "| mlp |" in table and "better" in table.split("| mlp |")[1].split("\n")[0]
    # A run's own reference is used where it has one: a second exhaustive run shifted by a constant c
    # shifts that run's per-seed differences by -c, and the seed-averaged reference by c / 2.
    shifted = _write_run(tmp_path / "shifted", {"exhaustive": base + 1.0, "mlp": learned[0]})
    res2 = compare_runs([runs[0], shifted], "exhaustive")
    assert res2["policies"]["mlp"]["per_seed"][0]["mean"] == pytest.approx((learned[0] - base - 1.0).mean(), abs=1e-5)
    assert res2["policies"]["mlp"]["diff"]["mean"] == pytest.approx((learned[0] - base - 0.5).mean(), abs=1e-5)


def test_compare_pairs_runs_that_differ_only_outside_the_drops(tmp_path):
    """Another policy list, selector or training budget, or the file's path do not change the drops."""
    scn = {"name": "toy", "drops": 4, "channel": {"speed_kmh": 60}, "policies": ["genie"], "source": "a.toml",
           "training": {"steps": 2500}, "selector": {"arch": "conv"}}
    other = {**scn, "policies": ["mlp"], "source": "copy/a.toml", "training": {"steps": 600},
             "selector": {"arch": "transformer"}}
    a = _write_run(tmp_path / "a", {"genie": np.zeros(4), "exhaustive": np.ones(4)}, scenario=scn)
    b = _write_run(tmp_path / "b", {"mlp": np.full(4, 0.5)}, scenario=other)
    assert compare_runs([a, b], "exhaustive")["policies"]["mlp"]["diff"]["mean"] == pytest.approx(-0.5, abs=1e-6)
    c = _write_run(tmp_path / "c", {"mlp": np.full(4, 0.5)}, scenario={**scn, "channel": {"speed_kmh": 120}})
    with pytest.raises(ValueError, match=r"differ in their scenario \(fields \['channel'\]\)"):
        compare_runs([a, c], "exhaustive")


def test_compare_on_a_real_run_matches_its_summary(tmp_path):
    from beamattn.wireless.runner import run_scenario
    from wireless_fixtures import tiny_scenario

    scn = tiny_scenario()
    res = run_scenario(scn, tmp_path / "run", policies=["genie", "exhaustive", "best-of-set-b"], progress=False,
                       figures=False)
    cmp = compare_runs([tmp_path / "run"], "exhaustive")
    for name in ("genie", "best-of-set-b"):
        expected = res.summary[name]["loss_db"]["mean"] - res.summary["exhaustive"]["loss_db"]["mean"]
        assert cmp["policies"][name]["diff"]["mean"] == pytest.approx(expected, abs=1e-3)  # steps.csv rounds to 1e-4
    assert cmp["policies"]["genie"]["diff"]["ci95"][1] <= 0  # the genie never loses to a sweep


def test_run_table_pairs_every_policy_with_the_reference(tmp_path):
    from beamattn.wireless.runner import run_scenario
    from wireless_fixtures import tiny_scenario

    scn = tiny_scenario()
    res = run_scenario(scn, None, policies=["genie", "exhaustive", "best-of-set-b"], progress=False, figures=False)
    for name in ("genie", "best-of-set-b"):
        p = res.summary[name]["paired_vs_reference"]
        assert p["reference"] == "exhaustive"  # the default reference when it is evaluated
        expected = res.summary[name]["loss_db"]["mean"] - res.summary["exhaustive"]["loss_db"]["mean"]
        assert p["loss_db"]["mean"] == pytest.approx(expected, abs=1e-9)
        assert p["loss_db"]["ci95"][0] <= p["loss_db"]["mean"] <= p["loss_db"]["ci95"][1]
    assert res.summary["exhaustive"]["paired_vs_reference"]["loss_db"]["mean"] == 0.0
    other = run_scenario(scn, None, policies=["genie", "best-of-set-b"], progress=False, figures=False,
                         reference="best-of-set-b")
    assert other.summary["genie"]["paired_vs_reference"]["loss_db"]["ci95"][1] <= 0
    with pytest.raises(ValueError, match="reference policy 'stale' is not evaluated"):
        run_scenario(scn, None, policies=["genie"], progress=False, figures=False, reference="stale")


def test_a_renamed_policy_of_another_checkpoint_is_paired_with_the_original(tmp_path):
    # The same policy name from two checkpoints (e.g. trained on this scenario and on another): renaming one
    # keeps the two apart, and their paired difference is the known offset.
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 3, 32)
    own = _write_run(tmp_path / "own", {"exhaustive": base, "attention": base - 0.3})
    other = _write_run(tmp_path / "other", {"exhaustive": base, "attention": base - 0.1})
    res = compare_runs([f"{own}", f"{other}::attention=attention-elsewhere"], "attention")
    assert res["policies"]["attention"]["num_seeds"] == 1  # not averaged with the other checkpoint
    assert res["policies"]["attention-elsewhere"]["diff"]["mean"] == pytest.approx(0.2, abs=1e-5)


@pytest.mark.parametrize("arg, message", [
    ("{run}::attention", r"renames 'attention'; expected FOLDER::OLD=NEW"),
    ("{run}::=x", r"renames '=x'; expected FOLDER::OLD=NEW"),
    ("{run}::mlp=x", r"has no policy 'mlp' to rename; it has \['attention', 'exhaustive'\]"),
    ("{run}::attention=exhaustive", r"give two policies one name"),
])
def test_bad_renames_are_refused_in_one_line(tmp_path, arg, message):
    run = _write_run(tmp_path / "r", {"exhaustive": np.zeros(4), "attention": np.ones(4)})
    with pytest.raises(ValueError, match=message):
        compare_runs([arg.format(run=run)], "exhaustive")
