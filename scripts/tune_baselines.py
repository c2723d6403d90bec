"""Tune the classical baselines' settings on *training* drops, as the selector is trained on them.

A fair comparison gives every policy the same information and budget. The learned selector sees the
training drops (stream 1 of the training seed) and its hyper-parameters are chosen on validation drops;
a baseline whose settings were chosen on the *evaluation* drops would be favoured, and one left at an
arbitrary default would be handicapped. This script evaluates a grid of each tunable baseline's
arguments on the scenario's training drops (never on evaluation drops), keeps the best by mean loss
to genie, and writes the ``[policy.NAME]`` tables that a scenario file takes, plus every grid point.

Usage::

    python scripts/tune_baselines.py scenarios/vehicular-60.toml --out results/tune-vehicular-60.json
    python scripts/tune_baselines.py SCN --policies ekf,exhaustive-avg --drops 32

The evaluation drops of ``beamattn run`` are then untouched by the choice (the grid's loss on them is
not computed at all).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from beamattn.io import write_json_atomic
from beamattn.wireless.metrics import decision_metrics
from beamattn.wireless.policies import make_policy
from beamattn.wireless.policies.checks import check_decision
from beamattn.wireless.runner import TRAIN_STREAM, episodes
from beamattn.wireless.scenario import load_scenario

# The settings a user of each baseline would tune; the first value of each list is the policy's default.
GRIDS: dict[str, dict[str, list]] = {
    "ekf": {"reacquire_steps": [0.5, 0.75, 1.0, 1.5], "reacquire_db": [6.0, 3.0, 9.0]},
    "exhaustive-avg": {"alpha": [0.5, 0.25, 0.75, 1.0]},
    "best-of-set-b-avg": {"alpha": [0.5, 0.25, 0.75, 1.0]},
    "hierarchical-avg": {"alpha": [0.5, 0.25, 0.75, 1.0]},
    "stale-avg": {"alpha": [0.5, 0.25, 0.75, 1.0]},
    "interp-set-b-avg": {"alpha": [0.5, 0.25, 0.75, 1.0]},
    "type1-oversampled-avg": {"alpha": [0.5, 0.25, 0.75, 1.0]},
    "ucb1-discounted": {"gamma": [None, 0.5, 0.7, 0.9]},
    "thompson-discounted": {"gamma": [None, 0.5, 0.7, 0.9]},
}


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, the defaults (first values) first."""
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def tune(scn, names: list[str], drops: int, seed: int) -> dict:
    """Mean loss to genie (dB) of every grid point of every policy on ``drops`` training drops.

    Returns ``{name: {"grid": [{"args", "loss_db"}], "best": args, "default_loss_db", "best_loss_db"}}``.
    """
    eps = [ep for _, ep, _ in episodes(scn, seed, drops, stream=TRAIN_STREAM)]  # the same drops for every point
    out = {}
    for name in names:
        points = []
        for args in grid_points(GRIDS[name]):
            kwargs = {k: v for k, v in args.items() if v is not None}
            pol = make_policy(name, **{**scn.policy_args.get(name, {}), **kwargs})
            losses = []
            for ep in eps:
                dec = pol.decide(ep)
                check_decision(name, ep, dec)
                losses.append(decision_metrics(ep, dec, scn.outage_db).loss_db.mean(1).numpy())  # [B] per drop
            points.append({"args": args, "loss_db": float(np.concatenate(losses).mean())})
            print(f"  {name} {args}: {points[-1]['loss_db']:.3f} dB", file=sys.stderr)
        best = min(points, key=lambda p: p["loss_db"])
        out[name] = {"grid": points, "best": best["args"], "default_loss_db": points[0]["loss_db"],
                     "best_loss_db": best["loss_db"]}
    return out


def toml_tables(result: dict) -> str:
    """The ``[policy.NAME]`` tables of the best settings (defaults left out)."""
    lines = []
    for name, r in result.items():
        default = r["grid"][0]["args"]
        changed = {k: v for k, v in r["best"].items() if v != default[k] and v is not None}
        if changed:
            lines.append(f"[policy.{name}]")
            lines += [f"{k} = {v}" for k, v in changed.items()]
            lines.append("")
    return "\n".join(lines) or "# every default is already the best on the training drops"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario")
    ap.add_argument("--policies", default=",".join(GRIDS), help=f"comma-separated, of {sorted(GRIDS)}")
    ap.add_argument("--drops", type=int, default=None, help="training drops (default: the scenario's drops)")
    ap.add_argument("--out", default=None, help="JSON file with every grid point and the choice")
    args = ap.parse_args(argv)
    try:
        scn = load_scenario(args.scenario)
        names = [n for n in args.policies.split(",") if n]
        bad = [n for n in names if n not in GRIDS]
        if bad or not names:
            raise ValueError(f"tune: policies {bad or names}; expected some of {sorted(GRIDS)}")
        bad = [n for n in names if n not in scn.policies]
        if bad:
            print(f"note: {bad} are not in the scenario's policies list; tuned anyway", file=sys.stderr)
        drops = scn.drops if args.drops is None else args.drops
        if drops < 1:
            raise ValueError(f"tune: --drops = {drops}; expected an integer >= 1")
    except (ValueError, FileNotFoundError) as e:
        print(f"tune_baselines.py: error: {e}", file=sys.stderr)
        return 2
    seed = scn.training.seed
    t0 = time.time()
    result = tune(scn, names, drops, seed)
    print(f"\n{scn.name}: {drops} training drops (stream {TRAIN_STREAM} of training seed {seed}), "
          f"{time.time() - t0:.0f} s\n")
    print("| policy | default | loss dB | best on training drops | loss dB |\n|---|---|---:|---|---:|")
    for name, r in result.items():
        print(f"| {name} | {r['grid'][0]['args']} | {r['default_loss_db']:.3f} | {r['best']} | "
              f"{r['best_loss_db']:.3f} |")
    print("\n" + toml_tables(result))
    if args.out:
        write_json_atomic(Path(args.out), {"scenario": scn.name, "source": scn.source, "training_seed": seed,
                                           "stream": TRAIN_STREAM, "drops": drops, "policies": result,
                                           "toml": toml_tables(result)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
