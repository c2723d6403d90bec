#!/usr/bin/env python
"""Learned baselines vs the attention selector, each trained with several seeds (issue 11, items 4 and 7).

For every training seed: the attention selector (:func:`beamattn.wireless.train.train_selector`) and
every learned baseline (:func:`beamattn.wireless.learned.train.train_learned_models`: the same training
and validation drops, steps, batch, learning-rate schedule and best-validation rule) are trained; then
all of them are evaluated with ``beamattn run``'s :func:`~beamattn.wireless.runner.run_scenario` on the
same evaluation drops (common random numbers). Reported per model: loss to genie (dB) ± 95% CI over
drops, within 1 dB, Top-1 — the mean over training seeds and their spread (standard deviation and
range of the per-seed means) — and the paired difference against the attention selector of the same
seed (per drop, averaged over seeds, bootstrap 95% CI over drops). Parameter counts are listed.

Checkpoints already in ``OUT/seed-S/`` (same seed and steps) are reused and an interrupted selector
training is continued (``train_selector(resume=True)``), so an interrupted run resumes.

    python scripts/learned_baselines.py scenarios/vehicular-60.toml --out results/learned [--seeds 1,2,3]
        [--models mlp,lstm,...] [--steps N] [--quick] [--train-only] [--threads 1]

Writes ``OUT/learned_baselines.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beamattn.io import write_json_atomic  # noqa: E402
from beamattn.wireless.learned.models import LEARNED_MODELS  # noqa: E402
from beamattn.wireless.learned.train import selector_parameters, train_learned_models  # noqa: E402
from beamattn.wireless.metrics import bootstrap_ci  # noqa: E402
from beamattn.wireless.runner import STEP_FIELDS, run_scenario  # noqa: E402
from beamattn.wireless.scenario import load_scenario  # noqa: E402
from beamattn.wireless.train import train_selector  # noqa: E402

# Measured by default, in this order (the attention ablation first): every learned baseline but the large
# score network (d_model ~330: ~14x the selector's training time per step; add it with --models).
DEFAULT_MODELS = ("score-classifier", "mlp", "lstm", "mlp-soft", "score-classifier-hard", "lstm-large", "mlp-large")
REFERENCES = ("genie", "exhaustive", "best-of-set-b", "random")
KPIS = ("loss_db", "within_1db", "top1")


def _done(log: Path, seed: int, steps: int) -> bool:
    if not log.is_file():
        return False
    try:
        d = json.loads(log.read_text())
    except json.JSONDecodeError:
        return False
    ckpt = log.parent / Path(d.get("checkpoint", "")).name  # the checkpoint beside its log
    return d.get("seed") == seed and d.get("steps") == steps and ckpt.is_file()


def train_seed(scn, out: Path, seed: int, models: list[str], steps: int) -> dict:
    """Train the selector and ``models`` for one seed into ``out`` (skipping finished ones); their logs."""
    out.mkdir(parents=True, exist_ok=True)
    logs = {}
    if not _done(out / "train_log.json", seed, steps):
        train_selector(scn, out, seed=seed, steps=steps, progress=True, resume=True)  # continues an interrupted one
    logs["attention"] = json.loads((out / "train_log.json").read_text())
    todo = [m for m in models if not _done(out / f"{m}_train_log.json", seed, steps)]
    if todo:
        train_learned_models(scn, out, models=todo, seed=seed, steps=steps, progress=True)
    for m in models:
        logs[m] = json.loads((out / f"{m}_train_log.json").read_text())
    return logs


def evaluate_seed(scn, out: Path, models: list[str]) -> dict:
    """``run_scenario`` of the references, the selector and the models of one seed: per-drop KPIs per policy."""
    args = {**scn.policy_args, **{m: {"checkpoint": str(out / f"{m}.safetensors")} for m in models}}
    run = dataclasses.replace(scn, policy_args=args)
    names = [*REFERENCES, "attention", *models]
    res = run_scenario(run, None, policies=names, checkpoint=str(out / "selector.safetensors"), progress=False,
                       figures=False)
    col = {k: STEP_FIELDS.index(k) for k in ("drop", "policy", *KPIS)}
    per_drop: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        rows = [r for r in res.rows if r[col["policy"]] == name]
        drops = np.array([r[col["drop"]] for r in rows])
        ids = np.unique(drops)
        per_drop[name] = {k: np.array([np.mean([r[col[k]] for r, d in zip(rows, drops) if d == i]) for i in ids])
                          for k in KPIS}
    return per_drop


def _stats(per_seed: list[dict], name: str, ref: str = "attention", seed: int = 0) -> dict:
    """Mean over seeds, spread of the per-seed means, CI over drops, paired difference against ``ref``."""
    out = {}
    for k in KPIS:
        means = [float(p[name][k].mean()) for p in per_seed]
        pooled = np.mean([p[name][k] for p in per_seed], axis=0)  # [drops]: averaged over training seeds
        m, lo, hi = bootstrap_ci(pooled, seed=seed)
        out[k] = {"mean": m, "ci95": [lo, hi], "per_seed": means, "seed_std": float(np.std(means, ddof=1))
                  if len(means) > 1 else 0.0, "seed_range": [min(means), max(means)]}
    diff = np.mean([p[name]["loss_db"] - p[ref]["loss_db"] for p in per_seed], axis=0)  # [drops], paired
    m, lo, hi = bootstrap_ci(diff, seed=seed)
    out["paired_loss_db_vs_attention"] = {"mean": m, "ci95": [lo, hi]}
    return out


def table(stats: dict, params: dict) -> str:
    head = ("| policy | params | loss to genie dB (±CI over drops) | seed spread (sd; range) | within 1 dB | "
            "Top-1 | paired vs attention dB [95% CI] |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in stats.items():
        l, w, t, d = s["loss_db"], s["within_1db"], s["top1"], s["paired_loss_db_vs_attention"]
        half = (l["ci95"][1] - l["ci95"][0]) / 2
        spread = f"{l['seed_std']:.3f}; {l['seed_range'][0]:.2f}–{l['seed_range'][1]:.2f}"
        paired = "—" if name == "attention" else f"{d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]"
        lines.append(f"| {name} | {params.get(name, '—')} | {l['mean']:.2f} ±{half:.2f} | {spread} | "
                     f"{w['mean']:.3f} | {t['mean']:.3f} | {paired} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", nargs="?", default="scenarios/vehicular-60.toml")
    p.add_argument("--out", default="results/learned_baselines")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated training seeds")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma-separated, from {list(LEARNED_MODELS)}")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the scenario's)")
    p.add_argument("--quick", action="store_true", help="smoke test: 16 training drops, 30 steps, 8 evaluation drops")
    p.add_argument("--train-only", action="store_true", help="train (or resume) and stop")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: small models on a shared CPU are many times faster single-threaded)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    scn = load_scenario(a.scenario)
    seeds = [int(s) for s in a.seeds.split(",") if s]
    models = [m for m in a.models.split(",") if m]
    bad = [m for m in models if m not in LEARNED_MODELS]
    if bad:
        p.error(f"--models: unknown {bad}; expected names from {list(LEARNED_MODELS)}")
    if a.quick:
        scn = dataclasses.replace(scn, drops=8, chunk_drops=8,
                                  training=dataclasses.replace(scn.training, drops=16, steps=30))
    steps = a.steps or scn.training.steps
    out = Path(a.out)
    t0 = time.time()
    logs = {s: train_seed(scn, out / f"seed-{s}", s, models, steps) for s in seeds}
    params = {"attention": selector_parameters(scn), **{m: logs[seeds[0]][m]["parameters"] for m in models}}
    train_s = {n: [logs[s][n]["elapsed_s"] for s in seeds] for n in ["attention", *models]}
    if a.train_only:
        print(json.dumps({"params": params, "train_s": train_s}, indent=1))
        return 0
    per_seed = [evaluate_seed(scn, out / f"seed-{s}", models) for s in seeds]
    stats = {n: _stats(per_seed, n, seed=scn.seed) for n in [*REFERENCES, "attention", *models]}
    text = table(stats, params)
    print(f"\n{scn.name}: {scn.drops} evaluation drops (seed {scn.seed}), training seeds {seeds}, {steps} steps "
          f"x batch {scn.training.batch} on {scn.training.drops} training drops; mean over training seeds\n")
    print(text)
    write_json_atomic(out / "learned_baselines.json",
                      {"scenario": scn.name, "source": a.scenario, "quick": a.quick, "eval_drops": scn.drops,
                       "eval_seed": scn.seed, "train_seeds": seeds, "steps": steps, "batch": scn.training.batch,
                       "train_drops": scn.training.drops, "models": models, "parameters": params,
                       "train_elapsed_s": train_s, "stats": stats, "table_markdown": text,
                       "elapsed_s": time.time() - t0})
    print(f"wrote {out / 'learned_baselines.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
