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
from beamattn.wireless.keras_export import export_keras, export_selector_keras
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
        assert ("phase" in io) or not f.selector["cophase"]
