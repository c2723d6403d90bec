"""Torch side of the Keras port: ``beamattn export --format keras`` and the parity fixtures.

The Keras layer itself is tested in a TensorFlow environment (tests/keras, ``make test-keras``).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

from script_loader import load_script

from beamattn import __version__
from beamattn.cli import main
from beamattn.keras import FORMAT_NAME, FORMAT_VERSION, SelectorFileError, read_selector_file
from beamattn.keras import selector_file
from beamattn.wireless.arrays import ULA
from beamattn.wireless.checkpoint import CheckpointError, save_selector
from beamattn.wireless.codebooks import dft_codebook
from beamattn.wireless.keras_export import export_keras, export_selector_keras, keras_weight_names
from beamattn.wireless.selector import AttentionSelector, SelectorConfig

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "keras" / "fixtures"
N = 8
BEAMS = dft_codebook(ULA(N), 4).beams  # [32, 8] complex64
M = BEAMS.shape[0]
SET_B = torch.zeros(M, dtype=torch.bool)
SET_B[1::4] = True


def _selector(**cfg) -> AttentionSelector:
    torch.manual_seed(0)
    return AttentionSelector(SelectorConfig(**{"history": 3, "d_model": 8, "neighbours": 2, **cfg}), BEAMS, SET_B)


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="np") as f:
        return dict(f.metadata())


def test_config_fields_match_the_torch_selector_config():
    assert selector_file._CONFIG_FIELDS == tuple(f.name for f in dataclasses.fields(SelectorConfig))


def test_export_of_a_learned_selector_keeps_config_weights_codebook_and_set_b(tmp_path):
    sel = _selector(normalizer="entmax15", mode="topk", topk=3, cophase=True)
    out = export_selector_keras(sel, tmp_path / "sel.safetensors", source="test")
    meta = _metadata(out)
    assert meta["format"] == FORMAT_NAME and meta["format_version"] == str(FORMAT_VERSION)
    assert json.loads(meta["selector"]) == sel.config.to_dict()
    assert (int(meta["num_beams"]), int(meta["num_ant"])) == (M, N)
    assert json.loads(meta["set_b"]) == SET_B.nonzero().flatten().tolist()
    assert meta["beamattn_version"] == __version__ and meta["source"] == "test"
    f = read_selector_file(out)
    np.testing.assert_array_equal(f.codebook, BEAMS.numpy())
    state = sel.state_dict()
    np.testing.assert_array_equal(f.weights["key_conv_weight"], state["key_net.0.weight"].numpy())  # [d, L+1, K]
    np.testing.assert_array_equal(f.weights["key_conv_bias"], state["key_net.0.bias"].numpy())
    np.testing.assert_array_equal(f.weights["query"], state["query"].numpy())
    np.testing.assert_array_equal(f.weights["beam_bias"], state["beam_bias"].numpy())
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left


_TRANSFORMERS = [
    dict(layers=1, heads=4, query="context"),  # 1-D: one position table
    dict(layers=2, heads=2, query="fixed", grid=(4, 8)),  # a UPA grid: two tables per block
    dict(layers=0, query="context", cophase=True, phase_predict=True, phase_lead=1.5),  # conv keys, context query
]


@pytest.mark.parametrize("cfg", _TRANSFORMERS, ids=["1d-context", "grid-2-blocks", "no-blocks-predict"])
def test_export_of_a_transformer_keeps_every_tensor_in_torch_layout(cfg, tmp_path):
    sel = _selector(arch="transformer", **cfg)
    with torch.no_grad():  # non-zero tables and query map (torch starts them at zero)
        for p in sel.parameters():
            p.add_(0.01 * torch.randn_like(p))
    out = export_selector_keras(sel, tmp_path / "t.safetensors", source="test")
    f = read_selector_file(out)
    assert f.selector == sel.config.to_dict() and f.selector["arch"] == "transformer"
    state = sel.state_dict()
    names = keras_weight_names(sel)
    assert set(names) == set(state) and set(names.values()) == set(f.weights)  # every tensor, once
    for key, name in names.items():
        np.testing.assert_array_equal(f.weights[name], state[key].numpy(), err_msg=name)
    assert set(f.weights) == set(selector_file.weight_shapes(f.selector, M))
    layers, grid = cfg["layers"], cfg.get("grid")
    # Per block: 2 LayerNorms x 2, 4 projections x 2, the MLP's 4 tensors and 1 or 2 position tables.
    assert sum(k.startswith("block") for k in f.weights) == layers * (18 if grid else 17)
    assert ("query_net_weight" in f.weights) == (cfg["query"] == "context")
    if layers:
        assert np.array_equal(f.weights["block0_q_proj_weight"], state["blocks.0.attn.q_proj.weight"].numpy())
        assert np.array_equal(f.weights[f"block{layers - 1}_mlp_out_weight"],
                              state[f"blocks.{layers - 1}.mlp.2.weight"].numpy())


@pytest.mark.parametrize("cfg", [dict(d_model=16, heads=4, layers=3, query="context"),
                                 dict(d_model=16, heads=4, layers=1, query="context", csi_keys=True),
                                 dict(d_model=12, heads=3, layers=1, grid=(2, 16)),
                                 dict(d_model=8, heads=8, layers=1, grid=(8, 4)),
                                 dict(d_model=8, heads=1, layers=2, neighbours=1)])
def test_weight_shapes_equal_the_torch_state_dict(cfg):
    # The file's shapes are derived without torch (BeamSelfAttention's max_distance 8 and MLP ratio 2 included):
    # a change there shows here. Position tables: max(1, min(8, G // 2)) per axis G.
    beams = dft_codebook(ULA(8), 4).beams  # [32, 8]
    sel = AttentionSelector(SelectorConfig(arch="transformer", history=3, **cfg), beams, SET_B)
    shapes = selector_file.weight_shapes(sel.config.to_dict(), beams.shape[0])
    state = {name: tuple(t.shape) for name, t in sel.state_dict().items()}
    assert {name: shapes[file_name] for name, file_name in keras_weight_names(sel).items()} == state


@pytest.mark.parametrize("cfg", [dict(), dict(grid=(4, 8)), dict(arch="transformer", layers=1, heads=2,
                                                                 query="context", grid=(4, 8))],
                         ids=["conv-1d", "conv-grid", "transformer-grid"])
def test_export_of_csi_keys_selectors_and_checkpoints(cfg, tmp_path):
    # csi_keys adds no tensor: the key convolution reads 2L+1 channels; the config names the field (true only).
    sel = _selector(csi_keys=True, cophase=True, **cfg)
    f = read_selector_file(export_selector_keras(sel, tmp_path / "c.safetensors"))
    assert f.selector == sel.config.to_dict() and f.selector["csi_keys"] is True
    assert f.weights["key_conv_weight"].shape[:2] == (8, 2 * 3 + 1)  # [d, 2L+1, ...]
    np.testing.assert_array_equal(f.weights["key_conv_weight"], sel.state_dict()["key_net.0.weight"].numpy())
    assert {k: v.shape for k, v in f.weights.items()} == selector_file.weight_shapes(f.selector, M)
    # A checkpoint loads (its forward pass is checked with report phases) and exports alike.
    ckpt = save_selector(sel, tmp_path / "selector.safetensors")
    g = read_selector_file(export_keras(ckpt, tmp_path / "k.safetensors"))
    assert g.selector == f.selector and set(g.weights) == set(f.weights)
    # RSRP-only keys: the file has no csi_keys field (version-1 files are unchanged).
    assert "csi_keys" not in read_selector_file(export_selector_keras(_selector(**cfg), tmp_path / "r.safetensors")
                                                ).selector


@pytest.mark.parametrize("case", ["ula-orthogonal", "ula-fewer-than-n", "ula-more-than-n", "upa-least-squares",
                                  "random-codebook"])
def test_reconstruction_matrix_equals_the_torch_selectors(case):
    # The Keras layer computes T = V_A V_B⁺ with NumPy (selector_file.reconstruction_matrix), the torch selector
    # with torch.linalg.pinv: both in float64, rounded to complex64. They must agree to complex64 rounding.
    from beamattn.wireless.arrays import UPA
    from beamattn.wireless.selector import reconstruction_matrix as torch_reconstruction

    beams = BEAMS
    measured = torch.zeros(M, dtype=torch.bool)
    if case == "ula-orthogonal":
        measured[1::4] = True  # J = N = 8
    elif case == "ula-fewer-than-n":
        measured[[0, 5, 9, 20, 31]] = True  # J = 5 < N: V_B V_B⁺ = I
    elif case == "ula-more-than-n":
        measured[::2] = True  # J = 16 > N, rank N
    elif case == "upa-least-squares":
        beams = dft_codebook(UPA(4, 4), (2, 2)).beams  # [64, 16], grid 8x8
        measured = torch.zeros(beams.shape[0], dtype=torch.bool)
        measured[1::2] = True  # J = 32, rank 16
    else:
        g = torch.Generator().manual_seed(5)
        beams = torch.randn(20, 6, dtype=torch.complex64, generator=g)
        beams = beams / torch.linalg.vector_norm(beams, dim=-1, keepdim=True)
        measured = torch.zeros(20, dtype=torch.bool)
        measured[[1, 4, 7, 11]] = True
    ref = torch_reconstruction(beams, measured).numpy()  # [M, J] complex64
    got = selector_file.reconstruction_matrix(beams.numpy(), measured.nonzero().flatten().tolist())
    assert got.dtype == np.complex64 and got.shape == ref.shape == (beams.shape[0], int(measured.sum()))
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(got, ref, rtol=0, atol=2 * eps * np.abs(ref).max())
    # And what T is: on exact reports y = V_B h of the channel space, T y = V_A V_B⁺ V_B h (= V_A h at rank N).
    v = beams.numpy().astype(np.complex128)
    v_b = v[measured.numpy()]
    if case in ("ula-orthogonal", "ula-more-than-n", "upa-least-squares"):
        h = np.random.default_rng(0).normal(size=(3, v.shape[1])) + 0j  # [3, N]
        np.testing.assert_allclose((h @ v_b.T) @ got.T, h @ v.T, atol=1e-5 * np.abs(h @ v.T).max())
    if case == "ula-fewer-than-n":
        np.testing.assert_allclose(got[measured.numpy()], np.eye(5), atol=1e-6)  # a measured beam is its report


def test_transformer_defaults_match_the_torch_selector_config():
    defaults = {f.name: f.default for f in dataclasses.fields(SelectorConfig)}
    assert selector_file.TRANSFORMER_FIELDS == {k: defaults[k] for k in selector_file.TRANSFORMER_FIELDS}
    from beamattn.wireless import selector as torch_selector

    assert tuple(selector_file.TRANSFORMER_FIELDS) == torch_selector.TRANSFORMER_FIELDS
    assert selector_file.ARCHS == torch_selector.ARCHS


def test_export_keras_of_a_transformer_checkpoint(tmp_path):
    sel = _selector(arch="transformer", layers=1, heads=2, query="context", grid=(4, 8))
    ckpt = save_selector(sel, tmp_path / "selector.safetensors")
    f = read_selector_file(export_keras(ckpt, tmp_path / "keras.safetensors"))
    assert f.selector == sel.config.to_dict()
    np.testing.assert_array_equal(f.weights["block0_pos_v_table"], sel.blocks[0].pos.v_table.weight.detach().numpy())


def test_export_refuses_a_transformer_whose_forward_pass_overflows(tmp_path):
    sel = _selector(arch="transformer", layers=1, heads=2, query="context")
    with torch.no_grad():
        sel.blocks[0].attn.q_proj.weight.fill_(1e30)  # scores of +-inf: NaN attention weights
        sel.blocks[0].attn.k_proj.weight.fill_(1e30)
    with pytest.raises(ValueError, match="forward pass overflows.*'blocks.0.attn"):
        export_selector_keras(sel, tmp_path / "t.safetensors")
    assert not (tmp_path / "t.safetensors").exists()


def test_export_of_an_untrained_selector_has_no_weights(tmp_path):
    sel = _selector(learned=False, normalizer="softmax", temperature=3.0)
    f = read_selector_file(export_selector_keras(sel, tmp_path / "u.safetensors"))
    assert f.weights == {} and f.selector["learned"] is False and f.set_b == SET_B.nonzero().flatten().tolist()


def test_export_refuses_another_suffix(tmp_path):
    with pytest.raises(ValueError, match="'--out' = .*expected a file name ending in .safetensors"):
        export_selector_keras(_selector(), tmp_path / "sel.h5")


def test_export_keras_from_a_checkpoint(tmp_path):
    sel = _selector(normalizer="sparsemax", mode="soft")
    ckpt = save_selector(sel, tmp_path / "selector.safetensors", extra={"scenario": "test"})
    f = read_selector_file(export_keras(ckpt, tmp_path / "keras.safetensors"))
    np.testing.assert_array_equal(f.codebook, BEAMS.numpy())  # the ULA DFT codebook, M/N = 4x oversampled
    np.testing.assert_array_equal(f.weights["query"], sel.query.detach().numpy())
    assert f.selector == sel.config.to_dict() and "stored in the checkpoint" in f.metadata["source"]


def test_export_keras_takes_a_non_dft_codebook_from_the_checkpoint(tmp_path):
    # A codebook no rule could rebuild (random unit-norm beams): the checkpoint carries it.
    g = torch.Generator().manual_seed(3)
    beams = torch.randn(12, 5, dtype=torch.complex64, generator=g)
    beams = beams / torch.linalg.vector_norm(beams, dim=-1, keepdim=True)
    measured = torch.zeros(12, dtype=torch.bool)
    measured[::3] = True
    torch.manual_seed(0)
    sel = AttentionSelector(SelectorConfig(d_model=8, history=2, neighbours=1), beams, measured)
    ckpt = save_selector(sel, tmp_path / "selector.safetensors")
    f = read_selector_file(export_keras(ckpt, tmp_path / "keras.safetensors"))
    np.testing.assert_array_equal(f.codebook, beams.numpy())


def test_export_keras_of_an_old_checkpoint_rebuilds_the_ula_codebook(tmp_path):
    # Checkpoints written before codebooks were stored: the ULA DFT codebook with M/N oversampling.
    from safetensors.torch import load_file, safe_open, save_file

    sel = _selector(normalizer="sparsemax", mode="soft")
    ckpt = save_selector(sel, tmp_path / "selector.safetensors")
    with safe_open(str(ckpt), framework="pt") as fh:
        meta = fh.metadata()
    old = {k: v for k, v in load_file(str(ckpt)).items() if not k.startswith("codebook.")}
    save_file(old, str(tmp_path / "old.safetensors"), metadata=meta)
    f = read_selector_file(export_keras(tmp_path / "old.safetensors", tmp_path / "keras.safetensors"))
    np.testing.assert_array_equal(f.codebook, BEAMS.numpy())
    assert "ULA DFT" in f.metadata["source"]


def test_export_keras_with_a_scenario_codebook(tmp_path):
    beams = dft_codebook(ULA(16), 4).beams  # vehicular-60: 16 antennas, 64 beams
    measured = torch.zeros(beams.shape[0], dtype=torch.bool)
    measured[::4] = True
    torch.manual_seed(0)
    sel = AttentionSelector(SelectorConfig(d_model=8), beams, measured)
    ckpt = save_selector(sel, tmp_path / "selector.safetensors")
    scenario = ROOT / "scenarios" / "vehicular-60.toml"
    f = read_selector_file(export_keras(ckpt, tmp_path / "keras.safetensors", scenario=scenario))
    np.testing.assert_array_equal(f.codebook, beams.numpy())
    # A checkpoint for another codebook size is refused.
    small = save_selector(_selector(), tmp_path / "small.safetensors")
    with pytest.raises(CheckpointError, match="made for num_beams = 32, num_ant = 8, but scenario"):
        export_keras(small, tmp_path / "k2.safetensors", scenario=scenario)


def test_missing_and_corrupt_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="file not found"):
        export_keras(tmp_path / "nope.safetensors", tmp_path / "k.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        export_keras(junk, tmp_path / "k.safetensors")
    # A Keras selector file is not a checkpoint (and vice versa: the reader names the converter).
    keras_file = export_selector_keras(_selector(), tmp_path / "k.safetensors")
    with pytest.raises(CheckpointError, match="no 'beamattn_config' metadata"):
        export_keras(keras_file, tmp_path / "k2.safetensors")
    ckpt = save_selector(_selector(), tmp_path / "selector.safetensors")
    with pytest.raises(SelectorFileError, match="torch checkpoint"):
        read_selector_file(ckpt)
    assert not (tmp_path / "k2.safetensors").exists()


def test_cli_export(tmp_path, capsys):
    ckpt = save_selector(_selector(), tmp_path / "selector.safetensors")
    out = tmp_path / "keras.safetensors"
    assert main(["export", "--format", "keras", str(ckpt), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert read_selector_file(out).num_beams == M
    # Bad input: exit code 2 and one line naming the problem.
    assert main(["export", "--format", "keras", str(tmp_path / "missing.safetensors"), "--out",
                 str(tmp_path / "other.safetensors")]) == 2  # (onto `out` it would be refused: it exists)
    err = capsys.readouterr().err.strip()
    assert err.startswith("beamattn export: error:") and "file not found" in err and len(err.splitlines()) == 1
    assert main(["export", "--format", "keras", str(ckpt), "--out", str(tmp_path / "x.h5")]) == 2
    assert ".safetensors" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["export", "--format", "onnx", str(ckpt), "--out", str(out)])
    assert e.value.code == 2 and "invalid choice: 'onnx'" in capsys.readouterr().err


def test_file_format_module_imports_neither_torch_nor_tensorflow():
    code = ("import sys, beamattn.keras, beamattn.keras.selector_file\n"
            "heavy = [m for m in ('torch', 'tensorflow', 'sionna') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


# --------------------------------------------------------------------------- parity fixtures


def _fixture_script():
    return load_script("make_keras_fixtures")


# Regenerated float32 numbers differ by a few ulps between CPUs (vectorised vs scalar kernels, FMA), BLAS builds
# and thread counts: measured up to 17 ulps of the tensor's largest entry (weights of learned-sparsemax-soft-cophase
# with ATEN_CPU_CAPABILITY=default against fixtures written on another CPU). The comparison allows 256 ulps of float32
# relative to each entry (rtol ≈ 3.1e-5) plus 256 ulps of the tensor's largest magnitude (atol): the entries are sums
# of terms of that size (beams, weights, logits), so their rounding error follows it, also next to zero.
# A real change of the selector or its inputs moves them by far more (a weight of 1e-3 out of ~0.4 fails).
FIXTURE_ULPS = 256


def assert_float32_close(new: np.ndarray, old: np.ndarray, ulps: int = FIXTURE_ULPS, err_msg: str = "") -> None:
    """``|new - old| <= ulps·eps·(|old| + max|old|)`` entrywise, NaN where ``old`` has NaN (eps of ``old``'s dtype)."""
    eps = float(np.finfo(old.dtype).eps)
    finite = np.isfinite(old)
    scale = float(np.abs(old[finite]).max()) if finite.any() else 0.0
    np.testing.assert_allclose(new, old, rtol=ulps * eps, atol=ulps * eps * scale, equal_nan=True, err_msg=err_msg)


def test_float32_tolerance_accepts_ulps_and_rejects_real_changes():
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, 1000).astype(np.float32)
    eps = np.finfo(np.float32).eps
    assert_float32_close(x * np.float32(1 + 20 * eps), x)  # 20 ulps relative: accepted
    assert_float32_close(x + np.float32(100 * eps * np.abs(x).max()), x)  # 100 ulps of the scale, near zero too
    for bad in (x * np.float32(1 + 1e-3), x + np.float32(1e-3 * np.abs(x).max()), np.roll(x, 1)):
        with pytest.raises(AssertionError):
            assert_float32_close(bad, x)
    y = x.copy()
    y[::7] = np.nan
    assert_float32_close(y, y)  # NaN entries (the unmeasured beams' reports) must stay NaN
    with pytest.raises(AssertionError):
        assert_float32_close(np.nan_to_num(y), y)


@pytest.mark.crossrun
def test_committed_fixtures_equal_fresh_ones(tmp_path):
    fresh = {p.name: p for p in _fixture_script().make_fixtures(tmp_path)}
    committed = {p.name: p for p in FIXTURES.glob("*.safetensors")}
    assert set(committed) == set(fresh), "run: .venv/bin/python scripts/make_keras_fixtures.py"
    assert sum(p.stat().st_size for p in committed.values()) < 1_000_000
    for name, path in fresh.items():
        new, old = load_file(str(path)), load_file(str(committed[name]))
        assert set(new) == set(old), name
        for key in new:
            assert new[key].dtype == old[key].dtype and new[key].shape == old[key].shape, (name, key)
            if np.issubdtype(new[key].dtype, np.integer):
                np.testing.assert_array_equal(new[key], old[key], err_msg=f"{name}: {key}")
            else:
                assert_float32_close(new[key], old[key], err_msg=f"{name}: {key}")
        meta_new, meta_old = _metadata(path), _metadata(committed[name])
        meta_new.pop("beamattn_version", None)
        meta_old.pop("beamattn_version", None)
        assert meta_new == meta_old, name


@pytest.mark.crossrun
def test_fixtures_are_valid_selector_files_with_consistent_outputs():
    for path in sorted(FIXTURES.glob("*.selector.safetensors")):
        f = read_selector_file(path)
        io = load_file(str(path).replace(".selector.", ".io."))
        assert io["weights"].shape[-1] == f.num_beams and io["beams_real"].shape[-1] == f.num_ant
        assert f.set_b != list(range(f.num_beams))  # Set B is a proper subset
        np.testing.assert_allclose(io["weights"].sum(-1), 1.0, atol=1e-5)
        beams = io["beams_real"] + 1j * io["beams_imag"]
        np.testing.assert_allclose(np.linalg.norm(beams, axis=-1), 1.0, atol=1e-5)
        assert ("phase" in io) or ("phase_history" in io and f.selector.get("phase_predict")) \
            or not f.selector["cophase"]
        if "phase_history" in io:  # a phase history of the same reports (phase_predict)
            assert io["phase_history"].shape == io["rsrp_db"].shape and f.selector.get("phase_predict")
