"""`beamattn train --model`, `run --policy-checkpoint` and `beamattn compare` from the command line."""

from __future__ import annotations

import json
import re

import pytest

from beamattn.cli import build_parser, main
from beamattn.wireless.learned import LEARNED_MODELS

TINY_TOML = """
[scenario]
name = "tiny"
seed = 3
drops = 4
chunk_drops = 2
policies = ["genie", "exhaustive", "best-of-set-b"]
[channel]
speed_kmh = 30
duration = 0.3
sample_interval = 0.002
[array]
num_cols = 8
[codebook]
oversampling = 2
num_wide = 0
[measurement]
set_b = 4
history = 2
snr_db = 10.0
[selector]
history = 2
d_model = 8
[training]
drops = 8
steps = 30
batch = 64
lr = 0.01
"""


@pytest.fixture
def scn(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_TOML)
    return str(p)


def _err(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_train_help_lists_every_learned_model():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    (model,) = [a for a in train._actions if "--model" in a.option_strings]
    listed = re.findall(r"[a-z0-9-]+", model.help.split("learned baseline:")[1])
    assert sorted(listed) == sorted(LEARNED_MODELS)


def test_train_a_learned_baseline_run_it_and_compare(tmp_path, scn, capsys):
    ckpt_dir = tmp_path / "mlp"
    assert main(["train", scn, "--model", "mlp", "--steps", "20", "--out", str(ckpt_dir)]) == 0
    ckpt = ckpt_dir / "mlp.safetensors"
    assert ckpt.is_file() and not list(tmp_path.glob(".*staging*"))
    log = json.loads((ckpt_dir / "mlp_train_log.json").read_text())
    assert log["checkpoint"] == "mlp.safetensors" and log["steps"] == 20  # what ran, not the staging path
    run = tmp_path / "run"
    assert main(["run", scn, "--policies", "genie,exhaustive,mlp", "--policy-checkpoint", f"mlp={ckpt}",
                 "--out", str(run), "--no-figures"]) == 0
    meta = json.loads((run / "metrics.json").read_text())
    assert meta["policies"] == ["genie", "exhaustive", "mlp"]
    assert "mlp" in meta["metrics"]
    capsys.readouterr()
    cmp_dir = tmp_path / "cmp"
    assert main(["compare", str(run), "--reference", "exhaustive", "--out", str(cmp_dir)]) == 0
    out = capsys.readouterr().out
    assert "| mlp |" in out and "| genie |" in out
    res = json.loads((cmp_dir / "compare.json").read_text())
    genie = res["policies"]["genie"]["diff"]
    expected = meta["metrics"]["genie"]["loss_db"]["mean"] - meta["metrics"]["exhaustive"]["loss_db"]["mean"]
    assert genie["mean"] == pytest.approx(expected, abs=1e-3)  # steps.csv keeps 4 decimals
    assert (cmp_dir / "compare.png").stat().st_size > 5000


@pytest.mark.parametrize("argv, expected", [
    (["train", "{scn}", "--model", "bogus", "--out", "{tmp}/o"], "'--model' = 'bogus'"),
    (["train", "{scn}", "--model", "mlp", "--resume", "--out", "{tmp}/o"], "'--resume'"),
    (["run", "{scn}", "--drops", "100000000", "--out", "{tmp}/o"], "'drops' = 100000000"),
    (["run", "{scn}", "--policy-checkpoint", "nosuch=x.safetensors", "--out", "{tmp}/o"], "unknown policy 'nosuch'"),
    (["run", "{scn}", "--policy-checkpoint", "attention=x.safetensors", "--out", "{tmp}/o"], "--checkpoint"),
    (["compare", "{tmp}", "--reference", "genie"], "has no metrics.json"),
])
def test_bad_learned_and_compare_arguments_are_one_line(tmp_path, scn, capsys, argv, expected):
    argv = [a.format(scn=scn, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    line = _err(capsys)
    assert line.startswith(f"beamattn {argv[0]}: error:") and expected in line, line
    assert not (tmp_path / "o").exists()


def test_policy_checkpoint_needs_name_and_path(scn, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", scn, "--policy-checkpoint", "mlp", "--out", "x"])
    assert e.value.code == 2
    assert "NAME=PATH" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["genie,", "genie,,exhaustive", ",genie"])
def test_a_policy_list_with_an_empty_item_is_refused(scn, capsys, value):
    # Like --snr-db=0,,5: an empty item is a name left out by mistake, not something to drop silently.
    with pytest.raises(SystemExit) as e:
        main(["run", scn, "--policies", value, "--out", "x"])
    assert e.value.code == 2
    assert "without empty items" in capsys.readouterr().err
