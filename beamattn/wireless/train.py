"""``beamattn train``: fit the attention selector to maximise spectral efficiency at the time of use.

Loss: ``-mean log2(1 + ρ wᴴ R w)`` where ``w`` is the selector's (soft) beam for a
decision and ``R`` the channel covariance over the interval in which that beam is
*used* (after the reporting delay) — so the selector learns to predict, not to
describe the past. Training and validation drops come from seed streams that
never overlap the evaluation drops (see :data:`runner.TRAIN_STREAM`). The best
validation state is kept and written as a safetensors checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..device import describe_device
from ..io import save_figure_atomic, write_json_atomic
from .checkpoint import save_selector
from .runner import TRAIN_STREAM, VALID_STREAM, episodes
from .scenario import Scenario
from .selector import AttentionSelector

__all__ = ["train_selector", "DecisionPool", "collect_pool"]


@dataclass
class DecisionPool:
    """Flattened decisions: ``rsrp [S, L, M]``, ``phase [S, M]`` or None, ``cov [S, N, N]``, ``gain [S, M]``."""

    rsrp: torch.Tensor
    phase: torch.Tensor | None
    cov: torch.Tensor
    gain: torch.Tensor

    def __len__(self) -> int:
        return int(self.rsrp.shape[0])

    def take(self, idx: torch.Tensor) -> "DecisionPool":
        return DecisionPool(self.rsrp[idx], None if self.phase is None else self.phase[idx], self.cov[idx],
                            self.gain[idx])


def collect_pool(scn: Scenario, seed: int, drops: int, stream: int, history: int,
                 device: torch.device | str = "cpu") -> tuple[DecisionPool, torch.Tensor]:
    """Decisions of ``drops`` drops from ``stream``, on ``device``; also returns the Set B indices."""
    parts = []
    set_b = None
    for _, ep, _ in episodes(scn, seed, drops, device=device, stream=stream):
        m = ep.num_beams
        rsrp, phase = ep.history(history)  # [B, D, L, K]
        parts.append((rsrp[..., :m].flatten(0, 1), None if phase is None else phase[:, :, -1, :m].flatten(0, 1),
                      ep.cov_use.flatten(0, 1), ep.gain_use.flatten(0, 1)))
        set_b = ep.set_b
    cat = [None if parts[0][i] is None else torch.cat([p[i] for p in parts]) for i in range(4)]
    return DecisionPool(*cat), set_b


def _objective(sel: AttentionSelector, pool: DecisionPool, rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    out = sel(pool.rsrp, pool.phase)
    w = out.beams.to(pool.cov.dtype)  # [S, N]
    gain = torch.einsum("sm,smn,sn->s", w.conj(), pool.cov, w).real.clamp_min(0)  # [S]
    return torch.log2(1 + rho * gain), gain


@torch.no_grad()
def _validate(sel: AttentionSelector, pool: DecisionPool, rho: float) -> dict:
    se, gain = _objective(sel, pool, rho)
    genie = pool.gain.max(-1).values
    loss_db = 10 * torch.log10(genie.clamp_min(1e-30)) - 10 * torch.log10(gain.clamp_min(1e-30))
    return {"se": se.mean().item(), "loss_db": loss_db.mean().item(), "within_1db": (loss_db <= 1).float().mean().item()}


def train_selector(scn: Scenario, out_dir: str | Path, *, seed: int | None = None, progress: bool = True,
                   steps: int | None = None, device: torch.device | str = "cpu") -> dict:
    """Train the scenario's selector; write ``selector.safetensors``, ``train_log.json`` and a curve figure.

    The decision pools, the selector and the optimiser live on ``device``. Minibatch indices and the
    initial weights are drawn on the CPU (the same sequence on every device); the checkpoint is
    written from CPU copies and loads on any device.
    """
    device = torch.device(device)
    tc = scn.training
    seed = tc.seed if seed is None else seed
    steps = tc.steps if steps is None else steps
    cfg = dataclasses.replace(scn.selector, learned=True)  # its grid: the UPA's DFT grid (set by the scenario)
    if cfg.cophase and not scn.measurement.with_phase:
        raise ValueError("selector: field 'cophase' = true needs measurement 'with_phase' = true")
    torch.manual_seed(seed)
    t0 = time.time()
    _log(progress, f"collecting {tc.drops} training and {max(16, tc.drops // 4)} validation drops ...")
    train, set_b = collect_pool(scn, seed, tc.drops, TRAIN_STREAM, cfg.history, device)
    valid, _ = collect_pool(scn, seed, max(16, tc.drops // 4), VALID_STREAM, cfg.history, device)
    from .runner import make_codebooks

    narrow, _ = make_codebooks(scn)
    measured = torch.zeros(narrow.num_beams, dtype=torch.bool, device=device)
    measured[set_b] = True
    sel = AttentionSelector(cfg, narrow.beams.to(device), measured)  # built on the device of its beams
    opt = torch.optim.AdamW(sel.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.lr, total_steps=steps, pct_start=0.1)
    rho = 10 ** (scn.snr_db / 10)
    gen = torch.Generator().manual_seed(seed)
    log = {"step": [], "train_se": [], "valid_se": [], "valid_loss_db": [], "valid_within_1db": []}
    best, best_state = -math.inf, None
    every = max(1, steps // 30)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=f"train {scn.name}", file=sys.stderr, leave=False, disable=None)
    for step in range(1, steps + 1):
        idx = torch.randint(len(train), (min(tc.batch, len(train)),), generator=gen).to(device)
        se, _ = _objective(sel, train.take(idx), rho)
        loss = -se.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sel.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % every == 0 or step == steps:
            sel.eval()
            v = _validate(sel, valid, rho)
            sel.train()
            for key, val in (("step", step), ("train_se", -loss.item()), ("valid_se", v["se"]),
                             ("valid_loss_db", v["loss_db"]), ("valid_within_1db", v["within_1db"])):
                log[key].append(val)
            if v["se"] > best:
                best, best_state = v["se"], {k: t.detach().clone() for k, t in sel.state_dict().items()}
            if bar is not None and not bar.disable:
                bar.set_postfix(se=f"{v['se']:.3f}", loss_db=f"{v['loss_db']:.2f}")
            elif progress and (step % (5 * every) == 0 or step == steps):  # not a terminal: a line now and then
                _log(True, f"step {step}/{steps}: validation SE {v['se']:.3f} b/s/Hz, loss to genie "
                           f"{v['loss_db']:.2f} dB, within 1 dB {v['within_1db']:.3f}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    sel.load_state_dict(best_state)
    sel.eval()
    final = _validate(sel, valid, rho)
    out_dir = Path(out_dir)
    ckpt = save_selector(sel, out_dir / "selector.safetensors",
                         extra={"scenario": scn.name, "train_seed": seed, "steps": steps, "valid": final})
    result = {"checkpoint": str(ckpt), "scenario": scn.name, "seed": seed, "steps": steps, "train_decisions": len(train),
              "valid_decisions": len(valid), "valid_best": final, "elapsed_s": time.time() - t0, "log": log,
              "selector": cfg.to_dict(), "device": describe_device(device)}
    write_json_atomic(out_dir / "train_log.json", result)
    _curve(log, scn, out_dir / "training_curve.png")
    _log(progress, f"trained in {result['elapsed_s']:.1f} s: validation SE {final['se']:.3f} b/s/Hz, loss to genie "
                   f"{final['loss_db']:.2f} dB, within 1 dB {final['within_1db']:.3f} -> {ckpt}")
    return result


def _log(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, file=sys.stderr)


def _curve(log: dict, scn: Scenario, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    a.plot(log["step"], log["train_se"], label="training batch")
    a.plot(log["step"], log["valid_se"], label="validation")
    a.set_xlabel("step")
    a.set_ylabel("spectral efficiency at use (b/s/Hz)")
    a.legend()
    a.grid(True, alpha=0.3)
    b.plot(log["step"], log["valid_loss_db"], color="C3")
    b.set_xlabel("step")
    b.set_ylabel("validation loss to genie (dB)", color="C3")
    b2 = b.twinx()
    b2.plot(log["step"], log["valid_within_1db"], color="C2")
    b2.set_ylabel("validation within 1 dB", color="C2")
    b.grid(True, alpha=0.3)
    fig.suptitle(f"Training the attention selector on {scn.name}")
    save_figure_atomic(fig, path)
    plt.close(fig)
