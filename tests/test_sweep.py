"""``beamattn sweep``: determinism on 1 vs N Dask workers, resume after interruption, a killed worker,
corrupt result files, and one-line errors for malformed sweep files."""

import json
import os
import shutil
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beamattn.cli import main
from beamattn.wireless import sweep as sw
from beamattn.wireless.sweep import SweepError, SweepInterrupted, load_sweep, parse_sweep, read_task_result, run_sweep
from wireless_fixtures import TINY_DOC

BASE_TOML = """
[scenario]
name = "tiny-sweep"
seed = 0
drops = 2
chunk_drops = 2
snr_db = 0.0
outage_db = 0.0

[channel]
backend = "geometric"
speed_kmh = 60
duration = 0.2
sample_interval = 0.002
min_distance = 15.0
max_distance = 40.0
num_clusters = 3
rays_per_cluster = 2

[array]
num_rows = 1
num_cols = 8

[codebook]
oversampling = 2
num_wide = 4

[measurement]
period = 0.02
delay = 0.004
snr_db = 10.0
samples = 2
set_b = 8
history = 2
with_phase = true

[selector]
history = 2
d_model = 8
neighbours = 2

[policy.stale]
every = 3
"""

SWEEP_TOML = """
[sweep]
name = "tiny"
base = "base.toml"
seeds = [0, 1]
policies = ["genie", "exhaustive", "best-of-set-b", "stale", "attention-untrained"]

[grid]
"channel.speed_kmh" = [30, 120]
"measurement.snr_db" = [0.0, 10.0]

[override]
"scenario.drops" = 2
"""

NUM_TASKS = 8  # 2 x 2 cells x 2 seeds


def _write_sweep(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.toml").write_text(BASE_TOML)
    (folder / "sweep.toml").write_text(SWEEP_TOML)
    return folder / "sweep.toml"


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    return _write_sweep(tmp_path_factory.mktemp("sweepdef"))


@pytest.fixture(scope="module")
def reference(sweep_file, tmp_path_factory):
    """An uninterrupted in-process run (1 worker)."""
    out = tmp_path_factory.mktemp("ref") / "out"
    res = run_sweep(load_sweep(sweep_file), out, progress=False, figures=True)
    assert len(res.ran) == NUM_TASKS and res.summary["complete"]
    return out, res


def _task_numbers(out):
    recs = {}
    for p in sorted((out / "tasks").glob("*.json")):
        rec, why = read_task_result(p, p.stem)
        assert rec is not None, (p, why)
        recs[p.stem] = rec["results"]
    return recs


def _cells(out):
    return json.loads((out / "summary.json").read_text())["cells"]


def test_reference_outputs(reference):
    out, res = reference
    assert len(_task_numbers(out)) == NUM_TASKS
    for m in sw.FIGURE_METRICS:
        assert (out / "figures" / f"{m}.png").stat().st_size > 1000
    cell = _cells(out)[0]
    k = cell["results"]["exhaustive"]["snr_db"]
    assert len(k["per_seed"]) == 2 and k["ci95"][0] <= k["mean"] <= k["ci95"][1]
    assert "| channel.speed_kmh | measurement.snr_db | policy |" in res.table
    # genie has no loss in every cell
    assert all(abs(c["results"]["genie"]["loss_db"]["mean"]) < 1e-4 for c in _cells(out))


def test_existing_results_are_refused_without_resume(sweep_file, reference, tmp_path, capsys):
    out, _ = reference
    with pytest.raises(SweepError, match="--resume"):
        run_sweep(load_sweep(sweep_file), out, progress=False, figures=False)
    # the CLI: one line, exit code 2
    assert main(["sweep", str(sweep_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--resume" in err


def test_one_vs_two_dask_workers_identical(sweep_file, reference, tmp_path):
    from distributed import Client, LocalCluster

    out, _ = reference
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        res = run_sweep(load_sweep(sweep_file), tmp_path / "dask", client=client, progress=False, figures=False)
        used = {ws for ws in client.run(os.getpid).values()}
    assert len(used) == 2 and os.getpid() not in used
    assert len(res.ran) == NUM_TASKS
    assert _task_numbers(tmp_path / "dask") == _task_numbers(out)  # bit for bit (floats through JSON)
    assert _cells(tmp_path / "dask") == _cells(out)


def test_resume_after_driver_interruption(sweep_file, reference, tmp_path):
    out_ref, _ = reference
    out = tmp_path / "out"
    sweep = load_sweep(sweep_file)
    with pytest.raises(SweepInterrupted):
        run_sweep(sweep, out, progress=False, figures=False, stop_after=3)
    files = sorted((out / "tasks").glob("*.json"))
    assert len(files) == 3
    assert all(read_task_result(p, p.stem)[0] is not None for p in files)
    assert not list((out / "tasks").glob(".*.tmp"))  # no half-written files
    calls = []

    def counting(*args):
        calls.append(args[1])
        return sw.run_task(*args)

    res = run_sweep(sweep, out, resume=True, progress=False, figures=False, task_fn=counting)
    assert len(calls) == NUM_TASKS - 3 and len(res.ran) == NUM_TASKS - 3 and len(res.skipped) == 3
    assert _cells(out) == _cells(out_ref)
    assert _task_numbers(out) == _task_numbers(out_ref)


def _slow_task(*args):
    time.sleep(0.4)
    return sw.run_task(*args)


def test_killed_worker_then_resume(sweep_file, reference, tmp_path):
    import cloudpickle
    from distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    out_ref, _ = reference
    out = tmp_path / "out"
    sweep = load_sweep(sweep_file)
    killed = []

    def kill_one(client, n_done):
        if n_done == 1 and not killed:
            victim = sorted(client.scheduler_info()["workers"])[0]
            killed.append(victim)
            try:
                client.run(os._exit, 1, workers=[victim], wait=False)
            except Exception:  # noqa: BLE001 - the worker dies while answering
                pass

    # a worker process dies after the first result, then the driver is interrupted after 4 results
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        with pytest.raises(SweepInterrupted):
            run_sweep(sweep, out, client=client, progress=False, figures=False, task_fn=_slow_task,
                      on_result=kill_one, stop_after=4)
    assert killed
    files = sorted((out / "tasks").glob("*.json"))
    assert len(files) == 4 and all(read_task_result(p, p.stem)[0] is not None for p in files)
    res = run_sweep(sweep, out, resume=True, progress=False, figures=False)
    assert len(res.ran) == NUM_TASKS - 4 and len(res.skipped) == 4
    assert _task_numbers(out) == _task_numbers(out_ref)
    assert _cells(out) == _cells(out_ref)


def test_corrupt_results_are_detected_and_redone(sweep_file, reference, tmp_path, capsys):
    out_ref, _ = reference
    out = tmp_path / "out"
    shutil.copytree(out_ref / "tasks", out / "tasks")
    files = sorted((out / "tasks").glob("*.json"))
    # 1. truncated
    text = files[0].read_text()
    files[0].write_text(text[: len(text) // 2])
    # 2. one byte changed, still valid JSON: a digit of a KPI value
    text = files[1].read_text()
    i = text.index('"results"')
    j = next(k for k in range(i, len(text)) if text[k].isdigit() and text[k] != "9")
    files[1].write_text(text[:j] + str(int(text[j]) + 1) + text[j + 1:])
    assert json.loads(files[1].read_text())
    # 3. garbage; 4. valid JSON without the checksum
    files[2].write_text("{not json")
    rec = json.loads(files[3].read_text())
    del rec["sha256"]
    files[3].write_text(json.dumps(rec))
    for p in files[:4]:
        assert read_task_result(p, p.stem)[0] is None
    with pytest.warns(UserWarning, match="unusable"):
        res = run_sweep(load_sweep(sweep_file), out, resume=True, progress=False, figures=False)
    assert sorted(res.redone) == sorted(p.stem for p in files[:4])
    assert len(res.ran) == 4 and len(res.skipped) == NUM_TASKS - 4
    assert _task_numbers(out) == _task_numbers(out_ref)
    assert _cells(out) == _cells(out_ref)


def test_cli_sweep_resume(sweep_file, reference, tmp_path, capsys):
    out_ref, _ = reference
    out = tmp_path / "cli"
    shutil.copytree(out_ref / "tasks", out / "tasks")
    assert main(["sweep", str(sweep_file), "--out", str(out), "--resume", "--no-figures"]) == 0
    assert "reused 8" in capsys.readouterr().out
    assert _cells(out) == _cells(out_ref)


def test_shipped_sweep_file_parses():
    s = load_sweep("scenarios/sweeps/vehicular-speed.toml")
    assert len(s.tasks()) == 6 and s.grid == {"channel.speed_kmh": [30, 60, 120]}


# --------------------------------------------------------------------------- malformed sweep files

BASE_DOC = TINY_DOC  # parse_sweep deep-copies it
GOOD = {"sweep": {"name": "s", "base": "base.toml", "seeds": [0, 1], "policies": ["genie", "stale"]},
        "grid": {"channel.speed_kmh": [30, 60]}, "override": {"scenario.drops": 2}}
FIELDS = [("sweep", "name"), ("sweep", "seeds"), ("sweep", "policies"), ("sweep", "base"), ("sweep", "sedes"),
          ("grid", "channel.speed_kmh"), ("grid", "measurement.snr_db"), ("grid", "channel.sped"),
          ("grid", "array.num_cols"), ("grid", "nodot"), ("grid", "scenario.seed"), ("grid", "codebook.oversampling"),
          ("override", "scenario.drops"), ("override", "channel.duration"), ("override", "channel.speed_kmh"),
          ("override", "selector.mode"), ("override", "bogus.field"), ("override", "channel.backend.x"),
          ("top", "extra")]
SCALARS = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=6))
VALUES = st.one_of(st.none(), SCALARS, st.lists(SCALARS, max_size=3),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def test_good_sweep_parses():
    s = parse_sweep(GOOD, "sweep.toml", base_data=BASE_DOC)
    assert len(s.cells) == 2 and len(s.tasks()) == 4


@pytest.mark.parametrize("change, needle", [
    (("sweep", "seeds", [0, 0]), "'seeds'"),
    (("sweep", "policies", ["genie", "oracle"]), "'oracle'"),
    (("grid", "channel.sped", [1, 2]), "'sped'"),
    (("grid", "channel.speed_kmh", [30, -5]), "speed_kmh=-5"),
    (("override", "scenario.drops", 0), "'drops'"),
])
def test_errors_name_the_field(change, needle):
    data = {k: dict(v) for k, v in GOOD.items()}
    table, key, value = change
    data[table][key] = value
    with pytest.raises(SweepError) as e:
        parse_sweep(data, "sweep.toml", base_data=BASE_DOC)
    assert needle in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith("sweep.toml: ")


def test_missing_base_file(tmp_path):
    (tmp_path / "s.toml").write_text('[sweep]\nname = "x"\nbase = "nope.toml"\npolicies = ["genie"]\n'
                                     '[grid]\n"channel.speed_kmh" = [1]\n')
    with pytest.raises(SweepError, match="'base' = 'nope.toml'"):
        load_sweep(tmp_path / "s.toml")
    (tmp_path / "bad.toml").write_text("[sweep\nname=")
    with pytest.raises(SweepError, match="not valid TOML"):
        load_sweep(tmp_path / "bad.toml")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), min_size=1, max_size=3))
def test_malformed_sweeps_give_one_clear_error(changes):
    data = {k: dict(v) for k, v in GOOD.items()}
    for (table, key), value in changes:
        if value is None:
            data.get(table, {}).pop(key, None)  # a missing field
            continue
        data.setdefault(table, {})[key] = value
    try:
        s = parse_sweep(data, "sweep.toml", base_data=BASE_DOC)
    except SweepError as e:
        msg = str(e)
        assert msg.startswith("sweep.toml: ") and "\n" not in msg
        return
    assert s.cells and s.seeds and s.policies
    assert len(s.tasks()) == len({t[0] for t in s.tasks()})  # task ids are distinct
