"""``beamattn compare``: paired differences between policies over the same drops, across training seeds.

A claim that policy A beats policy B is a *paired* difference: both were
evaluated on the same drops (common random numbers), so the per-drop
difference ``d_i = KPI_A(i) − KPI_B(i)`` removes the drop-to-drop variation
that both share. Its mean and 95% percentile-bootstrap interval over drops
(drops are the independent units) say whether the difference is real.

Learned policies are trained with several seeds. Give one run folder per
training seed (``beamattn run`` outputs of the same scenario and evaluation
seed, each with a checkpoint trained with another seed): a policy present in
several runs gets, besides one paired difference per training seed, the
difference of its *seed-averaged* per-drop KPI, whose interval covers the
drops, and the spread (min, max, standard deviation) of the per-seed means
over training seeds. Policies that do not depend on training (the genie, the
sweeps) give the same numbers in every run; the runs themselves are refused
when their scenario or evaluation seed differ, since they cannot then share
drops. Runs may also evaluate *different* policies over the same drops (the
baselines in one run, each training seed of a learned policy in its own): a
policy is then averaged over the runs that have it, and paired with the
reference of the same run where that run has it (else with the reference's
average over the runs that have it).

Inputs are the runs' ``steps.csv`` (per decision) and ``metrics.json``
(scenario and seed, to check the runs are comparable).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .metrics import bootstrap_ci

__all__ = ["COMPARE_METRICS", "RunTable", "read_run", "parse_run_argument", "paired_difference", "compare_runs",
           "format_comparison", "plot_comparison"]

# steps.csv columns that can be compared, with the direction that is better (+1: larger is better).
COMPARE_METRICS = {"loss_db": -1, "snr_db": +1, "se": +1, "top1": +1, "within_1db": +1, "measured": -1}


@dataclass
class RunTable:
    """Per-drop means of one run: ``values[policy][metric]`` is ``[num_drops]`` float64, drops in order."""

    path: Path
    scenario: dict
    seed: int
    checkpoint: str | None
    values: dict[str, dict[str, np.ndarray]]


def parse_run_argument(arg: str) -> tuple[str, dict[str, str]]:
    """``"FOLDER"`` or ``"FOLDER::OLD=NEW[,OLD2=NEW2]"`` → ``(FOLDER, {OLD: NEW})``: the policies of that run to
    rename before runs are merged (e.g. the same ``attention`` policy from two checkpoints: trained here and
    trained elsewhere). One-line ``ValueError`` for a malformed rename."""
    folder, sep, spec = arg.partition("::")
    renames: dict[str, str] = {}
    if sep:
        for item in spec.split(","):
            old, eq, new = item.partition("=")
            if not eq or not old or not new:
                raise ValueError(f"compare: run argument {arg!r} renames {item!r}; expected FOLDER::OLD=NEW"
                                 "[,OLD2=NEW2] (a policy of the run and its new name)")
            renames[old] = new
    return folder, renames


def read_run(folder: str | Path, rename: dict[str, str] | None = None) -> RunTable:
    """Read a ``beamattn run`` output folder (metrics.json and steps.csv) into per-drop means; ``rename`` maps
    policy names of this run to the names they take in the comparison."""
    folder = Path(folder)
    meta_path, steps_path = folder / "metrics.json", folder / "steps.csv"
    for p in (meta_path, steps_path):
        if not p.is_file():
            raise FileNotFoundError(f"compare: run folder {str(folder)!r} has no {p.name} "
                                    "(expected the output folder of `beamattn run`)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"compare: {str(meta_path)!r} is not valid JSON ({e})") from None
    sums: dict[str, dict[str, dict[int, list[float]]]] = {}
    with open(steps_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"drop", "policy", *COMPARE_METRICS} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"compare: {str(steps_path)!r} lacks the columns {sorted(missing)}")
        for row in reader:
            per_policy = sums.setdefault(row["policy"], {m: {} for m in COMPARE_METRICS})
            drop = int(row["drop"])
            for m in COMPARE_METRICS:
                acc = per_policy[m].setdefault(drop, [0.0, 0])
                acc[0] += float(row[m])
                acc[1] += 1
    values: dict[str, dict[str, np.ndarray]] = {}
    for policy, per_metric in sums.items():
        values[policy] = {}
        for m, per_drop in per_metric.items():
            drops = sorted(per_drop)
            if drops != list(range(len(drops))):
                raise ValueError(f"compare: {str(steps_path)!r}: policy {policy!r} lacks drops "
                                 f"(found {len(drops)}, not 0..{len(drops) - 1})")
            values[policy][m] = np.array([per_drop[d][0] / per_drop[d][1] for d in drops])
    rename = rename or {}
    unknown = sorted(set(rename) - set(values))
    if unknown:
        raise ValueError(f"compare: run {str(folder)!r} has no policy {unknown[0]!r} to rename; it has "
                         f"{sorted(values)}")
    values = {rename.get(name, name): v for name, v in values.items()}
    if len(values) != len(sums):
        raise ValueError(f"compare: run {str(folder)!r}: the renames {rename} give two policies one name")
    return RunTable(path=folder, scenario=meta.get("scenario", {}), seed=meta.get("seed"),
                    checkpoint=meta.get("checkpoint"), values=values)


def paired_difference(a: np.ndarray, b: np.ndarray, *, level: float = 0.95, seed: int = 0,
                      num_resamples: int = 2000) -> dict:
    """Mean of ``a − b`` over paired drops and its percentile-bootstrap interval.

    Args:
        a, b: ``[num_drops]`` per-drop KPI means of two policies on the same drops.
    Returns:
        ``{"mean", "ci95": [low, high], "num_drops"}``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"compare: paired arrays must have the same 1-D shape, got {a.shape} and {b.shape}")
    mean, lo, hi = bootstrap_ci(a - b, num_resamples=num_resamples, seed=seed, level=level)
    return {"mean": mean, "ci95": [lo, hi], "num_drops": int(a.size)}


# Scenario fields that do not change the drops, their measurements or the KPIs: runs that differ only in
# these (another policy list, selector or training budget, a copy of the file elsewhere) share their drops.
_NOT_DROPS = ("description", "source", "policies", "policy_args", "selector", "training", "selector_explicit")


def _drops_key(scenario: dict) -> dict:
    return {k: v for k, v in scenario.items() if k not in _NOT_DROPS}


def _same_drops(runs: list[RunTable]) -> None:
    """Refuse runs that cannot share drops: another scenario (channel, array, codebook, measurement, SNRs,
    drops), evaluation seed or number of drops."""
    first = runs[0]
    for r in runs[1:]:
        key_a, key_b = _drops_key(first.scenario), _drops_key(r.scenario)
        if key_a != key_b:
            fields = sorted(k for k in key_a.keys() | key_b.keys() if key_a.get(k) != key_b.get(k))
            raise ValueError(f"compare: runs {str(first.path)!r} and {str(r.path)!r} differ in their scenario "
                             f"(fields {fields}); expected runs of one scenario and evaluation seed (the same drops)")
        if first.seed != r.seed:
            raise ValueError(f"compare: runs {str(first.path)!r} and {str(r.path)!r} differ in their seed "
                             f"({first.seed} vs {r.seed}); expected runs of one scenario and evaluation seed "
                             "(the same drops)")


def compare_runs(folders: list[str | Path], reference: str, *, metric: str = "loss_db", level: float = 0.95,
                 seed: int = 0, tolerance: float = 1e-4) -> dict:
    """Paired differences of every policy against ``reference`` over the drops of one or more runs.

    Several runs are training seeds of the same evaluation, or runs of other policies over the same
    drops: a policy is averaged per drop over the runs that have it; one whose per-drop numbers differ
    between those runs (beyond ``tolerance``: steps.csv rounds to 1e-4) is a trained one. A folder given
    as ``"FOLDER::OLD=NEW"`` has its policy ``OLD`` renamed ``NEW`` first (:func:`parse_run_argument`).

    Returns ``{"metric", "better", "reference", "runs", "level", "policies": {name: {...}}}`` where each
    entry has ``mean`` (the metric, seed-averaged), ``diff`` (paired difference of the seed-averaged
    per-drop values, with CI), ``per_seed`` (one paired difference per run), ``seed_spread``
    (min/max/std of the per-run means), ``num_seeds`` and ``runs`` (the indices of the runs that have it).
    """
    if metric not in COMPARE_METRICS:
        raise ValueError(f"compare: metric {metric!r}; expected one of {sorted(COMPARE_METRICS)}")
    if not 0 < level < 1:
        raise ValueError(f"compare: level = {level!r}; expected a probability in (0, 1)")
    if not folders:
        raise ValueError("compare: expected at least one run folder")
    runs = [read_run(*parse_run_argument(str(f))) for f in folders]
    _same_drops(runs)
    with_ref = [i for i, r in enumerate(runs) if reference in r.values]
    if not with_ref:
        have = sorted({n for r in runs for n in r.values})
        raise ValueError(f"compare: reference policy {reference!r} is in none of the runs (they have {have})")
    sizes = {v[metric].size for r in runs for v in r.values.values()}
    if len(sizes) != 1:
        raise ValueError(f"compare: the runs have different numbers of drops {sorted(sizes)}; "
                         "expected runs of one scenario with the same drops")
    out = {"metric": metric, "better": "higher" if COMPARE_METRICS[metric] > 0 else "lower",
           "reference": reference, "runs": [str(r.path) for r in runs], "level": level, "policies": {}}
    ref_of = {i: runs[i].values[reference][metric] for i in with_ref}  # run -> [drops]
    ref = np.stack(list(ref_of.values())).mean(0)  # [drops], averaged over the runs that have it
    names = list(dict.fromkeys(n for r in runs for n in r.values))  # first-seen order
    for name in names:
        have = [i for i, r in enumerate(runs) if name in r.values]
        vals = np.stack([runs[i].values[name][metric] for i in have])  # [R_name, drops]
        # A run's own reference where it has one: the pairing then also removes what the runs do not share.
        per_seed = [paired_difference(v, ref_of.get(i, ref), level=level, seed=seed) for i, v in zip(have, vals)]
        means = vals.mean(1)
        out["policies"][name] = {
            "mean": float(vals.mean()), "diff": paired_difference(vals.mean(0), ref, level=level, seed=seed),
            "per_seed": per_seed, "num_seeds": len(have), "runs": have,
            "seed_spread": {"min": float(means.min()), "max": float(means.max()),
                            "std": float(means.std(ddof=1)) if len(have) > 1 else 0.0},
            "varies_with_seed": bool(np.abs(vals - vals[0]).max() > tolerance),
        }
    return out


def format_comparison(result: dict) -> str:
    """A Markdown table of :func:`compare_runs`' result."""
    m, ref, pct = result["metric"], result["reference"], round(100 * result["level"])
    seeds = max(p["num_seeds"] for p in result["policies"].values())
    head = f"| policy | {m} | paired Δ vs {ref} | {pct}% CI | verdict |" + (" seeds: mean (min..max) |" if seeds > 1
                                                                               else "")
    lines = [head, "|---|---:|---:|---|---|" + ("---|" if seeds > 1 else "")]
    sign = COMPARE_METRICS[m]
    for name, p in result["policies"].items():
        d = p["diff"]
        lo, hi = d["ci95"]
        if name == ref:
            verdict = "reference"
        elif lo > 0 or hi < 0:
            verdict = "better" if (d["mean"] * sign) > 0 else "worse"
        else:
            verdict = "not distinguishable"
        row = f"| {name} | {p['mean']:.3f} | {d['mean']:+.3f} | [{lo:+.3f}, {hi:+.3f}] | {verdict} |"
        if seeds > 1:
            s = p["seed_spread"]
            row += (f" {p['mean']:.3f} ({s['min']:.3f}..{s['max']:.3f}) |" if p["varies_with_seed"] else " – |")
        lines.append(row)
    return "\n".join(lines)


def plot_comparison(result: dict, path: str | Path) -> Path:
    """A forest plot: each policy's paired difference against the reference with its interval,
    and the per-seed differences as small dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import save_figure_atomic
    from .plots import policy_style

    pol = result["policies"]
    # Best first (by the direction of the metric), so the strongest opponents sit next to each other.
    sign = COMPARE_METRICS[result["metric"]]
    names = sorted((n for n in pol if n != result["reference"]), key=lambda n: -sign * pol[n]["diff"]["mean"])
    # Far-off policies (random beams, 10+ dB away) would squash the close calls that matter: the axis covers
    # the policies within 3x the median distance (at least 1 unit); the others are drawn at its edge, labelled.
    dist = np.array([abs(pol[n]["diff"]["mean"]) for n in names]) if names else np.zeros(1)
    cap = max(1.0, 3.0 * float(np.median(dist)))
    near = [n for n in names if abs(pol[n]["diff"]["mean"]) <= cap] or names
    lo_ax = min([0.0] + [pol[n]["diff"]["ci95"][0] for n in near])
    hi_ax = max([0.0] + [pol[n]["diff"]["ci95"][1] for n in near])
    pad = 0.08 * (hi_ax - lo_ax or 1.0)
    lo_ax, hi_ax = lo_ax - pad, hi_ax + pad
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(names) + 1.6))
    for y, name in enumerate(reversed(names)):
        p = pol[name]
        d, style = p["diff"], policy_style(name)
        lo, hi = d["ci95"]
        if lo_ax <= d["mean"] <= hi_ax:
            ax.errorbar(d["mean"], y, xerr=[[d["mean"] - lo], [hi - d["mean"]]], fmt=style["marker"],
                        color=style["color"], capsize=4, markersize=6, linewidth=1.8)
            if p["varies_with_seed"]:
                ax.scatter([s["mean"] for s in p["per_seed"]], [y + 0.18] * p["num_seeds"], s=10,
                           color=style["color"], alpha=0.6, zorder=3)
        else:  # off the axis: an arrow at the edge with the value
            right = d["mean"] > hi_ax
            x = hi_ax if right else lo_ax
            ax.plot(x, y, marker=">" if right else "<", color=style["color"], markersize=8, clip_on=False)
            ax.annotate(f"{d['mean']:+.1f} [{lo:+.1f}, {hi:+.1f}]", (x, y), xytext=(-6 if right else 6, 6),
                        textcoords="offset points", ha="right" if right else "left", fontsize=7,
                        color=style["color"])
    ax.set_xlim(lo_ax, hi_ax)
    ax.axvline(0, color="0.3", linewidth=1, linestyle="--")
    ax.set_yticks(range(len(names)), list(reversed(names)))
    better = "higher" if COMPARE_METRICS[result["metric"]] > 0 else "lower"
    ax.set_xlabel(f"paired difference in {result['metric']} vs {result['reference']} "
                  f"({better} is better; {round(100 * result['level'])}% bootstrap CI over drops)")
    nseeds = max(p["num_seeds"] for p in pol.values())
    ax.set_title(f"{len(names)} policies vs {result['reference']}" +
                 (f"; dots: each of {nseeds} training seeds" if nseeds > 1 else ""), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    path = Path(path)
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path

