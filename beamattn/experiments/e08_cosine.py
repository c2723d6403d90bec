"""Experiment 8: cosine attention ignores query and key norms; dot-product attention can use them.

(a) Sweep. One query, ``n`` random keys; key 0 has a moderately positive match with the query
    (scaled dot score 1). Its norm is multiplied by ``c`` from 0.1 to 10 and its attention
    weight is measured with ``attend(score="cosine")`` and ``attend(score="dot")``. Cosine
    weights are unchanged (up to rounding); dot weights grow with ``c``. The same is measured
    for scaling the query's norm (cosine: unchanged; dot: the weights sharpen, lower entropy).

(b) Learning. Each example is a set of ``N`` keys whose directions are random around a common
    mean direction; one target key has a larger norm (1.5-2 vs 0.5-1), which is the *only*
    thing that marks it. A :class:`~beamattn.core.MultiHeadAttention` with one head, no
    projection biases and a learned query must put its attention on the target (loss: minus
    the log of the target's weight). With ``score="dot"`` the score is ``norm × (a · direction)``
    and the model learns it; with ``score="cosine"`` the weights are blind to the key norms
    (a linear projection without bias keeps ``W(r u)/|W(r u)| = W u/|W u|``), so it stays at
    chance, ``1/N``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ..core import MultiHeadAttention, attend, attention_entropy
from ..io import save_figure_atomic
from .registry import Outcome, at_least, at_most, experiment

SCORES = ("dot", "cosine")
# Margins of the verdict.
COSINE_INVARIANCE_MAX = 1e-5  # largest change of a cosine attention weight under norm scaling
DOT_GROWTH_MIN = 2.0  # dot: weight of key 0 at c=10 / at c=1
DOT_ACCURACY_MIN = 0.8  # dot-product attention learns the norm task
CHANCE_MARGIN = 0.1  # cosine accuracy at most chance + this


# --------------------------------------------------------------------------- (a) sweep


def norm_sweep(gen: torch.Generator, factors: list[float], trials: int, n_keys: int = 16, d: int = 32) -> dict:
    """Mean weight of key 0 vs its norm factor, and the effect of scaling the query, per score."""
    q = torch.randn(trials, 1, d, generator=gen)  # [T, 1, d]
    k = torch.randn(trials, n_keys, d, generator=gen)  # [T, n, d]
    v = torch.randn(trials, n_keys, 4, generator=gen)
    q_dir = q[:, 0] / q[:, 0].norm(dim=-1, keepdim=True)
    k0 = k[:, 0] - (k[:, 0] * q_dir).sum(-1, keepdim=True) * q_dir
    k[:, 0] = k0 + q_dir * (math.sqrt(d) / q[:, 0].norm(dim=-1, keepdim=True))  # scaled dot score 1
    out = {}
    for score in SCORES:
        _, w_ref = attend(q, k, v, score=score, return_weights=True)  # [T, 1, n]
        weights, max_change = [], 0.0
        for c in factors:
            ks = k.clone()
            ks[:, 0] = ks[:, 0] * c
            _, w = attend(q, ks, v, score=score, return_weights=True)
            weights.append(w[:, 0, 0].mean().item())
            max_change = max(max_change, (w[:, 0, 0] - w_ref[:, 0, 0]).abs().max().item())
        q_change, entropies = 0.0, []
        for c in factors:
            _, w = attend(q * c, k, v, score=score, return_weights=True)
            q_change = max(q_change, (w - w_ref).abs().max().item())
            entropies.append(attention_entropy(w).mean().item())
        out[score] = {"mean_weight_key0": weights, "max_change_key_scaling": max_change,
                      "max_change_query_scaling": q_change, "mean_entropy_query_scaling": entropies}
    return out


# --------------------------------------------------------------------------- (b) learning


def norm_task(batch: int, n_keys: int, d: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(keys [B, N, d], target [B])``: the target key is the one with the larger norm."""
    g = torch.randn(batch, n_keys, d, generator=gen)
    g[..., 0] = g[..., 0].abs() + 3.0  # directions spread around a common mean direction (~45 degrees)
    u = g / g.norm(dim=-1, keepdim=True)
    r = 0.5 + 0.5 * torch.rand(batch, n_keys, generator=gen)  # distractor norms in [0.5, 1]
    target = torch.randint(n_keys, (batch,), generator=gen)
    r[torch.arange(batch), target] = 1.5 + 0.5 * torch.rand(batch, generator=gen)  # target norm in [1.5, 2]
    return u * r[..., None], target


class NormPointer(nn.Module):
    """A learned query attends over the keys (one head, no biases); the weights point at the answer."""

    def __init__(self, d: int, score: str) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, d) / math.sqrt(d))
        self.attn = MultiHeadAttention(d, 1, bias=False, score=score)

    def forward(self, keys: Tensor) -> Tensor:
        """``keys [B, N, d]`` → attention weights ``[B, N]``."""
        q = self.query.expand(keys.shape[0], 1, -1)  # [B, 1, d]
        _, w = self.attn(q, keys, keys, need_weights=True)  # [B, 1, 1, N]
        return w[:, 0, 0]


def learn_norm_task(score: str, seed: int, steps: int, batch: int, n_keys: int, d: int, n_eval: int,
                    eval_every: int) -> dict:
    torch.manual_seed(seed)
    model = NormPointer(d, score)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed * 7919 + 1)
    keys_ev, target_ev = norm_task(n_eval, n_keys, d, torch.Generator().manual_seed(seed * 7919 + 2))

    def accuracy() -> float:
        with torch.no_grad():
            return (model(keys_ev).argmax(-1) == target_ev).float().mean().item()

    curve_steps, curve_acc = [0], [accuracy()]
    for step in range(1, steps + 1):
        keys, target = norm_task(batch, n_keys, d, gen)
        w = model(keys)
        loss = -torch.log(w[torch.arange(batch), target] + 1e-9).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            curve_steps.append(step)
            curve_acc.append(accuracy())
    with torch.no_grad():
        w = model(keys_ev)
    return {"steps": curve_steps, "accuracy": curve_acc, "final_accuracy": curve_acc[-1],
            "mean_target_weight": w[torch.arange(n_eval), target_ev].mean().item()}


# --------------------------------------------------------------------------- experiment


@experiment("cosine-vs-dot-norms", "Cosine attention ignores norms; dot products can use them",
            "Cosine-similarity attention is insensitive to the norms of queries and keys: scaling a key leaves its "
            "attention weight unchanged. With dot products the key norm changes the weight, so a model can use it "
            "as a learned importance signal.",
            order=8)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    factors = [float(f) for f in torch.logspace(-1, 1, 9 if small else 21, dtype=torch.float64)]
    trials = 100 if small else 500
    n_keys, d = 8, 16
    steps, batch, n_eval = (120, 64, 500) if small else (400, 128, 2000)
    eval_every = 20

    sweep = norm_sweep(torch.Generator().manual_seed(seed), factors, trials)
    learn = {score: learn_norm_task(score, seed, steps, batch, n_keys, d, n_eval, eval_every)
             for score in SCORES}

    i1 = min(range(len(factors)), key=lambda i: abs(factors[i] - 1.0))
    dot_w = sweep["dot"]["mean_weight_key0"]
    dot_growth = dot_w[-1] / dot_w[i1]
    dot_monotone = all(b > a for a, b in zip(dot_w, dot_w[1:]))
    cos_change = max(sweep["cosine"]["max_change_key_scaling"], sweep["cosine"]["max_change_query_scaling"])
    chance = 1.0 / n_keys
    acc_dot, acc_cos = learn["dot"]["final_accuracy"], learn["cosine"]["final_accuracy"]
    criteria = [at_most("cosine: largest weight change under key/query norm scaling", cos_change,
                        COSINE_INVARIANCE_MAX),
                at_least("dot: key-0 weight growth from c=1 to c=10 (×)", dot_growth, DOT_GROWTH_MIN),
                at_least("dot: smallest step of key-0 weight as its norm grows", min(b - a for a, b in zip(dot_w, dot_w[1:])),
                         0.0),
                at_least("dot: accuracy when only the key norm marks the target", acc_dot, DOT_ACCURACY_MIN),
                at_most("cosine: accuracy minus chance on that task", acc_cos - chance, CHANCE_MARGIN)]
    supported = all(c.holds() for c in criteria)

    numbers = {
        "sweep": {"factors": factors, "trials": trials, "keys": 16, "d": 32, **sweep,
                  "dot_growth_c10_over_c1": dot_growth, "dot_monotone": dot_monotone},
        "learning": {"keys": n_keys, "d": d, "steps": steps, "batch": batch, "eval_sets": n_eval,
                     "chance": chance, **learn},
        "margins": {"cosine_invariance_max": COSINE_INVARIANCE_MAX, "dot_growth_min": DOT_GROWTH_MIN,
                    "dot_accuracy_min": DOT_ACCURACY_MIN, "chance_margin": CHANCE_MARGIN},
    }
    figures = [_plot(out_dir, numbers)]
    verdict = (f"(a) Scaling one key's norm by 0.1-10 changes its cosine attention weight by at most "
               f"{sweep['cosine']['max_change_key_scaling']:.1e} (scaling the query: any weight by at most "
               f"{sweep['cosine']['max_change_query_scaling']:.1e}), while its dot-product weight grows from "
               f"{dot_w[0]:.3f} to {dot_w[-1]:.3f} ({dot_growth:.1f}x from c=1 to c=10). (b) When only the key norm "
               f"marks the target among {n_keys} keys, dot-product attention goes from "
               f"{learn['dot']['accuracy'][0]:.1%} (untrained) to {acc_dot:.1%} accuracy in {steps} steps and "
               f"cosine attention from {learn['cosine']['accuracy'][0]:.1%} to {acc_cos:.1%} (chance {chance:.1%}). "
               f"{'The claim holds' if supported else 'The claim is NOT supported'} (margins: cosine change <= "
               f"{COSINE_INVARIANCE_MAX:g}, dot growth >= {DOT_GROWTH_MIN:g}x, dot accuracy >= {DOT_ACCURACY_MIN:.0%}, "
               f"cosine accuracy <= chance + {CHANCE_MARGIN:.0%}).")
    return Outcome(numbers=numbers, verdict=verdict, supported=supported, figures=figures, criteria=criteria)


def _plot(out_dir: Path, n: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sw, le = n["sweep"], n["learning"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    ax = axes[0]
    colors = {"dot": "C3", "cosine": "C0"}
    for score in SCORES:
        ax.plot(sw["factors"], sw[score]["mean_weight_key0"], "o-", ms=4, color=colors[score],
                label=f'score="{score}" (max change {sw[score]["max_change_key_scaling"]:.1e})')
    ax.axhline(1 / sw["keys"], color="gray", ls=":", lw=1, label=f"uniform 1/{sw['keys']}")
    ax.set_xscale("log")
    ax.set_xticks([0.1, 0.2, 0.5, 1, 2, 5, 10], ["0.1", "0.2", "0.5", "1", "2", "5", "10"])
    ax.set_xlabel("factor c applied to the norm of key 0 (unitless)")
    ax.set_ylabel("mean attention weight on key 0")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"(a) one key's norm scaled by c\n({sw['keys']} keys, d={sw['d']}, {sw['trials']} trials;\n"
                 "key 0 matches the query with scaled dot score 1 at c = 1)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")

    ax = axes[1]
    for score in SCORES:
        r = le[score]
        ax.plot(r["steps"], r["accuracy"], "o-", ms=3, color=colors[score],
                label=f'score="{score}": {r["final_accuracy"]:.1%}')
    ax.axhline(le["chance"], color="gray", ls=":", lw=1, label=f"chance 1/{le['keys']}")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out accuracy (argmax weight = target key)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"(b) learn to attend to the key with the larger norm\n({le['keys']} keys, random directions "
                 f"around a shared mean;\nnorms 0.5-1, target 1.5-2; {le['eval_sets']} held-out sets)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.suptitle("Cosine attention is blind to norms; dot-product attention can use the key norm as importance")
    path = out_dir / "cosine_vs_dot.png"
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path.name
