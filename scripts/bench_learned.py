#!/usr/bin/env python
"""Training runtime of the learned baselines against the attention selector's, in one process.

Each row times one optimiser step of ``train_selector``'s recipe (minibatch of the scenario's
``batch`` decisions from a real decision pool, forward, loss, backward, gradient clipping, AdamW,
OneCycle) for one model: the attention selector (SE objective) and every learned baseline
(cross-entropy, :func:`beamattn.wireless.learned.train.learned_loss`), plus one validation pass over
the validation pool. Times are medians of interleaved repeats (every model once per round, so load
on a shared machine hits all alike); the ratio is the baseline's step time over the selector's, and
the projected training time is ``steps`` x step + ``steps // 30`` validations, the validation time
scaled to ``train_selector``'s validation pool of ``max(16, drops // 4)`` drops (pool collection, the
same for all, excluded).

    python scripts/bench_learned.py [scenarios/vehicular-60.toml] [--quick] [--out PATH] [--repeats N]

Prints a markdown table, writes JSON (default results/bench_learned.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beamattn import __version__  # noqa: E402
from beamattn.io import write_json_atomic  # noqa: E402
from beamattn.wireless.learned.models import LEARNED_MODELS, build_model, count_parameters  # noqa: E402
from beamattn.wireless.learned.train import (_validate as validate_learned, learned_loss, model_config,  # noqa: E402
                                             optimiser_step)
from beamattn.wireless.runner import TRAIN_STREAM, VALID_STREAM, make_codebooks  # noqa: E402
from beamattn.wireless.scenario import load_scenario  # noqa: E402
from beamattn.wireless.selector import AttentionSelector  # noqa: E402
from beamattn.wireless.train import _objective, _validate as validate_selector, collect_pool  # noqa: E402


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", nargs="?", default="scenarios/vehicular-60.toml")
    p.add_argument("--quick", action="store_true", help="smoke test: 8 training drops, 2 repeats, no large score net")
    p.add_argument("--repeats", type=int, default=None, help="rounds of interleaved timing (default 7, quick 2)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("results/bench_learned.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    scn = load_scenario(a.scenario)
    tc = scn.training
    repeats = a.repeats or (2 if a.quick else 7)
    drops = 8 if a.quick else 32  # the pool only supplies realistic inputs: its size does not change a step
    sel_cfg = dataclasses.replace(scn.selector, learned=True)
    print(f"collecting {drops} + {drops // 2} drops ...", file=sys.stderr)
    train, set_b = collect_pool(scn, tc.seed, drops, TRAIN_STREAM, sel_cfg.history)
    valid, _ = collect_pool(scn, tc.seed, max(2, drops // 2), VALID_STREAM, sel_cfg.history)
    narrow, _ = make_codebooks(scn)
    measured = torch.zeros(narrow.num_beams, dtype=torch.bool)
    measured[set_b] = True
    rho = 10 ** (scn.snr_db / 10)
    names = ["attention", *(m for m in LEARNED_MODELS if not (a.quick and m == "score-classifier-large"))]
    models, opts, steps_fn, valid_fn = {}, {}, {}, {}
    gen = torch.Generator().manual_seed(0)
    for name in names:
        torch.manual_seed(tc.seed)
        if name == "attention":
            model = AttentionSelector(sel_cfg, narrow.beams, measured)
            loss_fn = lambda m, b: -_objective(m, b, rho)[0].mean()  # noqa: E731
            valid_fn[name] = lambda m: validate_selector(m, valid, rho)
        else:
            model = build_model(model_config(scn, name), narrow.beams, measured)
            loss_fn = learned_loss
            valid_fn[name] = lambda m: validate_learned(m, valid, rho)
        opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.lr, total_steps=10**6, pct_start=0.1)
        models[name] = model

        def step(model=model, loss_fn=loss_fn, opt=opt, sched=sched):
            idx = torch.randint(len(train), (min(tc.batch, len(train)),), generator=gen)
            optimiser_step(model, loss_fn(model, train.take(idx)), opt, sched)

        steps_fn[name] = step
    for name in names:  # warm-up
        steps_fn[name]()
    t_step = {n: [] for n in names}
    t_val = {n: [] for n in names}
    for r in range(repeats):
        print(f"round {r + 1}/{repeats} ...", file=sys.stderr)
        for name in names:
            t_step[name].append(_timed(steps_fn[name]))
            models[name].eval()
            t_val[name].append(_timed(lambda: valid_fn[name](models[name])))
            models[name].train()
    ref = statistics.median(t_step["attention"])
    # Validation time scales with the pool: project it to train_selector's validation pool.
    valid_scale = max(16, tc.drops // 4) / max(2, drops // 2)
    rows = []
    for name in names:
        s, v = statistics.median(t_step[name]), statistics.median(t_val[name])
        rows.append({"model": name, "parameters": count_parameters(models[name]), "step_ms": 1e3 * s,
                     "valid_ms": 1e3 * v, "ratio_to_selector": s / ref,
                     "projected_train_s": tc.steps * s + max(1, tc.steps // 30) * v * valid_scale})
    head = (f"{scn.name}: one training step (batch {tc.batch}) and one validation pass ({len(valid)} decisions), "
            f"median of {repeats} interleaved rounds, {torch.get_num_threads()} thread(s)")
    print(head)
    print(f"| model | parameters | step ms | ratio to selector | validation ms | projected training s ({tc.steps} steps) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['parameters']:,} | {r['step_ms']:.1f} | {r['ratio_to_selector']:.2f}x | "
              f"{r['valid_ms']:.1f} | {r['projected_train_s']:.0f} |")
    write_json_atomic(a.out, {"benchmark": "bench_learned", "scenario": scn.name, "quick": a.quick, "rows": rows,
                              "batch": tc.batch, "steps": tc.steps, "valid_decisions": len(valid),
                              "repeats": repeats,
                              "environment": {"beamattn": __version__, "torch": torch.__version__,
                                              "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                                              "python": platform.python_version(),
                                              "processor": platform.processor(),
                                              "load_average": os.getloadavg()}})
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
