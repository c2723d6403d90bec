"""Paired differences of every policy against a reference, over the drops of one or more runs.

``beamattn run`` folders of one scenario and evaluation seed share their drops (common random
numbers), so runs that evaluated *different* policies (e.g. the baselines in one run, the trained
selector in another) can be paired drop by drop. This script merges their policies (a policy in
several runs must agree: use :mod:`beamattn.wireless.compare` for training seeds) and prints, per
policy, the mean loss to genie, within 1 dB, Top-1 and overhead, and the paired difference of each
against the reference with its 95% percentile-bootstrap interval over drops.

Usage::

    python scripts/paired.py RUN_DIR [RUN_DIR ...] --reference attention [--metrics loss_db,within_1db]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from beamattn.wireless.compare import COMPARE_METRICS, _same_drops, paired_difference, read_run


def merge_runs(folders: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per-drop values ``{policy: {metric: [drops]}}`` of the runs' policies (same drops checked)."""
    runs = [read_run(f) for f in folders]
    _same_drops(runs)
    merged: dict[str, dict[str, np.ndarray]] = {}
    for r in runs:
        for name, vals in r.values.items():
            if name in merged and not all(np.allclose(merged[name][m], vals[m], atol=1e-4) for m in vals):
                raise ValueError(f"paired: policy {name!r} differs between runs; expected one evaluation of it "
                                 "(several training seeds: use beamattn.wireless.compare)")
            merged.setdefault(name, vals)
    return merged


def table(merged: dict, reference: str, metrics: list[str]) -> str:
    if reference not in merged:
        raise ValueError(f"paired: reference policy {reference!r} is not in the runs (they have {sorted(merged)})")
    head = "| policy | " + " | ".join(metrics) + " | measured | " + " | ".join(f"Δ{m} vs {reference} [95% CI]"
                                                                              for m in metrics) + " |"
    lines = [head, "|---|" + "---:|" * (2 * len(metrics) + 1)]
    for name, vals in merged.items():
        cells = [f"{vals[m].mean():.3f}" for m in metrics] + [f"{vals['measured'].mean():.1f}"]
        for m in metrics:
            d = paired_difference(vals[m], merged[reference][m])
            cells.append(f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="beamattn run output folders (same scenario and seed)")
    ap.add_argument("--reference", required=True, help="the policy every other is paired with")
    ap.add_argument("--metrics", default="loss_db,within_1db,top1",
                    help=f"comma-separated steps.csv columns (of {sorted(COMPARE_METRICS)})")
    args = ap.parse_args(argv)
    metrics = [m for m in args.metrics.split(",") if m]
    try:
        bad = [m for m in metrics if m not in COMPARE_METRICS]
        if bad:
            raise ValueError(f"paired: metrics {bad}; expected some of {sorted(COMPARE_METRICS)}")
        print(table(merge_runs(args.runs), args.reference, metrics))
    except (ValueError, FileNotFoundError) as e:
        print(f"paired.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
