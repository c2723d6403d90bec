"""Experiment 14: a ViT's CLS attention finds the landmark patches; the same ViT on images of any size.

Part 1 (landmarks). A tiny :class:`~beamattn.vision.ViT` (patch 8, width 32, 4 heads, 2 pre-LN
blocks) is trained to classify :func:`~beamattn.vision.landmark_images`: 48×48 noise images whose
class (one of 4) is the orientation of a bar drawn in 3 "landmark" patches, among 8 distractor
patches of class-independent textures (two of which, "plus" and "cross", contain bars of every
orientation). It measures the accuracy and the landmark precision@k: the fraction of the k = 3
patches with the largest last-layer CLS attention (mean over heads) that are landmarks, against
the chance level k/L (L = 36 patches) and against the same model before training. The trained
model is also run, without retraining or resizing, on landmark images of other sizes and aspect
ratios (32×64, 64×32, 64×64).

Part 2 (scans). The same ViT class (2 classes) is trained on mixed-size batches of
:func:`~beamattn.vision.scans` (sides 16–48 px drawn independently, so aspect ratios up to 3:1;
lesion present or not) and evaluated on scans with sides 16–64 px (a quarter each with sides up to
24, 36, 48 and 64 px): accuracy per long-side bucket (long sides 49–64 were never seen in
training) and per aspect bucket, and how often the top CLS-attended patch is the lesion's patch.
Padding invariance (logits of a scan alone vs inside a padded mixed batch) is measured as well.

Verdict: supported if precision@k > 3× chance at the training size and above the untrained model,
and the scan accuracy on sizes within the training range is >= 0.7 (chance 0.5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..io import save_figure_atomic
from ..vision import ViT, ViTConfig, landmark_images, patch_grids, scans
from .registry import Outcome, at_least, at_most, experiment

PATCH = 8
LANDMARK_SIZE = (48, 48)
NUM_LANDMARKS = 3
NUM_DISTRACTORS = 8
NUM_CLASSES = 4
OTHER_SIZES = ((32, 64), (64, 32), (64, 64))  # landmark images never seen in training
SCAN_TRAIN_SIDES = (16, 48)  # px
SCAN_EVAL_SIDES = (16, 64)  # px; long side > 48 = unseen sizes
LONG_SIDE_BUCKETS = ((16, 24), (25, 36), (37, 48), (49, 64))  # px, inclusive
# Margins of the verdict.
PRECISION_FACTOR = 3.0  # landmark precision@k must exceed this multiple of chance
SCAN_ACC_MIN = 0.7  # scan accuracy within the training sizes (chance 0.5)


def _data_seed(seed: int, stream: int, i: int) -> int:
    """Disjoint data seeds per (run seed, stream, batch index): streams 0-1 train, 2+ evaluation."""
    return seed * 1_000_003 + stream * 100_000 + i


def _vit(num_classes: int) -> ViT:
    return ViT(ViTConfig(patch_size=PATCH, in_channels=1, dim=32, num_heads=4, num_layers=2, mlp_ratio=2.0,
                         num_classes=num_classes))


def _train(model: ViT, batch_fn: Callable[[int], tuple[object, Tensor]], steps: int, lr: float) -> list[float]:
    """AdamW + one-cycle schedule on fresh batches ``batch_fn(step) -> (images, labels)``; returns the losses."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    losses = []
    for step in range(steps):
        images, labels = batch_fn(step)
        logits, _ = model(images)  # [B, K]
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def _precision_at_k(attn: Tensor, target: Tensor, k: int) -> float:
    """Fraction of the ``k`` patches with the largest ``attn [B, L]`` that are ``target [B, L]`` patches."""
    top = attn.topk(k, dim=1).indices  # [B, k]
    return target.gather(1, top).float().mean().item()


def _landmark_eval(model: ViT, n: int, size: tuple[int, int], seed: int) -> dict:
    x, y, marks = landmark_images(n, size, PATCH, NUM_LANDMARKS, NUM_DISTRACTORS, seed,
                                  num_classes=NUM_CLASSES)  # [n, 1, H, W], [n], [n, L]
    with torch.no_grad():
        logits, info = model(x, need_weights=True)  # [n, K]
    layers = [w.mean(1)[:, 0, 1:] for w in info["weights"]]  # per layer: CLS→patch attention [n, L]
    return {
        "size": list(size), "patches": marks.shape[1], "accuracy": (logits.argmax(1) == y).float().mean().item(),
        "precision_at_k": _precision_at_k(info["cls_attention"], marks, NUM_LANDMARKS),
        "precision_at_k_per_layer": [_precision_at_k(a, marks, NUM_LANDMARKS) for a in layers],
        "chance": NUM_LANDMARKS / marks.shape[1],
        "_example": (x[0, 0], int(y[0]), int(logits[0].argmax()), info["cls_attention"][0], marks[0]),
    }


def _landmarks(small: bool, seed: int) -> dict:
    steps, batch, n_eval = (60, 64, 192) if small else (300, 64, 512)
    torch.manual_seed(seed)
    model = _vit(NUM_CLASSES)
    untrained = _landmark_eval(model, n_eval, LANDMARK_SIZE, _data_seed(seed, 2, 0))

    def batch_fn(step: int) -> tuple[Tensor, Tensor]:
        x, y, _ = landmark_images(batch, LANDMARK_SIZE, PATCH, NUM_LANDMARKS, NUM_DISTRACTORS,
                                  _data_seed(seed, 0, step), num_classes=NUM_CLASSES)
        return x, y

    losses = _train(model, batch_fn, steps, lr=3e-3)
    trained = _landmark_eval(model, n_eval, LANDMARK_SIZE, _data_seed(seed, 2, 1))
    other = [_landmark_eval(model, n_eval // 2, size, _data_seed(seed, 2, 2 + i)) for i, size in
             enumerate(OTHER_SIZES)]
    return {"steps": steps, "batch": batch, "eval_images": n_eval, "final_loss": losses[-1],
            "untrained": untrained, "trained": trained, "other_sizes": other}


def _bucket_of(h: int, w: int) -> tuple[str, str]:
    long_side = max(h, w)
    size = next(f"{lo}-{hi}" for lo, hi in LONG_SIDE_BUCKETS if lo <= long_side <= hi)
    aspect = "tall (h/w>=1.5)" if h >= 1.5 * w else "wide (w/h>=1.5)" if w >= 1.5 * h else "squarish"
    return size, aspect


def _scans(small: bool, seed: int) -> dict:
    steps, batch, n_eval = (100, 32, 256) if small else (300, 32, 768)
    torch.manual_seed(seed + 1)
    model = _vit(2)

    def batch_fn(step: int) -> tuple[list[Tensor], Tensor]:
        x, y, _ = scans(batch, *SCAN_TRAIN_SIDES, PATCH, _data_seed(seed, 1, step))
        return x, y

    losses = _train(model, batch_fn, steps, lr=3e-3)
    # Evaluation scans: n_eval/4 with sides in [16, hi] for each bucket's upper bound hi, so that every
    # long-side bucket has enough scans (sides drawn independently: small long sides are rare otherwise).
    x, y, lesion = [], [], []
    for i, (_, hi) in enumerate(LONG_SIDE_BUCKETS):
        x_i, y_i, l_i = scans(n_eval // len(LONG_SIDE_BUCKETS), SCAN_EVAL_SIDES[0], hi, PATCH,
                              _data_seed(seed, 3, i))  # list of [1, H, W], [n/4], [n/4]
        x, y, lesion = x + x_i, y + [y_i], lesion + [l_i]
    y, lesion = torch.cat(y), torch.cat(lesion)  # [n], [n]
    n_eval = len(x)
    preds, cls_attn, hits, loc_chance = [], [], [], []
    with torch.no_grad():
        for start in range(0, n_eval, 64):
            logits, info = model(x[start:start + 64], need_weights=True)  # [b, 2]
            preds.append(logits.argmax(1))
            for i, a in enumerate(patch_grids(info["cls_attention"], info)):  # [h_b, w_b] each
                cls_attn.append(a)
                j = start + i
                if y[j] == 1:
                    hits.append(int(a.flatten().argmax()) == int(lesion[j]))
                    loc_chance.append(1 / a.numel())
        # Padding invariance: each of 8 scans alone vs inside one padded mixed-size batch.
        alone = torch.cat([model([img])[0] for img in x[:8]])  # [8, 2]
        together, _ = model(x[:8])  # [8, 2]
    pred = torch.cat(preds)  # [n]
    correct = (pred == y).tolist()

    sizes = [tuple(img.shape[-2:]) for img in x]
    by_size: dict[str, list[bool]] = {f"{lo}-{hi}": [] for lo, hi in LONG_SIDE_BUCKETS}
    by_aspect: dict[str, list[bool]] = {k: [] for k in ("tall (h/w>=1.5)", "squarish", "wide (w/h>=1.5)")}
    in_range = []
    for (h, w), ok in zip(sizes, correct):
        s, a = _bucket_of(h, w)
        by_size[s].append(ok)
        by_aspect[a].append(ok)
        if max(h, w) <= SCAN_TRAIN_SIDES[1]:
            in_range.append(ok)
    unseen = [ok for (h, w), ok in zip(sizes, correct) if max(h, w) > SCAN_TRAIN_SIDES[1]]

    def summary(v: list[bool]) -> dict:
        return {"accuracy": sum(v) / len(v) if v else None, "n": len(v)}

    example = next((j for j in range(n_eval) if y[j] == 1 and sizes[j][0] != sizes[j][1] and max(sizes[j]) > 32),
                   0)  # a positive, non-square, fairly large scan
    return {
        "steps": steps, "batch": batch, "eval_scans": n_eval, "final_loss": losses[-1],
        "train_sides_px": list(SCAN_TRAIN_SIDES), "eval_sides_px": list(SCAN_EVAL_SIDES),
        "accuracy": sum(correct) / n_eval,
        "accuracy_training_sizes": summary(in_range), "accuracy_unseen_larger": summary(unseen),
        "accuracy_by_long_side_px": {k: summary(v) for k, v in by_size.items()},
        "accuracy_by_aspect": {k: summary(v) for k, v in by_aspect.items()},
        "lesion_top1_attention_hit_rate": sum(hits) / max(1, len(hits)),
        "lesion_top1_chance": sum(loc_chance) / max(1, len(hits)),
        "padding_invariance_max_abs_logit_diff": (alone - together).abs().max().item(),
        "_example": (x[example][0], cls_attn[example], int(lesion[example]), int(y[example]), int(pred[example])),
    }


@experiment("vit-landmarks", "ViT finds landmark patches; any image size",
            "A Vision Transformer's CLS attention concentrates on the few patches that carry the class "
            "(landmarks) rather than on distractors; with padding masks and per-image 2-D positions the same "
            "ViT classifies images of varying size and aspect ratio without resizing.",
            order=14)
def run(out_dir: Path, small: bool, seed: int) -> Outcome:
    lm = _landmarks(small, seed)
    sc = _scans(small, seed)

    tr, un = lm["trained"], lm["untrained"]
    c_prec = [at_least("landmarks: precision@k of CLS attention / chance", tr["precision_at_k"] / tr["chance"],
                       PRECISION_FACTOR),
              at_least("landmarks: precision@k trained − untrained", tr["precision_at_k"] - un["precision_at_k"], 0.0)]
    c_scan = [at_least("scans of mixed sizes: accuracy within the training sizes",
                       sc["accuracy_training_sizes"]["accuracy"], SCAN_ACC_MIN)]
    criteria = c_prec + c_scan
    precision_ok, scans_ok = all(c.holds() for c in c_prec), all(c.holds() for c in c_scan)
    supported = precision_ok and scans_ok

    figures = [_plot(out_dir, lm, sc)]
    strip = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}  # noqa: E731
    numbers = {
        "patch": PATCH, "model": {"dim": 32, "heads": 4, "layers": 2, "mlp_ratio": 2.0},
        "landmarks": {
            "size": list(LANDMARK_SIZE), "num_landmarks": NUM_LANDMARKS, "num_distractors": NUM_DISTRACTORS,
            "num_classes": NUM_CLASSES, "k": NUM_LANDMARKS, "steps": lm["steps"], "batch": lm["batch"],
            "eval_images": lm["eval_images"], "final_loss": lm["final_loss"],
            "trained": strip(tr), "untrained": strip(un), "other_sizes": [strip(o) for o in lm["other_sizes"]],
        },
        "scans": strip(sc),
        "precision_factor_required": PRECISION_FACTOR, "scan_accuracy_required": SCAN_ACC_MIN,
    }
    other = ", ".join(f"{o['size'][0]}x{o['size'][1]}: acc {o['accuracy']:.2f}, P@k {o['precision_at_k']:.2f} "
                      f"(chance {o['chance']:.3f})" for o in lm["other_sizes"])
    verdict = (
        f"Landmarks ({LANDMARK_SIZE[0]}x{LANDMARK_SIZE[1]}, {tr['patches']} patches): accuracy {tr['accuracy']:.2f}; "
        f"the top-{NUM_LANDMARKS} CLS-attended patches are landmarks {tr['precision_at_k']:.0%} of the time vs "
        f"chance {tr['chance']:.1%} ({tr['precision_at_k'] / tr['chance']:.1f}x; untrained "
        f"{un['precision_at_k']:.0%}); unseen sizes without retraining: {other}. Scans of mixed sizes "
        f"(no resizing): accuracy {sc['accuracy_training_sizes']['accuracy']:.2f} within the training sizes, "
        f"{sc['accuracy_unseen_larger']['accuracy']:.2f} on larger unseen sizes; the top attended patch is the "
        f"lesion in {sc['lesion_top1_attention_hit_rate']:.0%} of positives (chance "
        f"{sc['lesion_top1_chance']:.0%}). {'The claim holds' if supported else 'The claim is NOT supported'} "
        f"(margins: P@k > {PRECISION_FACTOR:g}x chance and above untrained, scan accuracy >= {SCAN_ACC_MIN}).")
    return Outcome(numbers=numbers, verdict=verdict, supported=supported, figures=figures, criteria=criteria)


# --------------------------------------------------------------------------- figure


def _heat(ax, image: Tensor, attn: Tensor, outline: list[tuple[int, int]], title: str) -> None:
    """Gray image, CLS attention ``attn [h, w]`` per patch as a heat map, outlined patches ``(row, col)``."""
    from matplotlib.patches import Rectangle

    h, w = image.shape
    ax.imshow(image.numpy(), cmap="gray", interpolation="nearest")
    hg, wg = attn.shape
    rgba = torch.zeros(hg, wg, 4)  # red, opacity proportional to the attention (0.45 at the maximum)
    rgba[..., 0] = 1.0
    rgba[..., 3] = 0.45 * attn / attn.max().clamp_min(1e-12)
    ax.imshow(rgba.numpy(), interpolation="nearest", extent=(-0.5, wg * PATCH - 0.5, hg * PATCH - 0.5, -0.5))
    for r, c in outline:
        ax.add_patch(Rectangle((c * PATCH - 0.5, r * PATCH - 0.5), PATCH, PATCH, fill=False, edgecolor="cyan",
                               linewidth=1.8))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _plot(out_dir: Path, lm: dict, sc: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(2, 2, figsize=(11, 9))
    (ax_a, ax_b), (ax_c, ax_d) = axes

    # (a) a landmark image with the CLS attention and the landmark patches.
    image, label, pred, attn, marks = lm["trained"]["_example"]
    hg, wg = LANDMARK_SIZE[0] // PATCH, LANDMARK_SIZE[1] // PATCH
    outline = [divmod(int(i), wg) for i in marks.nonzero().flatten()]
    _heat(ax_a, image, attn.view(hg, wg), outline,
          f"(a) landmark image: class {label}, predicted {pred}\nred = CLS attention (last layer, mean of "
          "heads); cyan = landmark patches")

    # (b) precision@k vs chance, at the training size and at unseen sizes.
    evals = [lm["trained"]] + lm["other_sizes"]
    labels = [f"{e['size'][0]}x{e['size'][1]}" + (" (train)" if i == 0 else "") for i, e in enumerate(evals)]
    xs = np.arange(len(evals))
    ax_b.bar(xs - 0.27, [e["chance"] for e in evals], 0.27, color="0.6", label="chance k/L")
    ax_b.bar([xs[0]], [lm["untrained"]["precision_at_k"]], 0.27, color="C1", label="untrained (train size)")
    ax_b.bar(xs + 0.27, [e["precision_at_k"] for e in evals], 0.27, color="C0", label="trained")
    for x, e in zip(xs, evals):
        ax_b.text(x + 0.27, e["precision_at_k"] + 0.01, f"{e['precision_at_k']:.2f}", ha="center", fontsize=8)
    ax_b.axhline(PRECISION_FACTOR * lm["trained"]["chance"], color="k", ls=":", lw=1,
                 label=f"{PRECISION_FACTOR:g}x chance (train size)")
    ax_b.set_xticks(xs, labels, fontsize=8)
    ax_b.set_ylim(0, 1.25)
    ax_b.set_ylabel(f"landmark precision@{NUM_LANDMARKS}")
    ax_b.set_title(f"(b) top-{NUM_LANDMARKS} CLS-attended patches that are landmarks", fontsize=9)
    ax_b.legend(fontsize=7, loc="upper left", ncol=2)

    # (c) scan accuracy per long side and per aspect.
    groups = [(f"long side {k} px" + (" (unseen)" if int(k.split("-")[0]) > SCAN_TRAIN_SIDES[1] else ""), v)
              for k, v in sc["accuracy_by_long_side_px"].items()]
    groups += [(k, v) for k, v in sc["accuracy_by_aspect"].items()]
    ys = np.arange(len(groups))
    colors = ["C2"] * len(sc["accuracy_by_long_side_px"]) + ["C4"] * len(sc["accuracy_by_aspect"])
    accs = [0.0 if v["accuracy"] is None else v["accuracy"] for _, v in groups]
    ax_c.barh(ys, accs, color=colors)
    for y, (_, v), a in zip(ys, groups, accs):
        ax_c.text(a + 0.01, y, f"{a:.2f} (n={v['n']})", va="center", fontsize=8)
    ax_c.axvline(0.5, color="k", ls=":", lw=1, label="chance")
    ax_c.set_yticks(ys, [g for g, _ in groups], fontsize=8)
    ax_c.invert_yaxis()
    ax_c.set_xlim(0, 1.2)
    ax_c.set_xlabel("accuracy (lesion present / absent)")
    ax_c.set_title(f"(c) scans of mixed size, no resizing (trained on sides {SCAN_TRAIN_SIDES[0]}-"
                   f"{SCAN_TRAIN_SIDES[1]} px)", fontsize=9)
    ax_c.legend(fontsize=7, loc="lower right")

    # (d) a scan with the CLS attention and the lesion patch.
    image, attn, lesion, label, pred = sc["_example"]
    _heat(ax_d, image, attn, [divmod(lesion, attn.shape[1])],
          f"(d) scan {image.shape[0]}x{image.shape[1]} px (H x W): lesion {label}, predicted {pred}\n"
          "red = CLS attention; cyan = lesion patch")

    fig.tight_layout()
    save_figure_atomic(fig, out_dir / "vit.png")
    plt.close(fig)
    return "vit.png"
