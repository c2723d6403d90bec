"""scripts/tune_baselines.py: baselines' settings chosen on training drops, never on evaluation drops."""

from __future__ import annotations

import dataclasses
import json

import pytest

from script_loader import load_script
from wireless_fixtures import tiny_scenario


def test_grid_points_every_combination_defaults_first():
    tb = load_script("tune_baselines")
    pts = tb.grid_points({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(pts) == 6 and pts[0] == {"a": 1, "b": "x"}
    assert {(p["a"], p["b"]) for p in pts} == {(a, b) for a in (1, 2) for b in "xyz"}


def test_every_grid_default_is_the_policy_default():
    """The first value of each grid is what the policy runs with when nothing is set (so 'default' is true)."""
    import inspect

    from beamattn.wireless.policies import POLICIES

    tb = load_script("tune_baselines")
    for name, grid in tb.GRIDS.items():
        params = inspect.signature(POLICIES[name].__init__).parameters
        for key, values in grid.items():
            default = params[key].default
            assert values[0] == default, (name, key, values[0], default)


def test_tune_uses_training_drops_only_and_picks_the_minimum(tmp_path):
    tb = load_script("tune_baselines")
    scn = tiny_scenario()
    res = tb.tune(scn, ["ekf", "exhaustive-avg"], drops=2, seed=scn.training.seed)
    for r in res.values():
        losses = [p["loss_db"] for p in r["grid"]]
        assert r["best_loss_db"] == min(losses) and r["default_loss_db"] == losses[0]
        assert r["best"] == r["grid"][losses.index(min(losses))]["args"]
    # Another evaluation seed leaves the tuning unchanged (it never reads evaluation drops) ...
    other_eval = dataclasses.replace(scn, seed=scn.seed + 1)
    assert tb.tune(other_eval, ["exhaustive-avg"], drops=2, seed=scn.training.seed)["exhaustive-avg"] == \
        res["exhaustive-avg"]
    # ... while other training drops change the numbers.
    other = tb.tune(scn, ["exhaustive-avg"], drops=2, seed=scn.training.seed + 1)["exhaustive-avg"]
    assert [p["loss_db"] for p in other["grid"]] != [p["loss_db"] for p in res["exhaustive-avg"]["grid"]]


def test_toml_tables_parse_back_as_policy_arguments():
    import tomllib

    tb = load_script("tune_baselines")
    result = {"ekf": {"grid": [{"args": {"reacquire_steps": 0.5, "reacquire_db": 6.0}}],
                      "best": {"reacquire_steps": 1.0, "reacquire_db": 6.0}},
              "ucb1-discounted": {"grid": [{"args": {"gamma": None}}], "best": {"gamma": None}}}
    doc = tomllib.loads(tb.toml_tables(result))
    assert doc == {"policy": {"ekf": {"reacquire_steps": 1.0}}}  # only what differs from the default


def test_cli_refuses_unknown_policies_in_one_line(tmp_path, capsys):
    tb = load_script("tune_baselines")
    assert tb.main(["scenarios/vehicular-60.toml", "--policies", "genie"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tune_baselines.py: error:") and "genie" in err and "\n" not in err
