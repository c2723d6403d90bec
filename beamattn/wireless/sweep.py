"""``beamattn sweep``: a grid over scenario parameters x policies x seeds, on a local pool or a Dask cluster.

Sweep file (TOML)::

    [sweep]
    name = "vehicular-speed"
    base = "../vehicular-60.toml"          # scenario file, relative to the sweep file
    seeds = [0, 1]                          # evaluation seeds (one task per cell and seed)
    policies = ["genie", "exhaustive", "stale"]

    [grid]                                  # dotted keys into the scenario tables
    "channel.speed_kmh" = [30, 60, 120]
    "measurement.snr_db" = [-5, 0, 5]

    [override]                              # optional: applied to every cell
    "scenario.drops" = 16

Each cell's scenario is the base TOML document with the override and the cell's
values merged in, validated by :func:`~beamattn.wireless.scenario.parse_scenario`
(an error names the cell, the field and the value, on one line).

Tasks. One task is one (cell, seed): it evaluates *all* the sweep's policies with
:func:`~beamattn.wireless.runner.run_scenario` (so the policies share common
random numbers) and returns the per-policy KPI means. A task's numbers depend
only on its cell and seed (torch runs with one thread in every task), so 1 or N
workers give the same numbers, bit for bit.

Results. The driver writes each task's result as it arrives to
``DIR/tasks/<id>.json`` (atomically: temporary file + rename), where ``<id>`` is a
stable hash of the cell's full scenario, the seed and the policies. The file
stores the SHA-256 of its canonical JSON payload; a file that is truncated, not
JSON, missing fields, for another task or whose checksum does not match is
reported (a warning) and its task is run again, never used. ``--resume`` skips
valid finished tasks; without it an output folder that already holds results is
refused. Interrupting the driver or losing a worker therefore loses at most the
tasks in flight.

Outputs. ``DIR/summary.json``: for each cell and policy and KPI, the mean over
seeds of the per-seed means (each per-seed mean is over that seed's drops), the
per-seed values and a 95% Student-t interval over seeds (seeds are the
independent replications; with one seed the interval is the point). A markdown
table is printed, and ``DIR/figures/<metric>.png`` plots snr_db, loss_db,
within_1db and se against the first grid parameter, one line per policy with its
CI band, one panel per value of the other grid parameters.

Execution. ``--workers 1`` (default) runs in this process; ``--workers N`` starts a
Dask ``LocalCluster(n_workers=N, threads_per_worker=1, processes=True)``;
``--scheduler tcp://HOST:PORT`` connects to a running Dask scheduler. ``--device cuda`` runs every task on
the GPU (tasks in several local workers share it); results have the same format and task ids on every device.

SLURM with dask-jobqueue (not imported by beamattn; ``pip install dask-jobqueue``)::

    # start_cluster.py, run on the login node and keep it running
    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="02:00:00",
                           job_extra_directives=["--cpus-per-task=1"],
                           job_script_prologue=["source /path/to/venv/bin/activate"])
    cluster.scale(jobs=32)                  # 32 SLURM jobs, one worker each
    print(cluster.scheduler_address)        # e.g. tcp://10.1.2.3:8786
    input("press Enter to stop the cluster")

    # then, from any machine that reaches the scheduler (same beamattn installed on the workers):
    beamattn sweep scenarios/sweeps/vehicular-speed.toml --out results/sweep \\
        --scheduler tcp://10.1.2.3:8786 [--resume]

If jobs are pre-empted, run the same command with ``--resume``: finished tasks are kept.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import itertools
import json
import math
import sys
import time
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..io import save_figure_atomic, write_json_atomic

__all__ = ["Sweep", "SweepError", "load_sweep", "parse_sweep", "run_sweep", "run_task", "read_task_result",
           "SweepResult", "FIGURE_METRICS"]

FIGURE_METRICS = ("snr_db", "loss_db", "within_1db", "se")
TABLE_METRICS = FIGURE_METRICS
SWEEP_FIELDS = ("name", "base", "seeds", "policies", "description")
RESULT_FIELDS = ("task_id", "cell", "seed", "policies", "results")


class SweepError(ValueError):
    """A sweep file or output folder that cannot be used; one line naming the file, field and value."""


@dataclass
class Cell:
    params: dict  # dotted key -> value
    data: dict  # the cell's full scenario document

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params.items())


@dataclass
class Sweep:
    """A validated sweep file (:func:`load_sweep`): the base scenario, the grid, the seeds, the policies and
    every cell's scenario document."""

    name: str
    source: str
    base: str
    seeds: list[int]
    policies: list[str]
    grid: dict[str, list]  # dotted key -> values
    override: dict[str, Any]
    cells: list[Cell] = field(default_factory=list)

    def tasks(self) -> list[tuple[str, Cell, int]]:
        """(task id, cell, seed) for every task, cells in grid order, seeds innermost."""
        return [(task_id(c, s, self.policies), c, s) for c in self.cells for s in self.seeds]


# --------------------------------------------------------------------------- parsing


def _flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            if not v:
                out[key] = v
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _is_scalar(v) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, (bool, int, str))


def _set_dotted(doc: dict, key: str, value, where: str) -> None:
    parts = key.split(".")
    node = doc
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise SweepError(f"{where}: key {key!r} goes through {p!r}, which is not a table")
        node = nxt
    node[parts[-1]] = value


_RESERVED = ("scenario.seed", "scenario.policies")


def _check_key(key, section: str, src: str) -> None:
    if not isinstance(key, str) or "." not in key or any(not p for p in key.split(".")):
        raise SweepError(f"{src}: [{section}] key {key!r}; expected a dotted key like 'channel.speed_kmh'")
    if key in _RESERVED:
        raise SweepError(f"{src}: [{section}] key {key!r} is set by [sweep] "
                         f"({'seeds' if key.endswith('seed') else 'policies'}); remove it")


def parse_sweep(data: dict, source: str = "<memory>", base_dir: str | Path = ".",
                base_data: dict | None = None) -> Sweep:
    """Validate a parsed sweep document and build every cell's scenario (raises :class:`SweepError`)."""
    src = source
    if not isinstance(data, dict):
        raise SweepError(f"{src}: expected a TOML document")
    for key in data:
        if key not in ("sweep", "grid", "override"):
            raise SweepError(f"{src}: unknown table {key!r}; expected 'sweep', 'grid' and 'override'")
    head = data.get("sweep")
    if not isinstance(head, dict):
        raise SweepError(f"{src}: table [sweep] is missing; expected name, base, seeds, policies")
    for key in head:
        if key not in SWEEP_FIELDS:
            import difflib

            close = difflib.get_close_matches(str(key), SWEEP_FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SweepError(f"{src}: [sweep] unknown field {key!r}{hint}; expected one of {list(SWEEP_FIELDS)}")
    name = head.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SweepError(f"{src}: [sweep] field 'name' = {name!r}; expected a non-empty string")
    seeds = head.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise SweepError(f"{src}: [sweep] field 'seeds' = {seeds!r}; expected a non-empty list of distinct "
                         "integers >= 0")
    policies = head.get("policies")
    if (not isinstance(policies, list) or not policies or not all(isinstance(p, str) for p in policies)
            or len(set(policies)) != len(policies)):
        raise SweepError(f"{src}: [sweep] field 'policies' = {policies!r}; expected a non-empty list of distinct "
                         "policy names")
    base = head.get("base")
    if not isinstance(base, str) or not base:
        raise SweepError(f"{src}: [sweep] field 'base' = {base!r}; expected the path of a scenario file")
    if base_data is None:
        base_path = Path(base_dir) / base
        if not base_path.is_file():
            raise SweepError(f"{src}: [sweep] field 'base' = {base!r}; scenario file {base_path} not found")
        try:
            base_data = tomllib.loads(base_path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SweepError(f"{src}: [sweep] field 'base' = {base!r}; not valid TOML: {e}".replace("\n", " "))
        base = str(base_path)
        from .channels.file import resolve_paths

        base_data = resolve_paths(base_data, base_path.parent)  # channel files relative to the base scenario

    grid_table = data.get("grid")
    if not isinstance(grid_table, dict) or not grid_table:
        raise SweepError(f"{src}: table [grid] = {grid_table!r}; expected at least one dotted key with a list "
                         "of values")
    grid = _flatten(grid_table)
    for key, values in grid.items():
        _check_key(key, "grid", src)
        if (not isinstance(values, list) or not values or not all(_is_scalar(v) for v in values)
                or len({json.dumps(v) for v in values}) != len(values)):
            raise SweepError(f"{src}: [grid] field {key!r} = {values!r}; expected a non-empty list of distinct "
                             "numbers, strings or booleans")
    override_table = data.get("override", {})
    if not isinstance(override_table, dict):
        raise SweepError(f"{src}: table [override] = {override_table!r}; expected a table of dotted keys")
    override = _flatten(override_table)
    for key, value in override.items():
        _check_key(key, "override", src)
        if key in grid:
            raise SweepError(f"{src}: [override] field {key!r} is also in [grid]; expected it in one of them")
        if not (_is_scalar(value) or (isinstance(value, list) and all(_is_scalar(v) for v in value))):
            raise SweepError(f"{src}: [override] field {key!r} = {value!r}; expected a number, string, boolean "
                             "or list of them")

    sweep = Sweep(name=name, source=src, base=base, seeds=list(seeds), policies=list(policies), grid=grid,
                  override=override)
    from .channels.file import resolve_paths as resolve_file_paths
    from .scenario import ScenarioError, parse_scenario

    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, combo))
        doc = copy.deepcopy(base_data)
        cell = Cell(params=params, data=doc)
        where = f"{src}: cell {cell.label}"
        for key, value in {**override, **params}.items():
            _set_dotted(doc, key, copy.deepcopy(value), where)
        doc = cell.data = resolve_file_paths(doc, base_dir)  # channel files set by the sweep: relative to it
        if isinstance(doc.get("scenario"), dict):
            doc["scenario"]["policies"] = list(policies)
        try:
            parse_scenario(doc, source=where)
        except ScenarioError as e:
            raise SweepError(str(e).replace("\n", " ")) from None
        sweep.cells.append(cell)
    return sweep


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep TOML file."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: sweep file not found")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SweepError(f"{path}: not valid TOML: {e}".replace("\n", " ")) from None
    return parse_sweep(data, source=str(path), base_dir=path.parent)


# --------------------------------------------------------------------------- tasks


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str)


def task_id(cell: Cell, seed: int, policies: list[str]) -> str:
    """Stable id of a task: hash of the cell's full scenario document, the seed and the policies, and for
    channel files (``backend = "file"``) their SHA-256: a regenerated file is never resumed from old results."""
    from .channels.file import file_digests

    task = {"scenario": cell.data, "params": cell.params, "seed": seed, "policies": list(policies)}
    digests = file_digests(cell.data)
    if digests:  # other back-ends: the ids of earlier sweeps are unchanged
        task["channel_files"] = digests
    return hashlib.sha256(_canonical(task).encode()).hexdigest()[:20]


def run_task(doc: dict, seed: int, policies: list[str], source: str = "<sweep>", device: str = "cpu") -> dict:
    """Run one task (picklable; runs on a worker): ``{policy: {kpi: mean}}`` for one cell and seed.

    ``device`` (a string such as ``"cpu"`` or ``"cuda:0"``, so that it pickles) is where the task
    computes; the result has the same format on every device.
    """
    import torch

    from .runner import run_scenario
    from .scenario import parse_scenario

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same numbers on any worker, and no oversubscription
    try:
        scn = parse_scenario(doc, source=source)
        with contextlib.redirect_stdout(io.StringIO()):
            res = run_scenario(scn, None, policies=list(policies), seed=seed, progress=False, figures=False,
                               device=device)
    finally:
        torch.set_num_threads(threads)
    out = {}
    for pol, kpis in res.summary.items():
        out[pol] = {k: (float(v["mean"]) if isinstance(v, dict) else float(v)) for k, v in kpis.items()
                    if k not in ("paired_vs_reference", "report")}  # KPIs only: a sweep pairs cells itself
    return out


def _checksum(payload: dict) -> str:
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def write_task_result(path: Path, tid: str, cell: Cell, seed: int, policies: list[str], results: dict,
                      elapsed: float) -> None:
    payload = {"task_id": tid, "cell": cell.params, "seed": seed, "policies": list(policies), "results": results,
               "elapsed_s": round(elapsed, 3)}
    write_json_atomic(path, {**payload, "sha256": _checksum(payload)})


def read_task_result(path: Path, tid: str | None = None) -> tuple[dict | None, str | None]:
    """(record, None) for a valid result file, (None, reason) for a missing, truncated or corrupt one."""
    if not path.is_file():
        return None, "missing"
    try:
        rec = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"not valid JSON ({e.__class__.__name__}: {str(e)[:60]})"
    if not isinstance(rec, dict):
        return None, "not a JSON object"
    missing = [k for k in (*RESULT_FIELDS, "sha256") if k not in rec]
    if missing:
        return None, f"missing fields {missing}"
    payload = {k: v for k, v in rec.items() if k != "sha256"}
    if _checksum(payload) != rec["sha256"]:
        return None, "checksum mismatch"
    if tid is not None and rec["task_id"] != tid:
        return None, f"task id {rec['task_id']!r} does not match the file name"
    res = rec["results"]
    if not isinstance(res, dict) or not all(isinstance(v, dict) for v in res.values()):
        return None, "malformed 'results'"
    return rec, None


# --------------------------------------------------------------------------- running


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns: the summary (per cell, policy and KPI: mean over seeds with a 95%
    t-interval), its Markdown table, and the task ids computed, reused (``resume``) and redone (corrupt)."""

    summary: dict
    table: str
    ran: list[str]  # task ids computed in this call
    skipped: list[str]  # valid results reused (--resume)
    redone: list[str]  # corrupt / truncated results detected and recomputed
    out_dir: Path


class SweepInterrupted(RuntimeError):
    """Raised by the test hook ``stop_after``: the driver stops as if interrupted."""


def _connect(workers: int, scheduler: str | None):
    try:
        from distributed import Client
    except ImportError:
        raise SweepError("sweep: --workers > 1 and --scheduler need Dask: pip install 'beamattn[dask]'") from None
    if scheduler is not None:
        try:
            # Dask's connect timeout (distributed.comm.timeouts.connect, default 30 s; set it with
            # DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s) bounds the wait for an unreachable scheduler.
            return Client(scheduler), None
        except (OSError, TimeoutError, ValueError) as e:
            raise SweepError(f"sweep: cannot connect to scheduler {scheduler!r}: {e}".replace("\n", " ")) from None
    cluster = local_cluster(workers)
    return Client(cluster), cluster


def local_cluster(workers: int):
    """A Dask ``LocalCluster`` of ``workers`` processes with one thread each, for sweeps.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand memory back to the OS
    sooner). With torch's large, short-lived tensors glibc then trims and re-faults pages on nearly every
    free: a sweep measured 2x slower in-process with that variable set. The workers keep glibc's own
    (dynamic) threshold instead. (For ``dask worker`` started by hand, unset it in the shell.)
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


def run_sweep(sweep: Sweep, out_dir: str | Path, *, workers: int = 1, scheduler: str | None = None,
              client=None, resume: bool = False, progress: bool = True, figures: bool = True,
              task_fn: Callable = run_task, stop_after: int | None = None,
              on_result: Callable | None = None, device: str = "cpu", plugins: list[str] | tuple[str, ...] = ()
              ) -> SweepResult:
    """Run the tasks not finished yet, write each result as it arrives, then the summary, table and figures.

    ``client``: an existing Dask client (then ``workers``/``scheduler`` are ignored). ``stop_after``,
    ``on_result(client, n_done)`` and ``task_fn`` are hooks for tests (interrupt, kill a worker);
    ``task_fn(doc, seed, policies, source, device)`` is called with positional arguments.

    ``device``: where every task computes (``"cuda:0"``: all local or Dask workers share that GPU).
    Task ids and result files do not depend on it; a sweep resumed on another device therefore mixes
    numbers that agree only to float32 rounding across devices.

    ``plugins``: modules that register policies (:mod:`beamattn.plugins`), loaded here and, before each
    task, in every Dask worker (a no-op after the first task of a worker; workers that join later load
    them too); ``sweep.json`` records them with their files' SHA-256.
    """
    from ..plugins import load_plugins, loaded_plugins, plugin_specs

    device = str(device)  # a string pickles to Dask workers whatever their torch build
    # The workers load the plugins asked for and those that provide the sweep's policies (loaded earlier in
    # this process, e.g. through beamattn.load_scenario); absolute paths for .py files.
    given = [p.spec for p in load_plugins(plugins)]
    plugins = tuple(dict.fromkeys([*given, *plugin_specs(sweep.policies)]))
    out = Path(out_dir)
    tdir = out / "tasks"
    tasks = sweep.tasks()
    existing = sorted(tdir.glob("*.json")) if tdir.is_dir() else []
    if existing and not resume:
        raise SweepError(f"sweep: output folder {str(out)!r} already holds {len(existing)} task results; "
                         "pass --resume to continue it, or choose another --out")
    todo, skipped, redone = [], [], []
    for tid, cell, seed in tasks:
        path = tdir / f"{tid}.json"
        if path.exists():
            rec, why = read_task_result(path, tid)
            if rec is not None:
                skipped.append(tid)
                continue
            # One warning per file (the CLI prints it as one line).
            warnings.warn(f"sweep: result {path} is unusable ({why}); running task ({cell.label}, seed {seed}) "
                          "again", stacklevel=2)
            redone.append(tid)
        todo.append((tid, cell, seed))
    ran: list[str] = []
    own = client is None and bool(todo) and (scheduler is not None or workers > 1)
    cluster = None
    if own:  # connect before anything is written: a failed connection leaves no stub folder
        client, cluster = _connect(workers, scheduler)

    def disconnect() -> None:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()

    try:
        tdir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "sweep.json", {"name": sweep.name, "source": sweep.source, "base": sweep.base,
                                               "seeds": sweep.seeds, "policies": sweep.policies, "grid": sweep.grid,
                                               "override": sweep.override, "num_tasks": len(tasks),
                                               "plugins": loaded_plugins()})
    except BaseException:
        disconnect()
        raise
    bar = _bar(len(todo), f"{sweep.name}: {len(todo)} of {len(tasks)} tasks", progress)

    def finish(tid, cell, seed, results, elapsed):
        write_task_result(tdir / f"{tid}.json", tid, cell, seed, sweep.policies, results, elapsed)
        ran.append(tid)
        bar.update(1)
        if stop_after is not None and len(ran) >= stop_after:
            raise SweepInterrupted(f"sweep: stopped after {len(ran)} tasks (test hook)")

    try:
        if todo and client is None:
            for tid, cell, seed in todo:
                t0 = time.perf_counter()
                results = task_fn(cell.data, seed, sweep.policies, f"{sweep.source}: cell {cell.label}", device)
                finish(tid, cell, seed, results, time.perf_counter() - t0)
                if on_result is not None:
                    on_result(None, len(ran))
        elif todo:
            _run_dask(client, sweep, todo, task_fn, finish, on_result, lambda: len(ran), device, plugins)
    finally:
        bar.close()
        disconnect()

    summary, table = summarize_sweep(sweep, out)
    if figures:
        sweep_figures(sweep, summary, out / "figures")
    print(f"\n{sweep.name}: {len(sweep.cells)} cells x {len(sweep.seeds)} seeds; ran {len(ran)}, "
          f"reused {len(skipped)}; mean over seeds ± 95% t-interval half-width")
    print(table)
    return SweepResult(summary=summary, table=table, ran=ran, skipped=skipped, redone=redone, out_dir=out)


def _run_dask(client, sweep, todo, task_fn, finish, on_result, n_done, device: str = "cpu",
              plugins: tuple[str, ...] = ()) -> None:
    from distributed import as_completed

    futures = {}
    for tid, cell, seed in todo:
        fut = client.submit(_timed_with_plugins, plugins, task_fn, cell.data, seed, sweep.policies,
                            f"{sweep.source}: cell {cell.label}", device, key=f"beamattn-sweep-{tid}", pure=False,
                            retries=2)
        futures[fut] = (tid, cell, seed)
    try:
        for fut in as_completed(futures):
            tid, cell, seed = futures[fut]
            results, elapsed = fut.result()
            finish(tid, cell, seed, results, elapsed)
            fut.release()
            if on_result is not None:
                on_result(client, n_done())
    finally:
        client.cancel(list(futures))


def _timed(fn, *args):
    t0 = time.perf_counter()
    res = fn(*args)
    return res, time.perf_counter() - t0


def _timed_with_plugins(plugins: tuple[str, ...], fn, *args):
    """:func:`_timed` in a worker process, after loading the sweep's policy plugins there (once per process)."""
    from ..plugins import load_plugins

    load_plugins(plugins)
    return _timed(fn, *args)


# --------------------------------------------------------------------------- summary


_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def _t975(df: int) -> float:
    if df >= 30:
        return 1.96 if df > 120 else 2.0
    return _T975.get(df) or _T975[max(k for k in _T975 if k <= df)]


def _interval(values: list[float]) -> tuple[float, list[float]]:
    n = len(values)
    mean = sum(values) / n
    if n < 2 or not all(math.isfinite(v) for v in values):
        return mean, [mean, mean]
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = _t975(n - 1) * sd / math.sqrt(n)
    return mean, [mean - half, mean + half]


def summarize_sweep(sweep: Sweep, out: Path) -> tuple[dict, str]:
    """Aggregate the task files into DIR/summary.json and a markdown table (only complete cells are used)."""
    tdir = out / "tasks"
    cells = []
    missing = 0
    for cell in sweep.cells:
        recs = []
        for seed in sweep.seeds:
            tid = task_id(cell, seed, sweep.policies)
            rec, _ = read_task_result(tdir / f"{tid}.json", tid)
            if rec is None:
                missing += 1
            else:
                recs.append(rec)
        entry = {"params": cell.params, "seeds": [r["seed"] for r in recs], "results": {}}
        for pol in sweep.policies:
            kpis = {}
            if recs:
                for k in recs[0]["results"][pol]:
                    vals = [r["results"][pol][k] for r in recs]
                    mean, ci = _interval(vals)
                    kpis[k] = {"mean": mean, "ci95": ci, "per_seed": vals}
            entry["results"][pol] = kpis
        cells.append(entry)
    summary = {"sweep": sweep.name, "grid": sweep.grid, "seeds": sweep.seeds, "policies": sweep.policies,
               "complete": missing == 0, "missing_tasks": missing,
               "interval": "mean over seeds of per-seed means; 95% Student-t interval over seeds", "cells": cells}
    write_json_atomic(out / "summary.json", summary)
    keys = list(sweep.grid)
    head = "| " + " | ".join(keys) + " | policy | " + " | ".join(TABLE_METRICS) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1) + "---:|" * len(TABLE_METRICS)]
    for entry in cells:
        for pol, kpis in entry["results"].items():
            row = [str(entry["params"][k]) for k in keys] + [pol]
            for m in TABLE_METRICS:
                if m not in kpis:
                    row.append("—")
                    continue
                lo, hi = kpis[m]["ci95"]
                half = (hi - lo) / 2
                row.append(f"{kpis[m]['mean']:.3f}" + ("" if half < 5e-4 else f" ±{half:.3f}"))
            lines.append("| " + " | ".join(row) + " |")
    return summary, "\n".join(lines)


def sweep_figures(sweep: Sweep, summary: dict, fig_dir: Path) -> list[Path]:
    """One figure per metric: metric vs the first grid parameter, a line + CI band per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import policy_style

    keys = list(sweep.grid)
    xkey, rest = keys[0], keys[1:]
    panels = list(itertools.product(*(sweep.grid[k] for k in rest))) or [()]
    xs = sweep.grid[xkey]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    paths = []
    for metric in FIGURE_METRICS:
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.5, 3.4), squeeze=False,
                                 sharey=True)
        for ax, panel in zip(axes[0], panels):
            want = dict(zip(rest, panel))
            for pol in sweep.policies:
                mean, lo, hi, xv = [], [], [], []
                for i, x in enumerate(xs):
                    for entry in summary["cells"]:
                        p = entry["params"]
                        if p[xkey] == x and all(p[k] == v for k, v in want.items()):
                            k = entry["results"][pol].get(metric)
                            if k is not None:
                                xv.append(x if numeric else i)
                                mean.append(k["mean"])
                                lo.append(k["ci95"][0])
                                hi.append(k["ci95"][1])
                if not xv:
                    continue
                style = policy_style(pol)
                color = style.get("color")
                ax.plot(xv, mean, marker=style.get("marker", "o"), color=color, label=pol, lw=1.4, ms=4)
                ax.fill_between(xv, lo, hi, color=ax.lines[-1].get_color(), alpha=0.18, lw=0)
            if not numeric:
                ax.set_xticks(range(len(xs)), [str(x) for x in xs])
            ax.set_xlabel(xkey)
            ax.set_title(", ".join(f"{k}={v}" for k, v in want.items()) or sweep.name, fontsize=9)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(metric)
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
        fig.suptitle(f"{sweep.name}: {metric} (mean over seeds, 95% CI)", fontsize=10)
        path = fig_dir / f"{metric}.png"
        save_figure_atomic(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="task", file=sys.stderr, disable=None)
