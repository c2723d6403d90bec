"""``beamattn experiment all``: run every experiment and build one markdown report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..io import write_text_atomic
from ..outdir import MARKER, StagedDir, check_out
from ..seeds import check_seed
from .registry import (EXPERIMENTS, ExperimentResult, _fmt, check_num_seeds, deciding_criterion, default_num_seeds,
                       replicate_seeds, run_experiment_into)

__all__ = ["run_all", "render_report"]


def _ci(c: dict) -> str:
    return f"{_fmt(c['mean'])} [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]" if c["n"] > 1 else _fmt(c["mean"])


def _margin(c: dict) -> str:
    lo, hi = c["margin_ci"]
    return f"{_fmt(c['margin'])} [{_fmt(lo)}, {_fmt(hi)}]" if c["n"] > 1 else _fmt(c["margin"])


def render_report(results: list[ExperimentResult]) -> str:
    """The markdown report: a table (verdict, the deciding criterion with its 95% CI, margin) and one section
    per claim with every criterion, the verdict and the figures."""
    ok = sum(r.supported for r in results)
    lines = ["# The attention write-up, claim by claim", "",
             f"{ok} of {len(results)} claims supported by the measurements "
             f"(base seed {results[0].seed if results else 0}, {'small' if results and results[0].small else 'full'} "
             "scale). A claim is supported only if every criterion it rests on holds for its whole 95% confidence "
             "interval over the replicates (Student t over seeds). *Margin* = distance of the mean from the "
             "threshold, positive on the claim's side, with its CI.",
             "", "| # | experiment | claim supported | deciding criterion | mean [95% CI] | needs | margin [95% CI] "
             "| seeds | time (s) |", "|---:|---|---|---|---|---|---|---:|---:|"]
    for i, r in enumerate(results, 1):
        c = deciding_criterion(r.criteria)
        crit = (f"{c['name']} | {_ci(c)} | {c['op']} {_fmt(c['threshold'])} | {_margin(c)}" if c else "— | — | — | —")
        lines.append(f"| {i} | [{r.title}](#{r.name}) | {'yes' if r.supported else '**no**'} | {crit} | "
                     f"{len(r.seeds)} | {r.elapsed_s:.1f} |")
    for i, r in enumerate(results, 1):
        lines += ["", f'<a id="{r.name}"></a>', f"## {i}. {r.title}", "", f"**Claim.** {r.claim}", "",
                  f"**Verdict ({'supported' if r.supported else 'not supported'}, {len(r.seeds)} seed(s)).** "
                  f"{r.verdict}", ""]
        if r.criteria:
            lines += ["| criterion | mean [95% CI] | needs | per seed | holds for the CI |", "|---|---|---|---|---|"]
            for c in r.criteria:
                lines.append(f"| {c['name']} | {_ci(c)} | {c['op']} {_fmt(c['threshold'])} | "
                             f"{', '.join(_fmt(v) for v in c['values'])} | {'yes' if c['holds'] else '**no**'} |")
            lines.append("")
        if r.detail and r.detail != r.verdict:
            lines += [f"*Seed {r.seeds[0] if r.seeds else r.seed} in detail.* {r.detail}", ""]
        lines += [f"![{r.name}]({r.name}/{f})" for f in r.figures]
        lines += ["", f"Numbers: [`{r.name}/result.json`]({r.name}/result.json)"]
    return "\n".join(lines) + "\n"


def _worker_init() -> None:
    torch.set_num_threads(1)  # each worker runs one experiment on one thread, as in a serial run


def _run_in_worker(name: str, out: str, small: bool, seed: int, device: str | None,
                   num_seeds: int | None) -> ExperimentResult:
    return run_experiment_into(name, Path(out), small=small, seed=seed, device=device, num_seeds=num_seeds)


def run_all(out_dir: str | Path, small: bool = False, seed: int = 0, progress: bool = True,
            device: torch.device | str | None = None, force: bool = False,
            num_seeds: int | None = None, workers: int = 1) -> list[ExperimentResult]:
    """Run every registered experiment in order; write ``out_dir/NAME/`` for each and ``out_dir/report.md``.

    ``num_seeds`` replicates per experiment (default: each experiment's own, see :mod:`.registry`).
    ``workers`` > 1 runs that many experiments at once in worker processes (forked: each experiment still
    runs on one thread with its own seeds, so the numbers are the same as in a serial run, except wall
    times, which other experiments running at once may slow down).
    ``device`` goes to the experiments that take one (see :mod:`.registry`); the others run on the CPU.
    The whole of ``out_dir`` is staged and replaces an existing one (only with ``force``) when every
    experiment and the report are written.
    """
    check_seed(seed)
    check_num_seeds(num_seeds)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"experiment all: workers = {workers!r}; expected an int >= 1")
    if workers > 1 and device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"experiment all: workers = {workers} needs the CPU device (forked workers cannot share "
                         f"{torch.device(device)}); got device {str(device)!r}")
    for name in EXPERIMENTS:
        replicate_seeds(seed, num_seeds or default_num_seeds(name, small))
    out_dir = Path(out_dir)
    check_out(out_dir, kind="dir", force=force)
    names = sorted(EXPERIMENTS, key=lambda n: EXPERIMENTS[n].order)
    results = []
    with StagedDir(out_dir, force=force, command="experiment all") as stage:
        for name in names:
            (stage / name).mkdir()
        if workers == 1:
            def outcomes():
                for name in names:
                    if progress:
                        print(f"[{names.index(name) + 1}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
                    yield run_experiment_into(name, stage / name, small=small, seed=seed, device=device,
                                              num_seeds=num_seeds)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                       initializer=_worker_init)
            dev = None if device is None else str(device)
            futures = [pool.submit(_run_in_worker, name, str(stage / name), small, seed, dev, num_seeds)
                       for name in names]

            def outcomes():
                try:
                    for f in futures:
                        yield f.result()
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
        for i, r in enumerate(outcomes(), 1):
            (stage / r.name / MARKER).write_text(json.dumps({"command": f"experiment {r.name}"}) + "\n")
            if progress:
                print(f"    [{i}/{len(names)}] {r.name}: {'supported' if r.supported else 'NOT supported'} "
                      f"({r.elapsed_s:.1f} s): {r.verdict}", file=sys.stderr, flush=True)
            results.append(r)
        write_text_atomic(stage / "report.md", render_report(results))
    return results
