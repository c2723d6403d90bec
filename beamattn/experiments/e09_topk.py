"""Experiment 9: top-k sparse attention with sub-quadratic candidate search — time, memory, recall, error.

Claim: attending only to the top-k keys of each query cuts compute and memory (no quadratic blow-up)
while preserving most of the output.

Why not exact top-k: finding the exact top-k keys needs all ``L²`` scores, so exact top-k cannot cut
the compute by construction (its memory saving comes from query chunking, which chunked dense attention
has too). The fair test uses a top-k whose candidates are found sub-quadratically:
``attend(..., topk=32, topk_search="ivf")`` (:mod:`beamattn.core.topk_search`: k-means inverted file,
``ceil(sqrt(L))`` clusters, 16 probes, the Routing-Transformer / faiss-IVF idea), against three
controls that compute every score: PyTorch's fused SDPA, **chunked dense** attention (SDPA over chunks
of 512 queries: linear memory, quadratic time) and exact top-k (``attend(topk=32)``, chunked).

(a) Wall time of one call ``[L, 64]`` against ``L`` on one thread, methods interleaved per round (so
    that load from other processes hits them alike); the growth exponent is the log-log slope over
    the three largest ``L`` (2 = quadratic).
(b) Peak memory: the rise of the peak resident set size (``VmHWM`` reset through
    ``/proc/self/clear_refs``) in a fresh one-thread subprocess with a fixed ``malloc`` mmap threshold.
(c) Recall@k of the true top-k and the relative L2 output error against dense attention at
    ``L = ERR_L``, for the number of probes 1…all, on two inputs: **peaked** (keys drawn around
    ``GROUPS`` centres, as real keys cluster; each query has 4 planted keys scoring ``ALPHA`` std above
    the rest) and **random** ``q, k ~ N(0, I)`` (flat attention: no top-k preserves that output).
(d) Output error at matched compute: IVF against attention over a uniformly random subset of keys of
    the size of IVF's candidate set (the naive sub-quadratic approximation).

Criteria (peaked inputs, largest ``L``): time exponent ≤ ``EXP_MAX``; time ≤ ``TIME_RATIO_MAX`` × chunked
dense; peak memory ≤ ``MEM_RATIO_MAX`` × SDPA; recall@k ≥ ``RECALL_MIN``; output error ≤ ``ERR_MAX``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from ..core import attend
from ..core.topk_search import IVFSearch, ivf_topk
from ..io import save_figure_atomic
from .registry import Outcome, at_least, at_most, experiment

D = 64  # head size of q, k, v
TOPK = 32
CHUNK = 512  # queries per chunk in chunked dense attention
PROBES = 16  # IVF clusters searched per query (of ceil(sqrt(L)))
ERR_L, ERR_L_SMALL = 4096, 1024  # length of the recall / error measurements
GROUPS = 32  # centres of the clustered keys
SPREAD = 1.0  # within-group std of the keys (centres ~ N(0, I))
PLANTED, ALPHA = 4, 16.0  # relevant keys per query and their score lift (top-32 mass ~0.96 at L=4096)
EXP_MAX = 1.7  # IVF time growth exponent (2 = quadratic)
TIME_RATIO_MAX = 0.5  # IVF top-k at most half the time of chunked dense at the largest L
MEM_RATIO_MAX = 0.25  # IVF top-k peak memory at most this fraction of SDPA's at the largest L
RECALL_MIN = 0.9  # recall@k of the true top-k on peaked inputs
ERR_MAX = 0.10  # relative L2 output error on peaked inputs


def _chunked_dense(q, k, v):
    """Dense attention over chunks of CHUNK queries (SDPA per chunk): exact, linear memory, quadratic time."""
    return torch.cat([attend(q[..., s:s + CHUNK, :], k, v) for s in range(0, q.shape[-2], CHUNK)], dim=-2)


def _ivf(probes: int | None = None, clusters: int | None = None):
    search = IVFSearch(clusters=clusters, probes=PROBES if probes is None else probes)
    return lambda q, k, v: attend(q, k, v, topk=TOPK, topk_search=search)


METHODS = {
    "dense (fused SDPA)": lambda q, k, v: attend(q, k, v),
    "dense (chunked)": _chunked_dense,
    f"exact top-{TOPK}": lambda q, k, v: attend(q, k, v, topk=TOPK),
    f"IVF top-{TOPK}": _ivf(),
}
SDPA, CHUNKED, EXACT, IVF = METHODS

# Runs in a fresh interpreter: only torch and beamattn, one thread, fixed mmap threshold.
_MEMORY_SCRIPT = r"""
import ctypes, json, sys, torch
from beamattn.experiments.e09_topk import METHODS
torch.set_num_threads(1)
libc = ctypes.CDLL("libc.so.6")
lengths, d, seed = json.loads(sys.argv[1])
def rss():
    out = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            key, val = line.split(":")
            out[key] = int(val.split()[0]) * 1024
    return out
g = torch.Generator().manual_seed(seed)
res = {name: [] for name in METHODS}
for i, L in enumerate(lengths):
    q, k, v = (torch.randn(L, d, generator=g) for _ in range(3))
    for name, fn in METHODS.items():
        if i == 0:
            fn(q, k, v)  # warm-up: one-time initialisation is not the call's memory
        libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        base = rss()["VmRSS"]
        out = fn(q, k, v)
        res[name].append(rss()["VmHWM"] - base)
        del out
print(json.dumps(res))
"""


@contextmanager
def _one_thread():
    """One intra-op thread: steadier timings, and no spinning against other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=4)
def _measure_memory(lengths: tuple[int, ...]) -> dict | None:
    """Peak RSS rise (bytes) per method and length, in a fresh subprocess; None if unavailable.

    The peak memory of a call depends on the shapes, not on the numbers, so it is measured once per process
    for each set of lengths (a subprocess costs a fresh torch import) and shared by the replicates."""
    if not (sys.platform.startswith("linux") and os.path.exists("/proc/self/clear_refs")):
        return None
    pkg_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": pkg_root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, json.dumps([list(lengths), D, 0])],
                              capture_output=True, text=True, env=env, timeout=300, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        return None


def _time_calls(lengths: list[int], gen: torch.Generator, small: bool) -> dict[str, list[float | None]]:
    """Best-of-rounds wall time (s) per method and length, one thread, methods interleaved per round.
    SDPA and exact top-k (quadratic memory or time, controls only) stop at 8192 tokens."""
    times: dict[str, list[float | None]] = {name: [] for name in METHODS}
    with _one_thread():
        for i, L in enumerate(lengths):
            q, k, v = (torch.randn(L, D, generator=gen) for _ in range(3))
            active = {n: f for n, f in METHODS.items() if n in (CHUNKED, IVF) or L <= 8192}
            if i == 0:
                for fn in active.values():
                    fn(q, k, v)  # warm-up: one-time initialisation
            rounds = 3 if L <= 1024 else 2 if small or L <= 4096 else 1
            best = {name: math.inf for name in active}
            for _ in range(rounds):
                for name, fn in active.items():
                    t0 = time.perf_counter()
                    fn(q, k, v)
                    best[name] = min(best[name], time.perf_counter() - t0)
            for name in METHODS:
                times[name].append(best.get(name))
    return times


def _exponent(lengths: list[int], values: list[float | None]) -> float:
    """Slope of log(value) against log(L) over the three largest lengths that have a value (2 = quadratic)."""
    pts = [(L, v) for L, v in zip(lengths, values) if v is not None][-3:]
    x = torch.tensor([p[0] for p in pts], dtype=torch.float64).log()
    y = torch.tensor([max(p[1], 1e-12) for p in pts], dtype=torch.float64).log()
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def make_inputs(L: int, kind: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``q, k, v [L, D]``: ``"random"`` (all N(0, I)) or ``"peaked"`` (keys around GROUPS centres; each query
    has PLANTED relevant keys whose scaled score is ~ALPHA std above the rest)."""
    v = torch.randn(L, D, generator=gen)
    if kind == "random":
        return torch.randn(L, D, generator=gen), torch.randn(L, D, generator=gen), v
    centres = torch.randn(GROUPS, D, generator=gen)  # [G, D]
    group = torch.randint(0, GROUPS, (L,), generator=gen)
    k = (centres[group] + SPREAD * torch.randn(L, D, generator=gen)) / math.sqrt(1 + SPREAD ** 2)  # [L, D], unit var
    rel = torch.stack([torch.randperm(L, generator=gen)[:PLANTED] for _ in range(L)])  # [L, PLANTED]
    q = ALPHA / math.sqrt(D) * k[rel].sum(1) + torch.randn(L, D, generator=gen)  # [L, D]
    return q, k, v


def _recall(idx: torch.Tensor, true: torch.Tensor) -> float:
    """Mean fraction of each query's true top-k indices ``true [L, k]`` found in ``idx [L, k]``."""
    hit = (idx.unsqueeze(-1) == true.unsqueeze(-2)).any(-2)  # [L, k]: true index j found
    return hit.float().mean().item()


def _accuracy(L: int, gen: torch.Generator, small: bool) -> dict:
    """Recall@k and relative output error vs the number of probes, and the matched-compute random subset."""
    clusters = math.ceil(math.sqrt(L))
    probes = sorted({1, 2, 4, PROBES, 16, 32, clusters} & set(range(1, clusters + 1)))
    out = {"L": L, "clusters": clusters, "probes": probes}
    for kind in ("peaked", "random"):
        q, k, v = make_inputs(L, kind, gen)
        dense, w = attend(q, k, v, return_weights=True)
        true = w.topk(TOPK, dim=-1).indices  # [L, k]
        exact = attend(q, k, v, topk=TOPK)
        rel = lambda o: ((o - dense).norm() / dense.norm()).item()  # noqa: E731
        rows = {"recall": [], "rel_error": [], "time_s": [], "candidates_per_query": []}
        with _one_thread():
            for p in probes:
                search = IVFSearch(probes=p)
                t0 = time.perf_counter()
                o = attend(q, k, v, topk=TOPK, topk_search=search)
                rows["time_s"].append(time.perf_counter() - t0)
                rows["rel_error"].append(rel(o))
                rows["recall"].append(_recall(ivf_topk(q, k, TOPK, search), true))
                rows["candidates_per_query"].append(min(L, p * L / clusters))
            # matched compute: IVF at PROBES scores ~PROBES·L/c keys + c centroids per query (plus k-means);
            # the random subset scores as many keys per query, chosen once, for every query.
            m = min(L, int(PROBES * L / clusters + clusters))
            sub = torch.randperm(L, generator=gen)[:m]
            t0 = time.perf_counter()
            o_sub = attend(q, k[sub], v[sub])
            t_sub = time.perf_counter() - t0
        i = probes.index(PROBES)
        out[kind] = {**rows, "mass_in_true_topk": w.topk(TOPK, dim=-1).values.sum(-1).mean().item(),
                     "exact_topk_rel_error": rel(exact), "random_subset_keys": m,
                     "random_subset_rel_error": rel(o_sub), "random_subset_time_s": t_sub,
                     "ivf_recall": rows["recall"][i], "ivf_rel_error": rows["rel_error"][i],
                     "ivf_time_s": rows["time_s"][i]}
    return out


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    lengths = res["lengths"]
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.6))
    colors = {name: f"C{i}" for i, name in enumerate(METHODS)}
    ax = axes[0]
    for name, t in res["time_s"].items():
        pts = [(L, x) for L, x in zip(lengths, t) if x is not None]
        ax.plot([p[0] for p in pts], [p[1] * 1e3 for p in pts], "o-", color=colors[name],
                label=f"{name} (slope {res['time_growth_exponent'][name]:.2f})")
    ref = res["time_s"][CHUNKED][-1] * 1e3
    for e, ls in ((2, ":"), (1.5, "-.")):
        ax.plot(lengths, [ref * (L / lengths[-1]) ** e for L in lengths], ls, color="gray", label=f"∝ L^{e:g}")
    ax.set_ylabel("wall time per call (ms, best of rounds)")
    ax.set_title(f"(a) time per call, d={D}, 1 CPU thread")

    ax = axes[1]
    mib = 1 / 2**20
    if res["peak_rss_bytes"] is not None:
        for name, m in res["peak_rss_bytes"].items():
            ax.plot(res["memory_lengths"], [max(x, 1) * mib for x in m], "o-", color=colors[name], label=name)
    ax.set_ylabel("peak-RSS rise of the call (MiB)\n(1 thread, fresh process)")
    ax.set_title("(b) peak memory")
    for ax_, xs in ((axes[0], lengths), (axes[1], res["memory_lengths"])):
        ax_.set_xscale("log", base=2)
        ax_.set_yscale("log")
        ax_.set_xlabel("sequence length L (tokens)")
        ax_.set_xticks(xs)
        ax_.set_xticklabels([str(x) for x in xs])
        ax_.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())

    acc = res["accuracy"]
    ax = axes[2]
    for kind, c in (("peaked", "C4"), ("random", "C5")):
        r = acc[kind]
        ax.plot([t * 1e3 for t in r["time_s"]], r["rel_error"], "o-", color=c, label=f"IVF, probes {acc['probes']} ({kind})")
        ax.plot(r["random_subset_time_s"] * 1e3, r["random_subset_rel_error"], "s", color=c, ms=9,
                label=f"random subset of {r['random_subset_keys']} keys ({kind})")
        ax.axhline(r["exact_topk_rel_error"], color=c, ls="--", lw=0.9, label=f"exact top-{TOPK} ({kind})")
    ax.axhline(ERR_MAX, color="gray", ls=":", label=f"{ERR_MAX:.0%} error")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"wall time per call at L={acc['L']} (ms)")
    ax.set_ylabel("relative L2 output error vs dense")
    ax.set_title(f"(c) error vs time, matched-compute control ({acc['clusters']} clusters)")

    ax = axes[3]
    for kind, c in (("peaked", "C4"), ("random", "C5")):
        ax.plot(acc["probes"], acc[kind]["recall"], "o-", color=c, label=f"{kind} (true top-{TOPK} mass "
                f"{acc[kind]['mass_in_true_topk']:.2f})")
    ax.axhline(RECALL_MIN, color="gray", ls=":", label=f"recall {RECALL_MIN}")
    ax.axvline(PROBES, color="gray", ls="--", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"probes (clusters searched per query, of {acc['clusters']})")
    ax.set_ylabel(f"recall@{TOPK} of the true top-{TOPK}")
    ax.set_title("(d) recall of the IVF search")
    for a in axes:
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle(f"Top-{TOPK} attention with sub-quadratic (IVF) candidate search vs dense controls "
                 "(beamattn.core.attend)")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


@experiment("topk-sparse-attention", "Top-k sparse attention: cost and approximation error",
            "Top-k sparse attention cuts compute and memory (no quadratic blow-up) while preserving most of "
            "the output.", order=9, seeds=5)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    gen = torch.Generator().manual_seed(seed)
    lengths = [256, 512, 1024, 2048] if small else [512, 1024, 2048, 4096, 8192]
    times = _time_calls(lengths, gen, small)
    mem_lengths = lengths[-2:]
    peak = _measure_memory(tuple(mem_lengths))
    acc = _accuracy(ERR_L_SMALL if small else ERR_L, gen, small)
    growth = {name: _exponent(lengths, t) for name, t in times.items()}
    res = {"lengths": lengths, "d": D, "topk": TOPK, "chunk": CHUNK, "probes": PROBES, "threads": 1,
           "time_s": times, "time_growth_exponent": growth, "memory_lengths": mem_lengths, "peak_rss_bytes": peak,
           "accuracy": acc,
           "inputs": {"groups": GROUPS, "spread": SPREAD, "planted": PLANTED, "alpha": ALPHA}}

    L = lengths[-1]
    time_ratio = times[IVF][-1] / times[CHUNKED][-1]
    mem_ratio = peak[IVF][-1] / max(1, peak[SDPA][-1]) if peak is not None else None
    pk, rd = acc["peaked"], acc["random"]
    criteria = [at_most(f"IVF top-{TOPK}: time growth exponent (3 largest L)", growth[IVF], EXP_MAX),
                at_most(f"IVF top-{TOPK} time / chunked dense at L={L}", time_ratio, TIME_RATIO_MAX),
                at_least(f"peaked inputs: IVF recall@{TOPK} at L={acc['L']}", pk["ivf_recall"], RECALL_MIN),
                at_most(f"peaked inputs: IVF relative output error at L={acc['L']}", pk["ivf_rel_error"], ERR_MAX)]
    if mem_ratio is not None:
        criteria.insert(2, at_most(f"IVF top-{TOPK} peak memory / SDPA at L={mem_lengths[-1]}", mem_ratio,
                                   MEM_RATIO_MAX))
    supported = all(c.holds() for c in criteria)
    res["summary"] = {"L_max": L, "time_ratio_ivf_over_chunked": time_ratio,
                      "time_ratio_ivf_over_sdpa_at_8192": (times[IVF][lengths.index(8192)] /
                                                           times[SDPA][lengths.index(8192)]) if 8192 in lengths else None,
                      "memory_ratio_ivf_over_sdpa": mem_ratio, "time_growth_exponent": growth,
                      "peaked": {k: pk[k] for k in ("ivf_recall", "ivf_rel_error", "exact_topk_rel_error",
                                                    "random_subset_rel_error", "mass_in_true_topk")},
                      "random": {k: rd[k] for k in ("ivf_recall", "ivf_rel_error", "exact_topk_rel_error",
                                                    "random_subset_rel_error", "mass_in_true_topk")},
                      "criteria": {"exponent_max": EXP_MAX, "time_ratio_max": TIME_RATIO_MAX,
                                   "memory_ratio_max": MEM_RATIO_MAX, "recall_min": RECALL_MIN, "rel_error_max": ERR_MAX}}
    _plot(res, out_dir / "topk.png")

    mib = 2**20
    mem_txt = (f"peak memory at L={mem_lengths[-1]} {peak[IVF][-1] / mib:.1f} MiB vs {peak[SDPA][-1] / mib:.1f} MiB "
               f"SDPA and {peak[CHUNKED][-1] / mib:.1f} MiB chunked dense" if peak is not None else
               "peak memory not measured (no /proc/self/clear_refs)")
    verdict = (
        f"{'Supported' if supported else 'Not supported'}: IVF top-{TOPK} ({PROBES} probes of ceil(sqrt(L)) "
        f"clusters) takes {times[IVF][-1] * 1e3:.0f} ms at L={L} vs {times[CHUNKED][-1] * 1e3:.0f} ms chunked dense "
        f"(ratio {time_ratio:.2f}); time growth exponents IVF {growth[IVF]:.2f}, chunked dense {growth[CHUNKED]:.2f}, "
        f"SDPA {growth[SDPA]:.2f}, exact top-k {growth[EXACT]:.2f} (all L² scores); {mem_txt}. On peaked inputs at "
        f"L={acc['L']} IVF finds {pk['ivf_recall']:.1%} of the true top-{TOPK} with output error "
        f"{pk['ivf_rel_error']:.3f} (exact top-k {pk['exact_topk_rel_error']:.3f}; a random subset of "
        f"{pk['random_subset_keys']} keys at matched compute {pk['random_subset_rel_error']:.3f}). On random inputs "
        f"(true top-{TOPK} mass {rd['mass_in_true_topk']:.2f}) no top-k preserves the output: IVF error "
        f"{rd['ivf_rel_error']:.2f}, exact top-k {rd['exact_topk_rel_error']:.2f}, recall {rd['ivf_recall']:.2f}."
    )
    return Outcome(numbers=res, verdict=verdict, supported=supported, figures=["topk.png"], criteria=criteria)
