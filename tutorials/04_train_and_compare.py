# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 4. Training a selector and comparing it with baselines
#
# The attention selector is trained to maximise the spectral efficiency **at the time of use** on training
# drops whose seeds are disjoint from the evaluation seeds. A fair comparison then needs:
#
# - the same evaluation drops for every policy (common random numbers), so that a difference is paired
#   drop by drop and its confidence interval is narrow;
# - several training seeds, because one trained selector is one draw of the training process.
#
# On the command line (the defaults of `scenarios/vehicular-60.toml`; ~100 s of training per seed):
#
# ```bash
# beamattn train scenarios/vehicular-60.toml --seed 1 --out results/train-s1
# beamattn run scenarios/vehicular-60.toml --checkpoint results/train-s1/selector.safetensors \
#     --policies exhaustive,best-of-set-b,hierarchical-avg,attention --reference exhaustive --out results/run-s1
# # ... the same with --seed 2 ...
# beamattn compare results/run-s1 results/run-s2 --reference attention --out results/cmp
# ```
#
# This tutorial does the same from Python, with small settings under `BEAMATTN_TUTORIAL_SMALL=1`.

# %%
import json
import os
import tomllib
from pathlib import Path

from beamattn.wireless.compare import compare_runs, format_comparison, plot_comparison
from beamattn.wireless.runner import run_scenario
from beamattn.wireless.scenario import parse_scenario
from beamattn.wireless.train import train_selector

SMALL = os.environ.get("BEAMATTN_TUTORIAL_SMALL") == "1"
ROOT = Path.cwd() if (Path.cwd() / "scenarios").is_dir() else Path.cwd().parent
OUT = Path(os.environ.get("BEAMATTN_TUTORIAL_OUT", ROOT / "results" / "tutorials")) / "04_train_and_compare"

doc = tomllib.loads((ROOT / "scenarios" / "vehicular-60.toml").read_text())
doc["scenario"].update(drops=8 if SMALL else 64, chunk_drops=8 if SMALL else 16)
if SMALL:  # a few steps on few drops: enough to see the workflow, not a good selector
    doc["training"].update(drops=16, steps=20, batch=64)
    doc["channel"]["duration"] = 0.4  # s per drop (1 s in the file)
scn = parse_scenario(doc, source="vehicular-60 (tutorial)")
TRAINING_SEEDS = (1, 2)
POLICIES = ["exhaustive", "best-of-set-b", "hierarchical-avg", "attention-untrained", "attention"]

# %% [markdown]
# ## Train one selector per training seed
#
# `train_selector` writes `selector.safetensors` (weights and a JSON config with the codebook's hash: no
# pickle), `train_log.json` and the training curve. The training seed picks the training drops and the
# initial weights; evaluation drops come from `[scenario] seed` and are never seen in training.

# %%
checkpoints = {}
for seed in TRAINING_SEEDS:
    log = train_selector(scn, OUT / f"train-s{seed}", seed=seed, progress=False, force=True)
    checkpoints[seed] = OUT / f"train-s{seed}" / "selector.safetensors"
    print(f"training seed {seed}: {log['train_decisions']} training decisions, {log['steps']} steps, "
          f"best validation {json.dumps(log['valid_best'])[:100]}, {log['elapsed_s']:.0f} s")

# %% [markdown]
# ## Evaluate each on the same drops
#
# Every run uses the scenario's evaluation seed, so all runs see identical channels and noise. The table's
# last column pairs every policy with the exhaustive sweep.

# %%
runs = []
for seed in TRAINING_SEEDS:
    folder = OUT / f"run-s{seed}"
    run_scenario(scn, folder, policies=POLICIES, checkpoint=str(checkpoints[seed]), reference="exhaustive",
                 progress=False, figures=False, force=True)
    runs.append(folder)

# %% [markdown]
# ## Paired comparison over drops and training seeds
#
# `compare_runs` reads the runs' `steps.csv`. A policy that gives the same numbers in every run (the
# baselines) is one policy; one whose numbers differ between runs (the trained selector) is averaged per
# drop over the training seeds, and its spread over seeds is reported. Each row is the paired difference
# against the reference with its 95% bootstrap CI over drops; "not distinguishable" means the CI contains 0.

# %%
result = compare_runs(runs, reference="attention")
print(format_comparison(result))
plot_comparison(result, OUT / "compare.png")
spread = result["policies"]["attention"]["seed_spread"]
print(f"the selector's mean loss over training seeds: {spread['min']:.2f} .. {spread['max']:.2f} dB")

# %% [markdown]
# Read the verdicts with the CIs, not the means: with few drops (the small settings) most differences are
# not distinguishable. The results page of the documentation has the full-size numbers of
# `scenarios/vehicular-60.toml` with 64 evaluation drops and three training seeds.

# %%
assert set(result["policies"]) == set(POLICIES)
assert result["policies"]["attention"]["num_seeds"] == len(TRAINING_SEEDS)
