# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 6. A sweep on a local Dask cluster, and on SLURM
#
# A sweep file names a base scenario, a `[grid]` of dotted scenario keys, evaluation seeds and policies.
# Every (cell, seed) is one task that runs all the policies on the same drops; each task's result is
# written atomically with a checksum as it arrives, so an interrupted sweep resumes with `--resume` without
# redoing or losing finished work, and the same seed gives the same numbers on 1 or N workers.
#
# ```bash
# beamattn sweep scenarios/sweeps/vehicular-speed.toml --out results/sweep --workers 2     # local Dask cluster
# beamattn sweep scenarios/sweeps/vehicular-speed.toml --out results/sweep --resume        # after an interruption
# beamattn sweep scenarios/sweeps/vehicular-speed.toml --out results/sweep --scheduler tcp://HOST:8786
# ```

# %%
import json
import os
import tomllib
from pathlib import Path

from beamattn.wireless.sweep import parse_sweep, run_sweep

SMALL = os.environ.get("BEAMATTN_TUTORIAL_SMALL") == "1"
ROOT = Path.cwd() if (Path.cwd() / "scenarios").is_dir() else Path.cwd().parent
OUT = Path(os.environ.get("BEAMATTN_TUTORIAL_OUT", ROOT / "results" / "tutorials")) / "06_sweep"

# %% [markdown]
# ## The sweep file
#
# `scenarios/sweeps/vehicular-speed.toml` sweeps the user's speed. Each cell's scenario is the base file
# with `[override]` and the cell's values merged in, validated like any scenario (a bad value is one line
# naming the cell and the field).

# %%
path = ROOT / "scenarios" / "sweeps" / "vehicular-speed.toml"
print(path.read_text())
doc = tomllib.loads(path.read_text())
if SMALL:  # two speeds, two seeds, few short drops
    doc["grid"] = {"channel.speed_kmh": [30, 120]}
    doc["override"] = {"scenario.drops": 4, "scenario.chunk_drops": 4, "channel.duration": 0.4}
sweep = parse_sweep(doc, source=str(path), base_dir=path.parent)
print(len(sweep.cells), "cells x", len(sweep.seeds), "seeds =", len(sweep.cells) * len(sweep.seeds), "tasks")

# %% [markdown]
# ## Run it on a local Dask cluster
#
# `workers=2` starts a Dask `LocalCluster` with two single-threaded worker processes (as
# `--workers 2` does); `workers=1` runs the tasks in this process. Results go to `OUT/tasks/<id>.json`,
# then `summary.json` (mean over seeds with a 95% t-interval), a table and one figure per metric.

#
# Dask starts its worker processes by *spawning* them, and a spawned process imports the main module again:
# in a script, the code that starts the cluster must therefore sit under `if __name__ == "__main__":`
# (in a notebook it makes no difference).

# %%
if __name__ == "__main__":
    result = run_sweep(sweep, OUT, workers=2, progress=False, figures=not SMALL, resume=False)
    print(result.table)
    print("ran", len(result.ran), "tasks")

# %% [markdown]
# ## Resume
#
# Running again with `resume=True` keeps every valid finished task (a truncated or corrupt file would be
# reported and redone) and computes nothing new; the summary is identical.

# %%
if __name__ == "__main__":
    again = run_sweep(sweep, OUT, workers=1, progress=False, figures=False, resume=True)
    print("ran", len(again.ran), "skipped", len(again.skipped))
    assert not again.ran and len(again.skipped) == len(result.ran)
    assert json.dumps(again.summary, sort_keys=True) == json.dumps(result.summary, sort_keys=True)

# %% [markdown]
# The numbers do not depend on the number of workers: each task runs torch with one thread and its
# random numbers depend only on its cell and seed, so `workers=1` above would have written the same files.
#
# ## On a SLURM cluster (dask-jobqueue)
#
# Not executed here (no SLURM in CI). Install `dask-jobqueue` beside beamattn (`pip install
# dask-jobqueue`; beamattn does not import it), start a cluster from the login node and keep it running:
#
# ```python
# # start_cluster.py
# from dask_jobqueue import SLURMCluster
#
# cluster = SLURMCluster(
#     cores=1, processes=1, memory="4GB", walltime="02:00:00",   # one single-threaded worker per job
#     job_extra_directives=["--cpus-per-task=1"],
#     job_script_prologue=["source /path/to/venv/bin/activate"],  # the same beamattn on every node
# )
# cluster.scale(jobs=32)
# print(cluster.scheduler_address)                               # e.g. tcp://10.1.2.3:8786
# input("press Enter to stop the cluster")
# ```
#
# then point the sweep at the scheduler from any machine that reaches it:
#
# ```bash
# beamattn sweep scenarios/sweeps/vehicular-speed.toml --out results/sweep --scheduler tcp://10.1.2.3:8786
# ```
#
# If jobs are pre-empted, run the same command with `--resume`: finished tasks are kept. Workers started
# by hand (`dask worker tcp://...`) should run without `MALLOC_TRIM_THRESHOLD_` set (it makes glibc trim
# torch's large temporaries and slows each task about 2x; `--workers N` starts its workers without it).
