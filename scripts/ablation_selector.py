#!/usr/bin/env python
"""Ablation of the contextual selector (issue 13): which part buys what, at matched parameter counts.

Every variant is the scenario's selector with one part changed, trained with the same drops, steps, batch,
learning-rate schedule and best-validation rule (:func:`beamattn.wireless.train.train_selector`), with its
``d_model`` chosen so that its parameter count is the closest to the reference variant's (``full``). All
variants are then evaluated on the same evaluation drops (the scenario's seed, common random numbers):
loss to genie (dB) ± 95% CI over drops, within 1 dB, Top-1, active beams, and the paired difference per drop
against ``full`` (bootstrap 95% CI). ``hard`` is ``full`` evaluated in hard mode (an evaluation-only field:
no training of its own).

Variants: ``full`` (the scenario's selector: transformer, self-attention among beams, contextual query,
sparsemax, soft, and its ``csi_keys``), ``no-csi-keys`` (keys from the RSRP reports only), ``no-self-attention``
(layers = 0), ``fixed-query``, ``conv`` (no self-attention, fixed query, conv keys with the scenario's
``csi_keys``; ``conv-today`` the first selector, RSRP keys at the scenario's own ``d_model``, not matched),
``hard``, ``softmax``, ``entmax15``, ``cophase`` (values co-phased with the latest reported phase) and
``cophase-predict`` (co-phased with the phase predicted at the use interval).

    nice -n 5 python scripts/ablation_selector.py scenarios/vehicular-60.toml --out results/ablation-v60
        [--steps 400] [--train-drops 128] [--eval-drops 32] [--seeds 1] [--variants full,conv,...]

Writes ``OUT/ablation.json``, ``OUT/ablation.md`` and ``OUT/ablation.png``; checkpoints in ``OUT/<variant>-s<seed>/``
are reused when their training log has the same steps and seed (an interrupted run resumes).
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

from beamattn.io import save_figure_atomic, write_json_atomic, write_text_atomic  # noqa: E402
from beamattn.wireless.checkpoint import load_selector  # noqa: E402
from beamattn.wireless.compare import paired_difference  # noqa: E402
from beamattn.wireless.metrics import bootstrap_ci  # noqa: E402
from beamattn.wireless.runner import EVAL_STREAM, make_codebooks  # noqa: E402
from beamattn.wireless.scenario import load_scenario  # noqa: E402
from beamattn.wireless.selector import AttentionSelector, SelectorConfig, selector_forward  # noqa: E402
from beamattn.wireless.train import collect_pool, train_selector  # noqa: E402

FULL = {"arch": "transformer", "layers": 1, "heads": 4, "query": "context", "normalizer": "sparsemax",
        "mode": "soft", "cophase": False, "phase_predict": False}
VARIANTS: dict[str, dict] = {
    "full": {},
    "no-csi-keys": {"csi_keys": False},  # keys from the RSRP reports only (the selector before csi_keys)
    "no-self-attention": {"layers": 0},
    "fixed-query": {"query": "fixed"},
    "conv": {"arch": "conv"},
    "conv-today": {"arch": "conv", "csi_keys": False},  # the first selector (RSRP keys) at the scenario's d_model
    "hard": {"mode": "hard"},  # evaluation of `full` in hard mode
    "softmax": {"normalizer": "softmax"},
    "entmax15": {"normalizer": "entmax15"},
    "cophase": {"cophase": True},
    "cophase-predict": {"cophase": True, "phase_predict": True},
}
UNMATCHED = ("conv-today",)  # variants kept at the scenario's d_model (the others match full's parameter count)
_TRANSFORMER_ONLY = ("layers", "heads", "query", "phase_predict", "phase_lead")


def variant_config(base: SelectorConfig, name: str, phase_lead: float) -> SelectorConfig:
    """The selector config of variant ``name`` (its ``d_model`` not yet matched)."""
    fields = {**base.to_dict(), **FULL, "phase_lead": phase_lead, **VARIANTS[name]}
    if base.grid is not None:
        fields["grid"] = tuple(base.grid)
    if fields["arch"] == "conv":
        for key in _TRANSFORMER_ONLY:
            fields.pop(key, None)
    return SelectorConfig(**fields)


def parameter_count(cfg: SelectorConfig, beams: torch.Tensor, measured: torch.Tensor) -> int:
    torch.manual_seed(0)
    return sum(p.numel() for p in AttentionSelector(cfg, beams, measured).parameters())


def matched(cfg: SelectorConfig, target: int, beams: torch.Tensor, measured: torch.Tensor) -> SelectorConfig:
    """``cfg`` with the ``d_model`` (a multiple of its heads) whose parameter count is closest to ``target``."""
    step = cfg.heads if cfg.arch == "transformer" else 1
    best, best_err = step, None
    for d in range(step, 513, step):  # the count grows with d_model: stop at the first one past the target
        count = parameter_count(dataclasses.replace(cfg, d_model=d), beams, measured)
        if best_err is None or abs(count - target) < best_err:
            best, best_err = d, abs(count - target)
        if count >= target:
            break
    return dataclasses.replace(cfg, d_model=best)


@torch.no_grad()
def evaluate(sel: AttentionSelector, pool, drops: int, rho: float) -> dict[str, np.ndarray]:
    """Per-drop KPI means ``[drops]`` of ``sel`` on an evaluation pool (decisions drop-major)."""
    out = selector_forward(sel, pool.rsrp, pool.phase, pool.burst, pool.burst_lead)
    w = out.beams.to(pool.cov.dtype)  # [S, N]
    gain = torch.einsum("sm,smn,sn->s", w.conj(), pool.cov, w).real.clamp_min(1e-30)  # [S]
    genie = pool.gain.max(-1)  # [S]
    loss = 10 * torch.log10(genie.values.clamp_min(1e-30)) - 10 * torch.log10(gain)  # [S] dB
    kpis = {"loss_db": loss, "within_1db": (loss <= 1).double(), "top1": (out.index == genie.indices).double(),
            "active": out.active.double(), "se": torch.log2(1 + rho * gain)}
    return {k: v.double().reshape(drops, -1).mean(1).cpu().numpy() for k, v in kpis.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--train-drops", type=int, default=128)
    p.add_argument("--eval-drops", type=int, default=32)
    p.add_argument("--batch", type=int, default=None, help="training batch (default: the scenario's)")
    p.add_argument("--seeds", default="1", help="training seeds, comma separated")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    names = [v for v in a.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"argument --variants: unknown {unknown}; expected some of {list(VARIANTS)}")
    seeds = [int(s) for s in a.seeds.split(",")]
    scn = load_scenario(a.scenario)
    scn = dataclasses.replace(scn, training=dataclasses.replace(scn.training, drops=a.train_drops,
                                                                 batch=a.batch or scn.training.batch))
    narrow, _ = make_codebooks(scn)
    beams = narrow.beams
    eval_pool, set_b = collect_pool(scn, scn.seed, a.eval_drops, EVAL_STREAM, scn.selector.history)
    measured = torch.zeros(narrow.num_beams, dtype=torch.bool)
    measured[set_b] = True
    rho = 10 ** (scn.snr_db / 10)
    # The phase predictor's horizon, as scenarios set it: latest report -> middle of the use interval (periods).
    dt = scn.channel.sample_interval
    p_steps, d_steps = max(1, round(scn.measurement.period / dt)), round(scn.measurement.delay / dt)
    lead = (d_steps + (p_steps - 1) / 2) / p_steps
    ref_cfg = variant_config(scn.selector, "full", lead)
    target = parameter_count(ref_cfg, beams, measured)
    results: dict[str, dict] = {}
    per_drop: dict[str, dict[str, np.ndarray]] = {}
    a.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        train_name = "full" if name == "hard" else name
        cfg = variant_config(scn.selector, train_name, lead)
        if train_name == "full" or name in UNMATCHED:
            cfg = ref_cfg if train_name == "full" else cfg
        else:
            cfg = matched(cfg, target, beams, measured)
        if cfg.cophase and not scn.measurement.with_phase:
            print(f"{name}: skipped (the scenario reports no phases)", file=sys.stderr)
            continue
        runs, times = [], []
        for seed in seeds:
            folder = a.out / f"{train_name}-s{seed}"
            log = folder / "train_log.json"
            old = json.loads(log.read_text()) if log.is_file() else {}
            done = old.get("steps") == a.steps and old.get("seed") == seed and old.get("selector") == cfg.to_dict() \
                and old.get("train_decisions", 0) > 0
            if not done:
                t0 = time.time()
                train_selector(dataclasses.replace(scn, selector=cfg), folder, seed=seed, steps=a.steps,
                               progress=False, force=True)
                print(f"{train_name} seed {seed}: trained in {time.time() - t0:.0f} s", file=sys.stderr)
            times.append(json.loads(log.read_text())["elapsed_s"])
            sel = load_selector(folder / "selector.safetensors", beams, measured,
                                overrides={"mode": VARIANTS[name].get("mode", cfg.mode), "topk": cfg.topk})
            runs.append(evaluate(sel, eval_pool, a.eval_drops, rho))
        per_drop[name] = {k: np.mean([r[k] for r in runs], axis=0) for k in runs[0]}  # mean over seeds per drop
        row = {"config": sel.config.to_dict(), "parameters": parameter_count(cfg, beams, measured),
               "train_seconds_mean": float(np.mean(times)),
               "seed_means_loss_db": [float(r["loss_db"].mean()) for r in runs]}
        for k, v in per_drop[name].items():
            mean, lo, hi = bootstrap_ci(v, seed=0)
            row[k] = {"mean": mean, "ci95": [lo, hi]}
        results[name] = row
    if "full" in per_drop:
        for name in results:
            results[name]["paired_vs_full"] = paired_difference(per_drop[name]["loss_db"], per_drop["full"]["loss_db"])
    meta = {"scenario": scn.name, "steps": a.steps, "train_drops": a.train_drops, "eval_drops": a.eval_drops,
            "batch": scn.training.batch,
            "seeds": seeds, "target_parameters": target, "threads": torch.get_num_threads(), "variants": results}
    write_json_atomic(a.out / "ablation.json", meta)
    lines = [f"Ablation on {scn.name}: {a.steps} steps, {a.train_drops} training drops, {a.eval_drops} evaluation "
             f"drops, seeds {seeds} (mean over seeds per drop)", "",
             "| variant | params | loss to genie dB | within 1 dB | Top-1 | active | paired Δ vs full dB [95% CI] |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, r in results.items():
        pd = r.get("paired_vs_full")
        delta = "–" if name == "full" or pd is None else f"{pd['mean']:+.2f} [{pd['ci95'][0]:+.2f}, {pd['ci95'][1]:+.2f}]"
        half = (r["loss_db"]["ci95"][1] - r["loss_db"]["ci95"][0]) / 2
        lines.append(f"| {name} | {r['parameters']} | {r['loss_db']['mean']:.2f} ±{half:.2f} | "
                     f"{r['within_1db']['mean']:.3f} | {r['top1']['mean']:.3f} | {r['active']['mean']:.1f} | {delta} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_text_atomic(a.out / "ablation.md", text)
    _figure(results, a.out / "ablation.png", scn.name)
    return 0


def _figure(results: dict, path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(results) + 1.2))
    names = list(results)
    for i, n in enumerate(names):
        pd = results[n].get("paired_vs_full")
        if pd is None:
            continue
        ax.errorbar(pd["mean"], i, xerr=[[pd["mean"] - pd["ci95"][0]], [pd["ci95"][1] - pd["mean"]]], fmt="o",
                    color="C0" if n != "full" else "k", capsize=3)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("paired loss difference vs full (dB), 95% CI; > 0 = worse than full")
    ax.set_title(f"Selector ablation, {name}")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
