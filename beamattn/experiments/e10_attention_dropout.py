"""Experiment 10: attention dropout on a small training set with a spurious cue.

Claim: attention dropout, when training on little data, reduces the gap between training and
validation performance.

Task (a toy sentiment task): a sequence is ``[CLS]`` followed, in random order, by 11 content
tokens and one cue token. Half of the 20 content tokens are "positive"; the label is 1 when the
positive tokens are the majority. The cue token (``C0`` or ``C1``) agrees with the label in 90% of
the training sequences — a spurious, single-token shortcut — and is random in the validation set.
A small :class:`beamattn.nlp.model.Encoder` (2 layers, 2 heads, width 32, no positions) is trained
from scratch (no pre-training) on a few training sequences, full batch, and reads the label at
``[CLS]``. For each attention-dropout rate the same seeds (same data, same initialisation) are
used, so the comparison of gaps is paired. Gap = training accuracy − validation accuracy (both in
eval mode, i.e. without dropout); the loss gap is reported too.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..io import save_figure_atomic
from ..nlp.model import Encoder, EncoderConfig
from .registry import Outcome, at_least, at_most, experiment

CLS, C0, C1 = 1, 2, 3
N_CONTENT = 20  # content ids 4 .. 23; the first half are "positive"
CONTENT_LEN = 11  # odd: no ties
VOCAB = 4 + N_CONTENT
CUE_AGREEMENT = 0.9  # P(cue == label) in training; 0.5 in validation
DROPOUTS = (0.0, 0.1, 0.3)
MIN_REDUCTION = 0.02  # the accuracy gap must shrink by at least this much ...
SE_FACTOR = 2.5  # ... and by this many standard errors of the paired (per-seed) reduction



def make_data(gen: torch.Generator, n: int, cue_agreement: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [n, 13], labels [n])``: [CLS] then the cue and 11 content tokens in random order."""
    content = 4 + torch.randint(N_CONTENT, (n, CONTENT_LEN), generator=gen)  # [n, 11]
    labels = ((content < 4 + N_CONTENT // 2).sum(1) > CONTENT_LEN // 2).long()  # majority positive
    agree = torch.rand(n, generator=gen) < cue_agreement
    cue = torch.where(agree, labels, 1 - labels)
    body = torch.cat([torch.where(cue == 1, C1, C0)[:, None], content], dim=1)  # [n, 12]
    body = body.gather(1, torch.argsort(torch.rand(n, CONTENT_LEN + 1, generator=gen), dim=1))
    return torch.cat([torch.full((n, 1), CLS), body], dim=1), labels


def _evaluate(model: Encoder, x, y) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)[0][:, 0]  # [n, 2] at [CLS]
    return F.cross_entropy(logits, y).item(), (logits.argmax(-1) == y).float().mean().item()


def _train(p: float, seed: int, n_train: int, n_val: int, steps: int, eval_every: int) -> dict:
    gen = torch.Generator().manual_seed(10_000 + seed)  # the same data for every dropout rate
    xt, yt = make_data(gen, n_train, CUE_AGREEMENT)
    xv, yv = make_data(gen, n_val, 0.5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the same initialisation and dropout stream for every rate
        model = Encoder(EncoderConfig(vocab_size=VOCAB, dim=32, num_heads=2, num_layers=2, positions="none",
                                      attn_dropout=p), num_outputs=2)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
        curve = {"step": [], "train_acc": [], "val_acc": [], "train_loss": [], "val_loss": []}
        for step in range(1, steps + 1):
            model.train()
            loss = F.cross_entropy(model(xt)[0][:, 0], yt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % eval_every == 0 or step == steps:
                tl, ta = _evaluate(model, xt, yt)
                vl, va = _evaluate(model, xv, yv)
                for key, val in (("step", step), ("train_acc", ta), ("val_acc", va), ("train_loss", tl),
                                 ("val_loss", vl)):
                    curve[key].append(val)
    cue_val = (xv == C1).any(1).long()  # which cue each validation sequence carries
    model.eval()
    with torch.no_grad():
        pred = model(xv)[0][:, 0].argmax(-1)
    return {"train_acc": curve["train_acc"][-1], "val_acc": curve["val_acc"][-1],
            "train_loss": curve["train_loss"][-1], "val_loss": curve["val_loss"][-1],
            "val_follows_cue": (pred == cue_val).float().mean().item(), "curve": curve}


def _mean_se(xs: list[float]) -> tuple[float, float, float]:
    t = torch.tensor(xs, dtype=torch.float64)
    std = t.std().item() if len(xs) > 1 else 0.0
    return t.mean().item(), std, std / math.sqrt(len(xs))


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ps = res["dropouts"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for ax, key, ylabel, color in ((axes[0, 0], "acc_gap", "accuracy gap: train − validation", "C0"),
                                   (axes[0, 1], "loss_gap", "loss gap: validation − train (nats)", "C1")):
        m = [res["by_dropout"][str(p)][key]["mean"] for p in ps]
        s = [res["by_dropout"][str(p)][key]["std"] for p in ps]
        per_seed = list(zip(*[res["by_dropout"][str(p)][key]["values"] for p in ps]))
        for i, vals in enumerate(per_seed):
            ax.plot(ps, vals, "-", color="gray", alpha=0.4, lw=0.8,
                    label="one seed (same data and init)" if i == 0 else None)
        ax.errorbar(ps, m, yerr=s, fmt="o-", capsize=4, color=color, lw=2, label="mean ± seed std")
        ax.set_xlabel("attention dropout rate p")
        ax.set_ylabel(ylabel)
        ax.set_xticks(ps)
        ax.set_ylim(bottom=0)
    axes[0, 0].set_title(f"(a) accuracy gap vs attention dropout ({res['seeds']} seeds)")
    axes[0, 1].set_title("(b) loss gap vs attention dropout")
    for ax, (tr, va), ylabel, title in ((axes[1, 0], ("train_acc", "val_acc"), "accuracy (eval mode, mean over seeds)",
                                         f"(c) accuracy curves, {res['n_train']} training sequences"),
                                        (axes[1, 1], ("train_loss", "val_loss"),
                                         "cross-entropy (nats, mean over seeds)", "(d) loss curves")):
        for i, p in enumerate(ps):
            c = res["by_dropout"][str(p)]["curve_mean"]
            ax.plot(c["step"], c[tr], "--", color=f"C{i}", label=f"p={p:g} train")
            ax.plot(c["step"], c[va], "-", color=f"C{i}", label=f"p={p:g} validation")
        ax.set_xlabel("training step (full batch)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    axes[1, 1].set_yscale("log")
    for ax in axes.flat:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Attention dropout on a small training set with a spurious cue\n(cue agrees with the label in "
                 f"{CUE_AGREEMENT:.0%} of training and 50% of validation sequences; encoder trained from scratch)")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


@experiment("attention-dropout", "Attention dropout on little data",
            "Attention dropout, when fine-tuning on a small dataset, reduces the gap between training and "
            "validation performance.", order=10)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    seeds = [seed * 100 + i for i in range(2 if small else 4)]  # inner seeds; the registry adds replicates
    n_train, n_val = (64, 400) if small else (128, 1000)
    steps, eval_every = (50, 25) if small else (100, 20)
    runs = {p: [_train(p, s, n_train, n_val, steps, eval_every) for s in seeds] for p in DROPOUTS}

    by = {}
    for p, rs in runs.items():
        entry = {}
        for key in ("train_acc", "val_acc", "train_loss", "val_loss", "val_follows_cue"):
            m, sd, se = _mean_se([r[key] for r in rs])
            entry[key] = {"mean": m, "std": sd, "values": [r[key] for r in rs]}
        for key, f in (("acc_gap", lambda r: r["train_acc"] - r["val_acc"]),
                       ("loss_gap", lambda r: r["val_loss"] - r["train_loss"])):
            vals = [f(r) for r in rs]
            m, sd, se = _mean_se(vals)
            entry[key] = {"mean": m, "std": sd, "se": se, "values": vals}
        entry["curve_mean"] = {k: [sum(r["curve"][k][i] for r in rs) / len(rs) for i in range(len(rs[0]["curve"][k]))]
                               for k in rs[0]["curve"]}
        by[str(p)] = entry
    # paired reduction of the gap against p = 0 (same seed = same data and initialisation)
    reduction = {}
    for p in DROPOUTS[1:]:
        for key in ("acc_gap", "loss_gap"):
            diffs = [a - b for a, b in zip(by["0.0"][key]["values"], by[str(p)][key]["values"])]
            m, sd, se = _mean_se(diffs)
            reduction[f"{key}@{p:g}"] = {"mean": m, "se": se, "values": diffs}
    best_p = max(DROPOUTS[1:], key=lambda p: reduction[f"acc_gap@{p:g}"]["mean"])
    best = reduction[f"acc_gap@{best_p:g}"]
    criteria = [at_least("largest paired accuracy-gap reduction over p > 0 (vs p = 0)", best["mean"], MIN_REDUCTION),
                at_least("that reduction / its paired SE over the inner seeds", best["mean"] / max(best["se"], 1e-12),
                         SE_FACTOR)]
    supported = all(c.holds() for c in criteria)
    res = {"dropouts": list(DROPOUTS), "seeds": len(seeds), "n_train": n_train, "n_val": n_val, "steps": steps,
           "cue_agreement_train": CUE_AGREEMENT, "by_dropout": by, "gap_reduction_vs_p0": reduction,
           "summary": {"best_p": best_p, "acc_gap_reduction": best["mean"], "acc_gap_reduction_se": best["se"],
                       "criteria": {"min_reduction": MIN_REDUCTION, "se_factor": SE_FACTOR}}}
    _plot(res, out_dir / "attention_dropout.png")

    def gap(p, key="acc_gap"):
        e = by[str(p)][key]
        return f"{e['mean']:.3f} ± {e['std']:.3f}"

    loss_red = {p: reduction[f"loss_gap@{p:g}"] for p in DROPOUTS[1:]}
    verdict = (
        f"{'Supported' if supported else 'Not supported'}: with {n_train} training sequences and {len(seeds)} seeds, "
        f"the accuracy gap (train − val, mean ± seed std) is {gap(0.0)} at p=0, {gap(0.1)} at p=0.1 and "
        f"{gap(0.3)} at p=0.3; the best paired reduction (p={best_p:g}) is {best['mean']:+.3f} ± {best['se']:.3f} SE "
        f"(criterion: >= max({MIN_REDUCTION}, {SE_FACTOR:g} SE)). The loss gap (nats) goes from {gap(0.0, 'loss_gap')} "
        f"to {gap(0.1, 'loss_gap')} (p=0.1) and {gap(0.3, 'loss_gap')} (p=0.3), paired reductions "
        + ", ".join(f"{r['mean']:+.3f} ± {r['se']:.3f}" for r in loss_red.values())
        + f". Validation accuracy: {by['0.0']['val_acc']['mean']:.3f} → {by[str(best_p)]['val_acc']['mean']:.3f}; "
        f"train accuracy {by['0.0']['train_acc']['mean']:.2f} → {by[str(best_p)]['train_acc']['mean']:.2f}; "
        f"validation predictions that follow the spurious cue: {by['0.0']['val_follows_cue']['mean']:.3f} → "
        f"{by[str(best_p)]['val_follows_cue']['mean']:.3f}."
    )
    return Outcome(numbers=res, verdict=verdict, supported=supported, figures=["attention_dropout.png"],
                   criteria=criteria)
