"""The experiment registry: one function per claim of the attention write-up.

An experiment is a function ``fn(out_dir: Path, small: bool, seed: int) -> Outcome`` registered with
:func:`experiment`. It writes its figure(s) into ``out_dir`` and returns its numbers and a verdict;
:func:`run_experiment` adds the claim and writes ``result.json`` atomically. ``small=True`` is the
small-scale version used by the tests (seconds); the full scale takes at most a couple of minutes.
Experiments run on one torch thread with the global random state restored afterwards.

Devices: an experiment that declares a keyword ``device`` (``fn(out_dir, small, seed, device=...)``)
runs on the device :func:`run_experiment` is given; the others run on the CPU whatever the device
(they time CPU code or train models so small that a GPU only adds launch overhead). ``result.json``
records where each one ran (``device``).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..device import describe_device
from ..io import write_json_atomic
from ..outdir import StagedDir, check_out
from ..seeds import check_seed

__all__ = ["Outcome", "ExperimentResult", "experiment", "EXPERIMENTS", "run_experiment", "run_experiment_into"]


@dataclass
class Outcome:
    """What an experiment function returns."""

    numbers: dict  # JSON-serialisable measurements
    verdict: str  # one or two sentences: what was measured and whether the claim holds
    supported: bool  # does the measurement support the claim (in the direction, with the margin)?
    figures: list[str] = field(default_factory=list)  # file names inside out_dir


@dataclass
class ExperimentResult(Outcome):
    name: str = ""
    title: str = ""
    claim: str = ""
    seed: int = 0
    small: bool = False
    elapsed_s: float = 0.0
    device: str = "cpu"  # where it ran


@dataclass(frozen=True)
class _Entry:
    fn: Callable[[Path, bool, int], Outcome]
    title: str
    claim: str
    order: int
    takes_device: bool = False  # fn accepts a keyword 'device'


EXPERIMENTS: dict[str, _Entry] = {}


def experiment(name: str, title: str, claim: str, order: int):
    """Register ``fn(out_dir, small, seed) -> Outcome`` as experiment ``name`` (``order`` sorts the report)."""

    def deco(fn):
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice")
        EXPERIMENTS[name] = _Entry(fn, title, claim, order, "device" in inspect.signature(fn).parameters)
        return fn

    return deco


def _entry(name: str) -> _Entry:
    if name not in EXPERIMENTS:
        import difflib

        close = difflib.get_close_matches(name, EXPERIMENTS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"experiment: unknown name {name!r}{hint}; expected 'all' or one of {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def run_experiment(name: str, out_dir: str | Path, small: bool = False, seed: int = 0,
                   device: torch.device | str | None = None, force: bool = False) -> ExperimentResult:
    """Run experiment ``name`` into ``out_dir/name`` and write ``result.json`` there.

    ``device`` (default CPU) is used by experiments that take one; the others run on the CPU. The
    name, the seed and ``out_dir/name`` are checked before anything runs; the folder is written in a
    staging folder that replaces ``out_dir/name`` as a whole when complete (an existing non-empty one
    only with ``force``): an error or an interruption leaves nothing behind.
    """
    _entry(name)
    check_seed(seed)
    target = Path(out_dir) / name
    check_out(target, kind="dir", force=force)
    with StagedDir(target, force=force, command=f"experiment {name}") as stage:
        return run_experiment_into(name, stage, small=small, seed=seed, device=device)


def run_experiment_into(name: str, out: Path, small: bool = False, seed: int = 0,
                        device: torch.device | str | None = None) -> ExperimentResult:
    """Run experiment ``name`` with its figures and ``result.json`` written into the existing folder ``out``."""
    entry = _entry(name)
    device = torch.device("cpu" if device is None else device)
    ran_on = device if entry.takes_device else torch.device("cpu")
    kwargs = {"device": device} if entry.takes_device else {}
    t0 = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # experiments run tiny models: one thread is fastest and leaves other cores alone
    try:
        with torch.random.fork_rng(devices=[]):  # leave the caller's global random state as it was
            torch.manual_seed(seed)  # whatever draws from the global generator is fixed by the seed too
            res = entry.fn(out, small, seed, **kwargs)
    finally:
        torch.set_num_threads(threads)
    result = ExperimentResult(numbers=res.numbers, verdict=res.verdict, supported=bool(res.supported),
                              figures=list(res.figures), name=name, title=entry.title, claim=entry.claim,
                              seed=seed, small=small, elapsed_s=time.time() - t0, device=describe_device(ran_on))
    write_json_atomic(out / "result.json", asdict(result))
    return result
