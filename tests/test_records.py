"""What ``metrics.json`` / ``bler.json`` record is what ran.

A checkpoint's selector config (normalizer, cophase, d_model, history, ...) replaces the scenario's
``[selector]`` values: the records must name the effective config and the checkpoint's SHA-256, a
field the scenario file set that the checkpoint contradicts is refused (one line per field), and the
evaluation-only ``mode`` / ``topk`` apply with a note naming them. A policy listed twice is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch

from beamattn.cli import main
from beamattn.wireless.checkpoint import save_selector
from beamattn.wireless.runner import episodes, make_codebooks, make_policies, run_scenario
from beamattn.wireless.selector import AttentionSelector, SelectorConfig
from wireless_fixtures import tiny_scenario

# The tiny scenario's [selector] table sets history, d_model and neighbours; normalizer is left at its
# default ("sparsemax").
TINY_SELECTOR = {"history": 2, "d_model": 8, "neighbours": 2}


def _checkpoint(path, scn, **fields):
    """A learned (untrained, seeded) selector for ``scn``'s codebook and Set B, saved at ``path``."""
    _, ep, _ = next(episodes(scn, scn.seed, 1))
    measured = torch.zeros(ep.num_beams, dtype=torch.bool)
    measured[ep.set_b] = True
    torch.manual_seed(0)
    cfg = SelectorConfig(**{**TINY_SELECTOR, "learned": True, **fields})
    return save_selector(AttentionSelector(cfg, make_codebooks(scn)[0].beams, measured), path)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_softmax_checkpoint_is_recorded_as_softmax(tmp_path):
    """The issue's mislabel: a scenario without 'normalizer' (default sparsemax) run with a softmax
    checkpoint recorded sparsemax. The record now holds what ran, and the checkpoint's hash."""
    scn = tiny_scenario()
    assert scn.selector.normalizer == "sparsemax" and "normalizer" not in scn.selector_explicit
    ckpt = _checkpoint(tmp_path / "soft.safetensors", scn, normalizer="softmax", cophase=True)
    run_scenario(scn, tmp_path / "out", policies=["genie", "attention"], checkpoint=str(ckpt), progress=False,
                 figures=False)
    rec = json.loads((tmp_path / "out" / "metrics.json").read_text())["policies_config"]["attention"]
    assert rec["normalizer"] == "softmax" and rec["cophase"] is True and rec["learned"] is True
    assert rec["checkpoint"] == str(ckpt) and rec["checkpoint_sha256"] == _sha(ckpt)
    # The record equals the config of the selector that decided.
    pols = make_policies(scn, ["attention"], str(ckpt))
    _, ep, _ = next(episodes(scn, scn.seed, 1))
    ran = pols["attention"].build(ep).config.to_dict()
    assert {k: v for k, v in rec.items() if not k.startswith("checkpoint")} == ran


def test_softmax_vs_sparsemax_runs_are_told_apart(tmp_path):
    """Two checkpoints, two normalizers, one scenario: the two records differ where the runs differ."""
    scn = tiny_scenario()
    recs = {}
    for norm in ("softmax", "sparsemax"):
        ckpt = _checkpoint(tmp_path / f"{norm}.safetensors", scn, normalizer=norm)
        res = run_scenario(scn, None, policies=["attention"], checkpoint=str(ckpt), progress=False)
        recs[norm] = res.policies_config["attention"]
    assert recs["softmax"]["normalizer"] == "softmax" and recs["sparsemax"]["normalizer"] == "sparsemax"
    assert recs["softmax"]["checkpoint_sha256"] != recs["sparsemax"]["checkpoint_sha256"]


def test_linklevel_records_the_effective_config(tmp_path):
    pytest.importorskip("sionna")
    from beamattn.linklevel.run import run_linklevel

    scn = tiny_scenario()
    ckpt = _checkpoint(tmp_path / "soft.safetensors", scn, normalizer="softmax")
    out = run_linklevel(scn, tmp_path / "ll", policies=["attention"], snr_db_list=[10.0], checkpoint=str(ckpt),
                        max_blocks=1, target_block_errors=1, batch=1, correlation_slots=1, progress=False,
                        figures=False)
    rec = json.loads((tmp_path / "ll" / "bler.json").read_text())["policies_config"]["attention"]
    assert rec == out["policies_config"]["attention"]
    assert rec["normalizer"] == "softmax" and rec["checkpoint_sha256"] == _sha(ckpt)


def test_explicit_fields_that_contradict_the_checkpoint_are_refused_one_line_each(tmp_path):
    scn = tiny_scenario(selector={"normalizer": "sparsemax", "cophase": False})
    ckpt = _checkpoint(tmp_path / "c.safetensors", scn, normalizer="softmax", cophase=True, d_model=4)
    with pytest.raises(ValueError) as e:
        run_scenario(scn, None, policies=["attention"], checkpoint=str(ckpt), progress=False)
    lines = str(e.value).splitlines()
    assert len(lines) == 3, lines  # cophase, d_model, normalizer: every field the file set and contradicts
    for line, (key, mine, theirs) in zip(lines, [("cophase", "False", "True"), ("d_model", "8", "4"),
                                                 ("normalizer", "'sparsemax'", "'softmax'")]):
        assert f"'{key}' = {mine} in the scenario" in line and f"{key} = {theirs}" in line, line
        assert str(ckpt) in line
    # neighbours = 2 is set by the file too, and agrees: not reported.
    assert "neighbours" not in str(e.value)


def test_the_cli_prints_the_conflicts_and_exits_2(tmp_path, capsys):
    scn_file = tmp_path / "s.toml"
    scn_file.write_text('[scenario]\nname = "s"\ndrops = 2\nchunk_drops = 2\n'
                        '[channel]\nspeed_kmh = 30\nduration = 0.2\nsample_interval = 0.002\n'
                        '[array]\nnum_cols = 8\n[codebook]\noversampling = 2\n'
                        '[measurement]\nset_b = 4\nhistory = 2\n'
                        '[selector]\nhistory = 2\nd_model = 8\nneighbours = 2\nnormalizer = "softmax"\n')
    from beamattn.wireless.scenario import load_scenario

    ckpt = _checkpoint(tmp_path / "c.safetensors", load_scenario(scn_file), normalizer="sparsemax")
    assert main(["run", str(scn_file), "--checkpoint", str(ckpt), "--policies", "attention",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "'normalizer' = 'softmax' in the scenario" in err and "'sparsemax'" in err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_evaluation_only_fields_apply_with_a_note(tmp_path, capsys):
    scn = tiny_scenario(selector={"mode": "hard"})
    ckpt = _checkpoint(tmp_path / "c.safetensors", scn, mode="soft")
    res = run_scenario(scn, None, policies=["attention"], checkpoint=str(ckpt), progress=False)
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note: checkpoint")]
    assert len(notes) == 1 and "'mode' = 'hard'" in notes[0] and "'soft'" in notes[0], notes
    assert res.policies_config["attention"]["mode"] == "hard"
    # hard mode transmits codebook beams: every decision is one beam
    assert res.summary["attention"]["active"]["mean"] >= 1.0


def test_a_checkpoint_needing_more_history_than_measured_is_refused_before_computing(tmp_path):
    # A scenario that leaves [selector] history to the checkpoint (its file did not set it) ...
    scn = dataclasses.replace(tiny_scenario(), selector_explicit=("d_model", "neighbours"))
    ckpt = _checkpoint(tmp_path / "c.safetensors", scn, history=3)  # ... but measures 2 reports only
    with pytest.raises(ValueError, match=r"selector history = 3, but measurement 'history' = 2"):
        make_policies(scn, ["attention"], str(ckpt))


def test_untrained_attention_records_its_config():
    scn = tiny_scenario()
    res = run_scenario(scn, None, policies=["attention"], progress=False)
    rec = res.policies_config["attention"]
    assert rec["learned"] is False and rec["checkpoint"] is None and rec["checkpoint_sha256"] is None
    assert rec["history"] == 2


# --------------------------------------------------------------------------- a policy listed twice


def test_duplicate_policy_names_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"policies: 'genie' is listed twice"):
        run_scenario(tiny_scenario(), None, policies=["genie", "mrt", "genie"], progress=False)
    scn = tiny_scenario(scenario={"policies": ["genie", "random", "random"]})
    with pytest.raises(ValueError, match=r"'random' is listed twice"):
        run_scenario(scn, None, progress=False)
    scn_file = tmp_path / "s.toml"
    scn_file.write_text('[scenario]\nname = "s"\ndrops = 2\nchunk_drops = 2\n[channel]\nduration = 0.2\n'
                        '[measurement]\nhistory = 2\n[selector]\nhistory = 2\n')
    assert main(["run", str(scn_file), "--policies", "genie,genie", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'genie' is listed twice" in err[0], err


def test_a_checkpoint_for_another_grid_is_refused_before_computing(tmp_path):
    """The 1-D checkpoint of a ULA codebook of the same size is refused for a UPA scenario when the policy
    is made, not after the first chunk of channels."""
    upa = tiny_scenario(array={"num_rows": 2, "num_cols": 4}, codebook={"num_wide": 0})  # a [4, 8] grid of 32 beams
    assert upa.selector.grid == (4, 8)
    _, ep, _ = next(episodes(upa, upa.seed, 1))
    measured = torch.zeros(ep.num_beams, dtype=torch.bool)
    measured[ep.set_b] = True
    sel = AttentionSelector(SelectorConfig(**TINY_SELECTOR, learned=True), make_codebooks(upa)[0].beams, measured)
    ckpt = save_selector(sel, tmp_path / "flat.safetensors")  # grid None: 1-D keys
    with pytest.raises(ValueError, match=r"grid = none \(1-D keys\), but this scenario has grid = \[4, 8\]"):
        make_policies(upa, ["attention"], str(ckpt))
