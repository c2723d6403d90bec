"""Experiment 6: a periodic positional encoding makes positions ``p`` and ``p + P`` indistinguishable.

With the periodic encoding of period ``P`` the input vector at position ``p`` is
``token(x_p) + pe(p mod P)``. If ``x_p = x_{p+P}`` the two input vectors are equal. Full
(non-causal) self-attention gives every query the same set of keys and values, and the
rest of the block (LayerNorm, MLP, residuals) acts on each position alone, so equal inputs
at ``p`` and ``p + P`` give equal outputs whatever the other tokens are — before and after
training. With the ordinary sinusoidal encoding the same two positions differ.

Measured on :class:`~beamattn.nlp.model.Encoder` (two pre-LN blocks, four heads) with
``positions="periodic"`` and ``"sinusoidal"``: random sequences of ``L = 4P`` tokens in which
one token is copied to ``P`` positions later; the distance is the largest absolute difference
of the output logits at ``p`` and ``p + P``. Both encoders are measured untrained and after a
little training on sequence reversal (a task that needs absolute positions, so the periodic
model's accuracy is also reported).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..io import save_figure_atomic
from ..nlp.model import Encoder, EncoderConfig
from ..nlp.tasks import reverse_task
from .registry import Outcome, at_least, at_most, experiment

ENCODINGS = ("periodic", "sinusoidal")
# Margins: "identical" = largest distance <= 1e-6 (float32 logits of size ~1); "distinguishable" =
# smallest distance >= 1e-3.
IDENTICAL_MAX = 1e-6
DISTINCT_MIN = 1e-3


def _pair_distances(model: Encoder, x: torch.Tensor, p: torch.Tensor, period: int) -> torch.Tensor:
    """``max_v |logits[b, p_b, v] - logits[b, p_b + period, v]|`` for each sequence ``b``."""
    rows = torch.arange(x.shape[0])
    with torch.no_grad():
        y, _ = model(x)  # [B, L, V]
    return (y[rows, p] - y[rows, p + period]).abs().amax(-1)  # [B]


def _distance_matrix(model: Encoder, x: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between the output logits of every pair of positions, ``[L, L]``."""
    with torch.no_grad():
        y, _ = model(x[None])  # [1, L, V]
    y = y[0].double()
    return (y[:, None, :] - y[None, :, :]).norm(dim=-1)  # [L, L]; exact zeros stay zeros


def _train(model: Encoder, steps: int, batch: int, length: int, vocab: int, seed: int, n_eval: int) -> float:
    """A little training on sequence reversal; returns the token accuracy on held-out sequences."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        x, y = reverse_task(batch, length, vocab, seed=seed * 100_000 + step)
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = reverse_task(n_eval, length, vocab, seed=seed * 100_000 + 99_999)
    with torch.no_grad():
        logits, _ = model(x)
    return (logits.argmax(-1) == y).float().mean().item()


def _figure_sequence(period: int, length: int, vocab: int, gen: torch.Generator) -> tuple[torch.Tensor, list[int]]:
    """A motif of ``period`` tokens repeated, with two tokens of the last repeat changed."""
    motif = torch.randperm(vocab - 1, generator=gen)[:period] + 1  # distinct tokens 1..vocab-1
    x = motif.repeat(length // period)  # [L]
    changed = [length - period + 2, length - 3]
    for i in changed:
        x[i] = 1 + (x[i] + vocab // 3) % (vocab - 1)  # a different token
    return x, changed


@experiment("periodic-positions", "A periodic positional encoding cannot tell p from p + P",
            "With a periodic positional encoding of period P, the same token at positions p and p + P gets "
            "identical inputs and therefore identical outputs: the model has no way to tell them apart.",
            order=6)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    period, vocab = 8, 32
    length = 4 * period
    n_eval = 32 if small else 256
    steps, batch = (30, 16) if small else (300, 32)
    gen = torch.Generator().manual_seed(seed)
    # Evaluation sequences: random tokens, one token copied P positions later.
    x = torch.randint(1, vocab, (n_eval, length), generator=gen)
    p = torch.randint(0, length - period, (n_eval,), generator=gen)
    rows = torch.arange(n_eval)
    x[rows, p + period] = x[rows, p]
    # Control pairs: the same positions with different tokens (the outputs are not simply constant).
    x_ctrl = x.clone()
    x_ctrl[rows, p + period] = 1 + (x[rows, p] + vocab // 2) % (vocab - 1)
    fig_x, changed = _figure_sequence(period, length, vocab, gen)

    dist: dict[str, dict[str, list[float]]] = {}
    control: dict[str, dict[str, float]] = {}
    accuracy: dict[str, float] = {}
    matrices: dict[str, list] = {}
    for enc in ENCODINGS:
        torch.manual_seed(seed)  # same initial weights for both encodings
        cfg = EncoderConfig(vocab_size=vocab, dim=32, num_heads=4, num_layers=2, positions=enc,
                            period=period)
        model = Encoder(cfg).eval()
        dist[enc], control[enc] = {}, {}
        for stage in ("untrained", "trained"):
            if stage == "trained":
                accuracy[enc] = _train(model, steps, batch, length, vocab, seed, n_eval)
            dist[enc][stage] = _pair_distances(model, x, p, period).tolist()
            control[enc][stage] = _pair_distances(model, x_ctrl, p, period).median().item()
        matrices[enc] = _distance_matrix(model, fig_x).tolist()

    summary = {enc: {stage: {"max": max(d), "median": float(torch.tensor(d).median()), "min": min(d),
                             "exact_zeros": sum(v == 0.0 for v in d) / len(d)}
                     for stage, d in dist[enc].items()} for enc in ENCODINGS}
    per_max = max(summary["periodic"][s]["max"] for s in ("untrained", "trained"))
    sin_min = min(summary["sinusoidal"][s]["min"] for s in ("untrained", "trained"))
    ctrl_min = min(control["periodic"].values())
    criteria = [at_most("periodic: largest output distance, same token at p and p+P", per_max, IDENTICAL_MAX),
                at_least("sinusoidal: smallest output distance at p and p+P", sin_min, DISTINCT_MIN),
                at_least("periodic, different tokens (control): smallest median distance", ctrl_min, DISTINCT_MIN)]
    supported = all(c.holds() for c in criteria)

    numbers = {
        "period": period, "length": length, "vocab": vocab, "eval_sequences": n_eval,
        "train_steps": steps, "train_batch": batch, "train_task": "reverse",
        "pair_distance": summary, "control_median_distance_different_tokens": control,
        "reverse_accuracy_after_training": accuracy,
        "periodic_max_distance": per_max, "sinusoidal_min_distance": sin_min,
        "identical_threshold": IDENTICAL_MAX, "distinct_threshold": DISTINCT_MIN,
        "figure_sequence": fig_x.tolist(), "figure_changed_positions": changed,
    }
    figures = [_plot(out_dir, numbers, dist, matrices)]
    zeros = min(summary["periodic"][s]["exact_zeros"] for s in ("untrained", "trained"))
    verdict = (f"Same token at p and p+{period} (L={length}, {n_eval} sequences): with the periodic encoding the "
               f"largest output distance is {per_max:.1e} ({zeros:.0%} exactly 0) untrained and after {steps} "
               f"training steps; with the sinusoidal encoding the smallest is {sin_min:.2f} (median "
               f"{summary['sinusoidal']['trained']['median']:.2f} trained). Different tokens at the same pair give "
               f"{ctrl_min:.2f} or more. Reversal accuracy after training: periodic {accuracy['periodic']:.2f}, "
               f"sinusoidal {accuracy['sinusoidal']:.2f}. "
               f"{'The claim holds' if supported else 'The claim is NOT supported'} (margins: <= "
               f"{IDENTICAL_MAX:g} vs >= {DISTINCT_MIN:g}).")
    return Outcome(numbers=numbers, verdict=verdict, supported=supported, figures=figures, criteria=criteria)


def _plot(out_dir: Path, n: dict, dist: dict, matrices: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    period, length = n["period"], n["length"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.6), layout="constrained",
                             gridspec_kw={"width_ratios": [1, 1, 1.15]})
    vmax = max(max(max(r) for r in m) for m in matrices.values())
    ticks = list(range(0, length, period))
    for ax, enc in zip(axes[:2], ENCODINGS):
        m = torch.tensor(matrices[enc])
        im = ax.imshow(m.numpy(), cmap="viridis", vmin=0, vmax=vmax, origin="upper")
        off = [(i, j) for i in range(length) for j in range(length) if i != j and m[i, j] == 0.0]
        if off:
            ax.scatter([j for _, j in off], [i for i, _ in off], s=10, facecolors="none", edgecolors="red",
                       linewidths=0.8)
        ax.text(0.5, -0.16, f"red circles: exactly 0 off the diagonal ({len(off)} pairs)", transform=ax.transAxes,
                ha="center", va="top", fontsize=9, color="red" if off else "black")
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_xlabel("output position j")
        ax.set_ylabel("output position i")
        ax.set_title(f"{enc} encoding, trained")
    fig.colorbar(im, ax=axes[:2].tolist(), shrink=0.85,
                 label="‖out_i − out_j‖₂ of the output logits (logit units)")

    ax = axes[2]
    floor = 1e-9
    labels, data = [], []
    for enc in ENCODINGS:
        for stage in ("untrained", "trained"):
            labels.append(f"{enc}\n{stage}")
            data.append([max(v, floor) for v in dist[enc][stage]])
    gen = torch.Generator().manual_seed(0)
    for i, d in enumerate(data):
        jitter = (torch.rand(len(d), generator=gen) - 0.5) * 0.35
        ax.scatter((i + jitter).tolist(), d, s=9, alpha=0.5, color="C0" if i < 2 else "C3",
                   label=("periodic" if i == 0 else "sinusoidal" if i == 2 else None))
    ax.axhline(floor, color="gray", ls=":", lw=1)
    ax.text(1.5, floor * 2.2, "exactly 0 (drawn at 1e-9)", ha="center", fontsize=8, color="gray")
    ax.axhline(n["identical_threshold"], color="k", ls="--", lw=0.8, label=f"threshold {n['identical_threshold']:g}")
    ax.set_yscale("log")
    ax.set_ylim(floor / 3, None)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("max |out[p] − out[p+P]| (logit units)")
    ax.set_title(f"same token at p and p+{period} in random context\n({n['eval_sequences']} sequences of "
                 f"{length} tokens)")
    ax.grid(True, axis="y", which="major", alpha=0.3)
    ax.legend(loc="center right", fontsize=8)
    fig.suptitle(f"Periodic positions, period P={period}. Left: a motif of {period} tokens repeated "
                 f"{length // period} times, tokens at {n['figure_changed_positions']} changed; models trained "
                 f"{n['train_steps']} steps on reversal")
    path = out_dir / "periodic_distances.png"
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path.name
