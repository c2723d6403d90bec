#!/usr/bin/env python
"""Benchmark of the attention core (``beamattn.core``) against PyTorch / entmax references.

Every row times a candidate against its reference *in the same process*, with
the two interleaved (A B, B A, A B, ...) so that noise on a shared machine hits
both alike. A time is the per-call median of a round of samples; with several
rounds, the minimum of the round medians. The ratio is candidate / reference.

Each row runs in its own fresh subprocess (this script with a hidden
``--_case-child`` argument). On CPU the times of large tensor ops depend
strongly on the state of glibc malloc (whether a freed 16 MiB buffer went back
to the OS and must be page-faulted in again), and that state depends on which
cases ran before; a fresh process per row makes every row independent of the
order. Page faults per call are recorded for each side (``faults_per_call``).
``--quick`` runs the timing rows in the main process (faster; a smoke test
whose timings are indicative only).

Cases (CPU, float32):

1. ``attend(q, k, v)`` vs ``F.scaled_dot_product_attention`` (forward, no_grad):
   ratio <= 1.10. Forward+backward rows are information only.
2. ``attend(q, k, v, return_weights=True)`` vs plain three-line attention
   (forward, no_grad): ratio <= 1.0.
3. ``sparsemax`` forward+backward vs ``entmax.sparsemax``: ratio <= 0.5 for
   rows of 1024 and 32768, <= 0.75 for rows of 64; outputs and gradients must
   agree (max abs diff <= 1e-5).
4. Top-k attention (``attend(..., topk=32)``) vs dense scores masked to their
   top k: peak memory ratio <= 0.25, measured in fresh subprocesses with
   ``ru_maxrss`` (increase over the inputs); outputs must agree (atol 1e-5).
   On Linux a process started by fork/vfork + exec inherits its parent's peak
   RSS in ``ru_maxrss``; the memory child therefore forks once more, before
   importing torch, and measures in the grandchild, whose peak starts small.

Usage::

    python scripts/bench_core.py                # full run, ~ minutes
    python scripts/bench_core.py --quick        # smoke run, small sizes, < 30 s
    python scripts/bench_core.py --out PATH --seed 0 --strict
    python scripts/bench_core.py --threads 1    # on a busy machine (see below)

With 2+ threads, every parallel op waits for all its threads: when other
processes keep the CPUs busy, an op can wait a scheduler time slice, so calls
that take 3 ms on a quiet machine take 30-200 ms, and code made of many small
ops (sparsemax's Newton steps) suffers most. The script prints a note when the
load average exceeds the CPU count; ``--threads 1`` keeps the ratios sound there.

Prints a markdown table to stdout, progress to stderr, and writes JSON
(default ``results/bench_core.json``). Exit code 0 even when a target is
missed, unless ``--strict``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

if __name__ == "__main__" and "--_mem-child" in sys.argv and hasattr(os, "fork"):
    # ru_maxrss of an exec'ed process starts at its parent's peak RSS (the kernel
    # carries it over at exec), which would hide the peak of a small path. A
    # process forked from this still-small one (torch is not imported yet) gets
    # fresh accounting: measure there, and pass its exit status on.
    _pid = os.fork()
    if _pid:
        _, _status = os.waitpid(_pid, 0)
        sys.exit(os.waitstatus_to_exitcode(_status))

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from beamattn.core import attend, sparsemax  # noqa: E402

DEFAULT_OUT = REPO / "results" / "bench_core.json"


def log(msg: str) -> None:
    print(f"[bench_core {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- configuration


def config(quick: bool) -> dict:
    if quick:
        return dict(
            attn_shapes=[(2, 8, 512, 64), (64, 4, 128, 32)],
            attn_grad_shapes=[(64, 4, 128, 32)],
            sparsemax_shapes=[(1024, 64), (128, 1024), (4, 32768)],
            topk_L=16384, topk_d=64, topk_k=32, child_repeats=1,
            rounds=2, repeats=4, sample_s=0.01, warmup=0, case_budget_s=1.0,
            isolate=[],  # a fresh process costs ~1.3 s (importing torch): none in a smoke test
        )
    return dict(
        attn_shapes=[(8, 8, 1024, 64), (64, 4, 128, 32)],
        attn_grad_shapes=[(8, 8, 1024, 64), (64, 4, 128, 32)],
        sparsemax_shapes=[(8192, 64), (1024, 1024), (32, 32768)],
        topk_L=16384, topk_d=64, topk_k=32, child_repeats=3,
        rounds=3, repeats=8, sample_s=0.05, warmup=2, case_budget_s=90.0,
        isolate=["sdpa", "sdpa_grad", "weights", "sparsemax"],
    )


SPARSEMAX_TARGETS = {64: 0.75, 1024: 0.5, 32768: 0.5}


def sparsemax_target(n: int) -> float:
    # Rows of the sizes named in the targets; other (quick) sizes take the nearest one.
    return SPARSEMAX_TARGETS.get(n, 0.75 if n <= 256 else 0.5)


# --------------------------------------------------------------------------- timing


def _minflt() -> int:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _time_once(fn: Callable[[], object], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def time_pair(cand: Callable[[], object], ref: Callable[[], object], cfg: dict) -> dict:
    """Interleaved timing of ``cand`` and ``ref``; seconds per call.

    Each sample runs a function once untimed, then ``number`` times timed
    (``number`` chosen so that a sample lasts about ``sample_s``). Samples
    alternate A B / B A. Per round, the median per-call time of each side; over
    rounds, the minimum. ``ratio_paired_median`` (median of the per-pair
    ratios) is a second estimate, recorded in the JSON. Sampling stops early
    (after at least two pairs) once the case has run ``case_budget_s``.
    """
    for _ in range(cfg["warmup"]):
        cand()
        ref()
    one = max(_time_once(cand, 1), _time_once(ref, 1), 1e-6)
    number = max(1, int(math.ceil(cfg["sample_s"] / one)))
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    cand_meds, ref_meds, pair_ratios = [], [], []
    faults = {"cand": 0, "ref": 0}

    def timed(side: str, fn: Callable[[], object]) -> float:
        # One untimed call first: the first call after switching between the two
        # functions pays for re-growing the heap (page faults) to the new allocation
        # pattern, an artefact of interleaving, not a cost of either function.
        fn()
        f0 = _minflt()
        t = _time_once(fn, number)
        faults[side] += _minflt() - f0
        return t

    t_start = time.perf_counter()
    truncated = False
    try:
        for _ in range(cfg["rounds"]):
            if truncated:
                break
            cs, rs = [], []
            for i in range(cfg["repeats"]):
                if i >= 2 and time.perf_counter() - t_start > cfg["case_budget_s"]:
                    truncated = True  # a loaded machine can slow calls 100x: bound the run time
                    break
                if i % 2 == 0:
                    c = timed("cand", cand)
                    r = timed("ref", ref)
                else:
                    r = timed("ref", ref)
                    c = timed("cand", cand)
                cs.append(c)
                rs.append(r)
                pair_ratios.append(c / r)
            cand_meds.append(statistics.median(cs))
            ref_meds.append(statistics.median(rs))
    finally:
        if gc_was_enabled:
            gc.enable()
    c, r = min(cand_meds), min(ref_meds)
    calls = number * len(pair_ratios)
    return dict(
        cand_s=c, ref_s=r, ratio=c / r,
        faults_per_call=dict(cand=faults["cand"] / calls, ref=faults["ref"] / calls),
        ratio_paired_median=statistics.median(pair_ratios),
        cand_round_medians_s=cand_meds, ref_round_medians_s=ref_meds,
        number=number, rounds=cfg["rounds"], repeats=cfg["repeats"], pairs_timed=len(pair_ratios),
        truncated_by_budget=truncated,
    )


# --------------------------------------------------------------------------- references


def plain_attention(q, k, v):
    """The three-line PyTorch attention that returns its weights."""
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    w = torch.softmax(s, -1)
    o = w @ v
    return o, w


def dense_topk_attention(q, k, v, topk: int):
    """Dense scores masked to their top ``topk`` per row, then softmax and @ v."""
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    top_s, top_i = s.topk(topk, dim=-1)
    s = torch.full_like(s, float("-inf")).scatter_(-1, top_i, top_s)
    w = torch.softmax(s, -1)
    return w @ v


def maxdiff(a, b) -> float:
    return float((a.detach() - b.detach()).abs().max())


# --------------------------------------------------------------------------- cases


def case_sdpa(shape, seed: int, cfg: dict) -> dict:
    B, H, L, d = shape
    torch.manual_seed(seed)
    q, k, v = (torch.randn(B, H, L, d) for _ in range(3))
    with torch.no_grad():
        diff = maxdiff(attend(q, k, v), F.scaled_dot_product_attention(q, k, v))
        t = time_pair(lambda: attend(q, k, v), lambda: F.scaled_dot_product_attention(q, k, v), cfg)
    return dict(case=f"attend vs SDPA, fwd, B={B} H={H} L={L} d={d}", group="attend_sdpa", shape=list(shape),
                target=1.10, max_abs_diff=diff, check_ok=diff <= 1e-5, **t)


def case_sdpa_grad(shape, seed: int, cfg: dict) -> dict:
    B, H, L, d = shape
    torch.manual_seed(seed)
    q, k, v = (torch.randn(B, H, L, d, requires_grad=True) for _ in range(3))
    g = torch.randn(B, H, L, d)

    def run(fn):
        out = fn(q, k, v)
        return (out, *torch.autograd.grad(out, (q, k, v), g))

    cand = lambda: run(attend)  # noqa: E731
    ref = lambda: run(F.scaled_dot_product_attention)  # noqa: E731
    diff = max(maxdiff(a, b) for a, b in zip(cand(), ref()))
    t = time_pair(cand, ref, cfg)
    return dict(case=f"attend vs SDPA, fwd+bwd, B={B} H={H} L={L} d={d}", group="attend_sdpa_grad",
                shape=list(shape), target=None, max_abs_diff=diff, **t)


def case_weights(shape, seed: int, cfg: dict) -> dict:
    B, H, L, d = shape
    torch.manual_seed(seed)
    q, k, v = (torch.randn(B, H, L, d) for _ in range(3))
    with torch.no_grad():
        (o1, w1), (o2, w2) = attend(q, k, v, return_weights=True), plain_attention(q, k, v)
        diff = max(maxdiff(o1, o2), maxdiff(w1, w2))
        del o1, w1, o2, w2
        t = time_pair(lambda: attend(q, k, v, return_weights=True), lambda: plain_attention(q, k, v), cfg)
    return dict(case=f"attend(return_weights) vs plain, fwd, B={B} H={H} L={L} d={d}", group="attend_weights",
                shape=list(shape), target=1.0, max_abs_diff=diff, check_ok=diff <= 1e-5, **t)


def case_sparsemax(shape, seed: int, cfg: dict) -> dict:
    import entmax

    rows, n = shape
    torch.manual_seed(seed)
    x = torch.randn(rows, n, requires_grad=True)
    g = torch.randn(rows, n)

    def run(fn):
        y = fn(x, dim=-1)
        (gx,) = torch.autograd.grad(y, x, g)
        return y, gx

    cand = lambda: run(sparsemax)  # noqa: E731
    ref = lambda: run(entmax.sparsemax)  # noqa: E731
    (yc, gc_), (yr, gr) = cand(), ref()
    out_diff, grad_diff = maxdiff(yc, yr), maxdiff(gc_, gr)
    del yc, gc_, yr, gr
    t = time_pair(cand, ref, cfg)
    ok = out_diff <= 1e-5 and grad_diff <= 1e-5
    return dict(case=f"sparsemax vs entmax.sparsemax, fwd+bwd, {rows}x{n}", group="sparsemax", shape=list(shape),
                target=sparsemax_target(n), max_abs_diff=max(out_diff, grad_diff), max_abs_diff_out=out_diff,
                max_abs_diff_grad=grad_diff, check_ok=ok, **t)


CASES = {"sdpa": case_sdpa, "sdpa_grad": case_sdpa_grad, "weights": case_weights, "sparsemax": case_sparsemax}


def case_child(spec_path: str) -> None:
    """Child process: run one timing case, write its row as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    row = CASES[spec["case"]](tuple(spec["shape"]), spec["seed"], spec["cfg"])
    Path(spec["result_path"]).write_text(json.dumps(row))


def _threads_args() -> list[str]:
    """Children use this process's thread count."""
    return ["--threads", str(torch.get_num_threads())]


def run_case(name: str, shape, seed: int, cfg: dict, tmp: Path, index: int) -> dict:
    """Run one timing case in a fresh subprocess (see the module docstring), or here if not in ``isolate``."""
    if name not in cfg["isolate"]:
        return dict(CASES[name](tuple(shape), seed, cfg), isolated=False)
    spec = dict(case=name, shape=list(shape), seed=seed, cfg=cfg, result_path=str(tmp / f"case{index}.json"))
    spec_path = tmp / f"case{index}_spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_case-child", str(spec_path),
                           *_threads_args()],
                          cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"case child {name} {shape} failed (rc {proc.returncode}):\n{proc.stderr}")
    return dict(json.loads(Path(spec["result_path"]).read_text()), isolated=True)


# --------------------------------------------------------------------------- top-k memory (subprocesses)


def _maxrss_mib() -> float:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _proc_status_mib(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError):
        pass
    return None


def _reset_hwm() -> bool:
    """Reset VmHWM (Linux >= 4.0) so that it measures the peak from now on; ru_maxrss is not reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mem_child(spec_path: str) -> None:
    """Child process: build inputs from the seed, run one path once, report the peak RSS increase."""
    spec = json.loads(Path(spec_path).read_text())
    L, d, topk = spec["L"], spec["d"], spec["topk"]
    torch.manual_seed(spec["seed"])
    q, k, v = (torch.randn(1, 1, L, d) for _ in range(3))
    if spec["mode"] == "topk":
        fn = lambda: attend(q, k, v, topk=topk)  # noqa: E731
    else:
        fn = lambda: dense_topk_attention(q, k, v, topk)  # noqa: E731
    with torch.no_grad():
        gc.collect()
        before = _maxrss_mib()
        rss_before = _proc_status_mib("VmRSS")
        hwm_reset = _reset_hwm()
        t0 = time.perf_counter()
        out = fn()
        first = time.perf_counter() - t0
        after = _maxrss_mib()
        hwm_after = _proc_status_mib("VmHWM") if hwm_reset else None
        times = [first]
        for _ in range(spec["repeats"] - 1):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    torch.save(out, spec["out_path"])
    res = dict(mode=spec["mode"], maxrss_before_mib=before, maxrss_after_mib=after, peak_increase_mib=after - before,
               vmrss_before_mib=rss_before, vmhwm_after_reset_mib=hwm_after,
               hwm_peak_increase_mib=None if hwm_after is None or rss_before is None else hwm_after - rss_before,
               # ru_maxrss before the path should equal the current RSS; if it is higher, the increase is a lower bound
               maxrss_baseline_excess_mib=None if rss_before is None else before - rss_before,
               time_s=statistics.median(times), times_s=times, threads=torch.get_num_threads())
    Path(spec["result_path"]).write_text(json.dumps(res))


def run_mem_child(mode: str, tmp: Path, seed: int, cfg: dict) -> tuple[dict, torch.Tensor]:
    spec = dict(mode=mode, L=cfg["topk_L"], d=cfg["topk_d"], topk=cfg["topk_k"], seed=seed,
                repeats=cfg["child_repeats"], out_path=str(tmp / f"{mode}.pt"),
                result_path=str(tmp / f"{mode}.json"))
    spec_path = tmp / f"{mode}_spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_mem-child", str(spec_path),
                           *_threads_args()],
                          cwd=str(REPO), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child '{mode}' failed (rc {proc.returncode}):\n{proc.stderr}")
    res = json.loads(Path(spec["result_path"]).read_text())
    out = torch.load(spec["out_path"])
    return res, out


def case_topk_memory(seed: int, cfg: dict) -> list[dict]:
    L, d, topk = cfg["topk_L"], cfg["topk_d"], cfg["topk_k"]
    with tempfile.TemporaryDirectory(prefix="bench_core_") as tmpdir:
        tmp = Path(tmpdir)
        log(f"  top-k child (L={L})")
        cand, out_c = run_mem_child("topk", tmp, seed, cfg)
        log(f"  dense child (L={L})")
        ref, out_r = run_mem_child("dense", tmp, seed, cfg)
    diff = maxdiff(out_c, out_r)
    close = bool(torch.allclose(out_c, out_r, rtol=0.0, atol=1e-5))
    rows_diff = int(((out_c - out_r).abs() > 1e-5).any(-1).sum())
    common = dict(shape=[1, 1, L, d], topk=topk, max_abs_diff=diff, allclose_atol_1e_5=close,
                  rows_differing=rows_diff, check_ok=close, cand_child=cand, ref_child=ref)
    mem = dict(case=f"top-k attend vs dense top-k, peak MiB, L={L} k={topk} d={d}", group="topk_memory",
               unit="MiB", cand=cand["peak_increase_mib"], ref=ref["peak_increase_mib"],
               ratio=cand["peak_increase_mib"] / ref["peak_increase_mib"], target=0.25, **common)
    tim = dict(case=f"top-k attend vs dense top-k, time, L={L} k={topk} d={d}", group="topk_time",
               cand_s=cand["time_s"], ref_s=ref["time_s"], ratio=cand["time_s"] / ref["time_s"], target=None,
               **{key: val for key, val in common.items() if key != "check_ok"})
    return [mem, tim]


# --------------------------------------------------------------------------- report


def finish_row(row: dict) -> dict:
    target = row.get("target")
    ok = True if target is None else row["ratio"] <= target
    ok = ok and row.get("check_ok", True)
    row["pass"] = ok if target is not None else None  # rows without a target are information only
    return row


def fmt_value(row: dict, side: str) -> str:
    if row.get("unit") == "MiB":
        return f"{row[side]:.1f} MiB"
    s = row[f"{side}_s"]
    return f"{s * 1e3:.3f} ms" if s < 1.0 else f"{s:.3f} s"


def markdown_table(rows: list[dict]) -> str:
    lines = ["| case | candidate | reference | ratio | target | result |", "|---|---|---|---|---|---|"]
    for r in rows:
        target = "—" if r["target"] is None else f"<= {r['target']:.2f}"
        if r["pass"] is None:
            result = "info"
        else:
            result = "PASS" if r["pass"] else "FAIL"
            if not r.get("check_ok", True):
                result += " (outputs differ)"
        lines.append(f"| {r['case']} | {fmt_value(r, 'cand')} | {fmt_value(r, 'ref')} | {r['ratio']:.3f} | "
                     f"{target} | {result} |")
    return "\n".join(lines)


def environment() -> dict:
    import entmax

    return dict(
        torch=torch.__version__, entmax=getattr(entmax, "__version__", "?"), python=platform.python_version(),
        numpy=__import__("numpy").__version__ if _has("numpy") else None,
        threads=torch.get_num_threads(), interop_threads=torch.get_num_interop_threads(),
        cpu_processor=platform.processor(), cpu_model=_cpu_model(), cpu_count=os.cpu_count(),
        platform=platform.platform(), machine=platform.machine(),
        mkl=torch.backends.mkl.is_available(), mkldnn=torch.backends.mkldnn.is_available(),
    )


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine makes the timings noisy."""
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def _has(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="small sizes, few repeats, timing rows in this process (smoke test, < 30 s)")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed for every input (default 0)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    p.add_argument("--strict", action="store_true", help="exit 1 if any target is missed")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--_mem-child", dest="mem_child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_case-child", dest="case_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.mem_child is not None:
        mem_child(args.mem_child)
        return 0
    if args.case_child is not None:
        case_child(args.case_child)
        return 0

    cfg = config(args.quick)
    t_start = time.perf_counter()
    env = environment()
    load_start = _loadavg()
    log(f"torch {env['torch']}, {env['threads']} threads, {env['cpu_count']} CPUs, "
        f"{'quick' if args.quick else 'full'} mode, seed {args.seed}")

    rows: list[dict] = []

    def add(row: dict) -> None:
        row = finish_row(row)
        rows.append(row)
        log(f"  ratio {row['ratio']:.3f} (target {row['target']}) -> "
            f"{'info' if row['pass'] is None else 'PASS' if row['pass'] else 'FAIL'}")

    plan = [("sdpa", shape, "case 1: attend vs SDPA, forward") for shape in cfg["attn_shapes"]]
    plan += [("weights", shape, "case 2: attend(return_weights=True) vs plain attention")
             for shape in cfg["attn_shapes"]]
    plan += [("sparsemax", shape, "case 3: sparsemax vs entmax.sparsemax, fwd+bwd")
             for shape in cfg["sparsemax_shapes"]]
    with tempfile.TemporaryDirectory(prefix="bench_core_") as tmpdir:
        for i, (name, shape, what) in enumerate(plan):
            log(f"{what}, shape {tuple(shape)}")
            add(run_case(name, shape, args.seed, cfg, Path(tmpdir), i))
        log(f"case 4: top-k attention memory, L={cfg['topk_L']}, k={cfg['topk_k']}")
        for row in case_topk_memory(args.seed, cfg):
            add(row)
        for j, shape in enumerate(cfg["attn_grad_shapes"]):
            log(f"info: attend vs SDPA, forward+backward, shape {tuple(shape)}")
            add(run_case("sdpa_grad", shape, args.seed, cfg, Path(tmpdir), len(plan) + j))

    total = time.perf_counter() - t_start
    table = markdown_table(rows)
    print(table)
    n_fail = sum(r["pass"] is False for r in rows)
    summary = f"{sum(r['pass'] is True for r in rows)} passed, {n_fail} failed, " \
              f"{sum(r['pass'] is None for r in rows)} info; {total:.1f} s"
    print(f"\n{env['torch']}, {env['threads']} threads, {env['cpu_model'] or env['cpu_processor']} "
          f"({env['cpu_count']} CPUs); {'quick' if args.quick else 'full'} mode; {summary}")
    if args.quick:
        print("\nQuick mode: a smoke test at small sizes with few repeats; its timings are indicative only.")
    load_end = _loadavg()
    busy = [x[0] for x in (load_start, load_end) if x is not None and x[0] > (os.cpu_count() or 1)]
    if busy:
        print(f"\nNote: 1-minute load average reached {max(busy):.1f} on {os.cpu_count()} CPUs: other work was "
              "running; times are inflated and ratios unreliable. Rerun on a quiet machine.")

    data = dict(
        benchmark="bench_core", created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        mode="quick" if args.quick else "full", seed=args.seed, config=cfg, environment=env,
        total_time_s=total, loadavg_start=load_start, loadavg_end=load_end,
        n_pass=sum(r["pass"] is True for r in rows), n_fail=n_fail, rows=rows, table_markdown=table,
    )
    write_json(args.out, data)
    log(f"wrote {args.out}; {summary}")
    return 1 if (args.strict and n_fail) else 0


if __name__ == "__main__":
    sys.exit(main())
