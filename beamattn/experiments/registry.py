"""The experiment registry: one function per claim of the attention write-up.

An experiment is a function ``fn(out_dir: Path, small: bool, seed: int) -> Outcome`` registered with
:func:`experiment`. It writes its figure(s) into ``out_dir`` and returns its numbers, a verdict and the
**criteria** its verdict rests on: each a scalar measured on that run, a direction and a threshold
(:class:`Criterion`). :func:`run_experiment` runs it once per **replicate** (``num_seeds`` of them,
seeds ``seed + r·SEED_STRIDE``), aggregates every criterion over the replicates (mean and 95% Student-t
confidence interval) and calls the claim supported only if every criterion holds for its whole CI, not
for the mean or for one lucky seed. It adds the claim, writes ``criteria.png`` (per-seed values, mean,
CI, threshold) and ``result.json`` atomically. ``small=True`` is the small-scale version used by the
tests (seconds, one replicate by default). Experiments run on one torch thread with the global random
state restored afterwards.

Devices: an experiment that declares a keyword ``device`` (``fn(out_dir, small, seed, device=...)``)
runs on the device :func:`run_experiment` is given; the others run on the CPU whatever the device
(they time CPU code or train models so small that a GPU only adds launch overhead). ``result.json``
records where each one ran (``device``).
"""

from __future__ import annotations

import inspect
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..device import describe_device
from ..io import save_figure_atomic, write_json_atomic
from ..outdir import StagedDir, check_out
from ..seeds import MAX_SEED, check_seed

__all__ = ["Criterion", "at_least", "at_most", "Outcome", "ExperimentResult", "experiment", "EXPERIMENTS",
           "run_experiment", "run_experiment_into", "summarize_criterion", "SEED_STRIDE"]

# Replicate r runs with seed + r·SEED_STRIDE: a stride larger than any offset an experiment adds to its
# seed (``seed + 1``, ``seed * 100 + i``, ``50_000 + s``...), so that two replicates never share a stream.
SEED_STRIDE = 1_000_003


@dataclass
class Criterion:
    """One number a verdict rests on: the claim needs ``value >= threshold`` (``op=">="``) or ``<=``."""

    name: str  # what is measured, with its unit
    value: float
    op: str  # ">=" or "<="
    threshold: float

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise ValueError(f"Criterion {self.name!r}: op = {self.op!r}; expected '>=' or '<='")
        self.value, self.threshold = float(self.value), float(self.threshold)
        if not (math.isfinite(self.value) and math.isfinite(self.threshold)):
            raise ValueError(f"Criterion {self.name!r}: value {self.value!r} and threshold {self.threshold!r} "
                             "must be finite")

    def holds(self) -> bool:
        return self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold


def at_least(name: str, value: float, threshold: float) -> Criterion:
    """The claim needs ``value >= threshold``."""
    return Criterion(name, value, ">=", threshold)


def at_most(name: str, value: float, threshold: float) -> Criterion:
    """The claim needs ``value <= threshold``."""
    return Criterion(name, value, "<=", threshold)


@dataclass
class Outcome:
    """What an experiment function returns (for one replicate)."""

    numbers: dict  # JSON-serialisable measurements
    verdict: str  # one or two sentences: what was measured and whether the claim holds
    supported: bool  # does the measurement support the claim (in the direction, with the margin)?
    figures: list[str] = field(default_factory=list)  # file names inside out_dir
    criteria: list[Criterion] = field(default_factory=list)  # what `supported` rests on (all must hold)


@dataclass
class ExperimentResult:
    """An experiment over its replicates. ``numbers``, ``figures`` and ``detail`` are the first replicate's;
    ``criteria`` are the aggregated criteria (:func:`summarize_criterion`); ``replicates`` every replicate's
    seed, verdict, criteria values and numbers."""

    numbers: dict
    verdict: str  # the aggregated verdict: each criterion's mean and 95% CI against its threshold
    supported: bool  # every criterion holds for its whole 95% CI
    figures: list[str] = field(default_factory=list)
    criteria: list[dict] = field(default_factory=list)
    name: str = ""
    title: str = ""
    claim: str = ""
    seed: int = 0
    seeds: list[int] = field(default_factory=list)
    small: bool = False
    elapsed_s: float = 0.0
    device: str = "cpu"  # where it ran
    detail: str = ""  # the first replicate's own verdict
    replicates: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class _Entry:
    fn: Callable[[Path, bool, int], Outcome]
    title: str
    claim: str
    order: int
    takes_device: bool = False  # fn accepts a keyword 'device'
    seeds: int = 3  # replicates at full scale


EXPERIMENTS: dict[str, _Entry] = {}


def experiment(name: str, title: str, claim: str, order: int, seeds: int = 3):
    """Register ``fn(out_dir, small, seed) -> Outcome`` as experiment ``name`` (``order`` sorts the report;
    ``seeds`` replicates at full scale)."""

    def deco(fn):
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice")
        EXPERIMENTS[name] = _Entry(fn, title, claim, order, "device" in inspect.signature(fn).parameters, seeds)
        return fn

    return deco


def _entry(name: str) -> _Entry:
    if name not in EXPERIMENTS:
        import difflib

        close = difflib.get_close_matches(name, EXPERIMENTS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"experiment: unknown name {name!r}{hint}; expected 'all' or one of {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def check_num_seeds(num_seeds: object) -> int | None:
    """``None`` (the experiment's default) or an int >= 1; else one ValueError line."""
    if num_seeds is not None and (isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1):
        raise ValueError(f"experiment: num_seeds = {num_seeds!r}; expected an int >= 1 (replicates per experiment)")
    return num_seeds


def replicate_seeds(seed: int, n: int) -> list[int]:
    """The ``n`` replicate seeds ``seed + r·SEED_STRIDE``, checked to stay valid seeds."""
    check_seed(seed)
    last = seed + (n - 1) * SEED_STRIDE
    if last > MAX_SEED:
        raise ValueError(f"seed = {seed}; with {n} replicates the last seed {last} exceeds 2^63 - 1; expected "
                         f"seed <= {MAX_SEED - (n - 1) * SEED_STRIDE}")
    return [seed + r * SEED_STRIDE for r in range(n)]


def default_num_seeds(name: str, small: bool) -> int:
    """Replicates of ``name`` when none are asked for: one at small scale, the registered count at full scale."""
    return 1 if small else _entry(name).seeds


def run_experiment(name: str, out_dir: str | Path, small: bool = False, seed: int = 0,
                   device: torch.device | str | None = None, force: bool = False,
                   num_seeds: int | None = None) -> ExperimentResult:
    """Run experiment ``name`` into ``out_dir/name`` and write ``result.json`` there.

    ``num_seeds`` replicates (default: 1 at small scale, the experiment's registered count otherwise).
    ``device`` (default CPU) is used by experiments that take one; the others run on the CPU. The
    name, the seed and ``out_dir/name`` are checked before anything runs; the folder is written in a
    staging folder that replaces ``out_dir/name`` as a whole when complete (an existing non-empty one
    only with ``force``): an error or an interruption leaves nothing behind.
    """
    _entry(name)
    check_num_seeds(num_seeds)
    replicate_seeds(seed, num_seeds or default_num_seeds(name, small))
    target = Path(out_dir) / name
    check_out(target, kind="dir", force=force)
    with StagedDir(target, force=force, command=f"experiment {name}") as stage:
        return run_experiment_into(name, stage, small=small, seed=seed, device=device, num_seeds=num_seeds)


def _t_quantile(dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def summarize_criterion(name: str, op: str, threshold: float, values: list[float]) -> dict:
    """Mean and 95% Student-t CI of one criterion over replicates; ``holds`` = the whole CI is on the claim's
    side of the threshold (with one replicate the CI is the value itself). ``margin`` is signed so that
    positive = on the claim's side: ``mean - threshold`` for ``>=``, ``threshold - mean`` for ``<=``."""
    n = len(values)
    mean = sum(values) / n
    if n > 1:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = _t_quantile(n - 1) * sd / math.sqrt(n)
    else:
        sd, half = 0.0, 0.0
    lo, hi = mean - half, mean + half
    sign = 1.0 if op == ">=" else -1.0
    margin = sign * (mean - threshold)
    holds = lo >= threshold if op == ">=" else hi <= threshold
    return {"name": name, "op": op, "threshold": threshold, "values": list(values), "n": n, "mean": mean, "sd": sd,
            "ci_low": lo, "ci_high": hi, "margin": margin, "margin_ci": [margin - half, margin + half],
            "holds": bool(holds), "holds_per_seed": [bool(v >= threshold if op == ">=" else v <= threshold)
                                                      for v in values]}


def _aggregate(outcomes: list[Outcome], name: str) -> list[dict]:
    first = outcomes[0].criteria
    out = []
    for i, c in enumerate(first):
        cs = [o.criteria[i] for o in outcomes]
        if any(x.name != c.name or x.op != c.op or x.threshold != c.threshold for x in cs):
            raise RuntimeError(f"experiment {name}: criterion {i} ({c.name!r}) differs between replicates")
        out.append(summarize_criterion(c.name, c.op, c.threshold, [x.value for x in cs]))
    return out


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def format_criterion(c: dict) -> str:
    """``name: mean [lo, hi] >= thr (holds)`` in one line."""
    ci = f" [95% CI {_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]" if c["n"] > 1 else ""
    return f"{c['name']} = {_fmt(c['mean'])}{ci} (needs {c['op']} {_fmt(c['threshold'])}: {'holds' if c['holds'] else 'FAILS'})"


def deciding_criterion(criteria: list[dict]) -> dict | None:
    """The criterion the verdict hinges on: the first that fails, else the one closest to failing (smallest
    CI-side margin relative to the threshold's size)."""
    if not criteria:
        return None
    failing = [c for c in criteria if not c["holds"]]
    if failing:
        return failing[0]

    def rel(c: dict) -> float:
        worst = c["margin_ci"][0]
        return worst / max(abs(c["threshold"]), abs(c["mean"]), 1e-12)

    return min(criteria, key=rel)


def _criteria_figure(criteria: list[dict], seeds: list[int], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(criteria)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, c in zip(axes.flat, criteria):
        xs = list(range(len(c["values"])))
        ax.plot(xs, c["values"], "o", color="C0", label="per seed")
        ax.axhline(c["mean"], color="C1", label="mean")
        ax.axhspan(c["ci_low"], c["ci_high"], color="C1", alpha=0.25, label="95% CI")
        ax.axhline(c["threshold"], color="C3" if not c["holds"] else "C2", ls="--",
                   label=f"threshold ({c['op']} {_fmt(c['threshold'])})")
        ax.set_xticks(xs)
        ax.set_xticklabels([str(i) for i in xs])
        ax.set_xlabel("replicate")
        ax.set_title(("✓ " if c["holds"] else "✗ ") + c["name"], fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{title}: verdict criteria over {len(seeds)} replicate(s)", fontsize=10)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def _run_one(entry: _Entry, out: Path, small: bool, seed: int, kwargs: dict) -> Outcome:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # experiments run tiny models: one thread is fastest and leaves other cores alone
    try:
        with torch.random.fork_rng(devices=[]):  # leave the caller's global random state as it was
            torch.manual_seed(seed)  # whatever draws from the global generator is fixed by the seed too
            return entry.fn(out, small, seed, **kwargs)
    finally:
        torch.set_num_threads(threads)


def run_experiment_into(name: str, out: Path, small: bool = False, seed: int = 0,
                        device: torch.device | str | None = None, num_seeds: int | None = None) -> ExperimentResult:
    """Run experiment ``name`` with its figures and ``result.json`` written into the existing folder ``out``.

    The first replicate writes its figures into ``out``; the others write theirs into a temporary folder
    that is discarded (their numbers are kept in ``result.json``).
    """
    entry = _entry(name)
    check_num_seeds(num_seeds)
    seeds = replicate_seeds(seed, num_seeds or default_num_seeds(name, small))
    device = torch.device("cpu" if device is None else device)
    ran_on = device if entry.takes_device else torch.device("cpu")
    kwargs = {"device": device} if entry.takes_device else {}
    t0 = time.time()
    outcomes = [_run_one(entry, out, small, seeds[0], kwargs)]
    with tempfile.TemporaryDirectory(prefix="beamattn-replicate-") as scratch:
        for s in seeds[1:]:
            outcomes.append(_run_one(entry, Path(scratch), small, s, kwargs))
    for s, o in zip(seeds, outcomes):
        if o.criteria and bool(o.supported) != all(c.holds() for c in o.criteria):
            raise RuntimeError(f"experiment {name} (seed {s}): its verdict (supported={o.supported}) disagrees with "
                               "its criteria; the criteria must be exactly what the verdict rests on")
    first = outcomes[0]
    criteria = _aggregate(outcomes, name)
    figures = list(first.figures)
    if criteria:
        supported = all(c["holds"] for c in criteria)
        _criteria_figure(criteria, seeds, entry.title, out / "criteria.png")
        figures.append("criteria.png")
        verdict = (f"{'Supported' if supported else 'Not supported'} over {len(seeds)} seed(s)"
                   f"{' (every criterion holds for its whole 95% CI)' if supported and len(seeds) > 1 else ''}: "
                   + "; ".join(format_criterion(c) for c in criteria) + ".")
    else:  # an experiment without criteria: its own verdict, and supported only if every replicate says so
        supported = all(bool(o.supported) for o in outcomes)
        verdict = first.verdict
    replicates = [{"seed": s, "supported": bool(o.supported), "verdict": o.verdict,
                   "criteria": [asdict(c) for c in o.criteria], "numbers": o.numbers}
                  for s, o in zip(seeds, outcomes)]
    result = ExperimentResult(numbers=first.numbers, verdict=verdict, supported=supported, figures=figures,
                              criteria=criteria, name=name, title=entry.title, claim=entry.claim, seed=seed,
                              seeds=seeds, small=small, elapsed_s=time.time() - t0,
                              device=describe_device(ran_on), detail=first.verdict, replicates=replicates)
    write_json_atomic(out / "result.json", asdict(result))
    return result
