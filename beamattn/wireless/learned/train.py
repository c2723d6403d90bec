"""Training the learned baselines on the selector's training drops, with the selector's budget.

Everything but the loss is :func:`beamattn.wireless.train.train_selector`'s recipe: the same
training and validation drops (:func:`~beamattn.wireless.train.collect_pool` on the training seed's
streams, disjoint from the evaluation drops), the same report history ``L`` and Set B, the same
initial seeding, minibatch sequence, ``steps``, ``batch``, AdamW (``lr``, ``weight_decay``), OneCycle
schedule (10% warm-up), gradient clipping at 1, validation every ``steps // 30`` steps, and the best
validation state kept by the same criterion — the spectral efficiency at the time of use,
``log2(1 + ρ g)`` of the beam the model picks (its argmax).

Losses (per decision, over the ``M`` beams of Set A; ``g_i`` = beam ``i``'s gain over the use interval):

- ``hard``: cross-entropy to the genie beam ``argmax_i g_i`` (TR 38.843's classification target);
- ``soft``: cross-entropy to ``p_i = softmax_i(10 log10(g_i) / T)`` with ``T = temperature_db``
  (1 dB by default): beams within about ``T`` dB of the best share the target, so a near-tie is not
  punished like a miss — the classification analogue of the selector's SE objective.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ...device import describe_device
from ...io import save_figure_atomic, write_json_atomic
from ...seeds import check_seed
from ..measurement import set_b_indices
from ..runner import TRAIN_STREAM, VALID_STREAM, make_codebooks
from ..scenario import Scenario
from ..selector import SelectorConfig
from ..train import DecisionPool, collect_pool, one_cycle, validation_panel
from .checkpoint import save_learned
from .models import (LARGE_FACTOR, LEARNED_MODELS, MODEL_SPECS, LearnedConfig, LearnedModel, build_model,
                     count_parameters, matched_hidden, parameter_count)

__all__ = ["train_learned", "train_learned_models", "model_config", "selector_parameters", "soft_labels",
           "optimiser_step", "learned_loss", "LEARNED_MODELS"]

SOFT_TEMPERATURE_DB = 1.0  # soft labels: softmax of the use-interval gains in dB over this temperature


def _selector_config(scn: Scenario) -> SelectorConfig:
    import dataclasses

    from ..selector import conv_config

    # The convolution-key score network (today's selector), also when the scenario's selector is the contextual
    # one (arch "transformer"): the learned baselines keep their models and parameter counts.
    return dataclasses.replace(conv_config(scn.selector), learned=True)


def _sizes(scn: Scenario) -> tuple[int, int]:
    """(Set A size M, Set B size Mb) of the scenario."""
    narrow, _ = make_codebooks(scn)
    return narrow.num_beams, int(set_b_indices(narrow.num_beams, scn.measurement.set_b, grid=narrow.grid).numel())


def selector_parameters(scn: Scenario) -> int:
    """Trainable parameters of the scenario's learned attention selector (closed form)."""
    cfg = _selector_config(scn)
    m, mb = _sizes(scn)
    return parameter_count("score", cfg.d_model, cfg.history, mb, m, cfg, csi=cfg.csi_keys)


def model_config(scn: Scenario, model: str) -> LearnedConfig:
    """The config of learned baseline ``model`` for ``scn``: the selector's history ``L``; width matched
    to the selector's parameter count (``"matched"``) or to :data:`LARGE_FACTOR` times it (``"large"``)."""
    if model not in MODEL_SPECS:
        import difflib

        close = difflib.get_close_matches(model, LEARNED_MODELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"train: model {model!r}{hint}; expected one of {list(LEARNED_MODELS)}")
    spec = MODEL_SPECS[model]
    sel = _selector_config(scn)
    m, mb = _sizes(scn)
    target = selector_parameters(scn) * (1 if spec.size == "matched" else LARGE_FACTOR)
    if spec.arch == "score" and spec.size == "matched":
        hidden = sel.d_model  # the selector's own network, parameter for parameter
    else:
        hidden = matched_hidden(spec.arch, target, sel.history, mb, m, sel, csi=sel.csi_keys)
    # csi: every model reads what the selector's keys read (the complex reports' reconstructed gains too).
    return LearnedConfig(kind=model, arch=spec.arch, hidden=hidden, history=sel.history, loss=spec.loss,
                         temperature_db=SOFT_TEMPERATURE_DB,
                         selector=sel.to_dict() if spec.arch == "score" else None, csi=sel.csi_keys)


def soft_labels(gain: torch.Tensor, temperature_db: float) -> torch.Tensor:
    """``softmax(10 log10(gain) / temperature_db)`` over the last axis: ``gain [..., M]`` linear → ``[..., M]``."""
    return torch.softmax(10 * torch.log10(gain.clamp_min(1e-30)) / temperature_db, dim=-1)


def learned_loss(model: LearnedModel, pool: DecisionPool) -> torch.Tensor:
    """Cross-entropy of ``model``'s logits on ``pool`` to its genie beam (hard) or soft labels (soft)."""
    logits = model(pool.rsrp, pool.phase if model.config.csi else None)  # [S, M]
    gain = pool.gain.to(logits.dtype)  # [S, M]
    if model.config.loss == "hard":
        return F.cross_entropy(logits, gain.argmax(-1))
    return F.cross_entropy(logits, soft_labels(gain, model.config.temperature_db))


@torch.no_grad()
def _validate(model: LearnedModel, pool: DecisionPool, rho: float) -> dict:
    """The selector's validation numbers for the argmax beam: SE at use, loss to genie (dB), within 1 dB."""
    pick = model(pool.rsrp, pool.phase if model.config.csi else None).argmax(-1, keepdim=True)  # [S, 1]
    gain = pool.gain.gather(-1, pick).squeeze(-1)  # [S]
    genie = pool.gain.max(-1).values
    loss_db = 10 * torch.log10(genie.clamp_min(1e-30)) - 10 * torch.log10(gain.clamp_min(1e-30))
    return {"se": torch.log2(1 + rho * gain).mean().item(), "loss_db": loss_db.mean().item(),
            "within_1db": (loss_db <= 1).float().mean().item(),
            "top1": (pick.squeeze(-1) == pool.gain.argmax(-1)).float().mean().item()}


def train_learned(scn: Scenario, out_dir: str | Path, *, model: str, seed: int | None = None,
                  steps: int | None = None, device: torch.device | str = "cpu", progress: bool = True) -> dict:
    """Train learned baseline ``model`` (one of :data:`LEARNED_MODELS`) on ``scn``'s training drops.

    Writes ``OUT/<model>.safetensors``, ``OUT/<model>_train_log.json`` and ``OUT/<model>_training_curve.png``;
    returns the log (checkpoint path, parameter counts, best validation numbers, elapsed seconds).
    ``seed`` / ``steps`` default to the scenario's ``[training]`` values, as for ``train_selector``.
    """
    return train_learned_models(scn, out_dir, models=[model], seed=seed, steps=steps, device=device,
                                progress=progress)[model]


def train_learned_models(scn: Scenario, out_dir: str | Path, *, models: list[str] | tuple[str, ...],
                         seed: int | None = None, steps: int | None = None, device: torch.device | str = "cpu",
                         progress: bool = True) -> dict[str, dict]:
    """:func:`train_learned` for several models, collecting the training and validation drops once.

    Each model is trained as if alone (its own ``torch.manual_seed(seed)`` and minibatch sequence), so
    its weights are the same as from :func:`train_learned`.
    """
    configs = {name: model_config(scn, name) for name in models}  # unknown names fail before any work
    device = torch.device(device)
    tc = scn.training
    seed = check_seed(tc.seed if seed is None else seed, "train: seed")
    steps = tc.steps if steps is None else steps
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"train: steps = {steps!r}; expected an integer >= 1")
    history = _selector_config(scn).history
    t0 = time.time()
    _log(progress, f"collecting {tc.drops} training and {max(16, tc.drops // 4)} validation drops ...")
    train, set_b = collect_pool(scn, seed, tc.drops, TRAIN_STREAM, history, device)
    valid, _ = collect_pool(scn, seed, max(16, tc.drops // 4), VALID_STREAM, history, device)
    collect_s = time.time() - t0
    narrow, _ = make_codebooks(scn)
    beams = narrow.beams.to(device)
    measured = torch.zeros(narrow.num_beams, dtype=torch.bool, device=device)
    measured[set_b] = True
    out = {}
    for name, cfg in configs.items():
        out[name] = _fit(scn, cfg, train, valid, beams, measured, seed, steps, device, progress, Path(out_dir))
        out[name]["collect_s"] = collect_s
    return out


def optimiser_step(module: torch.nn.Module, loss: torch.Tensor, opt: torch.optim.Optimizer, sched) -> None:
    """One step of ``train_selector``'s recipe: backward, clip the gradient norm at 1, AdamW, OneCycle."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
    opt.step()
    sched.step()


def _fit(scn: Scenario, cfg: LearnedConfig, train: DecisionPool, valid: DecisionPool, beams: torch.Tensor,
         measured: torch.Tensor, seed: int, steps: int, device: torch.device, progress: bool, out_dir: Path) -> dict:
    tc = scn.training
    torch.manual_seed(seed)
    t0 = time.time()
    model = build_model(cfg, beams, measured)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = one_cycle(opt, tc.lr, steps)
    rho = 10 ** (scn.snr_db / 10)
    gen = torch.Generator().manual_seed(seed)
    log = {"step": [], "train_ce": [], "valid_se": [], "valid_loss_db": [], "valid_within_1db": []}
    best, best_state = -math.inf, None
    every = max(1, steps // 30)
    for step in range(1, steps + 1):
        idx = torch.randint(len(train), (min(tc.batch, len(train)),), generator=gen).to(device)
        loss = learned_loss(model, train.take(idx))
        optimiser_step(model, loss, opt, sched)
        if step % every == 0 or step == steps:
            model.eval()
            v = _validate(model, valid, rho)
            model.train()
            for key, val in (("step", step), ("train_ce", loss.item()), ("valid_se", v["se"]),
                             ("valid_loss_db", v["loss_db"]), ("valid_within_1db", v["within_1db"])):
                log[key].append(val)
            if v["se"] > best:
                best, best_state = v["se"], {k: t.detach().clone() for k, t in model.state_dict().items()}
            if progress and (step % (5 * every) == 0 or step == steps):
                _log(True, f"{cfg.kind} step {step}/{steps}: validation SE {v['se']:.3f} b/s/Hz, loss to genie "
                           f"{v['loss_db']:.2f} dB, within 1 dB {v['within_1db']:.3f}")
    model.load_state_dict(best_state)
    model.eval()
    final = _validate(model, valid, rho)
    elapsed = time.time() - t0
    ckpt = save_learned(model, beams, out_dir / f"{cfg.kind}.safetensors",
                        extra={"scenario": scn.name, "train_seed": seed, "steps": steps, "valid": final})
    # The file name, relative to the output folder: out_dir may be a staging folder that is renamed when complete.
    result = {"checkpoint": ckpt.name, "model": cfg.kind, "config": cfg.to_dict(), "scenario": scn.name,
              "seed": seed, "steps": steps, "parameters": count_parameters(model),
              "selector_parameters": selector_parameters(scn), "train_decisions": len(train),
              "valid_decisions": len(valid), "valid_best": final, "elapsed_s": elapsed, "log": log,
              "device": describe_device(device)}
    write_json_atomic(out_dir / f"{cfg.kind}_train_log.json", result)
    _curve(log, scn, cfg.kind, out_dir / f"{cfg.kind}_training_curve.png")
    _log(progress, f"{cfg.kind} ({result['parameters']} parameters) trained in {elapsed:.1f} s: validation SE "
                   f"{final['se']:.3f} b/s/Hz, loss to genie {final['loss_db']:.2f} dB, within 1 dB "
                   f"{final['within_1db']:.3f} -> {ckpt}")
    return result


def _log(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, file=sys.stderr)


def _curve(log: dict, scn: Scenario, name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    a.plot(log["step"], log["train_ce"], label="training batch cross-entropy")
    a.set_xlabel("step")
    a.set_ylabel("cross-entropy (nats)")
    a2 = a.twinx()
    a2.plot(log["step"], log["valid_se"], color="C1", label="validation SE")
    a2.set_ylabel("validation SE at use (b/s/Hz)", color="C1")
    a.legend(loc="upper right")
    a.grid(True, alpha=0.3)
    validation_panel(b, log)
    fig.suptitle(f"Training learned baseline {name!r} on {scn.name}")
    save_figure_atomic(fig, path)
    plt.close(fig)
