"""Tests of the learned baselines (beamattn.wireless.learned, policies/learned.py).

Properties (issue 11 items 4 and 7): each baseline reads only Set B (its claimed overhead), beats a
random beam after a short training, has a parameter count matched to the selector's (within 10%,
closed form checked against PyTorch's count), round-trips through its checkpoint bit for bit, and
refuses foreign or corrupt checkpoints by name; the score classifier IS the selector's score network
(its logits are the scores beamattn.core.attend normalises, and the selector in "hard" mode built
from its weights picks the same beam).
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from pathlib import Path

import pytest
import torch

from beamattn.core import attend
from beamattn.wireless.arrays import ULA
from beamattn.wireless.checkpoint import CheckpointError, save_selector
from beamattn.wireless.codebooks import dft_codebook
from beamattn.wireless.learned.checkpoint import load_learned, read_learned_config, save_learned
from beamattn.wireless.learned.models import (LARGE_FACTOR, LEARNED_MODELS, MODEL_SPECS, LearnedConfig,
                                              ScoreClassifier, build_model, count_parameters, parameter_count)
from beamattn.wireless.learned.train import model_config, selector_parameters, soft_labels, train_learned_models
from beamattn.wireless.policies import POLICIES, make_policy
from beamattn.wireless.runner import episodes, make_codebooks, run_scenario
from beamattn.wireless.scenario import load_scenario
from beamattn.wireless.selector import AttentionSelector, SelectorConfig

from wireless_fixtures import tiny_scenario

ROOT = Path(__file__).resolve().parent.parent
N = 8
BEAMS = dft_codebook(ULA(N), 2).beams  # [16, 8] complex64
M = BEAMS.shape[0]
SET_B = torch.zeros(M, dtype=torch.bool)
SET_B[::2] = True
SEL_CFG = SelectorConfig(history=3, d_model=8, neighbours=2)


@pytest.fixture(autouse=True)
def _one_thread():
    # Small models on a shared CPU: one thread is many times faster than two competing ones.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _config(arch: str, kind: str | None = None, hidden: int = 8, loss: str = "soft") -> LearnedConfig:
    kind = kind or {"mlp": "mlp", "lstm": "lstm", "score": "score-classifier"}[arch]
    return LearnedConfig(kind=kind, arch=arch, hidden=hidden, history=3, loss=loss,
                         selector=SEL_CFG.to_dict() if arch == "score" else None)


def _model(arch: str, seed: int = 0, measured: torch.Tensor = SET_B, **kw):
    torch.manual_seed(seed)
    model = build_model(_config(arch, **kw), BEAMS, measured)
    with torch.no_grad():  # weights unlike a fresh initialisation, so a silent re-init would be caught
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def _reports(seed: int, shape=(4, 5)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.round(torch.randn(*shape, 3, M, generator=g) * 6 - 3)  # [..., L, M] dB, 1 dB steps


ARCHS = ("mlp", "lstm", "score")


# --------------------------------------------------------------------------- registry and sizes


def test_every_model_is_one_registered_policy_that_needs_a_checkpoint():
    for name in LEARNED_MODELS:
        assert name in POLICIES and POLICIES[name].name == name
        with pytest.raises(ValueError, match=f"policy '{name}': argument 'checkpoint' is required"):
            make_policy(name)
    assert len({POLICIES[n] for n in LEARNED_MODELS}) == len(LEARNED_MODELS)  # one class each


@pytest.mark.parametrize("scenario", ["vehicular-60.toml", "vehicular-60-upa.toml"])
def test_parameter_counts_closed_form_and_matched_to_the_selector(scenario):
    from beamattn.wireless.selector import conv_config

    scn = load_scenario(ROOT / "scenarios" / scenario)
    narrow, _ = make_codebooks(scn)
    _, ep, _ = next(episodes(scn, 0, 1))
    measured = torch.zeros(narrow.num_beams, dtype=torch.bool)
    measured[ep.set_b] = True
    # The conv score network: also under a contextual (transformer) scenario selector, the learned baselines are
    # matched to it (beamattn.wireless.selector.conv_config).
    sel = AttentionSelector(dataclasses.replace(conv_config(scn.selector), learned=True), narrow.beams, measured)
    target = count_parameters(sel)
    assert selector_parameters(scn) == target
    for name in LEARNED_MODELS:
        cfg = model_config(scn, name)
        model = build_model(cfg, narrow.beams, measured)
        n = count_parameters(model)
        assert n == parameter_count(cfg.arch, cfg.hidden, cfg.history, int(measured.sum()), narrow.num_beams,
                                    scn.selector, csi=cfg.csi)
        assert cfg.csi == scn.selector.csi_keys  # every model reads what the selector's keys read
        want = target * (1 if MODEL_SPECS[name].size == "matched" else LARGE_FACTOR)
        assert abs(n - want) <= 0.1 * want, (name, n, want)
        assert cfg.history == scn.selector.history  # the selector's report history
    assert count_parameters(build_model(model_config(scn, "score-classifier"), narrow.beams, measured)) == target


# --------------------------------------------------------------------------- the score classifier


def test_score_classifier_is_the_selectors_score_network():
    model = _model("score")
    assert isinstance(model, ScoreClassifier) and type(model.selector) is AttentionSelector
    sel = model.selector
    assert {k.removeprefix("selector.") for k in model.state_dict()} == set(sel.state_dict())
    rsrp = _reports(1)
    logits = model(rsrp)  # [4, 5, M]
    # Independent reference: the softmax weights beamattn.core.attend gives the selector's query and keys.
    v = sel.values(None)
    q = sel.query.expand(*rsrp.shape[:-2], 1, -1)
    _, w = attend(q, sel.keys(rsrp), v, bias=sel.beam_bias.view(1, -1), normalizer="softmax",
                  temperature=sel.config.temperature, return_weights=True)
    torch.testing.assert_close(torch.log_softmax(logits, -1), torch.log(w.squeeze(-2)), atol=1e-5, rtol=1e-5)
    # A selector built from these weights, in hard mode, transmits the classifier's beam.
    hard = AttentionSelector(dataclasses.replace(sel.config, mode="hard", normalizer="softmax"), BEAMS, SET_B)
    hard.load_state_dict(sel.state_dict())
    assert torch.equal(hard(rsrp).index, logits.argmax(-1))


# --------------------------------------------------------------------------- overhead: Set B only


@pytest.mark.parametrize("arch", ARCHS)
def test_model_reads_only_set_b_and_the_last_L_reports(arch):
    model = _model(arch)
    rsrp = _reports(2)
    base = model(rsrp)
    other = rsrp.clone()
    other[..., ~SET_B] = torch.randn_like(other[..., ~SET_B]) * 30  # reports the model must not read
    longer = torch.cat([torch.randn(4, 5, 2, M) * 30, other], dim=-2)  # older reports beyond L = 3
    assert torch.equal(model(other), base)
    assert torch.equal(model(longer), base)
    changed = rsrp.clone()
    changed[..., -1, 2] += 7.0  # a Set B beam's latest report: the model does read it
    assert not torch.equal(model(changed), base)


def _tiny_model(scn, name: str, seed: int = 0):
    narrow, _ = make_codebooks(scn)
    _, ep, _ = next(episodes(scn, 0, 2))
    measured = torch.zeros(narrow.num_beams, dtype=torch.bool)
    measured[ep.set_b] = True
    torch.manual_seed(seed)
    return build_model(model_config(scn, name), narrow.beams, measured).eval(), ep


@pytest.mark.parametrize("name", ["mlp", "lstm", "score-classifier"])
def test_policy_overhead_is_set_b_and_other_beams_change_nothing(name):
    scn = tiny_scenario(measurement={"set_b": 4})
    model, ep = _tiny_model(scn, name)
    pol = make_policy(name, model=model)
    dec = pol.decide(ep)
    assert torch.equal(dec.measured, torch.full_like(dec.measured, float(ep.set_b.numel())))
    assert torch.equal(dec.ranking[..., 0], dec.index)
    others = torch.ones(ep.reports_db.shape[-1], dtype=torch.bool)
    others[ep.set_b] = False  # every other narrow beam and the wide beams
    perturbed = dataclasses.replace(ep, reports_db=ep.reports_db.masked_fill(others, 99.0))
    again = pol.decide(perturbed)
    assert torch.equal(again.index, dec.index) and torch.equal(again.ranking, dec.ranking)


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip_gives_exactly_the_same_outputs(tmp_path, arch):
    model = _model(arch)
    path = save_learned(model, BEAMS, tmp_path / "m.safetensors", extra={"train_seed": 7})
    meta = read_learned_config(path)
    assert meta["model"] == model.config.to_dict() and meta["parameters"] == count_parameters(model)
    assert meta["set_b"] == SET_B.nonzero().flatten().tolist() and meta["train_seed"] == 7
    loaded = load_learned(path, BEAMS, SET_B, kind=model.config.kind)
    rsrp = _reports(3)
    assert torch.equal(loaded(rsrp), model(rsrp))
    assert path.read_bytes()[8:].lstrip().startswith(b"{")  # a safetensors JSON header, not a pickle


def _write(tmp_path: Path, arch: str = "mlp") -> Path:
    return save_learned(_model(arch), BEAMS, tmp_path / f"{arch}.safetensors")


def test_foreign_checkpoints_are_refused_by_name(tmp_path):
    path = _write(tmp_path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path}: holds model 'mlp', expected 'lstm'"):
        load_learned(path, BEAMS, SET_B, kind="lstm")
    other_b = torch.zeros(M, dtype=torch.bool)
    other_b[::4] = True
    with pytest.raises(CheckpointError, match=f"checkpoint {path}: made for set_b"):
        load_learned(path, BEAMS, other_b)
    with pytest.raises(CheckpointError, match="made for another codebook of the same size"):
        load_learned(path, BEAMS * torch.exp(1j * torch.linspace(0, 1, N)).to(BEAMS.dtype), SET_B)
    with pytest.raises(CheckpointError, match="made for num_beams = 16"):
        load_learned(path, dft_codebook(ULA(N), 4).beams, torch.ones(32, dtype=torch.bool))
    torch.manual_seed(0)
    sel_path = save_selector(AttentionSelector(SEL_CFG, BEAMS, SET_B), tmp_path / "selector.safetensors")
    with pytest.raises(CheckpointError, match=f"checkpoint {sel_path}: an attention-selector checkpoint"):
        load_learned(sel_path, BEAMS, SET_B)
    with pytest.raises(CheckpointError, match="file not found"):
        load_learned(tmp_path / "missing.safetensors", BEAMS, SET_B)


def test_corrupt_checkpoints_are_refused_by_name(tmp_path):
    path = _write(tmp_path)
    data = path.read_bytes()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"checkpoint {trunc}: "):
        load_learned(trunc, BEAMS, SET_B)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=f"checkpoint {garbage}: not a readable safetensors file"):
        load_learned(garbage, BEAMS, SET_B)
    # Valid file, broken contents: NaN weights, a missing weight, a bad config.
    from safetensors.torch import load_file, save_file

    state, meta = load_file(str(path)), {"beamattn_learned": json.dumps(read_learned_config(path))}
    nan = dict(state)
    nan["net.0.weight"] = torch.full_like(nan["net.0.weight"], math.nan)
    save_file(nan, str(tmp_path / "nan.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="weight 'net.0.weight' has NaN/Inf"):
        load_learned(tmp_path / "nan.safetensors", BEAMS, SET_B)
    save_file({k: v for k, v in state.items() if k != "net.2.bias"}, str(tmp_path / "less.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match=r"weights \['net.2.bias'\] do not match model 'mlp'"):
        load_learned(tmp_path / "less.safetensors", BEAMS, SET_B)
    bad = read_learned_config(path)
    bad["model"]["hidden"] = -1
    save_file(state, str(tmp_path / "bad.safetensors"), metadata={"beamattn_learned": json.dumps(bad)})
    with pytest.raises(CheckpointError, match="bad model config .*field 'hidden' = -1"):
        load_learned(tmp_path / "bad.safetensors", BEAMS, SET_B)
    header = struct.unpack("<Q", data[:8])[0]
    assert header < len(data)  # the file really was a valid one before truncation


# --------------------------------------------------------------------------- training


def test_soft_labels_are_a_softmax_of_the_gains_in_db():
    gain = torch.tensor([[1.0, 10.0, 100.0]])
    torch.testing.assert_close(soft_labels(gain, 10.0), torch.softmax(torch.tensor([[0.0, 1.0, 2.0]]), -1))
    assert soft_labels(gain, 0.01).argmax() == 2 and soft_labels(gain, 0.01).max() > 0.999


def test_unknown_model_name_is_one_line_with_a_hint(tmp_path):
    with pytest.raises(ValueError, match=r"train: model 'mpl' \(did you mean 'mlp'\?\); expected one of"):
        train_learned_models(tiny_scenario(), tmp_path, models=["mpl"])


def _beats_random(tmp_path: Path, names: list[str], steps: int, drops: int, reproduce: bool) -> None:
    scn = tiny_scenario(scenario={"drops": 4}, training={"drops": drops, "steps": steps, "batch": 128, "lr": 0.01})
    logs = train_learned_models(scn, tmp_path, models=names, seed=5, progress=False)
    args = {n: {"checkpoint": str(tmp_path / logs[n]["checkpoint"])} for n in names}  # a name in the folder
    res = run_scenario(dataclasses.replace(scn, policy_args=args), None, policies=["random", *names],
                       progress=False, figures=False)
    rand = res.summary["random"]["loss_db"]["mean"]
    for n in names:
        assert (tmp_path / f"{n}.safetensors").is_file() and (tmp_path / f"{n}_train_log.json").is_file()
        assert logs[n]["steps"] == steps and len(logs[n]["log"]["step"]) == 30  # validated every steps // 30
        loss = res.summary[n]["loss_db"]["mean"]
        assert loss < rand - 3.0, (n, loss, rand)  # random loses ~9 dB here; trained models a few dB at most
    if reproduce:
        again = train_learned_models(scn, tmp_path / "again", models=names[:2], seed=5, progress=False)
        for n in names[:2]:
            assert again[n]["valid_best"] == logs[n]["valid_best"]  # one seed fixes every number
            assert again[n]["log"] == logs[n]["log"]


def test_learned_baselines_beat_random(tmp_path):
    _beats_random(tmp_path, ["mlp", "score-classifier"], steps=90, drops=8, reproduce=False)


@pytest.mark.slow
def test_every_learned_baseline_beats_random_and_reproduces(tmp_path):
    _beats_random(tmp_path, list(LEARNED_MODELS), steps=150, drops=16, reproduce=True)


# --------------------------------------------------------------------------- the scripts


def test_learned_baselines_statistics_over_seeds_and_paired_over_drops():
    import numpy as np

    from script_loader import load_script

    mod = load_script("learned_baselines")
    rng = np.random.default_rng(0)
    per_seed = [{n: {k: rng.normal(size=12) + (1.0 if n == "mlp" else 0.0) for k in mod.KPIS}
                 for n in ("attention", "mlp")} for _ in range(3)]
    s = mod._stats(per_seed, "mlp")
    means = [p["mlp"]["loss_db"].mean() for p in per_seed]
    assert s["loss_db"]["per_seed"] == pytest.approx(means)
    assert s["loss_db"]["seed_std"] == pytest.approx(np.std(means, ddof=1))
    assert s["loss_db"]["mean"] == pytest.approx(np.mean(means))
    diff = np.mean([p["mlp"]["loss_db"] - p["attention"]["loss_db"] for p in per_seed], axis=0)
    d = s["paired_loss_db_vs_attention"]
    assert d["mean"] == pytest.approx(diff.mean()) and d["ci95"][0] < d["mean"] < d["ci95"][1]
    assert mod._stats(per_seed, "attention")["paired_loss_db_vs_attention"]["mean"] == 0.0


@pytest.mark.slow
def test_learned_baselines_script_quick_run(tmp_path, capsys):
    from script_loader import load_script

    mod = load_script("learned_baselines")
    assert mod.main([str(ROOT / "scenarios" / "vehicular-60.toml"), "--quick", "--out", str(tmp_path), "--seeds",
                     "1,2", "--models", "mlp,score-classifier"]) == 0
    out = json.loads((tmp_path / "learned_baselines.json").read_text())
    assert out["train_seeds"] == [1, 2] and set(out["stats"]) >= {"attention", "mlp", "score-classifier", "random"}
    assert out["parameters"]["score-classifier"] == out["parameters"]["attention"]
    assert "| score-classifier | 2720 |" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_learned_quick(tmp_path):
    from script_loader import load_script

    out = tmp_path / "bench.json"
    assert load_script("bench_learned").main(["--quick", "--out", str(out), "--repeats", "1"]) == 0
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["attention"]["ratio_to_selector"] == 1.0
    assert set(rows) == {"attention", *LEARNED_MODELS} - {"score-classifier-large"}
