"""``import beamattn``: the researcher's API gives the numbers of ``beamattn run`` (same scenario, seed, drops)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import beamattn
from beamattn.wireless import runner
from wireless_fixtures import fresh_policy_registry, run_cli, tiny_doc, write_scenario

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "my_policy.py"
POLICIES = ["genie", "exhaustive", "best-of-set-b", "stale"]


@pytest.fixture(autouse=True)
def fresh_registry():
    with fresh_policy_registry():
        yield


@pytest.fixture
def scn_file(tmp_path) -> str:
    return write_scenario(tmp_path / "s.toml", tiny_doc(scenario={"policies": POLICIES}))


def _json(obj):
    return json.loads(json.dumps(obj, allow_nan=False))  # what metrics.json holds


def test_evaluate_equals_the_cli_metrics(tmp_path, scn_file):
    rc, _, err = run_cli(["run", scn_file, "--out", str(tmp_path / "r"), "--no-figures", "--seed", "7",
                          "--drops", "2"])
    assert rc == 0, err
    cli = json.loads((tmp_path / "r" / "metrics.json").read_text())["metrics"]
    res = beamattn.evaluate(beamattn.load_scenario(scn_file, drops=2), seed=7)
    assert _json(res.summary) == cli
    assert list(res.summary) == POLICIES


def test_a_manual_loop_over_episodes_gives_the_runs_means(scn_file):
    # The step-by-step API (episodes, make_policies, decision_metrics) reproduces evaluate's means: the mean
    # over drops of each drop's mean over decisions.
    scn = beamattn.load_scenario(scn_file)
    res = beamattn.evaluate(scn, ["exhaustive", "stale"])
    pols = beamattn.make_policies(scn, ["exhaustive", "stale"])
    per_drop = {n: [] for n in pols}
    firsts = []
    for chunk in beamattn.episodes(scn):
        firsts.append(chunk.first_drop)
        assert chunk.channel.h.shape[0] == chunk.episode.num_drops
        for name, pol in pols.items():
            m = beamattn.decision_metrics(chunk.episode, pol.decide(chunk.episode), scn.outage_db)
            per_drop[name].append(m.loss_db.double().mean(1).numpy())  # [B] per drop
    assert firsts == [0, 2]  # 3 drops in chunks of 2
    for name in pols:
        assert np.concatenate(per_drop[name]).mean() == pytest.approx(res.summary[name]["loss_db"]["mean"],
                                                                      rel=1e-6, abs=1e-9)


def test_episodes_are_the_runners(scn_file):
    scn = beamattn.load_scenario(scn_file)
    for chunk, (start, ep, _) in zip(beamattn.episodes(scn, seed=5), runner.episodes(scn, 5, scn.drops)):
        assert chunk.first_drop == start
        assert (chunk.episode.reports_db == ep.reports_db).all() and (chunk.episode.gain_use == ep.gain_use).all()


def test_drops_and_seed_are_checked_in_one_line(scn_file):
    scn = beamattn.load_scenario(scn_file)
    with pytest.raises(ValueError, match=r"^drops: field 'drops' = 0; expected an integer in \[1, 1e\+07\]$"):
        beamattn.evaluate(scn, drops=0)
    with pytest.raises(ValueError, match=r"seed = -1; expected an integer in \[0, 2\^63 - 1\]"):
        next(beamattn.episodes(scn, seed=-1))
    assert scn.drops == 3  # with_drops returns a copy


def test_plugins_through_the_api(tmp_path):
    doc = tiny_doc(scenario={"drops": 2, "policies": ["best-of-set-b", "smoothed-set-b"]},
                   measurement={"quantization_db": 0.0})
    doc["policy"] = {"smoothed-set-b": {"weight": 0.0}}
    path = write_scenario(tmp_path / "s.toml", doc)
    scn = beamattn.load_scenario(path, plugins=[str(EXAMPLE)])
    res = beamattn.evaluate(scn)
    assert res.summary["smoothed-set-b"]["loss_db"] == res.summary["best-of-set-b"]["loss_db"]


def test_import_beamattn_imports_no_torch():
    code = "import sys, beamattn; assert 'torch' not in sys.modules and 'evaluate' in dir(beamattn)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        beamattn.nope  # noqa: B018


def test_the_api_calls_the_runner_at_call_time(monkeypatch, scn_file):
    # beamattn.api imported while the runner was patched (the CLI fuzz test stubs run_scenario, and the CLI's
    # --drops imports beamattn.api) must not keep the stub: the full suite once returned None here.
    import importlib

    import beamattn.api

    with monkeypatch.context() as m:
        m.setattr(runner, "run_scenario", lambda *a, **k: None)
        m.setattr(runner, "episodes", lambda *a, **k: iter(()))
        importlib.reload(beamattn.api)
    scn = beamattn.load_scenario(scn_file, drops=2)
    assert abs(beamattn.evaluate(scn, ["genie"]).summary["genie"]["loss_db"]["mean"]) < 1e-6
    assert [c.first_drop for c in beamattn.episodes(scn)] == [0]
