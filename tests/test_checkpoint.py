"""Tests of beamattn.wireless.checkpoint: safetensors round trip, refusal of foreign or broken files, no pickle.

design.md §5: checkpoints load weights only (never unpickle code) and are validated at the boundary with
errors that name the field.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from beamattn.wireless.arrays import ULA
from beamattn.wireless.channels.base import ChannelSample
from beamattn.wireless.checkpoint import CheckpointError, load_selector, read_checkpoint_config, save_selector
from beamattn.wireless.codebooks import dft_codebook
from beamattn.wireless.measurement import MeasurementConfig, build_episode
from beamattn.wireless.policies import make_policy
from beamattn.wireless.selector import AttentionSelector, SelectorConfig

N = 8
BEAMS = dft_codebook(ULA(N), 2).beams  # [16, 8] complex64
M = BEAMS.shape[0]


def _mask(ids) -> torch.Tensor:
    out = torch.zeros(M, dtype=torch.bool)
    out[list(ids)] = True
    return out


ALL = torch.ones(M, dtype=torch.bool)
SET_B = _mask(range(0, M, 2))


def _selector(cfg: SelectorConfig | None = None, measured: torch.Tensor = SET_B, seed: int = 0) -> AttentionSelector:
    torch.manual_seed(seed)
    sel = AttentionSelector(cfg or SelectorConfig(history=3, cophase=True), BEAMS, measured)
    with torch.no_grad():  # weights unlike a fresh initialisation, so a silent re-init would be caught
        for p in sel.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return sel.eval()


def _inputs(seed: int, history: int = 3):
    g = torch.Generator().manual_seed(seed)
    rsrp = torch.randn(4, 5, history, M, generator=g) * 6 - 3
    phase = torch.rand(4, 5, M, generator=g) * 2 * math.pi
    return rsrp, phase


def _header(path: Path) -> dict:
    """The safetensors header: 8-byte little-endian length, then JSON."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length])


def _write(path: Path, state: dict, meta: dict | str | None) -> Path:
    value = meta if isinstance(meta, str) or meta is None else json.dumps(meta)
    save_file(state, str(path), metadata=None if value is None else {"beamattn_config": value})
    return path


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("cfg,measured", [
    (SelectorConfig(history=3, cophase=True), SET_B),
    (SelectorConfig(history=3, normalizer="softmax", mode="topk", topk=3), ALL),
    (SelectorConfig(history=3, normalizer="entmax15", temperature=2.0), _mask([1, 5, 9, 13])),
])
def test_save_load_gives_identical_outputs(tmp_path, cfg, measured):
    sel = _selector(cfg, measured)
    path = save_selector(sel, tmp_path / "sel.safetensors")
    assert path == tmp_path / "sel.safetensors" and path.is_file()
    back = load_selector(path, BEAMS, measured)
    assert back.config == sel.config
    assert not back.training
    for name, p in sel.state_dict().items():
        assert torch.equal(back.state_dict()[name], p), name
    for seed in range(3):
        rsrp, phase = _inputs(seed)
        a, b = sel(rsrp, phase), back(rsrp, phase)
        assert torch.equal(a.weights, b.weights) and torch.equal(a.beams, b.beams)
        assert torch.equal(a.index, b.index)


def test_untrained_selector_round_trips(tmp_path):
    sel = AttentionSelector(SelectorConfig(learned=False, temperature=2.0), BEAMS, SET_B)
    path = save_selector(sel, tmp_path / "untrained.safetensors")
    back = load_selector(path, BEAMS, SET_B)
    assert back.config == sel.config
    rsrp, _ = _inputs(0, history=4)
    assert torch.equal(back(rsrp).beams, sel(rsrp).beams)


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "sub" / "sel.safetensors"
    save_selector(_selector(seed=0), path)
    save_selector(_selector(seed=1), path)  # overwrite in place
    assert sorted(os.listdir(path.parent)) == ["sel.safetensors"]  # no temporary file left behind
    back = load_selector(path, BEAMS, SET_B)
    rsrp, phase = _inputs(0)
    assert torch.equal(back(rsrp, phase).weights, _selector(seed=1)(rsrp, phase).weights)


def test_config_metadata_and_extra_fields(tmp_path):
    sel = _selector()
    path = save_selector(sel, tmp_path / "sel.safetensors", extra={"scenario": "umi-test", "seed": 7})
    meta = read_checkpoint_config(path)
    assert meta["selector"] == sel.config.to_dict()
    assert meta["num_beams"] == M and meta["num_ant"] == N
    assert meta["set_b"] == SET_B.nonzero().flatten().tolist()
    assert meta["scenario"] == "umi-test" and meta["seed"] == 7


# --------------------------------------------------------------------------- the file holds tensors and JSON only


def test_file_is_plain_safetensors_with_json_metadata(tmp_path):
    sel = _selector()
    path = save_selector(sel, tmp_path / "sel.safetensors")
    data = path.read_bytes()
    assert not data.startswith(b"\x80") and not data.startswith(b"PK")  # not a pickle, not a torch zip
    header = _header(path)
    meta = header.pop("__metadata__")
    assert set(meta) == {"beamattn_config"} and all(isinstance(v, str) for v in meta.values())
    json.loads(meta["beamattn_config"])
    assert set(header) == set(sel.state_dict()) | {"codebook.real", "codebook.imag"}
    for name, entry in header.items():
        assert entry["dtype"] in {"F32", "F64", "F16", "BF16"}, name
        expected = sel.state_dict()[name].shape if name in sel.state_dict() else BEAMS.shape
        assert entry["shape"] == list(expected), name
    # the tensors fill the rest of the file exactly
    (length,) = struct.unpack("<Q", data[:8])
    assert max(e["data_offsets"][1] for e in header.values()) == len(data) - 8 - length


def test_loading_never_unpickles(tmp_path, monkeypatch):
    path = save_selector(_selector(), tmp_path / "sel.safetensors")

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint must be loaded without pickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    back = load_selector(path, BEAMS, SET_B)
    rsrp, phase = _inputs(1)
    assert torch.equal(back(rsrp, phase).beams, _selector()(rsrp, phase).beams)


class _Trap:
    """Unpickling this object creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["pickle", "torch"])
def test_pickled_files_are_refused_without_running_them(tmp_path, writer):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.safetensors"
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"query": _Trap(marker)}))
    else:
        torch.save({"query": _Trap(marker)}, path)
    with pytest.raises(CheckpointError):
        load_selector(path, BEAMS, SET_B)
    assert not marker.exists()


# --------------------------------------------------------------------------- foreign checkpoints


def test_checkpoint_for_another_codebook_size_is_refused(tmp_path):
    path = save_selector(_selector(), tmp_path / "sel.safetensors")
    other = dft_codebook(ULA(N), 1).beams  # M = 8
    with pytest.raises(CheckpointError, match="num_beams"):
        load_selector(path, other, torch.ones(8, dtype=torch.bool))


def test_checkpoint_stores_its_codebook_and_refuses_another_of_the_same_size(tmp_path):
    from safetensors.torch import load_file

    path = save_selector(_selector(), tmp_path / "sel.safetensors")
    state = load_file(str(path))
    torch.testing.assert_close(torch.complex(state["codebook.real"], state["codebook.imag"]), BEAMS)
    rotated = BEAMS.roll(1, dims=0)  # the same beams in another order: same M, N, different values
    with pytest.raises(CheckpointError, match=r"made for another codebook of the same size \[M=16, N=8\]"):
        load_selector(path, rotated, SET_B)
    # A change within float32 storage error is the same codebook.
    load_selector(path, BEAMS * (1 + 1e-7), SET_B)


def test_checkpoint_for_another_array_is_refused(tmp_path):
    path = save_selector(_selector(), tmp_path / "sel.safetensors")
    other = dft_codebook(ULA(4), 4).beams  # M = 16, N = 4
    with pytest.raises(CheckpointError, match="num_ant"):
        load_selector(path, other, SET_B)


@pytest.mark.parametrize("measured", [ALL, _mask(range(0, M, 4)), _mask(range(1, M, 2))])
def test_checkpoint_for_another_set_b_is_refused(tmp_path, measured):
    path = save_selector(_selector(), tmp_path / "sel.safetensors")
    with pytest.raises(CheckpointError, match="set_b"):
        load_selector(path, BEAMS, measured)


def test_evaluation_overrides_mode_and_topk_only(tmp_path):
    sel = _selector(SelectorConfig(history=3, normalizer="softmax"))
    path = save_selector(sel, tmp_path / "sel.safetensors")
    hard = load_selector(path, BEAMS, SET_B, overrides={"mode": "hard"})
    rsrp, _ = _inputs(2)
    out = hard(rsrp)
    assert torch.equal(out.weights, sel(rsrp).weights)  # same weights: only the use of them changes
    torch.testing.assert_close(out.beams, BEAMS[out.index], rtol=0, atol=1e-6)
    topk = load_selector(path, BEAMS, SET_B, overrides={"mode": "topk", "topk": 2})
    assert bool((topk(rsrp).active <= 2).all())
    with pytest.raises(CheckpointError, match="normalizer"):
        load_selector(path, BEAMS, SET_B, overrides={"normalizer": "sparsemax"})
    with pytest.raises(CheckpointError, match="topk|bad selector config"):
        load_selector(path, BEAMS, SET_B, overrides={"mode": "topk", "topk": 0})


# --------------------------------------------------------------------------- broken files


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_selector(tmp_path / "nope.safetensors", BEAMS, SET_B)


@pytest.mark.parametrize("keep", [0, 4, 8, 20, "header-5", "header", "end-10", "end-1"])
def test_truncated_file_is_refused(tmp_path, keep):
    data = save_selector(_selector(), tmp_path / "sel.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    cut = {"header-5": 8 + length - 5, "header": 8 + length, "end-10": len(data) - 10,
           "end-1": len(data) - 1}.get(keep, keep)
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:cut])
    with pytest.raises(CheckpointError):
        load_selector(path, BEAMS, SET_B)


@pytest.mark.parametrize("content", [b"\x00" * 64, b"not a checkpoint at all", b"\xff" * 8 + b"{}",
                                     struct.pack("<Q", 2) + b"{}", struct.pack("<Q", 5) + b"[1,2]"])
def test_garbage_file_is_refused(tmp_path, content):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_selector(path, BEAMS, SET_B)


def test_random_bytes_are_refused(tmp_path):
    g = torch.Generator().manual_seed(0)
    for i in range(5):
        path = tmp_path / f"rand{i}.safetensors"
        path.write_bytes(bytes(torch.randint(0, 256, (256,), generator=g, dtype=torch.uint8).tolist()))
        with pytest.raises(CheckpointError):
            load_selector(path, BEAMS, SET_B)


def _valid_meta(sel: AttentionSelector) -> dict:
    return {"selector": sel.config.to_dict(), "num_beams": M, "num_ant": N,
            "set_b": sel.measured.nonzero().flatten().tolist()}


def test_safetensors_without_our_metadata_is_refused(tmp_path):
    sel = _selector()
    path = _write(tmp_path / "bare.safetensors", dict(sel.state_dict()), None)
    with pytest.raises(CheckpointError, match="beamattn_config"):
        load_selector(path, BEAMS, SET_B)


@pytest.mark.parametrize("meta", ["{not json", "", "null", "[1, 2, 3]", '"a string"', "42"])
def test_corrupt_or_non_object_metadata_is_refused(tmp_path, meta):
    sel = _selector()
    path = _write(tmp_path / "meta.safetensors", dict(sel.state_dict()), meta)
    with pytest.raises(CheckpointError):
        load_selector(path, BEAMS, SET_B)


@pytest.mark.parametrize("drop", ["selector", "num_beams", "set_b"])
def test_metadata_missing_a_field_is_refused(tmp_path, drop):
    sel = _selector()
    meta = _valid_meta(sel)
    del meta[drop]
    path = _write(tmp_path / "partial.safetensors", dict(sel.state_dict()), meta)
    with pytest.raises(CheckpointError, match=drop):
        load_selector(path, BEAMS, SET_B)


@pytest.mark.parametrize("field,value", [("temperature", -1.0), ("normalizer", "relu"), ("unknown_field", 3)])
def test_bad_selector_config_in_metadata_is_refused(tmp_path, field, value):
    sel = _selector()
    meta = _valid_meta(sel)
    meta["selector"] = {**meta["selector"], field: value}
    path = _write(tmp_path / "badcfg.safetensors", dict(sel.state_dict()), meta)
    with pytest.raises(CheckpointError, match=field):
        load_selector(path, BEAMS, SET_B)


def test_missing_or_misshapen_weights_are_refused(tmp_path):
    sel = _selector()
    state = dict(sel.state_dict())
    name = sorted(state)[0]
    missing = {k: v for k, v in state.items() if k != name}
    with pytest.raises(CheckpointError, match="weights"):
        load_selector(_write(tmp_path / "missing.safetensors", missing, _valid_meta(sel)), BEAMS, SET_B)
    extra = {**state, "surplus": torch.zeros(3)}
    with pytest.raises(CheckpointError, match="surplus"):
        load_selector(_write(tmp_path / "extra.safetensors", extra, _valid_meta(sel)), BEAMS, SET_B)
    bad = {**state, "query": torch.zeros(state["query"].numel() + 1)}
    with pytest.raises(CheckpointError, match="query"):
        load_selector(_write(tmp_path / "shape.safetensors", bad, _valid_meta(sel)), BEAMS, SET_B)


# --------------------------------------------------------------------------- as a policy


def _episode(dtype: torch.dtype):
    g = torch.Generator().manual_seed(3)
    h = torch.randn(2, 60, N, generator=g, dtype=torch.complex128).to(dtype)
    sample = ChannelSample(h=h, positions=torch.zeros(2, 60, 3), times=torch.arange(60) * 0.005,
                           los=torch.zeros(2, 60, dtype=torch.bool))
    cfg = MeasurementConfig(snr_db=10.0, quantization_db=1.0, set_b=8, with_phase=True, history=4)
    return build_episode(sample, dft_codebook(ULA(N), 2, dtype=dtype), None, cfg, 10.0, seed=1)


def test_attention_policy_from_a_checkpoint_equals_the_saved_selector(tmp_path):
    sel = _selector()
    path = save_selector(sel, tmp_path / "sel.safetensors")
    ep = _episode(torch.complex64)
    a = make_policy("attention", config=sel.config, checkpoint=str(path)).decide(ep)
    b = make_policy("attention", selector=sel).decide(ep)
    assert torch.equal(a.index, b.index) and torch.equal(a.weights, b.weights)
    torch.testing.assert_close(a.beams, b.beams, rtol=0, atol=0)


def test_attention_policy_from_a_checkpoint_runs_on_a_double_precision_episode(tmp_path):
    """A complex128 channel (GeometricConfig(dtype=torch.complex128)) gives complex128 beams and float64
    reports; the policy loads the float32 checkpoint for that codebook and must still decide."""
    sel = _selector()
    path = save_selector(sel, tmp_path / "sel.safetensors")
    ep = _episode(torch.complex128)
    dec = make_policy("attention", config=sel.config, checkpoint=str(path)).decide(ep)
    ref = make_policy("attention", selector=sel).decide(_episode(torch.complex64))
    assert torch.equal(dec.index, ref.index)
