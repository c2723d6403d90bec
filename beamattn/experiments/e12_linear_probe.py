"""Experiment 12: can a linear probe predict attention energies from the pair's features?

Claim: a linear probe predicts additive (Bahdanau) attention energies well from the query and
key features (the energy is nearly linear), but not dot-product energies.

Random query/key pairs ``q, k ~ N(0, I_16)``. Energies:

- additive ``wᵀ tanh(W_q q + W_k k + b)`` (:class:`beamattn.core.AdditiveScore`, hidden 32) at its
  initialisation, for several initialisations;
- the same with inputs scaled by 10, so most tanh units saturate (stress case);
- an additive score (hidden 128) trained to imitate the dot product (its energies are then a
  non-linear function that it has learned);
- the scaled dot product ``q·k/√d``.

A probe is a least-squares regression (closed form) fitted on training pairs and scored with the
coefficient of determination R² on held-out pairs. The linear probe sees ``[q, k, 1]``; a bilinear
probe also sees the products ``q_i k_j``. Additive energies with tanh in its linear range are close
to ``wᵀ(W_q q + W_k k + b)`` — linear in ``[q, k]``; a dot product ``Σ q_i k_i`` of independent
zero-mean vectors is uncorrelated with every linear function of ``[q, k]`` (R² ≈ 0) but exactly
bilinear.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..core import AdditiveScore
from ..io import save_figure_atomic
from .registry import Outcome, at_least, at_most, experiment

D, HIDDEN = 16, 32
IMITATION_HIDDEN = 128  # the imitating additive score needs more units to fit a product
SATURATION_SCALE = 10.0
R2_ADDITIVE_MIN = 0.8  # "predicts well"
R2_DOT_MAX = 0.1  # "does not predict"



def _energy(score: AdditiveScore, q, k) -> torch.Tensor:
    """Energy of each pair (q[i], k[i]): ``[N]``."""
    return score(q.unsqueeze(-2), k.unsqueeze(-2)).reshape(-1)  # [N, 1, 1] -> [N]


def _saturation(score: AdditiveScore, q, k) -> float:
    """Fraction of hidden units with |pre-activation| > 2 (tanh slope below 0.07)."""
    return ((score.proj_q(q) + score.proj_k(k)).abs() > 2).float().mean().item()


def _features(q, k, bilinear: bool) -> torch.Tensor:
    cols = [q, k, torch.ones(len(q), 1)]
    if bilinear:
        cols.append((q.unsqueeze(-1) * k.unsqueeze(-2)).flatten(1))  # q_i k_j
    return torch.cat(cols, dim=1).double()


def _probe(q, k, e, n_train: int, bilinear: bool) -> tuple[float, torch.Tensor]:
    """Held-out R² of a least-squares probe, and its held-out predictions."""
    x, y = _features(q, k, bilinear), e.double()
    coef = torch.linalg.lstsq(x[:n_train], y[:n_train, None]).solution
    pred = (x[n_train:] @ coef).squeeze(1)
    y_test = y[n_train:]
    r2 = 1 - ((pred - y_test) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum()
    return r2.item(), pred.float()


def _train_to_imitate_dot(score: AdditiveScore, gen: torch.Generator, steps: int) -> float:
    """Fit the additive score to q·k/√d on fresh random pairs; returns the final R² of the fit."""
    opt = torch.optim.Adam(score.parameters(), lr=1e-2)
    for _ in range(steps):
        q, k = torch.randn(256, D, generator=gen), torch.randn(256, D, generator=gen)
        loss = ((_energy(score, q, k) - (q * k).sum(-1) / math.sqrt(D)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        q, k = torch.randn(4096, D, generator=gen), torch.randn(4096, D, generator=gen)
        target = (q * k).sum(-1) / math.sqrt(D)
        return (1 - ((_energy(score, q, k) - target) ** 2).sum() / ((target - target.mean()) ** 2).sum()).item()


def _plot(res: dict, scatter: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scatter), figsize=(4.1 * len(scatter), 4.2))
    for ax, (name, (true, pred)) in zip(axes, scatter.items()):
        r = res["rows"][name]
        ax.scatter(true, pred, s=3, alpha=0.35, color="C0", label="held-out pairs", rasterized=True)
        lo, hi = min(true.min().item(), pred.min().item()), max(true.max().item(), pred.max().item())
        ax.plot([lo, hi], [lo, hi], "--", color="C3", lw=1, label="prediction = truth")
        ax.set_title(f"{name}\nlinear probe R² = {r['r2_linear']:.2f}", fontsize=9.5)
        ax.set_xlabel("true energy (score units)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper left")
    axes[0].set_ylabel("linear-probe prediction from [q, k] (score units)")
    fig.suptitle(f"Linear probes of attention energies (d={D}, {res['n_train']} training / {res['n_test']} "
                 "held-out random pairs)")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


@experiment("linear-probe-energies", "Linear probes of additive vs dot-product energies",
            "A linear probe predicts additive (Bahdanau) attention energies well from the pair's features "
            "(the energy is nearly linear), but not dot-product energies.", order=12)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    gen = torch.Generator().manual_seed(seed)
    n_train, n_test = (1000, 1000) if small else (4000, 4000)
    inits = 2 if small else 5
    train_steps = 200 if small else 500
    n = n_train + n_test
    q, k = torch.randn(n, D, generator=gen), torch.randn(n, D, generator=gen)

    energies: dict[str, list[torch.Tensor]] = {}
    saturation: dict[str, list[float]] = {}
    names = {"add": "additive, at initialisation", "sat": f"additive, inputs x{SATURATION_SCALE:g} (saturated tanh)",
             "imit": "additive, trained to imitate q·k/√d", "dot": "dot product q·k/√d"}
    fit_r2 = []
    for i in range(inits):
        with torch.random.fork_rng(devices=[]):  # AdditiveScore initialises from the global generator
            torch.manual_seed(seed * 1000 + i)
            score = AdditiveScore(D, D, HIDDEN)
        with torch.no_grad():
            energies.setdefault(names["add"], []).append(_energy(score, q, k))
            saturation.setdefault(names["add"], []).append(_saturation(score, q, k))
            qs, ks = q * SATURATION_SCALE, k * SATURATION_SCALE
            energies.setdefault(names["sat"], []).append(_energy(score, qs, ks))
            saturation.setdefault(names["sat"], []).append(_saturation(score, qs, ks))
        if i < (1 if small else 2):  # training is the costly part: fewer repeats
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed * 1000 + 500 + i)
                imitator = AdditiveScore(D, D, IMITATION_HIDDEN)
            fit_r2.append(_train_to_imitate_dot(imitator, gen, train_steps))
            with torch.no_grad():
                energies.setdefault(names["imit"], []).append(_energy(imitator, q, k))
                saturation.setdefault(names["imit"], []).append(_saturation(imitator, q, k))
    energies[names["dot"]] = [(q * k).sum(-1) / math.sqrt(D)]

    rows, scatter = {}, {}
    for name, es in energies.items():
        lin, bil = [], []
        for j, e in enumerate(es):
            r2_lin, pred = _probe(q, k, e.detach(), n_train, bilinear=False)
            lin.append(r2_lin)
            bil.append(_probe(q, k, e.detach(), n_train, bilinear=True)[0])
            if j == 0:
                scatter[name] = (e.detach()[n_train:], pred)
        t_lin, t_bil = torch.tensor(lin), torch.tensor(bil)
        rows[name] = {"r2_linear": t_lin.mean().item(), "r2_linear_std": t_lin.std().item() if len(lin) > 1 else 0.0,
                      "r2_bilinear": t_bil.mean().item(), "repeats": len(es),
                      "saturated_units": sum(saturation[name]) / len(saturation[name]) if name in saturation else None}
    res = {"d": D, "hidden": HIDDEN, "n_train": n_train, "n_test": n_test, "inits": inits,
           "imitation_fit_r2": fit_r2, "rows": rows}
    r_add, r_dot = rows[names["add"]]["r2_linear"], rows[names["dot"]]["r2_linear"]
    criteria = [at_least("held-out R² of a linear probe, additive energies at init", r_add, R2_ADDITIVE_MIN),
                at_most("held-out R² of a linear probe, dot-product energies", r_dot, R2_DOT_MAX)]
    supported = all(c.holds() for c in criteria)
    res["summary"] = {"r2_additive_init": r_add, "r2_dot": r_dot, "criteria": {"additive_min": R2_ADDITIVE_MIN,
                                                                               "dot_max": R2_DOT_MAX}}
    _plot(res, scatter, out_dir / "linear_probe.png")

    r_sat, r_imit = rows[names["sat"]]["r2_linear"], rows[names["imit"]]["r2_linear"]
    verdict = (
        f"{'Supported' if supported else 'Not supported'}: held-out R² of a linear probe on [q, k] is "
        f"{r_add:.3f} ± {rows[names['add']]['r2_linear_std']:.3f} for additive energies at initialisation "
        f"({inits} inits, {100 * rows[names['add']]['saturated_units']:.0f}% saturated units) and {r_dot:.3f} for "
        f"dot-product energies, whose bilinear-probe R² is {rows[names['dot']]['r2_bilinear']:.3f}. "
        f"The linearity is a property of the tanh regime, not of the additive form: with saturated tanh "
        f"({100 * rows[names['sat']]['saturated_units']:.0f}% saturated units) R² falls to {r_sat:.3f}, and an "
        f"additive score trained to imitate the dot product (fit R² {sum(fit_r2) / len(fit_r2):.2f}) gives a "
        f"linear-probe R² of {r_imit:.3f}. Criteria: additive >= {R2_ADDITIVE_MIN}, dot <= {R2_DOT_MAX}."
    )
    return Outcome(numbers=res, verdict=verdict, supported=supported, figures=["linear_probe.png"], criteria=criteria)
