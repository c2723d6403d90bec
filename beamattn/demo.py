"""The attention-core demo: ``beamattn demo --out DIR``.

Two small, fully seeded experiments on :func:`beamattn.core.attend`:

1. Retrieval among distractors: one query, one matching key whose scaled score
   stands ``margin`` above unit-variance distractor scores, and ``n`` distractors.
   For softmax, sparsemax, 1.5-entmax and top-8 softmax it measures the weight
   on the matching key, the entropy (nats), the number of keys with non-zero
   weight, and whether the output is nearest to the matching value.
2. Score scaling: unit-variance queries and keys of size ``d``. Unscaled dot
   products have variance ``d``; the softmax saturates and its gradient
   vanishes; dividing by ``sqrt(d)`` keeps the variance at 1.

Writes ``DIR/demo.json`` and ``DIR/figures/*.png``; prints tables.
"""

from __future__ import annotations

import math
import platform
import sys
from pathlib import Path

import torch

from . import __version__
from .core import attend
from .core.diagnostics import attention_entropy
from .device import describe_device
from .io import save_figure_atomic, write_json_atomic
from .outdir import StagedDir, check_out
from .seeds import check_seed

NORMALIZERS = {
    "softmax": {"normalizer": "softmax"},
    "sparsemax": {"normalizer": "sparsemax"},
    "entmax15": {"normalizer": "entmax15"},
    "top-8 softmax": {"normalizer": "softmax", "topk": 8},
}
DISTRACTORS = (1, 4, 16, 64, 256, 1024, 4096)
DIMS = (4, 16, 64, 256, 1024)


def distractor_experiment(gen: torch.Generator, trials: int, d: int = 32, margin: float = 4.0,
                          device: torch.device | str = "cpu") -> dict:
    """Weight on the matching key, entropy, active keys and accuracy against the number of distractors.

    The data are drawn from ``gen`` (a CPU generator) and moved to ``device``, where attention runs.
    """
    rows: dict[str, dict[str, list[float]]] = {name: {"weight": [], "entropy": [], "active": [], "accuracy": []}
                                               for name in NORMALIZERS}
    for n in DISTRACTORS:
        q = torch.randn(trials, 1, d, generator=gen)  # [T, 1, d]
        k = torch.randn(trials, n + 1, d, generator=gen)  # [T, n+1, d]; key 0 is the match
        # Put the match's scaled score `margin` above the distractors' (unit variance) scores.
        q_dir = q[:, 0] / q[:, 0].norm(dim=-1, keepdim=True)  # [T, d]
        k[:, 0] = k[:, 0] - (k[:, 0] * q_dir).sum(-1, keepdim=True) * q_dir  # remove the q component
        k[:, 0] = k[:, 0] + q_dir * (margin * math.sqrt(d) / q[:, 0].norm(dim=-1, keepdim=True))
        v = torch.randn(trials, n + 1, 16, generator=gen)  # [T, n+1, 16]
        q, k, v = q.to(device), k.to(device), v.to(device)
        for name, kw in NORMALIZERS.items():
            kw = dict(kw)
            if "topk" in kw:
                kw["topk"] = min(kw["topk"], n + 1)
            out, w = attend(q, k, v, return_weights=True, **kw)  # [T, 1, 16], [T, 1, n+1]
            nearest = torch.cdist(out, v).argmin(-1).squeeze(-1)  # [T]
            rows[name]["weight"].append(w[:, 0, 0].mean().item())
            rows[name]["entropy"].append(attention_entropy(w).mean().item())
            rows[name]["active"].append((w > 0).sum(-1).float().mean().item())
            rows[name]["accuracy"].append((nearest == 0).float().mean().item())
    return {"distractors": list(DISTRACTORS), "d": d, "margin": margin, "trials": trials, "by_normalizer": rows}


def scaling_experiment(gen: torch.Generator, trials: int, num_keys: int = 64,
                       device: torch.device | str = "cpu") -> dict:
    """Score variance, softmax saturation and gradient size against the key size d (computed on ``device``)."""
    out: dict[str, list[float]] = {"var_unscaled": [], "var_scaled": [], "maxw_unscaled": [], "maxw_scaled": [],
                                   "grad_unscaled": [], "grad_scaled": []}
    for d in DIMS:
        q = torch.randn(trials, 1, d, generator=gen).to(device)
        k = torch.randn(trials, num_keys, d, generator=gen).to(device)
        raw = (q @ k.transpose(-2, -1)).squeeze(1)  # [T, Lk]
        for tag, s in (("unscaled", raw), ("scaled", raw / math.sqrt(d))):
            s = s.clone().requires_grad_()
            w = torch.softmax(s, -1)
            # Gradient of the weight of a random key w.r.t. the scores: vanishes when the softmax saturates.
            w[:, 0].sum().backward()
            out[f"var_{tag}"].append(s.detach().var().item())
            out[f"maxw_{tag}"].append(w.detach().max(-1).values.mean().item())
            out[f"grad_{tag}"].append(s.grad.norm(dim=-1).mean().item())
    return {"d": list(DIMS), "num_keys": num_keys, **out}


def example_weights(gen: torch.Generator, d: int = 32, lq: int = 6, lk: int = 24,
                    device: torch.device | str = "cpu") -> dict:
    """Weights ``[lq, lk]`` (as lists) of softmax, 1.5-entmax and sparsemax on one random example."""
    q = (torch.randn(lq, d, generator=gen) * 1.5).to(device)
    k = torch.randn(lk, d, generator=gen).to(device)
    v = torch.randn(lk, 4, generator=gen).to(device)
    return {name: attend(q, k, v, normalizer=name, return_weights=True)[1].cpu().tolist()
            for name in ("softmax", "entmax15", "sparsemax")}


def _plots(res: dict, fig_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    dis = res["distractors"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for name, r in dis["by_normalizer"].items():
        axes[0].plot(dis["distractors"], r["weight"], marker="o", label=name)
        axes[1].plot(dis["distractors"], r["entropy"], marker="o", label=name)
        axes[2].plot(dis["distractors"], r["active"], marker="o", label=name)
    for ax, ylabel in zip(axes, ("mean weight on the matching key", "attention entropy (nats)",
                                 "keys with non-zero weight")):
        ax.set_xscale("log")
        ax.set_xlabel("number of distractor keys")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[2].set_yscale("log")
    axes[0].legend()
    fig.suptitle(f"Retrieval among distractors (d={dis['d']}, match {dis['margin']} std above, "
                 f"{dis['trials']} trials per point)")
    paths.append(str(save_figure_atomic(fig, fig_dir / "distractors.png")))
    plt.close(fig)

    sc = res["scaling"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for tag, style in (("unscaled", "o-"), ("scaled", "s--")):
        label = "q·k" if tag == "unscaled" else "q·k / √d"
        axes[0].plot(sc["d"], sc[f"var_{tag}"], style, label=label)
        axes[1].plot(sc["d"], sc[f"maxw_{tag}"], style, label=label)
        axes[2].plot(sc["d"], sc[f"grad_{tag}"], style, label=label)
    axes[0].plot(sc["d"], sc["d"], ":", color="gray", label="variance = d")
    axes[0].set_yscale("log")
    axes[2].set_yscale("log")
    for ax, ylabel in zip(axes, ("score variance", "largest softmax weight (mean)", "‖∂w₀/∂s‖ (mean)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("key size d")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"Why attention divides by √d ({sc['num_keys']} keys, unit-variance q and k)")
    paths.append(str(save_figure_atomic(fig, fig_dir / "scaling.png")))
    plt.close(fig)

    ex = res["example_weights"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.2), sharey=True)
    for ax, (name, w) in zip(axes, ex.items()):
        im = ax.imshow(w, aspect="auto", cmap="viridis", vmin=0, vmax=1)
        zeros = sum(x == 0 for row in w for x in row)
        ax.set_title(f"{name}: {zeros} exact zeros")
        ax.set_xlabel("key index")
    axes[0].set_ylabel("query index")
    fig.colorbar(im, ax=axes, label="attention weight")
    paths.append(str(save_figure_atomic(fig, fig_dir / "weights.png")))
    plt.close(fig)
    return paths


def run_demo(out_dir: str | Path, seed: int = 0, trials: int = 400, device: torch.device | str | None = None,
             force: bool = False) -> dict:
    """Run both experiments, print tables, write ``demo.json`` and figures. Returns the results.

    Random numbers come from one CPU generator (the same data on every device); attention runs on
    ``device`` (default CPU). ``out_dir`` is checked first and replaced as a whole, when complete, only
    with ``force`` if it already holds results.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"demo: argument 'trials' = {trials!r}; expected an int >= 1")
    check_seed(seed)
    check_out(out_dir, kind="dir", force=force)
    device = torch.device("cpu" if device is None else device)
    out_dir = Path(out_dir)
    gen = torch.Generator().manual_seed(seed)
    steps = ("retrieval among distractors", "score scaling", "example weights", "figures")
    print(f"[1/{len(steps)}] {steps[0]} ({len(DISTRACTORS)} sizes x {len(NORMALIZERS)} normalizers)", file=sys.stderr)
    res = {"seed": seed, "device": describe_device(device),
           "versions": {"beamattn": __version__, "torch": torch.__version__, "python": platform.python_version()}}
    res["distractors"] = distractor_experiment(gen, trials, device=device)
    print(f"[2/{len(steps)}] {steps[1]}", file=sys.stderr)
    res["scaling"] = scaling_experiment(gen, trials, device=device)
    print(f"[3/{len(steps)}] {steps[2]}", file=sys.stderr)
    res["example_weights"] = example_weights(gen, device=device)
    print(f"[4/{len(steps)}] {steps[3]}", file=sys.stderr)
    with StagedDir(out_dir, force=force, command="demo") as stage:  # replaces out_dir when complete
        # Paths as they will be once the folder is in place.
        res["figures"] = [str(out_dir / "figures" / Path(p).name) for p in _plots(res, stage / "figures")]
        write_json_atomic(stage / "demo.json", res)

    dis = res["distractors"]
    print(f"\nRetrieval among distractors: weight on the match / entropy (nats) / active keys / accuracy "
          f"(seed {seed}, {trials} trials)")
    print("| distractors | " + " | ".join(NORMALIZERS) + " |")
    print("|---:|" + "---|" * len(NORMALIZERS))
    for i, n in enumerate(dis["distractors"]):
        cells = []
        for name in NORMALIZERS:
            r = dis["by_normalizer"][name]
            cells.append(f"{r['weight'][i]:.2f} / {r['entropy'][i]:.2f} / {r['active'][i]:.1f} / {r['accuracy'][i]:.2f}")
        print(f"| {n} | " + " | ".join(cells) + " |")
    sc = res["scaling"]
    print("\nScore scaling: variance and largest softmax weight, unscaled vs scaled by 1/sqrt(d)")
    print("| d | var q·k | var q·k/√d | max w (unscaled) | max w (scaled) | grad (unscaled) | grad (scaled) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for i, d in enumerate(sc["d"]):
        print(f"| {d} | {sc['var_unscaled'][i]:.1f} | {sc['var_scaled'][i]:.2f} | {sc['maxw_unscaled'][i]:.3f} | "
              f"{sc['maxw_scaled'][i]:.3f} | {sc['grad_unscaled'][i]:.2e} | {sc['grad_scaled'][i]:.2e} |")
    print(f"\nwrote {out_dir / 'demo.json'} and {len(res['figures'])} figures in {out_dir / 'figures'}")
    return res
