#!/usr/bin/env python
"""Ray-tracing benchmark (CPU): traced positions/s of Sionna RT, and cold/warm end-to-end time of a run.

1. Traced positions/s: the default ray-traced scenario's scene and solver settings (munich-vehicular:
   specular + LoS, depth 3, ``samples_per_src`` of the scenario), one solve of ``--positions`` receivers on
   the scene's streets (drawn like the back-end's tracks), in a worker process with an empty cache; the
   worker's start (imports, scene load) is timed apart from the solve. Repeated solves of the same size
   (``--repeats``) in the same worker show the steady state.
2. Cold and warm ``beamattn run`` of the scenario (``--drops`` drops; every policy, figures included), in a
   fresh process each, with an empty ``$BEAMATTN_RT_CACHE`` (cold: every solve) and then the filled one
   (warm: cache reads only; the numbers are checked identical), and the channel generation alone
   (``runner.channel_chunks``, in this process) from the filled cache: what a warm run spends on ray tracing.

The machine's load average is recorded (times are inflated when it exceeds the CPU count). Prints a
markdown table, writes JSON (default results/bench_raytracing.json).

    python scripts/bench_raytracing.py [--scenario PATH] [--drops N] [--positions N] [--repeats N] [--out PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from beamattn.io import write_json_atomic  # noqa: E402
from beamattn.wireless.channels.rt_cache import CACHE_ENV, TraceCache  # noqa: E402
from beamattn.wireless.channels.sionna_rt import SionnaRTChannel, _erode, _Solver, rt_ready  # noqa: E402
from beamattn.wireless.runner import channel_chunks  # noqa: E402
from beamattn.wireless.scenario import load_scenario  # noqa: E402


def traced_positions_per_second(scn, positions: int, repeats: int, seed: int) -> dict:
    """One worker, an empty cache: worker start + height map, then ``repeats`` solves of ``positions``."""
    with tempfile.TemporaryDirectory() as tmp:
        ch = SionnaRTChannel(scn.channel, cache=TraceCache(tmp))
        solve = _Solver(True)
        try:
            t0 = time.perf_counter()
            hm = ch.height_map(solve)
            t_start = time.perf_counter() - t0
            clear = _erode(hm.ground, int(np.ceil(scn.channel.street_clearance / hm.res)))
            rng = np.random.default_rng(seed)
            times = []
            for r in range(repeats):
                start, vel = ch._draw_tracks(hm, clear, rng, positions)  # one position per track start
                t0 = time.perf_counter()
                out = ch.trace(start, vel, solve)
                times.append(time.perf_counter() - t0)
                with_path = float(out["valid"].any(-1).mean())
        finally:
            solve.close()
    return {"positions": positions, "worker_start_and_height_map_s": t_start, "solve_s": times,
            "positions_per_s_first": positions / times[0], "positions_per_s_best": positions / min(times),
            "fraction_with_a_path": with_path}


def run_once(scenario: Path, drops: int, cache: str, out: Path) -> tuple[float, dict]:
    env = dict(os.environ, **{CACHE_ENV: cache})
    cmd = [str(Path(sys.executable).parent / "beamattn"), "run", str(scenario), "--drops", str(drops), "--out",
           str(out), "--force"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"bench_raytracing: {' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return elapsed, json.loads((out / "metrics.json").read_text())["metrics"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "munich-vehicular.toml")
    ap.add_argument("--drops", type=int, default=16, help="drops of the end-to-end runs (default 16)")
    ap.add_argument("--positions", type=int, default=256, help="receivers per solve (default 256)")
    ap.add_argument("--repeats", type=int, default=2, help="solves in the same worker (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench_raytracing.json")
    args = ap.parse_args()
    ok, why = rt_ready()
    if not ok:
        raise SystemExit(f"bench_raytracing: the ray tracer cannot run here: {why}")
    scn = load_scenario(args.scenario)
    load0 = os.getloadavg()[0]
    print(f"traced positions/s: {args.positions} receivers x {args.repeats} solves ...", file=sys.stderr)
    tps = traced_positions_per_second(scn, args.positions, args.repeats, args.seed)
    print(f"end-to-end: {args.drops} drops, cold then warm ...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as outs:
        cold_s, cold = run_once(args.scenario, args.drops, cache, Path(outs) / "cold")
        warm_s, warm = run_once(args.scenario, args.drops, cache, Path(outs) / "warm")
        entries = len(list(Path(cache).rglob("*.npz")))
        os.environ[CACHE_ENV] = cache
        t0 = time.perf_counter()
        for _ in channel_chunks(dataclasses.replace(scn, drops=args.drops), scn.seed, args.drops):
            pass
        channels_warm_s = time.perf_counter() - t0
    same = all(cold[p]["loss_db"]["mean"] == warm[p]["loss_db"]["mean"] for p in cold)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "scenario": str(args.scenario.relative_to(ROOT) if args.scenario.is_relative_to(ROOT) else args.scenario),
        "scene": scn.channel.scene, "samples_per_src": scn.channel.samples_per_src, "max_depth": scn.channel.max_depth,
        "diffraction": scn.channel.diffraction, "traces_per_drop": scn.channel.num_traces,
        "cpus": os.cpu_count(), "load_average": [load0, os.getloadavg()[0]],
        "traced_positions": tps,
        "end_to_end": {"drops": args.drops, "cold_s": cold_s, "warm_s": warm_s, "cache_entries": entries,
                       "warm_equals_cold": same, "channel_generation_warm_s": channels_warm_s},
    }
    write_json_atomic(args.out, result)
    print(f"\n{result['scenario']} (scene {scn.channel.scene}, samples_per_src {scn.channel.samples_per_src}, depth "
          f"{scn.channel.max_depth}, {scn.channel.num_traces} traces per drop); load average "
          f"{load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| measurement | value |\n|---|---:|")
    print(f"| worker start + height map (s) | {tps['worker_start_and_height_map_s']:.1f} |")
    print(f"| solve of {args.positions} positions (s), first / best | {tps['solve_s'][0]:.1f} / "
          f"{min(tps['solve_s']):.1f} |")
    print(f"| traced positions/s, first / best | {tps['positions_per_s_first']:.1f} / "
          f"{tps['positions_per_s_best']:.1f} |")
    print(f"| positions with a path | {tps['fraction_with_a_path']:.0%} |")
    print(f"| `beamattn run`, {args.drops} drops, cold cache (s) | {cold_s:.1f} |")
    print(f"| `beamattn run`, {args.drops} drops, warm cache (s) | {warm_s:.1f} |")
    print(f"| channel generation of the {args.drops} drops from the warm cache (s) | {channels_warm_s:.1f} |")
    print(f"| warm numbers identical to cold | {same} |")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
