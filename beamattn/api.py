"""The researcher's API: load a scenario, build episodes, run policies, compute metrics — the numbers of
``beamattn run``, without the seed streams and chunking that make them reproducible.

A thin layer over :mod:`beamattn.wireless.runner` (no logic of its own beyond argument checks): the same
seed gives the same drops, measurement noise and metrics as the command line. Everything is importable
from the top-level package (``import beamattn``), lazily: ``import beamattn`` alone imports no torch.

Example::

    import beamattn

    scn = beamattn.load_scenario("scenarios/vehicular-60.toml", drops=32, plugins=["examples/my_policy.py"])
    res = beamattn.evaluate(scn, ["genie", "exhaustive", "smoothed-set-b"])
    res.summary["smoothed-set-b"]["loss_db"]   # {"mean": ..., "ci95": [lo, hi]} as in metrics.json

    # Or step by step: the episodes every policy sees (common random numbers), your own loop.
    pols = beamattn.make_policies(scn, ["exhaustive", "smoothed-set-b"])
    for chunk in beamattn.episodes(scn):
        for name, pol in pols.items():
            m = beamattn.decision_metrics(chunk.episode, pol.decide(chunk.episode), scn.outage_db)
            print(name, chunk.first_drop, float(m.loss_db.mean()))   # [B, D] per drop and decision
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import torch

from .plugins import load_plugins
from .seeds import check_seed
from .wireless.channels.base import ChannelSample
from .wireless.limits import check_range
from .wireless.measurement import Episode
from .wireless.metrics import decision_metrics
from .wireless.policies import Decision, Policy, make_policy, register
from .wireless import runner as _runner  # called through the module: a patched runner (tests) is the one used
from .wireless.runner import RunResult, make_policies
from .wireless.scenario import Scenario, check_memory
from .wireless.scenario import load_scenario as _load_scenario

__all__ = ["load_scenario", "with_drops", "episodes", "Chunk", "evaluate", "load_plugins", "make_policies",
           "make_policy", "decision_metrics", "register", "Policy", "Decision", "Episode", "Scenario", "RunResult"]


def with_drops(scn: Scenario, drops: int, field: str = "drops") -> Scenario:
    """A copy of ``scn`` with ``drops`` evaluation drops, checked like the file's own value (range, memory,
    and no more than a channel file holds); ``field`` names the value in the error line."""
    check_range(field, "drops", drops)
    out = dataclasses.replace(scn, drops=drops)
    check_memory(out)  # the file's drops passed the check; the new number must too
    if out.backend == "file":  # never more drops than a channel file holds (they are not cycled)
        out.channel.check_counts(out.drops, out.training.drops)
    return out


def load_scenario(path: str | Path, *, drops: int | None = None, plugins: Iterable[str] = ()) -> Scenario:
    """Read and validate a scenario TOML file (:func:`beamattn.wireless.scenario.load_scenario`).

    ``plugins``: modules that register policies (:func:`beamattn.plugins.load_plugins`), loaded first so that
    the file's policy list may name their policies. ``drops``: override the file's ``drops`` (checked as it).
    """
    load_plugins(plugins)
    scn = _load_scenario(path)
    return scn if drops is None else with_drops(scn, drops)


class Chunk(NamedTuple):
    """One chunk of drops: its first drop's index, the :class:`Episode` (measurements and truth, ``B`` drops x
    ``D`` decisions) and the :class:`ChannelSample` it was measured on (``h [B, T, (F,) N]``, ...)."""

    first_drop: int
    episode: Episode
    channel: ChannelSample


def episodes(scn: Scenario, *, seed: int | None = None, drops: int | None = None,
             device: torch.device | str = "cpu") -> Iterator[Chunk]:
    """The evaluation episodes of ``beamattn run`` (same ``seed``, default the scenario's; ``drops``, default
    the scenario's), chunk by chunk of ``scn.chunk_drops`` drops: what every policy of a run sees."""
    seed = scn.seed if seed is None else check_seed(seed)
    if drops is not None:
        scn = with_drops(scn, drops)
    for start, ep, sample in _runner.episodes(scn, seed, scn.drops, device=device):
        yield Chunk(start, ep, sample)


def evaluate(scn: Scenario, policies: Iterable[str] | None = None, *, seed: int | None = None,
             drops: int | None = None, reference: str | None = None, checkpoint: str | None = None,
             device: torch.device | str = "cpu", out_dir: str | Path | None = None, quiet: bool = True,
             force: bool = False) -> RunResult:
    """Evaluate ``policies`` (default: the scenario's) as ``beamattn run`` does.

    Returns the run's :class:`~beamattn.wireless.runner.RunResult`: ``summary[policy][kpi]`` holds the
    numbers of ``metrics.json``'s ``metrics`` (``{"mean", "ci95"}`` over drops, the paired difference with
    ``reference`` in ``paired_vs_reference``), ``rows`` the per-decision rows of ``steps.csv``.
    ``out_dir``: also write ``metrics.json``, ``steps.csv`` and the figures there (None: nothing is written).
    ``quiet``: do not print the table.
    """
    if drops is not None:
        scn = with_drops(scn, drops)
    names = None if policies is None else list(policies)
    out = io.StringIO() if quiet else None
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        return _runner.run_scenario(scn, out_dir, policies=names, seed=seed, checkpoint=checkpoint, device=device,
                            progress=not quiet, figures=out_dir is not None, force=force, reference=reference)
