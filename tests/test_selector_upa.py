"""The selector's 2-D keys for a UPA DFT grid of beams (``SelectorConfig.grid``).

A UPA's DFT codebook puts beam ``m = m_v·M_h + m_h`` on an ``[M_v, M_h]`` grid, circular on both axes
(each index is a spatial frequency). With ``grid = (M_v, M_h)`` the key network is a circular
``Conv2d`` over ``(m_v, m_h)`` with kernel ``(2 n_v + 1, 2 n_h + 1)``,
``n_v = min(neighbours, (M_v - 1) // 2)``, ``n_h = min(neighbours, (M_h - 1) // 2)``. Checked here:
locality (a key depends only on the reports in its circular neighbourhood), equality with an
explicit ``torch.roll`` reference, translation equivariance, the unchanged 1-D path, validation,
scenarios, checkpoints, and that training on a tiny UPA scenario beats best-of-Set-B.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from beamattn.wireless.arrays import UPA, ULA
from beamattn.wireless.checkpoint import CheckpointError, load_selector, read_checkpoint_config, save_selector
from beamattn.wireless.codebooks import dft_codebook
from beamattn.wireless.selector import AttentionSelector, SelectorConfig, relative_rsrp_features
from wireless_fixtures import tiny_scenario

M_V, M_H = 6, 8  # the grid of a 3x4 UPA, 2x oversampled
BEAMS = dft_codebook(UPA(3, 4), 2).beams  # [48, 12] complex64, beam m = m_v * 8 + m_h
M = M_V * M_H
L = 3


def _selector(neighbours: int = 1, grid=(M_V, M_H), measured: torch.Tensor | None = None, seed: int = 0,
              beams: torch.Tensor = BEAMS) -> AttentionSelector:
    torch.manual_seed(seed)
    cfg = SelectorConfig(history=L, neighbours=neighbours, d_model=8, grid=grid)
    m = beams.shape[0]
    return AttentionSelector(cfg, beams, torch.ones(m, dtype=torch.bool) if measured is None else measured).eval()


def _reports(batch: int = 2, seed: int = 1) -> torch.Tensor:
    """``[B, L, M]`` dB reports within 30 dB below a best beam 0 (so perturbing others keeps the reference)."""
    g = torch.Generator().manual_seed(seed)
    r = -30.0 * torch.rand(batch, L, M, generator=g) - 60.0  # [B, L, M] in (-90, -60) dB
    r[..., 0] = -50.0  # beam (0, 0) is the best: the reference of the relative features
    return r


def _circ_dist(a: int, b: int, n: int) -> int:
    d = abs(a - b) % n
    return min(d, n - d)


def test_grid_of_dft_codebook_matches_layout():
    # The grid layout the keys assume: beam m = m_v * M_h + m_h of dft_codebook (= Sionna's grid_of_beams_dft).
    assert BEAMS.shape == (M, 12)
    cfg = SelectorConfig(grid=(M_V, M_H), neighbours=4)
    assert cfg.kernel_radii() == (2, 3)  # clipped so the kernel (5, 7) fits the grid (6, 8)
    assert SelectorConfig(grid=(2, 8), neighbours=4).kernel_radii() == (0, 3)
    assert SelectorConfig(neighbours=4).kernel_radii() == (0, 4)
    sel = _selector(neighbours=4)
    assert tuple(sel.key_net[0].weight.shape) == (8, L + 1, 5, 7)


@pytest.mark.parametrize("i,j", [(0, 0), (2, 5), (5, 7)])
def test_key_depends_only_on_its_circular_neighbourhood(i, j):
    sel = _selector(neighbours=1)  # kernel 3x3
    r = _reports()
    with torch.no_grad():
        k0 = sel.keys(r)[:, i * M_H + j]  # [B, d]
        for v in range(M_V):
            for h in range(M_H):
                beam = v * M_H + h
                if beam == 0:
                    continue  # the reference beam enters every key through the relative features
                p = r.clone()
                p[:, :, beam] += 7.0  # still below the best beam, above the floor
                k1 = sel.keys(p)[:, i * M_H + j]
                inside = _circ_dist(v, i, M_V) <= 1 and _circ_dist(h, j, M_H) <= 1
                if inside:
                    assert not torch.equal(k0, k1), f"beam ({v}, {h}) is a neighbour of ({i}, {j})"
                else:
                    assert torch.equal(k0, k1), f"beam ({v}, {h}) is not a neighbour of ({i}, {j})"


@pytest.mark.parametrize("neighbours", [1, 2, 4])
def test_keys_equal_explicit_roll_reference(neighbours):
    sel = _selector(neighbours=neighbours, measured=torch.arange(M) % 3 != 1).double()
    r = _reports(batch=3).double()
    conv = sel.key_net[0]
    w, b = conv.weight.detach(), conv.bias.detach()  # [d, L+1, kv, kh], [d]
    n_v, n_h = sel.config.kernel_radii()
    rel = relative_rsrp_features(r, sel.measured)  # [B, L, M]
    flag = sel.measured.double().expand(3, 1, M)
    feat = torch.cat([rel, flag], 1).reshape(3, L + 1, M_V, M_H)  # [B, L+1, Mv, Mh]
    ref = b.view(1, -1, 1, 1).expand(3, -1, M_V, M_H).clone()  # [B, d, Mv, Mh]
    for dv in range(-n_v, n_v + 1):
        for dh in range(-n_h, n_h + 1):
            shifted = torch.roll(feat, shifts=(-dv, -dh), dims=(-2, -1))  # shifted[.., i, j] = feat[.., i+dv, j+dh]
            ref += torch.einsum("dc,bcij->bdij", w[:, :, dv + n_v, dh + n_h], shifted)
    ref = torch.nn.functional.gelu(ref).flatten(-2).transpose(-2, -1)  # [B, M, d] in beam order
    with torch.no_grad():
        k = sel.keys(r)
    torch.testing.assert_close(k, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("axis,shift", [(0, 1), (0, -2), (1, 3), (1, -1)])
def test_rolling_reports_along_a_grid_axis_rolls_the_keys(axis, shift):
    sel = _selector(neighbours=2)  # every beam measured: Set B is invariant under the roll
    r = _reports()
    rolled = torch.roll(r.unflatten(-1, (M_V, M_H)), shift, dims=-2 + axis).flatten(-2)  # [B, L, M]
    with torch.no_grad():
        k = sel.keys(r).unflatten(-2, (M_V, M_H))  # [B, Mv, Mh, d]
        k_rolled = sel.keys(rolled).unflatten(-2, (M_V, M_H))
    torch.testing.assert_close(k_rolled, torch.roll(k, shift, dims=-3 + axis), rtol=1e-5, atol=1e-6)


def test_grid_none_and_one_row_are_the_old_1d_path_bit_identical():
    beams = dft_codebook(ULA(8), 2).beams  # [16, 8]
    r = -30 * torch.rand(4, L, 16, generator=torch.Generator().manual_seed(2)) - 60
    measured = torch.arange(16) % 2 == 0
    outs = []
    for grid in (None, (1, 16), [1, 16]):
        sel = _selector(neighbours=2, grid=grid, measured=measured, beams=beams)
        assert sel.config.grid is None and "grid" not in sel.config.to_dict()
        with torch.no_grad():
            outs.append((sel.keys(r), sel(r).beams, sel.state_dict()))
    # The old key network, built the old way from the same seed.
    torch.manual_seed(0)
    old = nn.Sequential(nn.Conv1d(L + 1, 8, 5, padding=2, padding_mode="circular"), nn.GELU())
    rel = relative_rsrp_features(r, measured)
    feat = torch.cat([rel, measured.float().expand(4, 1, 16)], 1)
    with torch.no_grad():
        k_old = old(feat).transpose(-2, -1)
    for k, beams_out, state in outs:
        assert torch.equal(k, k_old)
        assert torch.equal(beams_out, outs[0][1])
        assert all(torch.equal(state[n], outs[0][2][n]) for n in state)


@pytest.mark.parametrize("grid,match", [((6, 9), r"'grid' = \[6, 9\] has 54 beams; expected M_v·M_h = the codebook "
                                                  r"size M = 48"),
                                        ((0, 48), r"field 'grid' = \(0, 48\); expected \[M_v, M_h\]"),
                                        ((6,), r"field 'grid'"), ((6.0, 8), r"field 'grid'"),
                                        ("6x8", r"field 'grid'")])
def test_bad_grids_are_refused(grid, match):
    with pytest.raises(ValueError, match=match):
        _selector(grid=grid)


def test_scenarios_set_the_grid_of_a_upa():
    upa = tiny_scenario(array={"num_rows": 4, "num_cols": 4}, codebook={"num_wide": 0})
    assert upa.selector.grid == (8, 8)  # 4x4 UPA, oversampling 2 on both axes
    assert tiny_scenario().selector.grid is None  # ULA: 1-D keys, as before
    forced = tiny_scenario(array={"num_rows": 4, "num_cols": 4}, codebook={"num_wide": 0},
                           selector={"grid": [1, 64]})
    assert forced.selector.grid is None
    assert tiny_scenario(array={"num_rows": 4, "num_cols": 4}, codebook={"num_wide": 0},
                         selector={"grid": [4, 16]}).selector.grid == (4, 16)
    with pytest.raises(ValueError, match=r"selector: field 'grid' = \[8, 4\] has 32 beams; expected M_v·M_h = 64"):
        tiny_scenario(array={"num_rows": 4, "num_cols": 4}, codebook={"num_wide": 0}, selector={"grid": [8, 4]})
    with pytest.raises(ValueError, match=r"selector: field 'grid' = 'x'"):
        tiny_scenario(selector={"grid": "x"})


def test_checkpoint_stores_and_checks_the_grid(tmp_path):
    sel = _selector(neighbours=2, measured=torch.arange(M) % 2 == 0)
    path = save_selector(sel, tmp_path / "s.safetensors")
    meta = read_checkpoint_config(path)
    assert meta["selector"]["grid"] == [M_V, M_H]  # a list in the JSON
    back = load_selector(path, BEAMS, sel.measured, grid=(M_V, M_H))
    assert back.config == sel.config and back.config.grid == (M_V, M_H)
    r = _reports()
    with torch.no_grad():
        assert torch.equal(back(r).beams, sel(r).beams)
    with pytest.raises(CheckpointError, match=r"made for selector grid = \[6, 8\] \(2-D keys\), but this scenario "
                                              r"has grid = none \(1-D keys\)"):
        load_selector(path, BEAMS, sel.measured, grid=None)
    with pytest.raises(CheckpointError, match=r"grid = \[6, 8\].*grid = \[3, 16\]"):
        load_selector(path, BEAMS, sel.measured, grid=(3, 16))


def test_checkpoint_without_grid_field_loads_as_1d_and_is_refused_for_a_grid(tmp_path):
    from safetensors.torch import load_file, save_file

    sel = _selector(neighbours=2, grid=None, measured=torch.arange(M) % 2 == 0)
    path = save_selector(sel, tmp_path / "s.safetensors")
    meta = read_checkpoint_config(path)
    assert "grid" not in meta["selector"]  # as written before the field existed
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(path)), str(old), metadata={"beamattn_config": json.dumps(meta)})
    assert load_selector(old, BEAMS, sel.measured, grid=None).config.grid is None
    assert load_selector(old, BEAMS, sel.measured, grid=(1, M)).config.grid is None
    with pytest.raises(CheckpointError, match=r"grid = none \(1-D keys\), but this scenario has grid = \[6, 8\]"):
        load_selector(old, BEAMS, sel.measured, grid=(M_V, M_H))


def test_upa_scenario_trains_and_beats_best_of_set_b(tmp_path):
    from beamattn.wireless.runner import run_scenario
    from beamattn.wireless.train import train_selector

    # 4x4 UPA, 2x oversampled: 8 x 8 = 64 beams; Set B = every 2nd index = every row, every 2nd column (32).
    scn = tiny_scenario(scenario={"drops": 32, "chunk_drops": 16},
                        array={"num_rows": 4, "num_cols": 4}, codebook={"num_wide": 0},
                        measurement={"set_b": 32},
                        selector={"history": 2, "d_model": 16, "neighbours": 1},
                        training={"drops": 32, "steps": 150, "batch": 256, "lr": 0.01})
    assert scn.selector.grid == (8, 8)
    train_selector(scn, tmp_path / "ckpt", progress=False)
    ckpt = str(tmp_path / "ckpt" / "selector.safetensors")
    assert read_checkpoint_config(ckpt)["selector"]["grid"] == [8, 8]
    out = run_scenario(scn, None, progress=False, policies=["genie", "best-of-set-b", "attention"], checkpoint=ckpt)
    att, bsb = out.summary["attention"]["loss_db"], out.summary["best-of-set-b"]["loss_db"]
    print(f"loss to genie: attention {att}, best-of-set-b {bsb}")
    # Direction with a margin set by the CIs (95% bootstrap over drops): the attention's loss is lower by more
    # than the half-width of a 95% interval of the difference of two independent means, sqrt(h_a² + h_b²);
    # both policies see the same channels and noise, so the paired interval is narrower: this is conservative.
    half = [(d["ci95"][1] - d["ci95"][0]) / 2 for d in (att, bsb)]
    assert bsb["mean"] - att["mean"] > math.hypot(*half)


def test_keras_export_writes_the_2d_key_conv(tmp_path):
    from beamattn.keras.selector_file import SelectorFileError, read_selector_file, write_selector_file
    from beamattn.wireless.keras_export import export_selector_keras

    sel = _selector(neighbours=4, measured=torch.arange(M) % 2 == 0)  # kernel clipped to (5, 7)
    f = read_selector_file(export_selector_keras(sel, tmp_path / "k.safetensors"))
    assert f.selector == sel.config.to_dict() and f.selector["grid"] == [M_V, M_H]
    assert f.weights["key_conv_weight"].shape == (8, L + 1, 5, 7)  # torch Conv2d layout
    bad = {**f.selector, "grid": [4, 8]}
    with pytest.raises(SelectorFileError, match=r"field 'grid' = \[4, 8\] has 32 beams; expected M_v·M_h = the "
                                                 r"codebook size M = 48"):
        write_selector_file(tmp_path / "bad.safetensors", bad, f.codebook, f.set_b, f.weights)
