"""Tests of the contextual ("transformer") selector: what each part must do.

- with self-attention off and a fixed query it is today's selector (the same function class: the conv
  selector's weights give the same outputs);
- beam self-attention is equivariant to a joint permutation of beams, their grid positions and Set B;
  its position bias depends only on circular grid distances (a DFT index wraps around);
- the whole selector is equivariant to a circular shift of the codebook index (reports and Set B shifted
  alike) while its per-beam prior is zero;
- the phase predictor is exact on a single-path channel with constant Doppler (below aliasing);
- configs, checkpoints (old ones load as "conv", unknown architectures are refused by name), training,
  the Keras file reader's refusal of an architecture it has no port of.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from beamattn.wireless.arrays import ULA, AntennaArray
from beamattn.wireless.checkpoint import CheckpointError, load_selector, read_checkpoint_config, save_selector
from beamattn.wireless.codebooks import dft_codebook
from beamattn.wireless.selector import AttentionSelector, SelectorConfig
from beamattn.wireless.selector_context import (BeamPositionBias, BeamSelfAttention, grid_positions, predict_phase,
                                                wrap_phase)

N = 8
BEAMS = dft_codebook(ULA(N), 2).beams  # [16, 8] complex64
M = BEAMS.shape[0]
SET_B = torch.zeros(M, dtype=torch.bool)
SET_B[::2] = True


def _reports(shape, m: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.round(torch.randn(*shape, m, generator=g) * 6 - 3)  # [..., L, M] dB, 1 dB steps


def _perturbed(sel: AttentionSelector, seed: int = 0) -> AttentionSelector:
    """Weights unlike a fresh initialisation (zero-initialised parts included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sel.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return sel.eval()


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("field,value", [("arch", "lstm"), ("layers", -1), ("layers", 9), ("heads", 0),
                                         ("heads", 5), ("query", "learned"), ("phase_predict", 1),
                                         ("phase_lead", -0.5), ("phase_lead", float("nan"))])
def test_transformer_config_rejects_bad_fields_naming_them(field, value):
    with pytest.raises(ValueError, match=f"field '{field}'"):
        SelectorConfig(**{"arch": "transformer", field: value})


@pytest.mark.parametrize("field,value", [("layers", 2), ("query", "context"), ("phase_predict", True)])
def test_conv_config_refuses_transformer_only_fields(field, value):
    with pytest.raises(ValueError, match=f"field '{field}'.*applies to arch = 'transformer'"):
        SelectorConfig(**{field: value})


def test_conv_config_dict_is_the_dict_of_before_arch_existed():
    assert set(SelectorConfig().to_dict()) == {"normalizer", "mode", "topk", "temperature", "history",
                                               "neighbours", "d_model", "cophase", "learned"}
    d = SelectorConfig(arch="transformer", layers=2, query="context").to_dict()
    assert d["arch"] == "transformer" and d["layers"] == 2 and d["query"] == "context"
    assert SelectorConfig(**d) == SelectorConfig(arch="transformer", layers=2, query="context")


# --------------------------------------------------------------------------- today's function class


@pytest.mark.parametrize("grid,beams", [(None, BEAMS), ((4, 8), dft_codebook(AntennaArray(2, 4), 2).beams)])
@pytest.mark.parametrize("cophase", [False, True])
def test_without_self_attention_and_with_a_fixed_query_it_is_todays_selector(grid, beams, cophase):
    m = beams.shape[0]
    measured = torch.zeros(m, dtype=torch.bool)
    measured[::2] = True
    base = dict(history=3, neighbours=2, d_model=8, grid=grid, cophase=cophase)
    torch.manual_seed(0)
    conv = _perturbed(AttentionSelector(SelectorConfig(**base), beams, measured))
    new = AttentionSelector(SelectorConfig(**base, arch="transformer", layers=0, query="fixed"), beams, measured)
    assert set(new.state_dict()) == set(conv.state_dict())  # the mapping: the same tensors, one to one
    new.load_state_dict(conv.state_dict())
    rsrp = _reports((5, 3), m, seed=1)
    phase = torch.rand(5, m, generator=torch.Generator().manual_seed(2)) * 2 * math.pi
    with torch.no_grad():
        a, b = conv(rsrp, phase), new.eval()(rsrp, phase)
    torch.testing.assert_close(b.weights, a.weights, rtol=0, atol=0)
    torch.testing.assert_close(b.beams, a.beams, rtol=0, atol=0)


# --------------------------------------------------------------------------- self-attention among beams


@pytest.mark.parametrize("grid", [(1, 16), (4, 4)])
def test_beam_self_attention_is_equivariant_to_a_joint_permutation(grid):
    torch.manual_seed(0)
    block = BeamSelfAttention(8, 2, grid).double()
    with torch.no_grad():  # a non-zero position bias: the test must see positions move with their beams
        block.pos.h_table.weight.normal_()
        if block.pos.v_table is not None:
            block.pos.v_table.weight.normal_()
    m = grid[0] * grid[1]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, m, 8, generator=g, dtype=torch.float64)  # [S, M, d]
    pos = grid_positions(m, None if grid[0] == 1 else grid)  # [M, 2]
    mask = torch.rand(m, generator=g) < 0.5
    mask[0] = True
    perm = torch.randperm(m, generator=g)
    out = block(x, pos, mask)  # [S, M, d]
    out_p = block(x[:, perm], pos[perm], mask[perm])
    torch.testing.assert_close(out_p, out[:, perm], rtol=1e-12, atol=1e-12)
    # ... and it does depend on the positions: moving them without their tokens changes the output
    assert not torch.allclose(block(x, pos[perm], mask), out)


def test_position_bias_depends_only_on_circular_grid_distance():
    torch.manual_seed(0)
    bias = BeamPositionBias(3, (4, 8), max_distance=3)
    with torch.no_grad():
        bias.h_table.weight.normal_()
        bias.v_table.weight.normal_()
    pos = grid_positions(32, (4, 8))  # [M, 2]
    b = bias(pos, pos)  # [H, M, M]
    shifted = torch.stack([(pos[:, 0] + 1) % 4, (pos[:, 1] + 5) % 8], -1)  # every beam moved by (1, 5), wrapped
    torch.testing.assert_close(bias(shifted, shifted), b, rtol=0, atol=0)
    # Beam (0, 0) and beam (0, 7) are neighbours on the circle: distance -1, the same bias as (0, 1) to (0, 0).
    i00, i07, i01 = 0, 7, 1
    torch.testing.assert_close(b[:, i00, i07], b[:, i01, i00])
    # Closed form: the sum of the two axes' table entries.
    dh, dv = -1, 0
    assert (bias.h_table.max_distance, bias.v_table.max_distance) == (3, 2)  # clipped to half of each axis
    expect = bias.h_table.weight[:, dh + 3] + bias.v_table.weight[:, dv + 2]
    torch.testing.assert_close(b[:, i00, i07], expect)


def test_the_selector_is_equivariant_to_a_circular_shift_of_the_codebook_index():
    # The keys (circular convolution, circular position bias) and the contextual query only see relative
    # positions; with a zero per-beam prior, shifting the reports and Set B by s shifts the weights by s.
    cfg = SelectorConfig(history=3, neighbours=2, d_model=8, heads=2, arch="transformer", layers=2,
                         query="context", normalizer="softmax")
    torch.manual_seed(0)
    sel = _perturbed(AttentionSelector(cfg, BEAMS, SET_B))
    shift = 3
    sel_s = AttentionSelector(cfg, BEAMS, SET_B.roll(shift))
    sel_s.load_state_dict(sel.state_dict())
    with torch.no_grad():
        sel.beam_bias.zero_()
        sel_s.beam_bias.zero_()
    rsrp = torch.randn(6, 3, M, generator=torch.Generator().manual_seed(3)) * 6  # continuous: no tied serving beam
    with torch.no_grad():
        w = sel(rsrp).weights
        w_s = sel_s.eval()(rsrp.roll(shift, -1)).weights
    torch.testing.assert_close(w_s, w.roll(shift, -1), rtol=1e-5, atol=1e-6)


def test_on_a_upa_grid_the_selector_is_equivariant_to_circular_shifts_of_both_angles():
    grid = (4, 8)
    beams = dft_codebook(AntennaArray(2, 4), 2).beams  # [32, 8]: the 4 x 8 DFT grid of beams
    measured = torch.zeros(grid, dtype=torch.bool)
    measured[::2, ::2] = True  # [4, 8]
    cfg = SelectorConfig(history=2, neighbours=1, d_model=8, heads=2, arch="transformer", layers=1,
                         query="context", normalizer="softmax", grid=grid)
    torch.manual_seed(0)
    sel = _perturbed(AttentionSelector(cfg, beams, measured.flatten()))
    shift = (1, 3)  # rows (m_v) and columns (m_h), wrapped

    def move(x: torch.Tensor) -> torch.Tensor:  # [..., M] -> the same values at the shifted grid positions
        return x.unflatten(-1, grid).roll(shift, (-2, -1)).flatten(-2)

    sel_s = AttentionSelector(cfg, beams, move(measured.flatten()))
    sel_s.load_state_dict(sel.state_dict())
    with torch.no_grad():
        sel.beam_bias.zero_()
        sel_s.beam_bias.zero_()
        rsrp = torch.randn(5, 2, 32, generator=torch.Generator().manual_seed(4)) * 6
        w, w_s = sel(rsrp).weights, sel_s.eval()(move(rsrp)).weights
    torch.testing.assert_close(w_s, move(w), rtol=1e-5, atol=1e-6)


def test_self_attention_makes_a_beams_key_depend_on_far_measured_beams():
    # The convolution sees +-neighbours; with self-attention a report far away changes a beam's key.
    cfg = SelectorConfig(history=2, neighbours=1, d_model=8, heads=2, arch="transformer", layers=1)
    torch.manual_seed(0)
    sel = _perturbed(AttentionSelector(cfg, BEAMS, SET_B))
    conv = AttentionSelector(dataclasses.replace(cfg, layers=0), BEAMS, SET_B)
    conv.load_state_dict({k: v for k, v in sel.state_dict().items() if not k.startswith("blocks")})
    rsrp = _reports((1, 2), M, seed=4)
    far = rsrp.clone()
    far[..., 8] += 7.0  # beam 8 is measured and 8 indices from beam 0: outside the kernel
    with torch.no_grad():
        assert torch.equal(conv.keys(rsrp)[..., 0, :], conv.keys(far)[..., 0, :])
        assert not torch.allclose(sel.keys(rsrp)[..., 0, :], sel.keys(far)[..., 0, :])


def test_gradients_reach_every_parameter_of_the_contextual_selector():
    cfg = SelectorConfig(history=3, d_model=8, heads=2, arch="transformer", layers=1, query="context",
                         cophase=True, phase_predict=True)
    torch.manual_seed(0)
    # Perturbed: at initialisation the query network's output layer is zero, so its input norm gets no gradient.
    sel = _perturbed(AttentionSelector(cfg, BEAMS, SET_B)).train()
    rsrp = _reports((16, 3), M, seed=5)
    g = torch.Generator().manual_seed(6)
    hist = torch.rand(16, 3, M, generator=g) * 6 - 3
    h = torch.randn(16, N, generator=g, dtype=torch.complex64)
    w = sel(rsrp, hist[:, -1], phase_history=hist).beams
    (-(h * w).sum(-1).abs().pow(2).mean()).backward()
    for name, p in sel.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_a_fresh_contextual_query_is_the_fixed_one():
    # The query network's output layer starts at zero: training starts from today's fixed goal.
    cfg = SelectorConfig(history=3, d_model=8, heads=2, arch="transformer", layers=1, query="context")
    torch.manual_seed(0)
    sel = AttentionSelector(cfg, BEAMS, SET_B)
    fixed = AttentionSelector(dataclasses.replace(cfg, query="fixed"), BEAMS, SET_B)
    fixed.load_state_dict({k: v for k, v in sel.state_dict().items() if not k.startswith("query_")})
    rsrp = _reports((4, 3), M, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(sel(rsrp).weights, fixed(rsrp).weights, rtol=0, atol=0)


# --------------------------------------------------------------------------- phase prediction


@pytest.mark.parametrize("doppler_hz,lead", [(0.0, 0.75), (7.3, 0.725), (-21.0, 1.0), (24.0, 0.5)])
def test_phase_predictor_is_exact_on_a_single_path_with_constant_doppler(doppler_hz, lead):
    # h(t) = a e^{j 2π f_D t} s(θ): each beam's measured phase is angle(a s(θ)ᵀ v_i) + 2π f_D t, a line in t.
    # Reports every P = 20 ms: |2π f_D P| < π for |f_D| < 25 Hz (no aliasing). The prediction lead·P after the
    # last report equals the true phase then, for every beam.
    period, length = 0.02, 6
    theta = 0.37
    steer = torch.exp(1j * math.pi * torch.arange(N, dtype=torch.float64) * math.sin(theta))  # [N]
    a = 0.8 * complex(math.cos(1.1), math.sin(1.1))
    beams = BEAMS.to(torch.complex128)
    times = torch.arange(length, dtype=torch.float64) * period  # [T]
    h = a * torch.exp(2j * math.pi * doppler_hz * times)[:, None] * steer  # [T, N]
    phase = torch.angle(h @ beams.T)  # [T, M]
    t_use = times[-1] + lead * period
    truth = torch.angle((a * torch.exp(2j * math.pi * doppler_hz * t_use) * steer) @ beams.T)  # [M]
    pred = predict_phase(phase, lead)  # [M]
    err = torch.angle(torch.exp(1j * (pred - truth)))  # wrapped difference
    assert float(err.abs().max()) < 1e-9


def test_phase_predictor_aliases_above_half_the_report_rate():
    # 30 Hz at 20 ms: 2π·0.6 per report, seen as -2π·0.4: the predictor extrapolates the alias (it cannot know).
    period, lead = 0.02, 1.0
    t = torch.arange(4, dtype=torch.float64) * period
    # Real float64 arithmetic throughout (a Python complex scalar would take torch's default complex dtype).
    phase = wrap_phase(2 * math.pi * 30.0 * t)[:, None]  # [T, 1]
    pred = predict_phase(phase, lead)
    alias = 2 * math.pi * (30.0 - 50.0) * (float(t[-1]) + lead * period)
    assert abs(float(wrap_phase(pred[0] - alias))) < 1e-9


def test_phase_predictor_with_one_sample_returns_it():
    phase = torch.tensor([[0.3, -2.0]])
    torch.testing.assert_close(predict_phase(phase, 0.75), phase[0])


def test_phase_predict_needs_a_phase_history():
    cfg = SelectorConfig(history=2, d_model=8, heads=2, arch="transformer", cophase=True, phase_predict=True)
    sel = AttentionSelector(cfg, BEAMS, SET_B)
    rsrp = _reports((2, 2), M, seed=8)
    with pytest.raises(ValueError, match="'phase_predict' is on but no 'phase_history'"):
        sel(rsrp, torch.zeros(2, M))
    with pytest.raises(ValueError, match="argument 'phase_history' has shape"):
        sel(rsrp, torch.zeros(2, M), phase_history=torch.zeros(3, 2, M))


def test_cophasing_with_predicted_phases_equals_cophasing_with_the_predicted_phase():
    cfg = SelectorConfig(history=2, d_model=8, heads=2, arch="transformer", cophase=True, phase_predict=True)
    torch.manual_seed(0)
    sel = _perturbed(AttentionSelector(cfg, BEAMS, SET_B))
    plain = AttentionSelector(dataclasses.replace(cfg, phase_predict=False), BEAMS, SET_B)
    plain.load_state_dict(sel.state_dict())
    rsrp = _reports((3, 2), M, seed=9)
    hist = torch.rand(3, 4, M, generator=torch.Generator().manual_seed(10)) * 2 - 1  # [S, T, M] small steps
    with torch.no_grad():
        a = sel(rsrp, hist[:, -1], phase_history=hist).beams
        b = plain.eval()(rsrp, predict_phase(hist, cfg.phase_lead)).beams
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# --------------------------------------------------------------------------- checkpoints and export


def test_an_old_checkpoint_loads_as_the_conv_selector(tmp_path):
    torch.manual_seed(0)
    sel = _perturbed(AttentionSelector(SelectorConfig(history=3), BEAMS, SET_B))
    path = save_selector(sel, tmp_path / "old.safetensors")
    stored = read_checkpoint_config(path)["selector"]
    assert "arch" not in stored  # what checkpoints written before the field hold
    loaded = load_selector(path, BEAMS, SET_B)
    assert loaded.config.arch == "conv"
    rsrp = _reports((4, 3), M, seed=11)
    with torch.no_grad():
        torch.testing.assert_close(loaded(rsrp).beams, sel(rsrp).beams, rtol=0, atol=0)


def test_a_transformer_checkpoint_round_trips(tmp_path):
    cfg = SelectorConfig(history=3, d_model=8, heads=2, arch="transformer", layers=2, query="context",
                         cophase=True, phase_predict=True, phase_lead=0.725)
    torch.manual_seed(0)
    sel = _perturbed(AttentionSelector(cfg, BEAMS, SET_B))
    path = save_selector(sel, tmp_path / "t.safetensors")
    loaded = load_selector(path, BEAMS, SET_B)
    assert loaded.config == cfg
    rsrp = _reports((4, 3), M, seed=12)
    hist = torch.rand(4, 3, M, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        torch.testing.assert_close(loaded(rsrp, hist[:, -1], phase_history=hist).beams,
                                   sel(rsrp, hist[:, -1], phase_history=hist).beams, rtol=0, atol=0)


def test_a_checkpoint_of_an_unknown_architecture_is_refused_by_name(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    path = save_selector(AttentionSelector(SelectorConfig(history=3), BEAMS, SET_B), tmp_path / "a.safetensors")
    meta = read_checkpoint_config(path)
    meta["selector"]["arch"] = "mamba"
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(path)), str(bad), metadata={"beamattn_config": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="field 'arch' = 'mamba'; expected 'conv' or 'transformer'"):
        load_selector(bad, BEAMS, SET_B)


def test_keras_file_reader_refuses_another_architecture():
    from beamattn.keras.selector_file import SelectorFileError, check_selector_config

    cfg = {**SelectorConfig().to_dict(), "arch": "mamba"}
    with pytest.raises(SelectorFileError, match="field 'arch' = 'mamba' has no Keras port; expected 'conv' .*"
                                                "or 'transformer'"):
        check_selector_config(cfg)
    assert check_selector_config(SelectorConfig().to_dict()) == SelectorConfig().to_dict()


# --------------------------------------------------------------------------- training and evaluation


def test_scenario_sets_the_phase_lead_from_the_timeline():
    from wireless_fixtures import tiny_scenario

    scn = tiny_scenario(selector={"arch": "transformer", "d_model": 8, "heads": 2})
    m = scn.measurement
    dt = scn.channel.sample_interval
    p, d = round(m.period / dt), round(m.delay / dt)
    assert scn.selector.phase_lead == pytest.approx((d + (p - 1) / 2) / p)
    given = tiny_scenario(selector={"arch": "transformer", "d_model": 8, "heads": 2, "phase_lead": 2.0})
    assert given.selector.phase_lead == 2.0


def test_the_contextual_selector_trains_and_runs_as_the_attention_policy(tmp_path):
    from wireless_fixtures import tiny_scenario

    from beamattn.wireless.runner import run_scenario
    from beamattn.wireless.train import train_selector

    # Co-phased with phases predicted from a CSI-RS burst of 3 instances 4 ms apart in each 20 ms period.
    sel = {"arch": "transformer", "d_model": 8, "heads": 2, "query": "context", "cophase": True,
           "phase_predict": True}
    meas = {"with_phase": True, "burst": 3, "burst_spacing": 0.004}
    scn = tiny_scenario(selector=sel, measurement=meas, training={"steps": 3})
    res = train_selector(scn, tmp_path / "ckpt", progress=False)
    assert res["selector"]["arch"] == "transformer" and res["selector"]["phase_predict"] is True
    out = run_scenario(tiny_scenario(selector=sel, measurement=meas), None, progress=False,
                       policies=["genie", "attention"], checkpoint=res["checkpoint"], figures=False)
    assert math.isfinite(out.summary["attention"]["loss_db"]["mean"])
    assert out.policies_config["attention"]["arch"] == "transformer"
    set_b = scn.measurement.set_b
    # The overhead of co-phasing: one phase per Set B beam and burst instance, per decision.
    assert out.summary["attention"]["report"] == {"bits": None, "complex_values": 3 * set_b}


def test_an_rsrp_only_selector_sends_no_csi_report():
    from wireless_fixtures import tiny_scenario

    from beamattn.wireless.runner import run_scenario

    out = run_scenario(tiny_scenario(), None, progress=False, policies=["genie", "attention-untrained"],
                       figures=False)
    assert "report" not in out.summary["attention-untrained"]


def test_learned_baselines_keep_the_conv_score_network_under_a_contextual_scenario():
    from wireless_fixtures import tiny_scenario

    from beamattn.wireless.learned.train import model_config, selector_parameters
    from beamattn.wireless.selector import conv_config

    ctx = tiny_scenario(selector={"arch": "transformer", "d_model": 8, "heads": 2, "query": "context"})
    conv = tiny_scenario(selector={"d_model": 8})
    assert conv_config(ctx.selector) == conv.selector
    assert selector_parameters(ctx) == selector_parameters(conv)
    assert model_config(ctx, "score-classifier") == model_config(conv, "score-classifier")
