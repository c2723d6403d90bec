"""Policies from the user's own modules: ``--plugin`` on run / sweep / linklevel / train, the ``beamattn.policies``
entry points (lazy), one-line errors, and the records of what ran."""

import hashlib
import importlib
import importlib.metadata
import json
import sys
from pathlib import Path

import pytest

import beamattn.plugins as plugins
from beamattn.wireless.policies import POLICIES, make_policy
from beamattn.wireless.scenario import ScenarioError, parse_scenario
from wireless_fixtures import error_line, fresh_policy_registry, run_cli, tiny_doc, write_scenario

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "my_policy.py"


@pytest.fixture(autouse=True)
def fresh_registry():
    """Every test starts with the built-in policies only and no plugin loaded (the registry is per process)."""
    with fresh_policy_registry():
        yield


def _doc(**scenario) -> dict:
    """The tiny scenario with unquantised reports (no ties), the example policy at weight 0 (the plain
    argmax of the Set B reports, i.e. best-of-set-b), 2 drops."""
    doc = tiny_doc(scenario={"drops": 2, "policies": ["genie", "best-of-set-b", "smoothed-set-b"], **scenario},
                   measurement={"quantization_db": 0.0})
    doc["policy"] = {"smoothed-set-b": {"weight": 0.0}}
    return doc


def _same_as_best_of_set_b(metrics: dict) -> None:
    a, b = metrics["smoothed-set-b"], metrics["best-of-set-b"]
    for key in ("snr_db", "loss_db", "top1", "se"):
        assert a[key]["mean"] == b[key]["mean"], key


def test_run_with_a_plugin_file_and_records_it(tmp_path):
    scn = write_scenario(tmp_path / "s.toml", _doc())
    rc, _, err = run_cli(["run", scn, "--plugin", str(EXAMPLE), "--out", str(tmp_path / "r"), "--no-figures"])
    assert rc == 0, err
    meta = json.loads((tmp_path / "r" / "metrics.json").read_text())
    _same_as_best_of_set_b(meta["metrics"])  # weight 0 and no ties: the argmax of the same reports
    (rec,) = meta["plugins"]
    assert rec["file"] == str(EXAMPLE) and rec["policies"] == ["smoothed-set-b"] and rec["source"] == "--plugin"
    assert rec["sha256"] == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert meta["policies_config"]["smoothed-set-b"] == {"weight": 0.0}


def test_smoothing_changes_decisions(tmp_path):
    # The policy really runs: with weight 1 it picks other beams than the plain argmax on some decisions.
    doc = _doc()
    doc["policy"]["smoothed-set-b"]["weight"] = 1.0
    scn = write_scenario(tmp_path / "s.toml", doc)
    assert run_cli(["run", scn, "--plugin", str(EXAMPLE), "--out", str(tmp_path / "r"), "--no-figures"])[0] == 0
    rows = (tmp_path / "r" / "steps.csv").read_text().splitlines()[1:]
    beams = {}
    for row in rows:
        drop, dec, _, pol, beam = row.split(",")[:5]
        beams.setdefault(pol, {})[(drop, dec)] = beam
    assert beams["smoothed-set-b"] != beams["best-of-set-b"]


def test_plugin_by_module_name_on_sys_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))
    scn = write_scenario(tmp_path / "s.toml", _doc())
    rc, _, err = run_cli(["run", scn, "--plugin", "my_policy", "--out", str(tmp_path / "r"), "--no-figures",
                          "--policies", "best-of-set-b,smoothed-set-b"])
    assert rc == 0, err
    meta = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert meta["plugins"][0]["module"] == "my_policy"
    _same_as_best_of_set_b(meta["metrics"])


def test_workers_get_the_plugins_of_the_sweeps_policies():
    # A sweep ships to its workers the plugins that provide its policies, not every module loaded in the process
    # (in the full suite a fuzzed `--plugin keras` once reached a separately started worker without keras).
    info = plugins.load_plugin(str(EXAMPLE))
    assert plugins.plugin_specs(["genie", "exhaustive"]) == []
    assert plugins.plugin_specs(["genie", "smoothed-set-b"]) == [info.spec] == plugins.plugin_specs()


def test_loading_twice_is_a_no_op():
    a = plugins.load_plugin(str(EXAMPLE))
    b = plugins.load_plugin(str(EXAMPLE))
    assert a is b and "smoothed-set-b" in POLICIES


# Runs in a Dask worker: a lambda is pickled by value (this test module is not importable there).
_has_example_policy = lambda: (  # noqa: E731
    "smoothed-set-b" in importlib.import_module("beamattn.wireless.policies").POLICIES)


def test_sweep_with_a_plugin_in_process_and_in_dask_workers(tmp_path):
    from distributed import Client, LocalCluster

    from beamattn.wireless.sweep import load_sweep, run_sweep

    write_scenario(tmp_path / "base.toml", _doc())
    (tmp_path / "sw.toml").write_text('[sweep]\nname = "p"\nbase = "base.toml"\nseeds = [0]\n'
                                      'policies = ["best-of-set-b", "smoothed-set-b"]\n'
                                      '[grid]\n"measurement.snr_db" = [5.0, 10.0]\n')
    rc, _, err = run_cli(["sweep", str(tmp_path / "sw.toml"), "--plugin", str(EXAMPLE), "--out", str(tmp_path / "a"),
                          "--no-figures"])
    assert rc == 0, err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert json.loads((tmp_path / "a" / "sweep.json").read_text())["plugins"][0]["policies"] == ["smoothed-set-b"]
    # A Dask worker process (a fresh interpreter) loads the plugin itself before its tasks.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        before = client.run(_has_example_policy)
        res = run_sweep(load_sweep(tmp_path / "sw.toml"), tmp_path / "b", client=client, progress=False,
                        figures=False, plugins=[str(EXAMPLE)])
        after = client.run(_has_example_policy)
    assert list(before.values()) == [False] and list(after.values()) == [True]
    assert res.summary == summary  # the same numbers in this process and in a worker
    assert len(summary["cells"]) == 2
    for cell in summary["cells"]:
        r = cell["results"]
        assert r["smoothed-set-b"]["loss_db"]["mean"] == r["best-of-set-b"]["loss_db"]["mean"]


@pytest.mark.slow  # ~70 s on 2 loaded cores (Sionna's LDPC chain); the run and sweep tests cover the loading
def test_linklevel_with_a_plugin(tmp_path):
    scn = write_scenario(tmp_path / "s.toml", _doc())
    rc, _, err = run_cli(["linklevel", scn, "--plugin", str(EXAMPLE), "--out", str(tmp_path / "l"), "--policies",
                          "best-of-set-b,smoothed-set-b", "--snr-db=0", "--max-blocks", "20", "--target-errors", "5",
                          "--subcarriers", "48"])
    assert rc == 0, err
    res = json.loads((tmp_path / "l" / "bler.json").read_text())
    assert res["plugins"][0]["policies"] == ["smoothed-set-b"]
    # The same beams as best-of-set-b (weight 0): the same effective channels, hence the same block errors.
    assert res["results"]["smoothed-set-b"]["errors"] == res["results"]["best-of-set-b"]["errors"]


def test_train_accepts_plugins_for_the_scenarios_policy_list(tmp_path):
    scn = write_scenario(tmp_path / "s.toml", _doc())
    rc, _, err = run_cli(["train", scn, "--out", str(tmp_path / "t"), "--steps", "1"])
    assert rc == 2 and "unknown policy 'smoothed-set-b'" in error_line(err)
    rc, _, err = run_cli(["train", scn, "--plugin", str(EXAMPLE), "--out", str(tmp_path / "t"), "--steps", "1"])
    assert rc == 0, err


# --------------------------------------------------------------------------- errors


def test_a_name_clash_with_a_built_in_is_refused_by_name(tmp_path):
    bad = tmp_path / "clash.py"
    bad.write_text("from beamattn.wireless.policies import Policy, register\n\n"
                   "@register('fine-one')\nclass A(Policy):\n    pass\n\n"
                   "@register('genie')\nclass B(Policy):\n    pass\n")
    scn = write_scenario(tmp_path / "s.toml", tiny_doc())
    rc, _, err = run_cli(["run", scn, "--plugin", str(bad), "--out", str(tmp_path / "r")])
    line = error_line(err)
    assert rc == 2 and f"plugin {str(bad)!r}" in line
    assert "policy name 'genie' is already registered (by beamattn.wireless.policies.oracles.Genie)" in line
    assert POLICIES["genie"].__module__ == "beamattn.wireless.policies.oracles"
    assert "fine-one" not in POLICIES  # a half-imported plugin leaves nothing behind
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("spec, source, expected", [
    ("boom.py", "raise RuntimeError('no GPU here')\n", "import failed: RuntimeError: no GPU here"),
    ("syntax.py", "def f(:\n", "import failed: SyntaxError"),
    ("fake_missing_module_xyz", None, "import failed: ModuleNotFoundError: No module named 'fake_missing_module_xyz'"),
    ("absent.py", None, "file not found; expected a module name or the path of a .py file"),
    ("json", None, "module 'json' registered no policy; expected a module that registers policies"),
])
def test_a_plugin_that_fails_to_import_is_one_line(tmp_path, spec, source, expected):
    path = tmp_path / spec
    if source is not None:
        path.write_text(source)
    arg = str(path) if spec.endswith(".py") else spec
    scn = write_scenario(tmp_path / "s.toml", tiny_doc())
    for cmd in (["run", scn, "--out", str(tmp_path / "r")], ["linklevel", scn, "--out", str(tmp_path / "l")]):
        rc, _, err = run_cli([*cmd, "--plugin", arg])
        line = error_line(err)
        assert rc == 2 and f"plugin {arg!r}" in line and expected in line, line


# --------------------------------------------------------------------------- entry points


def _fake_entry_points(monkeypatch, tmp_path, source: str):
    (tmp_path / "fake_ep_policies.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint(name="fake", value="fake_ep_policies", group=plugins.ENTRY_POINT_GROUP)
    calls = []

    def entry_points(group=None):
        calls.append(group)
        return [ep] if group == plugins.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", entry_points)
    return calls


EP_SOURCE = ("from beamattn.wireless.policies import register\n"
             "from beamattn.wireless.policies.sweeps import BestOfSetB\n\n"
             "@register('ep-best-of-set-b')\nclass Mine(BestOfSetB):\n    pass\n")


def test_entry_point_policies_are_found_lazily(tmp_path, monkeypatch):
    calls = _fake_entry_points(monkeypatch, tmp_path, EP_SOURCE)
    parse_scenario(tiny_doc())  # built-in policies only: no entry point is loaded
    make_policy("genie")
    assert calls == [] and "fake_ep_policies" not in sys.modules
    doc = tiny_doc(scenario={"drops": 2, "policies": ["best-of-set-b", "ep-best-of-set-b"]})
    parse_scenario(doc)  # an unknown name: the entry points are loaded, once
    assert calls == [plugins.ENTRY_POINT_GROUP] and "ep-best-of-set-b" in POLICIES
    scn = write_scenario(tmp_path / "s.toml", doc)
    rc, _, err = run_cli(["run", scn, "--out", str(tmp_path / "r"), "--no-figures"])
    assert rc == 0, err
    meta = json.loads((tmp_path / "r" / "metrics.json").read_text())
    means = {p: {k: v["mean"] for k, v in meta["metrics"][p].items() if isinstance(v, dict) and "mean" in v}
             for p in ("best-of-set-b", "ep-best-of-set-b")}
    assert means["ep-best-of-set-b"] == means["best-of-set-b"]  # the same class under another name
    (rec,) = meta["plugins"]
    assert rec["source"] == "entry point" and rec["spec"] == "entry-point:fake"
    assert rec["policies"] == ["ep-best-of-set-b"]


def test_a_failing_entry_point_is_one_line_and_only_when_needed(tmp_path, monkeypatch):
    _fake_entry_points(monkeypatch, tmp_path, "raise ImportError('needs package foo')\n")
    scn = write_scenario(tmp_path / "s.toml", tiny_doc(scenario={"drops": 2, "policies": ["genie"]}))
    assert run_cli(["run", scn, "--out", str(tmp_path / "r"), "--no-figures"])[0] == 0  # never loaded
    rc, _, err = run_cli(["run", scn, "--out", str(tmp_path / "r2"), "--policies", "genie,no-such-policy"])
    line = error_line(err)
    assert rc == 2 and "entry point 'fake' (fake_ep_policies)" in line and "ImportError: needs package foo" in line


def test_unknown_policy_without_entry_points_lists_the_known_ones():
    with pytest.raises(ScenarioError, match="unknown policy 'smoothed-set-b'.*expected names from"):
        parse_scenario(_doc())
