"""Experiment 2: heads of different sizes under one shared score scale.

``MultiHeadAttention(head_dims=[8, 16, 64, 128])`` with ``shared_scale = 1/sqrt(8)`` (the scale of the
smallest head, for every head) against the default, where each head divides by ``sqrt(d_h)`` of its
own size. All heads get the same value size (32), so only the query/key size differs between heads.

Measured: each head's share of the gradient norm of its query/key projection slices
(``q_proj``/``k_proj`` rows of that head, weights and biases), and each head's attention entropy,

1. at initialisation (the module's own init) on unit-variance random inputs, a regression loss
   against random targets, over several seeds and minibatches;
2. during a short training in which the module learns to reproduce a fixed random teacher
   (same shape, default scaling) on random inputs (Adam, lr 1e-3).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..core import MultiHeadAttention, attention_entropy
from ..io import save_figure_atomic
from .registry import Outcome, at_least, at_most, experiment

CLAIM = ("With heads of different sizes under one shared scale, the larger heads have larger dot products and "
         "dominate the gradient; scaling each head by 1/sqrt(d_h) of its own size restores the balance.")

HEAD_DIMS = [8, 16, 64, 128]
VALUE_DIM = 32
EMBED = 64
SHARED_SCALE = 1 / math.sqrt(min(HEAD_DIMS))
# Margins: the largest head's gradient share must exceed DOMINANCE x the smallest head's under the shared
# scale, while with per-head scales the ratio must stay within [1/BALANCED, BALANCED].
DOMINANCE = 2.0
BALANCED = 2.0
SETTINGS = {"shared": SHARED_SCALE, "per_head": None}


def _qk_grad_norms(m: MultiHeadAttention) -> list[float]:
    """Frobenius norm of the gradient of each head's q_proj and k_proj slices (weights and biases)."""
    out = []
    for off, d in zip(m._qk_offsets, m.head_dims):
        sq = sum(float((p.grad[off:off + d] ** 2).sum())
                 for p in (m.q_proj.weight, m.k_proj.weight, m.q_proj.bias, m.k_proj.bias))
        out.append(math.sqrt(sq))
    return out


def _make(shared: float | None, seed: int) -> MultiHeadAttention:
    torch.manual_seed(seed)
    return MultiHeadAttention(EMBED, head_dims=HEAD_DIMS, value_head_dims=[VALUE_DIM] * len(HEAD_DIMS),
                              shared_scale=shared)


def _at_init(shared: float | None, seeds: list[int], batches: int, batch: int, length: int) -> dict:
    shares, ents = [], []
    for s in seeds:
        m = _make(shared, s)
        gen = torch.Generator().manual_seed(10_000 + s)
        for _ in range(batches):
            x = torch.randn(batch, length, EMBED, generator=gen)  # [B, L, E]
            target = torch.randn(batch, length, EMBED, generator=gen)
            m.zero_grad()
            out, w = m(x, need_weights=True)  # [B, L, E], [B, H, L, L]
            ((out - target) ** 2).mean().backward()
            n = _qk_grad_norms(m)
            shares.append([v / sum(n) for v in n])
            ents.append(attention_entropy(w.detach()).mean(dim=(0, 2)).tolist())  # [H]
    sh, en = np.asarray(shares), np.asarray(ents)
    return {"grad_share_mean": sh.mean(0).tolist(), "grad_share_std": sh.std(0).tolist(),
            "entropy_mean": en.mean(0).tolist(), "entropy_std": en.std(0).tolist(),
            "largest_over_smallest": float(sh[:, -1].mean() / sh[:, 0].mean()), "samples": len(shares)}


def _training(shared: float | None, seed: int, steps: int, batch: int, length: int) -> dict:
    teacher = _make(None, 999)
    student = _make(shared, seed)
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(20_000 + seed)
    losses, shares = [], []
    for _ in range(steps):
        x = torch.randn(batch, length, EMBED, generator=gen)
        with torch.no_grad():
            target, _ = teacher(x)
        out, _ = student(x)
        loss = ((out - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        n = _qk_grad_norms(student)
        shares.append([v / sum(n) for v in n])
        losses.append(loss.item())
        opt.step()
    with torch.no_grad():
        _, w = student(torch.randn(batch, length, EMBED, generator=gen), need_weights=True)
    sh = np.asarray(shares)
    return {"loss": losses, "grad_share": sh.tolist(), "grad_share_mean": sh.mean(0).tolist(),
            "largest_over_smallest": float(sh[:, -1].mean() / sh[:, 0].mean()),
            "final_entropy": attention_entropy(w).mean(dim=(0, 2)).tolist(),
            "final_loss": float(np.mean(losses[-max(1, steps // 10):]))}


def _figure(init: dict, train: dict, steps: int, path: Path, n_samples: int, length: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"shared": f"shared scale 1/√{min(HEAD_DIMS)} for every head",
              "per_head": "per-head scale 1/√d_h (default)"}
    colors = {"shared": "C3", "per_head": "C0"}
    x = np.arange(len(HEAD_DIMS))
    wbar = 0.38
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for i, key in enumerate(SETTINGS):
        r = init[key]
        axes[0].bar(x + (i - 0.5) * wbar, r["grad_share_mean"], wbar, yerr=r["grad_share_std"], capsize=3,
                    color=colors[key], label=labels[key])
        axes[1].bar(x + (i - 0.5) * wbar, r["entropy_mean"], wbar, yerr=r["entropy_std"], capsize=3,
                    color=colors[key], label=labels[key])
    axes[0].axhline(1 / len(HEAD_DIMS), color="gray", ls=":", label="equal shares (1/H)")
    axes[1].axhline(math.log(length), color="gray", ls=":", label=f"uniform weights: ln {length}")
    axes[0].set_ylabel("share of the Q/K-projection gradient norm")
    axes[0].set_title(f"(a) Gradient share per head at init (±1 std, {n_samples} batches)")
    axes[1].set_ylabel("attention entropy (nats)")
    axes[1].set_title("(b) Attention entropy per head at init")
    for ax in axes[:2]:
        ax.set_xticks(x, [f"head {h}\nd_h = {d}" for h, d in enumerate(HEAD_DIMS)])
        ax.set_xlabel("head (query/key size d_h; value size 32 for all)")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[1].set_ylim(0, max(max(init[k]["entropy_mean"]) for k in SETTINGS) * 1.35)
    axes[0].set_ylim(0, max(max(init[k]["grad_share_mean"]) for k in SETTINGS) * 1.35)

    ax = axes[2]
    k = 10
    for key in SETTINGS:
        sh = np.asarray(train[key]["grad_share"])
        for h, ls in ((0, ":"), (len(HEAD_DIMS) - 1, "-")):
            sm = np.convolve(sh[:, h], np.ones(k) / k, "valid")
            ax.plot(np.arange(k, len(sh) + 1), sm, ls, color=colors[key],
                    label=f"{'shared' if key == 'shared' else 'per-head'}: head d_h = {HEAD_DIMS[h]}")
    ax.axhline(1 / len(HEAD_DIMS), color="gray", ls=":", lw=1, label="1/H")
    ax.set_xlabel(f"training step (fit a random teacher, Adam lr 1e-3, {steps} steps)")
    ax.set_ylabel(f"gradient share ({k}-step mean)")
    ax.set_title("(c) Largest vs smallest head during training")
    ax.set_ylim(0, 0.75)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"Heads of sizes {HEAD_DIMS} (embed {EMBED}): one shared score scale vs per-head scales")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


@experiment("shared-scale-heads", "Heads of different sizes under one shared scale", CLAIM, order=2)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    seeds = [seed + i for i in range(2 if small else 4)]
    batches, batch, length = (4, 8, 32) if small else (16, 16, 32)
    steps = 30 if small else 200
    init = {key: _at_init(sc, seeds, batches, batch, length) for key, sc in SETTINGS.items()}
    train = {key: _training(sc, seed, steps, batch, length) for key, sc in SETTINGS.items()}

    r_sh, r_ph = init["shared"]["largest_over_smallest"], init["per_head"]["largest_over_smallest"]
    t_sh, t_ph = train["shared"]["largest_over_smallest"], train["per_head"]["largest_over_smallest"]
    criteria = [at_least("shared scale: Q/K gradient share largest / smallest head at init", r_sh, DOMINANCE),
                at_least("per-head scales: largest / smallest head", r_ph, 1 / BALANCED),
                at_most("per-head scales: largest / smallest head ", r_ph, BALANCED)]
    dominated = criteria[0].holds()
    balanced = criteria[1].holds() and criteria[2].holds()
    supported = dominated and balanced

    fig_name = "head_sizes.png"
    _figure(init, train, steps, out_dir / fig_name, init["shared"]["samples"], length)
    numbers = {
        "head_dims": HEAD_DIMS, "value_head_dims": [VALUE_DIM] * len(HEAD_DIMS), "embed_dim": EMBED,
        "shared_scale": SHARED_SCALE, "seeds": seeds, "batches_per_seed": batches, "batch": batch,
        "length": length, "at_init": init,
        "training": {key: {k: v for k, v in r.items() if k != "grad_share"} for key, r in train.items()},
        "training_steps": steps,
        "checks": {"shared_largest_over_smallest": r_sh, "per_head_largest_over_smallest": r_ph,
                   "training_shared_largest_over_smallest": t_sh, "training_per_head_largest_over_smallest": t_ph,
                   "dominated": dominated, "balanced": balanced,
                   "margins": {"dominance": DOMINANCE, "balanced_within_factor": BALANCED}},
    }
    fmt = lambda v: "/".join(f"{x:.2f}" for x in v)  # noqa: E731
    verdict = (
        f"Q/K gradient shares of heads d_h={HEAD_DIMS} at init: {fmt(init['shared']['grad_share_mean'])} with one "
        f"shared scale 1/√{min(HEAD_DIMS)} (largest/smallest {r_sh:.1f}×) vs "
        f"{fmt(init['per_head']['grad_share_mean'])} with per-head scales ({r_ph:.2f}×); entropies "
        f"{fmt(init['shared']['entropy_mean'])} vs {fmt(init['per_head']['entropy_mean'])} nats. Averaged over "
        f"{steps} training steps the ratio is {t_sh:.1f}× vs {t_ph:.2f}×. "
        + ("The claim holds." if supported else
           f"The claim is NOT supported (needs > {DOMINANCE}× shared and within {BALANCED}× per-head).")
    )
    return Outcome(numbers=numbers, verdict=verdict, supported=supported, figures=[fig_name], criteria=criteria)
