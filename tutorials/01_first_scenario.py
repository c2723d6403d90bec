# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 1. Your first scenario and reading its results
#
# A scenario file (TOML) says everything about an evaluation: the channel, the antenna array, the codebook
# (Set A), the measurements (Set B, noise, quantisation, delay), the selector and the policies. This tutorial
# loads the default scenario, shrinks it, evaluates a few policies on the same drops, and reads the numbers
# back from `metrics.json` and `steps.csv`. The command line does the same with
# `beamattn run scenarios/vehicular-60.toml --out results/v60`.
#
# Run it from the repository root: `.venv/bin/python tutorials/01_first_scenario.py`.
# `BEAMATTN_TUTORIAL_SMALL=1` selects the small settings CI uses; `BEAMATTN_TUTORIAL_OUT` the output folder.

# %%
import csv
import json
import os
import tomllib
from pathlib import Path

import beamattn
from beamattn.wireless.scenario import ScenarioError, parse_scenario

SMALL = os.environ.get("BEAMATTN_TUTORIAL_SMALL") == "1"
ROOT = Path.cwd() if (Path.cwd() / "scenarios").is_dir() else Path.cwd().parent  # repository root
OUT = Path(os.environ.get("BEAMATTN_TUTORIAL_OUT", ROOT / "results" / "tutorials")) / "01_first_scenario"

# %% [markdown]
# ## Load and change a scenario
#
# `parse_scenario` validates a parsed TOML document: every field is checked (type, physically meaningful
# range) and a bad one is one `ScenarioError` line naming the field. Change the document, not the
# `Scenario` object, so that the change is validated too.

# %%
doc = tomllib.loads((ROOT / "scenarios" / "vehicular-60.toml").read_text())
doc["scenario"]["drops"] = 8 if SMALL else 64
doc["scenario"]["chunk_drops"] = 8 if SMALL else 16
if SMALL:
    doc["channel"]["duration"] = 0.4  # s per drop (1 s in the file): 17 decisions instead of 42
doc["scenario"]["policies"] = ["genie", "mrt", "exhaustive", "best-of-set-b", "stale", "attention-untrained",
                               "random"]
scn = parse_scenario(doc, source="vehicular-60 (tutorial)")
print(scn.name, scn.drops, "drops;", scn.array.num_ant, "antennas;", scn.measurement.set_b, "beams in Set B")

# %% [markdown]
# A field out of range is refused before anything is computed:

# %%
bad = {**doc, "measurement": {**doc["measurement"], "snr_db": 1e300}}
try:
    parse_scenario(bad, source="bad.toml")
except ScenarioError as e:
    print(e)

# %% [markdown]
# ## Evaluate the policies
#
# Every policy sees the same channels and measurement noise (common random numbers), so differences come
# from the policies alone. `reference="exhaustive"` pairs each policy with the 64-beam sweep over the same
# drops: the last column of the table is the paired loss difference with its 95% bootstrap CI.
# `beamattn.evaluate` (the public API) runs what `beamattn run` runs; with `out_dir` it also writes
# `metrics.json`, `steps.csv` and `figures/` there.

# %%
result = beamattn.evaluate(scn, reference="exhaustive", out_dir=OUT, force=True, quiet=False)

# %% [markdown]
# ## Read the results
#
# `metrics.json` holds every KPI of every policy as a mean with its 95% bootstrap CI over drops
# (`loss_db`: the genie beam's SNR minus the policy's, over the interval the beam is used; `within_1db`,
# `top1`, `overhead`: beams measured per decision, ...). See [Concepts](../concepts.md#kpis).

# %%
metrics = json.loads((OUT / "metrics.json").read_text())
for name, kpis in metrics["metrics"].items():
    loss, (lo, hi) = kpis["loss_db"]["mean"], kpis["loss_db"]["ci95"]
    print(f"{name:20s} loss to genie {loss:6.2f} dB [{lo:6.2f}, {hi:6.2f}]  within 1 dB "
          f"{kpis['within_1db']['mean']:.3f}  beams measured {kpis['overhead']['mean']:.1f}")

# %% [markdown]
# The genie's loss is 0 by definition and MRT's is negative (perfect CSI beats every codebook beam). The
# paired differences are what tell two policies apart:

# %%
for name, kpis in metrics["metrics"].items():
    d = kpis["paired_vs_reference"]["loss_db"]
    print(f"{name:20s} minus exhaustive: {d['mean']:+.2f} dB [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]")

# %% [markdown]
# `steps.csv` has one row per drop, decision and policy: the beam used and its SNR at the time of use.

# %%
with open(OUT / "steps.csv", newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["policy"] == "best-of-set-b" and r["drop"] == "0"]
print(len(rows), "decisions of best-of-set-b in drop 0; the first three:")
for r in rows[:3]:
    print({k: r[k] for k in ("decision", "time_s", "beam", "snr_db", "genie_db", "loss_db")})

# The same numbers, in memory: evaluate returns them as well.
assert abs(result.summary["genie"]["loss_db"]["mean"]) < 1e-3  # float32 rounding
