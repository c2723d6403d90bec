#!/usr/bin/env python
"""Wireless benchmark: channel simulation speed and selector throughput (CPU).

Rows (each ratio measured in this process against its reference):

1. Built-in geometric simulator vs Sionna CDL-C: channel snapshots per second
   for the same array (32-element ULA), the same number of paths (24: Sionna's
   CDL-C has 24 clusters; the geometric model gets 1 LoS + 23 scattered rays),
   batch 64 drops x 100 time steps, narrowband. Target ratio >= 20.
2. Attention selector decisions per second, batched, no_grad: 64 antennas,
   64 beams, history 4, learned sparsemax selector in soft mode (and the
   untrained one for information). Target >= 100,000 decisions/s. Then at
   history 8 (issue 13): the conv selector and the contextual one
   (``arch = "transformer"``: 1 self-attention block, 4 heads, contextual
   query), with the ratio of the two measured in the same process; and the default scenario's selector
   (the contextual one with ``csi_keys``: its keys also read the complex reports).

Prints a markdown table, writes JSON (default results/bench_wireless.json).
Times are medians of interleaved repeats.

    python scripts/bench_wireless.py [--quick] [--out PATH] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beamattn import __version__  # noqa: E402
from beamattn.io import write_json_atomic  # noqa: E402
from beamattn.wireless.arrays import ULA  # noqa: E402
from beamattn.wireless.channels.geometric import GeometricChannel, GeometricConfig  # noqa: E402
from beamattn.wireless.codebooks import dft_codebook  # noqa: E402
from beamattn.wireless.selector import AttentionSelector, SelectorConfig  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_channels(batch: int, steps: int, repeats: int) -> dict:
    from beamattn.wireless.channels.sionna_tr38901 import SionnaCDLChannel, SionnaCDLConfig

    array = ULA(32)
    dt = 1e-3
    duration = steps * dt
    geo = GeometricChannel(GeometricConfig(array=array, carrier_frequency=3.5e9, speed=10.0, duration=duration,
                                           sample_interval=dt, num_clusters=23, rays_per_cluster=1, los=True))
    cdl = SionnaCDLChannel(SionnaCDLConfig(model="C", array=array, carrier_frequency=3.5e9, speed=10.0,
                                           duration=duration, sample_interval=dt))
    g = geo.generate(batch, seed=0)
    c = cdl.generate(batch, seed=0)
    assert g.h.shape == c.h.shape, (g.h.shape, c.h.shape)
    seeds = iter(range(1, 10**6))
    tg, tc = [], []
    for _ in range(repeats):  # interleaved: noise hits both alike
        tg.append(_median_time(lambda: geo.generate(batch, seed=next(seeds)), 1))
        tc.append(_median_time(lambda: cdl.generate(batch, seed=next(seeds)), 1))
    snaps = batch * g.h.shape[1]
    rate_g, rate_c = snaps / statistics.median(tg), snaps / statistics.median(tc)
    return {"case": f"channel snapshots/s, ULA 32, 24 paths, {batch} x {g.h.shape[1]}",
            "candidate": "geometric", "reference": "sionna CDL-C", "candidate_rate": rate_g, "reference_rate": rate_c,
            "ratio": rate_g / rate_c, "target": 20.0, "pass": rate_g / rate_c >= 20.0}


def bench_selector(batch: int, repeats: int, learned: bool, arch: str = "conv", history: int = 4,
                   csi_keys: bool = False) -> dict:
    cb = dft_codebook(ULA(64))  # 64 antennas, 64 beams
    measured = torch.ones(64, dtype=torch.bool)
    extra = {"arch": "transformer", "layers": 1, "heads": 4, "query": "context"} if arch == "transformer" else {}
    torch.manual_seed(0)
    sel = AttentionSelector(SelectorConfig(history=history, learned=learned, csi_keys=csi_keys, **extra), cb.beams,
                            measured).eval()
    g = torch.Generator().manual_seed(0)
    rsrp = torch.randn(batch, history, 64, generator=g) * 6  # [S, L, M] dB
    phase = (torch.rand(batch, history, 64, generator=g) * 2 - 1) * torch.pi if csi_keys else None  # [S, L, M]

    def run():
        with torch.no_grad():
            sel(rsrp, report_phase=phase)

    t = statistics.median(_median_time(run, 1) for _ in range(repeats))
    rate = batch / t
    kind = ("learned" if learned else "untrained") + ("" if arch == "conv" else f", {arch}") \
        + (", csi_keys" if csi_keys else "")
    return {"case": f"selector decisions/s ({kind}, sparsemax, soft), N=64, M=64, L={history}, batch {batch}",
            "candidate_rate": rate, "target": 1e5 if learned else None,
            "pass": (rate >= 1e5) if learned else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("results/bench_wireless.json"))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = p.parse_args(argv)
    repeats = a.repeats or (2 if a.quick else 7)
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    print("channels ...", file=sys.stderr)
    rows.append(bench_channels(8 if a.quick else 64, 20 if a.quick else 100, repeats))
    print("selector ...", file=sys.stderr)
    batch = 1024 if a.quick else 16384
    for learned in (True, False):
        rows.append(bench_selector(batch, repeats, learned))
    # Issue 13's targets are for L = 8: today's conv selector and the contextual (transformer) one, same process.
    rows.append(bench_selector(batch, repeats, True, history=8))
    rows.append(bench_selector(batch, repeats, True, arch="transformer", history=8))
    rows[-1]["ratio_vs_conv_L8"] = rows[-1]["candidate_rate"] / rows[-2]["candidate_rate"]
    # The default scenario's selector: the transformer whose keys also read the complex reports.
    rows.append(bench_selector(batch, repeats, True, arch="transformer", history=8, csi_keys=True))
    rows[-1]["ratio_vs_conv_L8"] = rows[-1]["candidate_rate"] / rows[-3]["candidate_rate"]
    print("| case | candidate | reference | ratio | target | pass |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        ref = f"{r['reference_rate']:,.0f}/s" if "reference_rate" in r else ""
        ratio = f"{r['ratio']:.1f}x" if "ratio" in r else ""
        tgt = "" if r["target"] is None else (f">= {r['target']:.0f}x" if "ratio" in r else f">= {r['target']:,.0f}/s")
        ok = "" if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")
        print(f"| {r['case']} | {r['candidate_rate']:,.0f}/s | {ref} | {ratio} | {tgt} | {ok} |")
    write_json_atomic(a.out, {"benchmark": "bench_wireless", "quick": a.quick, "rows": rows,
                              "environment": {"beamattn": __version__, "torch": torch.__version__,
                                              "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                                              "load_average_1_5_15_min": list(os.getloadavg()),
                                              "python": platform.python_version(),
                                              "processor": platform.processor()}})
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
