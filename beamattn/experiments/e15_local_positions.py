"""Experiment 15: with local (windowed) attention, can a token tell where it is in the sequence?

Task: sequences of ``L`` i.i.d. uniform random tokens; each token must predict whether its absolute
position is in the second half (``i >= L/2``): chance is 50 %, and nothing in the token ids helps.

Models: :class:`beamattn.nlp.Encoder` with ``num_layers`` blocks of local attention, ``|i - j| <= w``,
and

- ``positions="relative"`` (a learned bias per relative distance: only "how far is that key from me"),
- ``positions="sinusoidal"`` and ``"learned"`` (absolute encodings added to the tokens),
- relative positions plus a **global token**: a special token in front of the sequence that every query
  may attend (and that attends everything), whatever the window. Implemented with the encoder's boolean
  mask — the band ``|i - j| <= w`` OR key 0 OR query 0 — because :func:`attend` ANDs its ``window``
  with a mask. The relative bias from token ``i`` to the global token is the bias of distance ``i``
  (``max_length`` covers the whole sequence), so the global token acts as an anchor.

With relative positions and i.i.d. tokens, every query farther than the receptive field ``R = layers·w``
from both ends sees exactly the same distribution of inputs wherever it is: its best guess is a coin
flip. Closer to an end, the window is cut (fewer keys to normalise over), which the relative model can
detect — so it knows it is near the start (first half) or the end (second half).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..io import save_figure_atomic
from ..nlp.model import Encoder, EncoderConfig
from .registry import Outcome, at_least, at_most, experiment

SETTINGS = ("relative", "sinusoidal", "learned", "relative + global token")
CHANCE_MARGIN = 0.10  # interior accuracy of the relative model within 0.5 ± this = "chance"
ABSOLUTE_MARGIN = 0.30  # absolute encodings must beat the relative model in the interior by this much
LR = 1e-2


def _band_with_global(length: int, window: int) -> Tensor:
    """Bool mask ``[L+1, L+1]``: the local band, plus every query ↔ the global token at index 0."""
    i = torch.arange(length + 1).unsqueeze(-1)
    j = torch.arange(length + 1)
    return ((i - j).abs() <= window) | (j == 0) | (i == 0)


def _model(setting: str, vocab: int, length: int, window: int, layers: int, dim: int) -> tuple[Encoder, Tensor | None]:
    glob = setting == "relative + global token"
    positions = "relative" if glob else setting
    cfg = EncoderConfig(vocab_size=vocab + 1, dim=dim, num_heads=2, num_layers=layers, positions=positions,
                        max_length=length + 1, window=None if glob else window)
    return Encoder(cfg, num_outputs=2), (_band_with_global(length, window) if glob else None)


def _batch(n: int, length: int, vocab: int, g: torch.Generator, glob: bool) -> Tensor:
    ids = torch.randint(1, vocab + 1, (n, length), generator=g)  # tokens 1..vocab; 0 = the global token
    return torch.cat([torch.zeros(n, 1, dtype=torch.long), ids], 1) if glob else ids


def _logits(model: Encoder, ids: Tensor, mask: Tensor | None) -> Tensor:
    logits, _ = model(ids, mask=mask)
    return logits[:, 1:] if mask is not None else logits  # [B, L, 2], the global token dropped


def train_and_eval(setting: str, length: int, vocab: int, window: int, layers: int, dim: int, steps: int,
                   batch: int, n_test: int, seed: int) -> list[float]:
    """Train one setting; return the test accuracy at each position ``[L]``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model, mask = _model(setting, vocab, length, window, layers, dim)
    glob = mask is not None
    labels = (torch.arange(length) >= length // 2).long()  # [L]
    g = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(steps):
        ids = _batch(batch, length, vocab, g, glob)
        logits = _logits(model, ids, mask)
        loss = F.cross_entropy(logits.reshape(-1, 2), labels.repeat(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    g_test = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        pred = _logits(model, _batch(n_test, length, vocab, g_test, glob), mask).argmax(-1)  # [N, L]
    return (pred == labels).float().mean(0).tolist()


@experiment(
    "local-attention-positions",
    title="Local attention: relative vs absolute positions",
    claim="With local (windowed) attention, relative positional cues alone cannot recover a token's absolute "
          "position; absolute encodings (or a global token) can.",
    order=15,
)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    length, vocab, window, layers, dim = (20, 16, 2, 2, 32) if small else (48, 16, 2, 2, 32)
    steps, batch, n_test = (50, 16, 256) if small else (300, 24, 1024)
    reach = layers * window  # receptive field on each side
    per_pos = {s: train_and_eval(s, length, vocab, window, layers, dim, steps, batch, n_test, seed)
               for s in SETTINGS}

    dist = [min(i, length - 1 - i) for i in range(length)]  # distance to the nearest end
    edge = [i for i in range(length) if dist[i] < reach]
    interior = [i for i in range(length) if dist[i] >= reach]

    def mean(xs, idx):
        return sum(xs[i] for i in idx) / len(idx)

    summary = {s: {"overall": mean(a, range(length)), "edge": mean(a, edge), "interior": mean(a, interior)}
               for s, a in per_pos.items()}
    by_distance = {s: [mean(a, [i for i in range(length) if dist[i] == d]) for d in range(length // 2)]
                   for s, a in per_pos.items()}
    rel, glob = summary["relative"], summary["relative + global token"]
    best_abs = max(summary["sinusoidal"]["interior"], summary["learned"]["interior"])
    criteria = [at_most("relative positions: |interior accuracy − 0.5|", abs(rel["interior"] - 0.5), CHANCE_MARGIN),
                at_least("best absolute encoding − relative, interior accuracy", best_abs - rel["interior"],
                         ABSOLUTE_MARGIN)]
    rel_chance, abs_wins = criteria[0].holds(), criteria[1].holds()
    glob_wins = glob["interior"] - rel["interior"] >= ABSOLUTE_MARGIN
    edge_detected = rel["edge"] - rel["interior"] >= CHANCE_MARGIN
    supported = rel_chance and abs_wins

    numbers = {"length": length, "vocab": vocab, "window": window, "layers": layers, "receptive_field": reach,
               "train_steps": steps, "batch": batch, "num_test": n_test, "chance": 0.5,
               "chance_margin": CHANCE_MARGIN, "absolute_margin": ABSOLUTE_MARGIN,
               "accuracy_by_position": per_pos, "accuracy_by_distance_to_end": by_distance, "summary": summary,
               "relative_interior_at_chance": rel_chance, "absolute_beats_relative": abs_wins,
               "global_token_beats_relative": glob_wins,
               "relative_detects_edges": edge_detected}
    figures = [_plot(out_dir, numbers)]
    verdict = (f"Accuracy of 'is position >= L/2' (L = {length}, window ±{window}, {layers} layers, receptive field "
               f"±{reach}) in the interior (>= {reach} tokens from both ends): relative {rel['interior']:.2f} "
               f"(chance 0.50), sinusoidal {summary['sinusoidal']['interior']:.2f}, learned "
               f"{summary['learned']['interior']:.2f}, relative + global token {glob['interior']:.2f}. Within "
               f"{reach} tokens of an end the relative model reaches {rel['edge']:.2f}: "
               + ("the cut window (fewer keys) tells it which end it is near. " if edge_detected else
                  "it could in principle notice the cut window, but the softmax renormalises over the keys that "
                  "remain, so the only trace is how many random tokens get averaged (a variance cue), which "
                  "training did not pick up — its position is no better known there. ")
               + ("Supported: relative cues alone are at chance away from the ends; absolute encodings "
                  f"{'and the global token ' if glob_wins else ''}recover the position."
                  if supported else
                  f"Not supported with margins ±{CHANCE_MARGIN} (chance) and {ABSOLUTE_MARGIN} (absolute gain)."))
    return Outcome(numbers=numbers, verdict=verdict, supported=supported, figures=figures, criteria=criteria)


def _plot(out_dir: Path, n: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    length, reach = n["length"], n["receptive_field"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.4), gridspec_kw={"width_ratios": [1.6, 1]})
    ax = axes[0]
    styles = {"relative": ("o-", "C3"), "sinusoidal": ("s-", "C0"), "learned": ("^-", "C2"),
              "relative + global token": ("D--", "C4")}
    for s, acc in n["accuracy_by_position"].items():
        m, c = styles[s]
        ax.plot(range(length), acc, m, color=c, ms=3.5, lw=1.3,
                label=f"{s} (interior {n['summary'][s]['interior']:.2f})")
    for lo, hi in ((-0.5, reach - 0.5), (length - reach - 0.5, length - 0.5)):
        ax.axvspan(lo, hi, color="0.85", zorder=0)
    ax.axvline(length / 2 - 0.5, color="0.4", ls=":", lw=1)
    ax.axhline(0.5, color="k", ls=":", lw=1, label="chance (0.5)")
    ax.text(reach / 2 - 0.5, 0.36, "edge zone\n(window cut)", ha="center", fontsize=8)
    ax.text(length - reach / 2 - 0.5, 0.36, "edge zone", ha="center", fontsize=8)
    ax.text(length / 2, 0.6, " label flips\n at L/2", ha="left", fontsize=8, color="0.3")
    ax.set_xlabel("absolute position i (tokens)")
    ax.set_ylabel("test accuracy of 'i ≥ L/2'")
    ax.set_ylim(0.3, 1.03)
    ax.set_xlim(-1, length)
    ax.set_title(f"Accuracy at each position (L = {length}, window ±{n['window']}, {n['layers']} layers)")
    ax.legend(fontsize=8, loc="center", bbox_to_anchor=(0.5, 0.74), ncol=2, framealpha=0.95)
    ax.grid(True, alpha=0.3)
    ax = axes[1]
    for s, acc in n["accuracy_by_distance_to_end"].items():
        m, c = styles[s]
        ax.plot(range(len(acc)), acc, m, color=c, ms=3.5, lw=1.3, label=s)
    ax.axvspan(-0.5, reach - 0.5, color="0.85", zorder=0)
    ax.axhline(0.5, color="k", ls=":", lw=1)
    ax.set_xlabel("distance to the nearest end of the sequence (tokens)")
    ax.set_ylabel("test accuracy (both ends averaged)")
    ax.set_ylim(0.3, 1.03)
    ax.set_title(f"vs distance to the edge (receptive field ±{reach} shaded)")
    ax.legend(fontsize=8, loc="center right", framealpha=0.95)
    ax.grid(True, alpha=0.3)
    fig.suptitle("Local attention: can a token find its absolute position among i.i.d. random tokens?")
    fig.tight_layout()
    save_figure_atomic(fig, out_dir / "local_positions.png")
    plt.close(fig)
    return "local_positions.png"
