"""Experiment 4: are several heads an ensemble with lower gradient variance than one head?

A 2-block :class:`beamattn.nlp.Encoder` (embed 64) with ``H = 1`` or ``H = 8`` equal heads: the
projections are ``E x E`` whatever ``H`` is, so both models have exactly the same parameters. Both are
trained on the reverse task with the same minibatches (Adam, full run down to a low loss).

Why a redesign: the first version divided the variance by ``||ḡ||²`` estimated from the same probe
batches (biased upwards by ``tr(Σ)/M``, so the ratio is capped near the number of probes when the
signal is small) and probed only the initial plateau. Now:

- **Unbiased pieces.** At each checkpoint, ``M`` probe-minibatch gradients ``g_i`` (fixed held-out
  probe batches, the same for both models) give ``tr Σ = Σ||g_i − ḡ||²/(M−1)`` (unbiased) and
  ``||μ||² = ||ḡ||² − tr Σ / M`` (unbiased, since ``E||ḡ||² = ||μ||² + tr Σ/M``); the normalised
  variance (noise-to-signal) is their ratio.
- **Matched loss over a full run.** Checkpoints span the run; H=8 is compared with H=1 at equal
  probe loss (log-variance interpolated on a common loss grid inside both runs' ranges), not at equal
  step (H=8 and H=1 learn at different speeds).
- **Parameter groups apart.** Per-head Q/K/V projections (each head's rows get their own gradient),
  the shared output projection ``W_O``, and the upstream token embedding (below every head).
- **The stated consequence, directly.** The largest stable Adam learning rate on a grid (a run is
  stable if it ends ``STABLE_DROP`` nats below chance, ``ln V``, without non-finite losses) and the
  number of loss spikes (a step more than ``SPIKE_NATS`` above the minimum of the previous 20).

Criteria: the normalised variance of the attention parameters at matched loss, H=8/H=1 ≤ ``MARGIN``;
and H=8's largest stable learning rate ≥ H=1's × ``LR_FACTOR`` (one grid step).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io import save_figure_atomic
from ..nlp.model import Encoder, EncoderConfig
from ..nlp.tasks import reverse_task
from .registry import Outcome, at_least, at_most, experiment

CLAIM = ("Multi-head attention acts like an ensemble: averaging several heads lowers the variance of the gradients, "
         "compared with one head with the same number of parameters, which allows faster and more stable training.")

HEADS = [1, 8]
DIM, VOCAB, LENGTH = 64, 16, 10
GROUPS = ("attention", "qkv", "w_o", "upstream")
MARGIN = 0.8  # supported if H=8's normalised variance at matched loss <= MARGIN x H=1's
LR_GRID = [3e-3, 1e-2, 3e-2, 1e-1]
LR_FACTOR = 3.0  # H=8's largest stable learning rate must be at least this x H=1's (one grid step)
STABLE_DROP = 1.0  # a stable run ends at least this many nats below chance (ln VOCAB)
SPIKE_NATS = 0.5  # a loss spike: this much above the minimum of the previous 20 steps


def _loss(model: Encoder, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits, _ = model(x)
    return F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))


def _groups(model: Encoder) -> dict[str, list[torch.nn.Parameter]]:
    qkv = [p for blk in model.blocks for m in (blk.attn.q_proj, blk.attn.k_proj, blk.attn.v_proj)
           for p in m.parameters()]
    w_o = [p for blk in model.blocks for p in blk.attn.out_proj.parameters()]
    return {"attention": qkv + w_o, "qkv": qkv, "w_o": w_o, "upstream": list(model.embed.parameters())}


def noise_to_signal(grads: torch.Tensor) -> dict[str, float]:
    """``grads [M, P]`` (M per-minibatch gradients) → unbiased ``tr Σ``, unbiased ``||μ||²`` and their ratio.

    ``||μ||²`` can come out <= 0 when the mean gradient is buried in noise; the ratio is then +inf-like and
    reported as None.
    """
    m = grads.shape[0]
    mean = grads.mean(0)
    trace = float(((grads - mean) ** 2).sum() / (m - 1))
    signal = float((mean ** 2).sum()) - trace / m
    return {"trace_cov": trace, "mean_sq_unbiased": signal,
            "normalised": trace / signal if signal > 0 else None}


def _measure(model: Encoder, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    groups = _groups(model)
    per_group: dict[str, list[torch.Tensor]] = {g: [] for g in groups}
    losses = []
    for x, y in batches:
        model.zero_grad()
        loss = _loss(model, x, y)
        loss.backward()
        losses.append(loss.item())
        for g, ps in groups.items():
            per_group[g].append(torch.cat([p.grad.flatten() for p in ps]))
    out = {g: noise_to_signal(torch.stack(v)) for g, v in per_group.items()}
    out["loss"] = float(np.mean(losses))
    return out


def _train_run(heads: int, seed: int, steps: int, lr: float, train_batch: int, checkpoints: list[int],
               probes: list) -> dict:
    """One training run; gradient statistics at ``checkpoints``; the loss of every step."""
    torch.manual_seed(seed)
    model = Encoder(EncoderConfig(vocab_size=VOCAB, dim=DIM, num_heads=heads, num_layers=2))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses, stats = [], []
    for step in range(steps + 1):
        if step in checkpoints:
            stats.append(_measure(model, probes))
        if step == steps:
            break
        x, y = reverse_task(train_batch, LENGTH, VOCAB, seed=1_000_000 + seed * 10_000 + step)  # same for every H
        loss = _loss(model, x, y)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"params": sum(p.numel() for p in model.parameters()), "losses": losses, "checkpoints": stats}


def spikes(losses: list[float]) -> int:
    """Steps whose loss is more than SPIKE_NATS above the minimum of the previous 20 steps."""
    return sum(1 for t in range(20, len(losses)) if losses[t] - min(losses[t - 20:t]) > SPIKE_NATS)


def stable(losses: list[float], steps: int) -> bool:
    """Finite for every step and the last 10 steps' mean at least STABLE_DROP below chance, ln(VOCAB) (a fixed
    reference: an early blow-up must not count as progress)."""
    if len(losses) < steps or not all(math.isfinite(v) for v in losses):
        return False
    return float(np.mean(losses[-10:])) <= math.log(VOCAB) - STABLE_DROP


def matched_loss_ratio(loss1: list[float], var1: list[float | None], loss8: list[float], var8: list[float | None],
                       points: int = 8) -> float | None:
    """Geometric mean over a common loss grid of H=8's / H=1's normalised variance, each log-interpolated in
    its own run's (loss, variance) points; None without a common loss range."""
    def clean(loss, var):
        pts = sorted((l_, math.log(v)) for l_, v in zip(loss, var) if v is not None and v > 0)
        return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])

    l1, v1 = clean(loss1, var1)
    l8, v8 = clean(loss8, var8)
    if len(l1) < 2 or len(l8) < 2:
        return None
    lo, hi = max(l1.min(), l8.min()), min(l1.max(), l8.max())
    if not lo < hi:
        return None
    grid = np.linspace(lo, hi, points)
    return float(np.exp(np.mean(np.interp(grid, l8, v8) - np.interp(grid, l1, v1))))


def _figure(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(21, 4.6))
    colors = {1: "C0", 8: "C3"}
    for h in HEADS:
        r = res["runs"][str(h)]
        loss = [c["loss"] for c in r["checkpoints"]]
        for ax, g in zip(axes[:3], ("attention", "w_o", "upstream")):
            var = [c[g]["normalised"] for c in r["checkpoints"]]
            pts = [(l_, v) for l_, v in zip(loss, var) if v is not None and v > 0]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colors[h], label=f"H = {h}")
            if g == "attention":
                qkv = [(l_, c["qkv"]["normalised"]) for l_, c in zip(loss, r["checkpoints"])
                       if c["qkv"]["normalised"] is not None and c["qkv"]["normalised"] > 0]
                ax.plot([p[0] for p in qkv], [p[1] for p in qkv], "s:", color=colors[h], alpha=0.7,
                        label=f"H = {h}, per-head Q/K/V only")
    titles = {"attention": "(a) all attention parameters", "w_o": "(b) shared output projection W_O",
              "upstream": "(c) upstream token embedding"}
    for ax, g in zip(axes[:3], ("attention", "w_o", "upstream")):
        ax.set_xlabel("probe loss (nats/token); training runs right to left")
        ax.set_ylabel("normalised gradient variance tr Σ / ||μ||² (unbiased pieces)")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_title(titles[g])
    ax = axes[3]
    for h in HEADS:
        lr = res["lr_sweep"][str(h)]
        ax.plot(LR_GRID, lr["final_loss"], "o-", color=colors[h],
                label=f"H = {h}: largest stable lr {lr['largest_stable_lr']}, spikes {lr['spikes']}")
    ax.set_xscale("log")
    ax.set_xlabel("Adam learning rate")
    ax.set_ylabel(f"mean loss of the last 10 of {res['lr_steps']} steps (nats)")
    ax.set_title("(d) learning-rate stability")
    for a in axes:
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle(f"H=1 vs H=8 at equal parameter count ({res['params']} parameters; reverse task, "
                 f"{res['probe_minibatches']} held-out probe minibatches of {res['probe_batch']})")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


@experiment("multihead-gradient-variance", "Multi-head attention as a gradient-variance-reducing ensemble",
            CLAIM, order=4, seeds=5)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    steps, m, b, train_batch = (60, 8, 8, 16) if small else (200, 16, 16, 32)
    checkpoints = sorted({0, *range(steps // 10, steps + 1, steps // (5 if small else 8))})
    lr_steps = 40 if small else 80
    probes = [reverse_task(b, LENGTH, VOCAB, seed=5_000_000 + seed * 1000 + i) for i in range(m)]
    runs = {h: _train_run(h, seed, steps, 1e-3, train_batch, checkpoints, probes) for h in HEADS}
    lr_sweep = {}
    for h in HEADS:
        rows = [_train_run(h, seed, lr_steps, lr, train_batch, [], []) for lr in LR_GRID]
        ok = [stable(r["losses"], lr_steps) for r in rows]
        largest = None
        for lr, s in zip(LR_GRID, ok):  # the largest lr such that it and every smaller one are stable
            if not s:
                break
            largest = lr
        lr_sweep[str(h)] = {"stable": ok, "largest_stable_lr": largest,
                            "final_loss": [float(np.mean(r["losses"][-10:])) if r["losses"] else None for r in rows],
                            "spikes": [spikes(r["losses"]) for r in rows]}

    def series(h: int, g: str) -> tuple[list[float], list[float | None]]:
        cps = runs[h]["checkpoints"][1:]  # after initialisation
        return [c["loss"] for c in cps], [c[g]["normalised"] for c in cps]

    matched = {g: matched_loss_ratio(*series(1, g), *series(8, g)) for g in GROUPS}
    lr1, lr8 = lr_sweep["1"]["largest_stable_lr"], lr_sweep["8"]["largest_stable_lr"]
    # log10 of the grid's lower end / 3 stands for "no stable rate": keeps the ratio finite and failing
    lr_ratio = (lr8 or LR_GRID[0] / 3) / (lr1 or LR_GRID[0] / 3)
    att = matched["attention"]
    criteria = [at_most("normalised gradient variance of the attention parameters, H=8 / H=1 at matched loss",
                        att if att is not None else 1e6, MARGIN),
                at_least("largest stable Adam learning rate, H=8 / H=1", lr_ratio, LR_FACTOR)]
    supported = all(c.holds() for c in criteria)
    params = {h: runs[h]["params"] for h in HEADS}
    res = {"heads": HEADS, "params": params[1], "equal_param_counts": len(set(params.values())) == 1,
           "train_steps": steps, "train_batch": train_batch, "probe_minibatches": m, "probe_batch": b,
           "checkpoints": checkpoints, "runs": {str(h): runs[h] for h in HEADS},
           "matched_loss_ratio_H8_over_H1": matched, "lr_grid": LR_GRID, "lr_steps": lr_steps,
           "lr_sweep": lr_sweep, "largest_stable_lr_ratio_H8_over_H1": lr_ratio,
           "final_loss": {str(h): runs[h]["losses"][-1] for h in HEADS},
           "criteria": {"margin": MARGIN, "lr_factor": LR_FACTOR, "stable_drop_nats": STABLE_DROP,
                        "spike_nats": SPIKE_NATS}}
    _figure(res, out_dir / "gradient_variance.png")
    f = lambda v: "n/a (no common loss range)" if v is None else f"{v:.2f}"  # noqa: E731
    verdict = (
        f"Same {params[1]} parameters; {steps} Adam steps, final loss H=1 {runs[1]['losses'][-1]:.3f}, H=8 "
        f"{runs[8]['losses'][-1]:.3f} nats. Normalised gradient variance (unbiased pieces, {m} held-out probe "
        f"minibatches), H=8/H=1 at matched loss: attention {f(matched['attention'])} (per-head Q/K/V "
        f"{f(matched['qkv'])}, shared W_O {f(matched['w_o'])}), upstream embedding {f(matched['upstream'])}; "
        f"criterion <= {MARGIN}. Largest stable learning rate (of {LR_GRID}, {lr_steps} steps): H=1 {lr1}, H=8 "
        f"{lr8} (ratio {lr_ratio:.2g}, criterion >= {LR_FACTOR:g}); loss spikes per rate H=1 "
        f"{lr_sweep['1']['spikes']}, H=8 {lr_sweep['8']['spikes']}."
    )
    return Outcome(numbers=res, verdict=verdict, supported=supported, figures=["gradient_variance.png"],
                   criteria=criteria)
