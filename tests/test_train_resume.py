"""``beamattn train --resume``: an interrupted training continues to the same checkpoint, bit for bit."""

import json

import pytest

from beamattn.cli import main
from beamattn.wireless.scenario import load_scenario
from beamattn.wireless.train import progress_dir, train_selector

# A scenario like wireless_fixtures.tiny_scenario, smaller still, as a file (for the CLI).
TOML = """
[scenario]
name = "tiny"
seed = 3
drops = 3
chunk_drops = 2
snr_db = 0.0
outage_db = 0.0
[channel]
backend = "geometric"
speed_kmh = 60
duration = 0.16
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
[training]
drops = 4
steps = 30
batch = 32
lr = 0.01
"""
STOP_AT = 17  # interrupted here; progress was last saved at step 15 (save_every=5)


class Stop(Exception):
    pass


def _stop_at(k):
    def hook(step):
        if step == k:
            raise Stop(f"interrupted at step {step}")

    return hook


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    scn_file = root / "tiny.toml"
    scn_file.write_text(TOML)
    ref = train_selector(load_scenario(scn_file), root / "ref", progress=False, save_every=5)
    return root, scn_file, ref


def _interrupt(scn_file, out):
    with pytest.raises(Stop):
        train_selector(load_scenario(scn_file), out, progress=False, save_every=5, on_step=_stop_at(STOP_AT))
    assert not out.exists()  # nothing half-made in the results folder
    prog = progress_dir(out)
    assert sorted(p.name for p in prog.iterdir()) == ["progress.json", "state-15.safetensors"]  # no pickle
    rec = json.loads((prog / "progress.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert rec["step"] == 15
    return prog


def test_resume_gives_the_same_checkpoint_bit_for_bit(files, capsys):
    root, scn_file, ref = files
    out = root / "resumed"
    prog = _interrupt(scn_file, out)
    # The CLI: without --resume the progress is not silently thrown away.
    assert main(["train", str(scn_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err and "beamattn train: error:" in err
    assert main(["train", str(scn_file), "--out", str(out), "--resume"]) == 0
    assert "resuming at step 16 of 30" in capsys.readouterr().err
    assert (out / "selector.safetensors").read_bytes() == (root / "ref" / "selector.safetensors").read_bytes()
    log = json.loads((out / "train_log.json").read_text())
    assert log["log"] == ref["log"] and log["valid_best"] == ref["valid_best"]
    assert log["resumed_at_step"] == 16
    assert not prog.exists()  # done: the progress is removed


@pytest.mark.slow
def test_resume_twice_and_force_restart(files):
    root, scn_file, ref = files
    out = root / "twice"
    _interrupt(scn_file, out)
    # interrupted again after resuming: progress moves on, and the end is still the same
    with pytest.raises(Stop):
        train_selector(load_scenario(scn_file), out, progress=False, save_every=5, resume=True, on_step=_stop_at(27))
    assert json.loads((progress_dir(out) / "progress.json").read_text())["step"] == 25
    res = train_selector(load_scenario(scn_file), out, progress=False, save_every=5, resume=True)
    assert res["log"] == ref["log"]
    assert (out / "selector.safetensors").read_bytes() == (root / "ref" / "selector.safetensors").read_bytes()
    # --force without --resume discards progress and starts again (same numbers too)
    out2 = root / "forced"
    _interrupt(scn_file, out2)
    res = train_selector(load_scenario(scn_file), out2, progress=False, force=True)
    assert res["resumed_at_step"] is None and res["log"] == ref["log"]


def test_progress_of_another_training_or_corrupt_is_refused(files):
    root, scn_file, _ = files
    out = root / "other"
    prog = _interrupt(scn_file, out)
    with pytest.raises(ValueError, match="another training .*seed differs"):
        train_selector(load_scenario(scn_file), out, progress=False, resume=True, seed=9)
    with pytest.raises(ValueError, match="steps differs"):
        train_selector(load_scenario(scn_file), out, progress=False, resume=True, steps=31)
    state = prog / "state-15.safetensors"
    data = bytearray(state.read_bytes())
    data[-1] ^= 1
    state.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        train_selector(load_scenario(scn_file), out, progress=False, resume=True)
    assert not out.exists()


@pytest.mark.slow
def test_resume_of_the_contextual_selector_gives_the_same_checkpoint_bit_for_bit(tmp_path):
    # The transformer architecture (self-attention blocks, contextual query, phase predictor): its optimiser
    # state and weights resume like the conv selector's.
    scn_file = tmp_path / "ctx.toml"
    scn_file.write_text(TOML.replace("[selector]\n", '[selector]\narch = "transformer"\nheads = 2\nquery = "context"\n'
                                                      "cophase = true\nphase_predict = true\n")
                        .replace("steps = 30", "steps = 20"))
    ref = train_selector(load_scenario(scn_file), tmp_path / "ref", progress=False, save_every=5)
    assert ref["selector"]["arch"] == "transformer"
    out = tmp_path / "resumed"
    with pytest.raises(Stop):
        train_selector(load_scenario(scn_file), out, progress=False, save_every=5, on_step=_stop_at(12))
    res = train_selector(load_scenario(scn_file), out, progress=False, save_every=5, resume=True)
    assert res["resumed_at_step"] == 11 and res["log"] == ref["log"]
    assert (out / "selector.safetensors").read_bytes() == (tmp_path / "ref" / "selector.safetensors").read_bytes()
