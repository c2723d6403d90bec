#!/usr/bin/env python
"""GPU benchmark: channel snapshots/s, selector decisions/s, and ``attend`` vs SDPA, on one device.

Rows (each timed in this process; ``reference`` is a CPU run of the same work, or PyTorch's own
attention, measured interleaved with the candidate):

1. Channel snapshots per second on the device: the built-in geometric simulator (32-element ULA,
   24 paths: 1 LoS + 23 scattered rays) and Sionna CDL-C (same array, 24 clusters), narrowband,
   ``batch`` drops x 100 time steps; reference: the same call with ``device="cpu"``. The geometric
   back-end draws its random geometry on the CPU (the same drops on every device) and computes the
   channel on the device; the time includes both.
2. Attention-selector decisions per second (no_grad): 64 antennas, 64 beams (DFT), history 4, learned
   selector, sparsemax and softmax, soft mode, one large batch; reference: the CPU.
3. ``beamattn.core.attend(q, k, v)`` (its SDPA path) and ``attend(..., return_weights=True)`` (the
   explicit path that materialises the weights) against
   ``torch.nn.functional.scaled_dot_product_attention``, forward, no_grad, ``[B, H, L, d]`` shapes in
   float32, bfloat16 (where supported) and float16; ratio = attend time / SDPA time.

Timing: on CUDA, CUDA events around each call after ``torch.cuda.synchronize()``, with warm-up
calls first; elsewhere ``time.perf_counter``. A time is the median over repeats; candidate and
reference alternate call by call. The device's name (``torch.cuda.get_device_name()``) is recorded.

Without a CUDA device (and ``--device`` left at ``cuda``) nothing is timed: the script says so,
writes a JSON with ``"skipped": true`` and exits 0. ``--device cpu --quick`` is a smoke run on the
CPU (the tests run it) so that the script cannot rot.

    python scripts/bench_gpu.py [--device cuda|cuda:N|cpu] [--quick] [--no-sionna] [--out PATH]

Prints a markdown table, writes JSON (default results/bench_gpu.json).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beamattn import __version__  # noqa: E402
from beamattn.core import attend  # noqa: E402
from beamattn.device import resolve_device  # noqa: E402
from beamattn.io import write_json_atomic  # noqa: E402
from beamattn.wireless.arrays import ULA  # noqa: E402
from beamattn.wireless.channels.geometric import GeometricChannel, GeometricConfig  # noqa: E402
from beamattn.wireless.codebooks import dft_codebook  # noqa: E402
from beamattn.wireless.selector import AttentionSelector, SelectorConfig  # noqa: E402

DEFAULT_OUT = Path("results/bench_gpu.json")


def config(quick: bool, device: torch.device) -> dict:
    """Sizes: full on a GPU; ``quick`` is a smoke run (small enough for a CPU in a few seconds)."""
    if quick:
        return dict(geo_batch=8, cdl_batch=2, steps=20, sel_batch=2048, attn_shapes=[(2, 4, 128, 32)],
                    warmup=1, repeats=3, cpu_reference=device.type != "cpu")
    return dict(geo_batch=512, cdl_batch=64, steps=100, sel_batch=1 << 16,
                attn_shapes=[(16, 8, 512, 64), (4, 16, 2048, 64), (2, 16, 8192, 128)],
                warmup=5, repeats=25, cpu_reference=device.type != "cpu")


def log(msg: str) -> None:
    print(f"[bench_gpu {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of ``fn``: CUDA events on a GPU (the device is idle before), else wall time."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3  # ms -> s
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def time_pair(cand: Callable[[], object], cand_dev: torch.device, ref: Callable[[], object] | None,
              ref_dev: torch.device | None, warmup: int, repeats: int) -> tuple[float, float | None]:
    """Median seconds per call of ``cand`` (and ``ref``), after warm-up, alternating call by call."""
    for _ in range(warmup):
        cand()
        if ref is not None:
            ref()
    _sync(cand_dev)
    tc, tr = [], []
    for _ in range(repeats):
        tc.append(_time_call(cand, cand_dev))
        if ref is not None:
            _sync(cand_dev)
            tr.append(_time_call(ref, ref_dev))
    return statistics.median(tc), (statistics.median(tr) if tr else None)


# --------------------------------------------------------------------------- cases


def _seeds():
    s = 0
    while True:
        s += 1
        yield s


def bench_channels(device: torch.device, cfg: dict, sionna: bool) -> list[dict]:
    """Channel snapshots per second, geometric (and Sionna CDL-C), on ``device`` vs the CPU."""
    array, dt, steps = ULA(32), 1e-3, cfg["steps"]
    cpu = torch.device("cpu")
    backends = [("geometric", GeometricChannel(GeometricConfig(
        array=array, carrier_frequency=3.5e9, speed=10.0, duration=steps * dt, sample_interval=dt,
        num_clusters=23, rays_per_cluster=1, los=True)), cfg["geo_batch"])]
    if sionna:
        from beamattn.wireless.channels.sionna_tr38901 import SionnaCDLChannel, SionnaCDLConfig

        backends.append(("sionna CDL-C", SionnaCDLChannel(SionnaCDLConfig(
            model="C", array=array, carrier_frequency=3.5e9, speed=10.0, duration=steps * dt, sample_interval=dt)),
            cfg["cdl_batch"]))
    rows = []
    for name, ch, batch in backends:
        seeds = _seeds()
        sample = ch.generate(batch, seed=0, device=device)
        assert sample.h.device.type == device.type, (sample.h.device, device)  # computed where asked
        snaps = batch * sample.h.shape[1]
        ref = (lambda ch=ch, batch=batch: ch.generate(batch, seed=next(seeds), device=cpu)) \
            if cfg["cpu_reference"] else None
        t, t_ref = time_pair(lambda ch=ch, batch=batch: ch.generate(batch, seed=next(seeds), device=device), device,
                             ref, cpu, cfg["warmup"], cfg["repeats"])
        rows.append(_rate_row(f"channel snapshots/s, {name}, ULA 32, 24 paths, {batch} x {sample.h.shape[1]}",
                              "snapshots/s", snaps, t, t_ref))
    return rows


def _rate_row(case: str, unit: str, work: int, t: float, t_ref: float | None) -> dict:
    """A throughput row: ``work`` items per call in ``t`` s on the device (``t_ref`` s on the CPU, or None)."""
    return {"case": case, "unit": unit, "candidate_rate": work / t, "reference": "same on cpu" if t_ref else None,
            "reference_rate": work / t_ref if t_ref else None, "ratio": t_ref / t if t_ref else None,
            "seconds_per_call": t}


def bench_selector(device: torch.device, cfg: dict) -> list[dict]:
    """Learned-selector decisions per second (no_grad), N=64, M=64, L=4, one large batch."""
    cpu = torch.device("cpu")
    batch = cfg["sel_batch"]
    cb = dft_codebook(ULA(64))  # 64 antennas, 64 beams
    g = torch.Generator().manual_seed(0)
    rsrp_cpu = torch.randn(batch, 4, 64, generator=g) * 6  # [S, L, M] dB
    rows = []
    for normalizer in ("sparsemax", "softmax"):
        cfg_sel = SelectorConfig(history=4, learned=True, normalizer=normalizer)
        torch.manual_seed(0)
        sel_cpu = AttentionSelector(cfg_sel, cb.beams, torch.ones(64, dtype=torch.bool)).eval()
        torch.manual_seed(0)  # the same weights on the device
        sel = AttentionSelector(cfg_sel, cb.beams.to(device), torch.ones(64, dtype=torch.bool, device=device)).eval()
        rsrp = rsrp_cpu.to(device)

        def run(sel=sel, rsrp=rsrp):
            with torch.no_grad():
                return sel(rsrp)

        def run_cpu(sel=sel_cpu):
            with torch.no_grad():
                return sel(rsrp_cpu)

        assert run().beams.device.type == device.type
        t, t_ref = time_pair(run, device, run_cpu if cfg["cpu_reference"] else None, cpu, cfg["warmup"],
                             cfg["repeats"])
        rows.append(_rate_row(f"selector decisions/s (learned, {normalizer}, soft), N=64, M=64, L=4, batch {batch}",
                              "decisions/s", batch, t, t_ref))
    return rows


def _dtypes(device: torch.device) -> list[torch.dtype]:
    out = [torch.float32]
    if device.type != "cuda" or torch.cuda.is_bf16_supported():
        out.append(torch.bfloat16)
    if device.type == "cuda":
        out.append(torch.float16)  # CPU half attention is slow and not what anyone runs
    return out


def bench_attend(device: torch.device, cfg: dict) -> list[dict]:
    """``attend`` (SDPA path and explicit path) vs ``F.scaled_dot_product_attention``, forward, no_grad."""
    rows = []
    g = torch.Generator().manual_seed(0)
    for shape in cfg["attn_shapes"]:
        b, h, n, d = shape
        base = [torch.randn(shape, generator=g) for _ in range(3)]
        for dtype in _dtypes(device):
            q, k, v = (t.to(device=device, dtype=dtype) for t in base)

            def sdpa(q=q, k=k, v=v):
                with torch.no_grad():
                    return F.scaled_dot_product_attention(q, k, v)

            for label, kwargs in (("attend", {}), ("attend, return_weights", {"return_weights": True})):
                def cand(q=q, k=k, v=v, kwargs=kwargs):
                    with torch.no_grad():
                        return attend(q, k, v, **kwargs)

                t, t_ref = time_pair(cand, device, sdpa, device, cfg["warmup"], cfg["repeats"])
                rows.append({"case": f"{label} vs SDPA, [B,H,L,d] = {list(shape)}, {str(dtype).removeprefix('torch.')}",
                             "unit": "ms/call", "candidate_ms": 1e3 * t, "reference": "scaled_dot_product_attention",
                             "reference_ms": 1e3 * t_ref, "ratio": t / t_ref})
    return rows


# --------------------------------------------------------------------------- main


def environment(device: torch.device) -> dict:
    env = {"beamattn": __version__, "torch": torch.__version__, "python": platform.python_version(),
           "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "processor": platform.processor(),
           "device": str(device), "device_name": "cpu"}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(device_name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
                   cudnn=torch.backends.cudnn.version(), flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    return env


def _table(rows: list[dict]) -> str:
    lines = ["| case | candidate | reference | ratio |", "|---|---:|---:|---:|"]
    for r in rows:
        if r["unit"] == "ms/call":
            cand, ref, ratio = f"{r['candidate_ms']:.3f} ms", f"{r['reference_ms']:.3f} ms (SDPA)", f"{r['ratio']:.2f}"
        else:
            cand = f"{r['candidate_rate']:,.0f}/s"
            ref = "" if r["reference_rate"] is None else f"{r['reference_rate']:,.0f}/s (cpu)"
            ratio = "" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        lines.append(f"| {r['case']} | {cand} | {ref} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a smoke run")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--no-sionna", action="store_true", help="skip the Sionna CDL row (its import takes seconds)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    if a.device.strip().lower().startswith("cuda") and not torch.cuda.is_available():
        reason = "no CUDA device (torch.cuda.is_available() is False)"
        print(f"bench_gpu: skipped: {reason}; run it on a GPU machine, or with --device cpu --quick for a smoke run",
              file=sys.stderr)
        env = {**environment(torch.device("cpu")), "device": a.device, "device_name": None}
        write_json_atomic(a.out, {"benchmark": "bench_gpu", "skipped": True, "reason": reason, "quick": a.quick,
                                  "rows": [], "environment": env})
        return 0
    try:
        device = resolve_device(a.device)
    except ValueError as e:
        print(f"bench_gpu: error: {e}", file=sys.stderr)
        return 2
    cfg = config(a.quick, device)
    env = environment(device)
    log(f"device {device} ({env['device_name']}), {'quick' if a.quick else 'full'} sizes")
    rows = []
    log("channels ...")
    rows += bench_channels(device, cfg, sionna=not a.no_sionna)
    log("selector ...")
    rows += bench_selector(device, cfg)
    log("attend vs SDPA ...")
    rows += bench_attend(device, cfg)
    print(f"bench_gpu on {device} ({env['device_name']}), torch {torch.__version__}; medians of {cfg['repeats']} "
          f"calls after {cfg['warmup']} warm-up calls")
    print(_table(rows))
    write_json_atomic(a.out, {"benchmark": "bench_gpu", "skipped": False, "quick": a.quick, "config": cfg,
                              "rows": rows, "environment": env})
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
