# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 3. Bringing your own channels
#
# Measured, ray-traced or exported channels enter through the same back-end interface as the built-in
# simulator: `backend = "file"` reads `h [B, T, N]` (or `[B, T, F, N]`, wideband) and `times [T]` from an
# `.npz`, `.mat` or `.h5` file, checks them at load, and every policy then runs on them with the same
# measurement timeline and noise as on generated channels. The [own channels](../own-channels.md) page
# documents the format; this tutorial
#
# 1. writes channels of its own (a two-path channel with path loss) to an `.npz` and evaluates policies on them;
# 2. exports a generated scenario's channels (`beamattn channels`) and checks that reading them back gives
#    the generated run's numbers exactly.
#
# Convention: `y = hᵀ w x + n` (no conjugate), antennas in the order of `AntennaArray.positions()`.

# %%
import os
import tomllib
from pathlib import Path

import numpy as np
import torch

from beamattn.wireless.arrays import ULA, steering_vector
from beamattn.wireless.export import export_channels
from beamattn.wireless.runner import run_scenario
from beamattn.wireless.scenario import ScenarioError, load_scenario, parse_scenario

SMALL = os.environ.get("BEAMATTN_TUTORIAL_SMALL") == "1"
ROOT = Path.cwd() if (Path.cwd() / "scenarios").is_dir() else Path.cwd().parent
OUT = Path(os.environ.get("BEAMATTN_TUTORIAL_OUT", ROOT / "results" / "tutorials")) / "03_own_channels"
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Channels of your own
#
# A 16-element ULA; per drop a line-of-sight path whose angle drifts (a user passing by) plus a reflected
# path 6 dB weaker with a Doppler shift, sampled every millisecond, with a path loss of about -90 dB as a
# ray tracer or a measurement would give it.

# %%
rng = np.random.default_rng(7)
B, T, N, dt = (8 if SMALL else 32), 400, 16, 1e-3
array = ULA(N)
times = np.arange(T) * dt  # [T] s, uniform
h = np.zeros((B, T, N), dtype=np.complex64)
for b in range(B):
    az0, rate = rng.uniform(-50, 50), rng.uniform(-40, 40)  # degrees, degrees/s
    az_los = np.deg2rad(az0 + rate * times)  # [T]
    az_ref = np.deg2rad(rng.uniform(-60, 60))
    doppler = rng.uniform(-1500, 1500)  # Hz
    for az, amp, phase in ((az_los, 1.0, 0 * times), (np.full(T, az_ref), 0.5, 2 * np.pi * doppler * times)):
        u = torch.tensor(np.stack([np.cos(az), np.sin(az), np.zeros(T)], -1))  # [T, 3] unit directions
        a = steering_vector(array, u).numpy()  # [T, N]
        h[b] += (amp * np.exp(1j * phase))[:, None] * a
h *= 10 ** (-90 / 20)  # path loss: |h|² ~ 1e-9
np.savez(OUT / "my_channels.npz", h=h, times=times, num_rows=1, num_cols=N)
print("wrote", OUT / "my_channels.npz", h.shape, f"mean |h|² = {np.mean(np.abs(h) ** 2):.2e}")

# %% [markdown]
# A scenario reads it with `backend = "file"`. `normalize = "per-drop"` (the default) divides each drop by
# its RMS, so that `E|h_n|² = 1` as the package's SNRs assume: without it the path loss would silently
# lower every SNR by 90 dB. The time axis comes from the file (`times`); the measurement timeline from
# `[measurement]`.

# %%
scenario_toml = f"""
[scenario]
name = "my-channels"
drops = {B}
chunk_drops = {B}
snr_db = 0.0
policies = ["genie", "mrt", "exhaustive", "best-of-set-b", "stale", "attention-untrained", "random"]

[channel]
backend = "file"
path = "my_channels.npz"
normalize = "per-drop"

[array]
num_cols = {N}

[codebook]
oversampling = 4

[measurement]
period = 0.02
delay = 0.005
snr_db = 0.0
samples = 4
set_b = 16
history = 4
"""
(OUT / "my-channels.toml").write_text(scenario_toml)
scn = load_scenario(OUT / "my-channels.toml")  # `path` is relative to the scenario file
own = run_scenario(scn, OUT / "run-own", reference="exhaustive", progress=False, figures=False, force=True)

# %% [markdown]
# The file is checked when the scenario is loaded: a wrong shape, a misspelt name, a non-uniform time
# axis or an array that does not match `[array]` is one line naming the field.

# %%
np.savez(OUT / "bad.npz", h=h[:, :, :8], times=times)  # 8 antennas, the scenario has 16
(OUT / "bad.toml").write_text(scenario_toml.replace("my_channels.npz", "bad.npz"))
try:
    load_scenario(OUT / "bad.toml")
except ScenarioError as e:
    print(e)

# %% [markdown]
# ## 2. Round trip: export, then read back
#
# `beamattn channels SCENARIO --out FILE.npz` (here `export_channels`) writes a scenario's channels, times,
# positions and beam gains. Read back with `normalize = "none"` (they already follow the convention), the
# same scenario gives the generated run's numbers, because the file back-end draws the measurement noise
# exactly as the generated back-ends do.

# %%
base = tomllib.loads((ROOT / "scenarios" / "vehicular-60.toml").read_text())
base["scenario"].update(drops=4 if SMALL else 16, chunk_drops=4 if SMALL else 16,
                        policies=["genie", "exhaustive", "best-of-set-b", "attention-untrained"])
if SMALL:
    base["channel"]["duration"] = 0.4
generated = parse_scenario(base, source="vehicular-60 (tutorial)")
export_channels(generated, OUT / "exported.npz", force=True)
run_gen = run_scenario(generated, None, progress=False, figures=False)

keep = {k: base["channel"][k] for k in ("carrier_frequency",)}  # the file records the array and carrier
from_file = {**base, "channel": {"backend": "file", "path": str(OUT / "exported.npz"), "normalize": "none", **keep}}
run_file = run_scenario(parse_scenario(from_file, source="exported (tutorial)"), None, progress=False,
                        figures=False)
for name in base["scenario"]["policies"]:
    a, b = run_gen.summary[name]["loss_db"]["mean"], run_file.summary[name]["loss_db"]["mean"]
    print(f"{name:20s} generated {a:.4f} dB   from the file {b:.4f} dB")
    assert abs(a - b) < 1e-6
