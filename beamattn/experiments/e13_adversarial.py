"""Experiment 13: are sharp (low-entropy) attentions easier to fool than smooth ones?

Task: a "find the marked token, read its class" classifier. Each input is a set of ``N = 8`` tokens
``x_j = [marker_j (8), content_j (8)]`` with entries near ±1; exactly one token carries the fixed marker
pattern (all ones), the others random ±1 markers; every token's content is one of ``C = 4`` class
prototypes (±1 patterns) plus N(0, 0.3²) noise. The label is the class of the marked token, so the
prediction depends on which key the attention picks.

Model: one learned query, keys ``W_k x``, values ``W_v x``, cosine scores at :func:`attend`'s fixed scale
``sqrt(d)`` (so the temperature really bounds how sharp the weights can be — a dot-product model could
undo it by growing its weights), then a linear head on the attended value.

Two ways to vary the entropy:

- **trained per temperature**: one model trained at each temperature ``T`` (annealed from ``T = 1`` during
  the first half of training, which keeps the small temperatures trainable), two training seeds;
- **one model, several temperatures**: the model trained at ``T = 0.5`` evaluated at every ``T`` (same
  weights; only the softmax sharpness changes). Its attention argmax does not depend on ``T`` at all.

Attacks (white-box, L∞ budget ``ε`` on the whole input, every token): FGSM (one signed-gradient step of
size ``ε``) and PGD (10 steps of ``2.5 ε / 10``, projected), aimed at either

- the **prediction**: maximise the cross-entropy of the true class (success = a clean-correct example
  is misclassified), or
- the **attention**: maximise ``max_{j≠t} s_j - s_t`` on the raw cosine scores (success = the attention
  argmax leaves the marked token ``t``; raw scores, so a saturated softmax does not hide the gradient).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import attend
from ..core.diagnostics import attention_entropy
from ..io import save_figure_atomic
from .registry import Outcome, experiment

NUM_TOKENS, MARKER_DIM, CONTENT_DIM, NUM_CLASSES, MODEL_DIM = 8, 8, 8, 4, 16
PROTOTYPES = torch.tensor([[1, 1, 1, 1, -1, -1, -1, -1], [1, -1, 1, -1, 1, -1, 1, -1],
                           [-1, -1, -1, -1, 1, 1, 1, 1], [-1, 1, -1, 1, -1, 1, -1, 1]], dtype=torch.float32)
MARGIN = 0.05  # success-rate difference (absolute) that counts as a trend
SHARED_T = 0.5  # the temperature the "one model" is trained at


def make_data(n: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Inputs ``[n, N, 16]``, labels ``[n]``, index of the marked token ``[n]``."""
    marker = torch.randint(0, 2, (n, NUM_TOKENS, MARKER_DIM), generator=g).float() * 2 - 1
    target = torch.randint(0, NUM_TOKENS, (n,), generator=g)
    marker[torch.arange(n), target] = 1.0  # the marker pattern
    cls = torch.randint(0, NUM_CLASSES, (n, NUM_TOKENS), generator=g)
    content = PROTOTYPES[cls] + 0.3 * torch.randn(n, NUM_TOKENS, CONTENT_DIM, generator=g)
    return torch.cat([marker, content], -1), cls[torch.arange(n), target], target


class MarkedTokenClassifier(nn.Module):
    """One learned query over the tokens (cosine scores, temperature ``T``), linear head on the output."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.query = nn.Parameter(torch.randn(1, MODEL_DIM) * 0.3)
        self.k = nn.Linear(MARKER_DIM + CONTENT_DIM, MODEL_DIM)
        self.v = nn.Linear(MARKER_DIM + CONTENT_DIM, MODEL_DIM)
        self.head = nn.Linear(MODEL_DIM, NUM_CLASSES)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x [B, N, 16]`` → logits ``[B, C]``, weights ``[B, N]``, raw cosine scores ``[B, N]``."""
        k, v = self.k(x), self.v(x)  # [B, N, d]
        q = self.query.expand(x.shape[0], 1, -1)  # [B, 1, d]
        out, w = attend(q, k, v, score="cosine", temperature=self.temperature, return_weights=True)
        raw = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)).squeeze(1)  # [B, N]
        return self.head(out.squeeze(1)), w.squeeze(1), raw


def train(temperature: float, steps: int, seed: int, data: tuple[Tensor, Tensor, Tensor]) -> MarkedTokenClassifier:
    x, y, _ = data
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MarkedTokenClassifier(temperature)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        # Anneal from T = 1 to the target temperature over the first half (log-linear).
        frac = min(1.0, step / max(1, steps // 2))
        model.temperature = temperature ** frac
        idx = torch.randint(0, x.shape[0], (128,), generator=g)
        loss = F.cross_entropy(model(x[idx])[0], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.temperature = temperature
    return model.eval()


def attack(model: MarkedTokenClassifier, x: Tensor, y: Tensor, target: Tensor, eps: float, steps: int,
           aim: str) -> tuple[Tensor, Tensor]:
    """FGSM (``steps=1``) or PGD; returns the predicted class and the attention argmax on ``x + δ``."""
    delta = torch.zeros_like(x)
    step_size = eps if steps == 1 else 2.5 * eps / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        logits, _, raw = model(x + delta)
        if aim == "prediction":
            loss = F.cross_entropy(logits, y, reduction="sum")
        else:  # the attention: best distractor score minus the marked token's score
            s_t = raw.gather(1, target[:, None]).squeeze(1)
            s_other = raw.scatter(1, target[:, None], -math.inf).amax(1)
            loss = (s_other - s_t).sum()
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step_size * grad.sign()).clamp(-eps, eps)
    with torch.no_grad():
        logits, w, _ = model(x + delta)
    return logits.argmax(1), w.argmax(1)


def evaluate(model: MarkedTokenClassifier, test: tuple[Tensor, Tensor, Tensor], eps_list: list[float],
             attention_attacks: bool = True) -> dict:
    x, y, target = test
    with torch.no_grad():
        logits, w, raw = model(x)
    pred, top = logits.argmax(1), w.argmax(1)
    correct, attends = pred == y, top == target
    row = {"temperature": model.temperature, "clean_accuracy": correct.float().mean().item(),
           "entropy_nats": attention_entropy(w).mean().item(),
           "weight_on_marked": w.gather(1, target[:, None]).mean().item(),
           "attention_accuracy": attends.float().mean().item(),
           "raw_score_margin": (raw.gather(1, target[:, None]).squeeze(1)
                                - raw.scatter(1, target[:, None], -math.inf).amax(1)).mean().item()}
    for name, steps in (("fgsm", 1), ("pgd", 10)):
        pred_sr, robust, att_sr = [], [], []
        for eps in eps_list:
            p, _ = attack(model, x, y, target, eps, steps, "prediction")
            pred_sr.append((p[correct] != y[correct]).float().mean().item())
            robust.append((p == y).float().mean().item())
            if attention_attacks:
                _, a = attack(model, x, y, target, eps, steps, "attention")
                att_sr.append((a[attends] != target[attends]).float().mean().item())
        row[f"{name}_prediction_success"] = pred_sr
        row[f"{name}_robust_accuracy"] = robust
        if attention_attacks:
            row[f"{name}_attention_success"] = att_sr
    return row


def _mean(rows: list[dict], key: str) -> list[float] | float:
    vals = [r[key] for r in rows]
    if isinstance(vals[0], list):
        return [sum(v[i] for v in vals) / len(vals) for i in range(len(vals[0]))]
    return sum(vals) / len(vals)


@experiment(
    "adversarial-vs-entropy",
    title="Adversarial attacks vs attention entropy",
    claim="Adversarial perturbations aimed at the attention (FGSM, PGD) flip sharp, low-entropy attention more "
          "easily; smoother, higher-entropy (higher-temperature) attention is more robust.",
    order=13,
)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    temps = [0.25, 1.0, 4.0] if small else [0.25, 0.5, 1.0, 2.0, 4.0]
    eps_list = [0.2, 0.4, 0.6] if small else [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8]
    seeds = [seed] if small else [seed, seed + 1]
    steps = 150 if small else 300
    n_train, n_test = (2000, 250) if small else (4000, 600)
    g = torch.Generator().manual_seed(seed)
    train_data, test = make_data(n_train, g), make_data(n_test, g)

    # (B) one model trained per temperature (and per training seed), averaged over the seeds.
    per_t = []
    for t in temps:
        rows = [evaluate(train(t, steps, s, train_data), test, eps_list) for s in seeds]
        per_t.append({k: _mean(rows, k) for k in rows[0]})
    # (A) one model (trained at SHARED_T) evaluated at every temperature.
    shared = train(SHARED_T, steps, seed, train_data)
    one_model = []
    for t in temps:
        shared.temperature = t
        one_model.append(evaluate(shared, test, eps_list, attention_attacks=False))

    def mean_success(rows, key):
        return [sum(r[key]) / len(r[key]) for r in rows]

    ent_b = [r["entropy_nats"] for r in per_t]
    ent_a = [r["entropy_nats"] for r in one_model]
    pgd_b = mean_success(per_t, "pgd_prediction_success")
    pgd_a = mean_success(one_model, "pgd_prediction_success")
    fgsm_b = mean_success(per_t, "fgsm_prediction_success")
    att_b = mean_success(per_t, "pgd_attention_success")
    # Sharpest vs smoothest: positive = sharp attention is flipped more often (the claim's direction).
    lo_b, hi_b = ent_b.index(min(ent_b)), ent_b.index(max(ent_b))
    lo_a, hi_a = ent_a.index(min(ent_a)), ent_a.index(max(ent_a))
    diff_b = pgd_b[lo_b] - pgd_b[hi_b]
    diff_a = pgd_a[lo_a] - pgd_a[hi_a]
    diff_att = att_b[lo_b] - att_b[hi_b]
    supported = diff_b >= MARGIN and diff_a >= MARGIN
    opposite = diff_b <= -MARGIN and diff_a <= -MARGIN

    numbers = {
        "temperatures": temps, "eps": eps_list, "training_seeds": seeds, "train_steps": steps,
        "num_test": n_test, "margin": MARGIN, "shared_temperature": SHARED_T,
        "trained_per_temperature": per_t, "one_model_all_temperatures": one_model,
        "mean_pgd_prediction_success_per_temperature_trained": pgd_b,
        "mean_fgsm_prediction_success_per_temperature_trained": fgsm_b,
        "mean_pgd_attention_success_per_temperature_trained": att_b,
        "mean_pgd_prediction_success_one_model": pgd_a,
        "sharp_minus_smooth_pgd_success_trained": diff_b,
        "sharp_minus_smooth_pgd_success_one_model": diff_a,
        "sharp_minus_smooth_pgd_attention_success_trained": diff_att,
    }
    figures = [_plot(out_dir, numbers)]
    direction = ("supports the claim" if supported else
                 "is the OPPOSITE of the claim: the smoother attention was flipped more easily" if opposite else
                 "shows no consistent trend")
    verdict = (f"Mean PGD success on the prediction (over ε = {eps_list[0]}–{eps_list[-1]}): models trained per "
               f"temperature {pgd_b[lo_b]:.2f} at the sharpest attention (T = {temps[lo_b]}, entropy "
               f"{ent_b[lo_b]:.2f} nats) vs {pgd_b[hi_b]:.2f} at the smoothest (T = {temps[hi_b]}, "
               f"{ent_b[hi_b]:.2f} nats); one model at several temperatures {pgd_a[lo_a]:.2f} vs {pgd_a[hi_a]:.2f} "
               f"({ent_a[lo_a]:.2f} vs {ent_a[hi_a]:.2f} nats; clean accuracy "
               f"{one_model[lo_a]['clean_accuracy']:.2f} vs {one_model[hi_a]['clean_accuracy']:.2f}). PGD on the attention argmax: {att_b[lo_b]:.2f} vs "
               f"{att_b[hi_b]:.2f}. Sharp minus smooth = {diff_b:+.2f} / {diff_a:+.2f} (margin {MARGIN}): the "
               f"measurement {direction}. Smoothing mixes the distractors' values into the output, which shrinks "
               f"the class margin an L∞ attacker has to overcome.")
    return Outcome(numbers=numbers, verdict=verdict, supported=supported, figures=figures)


def _plot(out_dir: Path, n: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    temps, eps = n["temperatures"], n["eps"]
    per_t, one = n["trained_per_temperature"], n["one_model_all_temperatures"]
    colors = plt.cm.viridis([i / max(1, len(temps) - 1) * 0.9 for i in range(len(temps))])
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    for c, t, r in zip(colors, temps, per_t):
        lab = f"T={t} ({r['entropy_nats']:.2f} nats)"
        axes[0].plot(eps, r["pgd_prediction_success"], "o-", color=c, label=f"{lab}, PGD")
        axes[0].plot(eps, r["fgsm_prediction_success"], "s:", color=c, alpha=0.7, label=f"{lab}, FGSM")
        axes[1].plot(eps, r["pgd_attention_success"], "o-", color=c, label=f"{lab}, PGD")
        axes[1].plot(eps, r["fgsm_attention_success"], "s:", color=c, alpha=0.7, label=f"{lab}, FGSM")
    axes[0].set_title("Prediction flips (models trained per temperature)")
    axes[1].set_title("Attention-argmax flips (models trained per temperature)")
    for ax in axes[:2]:
        ax.set_xlabel("L∞ budget ε (input units; token entries are ±1)")
        ax.set_ylabel("attack success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=6.5, ncol=2, loc="lower right")
    axes[1].text(0.97, 0.04, "colours and styles as on the left", transform=axes[1].transAxes, ha="right",
                 fontsize=7, color="0.35")
    ax = axes[2]
    ent_b = [r["entropy_nats"] for r in per_t]
    ent_a = [r["entropy_nats"] for r in one]
    ax.plot(ent_b, n["mean_pgd_prediction_success_per_temperature_trained"], "o-", color="C0",
            label="PGD → prediction, trained per T")
    ax.plot(ent_b, n["mean_fgsm_prediction_success_per_temperature_trained"], "s:", color="C0",
            label="FGSM → prediction, trained per T")
    ax.plot(ent_b, n["mean_pgd_attention_success_per_temperature_trained"], "^-", color="C2",
            label="PGD → attention argmax, trained per T")
    ax.plot(ent_a, n["mean_pgd_prediction_success_one_model"], "D--", color="C3",
            label=f"PGD → prediction, one model (trained at T={n['shared_temperature']})")
    last = -math.inf
    for t, e, s in zip(temps, ent_b, n["mean_pgd_prediction_success_per_temperature_trained"]):
        if e - last > 0.15:  # skip labels that would overlap
            ax.annotate(f"T={t}", (e, s), textcoords="offset points", xytext=(-8, 9), fontsize=7, color="C0")
            last = e
    ax.set_xlabel("mean attention entropy on clean inputs (nats)")
    ax.set_ylabel(f"success rate, mean over ε = {eps[0]}–{eps[-1]}")
    ax.set_title("Success vs entropy (claim: falls as entropy grows)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"Adversarial L∞ attacks on a marked-token attention classifier ({NUM_TOKENS} tokens, "
                 f"{n['num_test']} test inputs, {len(n['training_seeds'])} training seed(s))")
    fig.tight_layout()
    save_figure_atomic(fig, out_dir / "adversarial_entropy.png")
    plt.close(fig)
    return "adversarial_entropy.png"
