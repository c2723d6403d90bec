"""beamattn run / train / channels end to end on a tiny scenario."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from beamattn.cli import main
from beamattn.outdir import MARKER
from beamattn.wireless.runner import run_scenario
from wireless_fixtures import tiny_scenario


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_writes_everything_and_is_reproducible(tmp_path):
    scn = tiny_scenario()
    a = run_scenario(scn, tmp_path / "a", progress=False)
    b = run_scenario(scn, tmp_path / "b", progress=False, figures=False)
    assert a.summary == b.summary  # one seed fixes every number
    meta = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert meta["seed"] == 3 and meta["versions"]["torch"]
    assert set(meta["metrics"]) == set(scn.policies)
    rows = _rows(tmp_path / "a" / "steps.csv")
    d = a.trace["genie"]["snr_db"].__len__()
    assert len(rows) == scn.drops * d * len(scn.policies)
    figs = {p.name for p in (tmp_path / "a" / "figures").iterdir()}
    assert {"snr_cdf.png", "snr_time.png", "beam_pattern.png", "accuracy_overhead.png"} <= figs
    # no staging left (staging folders are hidden siblings of the results folder); only the results marker
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert [p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(".")] == [MARKER]


def test_bounds_hold_on_every_decision(tmp_path):
    scn = tiny_scenario()
    run_scenario(scn, tmp_path, progress=False, figures=False)
    rows = _rows(tmp_path / "steps.csv")
    for r in rows:
        snr, genie, mrt = float(r["snr_db"]), float(r["genie_db"]), float(r["mrt_db"])
        assert snr <= mrt + 1e-3  # nothing beats MRT with perfect CSI
        if r["policy"] not in ("mrt", "uniform", "attention"):
            assert snr <= genie + 1e-3  # no single codebook beam beats the genie beam
    s = {r["policy"] for r in rows}
    assert s == set(scn.policies)
    import math

    for r in rows:  # uniform weights over the 16 beams have entropy ln 16; a single beam has 0
        if r["policy"] == "uniform":
            assert abs(float(r["entropy"]) - math.log(16)) < 1e-3
        if r["policy"] in ("genie", "exhaustive"):
            assert float(r["entropy"]) == 0.0


def test_common_random_numbers_and_chunk_invariance(tmp_path):
    scn = tiny_scenario()
    full = run_scenario(scn, None, progress=False, policies=["exhaustive", "genie", "random"])
    alone = run_scenario(scn, None, progress=False, policies=["exhaustive"])
    # A policy's numbers do not depend on which other policies run.
    assert full.summary["exhaustive"] == alone.summary["exhaustive"]
    # Drop i is the same whatever the number of drops (chunks have their own seeds).
    scn5 = tiny_scenario(scenario={"drops": 5})
    r3 = [r for r in alone.rows]
    r5 = [r for r in run_scenario(scn5, None, progress=False, policies=["exhaustive"]).rows if r[0] < 3]
    assert r3 == r5


def test_failure_leaves_nothing_half_written(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("figure failed")

    import beamattn.wireless.plots as plots

    monkeypatch.setattr(plots, "run_figures", boom)
    with pytest.raises(RuntimeError):
        run_scenario(tiny_scenario(), tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the results folder nor its staging folder


def test_cli_errors_are_one_line(tmp_path, capsys):
    scn_file = tmp_path / "s.toml"
    scn_file.write_text('[scenario]\nname = "s"\n[channel]\nspeed = -1.0\n')
    assert main(["run", str(scn_file), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "'speed'" in err and "-1.0" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_train_then_run_with_checkpoint(tmp_path):
    from beamattn.wireless.train import train_selector

    scn = tiny_scenario()
    res = train_selector(scn, tmp_path / "ckpt", progress=False)
    log = res["log"]
    # Training raises the validation spectral efficiency over the first evaluation.
    assert max(log["valid_se"]) > log["valid_se"][0]
    ckpt = str(tmp_path / "ckpt" / "selector.safetensors")
    out = run_scenario(scn, None, progress=False, policies=["genie", "attention"], checkpoint=ckpt)
    assert out.summary["attention"]["snr_db"]["mean"] <= out.summary["genie"]["snr_db"]["mean"] + 3.0
    # A checkpoint for another Set B is refused.
    other = tiny_scenario(measurement={"set_b": 4})
    with pytest.raises(ValueError, match="set_b"):
        run_scenario(other, None, progress=False, policies=["attention"], checkpoint=ckpt)


def test_channels_export(tmp_path):
    out = tmp_path / "ch.npz"
    assert main(["channels", _write(tmp_path), "--out", str(out), "--drops", "2"]) == 0
    z = np.load(out)
    assert z["h"].shape[0] == 2 and z["h"].dtype == np.complex64
    g = np.abs(np.einsum("btn,mn->btm", z["h"], z["beams"])) ** 2
    np.testing.assert_allclose(z["beam_gains"], g, rtol=1e-4, atol=1e-5)
    assert main(["channels", _write(tmp_path), "--out", str(tmp_path / "x.txt")]) == 2


def _write(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text("""
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
""")
    return str(p)


def test_sionna_cdl_scenario_runs_end_to_end():
    from pathlib import Path

    from beamattn.wireless.scenario import load_scenario

    scn = load_scenario(Path(__file__).parent.parent / "scenarios" / "sionna-cdl-c.toml")
    scn.drops, scn.chunk_drops = 2, 2
    res = run_scenario(scn, None, progress=False, figures=False, policies=["genie", "mrt", "exhaustive"])
    g, m, e = (res.summary[p]["snr_db"]["mean"] for p in ("genie", "mrt", "exhaustive"))
    assert e <= g <= m


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).parent.parent / "scenarios").glob("*.toml")))
def test_every_scenario_runs(name, tmp_path):
    from beamattn.wireless.scenario import load_scenario

    scn = load_scenario(Path(__file__).parent.parent / "scenarios" / f"{name}.toml")
    scn.drops, scn.chunk_drops = 2, 2
    res = run_scenario(scn, tmp_path, progress=False)
    for pol, s in res.summary.items():
        assert s["snr_db"]["mean"] <= res.summary.get("mrt", s)["snr_db"]["mean"] + 1e-6
