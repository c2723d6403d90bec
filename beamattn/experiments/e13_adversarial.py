"""Experiment 13: is smoother (higher-entropy) attention more robust to attacks on the attention?

Why a redesign: the first version set the entropy by a temperature on a task with one marked token,
so a smooth attention had to mix the distractors into its output (clean accuracy 0.99 → 0.74), and
its L∞ attack perturbed every input feature, including the marked token's own content: the attack
could bypass the attention, and "smooth" was simply a worse, lower-margin classifier.

Fair design:

- **Task where spread attention is optimal.** ``N = 8`` tokens ``x_j = [marker_j (8), content_j (8)]``;
  ``R = 3`` tokens are marked (marker = the all-ones pattern + N(0, 0.3²) noise, so the marked tokens'
  keys differ a little), the others have random ±1 markers. The marked tokens carry **redundant**
  copies of the label: the same class prototype (±1 pattern) + N(0, 0.3²) noise; distractors carry
  random classes. Attending to one marked token or spreading over all three both solve the task.
- **Keys read the markers, values the contents** (``k = W_k·marker``, ``v = W_v·content``, one learned
  query, dot scores, linear head), so an attack on the markers is an attack on the attention alone.
- **Entropy set by a regulariser**, not by a temperature: loss = CE + (H(attention) − H*)², ramped in
  over the first half of training, with the target H* = 0 for the sharp model (one marked token) and
  H* = ln 3 for the smooth one (the three marked tokens evenly); the clean accuracy is checked to match.
- **Attacks** (L∞, white box) restricted to (a) the **markers** of every token (the attention's inputs:
  the claim's attack) or (b) the **contents of the distractors** (what a spread attention might let in).
- **Per-example minimal ε\\*** by bisection: at each ε, PGD on the logit margin ``z_y − max_{j≠y} z_j``
  (20 steps, restarts: from 0, from a random point, and with gradients taken through a softened
  softmax at temperature 4 — the check against gradient masking by a saturated, low-entropy softmax;
  success is always judged on the true model). ε\\* is normalised by the clean margin.
- **Gradient-masking checks**: every example falls to the marker attack by ``EPS_MAX`` (no censoring;
  the distractor attack may legitimately never flip a model that ignores the distractors), and a gradient-free
  random-corner search at ε = 0.9·ε\\* (100 corners) almost never succeeds where PGD's ε\\* says none
  exists below it.
- **Total-variation shift** ``½ Σ_j |a_j(x+δ) − a_j(x)|`` of the attention under the marker attack at
  a fixed ε.

Criterion: median ε\\*/clean margin of the smooth model ≥ ``RATIO_MIN`` × the sharp model's (marker
attack), with both clean accuracies ≥ ``ACC_MIN`` and no censored examples.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import attend
from ..core.diagnostics import attention_entropy
from ..io import save_figure_atomic
from .registry import Outcome, at_least, at_most, experiment

NUM_TOKENS, MARKER_DIM, CONTENT_DIM, NUM_CLASSES, MODEL_DIM, NUM_MARKED = 8, 8, 8, 4, 16, 3
PROTOTYPES = torch.tensor([[1, 1, 1, 1, -1, -1, -1, -1], [1, -1, 1, -1, 1, -1, 1, -1],
                           [-1, -1, -1, -1, 1, 1, 1, 1], [-1, 1, -1, 1, -1, 1, -1, 1]], dtype=torch.float32)
BETAS = {"sharp": 0.0, "smooth": math.log(3)}  # entropy targets H* (nats)
ENTROPY_WEIGHT = 1.0  # loss = CE + ENTROPY_WEIGHT * (H(attention) - H*)^2
EPS_MAX = 4.0  # bisection range [0, EPS_MAX] (marker entries are ±1: 2 rewrites any sign)
BISECT_STEPS = 10
PGD_STEPS = 20
SOFT_GRAD_TEMPERATURE = 4.0  # gradient-masking check: gradients through softmax(s / 4)
TV_EPS = 0.5  # ε of the reported total-variation shift
RATIO_MIN = 1.1  # smooth / sharp median ε*/margin must be at least this (the claim's direction, with margin)
ACC_MIN = 0.97  # both models must solve the task (matched clean accuracy)
CENSORED_MAX = 0.0  # fraction of examples not broken by EPS_MAX (gradient masking would show here)
RANDOM_BEATS_PGD_MAX = 0.05  # fraction where random corners at 0.9 ε* succeed (PGD then missed a smaller ε)


def make_data(n: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Inputs ``[n, N, 16]``, labels ``[n]``, marked-token mask ``[n, N]`` (bool, R per row)."""
    marker = torch.randint(0, 2, (n, NUM_TOKENS, MARKER_DIM), generator=g).float() * 2 - 1
    order = torch.rand(n, NUM_TOKENS, generator=g).argsort(-1)
    marked = torch.zeros(n, NUM_TOKENS, dtype=torch.bool).scatter(1, order[:, :NUM_MARKED], True)  # [n, N]
    noisy_pattern = 1.0 + 0.3 * torch.randn(n, NUM_TOKENS, MARKER_DIM, generator=g)
    marker = torch.where(marked[..., None], noisy_pattern, marker)
    label = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    cls = torch.randint(0, NUM_CLASSES, (n, NUM_TOKENS), generator=g)
    cls = torch.where(marked, label[:, None], cls)  # redundant copies of the label on the marked tokens
    content = PROTOTYPES[cls] + 0.3 * torch.randn(n, NUM_TOKENS, CONTENT_DIM, generator=g)
    return torch.cat([marker, content], -1), label, marked


class MarkedTokensClassifier(nn.Module):
    """One learned query; keys from the markers, values from the contents; dot scores; linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, MODEL_DIM) * 0.3)
        self.k = nn.Linear(MARKER_DIM, MODEL_DIM)
        self.v = nn.Linear(CONTENT_DIM, MODEL_DIM)
        self.head = nn.Linear(MODEL_DIM, NUM_CLASSES)

    def forward(self, x: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """``x [B, N, 16]`` → logits ``[B, C]``, attention weights ``[B, N]``."""
        k, v = self.k(x[..., :MARKER_DIM]), self.v(x[..., MARKER_DIM:])  # [B, N, d]
        q = self.query.expand(x.shape[0], 1, -1)  # [B, 1, d]
        out, w = attend(q, k, v, temperature=temperature, return_weights=True)
        return self.head(out.squeeze(1)), w.squeeze(1)


def train(beta: float, steps: int, seed: int, data: tuple[Tensor, Tensor, Tensor]) -> MarkedTokensClassifier:
    x, y, _ = data
    g = torch.Generator().manual_seed(seed + 7)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MarkedTokensClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (128,), generator=g)
        logits, w = model(x[idx])
        h = attention_entropy(w).mean()
        # an entropy target: distance to H* (0 = one token, ln 3 = the three marked tokens evenly), ramped in
        # over the first half so that the task (find the markers) is learnt before the entropy is shaped
        ramp = min(1.0, step / max(1, steps // 2))
        loss = F.cross_entropy(logits, y[idx]) + ramp * ENTROPY_WEIGHT * (h - beta) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """``z_y − max_{j≠y} z_j`` per example ``[B]`` (< 0: misclassified)."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    return z_y - logits.scatter(1, y[:, None], -math.inf).amax(1)


LogitFn = Callable[[Tensor, float], Tensor]  # (x, gradient temperature) -> logits


def pgd_success(fn: LogitFn, x: Tensor, y: Tensor, where: Tensor, eps: Tensor, steps: int,
                g: torch.Generator, soft_temperature: float | None = None) -> Tensor:
    """Whether PGD finds an L∞ perturbation of at most ``eps [B]`` on the features ``where`` (bool,
    broadcastable to ``x``) that makes the margin negative; three restarts (from 0, from a random point, and
    — if ``soft_temperature`` — with gradients through the softened model). Success is judged on the true
    model (temperature 1). Returns ``[B]`` bool."""
    e = eps.view(-1, *([1] * (x.dim() - 1)))  # [B, 1, ...]
    mask = where.expand_as(x).float()
    found = torch.zeros(x.shape[0], dtype=torch.bool)
    starts = [("zero", 1.0), ("random", 1.0)] + ([("zero", soft_temperature)] if soft_temperature else [])
    for start, temp in starts:
        delta = torch.zeros_like(x) if start == "zero" else (torch.rand(x.shape, generator=g) * 2 - 1) * e * mask
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = margin(fn(x + delta, temp), y).sum()
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() - 2.5 * e / steps * grad.sign() * mask).clamp(-e, e)
            with torch.no_grad():
                found |= margin(fn(x + delta, 1.0), y) < 0
    return found


def minimal_eps(fn: LogitFn, x: Tensor, y: Tensor, where: Tensor, eps_max: float, g: torch.Generator,
                bisect_steps: int = BISECT_STEPS, steps: int = PGD_STEPS,
                soft_temperature: float | None = SOFT_GRAD_TEMPERATURE) -> Tensor:
    """Per-example smallest ε (L∞, on the features ``where``) at which PGD flips the prediction, by bisection
    on ``[0, eps_max]`` to a tolerance ``eps_max / 2**bisect_steps``; ``eps_max`` where even that fails
    (censored). Examples already misclassified get 0. Returns ``[B]``."""
    with torch.no_grad():
        wrong = margin(fn(x, 1.0), y) < 0
    lo = torch.zeros(x.shape[0])
    hi = torch.full((x.shape[0],), eps_max)
    broken_at_max = pgd_success(fn, x, y, where, hi, steps, g, soft_temperature)
    for _ in range(bisect_steps):
        mid = (lo + hi) / 2
        ok = pgd_success(fn, x, y, where, mid, steps, g, soft_temperature)
        hi = torch.where(ok, mid, hi)
        lo = torch.where(ok, lo, mid)
    eps = torch.where(broken_at_max, hi, torch.full_like(hi, eps_max))
    return torch.where(wrong, torch.zeros_like(eps), eps)


def random_corner_success(fn: LogitFn, x: Tensor, y: Tensor, where: Tensor, eps: Tensor, tries: int,
                          g: torch.Generator) -> Tensor:
    """Gradient-free check: does any of ``tries`` random corners ``±eps`` on ``where`` flip the prediction?"""
    e = eps.view(-1, *([1] * (x.dim() - 1)))
    mask = where.expand_as(x).float()
    found = torch.zeros(x.shape[0], dtype=torch.bool)
    with torch.no_grad():
        for _ in range(tries):
            sign = torch.randint(0, 2, x.shape, generator=g).float() * 2 - 1
            found |= margin(fn(x + sign * e * mask, 1.0), y) < 0
    return found


def _pgd_delta(fn: LogitFn, x: Tensor, y: Tensor, where: Tensor, eps: float, steps: int) -> Tensor:
    """PGD (margin loss, from 0) perturbation at a fixed ``eps``."""
    mask = where.expand_as(x).float()
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(margin(fn(x + delta, 1.0), y).sum(), delta)
        delta = (delta.detach() - 2.5 * eps / steps * grad.sign() * mask).clamp(-eps, eps)
    return delta.detach()


def _median(t: Tensor) -> float:
    return float(t.median())


def evaluate(model: MarkedTokensClassifier, test: tuple[Tensor, Tensor, Tensor], g: torch.Generator,
             bisect_steps: int, random_tries: int) -> dict:
    x, y, marked = test
    fn: LogitFn = lambda inp, temp: model(inp, temperature=temp)[0]  # noqa: E731
    with torch.no_grad():
        logits, w = model(x)
    m = margin(logits, y)
    correct = m > 0
    markers = torch.zeros_like(x, dtype=torch.bool)
    markers[..., :MARKER_DIM] = True
    contents = torch.zeros_like(x, dtype=torch.bool)
    contents[..., MARKER_DIM:] = True
    distractor_contents = contents & ~marked[..., None]
    row = {"clean_accuracy": correct.float().mean().item(),
           "entropy_nats": attention_entropy(w).mean().item(),
           "weight_on_marked": (w * marked).sum(1).mean().item(),
           "max_weight": w.amax(1).mean().item(),
           "clean_margin_median": _median(m[correct])}
    xs, ys, ms = x[correct], y[correct], m[correct]
    for name, where in (("markers", markers[correct]), ("distractor_contents", distractor_contents[correct])):
        eps = minimal_eps(fn, xs, ys, where, EPS_MAX, g, bisect_steps=bisect_steps)
        censored = eps >= EPS_MAX
        rand = random_corner_success(fn, xs, ys, where, 0.9 * eps, random_tries, g)
        row[name] = {"eps_star_median": _median(eps), "eps_star_over_margin_median": _median(eps / ms),
                     "eps_star_quartiles": [float(eps.quantile(0.25)), float(eps.quantile(0.75))],
                     "censored_fraction": censored.float().mean().item(),
                     "random_corner_below_eps_star_fraction": (rand & ~censored).float().mean().item(),
                     "eps_star": eps.tolist()[:200], "eps_star_over_margin": (eps / ms).tolist()[:200]}
    # total-variation shift of the attention under the marker attack at a fixed budget
    delta = _pgd_delta(fn, xs, ys, markers[correct], TV_EPS, PGD_STEPS)
    with torch.no_grad():
        _, w_adv = model(xs + delta)
    row["markers"]["tv_shift_at_eps"] = (0.5 * (w_adv - w[correct]).abs().sum(1)).mean().item()
    return row


@experiment(
    "adversarial-vs-entropy",
    title="Adversarial attacks vs attention entropy",
    claim="Adversarial perturbations aimed at the attention flip sharp, low-entropy attention more easily; "
          "smoother, higher-entropy attention is more robust.",
    order=13, seeds=5,
)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    steps = 150 if small else 400
    n_train, n_test = (2000, 100) if small else (4000, 300)
    bisect_steps, random_tries = (6, 20) if small else (BISECT_STEPS, 100)
    g = torch.Generator().manual_seed(seed)
    train_data, test = make_data(n_train, g), make_data(n_test, g)
    rows = {}
    for tag, beta in BETAS.items():
        model = train(beta, steps, seed, train_data)
        rows[tag] = {"entropy_target": beta, **evaluate(model, test, g, bisect_steps, random_tries)}
    sh, sm = rows["sharp"], rows["smooth"]
    ratio = sm["markers"]["eps_star_over_margin_median"] / sh["markers"]["eps_star_over_margin_median"]
    ratio_raw = sm["markers"]["eps_star_median"] / sh["markers"]["eps_star_median"]
    ratio_distr = (sm["distractor_contents"]["eps_star_over_margin_median"]
                   / sh["distractor_contents"]["eps_star_over_margin_median"])
    censored = max(r["markers"]["censored_fraction"] for r in rows.values())
    random_wins = max(r[a]["random_corner_below_eps_star_fraction"] for r in rows.values()
                      for a in ("markers", "distractor_contents"))
    criteria = [
        at_least("marker attack: median ε*/margin, smooth / sharp", ratio, RATIO_MIN),
        at_least("clean accuracy, sharp model", sh["clean_accuracy"], ACC_MIN),
        at_least("clean accuracy, smooth model", sm["clean_accuracy"], ACC_MIN),
        at_least("entropy smooth − sharp (nats)", sm["entropy_nats"] - sh["entropy_nats"], 0.5),
        at_most("gradient-masking check: marker attack, fraction not broken by ε_max", censored, CENSORED_MAX),
        at_most("gradient-masking check: random corners beat PGD's ε*", random_wins, RANDOM_BEATS_PGD_MAX),
    ]
    supported = all(c.holds() for c in criteria)
    numbers = {"tokens": NUM_TOKENS, "marked": NUM_MARKED, "entropy_targets_nats": BETAS, "entropy_weight": ENTROPY_WEIGHT, "train_steps": steps, "num_test": n_test,
               "eps_max": EPS_MAX, "bisect_steps": bisect_steps, "pgd_steps": PGD_STEPS,
               "soft_gradient_temperature": SOFT_GRAD_TEMPERATURE, "random_corner_tries": random_tries,
               "tv_eps": TV_EPS, "models": rows,
               "summary": {"marker_ratio_eps_over_margin_smooth_over_sharp": ratio,
                           "marker_ratio_eps_smooth_over_sharp": ratio_raw,
                           "distractor_ratio_eps_over_margin_smooth_over_sharp": ratio_distr,
                           "censored_max": censored, "random_corner_wins_max": random_wins}}
    figures = [_plot(out_dir, numbers)]
    verdict = (
        f"Redundant-marker task ({NUM_MARKED} of {NUM_TOKENS} tokens carry the label), entropy set by a "
        f"regulariser (targets 0 and ln 3 nats): sharp model {sh['entropy_nats']:.2f} nats (max weight {sh['max_weight']:.2f}), smooth "
        f"{sm['entropy_nats']:.2f} nats (weight on the marked tokens {sm['weight_on_marked']:.2f}); clean accuracy "
        f"{sh['clean_accuracy']:.3f} / {sm['clean_accuracy']:.3f}, median clean margin {sh['clean_margin_median']:.2f} / "
        f"{sm['clean_margin_median']:.2f}. Attack on the markers (the attention's only input): median ε* "
        f"{sh['markers']['eps_star_median']:.3f} sharp vs {sm['markers']['eps_star_median']:.3f} smooth "
        f"(×{ratio_raw:.2f}); per unit of clean margin ×{ratio:.2f} (criterion ≥ {RATIO_MIN}); attention TV shift at "
        f"ε={TV_EPS}: {sh['markers']['tv_shift_at_eps']:.2f} vs {sm['markers']['tv_shift_at_eps']:.2f}. Attack on the "
        f"distractors' contents: median ε* {sh['distractor_contents']['eps_star_median']:.3f} vs "
        f"{sm['distractor_contents']['eps_star_median']:.3f} (per margin ×{ratio_distr:.2f}; never flipped by ε = "
        f"{EPS_MAX:g}: {sh['distractor_contents']['censored_fraction']:.0%} / "
        f"{sm['distractor_contents']['censored_fraction']:.0%}). Gradient-masking checks: marker attack censored "
        f"{censored:.1%}, random corners below ε* {random_wins:.1%}."
    )
    return Outcome(numbers=numbers, verdict=verdict, supported=supported, figures=figures, criteria=criteria)


def _plot(out_dir: Path, n: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = n["models"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    colors = {"sharp": "C3", "smooth": "C0"}
    for ax, attack, key in ((axes[0], "markers", "eps_star_over_margin"), (axes[1], "markers", "eps_star"),
                            (axes[2], "distractor_contents", "eps_star_over_margin")):
        for tag, r in rows.items():
            vals = sorted(r[attack][key])
            cdf = [(i + 1) / len(vals) for i in range(len(vals))]
            ax.step(vals, cdf, where="post", color=colors[tag],
                    label=f"{tag}: H*={r['entropy_target']:.2f}, {r['entropy_nats']:.2f} nats, clean acc {r['clean_accuracy']:.2f}")
        ax.set_xlabel({"eps_star_over_margin": "minimal ε* / clean logit margin", "eps_star": "minimal ε* (L∞)"}[key])
        ax.set_ylabel("fraction of test examples flipped")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_title("(a) attack on the markers (keys): ε* per unit of margin")
    axes[1].set_title("(b) attack on the markers: raw ε*")
    axes[2].set_title("(c) attack on the distractors' contents (values)")
    fig.suptitle(f"Per-example minimal L∞ ε* (PGD + bisection, 3 restarts incl. softened gradients), "
                 f"{n['marked']} redundant marked tokens of {n['tokens']}; claim: smooth needs a larger ε*")
    fig.tight_layout()
    save_figure_atomic(fig, out_dir / "adversarial_entropy.png")
    plt.close(fig)
    return "adversarial_entropy.png"
