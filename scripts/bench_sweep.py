#!/usr/bin/env python
"""Sweep benchmark: speed-up of 2 Dask workers over 1 on the same sweep (CPU). Target >= 1.7x on 2 cores.

The sweep: vehicular-60 (``--drops`` drops, 5 policies) over 4 speeds x 2 seeds = 8 tasks of a few
seconds each. Each configuration runs on a Dask ``LocalCluster`` (processes, 1 thread per worker);
the cluster is started and its workers have imported beamattn before the clock starts (start-up is
reported separately), and every run writes to a fresh folder. The in-process 1-worker path is timed
too, for information. The task numbers of all runs must be identical.

Prints a markdown table, writes JSON (default results/bench_sweep.json).

    python scripts/bench_sweep.py [--drops N] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from beamattn.io import write_json_atomic  # noqa: E402
from beamattn.wireless.sweep import local_cluster, parse_sweep, read_task_result, run_sweep  # noqa: E402

TARGET = 1.7


def make_sweep(drops: int):
    base = tomllib.loads((ROOT / "scenarios" / "vehicular-60.toml").read_text())
    data = {"sweep": {"name": "bench-sweep", "base": "vehicular-60.toml", "seeds": [0, 1],
                      "policies": ["genie", "exhaustive", "best-of-set-b", "stale", "attention-untrained"]},
            "grid": {"channel.speed_kmh": [30, 60, 120, 300]},
            "override": {"scenario.drops": drops}}
    return parse_sweep(data, "bench-sweep", base_data=base)


def numbers(out: Path) -> dict:
    res = {}
    for p in sorted((out / "tasks").glob("*.json")):
        rec, why = read_task_result(p, p.stem)
        assert rec is not None, why
        res[p.stem] = rec["results"]
    return res


def _warm():
    import beamattn.wireless.runner  # noqa: F401

    return os.getpid()


def timed_cluster(sweep, workers: int, tmp: Path) -> dict:
    from distributed import Client

    t0 = time.perf_counter()
    with local_cluster(workers) as cluster, Client(cluster) as client:  # the cluster `beamattn sweep --workers` makes
        client.wait_for_workers(workers)
        client.run(_warm)
        startup = time.perf_counter() - t0
        out = tmp / f"dask-{workers}"
        t1 = time.perf_counter()
        res = run_sweep(sweep, out, client=client, progress=False, figures=False)
        wall = time.perf_counter() - t1
    return {"workers": workers, "mode": "LocalCluster", "wall_s": wall, "startup_s": startup, "tasks": len(res.ran),
            "out": out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drops", type=int, default=384, help="drops per task (default 384: 2-4 s per task)")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_sweep.json"))
    args = ap.parse_args()
    sweep = make_sweep(args.drops)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # the sweeps' own tables
            t1 = time.perf_counter()
            r = run_sweep(sweep, tmp / "inproc", progress=False, figures=False)
            rows.append({"workers": 1, "mode": "in-process", "wall_s": time.perf_counter() - t1, "startup_s": 0.0,
                         "tasks": len(r.ran), "out": tmp / "inproc"})
            rows.append(timed_cluster(sweep, 1, tmp))
            rows.append(timed_cluster(sweep, 2, tmp))
        ref = numbers(rows[0]["out"])
        identical = all(numbers(r["out"]) == ref for r in rows[1:])
    one = rows[1]["wall_s"]
    two = rows[2]["wall_s"]
    speedup = one / two
    print(f"sweep: {len(sweep.tasks())} tasks ({len(sweep.cells)} cells x {len(sweep.seeds)} seeds), "
          f"{args.drops} drops, {len(sweep.policies)} policies; {os.cpu_count()} CPUs")
    print("| run | workers | wall s | s/task | cluster start-up s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['workers']} | {r['wall_s']:.2f} | {r['wall_s'] / r['tasks']:.2f} | "
              f"{r['startup_s']:.2f} |")
    verdict = "meets" if speedup >= TARGET else "MISSES"
    print(f"\nspeed-up 2 workers / 1 worker (LocalCluster): {speedup:.2f}x — {verdict} the target {TARGET}x; "
          f"in-process 1 worker / 2 workers: {rows[0]['wall_s'] / two:.2f}x; identical numbers: {identical}")
    write_json_atomic(args.out, {
        "benchmark": "bench_sweep", "tasks": len(sweep.tasks()), "drops": args.drops, "policies": sweep.policies,
        "runs": [{k: v for k, v in r.items() if k != "out"} for r in rows],
        "speedup_2_over_1": speedup, "speedup_2_over_inprocess": rows[0]["wall_s"] / two, "target": TARGET,
        "meets_target": speedup >= TARGET, "identical_numbers": identical,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    })
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
