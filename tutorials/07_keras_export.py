# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 7. Exporting the selector to a TensorFlow/Keras pipeline
#
# TensorFlow and Sionna 2.x (PyTorch) cannot share one environment, so the selector has a Keras port,
# `beamattn.keras.AttentionSelectorLayer`, in plain `tf.*` ops: it imports neither torch nor Sionna 2.x.
# A selector trained in the torch environment is exported to a `.safetensors` file of NumPy arrays, which
# the layer loads in the TensorFlow environment.
#
# **Run this tutorial in the TensorFlow environment** (`make test` builds `.venv-tf`):
# `.venv-tf/bin/python tutorials/07_keras_export.py`. Its first step calls the torch environment's
# `beamattn` command (`.venv/bin/beamattn`, or `$BEAMATTN_TORCH_BIN`) to train and export a selector, as
# you would on the command line:
#
# ```bash
# beamattn train scenarios/vehicular-60.toml --out results/train-vehicular-60
# beamattn export --format keras results/train-vehicular-60/selector.safetensors --out selector.keras.safetensors
# ```

# %%
import json
import math
import os
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import tensorflow as tf

from beamattn.keras import AttentionSelectorLayer

SMALL = os.environ.get("BEAMATTN_TUTORIAL_SMALL") == "1"
ROOT = Path.cwd() if (Path.cwd() / "scenarios").is_dir() else Path.cwd().parent
OUT = Path(os.environ.get("BEAMATTN_TUTORIAL_OUT", ROOT / "results" / "tutorials")) / "07_keras_export"
OUT.mkdir(parents=True, exist_ok=True)
TORCH_BIN = os.environ.get("BEAMATTN_TORCH_BIN", str(ROOT / ".venv" / "bin" / "beamattn"))

# %% [markdown]
# ## Train and export in the torch environment
#
# The Keras layer implements both selectors: the convolution-key one (`[selector] arch = "conv"`) and the
# contextual one of `vehicular-60.toml` (`arch = "transformer"`: self-attention among the beams, a query
# from the link's state, and `csi_keys`: keys that also read the complex reports). This tutorial trains
# and exports the scenario's own selector; on small settings (`BEAMATTN_TUTORIAL_SMALL=1`: short drops and
# a few steps, the workflow rather than a good selector) through a copy of the scenario file.


# %%
def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf")


def toml_dumps(doc: dict, prefix: str = "") -> str:
    """A TOML document of tables of scalars and lists (what a scenario file holds)."""
    out = []
    for name, table in doc.items():
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if scalars or not table:
            out.append(f"[{prefix}{name}]")
            out += [f"{k} = {toml_value(v)}" for k, v in scalars.items()] + [""]
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        if nested:
            out.append(toml_dumps(nested, f"{prefix}{name}."))
    return "\n".join(out)


scenario = ROOT / "scenarios" / "vehicular-60.toml"
if SMALL:
    doc = tomllib.loads(scenario.read_text())
    doc["channel"]["duration"] = 0.4  # s per drop
    doc["training"].update(drops=16, steps=20, batch=64)
    scenario = OUT / "vehicular-60-small.toml"
    scenario.write_text(toml_dumps(doc))
    assert tomllib.loads(scenario.read_text()) == doc  # the copy says what the dictionary says
train_dir, keras_file = OUT / "train", OUT / "selector.keras.safetensors"
subprocess.run([TORCH_BIN, "train", str(scenario), "--out", str(train_dir), "--force"], check=True,
               stdout=subprocess.DEVNULL)
subprocess.run([TORCH_BIN, "export", "--format", "keras", str(train_dir / "selector.safetensors"),
                "--out", str(keras_file), "--force"], check=True)

# %% [markdown]
# ## Load it in TensorFlow
#
# The file carries the codebook (`[M, N]` complex), Set B, the selector's configuration and its weights;
# the layer refuses a torch checkpoint or another format version with a one-line reason.

# %%
selector = AttentionSelectorLayer.from_file(keras_file)
cfg = selector.selector
M, N, L = selector.num_beams, selector.num_ant, cfg["history"]
print(f"M = {M} beams, N = {N} antennas, Set B = {len(selector.set_b)} beams, history L = {L}, "
      f"{cfg['normalizer']} / {cfg['mode']}, arch = {cfg.get('arch', 'conv')}, csi_keys = {cfg.get('csi_keys', False)}")
assert cfg.get("csi_keys"), "vehicular-60's selector reads the complex reports (csi_keys = true)"

# %% [markdown]
# ## Reports in, beams out
#
# Reports are L1-RSRP in dB, `[..., L, M]`, oldest first (unmeasured beams are ignored: only Set B is
# read). With `csi_keys` the layer also takes the reports' phases, `report_phase [..., L, M]` (rad, the
# same shape): from each complex report of Set B it reconstructs the channel (least squares) and gives
# every beam's gain on it to the keys, the unmeasured beams included. Here the reports come from a plane
# wave arriving from 20° with noise, computed from the layer's own codebook: `y = hᵀ w x + n`, beam
# response `hᵀ v_m`, gain `|hᵀ v_m|²`.

# %%
codebook = selector.codebook_real.numpy() + 1j * selector.codebook_imag.numpy()  # [M, N] unit-norm beams
rng = np.random.default_rng(0)
n = np.arange(N)
h = np.exp(1j * np.pi * n * np.sin(np.deg2rad(20.0)))  # [N] half-wavelength ULA, E|h_n|² = 1
response = codebook @ h  # [M] hᵀ v_m (no conjugate)
gain = np.abs(response) ** 2  # [M] |hᵀ v_m|²
rsrp_db = 10 * np.log10(gain + 0.1 * rng.exponential(size=(8, L, M)))  # [8, L, M]: 8 decisions, noisy
report_phase = np.angle(response) + rng.normal(0.0, 0.1, (8, L, M))  # [8, L, M] rad, noisy
out = selector(tf.constant(rsrp_db, tf.float32), report_phase=tf.constant(report_phase, tf.float32))
w = out["beams"].numpy()  # [8, N] complex64, unit norm
print("beams", w.shape, w.dtype, "norms", np.round(np.linalg.norm(w, axis=-1), 4))
print("weights", tuple(out["weights"].shape), "index", out["index"].numpy())
snr_sel = 10 * np.log10(np.abs(w @ h) ** 2)  # [8] beamformed gain in dB
print(f"gain of the selected beam {snr_sel.mean():.2f} dB; best codebook beam {10 * np.log10(gain.max()):.2f} dB; "
      f"MRT {10 * np.log10(N):.2f} dB")
assert np.allclose(np.linalg.norm(w, axis=-1), 1.0, atol=1e-5)

# %% [markdown]
# ## Inside a Keras model and `tf.function`
#
# The layer's arrays are Keras weights, so a model that contains it saves and loads them (import
# `beamattn.keras` before `tf.keras.models.load_model`, to register the layer).

# %%
reports_in = tf.keras.Input(shape=(L, M), dtype=tf.float32, name="rsrp_db")
phases_in = tf.keras.Input(shape=(L, M), dtype=tf.float32, name="report_phase")
weights = selector(reports_in, report_phase=phases_in)["weights"]  # [batch, M] attention weights over the codebook
model = tf.keras.Model([reports_in, phases_in], weights, name="beam_weights")
model.save(OUT / "model.keras")
reloaded = tf.keras.models.load_model(OUT / "model.keras")
x = [rsrp_db.astype(np.float32), report_phase.astype(np.float32)]
same = np.allclose(reloaded(x).numpy(), out["weights"].numpy(), atol=1e-6)
print("reloaded model gives the same attention weights:", same)
assert same


@tf.function
def select(reports: tf.Tensor, phases: tf.Tensor) -> tf.Tensor:
    return selector(reports, report_phase=phases)["index"]


print("tf.function:", select(tf.constant(rsrp_db, tf.float32), tf.constant(report_phase, tf.float32)).numpy())
