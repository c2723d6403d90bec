"""beamattn.keras in a TensorFlow environment (``make test-keras``; skipped where TensorFlow is missing).

The reference is the torch selector: ``tests/keras/fixtures`` holds its outputs on random
inputs (``scripts/make_keras_fixtures.py``; ``tests/test_keras_export.py`` keeps them fresh).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from safetensors.numpy import load_file, save_file  # noqa: E402

from beamattn.keras import AttentionSelectorLayer, SelectorFileError, entmax15, softmax, sparsemax  # noqa: E402
from beamattn.keras.selector_file import read_selector_file  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = sorted(p.name[: -len(".io.safetensors")] for p in FIXTURES.glob("*.io.safetensors"))
ROOT = Path(__file__).resolve().parents[2]
# The parity the issue asks for: 1e-5 on beams and weights (entries of size <= 1: ~84 float32 ulps, room for TF vs
# torch rounding on any CPU, the fixtures being written on another), relative to the size for the entropy (up to
# ln M ≈ 4.2 nats, where 1e-5 absolute would be only ~20 ulps).
TOL = 1e-5


def _load(name: str) -> tuple[AttentionSelectorLayer, dict[str, np.ndarray]]:
    return AttentionSelectorLayer.from_file(FIXTURES / f"{name}.selector.safetensors"), \
        load_file(str(FIXTURES / f"{name}.io.safetensors"))


def _call(layer: AttentionSelectorLayer, io: dict) -> dict[str, np.ndarray]:
    out = layer(io["rsrp_db"], io.get("phase"))
    return {k: v.numpy() for k, v in out.items()}


# --------------------------------------------------------------------------- parity with torch


def test_fixtures_cover_every_normalizer_mode_and_kind():
    seen = set()
    cophase = set()
    for name in NAMES:
        cfg = read_selector_file(FIXTURES / f"{name}.selector.safetensors").selector
        seen.add((cfg["normalizer"], cfg["mode"], cfg["learned"]))
        cophase.add(cfg["cophase"])
    assert seen == set(itertools.product(("softmax", "sparsemax", "entmax15"), ("soft", "hard", "topk"),
                                         (True, False)))
    assert cophase == {True, False}


def test_upa_fixtures_use_2d_keys():
    # UPA grids of beams: a square grid and a non-square one whose kernel is clipped to the grid.
    grids = {}
    for name in NAMES:
        f = read_selector_file(FIXTURES / f"{name}.selector.safetensors")
        if f.selector.get("grid") is not None:
            grids[tuple(f.selector["grid"])] = f.weights["key_conv_weight"].shape
    assert grids == {(8, 8): (16, 5, 5, 5), (4, 16): (32, 5, 3, 9)}


@pytest.mark.crossrun
@pytest.mark.parametrize("name", NAMES)
def test_same_outputs_as_the_torch_selector(name):
    layer, io = _load(name)
    out = _call(layer, io)
    ref_beams = io["beams_real"] + 1j * io["beams_imag"]
    assert out["beams"].dtype == np.complex64 and out["beams"].shape == ref_beams.shape
    assert np.abs(out["beams"] - ref_beams).max() <= TOL
    assert out["weights"].shape == io["weights"].shape
    assert np.abs(out["weights"] - io["weights"]).max() <= TOL
    np.testing.assert_allclose(out["entropy"], io["entropy"], rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(out["index"], io["index"])
    np.testing.assert_array_equal(out["active"], io["active"])


def test_no_torch_in_the_import_chain():
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from safetensors.numpy import load_file\n"
        "from beamattn.keras import AttentionSelectorLayer\n"
        f"layer = AttentionSelectorLayer.from_file({str(FIXTURES / (NAMES[0] + '.selector.safetensors'))!r})\n"
        f"io = load_file({str(FIXTURES / (NAMES[0] + '.io.safetensors'))!r})\n"
        "out = layer(io['rsrp_db'], io.get('phase'))\n"
        "assert np.isfinite(out['weights'].numpy()).all()\n"
        "heavy = [m for m in ('torch', 'sionna') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


# --------------------------------------------------------------------------- normalizers


def _simplex_projection_brute_force(z: np.ndarray) -> np.ndarray:
    """argmin_{p in simplex} ||p - z||² by trying every support (float64; finite entries only)."""
    finite = np.flatnonzero(np.isfinite(z))
    best, best_dist = None, np.inf
    for size in range(1, len(finite) + 1):
        for support in itertools.combinations(finite, size):
            s = list(support)
            tau = (z[s].sum() - 1) / size
            p = np.zeros_like(z)
            p[s] = z[s] - tau
            if (p[s] >= 0).all():
                dist = np.sum((p[finite] - z[finite]) ** 2)
                if dist < best_dist:
                    best, best_dist = p, dist
    return best


def _entmax15_bisection(x: np.ndarray) -> np.ndarray:
    """1.5-entmax by bisection on tau: p = max(x/2 - tau, 0)², sum p = 1 (float64)."""
    z = np.where(np.isfinite(x), x / 2, -np.inf)
    lo, hi = z.max() - 1, z.max()
    for _ in range(200):
        tau = (lo + hi) / 2
        if np.sum(np.maximum(z - tau, 0) ** 2) > 1:
            lo = tau
        else:
            hi = tau
    return np.maximum(z - (lo + hi) / 2, 0) ** 2


def _random_rows(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    x = rng.normal(0.0, rng.uniform(0.2, 3.0, (rows, 1)), (rows, n))
    x[rng.random((rows, n)) < 0.2] = -np.inf  # excluded entries
    x[np.isinf(x).all(-1), 0] = 0.0  # at least one finite entry per row
    return x.astype(np.float32)


def test_sparsemax_is_the_projection_onto_the_simplex():
    rng = np.random.default_rng(1)
    x = _random_rows(rng, 200, 7)
    p = sparsemax(tf.constant(x)).numpy()
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
    ref = np.stack([_simplex_projection_brute_force(row.astype(np.float64)) for row in x])
    np.testing.assert_allclose(p, ref, atol=1e-6)
    assert (p[np.isinf(x)] == 0).all()
    assert (p == 0).sum() > np.isinf(x).sum()  # exact zeros beyond the excluded entries


def test_sparsemax_and_entmax_give_zeros_for_a_row_of_minus_inf():
    x = tf.constant([[-np.inf] * 5, [0.0, 1.0, -np.inf, 2.0, 0.5]], tf.float32)
    for fn in (sparsemax, entmax15):
        p = fn(x).numpy()
        np.testing.assert_array_equal(p[0], 0.0)
        np.testing.assert_allclose(p[1].sum(), 1.0, atol=1e-6)


def test_entmax15_matches_a_bisection_reference():
    rng = np.random.default_rng(2)
    x = _random_rows(rng, 200, 9)
    p = entmax15(tf.constant(x)).numpy()
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    ref = np.stack([_entmax15_bisection(row.astype(np.float64)) for row in x])
    np.testing.assert_allclose(p, ref, atol=1e-5)
    assert (p == 0).sum() > np.isinf(x).sum()


def test_softmax_is_tf_nn_softmax():
    x = tf.constant(np.random.default_rng(3).normal(0, 2, (10, 12)), tf.float32)
    np.testing.assert_array_equal(softmax(x).numpy(), tf.nn.softmax(x, axis=-1).numpy())


def test_untrained_softmax_weights_are_softmax_of_set_b_rsrp_over_temperature():
    name = next(n for n in NAMES if n.startswith("untrained-softmax-soft"))
    layer, io = _load(name)
    t = layer.selector["temperature"]
    w = _call(layer, io)["weights"]
    set_b = layer.set_b
    latest = io["rsrp_db"][..., -1, :]
    ref = tf.nn.softmax(latest[..., set_b] / t, axis=-1).numpy()
    np.testing.assert_allclose(w[..., set_b], ref, atol=1e-6)
    unmeasured = np.setdiff1d(np.arange(layer.num_beams), set_b)
    assert (w[..., unmeasured] == 0).all()


# --------------------------------------------------------------------------- the layer


@pytest.mark.parametrize("name", NAMES)
def test_beams_have_unit_norm_and_weights_sum_to_one(name):
    layer, io = _load(name)
    rng = np.random.default_rng(4)
    rsrp = io["rsrp_db"] + rng.normal(0.0, 3.0, io["rsrp_db"].shape).astype(np.float32)
    out = _call(layer, {**io, "rsrp_db": rsrp})
    np.testing.assert_allclose(np.linalg.norm(out["beams"], axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out["weights"].sum(-1), 1.0, atol=1e-5)
    assert (out["weights"] >= 0).all()
    if layer.selector["mode"] == "topk":
        assert (out["active"] <= layer.selector["topk"]).all()
    if layer.selector["mode"] == "hard":
        codebook = layer.codebook_real.numpy() + 1j * layer.codebook_imag.numpy()
        np.testing.assert_allclose(out["beams"], codebook[out["index"]], atol=1e-6)


def test_under_tf_function_with_an_unknown_batch_size():
    for name in (NAMES[0], next(n for n in NAMES if "cophase" in n)):
        layer, io = _load(name)
        flat = io["rsrp_db"].reshape(-1, *io["rsrp_db"].shape[-2:])
        eager = _call(layer, {"rsrp_db": flat, **({"phase": io["phase"].reshape(len(flat), -1)}
                                                  if "phase" in io else {})})
        if "phase" in io:
            fn = tf.function(lambda r, p: layer(r, p), input_signature=[
                tf.TensorSpec([None, *flat.shape[1:]], tf.float32), tf.TensorSpec([None, layer.num_beams], tf.float32)])
            out = fn(flat, io["phase"].reshape(len(flat), -1))
        else:
            fn = tf.function(lambda r: layer(r), input_signature=[tf.TensorSpec([None, *flat.shape[1:]], tf.float32)])
            out = fn(flat)
        for key in ("beams", "weights", "index"):
            np.testing.assert_allclose(out[key].numpy(), eager[key], atol=1e-6)


def _model(layer: AttentionSelectorLayer, reports: int) -> tf.keras.Model:
    rsrp = tf.keras.Input((reports, layer.num_beams), name="rsrp_db")
    if layer.selector["cophase"]:
        phase = tf.keras.Input((layer.num_beams,), name="phase")
        out = layer(rsrp, phase)
        return tf.keras.Model([rsrp, phase], {"beams": out["beams"], "weights": out["weights"]})
    out = layer(rsrp)
    return tf.keras.Model(rsrp, {"beams": out["beams"], "weights": out["weights"]})


def _model_inputs(layer: AttentionSelectorLayer, io: dict) -> list | np.ndarray:
    flat = io["rsrp_db"].reshape(-1, *io["rsrp_db"].shape[-2:])
    return [flat, io["phase"].reshape(len(flat), -1)] if layer.selector["cophase"] else flat


@pytest.mark.crossrun
@pytest.mark.parametrize("kind", ["learned-sparsemax-soft-cophase", "untrained-entmax15-topk",
                                  "learned-sparsemax-soft-upa4x4"])
def test_inside_a_keras_model_and_saved_and_loaded(kind, tmp_path):
    name = next(n for n in NAMES if n.startswith(kind))
    layer, io = _load(name)
    model = _model(layer, io["rsrp_db"].shape[-2])
    x = _model_inputs(layer, io)
    out = model(x)
    ref_beams = (io["beams_real"] + 1j * io["beams_imag"]).reshape(out["beams"].shape)
    np.testing.assert_allclose(out["beams"].numpy(), ref_beams, atol=TOL)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    again = loaded(x)
    np.testing.assert_array_equal(again["beams"].numpy(), out["beams"].numpy())
    np.testing.assert_array_equal(again["weights"].numpy(), out["weights"].numpy())


def test_get_config_round_trip():
    name = next(n for n in NAMES if n.startswith("learned-entmax15-topk"))
    layer, io = _load(name)
    config = layer.get_config()
    json.dumps(config)  # plain JSON: a Keras model holding the layer can be saved
    clone = AttentionSelectorLayer.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(layer.get_weights())
    ref = _call(layer, io)
    for key, value in _call(clone, io).items():
        np.testing.assert_array_equal(value, ref[key])
    assert {w.name.split("/")[-1].split(":")[0] for w in layer.trainable_weights} == {
        "key_conv_kernel", "key_conv_bias", "query", "beam_bias"}


def test_learned_weights_get_gradients():
    name = next(n for n in NAMES if n.startswith("learned-sparsemax-soft"))
    layer, io = _load(name)
    with tf.GradientTape() as tape:
        out = layer(io["rsrp_db"], io["phase"])
        loss = tf.reduce_sum(tf.abs(out["beams"][..., 0]) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert any(np.abs(g.numpy()).max() > 0 for g in grads)


# --------------------------------------------------------------------------- errors


def test_bad_inputs_give_clear_errors():
    name = next(n for n in NAMES if n.startswith("learned-sparsemax-soft-cophase"))
    layer, io = _load(name)
    rsrp, phase = io["rsrp_db"], io["phase"]
    m, hist = layer.num_beams, layer.selector["history"]
    cases = [
        ((rsrp[..., :-1], phase), ValueError, f"'rsrp_db' has shape .* expected \\[..., L>={hist}, M={m}\\]"),
        ((rsrp[..., 1:, :], phase), ValueError, f"L>={hist}"),
        ((rsrp[0, 0],), ValueError, "'rsrp_db' has shape"),
        ((rsrp, None), ValueError, "'cophase' is on but no 'phase'"),
        ((rsrp, phase[..., :-1]), ValueError, "'phase' has shape"),
        ((rsrp, phase[:1]), ValueError, "'phase' has shape"),
        ((rsrp.astype(np.complex64), phase), TypeError, "'rsrp_db' has dtype complex64"),
    ]
    for args, error, match in cases:
        with pytest.raises(error, match=match):
            layer(*args)


def test_bad_configs_are_refused():
    cfg = read_selector_file(FIXTURES / f"{NAMES[0]}.selector.safetensors")
    base = dict(selector=cfg.selector, num_beams=cfg.num_beams, num_ant=cfg.num_ant, set_b=cfg.set_b)
    with pytest.raises(ValueError, match="field 'normalizer' = 'relu'"):
        AttentionSelectorLayer(**{**base, "selector": {**cfg.selector, "normalizer": "relu"}})
    with pytest.raises(ValueError, match="unknown fields \\['depth'\\]"):
        AttentionSelectorLayer(**{**base, "selector": {**cfg.selector, "depth": 2}})
    # The contextual selector has no Keras port: refused by name, with one line.
    with pytest.raises(ValueError, match="field 'arch' = 'transformer' has no Keras port"):
        AttentionSelectorLayer(**{**base, "selector": {**cfg.selector, "arch": "transformer"}})
    with pytest.raises(ValueError, match="fields \\['heads'\\] apply to arch = 'transformer'"):
        AttentionSelectorLayer(**{**base, "selector": {**cfg.selector, "heads": 2}})
    with pytest.raises(ValueError, match="field 'set_b'"):
        AttentionSelectorLayer(**{**base, "set_b": [cfg.num_beams]})
    with pytest.raises(ValueError, match="field 'topk' = 999 exceeds the codebook size"):
        AttentionSelectorLayer(**{**base, "selector": {**cfg.selector, "mode": "topk", "topk": 999}})


def _rewrite(src: Path, dst: Path, *, metadata: dict | None = None, drop: str | None = None,
             replace: dict | None = None) -> Path:
    from safetensors import safe_open

    with safe_open(str(src), framework="np") as f:
        meta = dict(f.metadata())
    arrays = load_file(str(src))
    if drop:
        arrays.pop(drop)
    arrays.update(replace or {})
    save_file(arrays, str(dst), metadata={**meta, **(metadata or {})})
    return dst


def test_bad_files_are_refused_with_the_reason(tmp_path):
    good = FIXTURES / f"{next(n for n in NAMES if n.startswith('learned'))}.selector.safetensors"
    with pytest.raises(SelectorFileError, match="file not found"):
        AttentionSelectorLayer.from_file(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(SelectorFileError, match="not a readable safetensors file"):
        AttentionSelectorLayer.from_file(junk)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(SelectorFileError, match="not a readable safetensors file|tensors not readable"):
        AttentionSelectorLayer.from_file(truncated)
    checkpoint = tmp_path / "selector.safetensors"  # what `beamattn train` writes
    save_file({"query": np.zeros(4, np.float32)}, str(checkpoint), metadata={"beamattn_config": "{}"})
    with pytest.raises(SelectorFileError, match="torch checkpoint .*beamattn export --format keras"):
        AttentionSelectorLayer.from_file(checkpoint)
    other = tmp_path / "other.safetensors"
    save_file({"x": np.zeros(4, np.float32)}, str(other))
    with pytest.raises(SelectorFileError, match="metadata 'format' = None; expected 'beamattn-keras-selector'"):
        AttentionSelectorLayer.from_file(other)
    with pytest.raises(SelectorFileError, match="'format_version' = '2'; this beamattn reads version 1"):
        AttentionSelectorLayer.from_file(_rewrite(good, tmp_path / "v2.safetensors", metadata={"format_version": "2"}))
    with pytest.raises(SelectorFileError, match="do not match the config"):
        AttentionSelectorLayer.from_file(_rewrite(good, tmp_path / "drop.safetensors", drop="query"))
    with pytest.raises(SelectorFileError, match="tensor 'query' has shape"):
        AttentionSelectorLayer.from_file(_rewrite(good, tmp_path / "shape.safetensors",
                                                  replace={"query": np.zeros(3, np.float32)}))
    bad_query = np.full(load_file(str(good))["query"].shape, np.nan, np.float32)
    with pytest.raises(SelectorFileError, match="tensor 'query' has NaN/Inf"):
        AttentionSelectorLayer.from_file(_rewrite(good, tmp_path / "nan.safetensors", replace={"query": bad_query}))
    with pytest.raises(SelectorFileError, match="field 'mode' = 'best'"):
        sel = json.loads(read_selector_file(good).metadata["selector"])
        AttentionSelectorLayer.from_file(_rewrite(good, tmp_path / "mode.safetensors",
                                                  metadata={"selector": json.dumps({**sel, "mode": "best"})}))
