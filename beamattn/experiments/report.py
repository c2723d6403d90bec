"""``beamattn experiment all``: run every experiment and build one markdown report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..io import write_text_atomic
from ..outdir import MARKER, StagedDir, check_out
from ..seeds import check_seed
from .registry import EXPERIMENTS, ExperimentResult, run_experiment_into

__all__ = ["run_all", "render_report"]


def render_report(results: list[ExperimentResult]) -> str:
    ok = sum(r.supported for r in results)
    lines = ["# The attention write-up, claim by claim", "",
             f"{ok} of {len(results)} claims supported by the measurements "
             f"(seed {results[0].seed if results else 0}, {'small' if results and results[0].small else 'full'} scale).",
             "", "| # | experiment | claim supported | time (s) |", "|---:|---|---|---:|"]
    for i, r in enumerate(results, 1):
        lines.append(f"| {i} | [{r.title}](#{r.name}) | {'yes' if r.supported else '**no**'} | {r.elapsed_s:.1f} |")
    for i, r in enumerate(results, 1):
        lines += ["", f'<a id="{r.name}"></a>', f"## {i}. {r.title}", "", f"**Claim.** {r.claim}", "",
                  f"**Verdict ({'supported' if r.supported else 'not supported'}).** {r.verdict}", ""]
        lines += [f"![{r.name}]({r.name}/{f})" for f in r.figures]
        lines += ["", f"Numbers: [`{r.name}/result.json`]({r.name}/result.json)"]
    return "\n".join(lines) + "\n"


def run_all(out_dir: str | Path, small: bool = False, seed: int = 0, progress: bool = True,
            device: torch.device | str | None = None, force: bool = False) -> list[ExperimentResult]:
    """Run every registered experiment in order; write ``out_dir/NAME/`` for each and ``out_dir/report.md``.

    ``device`` goes to the experiments that take one (see :mod:`.registry`); the others run on the CPU.
    The whole of ``out_dir`` is staged and replaces an existing one (only with ``force``) when every
    experiment and the report are written.
    """
    check_seed(seed)
    out_dir = Path(out_dir)
    check_out(out_dir, kind="dir", force=force)
    names = sorted(EXPERIMENTS, key=lambda n: EXPERIMENTS[n].order)
    results = []
    with StagedDir(out_dir, force=force, command="experiment all") as stage:
        for i, name in enumerate(names, 1):
            if progress:
                print(f"[{i}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
            (stage / name).mkdir()
            r = run_experiment_into(name, stage / name, small=small, seed=seed, device=device)
            (stage / name / MARKER).write_text(json.dumps({"command": f"experiment {name}"}) + "\n")
            if progress:
                print(f"    {'supported' if r.supported else 'NOT supported'} ({r.elapsed_s:.1f} s): {r.verdict}",
                      file=sys.stderr)
            results.append(r)
        write_text_atomic(stage / "report.md", render_report(results))
    return results
