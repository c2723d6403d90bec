"""Experiment 3: one "shouting" head in post-LN vs pre-LN blocks.

Head 0's value projection (weights and bias) is multiplied by a factor ``f`` at initialisation, so its
output is ``f`` times larger than the other heads'. In a post-LN block ``LN1(x + Attn(x))`` the
LayerNorm then divides the residual ``x`` and the other heads by the large standard deviation that
the shouting head causes; in a pre-LN block ``x + Attn(LN1(x))`` the residual sum is not normalised.

Measured on :class:`beamattn.nlp.EncoderBlock` (embed 64, 4 heads) with unit-variance random inputs
and a fixed random upstream gradient (loss ``<out, g>``), for ``f`` in a sweep:

- each head's share of the attention output norm (``head_outputs`` + ``head_output_share``) and the
  shouting head's share of the variance of the residual sum ``x + Attn`` (the LayerNorm input in post-LN);
- the gradient norm reaching the residual sum (``∂L/∂(x + Attn)``: the LN1 input in post-LN, the LN2
  input in pre-LN; the residual path and every head get their gradient from it), the non-shouting
  heads' parameters (their Q/K/V slices and W_O columns) and the block input ``x``, each relative to
  the same block with ``f = 1``.

And training curves of a 2-block :class:`beamattn.nlp.Encoder` on the reverse task for pre/post-LN
with and without a shouting head (head 0 of every block, factor ``TRAIN_FACTOR``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core import head_output_share
from ..io import save_figure_atomic
from ..nlp.model import Encoder, EncoderBlock, EncoderConfig
from ..nlp.tasks import reverse_task
from .registry import Outcome, at_least, at_most, experiment

CLAIM = ("In post-LN, one 'shouting' head (a much larger value projection) dominates the variance entering "
         "LayerNorm, which squashes the other heads and the residual: they get little gradient and training "
         "suffers. Pre-LN, whose residual sum is not normalised, is much less affected.")

EMBED, HEADS = 64, 4
CHECK_FACTOR = 100.0  # the shouting head carries >= 90 % of the LN-input variance at this factor (measured)
TRAIN_FACTOR = 20.0
# Margins of the verdict.
SQUASHED = 0.5  # post-LN: gradient retention (f = CHECK_FACTOR vs f = 1) below this ...
KEPT = 0.8  # ... pre-LN: at least this
SLOWDOWN_RATIO = 1.5  # post-LN's extra mean training loss >= this x pre-LN's ...
MIN_SLOWDOWN = 0.1  # ... and at least this many nats
PRE_UNAFFECTED = 0.1  # pre-LN counts as "not slowed" if its extra mean loss is below this (nats)


def _shout(attn, head: int, factor: float) -> None:
    """Multiply head ``head``'s slice of the value projection (weights and bias) by ``factor``."""
    with torch.no_grad():
        off, dv = attn._v_offsets[head], attn.value_head_dims[head]
        attn.v_proj.weight[off:off + dv] *= factor
        attn.v_proj.bias[off:off + dv] *= factor


def _head_param_grad(attn, h: int) -> float:
    """Gradient norm of head ``h``'s own parameters: Q/K/V slices (weights, biases) and its W_O columns."""
    off, d = attn._qk_offsets[h], attn.head_dims[h]
    voff, dv = attn._v_offsets[h], attn.value_head_dims[h]
    sq = sum(float((p.grad[off:off + d] ** 2).sum())
             for p in (attn.q_proj.weight, attn.k_proj.weight, attn.q_proj.bias, attn.k_proj.bias))
    sq += sum(float((p.grad[voff:voff + dv] ** 2).sum()) for p in (attn.v_proj.weight, attn.v_proj.bias))
    sq += float((attn.out_proj.weight.grad[:, voff:voff + dv] ** 2).sum())
    return math.sqrt(sq)


def _block_measure(norm: str, factor: float, seeds: list[int], batch: int, length: int) -> dict:
    acc = {"grad_residual_sum": [], "grad_other_heads": [], "grad_shouting_head": [], "grad_input": [],
           "output_share": [], "shout_var_share": []}
    for s in seeds:
        torch.manual_seed(s)
        blk = EncoderBlock(EncoderConfig(vocab_size=2, dim=EMBED, num_heads=HEADS, norm=norm))
        _shout(blk.attn, 0, factor)
        gen = torch.Generator().manual_seed(50_000 + s)
        x = torch.randn(batch, length, EMBED, generator=gen).requires_grad_()  # [B, L, E]
        upstream = torch.randn(batch, length, EMBED, generator=gen)  # fixed dL/d(out)
        # The residual sum x + Attn enters ln1 in post-LN and ln2 in pre-LN: capture it there.
        captured = {}

        def grab(_mod, args):
            args[0].retain_grad()
            captured["sum"] = args[0]

        hook = (blk.ln1 if norm == "post" else blk.ln2).register_forward_pre_hook(grab)
        out, _ = blk(x)
        hook.remove()
        (out * upstream).sum().backward()
        a = blk.attn
        with torch.no_grad():
            heads = a.head_outputs(x if norm == "post" else blk.ln1(x))  # [B, H, L, E]
            res_sum = captured["sum"]
            acc["shout_var_share"].append(float(heads[:, 0].var(-1).mean() / res_sum.var(-1).mean()))
        acc["output_share"].append(head_output_share(heads).tolist())
        acc["grad_residual_sum"].append(float(captured["sum"].grad.norm()))
        acc["grad_other_heads"].append(math.sqrt(sum(_head_param_grad(a, h) ** 2 for h in range(1, HEADS))))
        acc["grad_shouting_head"].append(_head_param_grad(a, 0))
        acc["grad_input"].append(float(x.grad.norm()))
    return {k: np.mean(v, axis=0).tolist() for k, v in acc.items()}


def _train(norm: str, factor: float, seed: int, steps: int, dim: int, length: int, vocab: int,
           batch: int) -> list[float]:
    torch.manual_seed(seed)
    model = Encoder(EncoderConfig(vocab_size=vocab, dim=dim, num_heads=HEADS, num_layers=2, norm=norm))
    for blk in model.blocks:
        _shout(blk.attn, 0, factor)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(steps):
        x, y = reverse_task(batch, length, vocab, seed=seed * 1_000_003 + step)  # same data for every setting
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _figure(factors: list[float], sweep: dict, train: dict, path: Path, cfg: str, n_seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"pre": "C0", "post": "C3"}
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2))
    ax = axes[0]
    for norm in ("pre", "post"):
        rel = sweep[norm]["relative"]
        ax.plot(factors, rel["grad_residual_sum"], "o-", color=colors[norm], label=f"{norm}-LN: ∂L/∂(x + Attn)")
        ax.plot(factors, rel["grad_other_heads"], "s--", color=colors[norm], mfc="none",
                label=f"{norm}-LN: other heads' parameters")
    ax.plot(factors, sweep["post"]["shout_var_share"], "k:", marker="^", label="shouting head's share of the\n"
                                                                              "LN-input variance (post-LN)")
    ax.axvline(CHECK_FACTOR, color="gray", lw=1, alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("shouting factor f (head 0's value projection ×f)")
    ax.set_ylabel("gradient norm relative to f = 1  /  variance share")
    ax.set_title("(a) Gradient vs shouting factor (single block)")
    ax.set_ylim(0, 1.25)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(0.0, 0.42))

    ax = axes[1]
    i = factors.index(CHECK_FACTOR)
    groups = ["∂L/∂(x + Attn)", "other heads'\nparameters", "shouting head's\nparameters", "∂L/∂x\n(block input)"]
    keys = ["grad_residual_sum", "grad_other_heads", "grad_shouting_head", "grad_input"]
    xs = np.arange(len(groups))
    for j, norm in enumerate(("pre", "post")):
        vals = [sweep[norm]["relative"][k][i] for k in keys]
        bars = ax.bar(xs + (j - 0.5) * 0.38, vals, 0.38, color=colors[norm], label=f"{norm}-LN")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(1, color="gray", ls=":", label="unchanged (= f = 1)")
    ax.set_yscale("log")
    ax.set_xticks(xs, groups, fontsize=8)
    ax.set_ylabel(f"gradient norm at f = {CHECK_FACTOR:g} / at f = 1 (log)")
    share = sweep["post"]["output_share"][i][0]
    ax.set_title(f"(b) f = {CHECK_FACTOR:g} (head 0: {share:.0%} of the attention output norm)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")

    ax = axes[2]
    k = 10
    for norm in ("pre", "post"):
        for tag, ls in (("baseline", "-"), ("shouting", "--")):
            loss = np.asarray(train[norm][tag]["loss"])
            sm = np.convolve(loss, np.ones(k) / k, "valid")
            lab = f"{norm}-LN, " + ("no shouting head" if tag == "baseline" else f"shouting head ×{TRAIN_FACTOR:g}")
            ax.plot(np.arange(k, len(loss) + 1), sm, ls, color=colors[norm], label=lab)
    ax.set_xlabel(f"training step (Adam, lr 1e-3; {cfg})", fontsize=8)
    ax.set_ylabel(f"cross-entropy (nats/token, {k}-step mean)")
    ax.set_title(f"(c) Training on the reverse task (mean of {n_seeds} seed(s))")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("One shouting head (value projection ×f) in post-LN vs pre-LN encoder blocks")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


@experiment("post-ln-shouting-head", "A shouting head under post-LN vs pre-LN", CLAIM, order=3)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    factors = [1.0, 10.0, CHECK_FACTOR] if small else [1.0, 3.0, 10.0, 20.0, 30.0, 100.0, 300.0]
    seeds = [seed + i for i in range(2 if small else 4)]
    batch, length = 8, 16
    sweep = {}
    for norm in ("pre", "post"):
        per_f = [_block_measure(norm, f, seeds, batch, length) for f in factors]
        keys = per_f[0].keys()
        r = {k: [m[k] for m in per_f] for k in keys}
        r["relative"] = {k: [m[k] / per_f[0][k] for m in per_f]
                         for k in ("grad_residual_sum", "grad_other_heads", "grad_shouting_head", "grad_input")}
        sweep[norm] = r

    steps, dim, t_len, vocab, t_batch = (40, 32, 8, 12, 16) if small else (300, 64, 10, 16, 32)
    train_seeds = [seed]  # the replicates (registry) repeat the training over seeds
    train: dict = {}
    for norm in ("pre", "post"):
        train[norm] = {}
        for tag, f in (("baseline", 1.0), ("shouting", TRAIN_FACTOR)):
            runs = [_train(norm, f, s, steps, dim, t_len, vocab, t_batch) for s in train_seeds]  # [S][steps]
            curve = np.mean(runs, axis=0)
            train[norm][tag] = {"loss": curve.tolist(),  # mean over the training seeds
                                "mean_loss": float(curve.mean()),
                                "final_loss": float(curve[-max(1, steps // 10):].mean()),
                                "mean_loss_per_seed": [float(np.mean(r)) for r in runs],
                                "final_loss_per_seed": [float(np.mean(r[-max(1, steps // 10):])) for r in runs]}
        train[norm]["slowdown"] = train[norm]["shouting"]["mean_loss"] - train[norm]["baseline"]["mean_loss"]
        train[norm]["slowdown_per_seed"] = [a - b for a, b in zip(train[norm]["shouting"]["mean_loss_per_seed"],
                                                                   train[norm]["baseline"]["mean_loss_per_seed"])]

    i = factors.index(CHECK_FACTOR)
    rel = {norm: {k: v[i] for k, v in sweep[norm]["relative"].items()} for norm in sweep}
    sd_pre, sd_post = train["pre"]["slowdown"], train["post"]["slowdown"]
    f = f"×{CHECK_FACTOR:g}"
    c_post = [at_most(f"post-LN: relative gradient to the residual sum at {f}", rel["post"]["grad_residual_sum"],
                      SQUASHED),
              at_most(f"post-LN: relative gradient to the other heads at {f}", rel["post"]["grad_other_heads"],
                      SQUASHED)]
    c_pre = [at_least(f"pre-LN: relative gradient to the residual sum at {f}", rel["pre"]["grad_residual_sum"], KEPT),
             at_least(f"pre-LN: relative gradient to the other heads at {f}", rel["pre"]["grad_other_heads"], KEPT)]
    c_train = [at_least("post-LN training slowdown (mean loss, nats)", sd_post, MIN_SLOWDOWN),
               at_least(f"post-LN slowdown − {SLOWDOWN_RATIO}× max(pre-LN slowdown, 0) (nats)",
                        sd_post - SLOWDOWN_RATIO * max(sd_pre, 0.0), 0.0)]
    criteria = c_post + c_pre + c_train
    mech_post, mech_pre, train_ok = (all(c.holds() for c in g) for g in (c_post, c_pre, c_train))
    pre_unaffected = sd_pre < PRE_UNAFFECTED
    supported = mech_post and mech_pre and train_ok

    fig_name = "shouting_head.png"
    cfg = f"2 blocks, embed {dim}, {HEADS} heads, length {t_len}, vocab {vocab}, batch {t_batch}"
    _figure(factors, sweep, train, out_dir / fig_name, cfg, len(train_seeds))
    numbers = {
        "block": {"embed_dim": EMBED, "heads": HEADS, "batch": batch, "length": length, "seeds": seeds,
                  "factors": factors, "pre": sweep["pre"], "post": sweep["post"]},
        "training": {"task": "reverse", "config": cfg, "steps": steps, "factor": TRAIN_FACTOR, "seeds": train_seeds,
                     **train},
        "checks": {"check_factor": CHECK_FACTOR, "relative_at_check_factor": rel,
                   "shout_var_share_at_check_factor": sweep["post"]["shout_var_share"][i],
                   "post_squashed": mech_post, "pre_kept": mech_pre, "training_post_hurt_more": train_ok,
                   "pre_ln_training_unaffected": pre_unaffected,
                   "margins": {"squashed_below": SQUASHED, "kept_above": KEPT, "slowdown_ratio": SLOWDOWN_RATIO,
                               "min_slowdown_nats": MIN_SLOWDOWN, "pre_unaffected_below_nats": PRE_UNAFFECTED}},
    }
    tr = train
    verdict = (
        f"With head 0's values ×{CHECK_FACTOR:g} it has {sweep['post']['output_share'][i][0]:.0%} of the attention "
        f"output norm and {sweep['post']['shout_var_share'][i]:.0%} of the LN-input variance. Relative to f=1, the "
        f"gradient reaching the residual sum is ×{rel['post']['grad_residual_sum']:.2f} in post-LN vs "
        f"×{rel['pre']['grad_residual_sum']:.2f} in pre-LN, and the other heads' parameters get "
        f"×{rel['post']['grad_other_heads']:.2f} vs ×{rel['pre']['grad_other_heads']:.2f} (the block input's "
        f"gradient is ×{rel['post']['grad_input']:.2f} vs ×{rel['pre']['grad_input']:.2f}: in post-LN it now "
        f"flows back through the shouting head). Training (reverse, ×{TRAIN_FACTOR:g}, {steps} steps, mean of "
        f"{len(train_seeds)} seed(s)): mean loss "
        f"post-LN {tr['post']['baseline']['mean_loss']:.2f} → {tr['post']['shouting']['mean_loss']:.2f} "
        f"(final {tr['post']['baseline']['final_loss']:.2f} → {tr['post']['shouting']['final_loss']:.2f}), pre-LN "
        f"{tr['pre']['baseline']['mean_loss']:.2f} → {tr['pre']['shouting']['mean_loss']:.2f} "
        f"(final {tr['pre']['baseline']['final_loss']:.2f} → {tr['pre']['shouting']['final_loss']:.2f}). "
        + ("The claim holds" if supported else "The claim is NOT supported")
        + (", and pre-LN trains as fast with the shouting head as without." if pre_unaffected else
           f"; but pre-LN is slowed too (+{sd_pre:.2f} nats mean loss vs +{sd_post:.2f} for post-LN, ratio "
           f"{sd_post / max(sd_pre, 1e-9):.2f} vs the {SLOWDOWN_RATIO}× margin; per seed "
           + ", ".join(f"{b:.2f}/{a:.2f}" for a, b in zip(train['pre']['slowdown_per_seed'],
                                                          train['post']['slowdown_per_seed']))
           + " post/pre), so 'pre-LN "
           "does not suffer' holds for the gradient reaching the residual and the other heads, not for training "
           "speed.")
        + (" (Small scale: too few steps for the training check to mean much.)" if small else "")
    )
    return Outcome(numbers=numbers, verdict=verdict, supported=supported, figures=[fig_name], criteria=criteria)
