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

from beamattn.keras import (AttentionSelectorLayer, SelectorFileError, entmax15, predict_phase, softmax,  # noqa: E402
                            sparsemax)
from beamattn.keras.selector import reconstructed_gain_features, reconstruction_matrix  # noqa: E402
from beamattn.keras.selector_file import read_selector_file, weight_shapes  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = sorted(p.name[: -len(".io.safetensors")] for p in FIXTURES.glob("*.io.safetensors"))
TRANSFORMERS = [n for n in NAMES if n.startswith("transformer")]  # the contextual selector (arch = "transformer")
CSI = [n for n in NAMES if "-csi" in n]  # keys that also read the complex reports (csi_keys)
ROOT = Path(__file__).resolve().parents[2]
# The parity the issue asks for: 1e-5 on beams and weights (entries of size <= 1: ~84 float32 ulps, room for TF vs
# torch rounding on any CPU, the fixtures being written on another), relative to the size for the entropy (up to
# ln M ≈ 4.2 nats, where 1e-5 absolute would be only ~20 ulps).
TOL = 1e-5


def _load(name: str) -> tuple[AttentionSelectorLayer, dict[str, np.ndarray]]:
    return AttentionSelectorLayer.from_file(FIXTURES / f"{name}.selector.safetensors"), \
        load_file(str(FIXTURES / f"{name}.io.safetensors"))


def _call_kwargs(io: dict) -> dict:
    """The phase history and prediction horizon the torch selector was called with (phase_predict fixtures),
    and the reports' phases (csi_keys fixtures)."""
    kwargs = {}
    if "phase_history" in io:
        kwargs["phase_history"] = io["phase_history"]
    if "phase_lead" in io:
        kwargs["phase_lead"] = float(io["phase_lead"][0])
    if "report_phase" in io:
        kwargs["report_phase"] = io["report_phase"]
    return kwargs


def _call(layer: AttentionSelectorLayer, io: dict) -> dict[str, np.ndarray]:
    out = layer(io["rsrp_db"], io.get("phase"), **_call_kwargs(io))
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
        if f.selector.get("grid") is not None and name not in TRANSFORMERS:
            grids[tuple(f.selector["grid"])] = f.weights["key_conv_weight"].shape
    assert grids == {(8, 8): (16, 5, 5, 5), (4, 16): (32, 5, 3, 9)}


def test_transformer_fixtures_cover_its_parts_with_random_weights():
    seen = {k: set() for k in ("grid", "layers", "heads", "query", "phase_predict", "lead_at_call", "normalizer")}
    for name in TRANSFORMERS:
        f = read_selector_file(FIXTURES / f"{name}.selector.safetensors")
        io = load_file(str(FIXTURES / f"{name}.io.safetensors"))
        cfg = f.selector
        assert cfg["arch"] == "transformer" and cfg["learned"]
        seen["grid"].add(tuple(cfg.get("grid") or ()))
        for key in ("layers", "heads", "query", "normalizer"):
            seen[key].add(cfg[key])
        seen["phase_predict"].add(cfg["phase_predict"] and cfg["cophase"] and "phase_history" in io)
        seen["lead_at_call"].add("phase_lead" in io)
        # torch starts these at zero (tables, query map) or at the identity (LayerNorm): a parity test with them
        # there could not fail on their indexing. The fixtures draw them at random.
        for key, w in f.weights.items():
            if "table" in key or key.startswith(("query_net", "query_norm")) or "norm" in key:
                assert np.abs(w).min() > 0 and np.std(w) > 0.05, (name, key)
        assert set(f.weights) == set(weight_shapes(cfg, f.num_beams))
    assert seen["grid"] == {(), (8, 8), (4, 16)}
    assert seen["layers"] == {0, 1, 2} and seen["heads"] == {2, 4} and seen["query"] == {"fixed", "context"}
    assert seen["phase_predict"] == {True, False} and seen["lead_at_call"] == {True, False}
    assert seen["normalizer"] == {"softmax", "sparsemax", "entmax15"}


def test_transformer_position_tables_have_the_clipped_circular_sizes():
    # D = max(1, min(8, G // 2)) per axis G: 8 for 64 beams in a row, 4 for an 8x8 grid, 2 (m_v) and 8 (m_h) for 4x16.
    tables = {}
    for name in TRANSFORMERS:
        f = read_selector_file(FIXTURES / f"{name}.selector.safetensors")
        if f.selector["layers"]:
            tables[(tuple(f.selector.get("grid") or (1, f.num_beams)), f.selector["heads"])] = (
                f.weights["block0_pos_h_table"].shape, f.weights.get("block0_pos_v_table", np.zeros(0)).shape)
    assert tables == {((1, 64), 4): ((4, 17), (0,)), ((1, 32), 4): ((4, 17), (0,)),
                      ((8, 8), 2): ((2, 9), (2, 9)), ((8, 8), 4): ((4, 9), (4, 9)), ((4, 16), 4): ((4, 17), (4, 5))}


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


def _wrap(x: np.ndarray) -> np.ndarray:
    return np.mod(x + np.pi, 2 * np.pi) - np.pi


def test_predict_phase_extrapolates_a_constant_phase_slope():
    # Closed form: phases phi_0 + s t (wrapped, |s| < pi) are predicted as phi_0 + s (T - 1 + lead), for any T >= 2.
    rng = np.random.default_rng(5)
    slope = rng.uniform(-3.0, 3.0, (6, 1, 10))  # [S, 1, M] rad per sample
    start = rng.uniform(-np.pi, np.pi, (6, 1, 10))
    for t, lead in ((2, 0.75), (5, 1.25), (8, 3.0)):
        phases = _wrap(start + slope * np.arange(t)[:, None])  # [S, T, M]
        got = predict_phase(tf.constant(phases, tf.float32), lead).numpy()  # [S, M]
        ref = (start + slope * (t - 1 + lead))[:, 0]  # [S, M]
        assert got.shape == (6, 10) and (got >= -np.pi).all() and (got < np.pi).all()
        np.testing.assert_allclose(np.abs(_wrap(got - ref)), 0.0, atol=2e-5)
    one = rng.uniform(-5.0, 5.0, (3, 1, 4)).astype(np.float32)  # T = 1: the latest phase itself, not wrapped
    np.testing.assert_array_equal(predict_phase(tf.constant(one), 2.0).numpy(), one[:, 0])
    # Under tf.function with an unknown number of samples: the same numbers (up to graph-mode rounding).
    fn = tf.function(lambda x: predict_phase(x, 1.25), input_signature=[tf.TensorSpec([None, None, 10], tf.float32)])
    phases = _wrap(start + slope * np.arange(5)[:, None]).astype(np.float32)
    np.testing.assert_allclose(fn(phases).numpy(), predict_phase(tf.constant(phases), 1.25).numpy(), atol=1e-5)
    np.testing.assert_array_equal(fn(one[..., :1].repeat(10, -1)).numpy(), one[:, 0, :1].repeat(10, -1))


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
    for name in (NAMES[0], next(n for n in NAMES if "cophase" in n and n not in CSI)):
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


@pytest.mark.parametrize("name", sorted(set(TRANSFORMERS) | set(CSI)))
def test_contextual_and_csi_selectors_under_tf_function_with_unknown_batch_and_history_sizes(name):
    layer, io = _load(name)
    m = layer.num_beams
    s = int(np.prod(io["rsrp_db"].shape[:-2], dtype=int))
    flat = {"rsrp_db": io["rsrp_db"].reshape(s, -1, m)}  # [S, L', M]
    if "phase" in io:
        flat["phase"] = io["phase"].reshape(s, m)  # [S, M]
    if "phase_history" in io:
        flat["phase_history"] = io["phase_history"].reshape(s, -1, m)  # [S, T, M]
    if "report_phase" in io:
        flat["report_phase"] = io["report_phase"].reshape(s, -1, m)  # [S, L', M]
    lead = _call_kwargs(io).get("phase_lead")
    names = list(flat)
    specs = {"rsrp_db": [None, None, m], "phase": [None, m], "phase_history": [None, None, m],
             "report_phase": [None, None, m]}

    def select(*xs):
        return layer(xs[0], **dict(zip(names[1:], xs[1:])), phase_lead=lead)

    fn = tf.function(select, input_signature=[tf.TensorSpec(specs[k], tf.float32) for k in names])
    out = fn(*flat.values())
    eager = select(*flat.values())
    for key in ("beams", "weights", "index", "active"):
        np.testing.assert_allclose(out[key].numpy(), eager[key].numpy(), atol=1e-6)
    ref = io["beams_real"] + 1j * io["beams_imag"]
    np.testing.assert_allclose(out["beams"].numpy(), ref.reshape(s, -1), atol=TOL)
    # One decision without batch dims (inputs [L', M], [M], [T, M]): the first of the batch.
    first = select(*(x[0] for x in flat.values()))
    assert first["beams"].shape == (layer.num_ant,) and first["index"].shape == ()
    np.testing.assert_allclose(first["weights"].numpy(), eager["weights"].numpy()[0], atol=1e-6)


def test_phase_prediction_from_one_sample_is_co_phasing_with_the_latest_phase():
    # T = 1: the predicted phase is the latest one, so the selector equals the same one without phase_predict.
    name = next(n for n in TRANSFORMERS if "predict" in n)
    f = read_selector_file(FIXTURES / f"{name}.selector.safetensors")
    arrays = {"codebook": f.codebook, **f.weights}
    predicting = AttentionSelectorLayer(f.selector, f.num_beams, f.num_ant, f.set_b, arrays=arrays)
    plain = AttentionSelectorLayer({**f.selector, "phase_predict": False}, f.num_beams, f.num_ant, f.set_b,
                                   arrays=arrays)
    io = load_file(str(FIXTURES / f"{name}.io.safetensors"))
    latest = io["phase_history"][..., -1:, :]  # [*B, 1, M]
    a = predicting(io["rsrp_db"], phase_history=latest)
    b = plain(io["rsrp_db"], latest[..., 0, :])
    for key in ("beams", "weights", "index"):
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    # A longer history moves the co-phasing (the prediction is used), and so does the lead.
    c = predicting(io["rsrp_db"], phase_history=io["phase_history"])
    d = predicting(io["rsrp_db"], phase_history=io["phase_history"], phase_lead=0.0)
    assert np.abs(c["beams"].numpy() - a["beams"].numpy()).max() > 1e-2
    assert np.abs(c["beams"].numpy() - d["beams"].numpy()).max() > 1e-2


def _predicts(layer: AttentionSelectorLayer) -> bool:
    return bool(layer.selector.get("phase_predict")) and layer.selector["cophase"]


def _model(layer: AttentionSelectorLayer, reports: int) -> tf.keras.Model:
    rsrp = tf.keras.Input((reports, layer.num_beams), name="rsrp_db")
    if layer.selector.get("csi_keys"):  # the keys read the reports' phases (and a co-phased one the latest ones)
        report = tf.keras.Input((reports, layer.num_beams), name="report_phase")
        phase = tf.keras.Input((layer.num_beams,), name="phase")
        out = layer(rsrp, phase if layer.selector["cophase"] else None, report_phase=report)
        inputs = [rsrp, phase, report] if layer.selector["cophase"] else [rsrp, report]
        return tf.keras.Model(inputs, {"beams": out["beams"], "weights": out["weights"]})
    if _predicts(layer):
        history = tf.keras.Input((None, layer.num_beams), name="phase_history")
        out = layer(rsrp, phase_history=history)
        return tf.keras.Model([rsrp, history], {"beams": out["beams"], "weights": out["weights"]})
    if layer.selector["cophase"]:
        phase = tf.keras.Input((layer.num_beams,), name="phase")
        out = layer(rsrp, phase)
        return tf.keras.Model([rsrp, phase], {"beams": out["beams"], "weights": out["weights"]})
    out = layer(rsrp)
    return tf.keras.Model(rsrp, {"beams": out["beams"], "weights": out["weights"]})


def _model_inputs(layer: AttentionSelectorLayer, io: dict) -> list | np.ndarray:
    flat = io["rsrp_db"].reshape(-1, *io["rsrp_db"].shape[-2:])
    if layer.selector.get("csi_keys"):
        report = io["report_phase"].reshape(flat.shape)
        return [flat, io["phase"].reshape(len(flat), -1), report] if layer.selector["cophase"] else [flat, report]
    if _predicts(layer):
        return [flat, io["phase_history"].reshape(len(flat), *io["phase_history"].shape[-2:])]
    return [flat, io["phase"].reshape(len(flat), -1)] if layer.selector["cophase"] else flat


@pytest.mark.crossrun
@pytest.mark.parametrize("kind", ["learned-sparsemax-soft-cophase", "untrained-entmax15-topk",
                                  "learned-sparsemax-soft-upa4x4", "transformer-entmax15-soft-cophase-predict",
                                  "transformer-sparsemax-topk-context-upa4x4", "learned-entmax15-soft-cophase-csi",
                                  "transformer-softmax-topk-csi-context-upa4x4"])
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


def test_transformer_get_config_round_trip_and_variables():
    name = "transformer-sparsemax-topk-context-upa4x4"  # two blocks, 2-D position tables, contextual query
    layer, io = _load(name)
    config = layer.get_config()
    json.dumps(config)
    clone = AttentionSelectorLayer.from_config(config)
    assert clone.get_config() == config and clone.selector == read_selector_file(
        FIXTURES / f"{name}.selector.safetensors").selector
    clone.set_weights(layer.get_weights())
    ref = _call(layer, io)
    for key, value in _call(clone, io).items():
        np.testing.assert_array_equal(value, ref[key])
    # The file's tensors under their names; Linear weights [out, in] as kernels [in, out].
    f = read_selector_file(FIXTURES / f"{name}.selector.safetensors")
    variables = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in layer.trainable_weights}
    assert len(variables) == len(f.weights)
    for key, w in f.weights.items():
        if key == "key_conv_weight":
            continue
        if key.endswith("_weight") and w.ndim == 2:
            np.testing.assert_array_equal(variables[key[: -len("_weight")] + "_kernel"], w.T)
        else:
            np.testing.assert_array_equal(variables[key], w)
    assert {"block1_q_proj_kernel", "block1_pos_v_table", "query_net_kernel", "query_norm_weight"} <= set(variables)


def test_layer_built_without_arrays_has_unit_layer_norms():
    # Without a file (before Keras loads a saved model's weights) the LayerNorm scales are 1, the rest 0: finite.
    f = read_selector_file(FIXTURES / f"{TRANSFORMERS[0]}.selector.safetensors")
    layer = AttentionSelectorLayer(f.selector, f.num_beams, f.num_ant, f.set_b)
    w = {v.name.split("/")[-1].split(":")[0]: v.numpy() for v in layer.weights}
    assert (w["block0_norm1_weight"] == 1).all() and (w["query_norm_weight"] == 1).all()
    assert (w["block0_q_proj_kernel"] == 0).all() and (w["block0_norm1_bias"] == 0).all()


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_weights_get_gradients(name):
    layer, io = _load(name)
    with tf.GradientTape() as tape:
        out = layer(io["rsrp_db"], io.get("phase"), **_call_kwargs(io))
        # The weights as well as the beam: a hard selector's beam has no gradient.
        loss = tf.reduce_sum(tf.abs(out["beams"][..., 0]) ** 2) + tf.reduce_sum(out["weights"] ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None, w.name
        g = tf.convert_to_tensor(g).numpy()  # position tables are gathered: IndexedSlices
        assert np.isfinite(g).all() and np.abs(g).max() > 0, w.name


def test_learned_weights_get_gradients():
    name = next(n for n in NAMES if n.startswith("learned-sparsemax-soft"))
    layer, io = _load(name)
    with tf.GradientTape() as tape:
        out = layer(io["rsrp_db"], io["phase"])
        loss = tf.reduce_sum(tf.abs(out["beams"][..., 0]) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert any(np.abs(g.numpy()).max() > 0 for g in grads)


# --------------------------------------------------------------------------- csi_keys


def test_csi_fixtures_read_2l_plus_1_channels_in_both_architectures():
    seen = set()
    for name in NAMES:
        f = read_selector_file(FIXTURES / f"{name}.selector.safetensors")
        io = load_file(str(FIXTURES / f"{name}.io.safetensors"))
        cfg, history = f.selector, f.selector["history"]
        if name in CSI:
            assert cfg["csi_keys"] is True and cfg["learned"]
            assert io["report_phase"].shape == io["rsrp_db"].shape
            assert f.weights["key_conv_weight"].shape[1] == 2 * history + 1  # [L rel. RSRPs, flag, L recon. gains]
            seen.add((cfg.get("arch", "conv"), cfg.get("grid") is not None, cfg["cophase"], "phase" in io))
        else:  # RSRP-only keys: the field is left out of the file (SelectorConfig.to_dict), L+1 channels
            assert "csi_keys" not in cfg and "report_phase" not in io
            if cfg["learned"]:
                assert f.weights["key_conv_weight"].shape[1] == history + 1
    assert seen == {("conv", False, True, True), ("transformer", True, False, False)}


def test_reconstruction_matrix_gives_every_beams_response_from_exact_reports():
    # Set B spans the channels (rank N: the orthogonal DFT basis of a ULA; 32 beams of an oversampled UPA grid),
    # so the reports y = V_B h of any channel h give back hᵀ v_m of every beam: T y = V_A h.
    rng = np.random.default_rng(7)
    for name in CSI:
        f = read_selector_file(FIXTURES / f"{name}.selector.safetensors")
        v = f.codebook.astype(np.complex128)  # [M, N]
        t = reconstruction_matrix(f.codebook, f.set_b)  # [M, J]
        assert t.shape == (f.num_beams, len(f.set_b)) and t.dtype == np.complex64
        h = rng.normal(size=(5, f.num_ant)) + 1j * rng.normal(size=(5, f.num_ant))  # [5, N]
        y = h @ v[f.set_b].T  # [5, J] reports hᵀ v_b (no conjugate)
        ref = h @ v.T  # [5, M]
        np.testing.assert_allclose(y @ t.T.astype(np.complex128), ref, rtol=0, atol=1e-5 * np.abs(ref).max())
        layer = AttentionSelectorLayer.from_file(FIXTURES / f"{name}.selector.safetensors")
        np.testing.assert_array_equal(layer.recon_real.numpy() + 1j * layer.recon_imag.numpy(), t)


def test_reconstructed_gain_features_are_the_channels_beam_gains_relative_to_the_latest_best():
    # Exact complex reports (RSRP 10 log10 |hᵀ v_b|², phase arg hᵀ v_b) of channels h(t) on an orthogonal Set B:
    # the features are 10 log10(|h(t)ᵀ v_m|² / max_m |h(L)ᵀ v_m|²) / 10, clamped to [-4, 0.5].
    f = read_selector_file(FIXTURES / f"{CSI[0]}.selector.safetensors")
    assert f.selector.get("grid") is None and len(f.set_b) == f.num_ant  # the orthogonal basis
    rng = np.random.default_rng(8)
    v = f.codebook.astype(np.complex128)  # [M, N]
    h = rng.normal(size=(7, 4, f.num_ant)) + 1j * rng.normal(size=(7, 4, f.num_ant))  # [S, L, N]
    h[:, :-1] *= rng.uniform(0.3, 3.0, (7, 3, 1))  # older reports weaker or stronger than the latest one
    h[0, 0] *= 1e-3  # 60 dB weaker: below the -40 dB floor
    resp = h @ v.T  # [S, L, M]
    unmeasured = np.setdiff1d(np.arange(f.num_beams), f.set_b)
    rsrp = 10 * np.log10(np.abs(resp) ** 2)  # [S, L, M] dB
    phase = np.angle(resp)
    rsrp[..., unmeasured] = np.nan  # not read
    phase[..., unmeasured] = np.nan
    recon = tf.constant(reconstruction_matrix(f.codebook, f.set_b))  # [M, J]
    feat = reconstructed_gain_features(tf.constant(rsrp, tf.float32), tf.constant(phase, tf.float32), recon,
                                       f.set_b).numpy()  # [S, L, M]
    gain_db = 10 * np.log10(np.abs(resp) ** 2)  # [S, L, M]
    ref = (gain_db - gain_db[:, -1:].max(-1, keepdims=True)) / 10  # [S, L, M]
    assert feat.shape == ref.shape and np.isfinite(feat).all()
    assert (feat >= -4).all() and (feat <= 0.5).all() and feat[:, -1].max(-1) == pytest.approx(0.0, abs=1e-6)
    clear = (ref > -3) & (ref < 0.5)  # float32 gains: ~1e-7 of the largest, fine down to -30 dB
    np.testing.assert_allclose(feat[clear], ref[clear], atol=1e-4)
    np.testing.assert_array_equal(feat[ref >= 0.51], 0.5)
    np.testing.assert_array_equal(feat[ref <= -4.01], -4.0)
    assert (ref >= 0.51).any() and (ref <= -4.01).any() and clear.mean() > 0.5  # both clamps and the range are hit


@pytest.mark.parametrize("name", CSI)
def test_csi_keys_read_the_report_phases_of_set_b_only_up_to_a_phase_per_report(name):
    layer, io = _load(name)
    kwargs = _call_kwargs(io)
    report = io["report_phase"]  # [*B, L', M]
    ref = layer(io["rsrp_db"], io.get("phase"), **kwargs)["weights"].numpy()
    rng = np.random.default_rng(9)
    # A common phase per report (e^{jθ_t} on every beam of report t) is no gain: the same selection.
    common = rng.uniform(-np.pi, np.pi, (*report.shape[:-1], 1)).astype(np.float32)  # [*B, L', 1]
    rotated = layer(io["rsrp_db"], io.get("phase"), **{**kwargs, "report_phase": report + common})["weights"]
    np.testing.assert_allclose(rotated.numpy(), ref, atol=1e-5)
    # Unmeasured beams' entries and reports older than the history are not read.
    junk = report.copy()
    junk[..., np.setdiff1d(np.arange(layer.num_beams), layer.set_b)] = 1e30
    junk[..., : report.shape[-2] - layer.selector["history"], :] = np.nan
    same = layer(io["rsrp_db"], io.get("phase"), **{**kwargs, "report_phase": junk})["weights"]
    np.testing.assert_array_equal(same.numpy(), ref)
    # Per-beam phases are read: they move the reconstructed channel, and the selection with it.
    moved = report + rng.normal(0.0, 1.0, report.shape).astype(np.float32)
    other = layer(io["rsrp_db"], io.get("phase"), **{**kwargs, "report_phase": moved})["weights"]
    assert np.abs(other.numpy() - ref).max() > 1e-2


def test_csi_get_config_round_trip_and_the_reconstruction_weights():
    name = CSI[0]
    layer, io = _load(name)
    config = layer.get_config()
    json.dumps(config)
    assert config["selector"]["csi_keys"] is True
    clone = AttentionSelectorLayer.from_config(config)
    assert (clone.recon_real.numpy() == 0).all()  # no arrays yet: filled by set_weights or a saved model
    clone.set_weights(layer.get_weights())
    for key, value in _call(clone, io).items():
        np.testing.assert_array_equal(value, _call(layer, io)[key])
    names = {w.name.split("/")[-1].split(":")[0] for w in layer.non_trainable_weights}
    assert names == {"codebook_real", "codebook_imag", "recon_real", "recon_imag"}
    assert {w.name.split("/")[-1].split(":")[0] for w in layer.trainable_weights} == {
        "key_conv_kernel", "key_conv_bias", "query", "beam_bias"}
    assert layer.key_conv_kernel.shape[1] == 2 * layer.selector["history"] + 1  # [K, 2L+1, d]


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


def test_bad_phase_history_gives_clear_errors():
    name = next(n for n in TRANSFORMERS if "predict" in n and "lead" not in n)
    layer, io = _load(name)
    rsrp, phase, hist = io["rsrp_db"], io["phase"], io["phase_history"]  # [2, 3, L', M], [2, 3, M], [2, 3, T, M]
    m = layer.num_beams
    cases = [
        (dict(), ValueError, f"'phase_predict' is on but no 'phase_history' \\[..., T, M={m}\\] was given"),
        (dict(phase_history=hist[..., :-1]), ValueError, f"'phase_history' has shape .*expected .*M={m}"),
        (dict(phase_history=hist[:1]), ValueError, "'phase_history' has shape"),
        (dict(phase_history=hist[..., 0, :]), ValueError, "'phase_history' has shape"),
        (dict(phase_history=hist[..., :0, :]), ValueError, "T>=1"),
        (dict(phase_history=hist.astype(np.complex64)), TypeError, "'phase_history' has dtype complex64"),
        (dict(phase_history=hist, phase_lead=float("nan")), ValueError, "'phase_lead' = nan; expected a finite"),
        (dict(phase_history=hist, phase_lead=True), ValueError, "'phase_lead' = True"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            layer(rsrp, phase, **kwargs)
    # The phases are predicted: 'phase' may be left out, and is not read when given (as the torch selector).
    a = layer(rsrp, phase_history=hist)["beams"].numpy()
    np.testing.assert_array_equal(layer(rsrp, np.zeros_like(phase), phase_history=hist)["beams"].numpy(), a)


def test_bad_report_phase_gives_clear_errors():
    layer, io = _load(next(n for n in CSI if not n.startswith("transformer")))
    rsrp, phase, report = io["rsrp_db"], io["phase"], io["report_phase"]  # [2, 3, L', M], [2, 3, M], [2, 3, L', M]
    m = layer.num_beams
    cases = [
        (dict(), ValueError, f"'csi_keys' is on but no 'report_phase' \\[..., L, M={m}\\] was given; measure with "
                             "'with_phase = true'"),
        (dict(report_phase=report[..., 1:, :]), ValueError,
         "argument 'report_phase' has shape .*; expected the shape of 'rsrp_db', \\(2, 3, 5, 64\\)"),
        (dict(report_phase=report[..., :-1]), ValueError, "'report_phase' has shape"),
        (dict(report_phase=report[:1]), ValueError, "'report_phase' has shape"),
        (dict(report_phase=report[..., 0, :]), ValueError, "'report_phase' has shape"),
        (dict(report_phase=report.astype(np.complex64)), TypeError, "'report_phase' has dtype complex64"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            layer(rsrp, phase, **kwargs)
    # Shapes known only at run time (tf.function): the mismatch is refused when the graph runs.
    flat = rsrp.reshape(6, *rsrp.shape[-2:])
    fn = tf.function(lambda r, p, q: layer(r, p, report_phase=q)["weights"], input_signature=[
        tf.TensorSpec([None, None, m], tf.float32), tf.TensorSpec([None, m], tf.float32),
        tf.TensorSpec([None, None, m], tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="argument .*report_phase.* must have the shape of .*rsrp_db"):
        fn(flat, phase.reshape(6, m), report.reshape(flat.shape)[:, 1:])
    # Keys that read no phases (RSRP-only keys, the untrained selector) do not read the argument, as in torch.
    f = read_selector_file(FIXTURES / f"{next(n for n in CSI if not n.startswith('transformer'))}.selector.safetensors")
    untrained = AttentionSelectorLayer({**f.selector, "learned": False}, f.num_beams, f.num_ant, f.set_b,
                                       arrays={"codebook": f.codebook})
    np.testing.assert_array_equal(untrained(rsrp, phase, report_phase="not read")["weights"].numpy(),
                                  untrained(rsrp, phase)["weights"].numpy())
    rsrp_only, io2 = _load("learned-entmax15-soft")
    np.testing.assert_array_equal(rsrp_only(io2["rsrp_db"], report_phase=np.zeros(3))["weights"].numpy(),
                                  rsrp_only(io2["rsrp_db"])["weights"].numpy())


def test_bad_configs_are_refused():
    cfg = read_selector_file(FIXTURES / f"{NAMES[0]}.selector.safetensors")
    base = dict(selector=cfg.selector, num_beams=cfg.num_beams, num_ant=cfg.num_ant, set_b=cfg.set_b)
    with pytest.raises(ValueError, match="field 'normalizer' = 'relu'"):
        AttentionSelectorLayer(**{**base, "selector": {**cfg.selector, "normalizer": "relu"}})
    with pytest.raises(ValueError, match="unknown fields \\['depth'\\]"):
        AttentionSelectorLayer(**{**base, "selector": {**cfg.selector, "depth": 2}})
    # An architecture without a Keras port is refused by name, with one line; so are the transformer's fields
    # on a conv config (SelectorConfig.to_dict leaves them out there).
    with pytest.raises(ValueError, match="field 'arch' = 'mamba' has no Keras port; expected 'conv' .*'transformer'"):
        AttentionSelectorLayer(**{**base, "selector": {**cfg.selector, "arch": "mamba"}})
    with pytest.raises(ValueError, match="field 'csi_keys' = 1; expected true or false"):
        AttentionSelectorLayer(**{**base, "selector": {**cfg.selector, "csi_keys": 1}})
    with pytest.raises(ValueError, match="fields \\['heads'\\] apply to arch = 'transformer'"):
        AttentionSelectorLayer(**{**base, "selector": {**cfg.selector, "heads": 2}})
    t = {**cfg.selector, "arch": "transformer", "d_model": 16}
    for field, value, expected in (("heads", 3, "divides d_model = 16"), ("layers", 9, "an integer in \\[0, 8\\]"),
                                   ("layers", True, "an integer in"), ("query", "goal", "'fixed' or 'context'"),
                                   ("phase_predict", 1, "true or false"), ("phase_lead", -1.0, "in \\[0, 100\\]")):
        with pytest.raises(ValueError, match=f"field '{field}' = {value!r}; expected .*{expected}"):
            AttentionSelectorLayer(**{**base, "selector": {**t, field: value}})
    # Fields left out of a transformer config take SelectorConfig's defaults.
    layer = AttentionSelectorLayer(**{**base, "selector": t})
    assert {k: layer.selector[k] for k in ("layers", "heads", "query", "phase_predict", "phase_lead")} == {
        "layers": 1, "heads": 4, "query": "fixed", "phase_predict": False, "phase_lead": 0.75}
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
    transformer = FIXTURES / f"{next(n for n in TRANSFORMERS if 'upa' in n)}.selector.safetensors"
    with pytest.raises(SelectorFileError, match="do not match the config"):
        AttentionSelectorLayer.from_file(_rewrite(transformer, tmp_path / "t.safetensors", drop="block0_pos_v_table"))
    table = load_file(str(transformer))["block0_pos_h_table"]
    with pytest.raises(SelectorFileError, match="tensor 'block0_pos_h_table' has shape"):
        AttentionSelectorLayer.from_file(_rewrite(transformer, tmp_path / "t2.safetensors",
                                                  replace={"block0_pos_h_table": table[:, 1:].copy()}))
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
