# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 2. Writing your own policy
#
# A policy is a small class with one method, `decide(episode) -> Decision`, batched over drops and
# decisions, and a name given by `@register`. Once registered it runs like every built-in policy: on the
# same channels and measurement noise (common random numbers), checked by `check_decision`, paired with a
# reference, in the tables, `metrics.json`, sweeps and link-level runs. From the command line the same file
# is loaded with `--plugin FILE.py` (see `examples/my_policy.py`).
#
# The public API (`import beamattn`: `beamattn.register`, `beamattn.Policy`, `beamattn.Decision`,
# `beamattn.episodes`, `beamattn.evaluate`) gives the numbers of `beamattn run` from Python.
#
# The policy of this tutorial adds **hysteresis** to best-of-Set-B: keep the current beam unless another
# measured beam reports at least `margin_db` more. It trades a little SNR for fewer beam switches (the
# `switch` KPI), which is what a real link wants when each switch costs signalling.

# %%
import os
import tomllib
from pathlib import Path

import torch

import beamattn
from beamattn.wireless.policies.base import read_reports
from beamattn.wireless.policies.checks import check_decision
from beamattn.wireless.scenario import parse_scenario

SMALL = os.environ.get("BEAMATTN_TUTORIAL_SMALL") == "1"
ROOT = Path.cwd() if (Path.cwd() / "scenarios").is_dir() else Path.cwd().parent


# %% [markdown]
# ## The policy
#
# `ep.set_b` are the codebook indices of the measured beams; `read_reports` returns their reports as the
# other policies read them (`[B, D, J]` dB, the latest report per decision). A `Decision` carries the beam
# used over each use interval (`beams [B, D, N]`, unit norm), the codebook index it stands for, and the
# beams measured for the decision (the overhead).

# %%
@beamattn.register("hysteresis-set-b")
class HysteresisSetB(beamattn.Policy):
    """Best of Set B, but switch only when a measured beam reports ``margin_db`` more than the current one."""

    def __init__(self, margin_db: float = 2.0):
        if isinstance(margin_db, bool) or not isinstance(margin_db, (int, float)) or not 0 <= margin_db <= 30:
            raise ValueError(f"policy 'hysteresis-set-b': argument 'margin_db' = {margin_db!r}; "
                             "expected a number in [0, 30] dB")
        self.margin_db = float(margin_db)

    def decide(self, ep: beamattn.Episode) -> beamattn.Decision:
        ids = ep.set_b  # [J] measured beams (codebook indices)
        reports, _ = read_reports(self.name, ep, ids, history=1)  # [B, D, J] latest reports, dB
        b, d, _ = reports.shape
        choice = torch.empty(b, d, dtype=torch.long, device=reports.device)  # [B, D] position in Set B
        choice[:, 0] = reports[:, 0].argmax(-1)
        for t in range(1, d):  # sequential on purpose: the decision depends on the previous one
            best = reports[:, t].argmax(-1)  # [B]
            gain = reports[:, t].gather(-1, best[:, None]) - reports[:, t].gather(-1, choice[:, t - 1, None])
            choice[:, t] = torch.where(gain[:, 0] >= self.margin_db, best, choice[:, t - 1])
        index = ids[choice]  # [B, D] codebook index
        beams = ep.codebook.beams.to(ep.cov_use.dtype)[index]  # [B, D, N] unit-norm beams
        measured = torch.full((b, d), float(ids.numel()), device=reports.device)  # [B, D] beams measured
        return beamattn.Decision(beams=beams, index=index, measured=measured)

    def describe(self) -> dict:  # recorded in metrics.json under policies_config
        return {"margin_db": self.margin_db}


# %% [markdown]
# ## Check it on one batch of drops
#
# `beamattn.episodes` yields the chunks of drops `beamattn run` evaluates (the episode: reports and truth;
# the channel it was measured on). `check_decision` is what the runner applies
# to every decision before any KPI: shapes, finite values, unit-norm beams, indices in range; a broken
# policy stops with one line naming the field.

# %%
doc = tomllib.loads((ROOT / "scenarios" / "vehicular-60.toml").read_text())
doc["scenario"].update(drops=8 if SMALL else 64, chunk_drops=8 if SMALL else 16)
if SMALL:
    doc["channel"]["duration"] = 0.4  # s per drop (1 s in the file)
# The policy's arguments, as a [policy.hysteresis-set-b] table of the file would give them (validated by
# parse_scenario: the name must be registered, which it now is).
doc.setdefault("policy", {})["hysteresis-set-b"] = {"margin_db": 2.0}
scn = parse_scenario(doc, source="vehicular-60 (tutorial)")
ep = next(iter(beamattn.episodes(scn))).episode
dec = HysteresisSetB(margin_db=2.0).decide(ep)
check_decision("hysteresis-set-b", ep, dec)
print("beams", tuple(dec.beams.shape), "indices", tuple(dec.index.shape), "first drop:", dec.index[0, :12].tolist())

# %% [markdown]
# A broken decision is refused in one line:

# %%
bad = beamattn.Decision(beams=2 * dec.beams, index=dec.index, measured=dec.measured)  # not unit norm
try:
    check_decision("hysteresis-set-b", ep, bad)
except ValueError as e:
    print(e)

# %% [markdown]
# ## Evaluate it beside the baselines
#
# The registered name works wherever a policy name does; its arguments come from the `[policy.NAME]` table
# set above. Paired against best-of-Set-B over the same drops:

# %%
result = beamattn.evaluate(scn, ["genie", "exhaustive", "best-of-set-b", "hysteresis-set-b"],
                           reference="best-of-set-b", quiet=False)  # out_dir=... also writes the files
for name in ("best-of-set-b", "hysteresis-set-b"):
    s = result.summary[name]
    d = s["paired_vs_reference"]["loss_db"]
    print(f"{name:17s} loss {s['loss_db']['mean']:.2f} dB, switch rate {s['switch']['mean']:.3f}, "
          f"paired vs best-of-set-b {d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}] dB")
assert result.summary["hysteresis-set-b"]["switch"]["mean"] <= result.summary["best-of-set-b"]["switch"]["mean"]

# %% [markdown]
# Hysteresis switches less often, for (here) a small change in SNR loss: whether the difference is real is
# what the paired CI says. To use the policy from the command line, put the class in a file and run
# `beamattn run scenarios/vehicular-60.toml --plugin my_policy.py --policies best-of-set-b,hysteresis-set-b`.
