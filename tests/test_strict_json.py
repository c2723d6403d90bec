"""Every JSON the package writes is strict JSON (RFC 8259): no bare NaN / Infinity.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which strict parsers (JavaScript,
jq, Go, Rust's serde_json) reject. The real commands are run at a tiny size and every JSON they
write is parsed with a ``parse_constant`` that raises; an undefined value must be ``null``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from beamattn.cli import main
from beamattn.io import write_json_atomic
from beamattn.wireless.policies import POLICIES, Decision, Policy, make_policy
from beamattn.wireless.runner import run_scenario
from wireless_fixtures import tiny_scenario

TINY_TOML = """
[scenario]
name = "tiny"
seed = 3
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
num_wide = 4
[measurement]
set_b = 4
history = 2
with_phase = true
[selector]
history = 2
d_model = 8
neighbours = 2
[training]
drops = 8
steps = 3
batch = 16
"""


def _refuse(constant: str):
    raise ValueError(f"not strict JSON: bare {constant}")


def strict_loads(text: str):
    """``json.loads`` that refuses NaN, Infinity and -Infinity."""
    return json.loads(text, parse_constant=_refuse)


def _check_tree(folder: Path, expected: int) -> list[Path]:
    files = sorted(folder.rglob("*.json"))
    assert len(files) >= expected, files
    for f in files:
        strict_loads(f.read_text())
    return files


@pytest.fixture()
def scenario_file(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


def test_write_json_atomic_refuses_non_finite_values_naming_where(tmp_path):
    with pytest.raises(ValueError, match="NaN"):  # the checker refuses what json.dumps writes by default
        strict_loads(json.dumps({"a": math.nan}))
    with pytest.raises(ValueError) as e:
        write_json_atomic(tmp_path / "x.json", {"metrics": {"mrt": {"snr_db": [1.0, math.nan]}}})
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and "x.json" in msg and "['metrics']['mrt']['snr_db'][1]" in msg, msg
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(ValueError, match=r"\['v'\] = inf"):
        write_json_atomic(tmp_path / "y.json", {"v": np.float64(np.inf)})  # numpy floats too
    write_json_atomic(tmp_path / "z.json", {"undefined": None, "v": 1.5})
    assert strict_loads((tmp_path / "z.json").read_text()) == {"undefined": None, "v": 1.5}


def test_run_train_checkpoint_export_channels_write_strict_json(tmp_path, scenario_file):
    from safetensors import safe_open

    assert main(["run", str(scenario_file), "--out", str(tmp_path / "run"), "--no-figures",
                 "--policies", "genie,mrt,uniform,attention"]) == 0
    rec = strict_loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(rec["metrics"]) == {"genie", "mrt", "uniform", "attention"}

    assert main(["train", str(scenario_file), "--out", str(tmp_path / "train")]) == 0
    _check_tree(tmp_path / "train", 1)
    ckpt = tmp_path / "train" / "selector.safetensors"
    with safe_open(str(ckpt), framework="pt") as f:
        strict_loads(f.metadata()["beamattn_config"])

    assert main(["run", str(scenario_file), "--checkpoint", str(ckpt), "--policies", "attention",
                 "--out", str(tmp_path / "run2"), "--no-figures"]) == 0
    rec = strict_loads((tmp_path / "run2" / "metrics.json").read_text())
    assert rec["policies_config"]["attention"]["checkpoint"] == str(ckpt)

    keras = tmp_path / "keras" / "sel.safetensors"
    assert main(["export", str(ckpt), "--format", "keras", "--scenario", str(scenario_file),
                 "--out", str(keras)]) == 0
    with safe_open(str(keras), framework="np") as f:
        meta = f.metadata()
    strict_loads(meta["selector"])
    strict_loads(meta["set_b"])

    npz = tmp_path / "ch.npz"
    assert main(["channels", str(scenario_file), "--out", str(npz), "--drops", "2"]) == 0
    strict_loads(str(np.load(npz)["meta"]))


def test_a_scenario_with_an_infinite_k_factor_is_recorded_as_strict_json(tmp_path):
    """k_factor_db = inf (LoS only) is a valid channel setting; the old metrics.json held a bare Infinity."""
    scn = tiny_scenario()
    scn.channel = dataclasses.replace(scn.channel, k_factor_db=math.inf)
    run_scenario(scn, tmp_path / "out", policies=["genie"], progress=False, figures=False)
    rec = strict_loads((tmp_path / "out" / "metrics.json").read_text())
    assert rec["scenario"]["channel"]["k_factor_db"] == "inf"


class _NaN(Policy):
    """A custom policy whose beams are NaN (the old task files and metrics held bare NaN)."""

    def decide(self, ep):
        g = make_policy("genie").decide(ep)
        return Decision(beams=torch.full_like(g.beams, complex(math.nan, 0.0)), index=g.index,
                        measured=g.measured)


def test_sweep_writes_strict_json_and_never_a_nan_result(tmp_path, scenario_file, monkeypatch, capsys):
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'[sweep]\nname = "s"\nbase = "{scenario_file.name}"\nseeds = [0]\n'
                     'policies = ["genie", "uniform"]\n[grid]\n"channel.speed_kmh" = [30]\n')
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "sw"), "--no-figures"]) == 0
    files = _check_tree(tmp_path / "sw", 3)  # sweep.json, summary.json, one task
    assert {f.name for f in files} >= {"sweep.json", "summary.json"}
    # A policy that returns NaN beams: refused with one line, and no task result is written.
    monkeypatch.setitem(POLICIES, "nan-policy", _NaN)
    sweep.write_text(sweep.read_text().replace('"uniform"', '"nan-policy"'))
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "sw2"), "--no-figures"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "policy 'nan-policy'" in err[-1] and "'beams'" in err[-1], err
    _check_tree(tmp_path / "sw2", 0)
    assert not list((tmp_path / "sw2").rglob("tasks/*.json"))


@pytest.mark.slow
def test_linklevel_demo_and_an_experiment_write_strict_json(tmp_path, scenario_file, monkeypatch, capsys):
    pytest.importorskip("sionna")
    assert main(["linklevel", str(scenario_file), "--policies", "genie,mrt", "--snr-db", "0,10",
                 "--max-blocks", "20", "--out", str(tmp_path / "ll")]) == 0
    rec = strict_loads((tmp_path / "ll" / "bler.json").read_text())
    assert set(rec["results"]) == {"genie", "mrt"}
    assert main(["demo", "--trials", "5", "--out", str(tmp_path / "demo")]) == 0
    _check_tree(tmp_path / "demo", 1)
    assert main(["experiment", "permutation-equivariance", "--small", "--out", str(tmp_path / "exp")]) == 0
    _check_tree(tmp_path / "exp", 1)
    # The link level checks what a policy returns too: NaN beams are refused, no bler.json is written.
    monkeypatch.setitem(POLICIES, "nan-policy", _NaN)
    capsys.readouterr()
    assert main(["linklevel", str(scenario_file), "--policies", "genie,nan-policy", "--snr-db", "0",
                 "--max-blocks", "20", "--out", str(tmp_path / "ll2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "policy 'nan-policy'" in err[-1], err
    assert not (tmp_path / "ll2" / "bler.json").exists()


def test_a_checkpoint_with_a_non_finite_metadata_value_is_refused(tmp_path):
    from beamattn.wireless.checkpoint import CheckpointError, save_selector
    from beamattn.wireless.selector import AttentionSelector, SelectorConfig

    beams = torch.eye(4, dtype=torch.complex64)
    sel = AttentionSelector(SelectorConfig(history=1, d_model=2, neighbours=1), beams, torch.ones(4, dtype=torch.bool))
    with pytest.raises(CheckpointError, match=r"\['valid'\]\['se'\] = nan is not finite"):
        save_selector(sel, tmp_path / "c.safetensors", extra={"valid": {"se": math.nan}})
    assert not (tmp_path / "c.safetensors").exists()
