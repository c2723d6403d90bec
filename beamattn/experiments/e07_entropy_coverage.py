"""Experiment 7: attention entropy tracks noise and match strength; coverage tracks fertility.

(a) Entropy. One query of size ``d``, one planted matching key whose scaled score is ``s``
    (``s`` = match strength, in units of the standard deviation of the noise scores) and
    ``n`` noise keys with unit-variance scaled scores (random Gaussian keys, as in the demo).
    The mean softmax entropy (nats) over random trials is measured for each ``n`` and ``s``;
    the noise keys of a smaller ``n`` are the first keys of a larger one (common random numbers).
    Expected: entropy rises with ``n`` and falls with ``s``.

(b) Coverage. On :func:`~beamattn.nlp.tasks.alignment_task` (each source token emits
    ``fertility`` target tokens, 0-3), a tiny cross-attention aligner is trained: the query
    of target position ``t`` is the learned embedding of the target token plus a sinusoidal
    position, the keys and values are the source token embeddings plus positions, and the
    target token must be predicted from the attention output alone (no residual path), so the
    model has to point at the source token the target came from — the job of a word aligner
    that sees the sentence pair. Coverage (column sums of the attention matrix over the real,
    non-padding target positions) is compared with the true fertility of each source token on
    held-out pairs: Pearson and Spearman correlations and a scatter plot.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import MultiHeadAttention, attend, attention_entropy, coverage, sinusoidal_encoding
from ..io import save_figure_atomic
from ..nlp.tasks import alignment_task
from .registry import Outcome, at_least, at_most, experiment

# Margins of the verdict.
TREND_MIN = 0.1  # nats: total rise over n / total fall over s, for every curve
STEP_TOL = 0.01  # nats: no step may go the wrong way by more than this
CORR_MIN = 0.9  # Pearson and Spearman correlation of coverage with fertility


# --------------------------------------------------------------------------- (a) entropy


def entropy_grid(gen: torch.Generator, noise_counts: tuple[int, ...], strengths: tuple[float, ...], trials: int,
                 d: int = 32) -> list[list[float]]:
    """Mean entropy (nats) ``[len(strengths)][len(noise_counts)]``."""
    n_max = max(noise_counts)
    q = torch.randn(trials, 1, d, generator=gen)  # [T, 1, d]
    q_dir = q[:, 0] / q[:, 0].norm(dim=-1, keepdim=True)  # [T, d]
    noise = torch.randn(trials, n_max, d, generator=gen)  # [T, n_max, d]
    match = torch.randn(trials, d, generator=gen)
    match = match - (match * q_dir).sum(-1, keepdim=True) * q_dir  # orthogonal to q: scaled score 0
    grid = []
    for s in strengths:
        # Scaled score q·k/sqrt(d) of the match = s (the noise scores have variance |q|^2/d ~ 1).
        k0 = match + q_dir * (s * math.sqrt(d) / q[:, 0].norm(dim=-1, keepdim=True))  # [T, d]
        row = []
        for n in noise_counts:
            k = torch.cat([k0[:, None], noise[:, :n]], dim=1)  # [T, n+1, d]; key 0 is the match
            _, w = attend(q, k, k, return_weights=True)  # [T, 1, n+1]
            row.append(attention_entropy(w).mean().item())
        grid.append(row)
    return grid


# --------------------------------------------------------------------------- (b) coverage


class Aligner(nn.Module):
    """Target token + position (query) attends over source tokens + positions (keys, values)."""

    def __init__(self, vocab: int, dim: int) -> None:
        super().__init__()
        self.src = nn.Embedding(vocab, dim)
        self.tgt = nn.Embedding(vocab, dim)
        self.attn = MultiHeadAttention(dim, 1)
        self.out = nn.Linear(dim, vocab)

    def forward(self, src: Tensor, tgt: Tensor) -> tuple[Tensor, Tensor]:
        """``src [B, S]``, ``tgt [B, T]`` → ``(logits [B, T, V], weights [B, T, S])``."""
        d = self.src.embedding_dim
        k = self.src(src) + sinusoidal_encoding(src.shape[1], d)  # [B, S, d]
        q = self.tgt(tgt) + sinusoidal_encoding(tgt.shape[1], d)  # [B, T, d]
        o, w = self.attn(q, k, k, need_weights=True)  # [B, T, d], [B, 1, T, S]
        return self.out(o), w[:, 0]


def _ranks(x: Tensor) -> Tensor:
    """Ranks 1..n with ties given their average rank."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=x.dtype)
    for v in torch.unique(x):  # average the ranks of ties
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def _pearson(a: Tensor, b: Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return (a @ b / (a.norm() * b.norm())).item()


def train_aligner(seed: int, steps: int, batch: int, src_len: int, vocab: int, max_fertility: int, dim: int,
                  n_eval: int) -> dict:
    """Train the aligner; return coverage vs fertility on held-out pairs."""
    torch.manual_seed(seed)
    model = Aligner(vocab, dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(steps):
        src, tgt, _ = alignment_task(batch, src_len, vocab, max_fertility, seed=seed * 100_000 + step)
        logits, _ = model(src, tgt)
        loss = F.cross_entropy(logits.reshape(-1, vocab), tgt.reshape(-1), ignore_index=0)  # 0 = padding
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    src, tgt, fert = alignment_task(n_eval, src_len, vocab, max_fertility, seed=seed * 100_000 + 99_999)
    with torch.no_grad():
        logits, w = model(src, tgt)  # [B, T, V], [B, T, S]
    valid = tgt != 0  # [B, T] real target tokens
    cov = coverage(w * valid[..., None])  # [B, S]
    acc = (logits.argmax(-1) == tgt)[valid].float().mean().item()
    c, f = cov.flatten().double(), fert.flatten().double()
    # Source tokens that occur once in their sentence (a repeated token splits its attention).
    counts = (src[:, :, None] == src[:, None, :]).sum(-1)  # [B, S]
    single = (counts == 1).flatten()
    return {
        "coverage": c.tolist(), "fertility": f.tolist(), "unique_token": single.tolist(),
        "pearson": _pearson(c, f), "spearman": _pearson(_ranks(c), _ranks(f)),
        "pearson_unique_tokens": _pearson(c[single], f[single]),
        "mean_abs_error": (c - f).abs().mean().item(),
        "mean_coverage_by_fertility": {int(k): c[f == k].mean().item() for k in torch.unique(f).tolist()},
        "target_accuracy": acc, "final_loss": sum(losses[-10:]) / len(losses[-10:]), "losses": losses,
    }


# --------------------------------------------------------------------------- experiment


@experiment("entropy-and-coverage", "Attention entropy and coverage",
            "Attention entropy rises with the number of irrelevant (noise) tokens and falls when the query has "
            "a strong match; coverage (the column sums of the attention matrix) behaves like the fertility of "
            "a word alignment.",
            order=7)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    noise_counts = (1, 4, 16, 64, 256) if small else (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
    strengths = (0.0, 2.0, 4.0, 6.0, 8.0)
    trials = 200 if small else 1000
    steps = 150 if small else 600
    cfg = {"batch": 64, "src_len": 8, "vocab": 64, "max_fertility": 3, "dim": 32, "n_eval": 64 if small else 256}

    grid = entropy_grid(torch.Generator().manual_seed(seed), noise_counts, strengths, trials)
    align = train_aligner(seed, steps, **cfg)

    rises = [row[-1] - row[0] for row in grid]  # per strength, over n
    worst_n_step = min(b - a for row in grid for a, b in zip(row, row[1:]))  # should be > 0
    falls = [grid[0][j] - grid[-1][j] for j in range(len(noise_counts))]  # per n, over s
    worst_s_step = min(grid[i][j] - grid[i + 1][j] for i in range(len(strengths) - 1)
                       for j in range(len(noise_counts)))  # should be > 0
    c_entropy = [at_least("smallest entropy rise over n, per strength (nats)", min(rises), TREND_MIN),
                 at_least("worst entropy step as n grows (nats)", worst_n_step, -STEP_TOL),
                 at_least("smallest entropy fall over strength, per n (nats)", min(falls), TREND_MIN),
                 at_least("worst entropy step as strength grows (nats)", worst_s_step, -STEP_TOL)]
    c_coverage = [at_least("coverage vs fertility: Pearson", align["pearson"], CORR_MIN),
                  at_least("coverage vs fertility: Spearman", align["spearman"], CORR_MIN)]
    criteria = c_entropy + c_coverage
    entropy_ok, coverage_ok = all(c.holds() for c in c_entropy), all(c.holds() for c in c_coverage)
    supported = entropy_ok and coverage_ok

    numbers = {
        "entropy": {"noise_counts": list(noise_counts), "strengths": list(strengths), "trials": trials, "d": 32,
                    "mean_entropy_nats": grid, "log_n_plus_1": [math.log(n + 1) for n in noise_counts],
                    "rise_over_n_per_strength": rises, "fall_over_strength_per_n": falls,
                    "worst_step_over_n": worst_n_step, "worst_step_over_strength": worst_s_step},
        "coverage": {**{k: v for k, v in align.items() if k not in ("coverage", "fertility", "unique_token",
                                                                      "losses")},
                     "train_steps": steps, **cfg},
        "margins": {"trend_min_nats": TREND_MIN, "step_tolerance_nats": STEP_TOL, "correlation_min": CORR_MIN},
        "entropy_supported": entropy_ok, "coverage_supported": coverage_ok,
    }
    figures = [_plot(out_dir, numbers, align)]
    verdict = (f"(a) Entropy rises with the number of noise keys for every match strength (by "
               f"{min(rises):.2f}-{max(rises):.2f} nats from {noise_counts[0]} to {noise_counts[-1]} keys; worst "
               f"step {worst_n_step:+.3f}) and falls with the strength at every n (by {min(falls):.2f}-"
               f"{max(falls):.2f} nats from s=0 to s={strengths[-1]:g}; worst step {worst_s_step:+.3f}). "
               f"(b) After {steps} steps the aligner's coverage correlates with fertility: Pearson "
               f"{align['pearson']:.3f}, Spearman {align['spearman']:.3f} "
               f"({cfg['n_eval'] * cfg['src_len']} source tokens; Pearson {align['pearson_unique_tokens']:.3f} "
               f"for tokens unique in their sentence; mean |coverage - fertility| {align['mean_abs_error']:.2f}). "
               f"{'Both claims hold' if supported else 'NOT supported'} (margins: trends >= {TREND_MIN} nats, "
               f"correlations >= {CORR_MIN}).")
    return Outcome(numbers=numbers, verdict=verdict, supported=supported, figures=figures, criteria=criteria)


def _plot(out_dir: Path, n: dict, align: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ent = n["entropy"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    ax = axes[0]
    cmap = plt.get_cmap("viridis")
    for i, (s, row) in enumerate(zip(ent["strengths"], ent["mean_entropy_nats"])):
        ax.plot(ent["noise_counts"], row, "o-", ms=4, color=cmap(i / max(1, len(ent["strengths"]) - 1)),
                label=f"match strength s = {s:g}")
    ax.plot(ent["noise_counts"], ent["log_n_plus_1"], ":", color="gray", label="log(n+1): uniform weights")
    ax.set_xscale("log", base=2)
    ticks = [v for v in ent["noise_counts"] if v in (1, 4, 16, 64, 256, 1024, 4096)]
    ax.set_xticks(ticks, [str(v) for v in ticks])
    ax.set_xlabel("number of noise keys n")
    ax.set_ylabel("mean attention entropy (nats)")
    ax.set_title(f"(a) entropy of one query's softmax weights\n(d={ent['d']}, {ent['trials']} trials per point; "
                 "s in std of the noise scores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    ax = axes[1]
    cov = torch.tensor(align["coverage"])
    fert = torch.tensor(align["fertility"])
    single = torch.tensor(align["unique_token"])
    gen = torch.Generator().manual_seed(0)
    jitter = (torch.rand(len(fert), generator=gen) - 0.5) * 0.3
    x = fert + jitter
    ax.scatter(x[single].tolist(), cov[single].tolist(), s=8, alpha=0.4, color="C0",
               label="source token, unique in its sentence")
    ax.scatter(x[~single].tolist(), cov[~single].tolist(), s=10, alpha=0.6, color="C1", marker="^",
               label="source token repeated in its sentence")
    top = int(fert.max())
    ax.plot([0, top], [0, top], "k--", lw=1, label="coverage = fertility")
    means = align["mean_coverage_by_fertility"]
    ax.plot(list(means), list(means.values()), "rs", ms=8, label="mean coverage per fertility")
    ax.set_xticks(range(top + 1))
    ax.set_xlabel("fertility (target tokens emitted by the source token)")
    ax.set_ylabel("coverage (sum of attention weights received)")
    cv = n["coverage"]
    ax.set_title(f"(b) cross-attention aligner after {cv['train_steps']} steps: "
                 f"Pearson {align['pearson']:.3f}, Spearman {align['spearman']:.3f}\n"
                 f"({len(fert)} held-out source tokens, target accuracy {align['target_accuracy']:.2f})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Entropy rises with noise and falls with a strong match; coverage tracks fertility")
    path = out_dir / "entropy_coverage.png"
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path.name
