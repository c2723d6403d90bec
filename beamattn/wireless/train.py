"""``beamattn train``: fit the attention selector to maximise spectral efficiency at the time of use.

Loss: ``-mean log2(1 + ρ wᴴ R w)`` where ``w`` is the selector's (soft) beam for a
decision and ``R`` the channel covariance over the interval in which that beam is
*used* (after the reporting delay) — so the selector learns to predict, not to
describe the past. Training and validation drops come from seed streams that
never overlap the evaluation drops (see :data:`runner.TRAIN_STREAM`). The best
validation state is kept and written as a safetensors checkpoint. Progress is saved periodically, and
``beamattn train --resume`` continues an interrupted training to the same checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..device import describe_device
from ..io import save_figure_atomic, write_file_atomic, write_json_atomic
from ..outdir import StagedDir, check_out
from ..seeds import check_seed
from .checkpoint import save_selector
from .runner import TRAIN_STREAM, VALID_STREAM, episodes
from .scenario import Scenario
from .selector import AttentionSelector, selector_forward

__all__ = ["train_selector", "progress_dir", "DecisionPool", "collect_pool"]


@dataclass
class DecisionPool:
    """Flattened decisions: ``rsrp [S, L, M]``, ``phase [S, L, M]`` (the phase history of the same reports) or
    None, ``cov [S, N, N]``, ``gain [S, M]``."""

    rsrp: torch.Tensor
    phase: torch.Tensor | None
    cov: torch.Tensor
    gain: torch.Tensor
    burst: torch.Tensor | None = None  # [S, R, M] the latest report's CSI-RS burst phases (measurement burst > 1)
    burst_lead: float | None = None  # burst spacings from its last instance to the middle of the use interval

    def __len__(self) -> int:
        return int(self.rsrp.shape[0])

    def take(self, idx: torch.Tensor) -> "DecisionPool":
        return DecisionPool(self.rsrp[idx], None if self.phase is None else self.phase[idx], self.cov[idx],
                            self.gain[idx], None if self.burst is None else self.burst[idx], self.burst_lead)


def collect_pool(scn: Scenario, seed: int, drops: int, stream: int, history: int,
                 device: torch.device | str = "cpu") -> tuple[DecisionPool, torch.Tensor]:
    """Decisions of ``drops`` drops from ``stream``, on ``device``; also returns the Set B indices."""
    parts = []
    set_b, lead = None, None
    for _, ep, _ in episodes(scn, seed, drops, device=device, stream=stream):
        m = ep.num_beams
        rsrp, phase = ep.history(history)  # [B, D, L, K]
        parts.append((rsrp[..., :m].flatten(0, 1), None if phase is None else phase[..., :m].flatten(0, 1),
                      ep.cov_use.flatten(0, 1), ep.gain_use.flatten(0, 1),
                      None if ep.burst is None else ep.burst[..., :m].flatten(0, 1)))
        set_b, lead = ep.set_b, ep.burst_lead
    cat = [None if parts[0][i] is None else torch.cat([p[i] for p in parts]) for i in range(5)]
    return DecisionPool(*cat, burst_lead=lead if cat[4] is not None else None), set_b


def _objective(sel: AttentionSelector, pool: DecisionPool, rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    out = selector_forward(sel, pool.rsrp, pool.phase, pool.burst, pool.burst_lead)
    w = out.beams.to(pool.cov.dtype)  # [S, N]
    gain = torch.einsum("sm,smn,sn->s", w.conj(), pool.cov, w).real.clamp_min(0)  # [S]
    return torch.log2(1 + rho * gain), gain


@torch.no_grad()
def _validate(sel: AttentionSelector, pool: DecisionPool, rho: float) -> dict:
    se, gain = _objective(sel, pool, rho)
    genie = pool.gain.max(-1).values
    loss_db = 10 * torch.log10(genie.clamp_min(1e-30)) - 10 * torch.log10(gain.clamp_min(1e-30))
    return {"se": se.mean().item(), "loss_db": loss_db.mean().item(), "within_1db": (loss_db <= 1).float().mean().item()}


def one_cycle(opt: torch.optim.Optimizer, lr: float, steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    """The one-cycle learning-rate schedule of every training here: 10% warm-up to ``lr``, then annealing.

    torch's OneCycleLR divides by ``pct_start·steps − 1``, which is 0 for exactly 10 steps (a ZeroDivisionError
    from inside torch): there the warm-up is stretched to 15% (1.5 steps); every other step count keeps 10%.
    """
    pct = 0.15 if abs(0.1 * steps - 1.0) < 1e-9 else 0.1
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=pct)


def progress_dir(out_dir: str | Path) -> Path:
    """Where a training into ``out_dir`` keeps its progress: the hidden sibling ``.<name>.train-progress``."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.train-progress"


def train_selector(scn: Scenario, out_dir: str | Path, *, seed: int | None = None, progress: bool = True,
                   steps: int | None = None, device: torch.device | str = "cpu", force: bool = False,
                   resume: bool = False, save_every: int | None = None,
                   on_step: Callable[[int], None] | None = None) -> dict:
    """Train the scenario's selector; write ``selector.safetensors``, ``train_log.json`` and a curve figure.

    The decision pools, the selector and the optimiser live on ``device``. Minibatch indices and the
    initial weights are drawn on the CPU (the same sequence on every device); the checkpoint is
    written from CPU copies and loads on any device.

    Outputs: ``out_dir`` is checked before anything is computed and written as a whole when training is
    complete (an existing results folder is replaced only with ``force``). Progress: every ``save_every``
    steps (default: at each validation, ~30 per training) the weights, the optimiser and scheduler,
    the random states, the step, the best validation state and the curve are saved, atomically and
    without pickle, in :func:`progress_dir`. ``resume=True`` continues from there and ends with the
    same checkpoint, bit for bit on the same machine, as an uninterrupted training. Without ``resume``
    existing progress is refused (``force`` discards it).

    ``on_step(step)``: called after each optimiser step (and after saving progress); a test hook.
    """
    device = torch.device(device)
    tc = scn.training
    seed = tc.seed if seed is None else seed
    check_seed(seed)
    steps = tc.steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"train: argument 'steps' = {steps!r}; expected an integer >= 1")
    if save_every is not None and (isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1):
        raise ValueError(f"train: argument 'save_every' = {save_every!r}; expected an integer >= 1")
    cfg = dataclasses.replace(scn.selector, learned=True)  # its grid: the UPA's DFT grid (set by the scenario)
    if cfg.cophase and not scn.measurement.with_phase:
        raise ValueError("selector: field 'cophase' = true needs measurement 'with_phase' = true")
    if cfg.csi_keys and not scn.measurement.with_phase:
        raise ValueError("selector: field 'csi_keys' = true needs measurement 'with_phase' = true (the keys read the "
                         "complex reports)")
    out_dir = Path(out_dir)
    check_out(out_dir, kind="dir", force=force)
    prog = progress_dir(out_dir)
    # What a saved progress must match to be resumed (as JSON reads it back: tuples become lists).
    identity = json.loads(json.dumps({"scenario": scn.to_dict(), "seed": seed, "steps": steps,
                                      "device": device.type}))
    saved = None
    if resume:
        saved = _read_progress(prog, identity)
        if saved is None:
            _log(progress, f"train: no progress to resume in {prog}; starting at step 1")
    elif (prog / _PROGRESS_JSON).exists() and not force:
        raise ValueError(f"train: {str(prog)!r} holds the progress of an interrupted training into "
                         f"{str(out_dir)!r}; pass --resume to continue it, or --force to start again")
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
    sched = one_cycle(opt, tc.lr, steps)
    rho = 10 ** (scn.snr_db / 10)
    gen = torch.Generator().manual_seed(seed)
    log = {"step": [], "train_se": [], "valid_se": [], "valid_loss_db": [], "valid_within_1db": []}
    best, best_state = -math.inf, None
    first, elapsed_before = 1, 0.0
    if saved is not None:
        first, best, best_state, log, elapsed_before = _restore(saved, sel, opt, sched, gen, device)
        _log(progress, f"train: resuming at step {first} of {steps} from {prog}")
    elif prog.exists():
        shutil.rmtree(prog)  # forced: an older training's progress is discarded
    every = max(1, steps // 30)
    save_every = every if save_every is None else save_every
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=first - 1, desc=f"train {scn.name}", file=sys.stderr, leave=False,
                   disable=None)
    for step in range(first, steps + 1):
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
        if step % save_every == 0 and step < steps:
            _save_progress(prog, identity, step, sel, opt, sched, gen, best, best_state, log,
                           elapsed_before + time.time() - t0, device)
        if bar is not None:
            bar.update(1)
        if on_step is not None:
            on_step(step)
    if bar is not None:
        bar.close()
    sel.load_state_dict(best_state)
    sel.eval()
    final = _validate(sel, valid, rho)
    elapsed = elapsed_before + time.time() - t0
    with StagedDir(out_dir, force=force, command="train") as stage:  # replaces out_dir when complete
        save_selector(sel, stage / "selector.safetensors",
                      extra={"scenario": scn.name, "train_seed": seed, "steps": steps, "valid": final})
        ckpt = out_dir / "selector.safetensors"
        result = {"checkpoint": str(ckpt), "scenario": scn.name, "seed": seed, "steps": steps,
                  "train_decisions": len(train), "valid_decisions": len(valid), "valid_best": final,
                  "elapsed_s": elapsed, "resumed_at_step": first if saved is not None else None, "log": log,
                  "selector": cfg.to_dict(), "device": describe_device(device)}
        write_json_atomic(stage / "train_log.json", result)
        _curve(log, scn, stage / "training_curve.png")
    shutil.rmtree(prog, ignore_errors=True)  # the training is complete: its progress is no longer needed
    _log(progress, f"trained in {elapsed:.1f} s: validation SE {final['se']:.3f} b/s/Hz, loss to genie "
                   f"{final['loss_db']:.2f} dB, within 1 dB {final['within_1db']:.3f} -> {ckpt}")
    return result


# --------------------------------------------------------------------------- progress (train --resume)

_PROGRESS_JSON = "progress.json"


def _flat(prefix: str, tensors: dict) -> dict[str, torch.Tensor]:
    """CPU, contiguous copies named ``prefix.key`` (complex tensors as their real view [..., 2])."""
    out = {}
    for k, t in tensors.items():
        t = t.detach().cpu()
        out[f"{prefix}.{k}"] = (torch.view_as_real(t) if t.is_complex() else t).contiguous().clone()
    return out


def _save_progress(prog: Path, identity: dict, step: int, sel: AttentionSelector, opt: torch.optim.Optimizer,
                   sched, gen: torch.Generator, best: float, best_state: dict | None, log: dict, elapsed: float,
                   device: torch.device) -> None:
    """Write ``state-<step>.safetensors`` then, as the commit point, ``progress.json`` naming it with its sha256.

    Either file is written atomically and the JSON is replaced last, so a kill at any moment leaves the
    previous consistent pair (or the new one); older state files are removed afterwards.
    """
    from safetensors.torch import save_file

    prog.mkdir(parents=True, exist_ok=True)
    osd = opt.state_dict()
    tensors = _flat("model", sel.state_dict())
    if best_state is not None:
        tensors.update(_flat("best", best_state))
    opt_keys = {}
    for i, st in osd["state"].items():
        opt_keys[str(i)] = sorted(st)
        tensors.update(_flat(f"opt.{i}", st))
    tensors["rng.gen"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if device.type == "cuda" and torch.cuda.is_initialized():  # (not under tests' simulated CUDA)
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    name = f"state-{step}.safetensors"
    path = write_file_atomic(prog / name, lambda tmp: save_file(tensors, tmp), suffix=".safetensors")
    record = {**identity, "step": step, "state_file": name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
              "best": None if best_state is None else best, "log": log, "elapsed_s": elapsed,
              "optimizer": {"param_groups": osd["param_groups"], "state_keys": opt_keys},
              "scheduler": sched.state_dict(), "complex": [k for k, t in sel.state_dict().items() if t.is_complex()]}
    write_json_atomic(prog / _PROGRESS_JSON, record)
    for old in prog.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def _read_progress(prog: Path, identity: dict) -> dict | None:
    """The saved progress (record and tensors), None when there is none; ValueError for another training's or a
    corrupt one."""
    from safetensors.torch import load_file

    path = prog / _PROGRESS_JSON
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
        state_path = prog / rec["state_file"]
        data = state_path.read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"train: progress {str(path)!r} is unreadable ({e.__class__.__name__}: {e}); "
                         "pass --force (without --resume) to start again") from None
    if hashlib.sha256(data).hexdigest() != rec.get("sha256"):
        raise ValueError(f"train: progress state {str(state_path)!r} does not match its checksum; "
                         "pass --force (without --resume) to start again")
    differ = [k for k in identity if rec.get(k) != identity[k]]
    if differ:
        raise ValueError(f"train: progress {str(path)!r} is for another training (its {', '.join(differ)} "
                         f"differ{'s' if len(differ) == 1 else ''}); resume with the same scenario, seed, steps "
                         "and device, or pass --force (without --resume) to start again")
    rec["tensors"] = load_file(str(state_path))
    return rec


def _restore(saved: dict, sel: AttentionSelector, opt: torch.optim.Optimizer, sched, gen: torch.Generator,
             device: torch.device) -> tuple[int, float, dict | None, dict, float]:
    """Load the saved state into the selector, optimiser, scheduler and generators; (next step, best, best
    state, log, elapsed seconds so far)."""
    t = saved["tensors"]
    complex_keys = set(saved["complex"])

    def part(prefix: str, keys) -> dict:
        out = {}
        for k in keys:
            v = t[f"{prefix}.{k}"]
            out[k] = torch.view_as_complex(v) if k in complex_keys and prefix in ("model", "best") else v
        return out

    model_keys = list(sel.state_dict())
    sel.load_state_dict({k: v.to(device) for k, v in part("model", model_keys).items()})
    best_state = None
    if saved["best"] is not None:
        best_state = {k: v.to(device) for k, v in part("best", model_keys).items()}
    osd = {"state": {int(i): part(f"opt.{i}", keys) for i, keys in saved["optimizer"]["state_keys"].items()},
           "param_groups": saved["optimizer"]["param_groups"]}
    opt.load_state_dict(osd)  # moves the state to the parameters' device
    sched.load_state_dict(saved["scheduler"])
    gen.set_state(t["rng.gen"])
    torch.set_rng_state(t["rng.torch"])
    if "rng.cuda" in t:
        torch.cuda.set_rng_state(t["rng.cuda"], device)
    best = -math.inf if saved["best"] is None else float(saved["best"])
    return int(saved["step"]) + 1, best, best_state, saved["log"], float(saved["elapsed_s"])


def _log(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, file=sys.stderr)


def validation_panel(ax, log: dict) -> None:
    """Validation loss to genie (left axis) and within-1-dB accuracy (right axis) against the step: the
    right panel of every training curve (selector and learned baselines)."""
    ax.plot(log["step"], log["valid_loss_db"], color="C3")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss to genie (dB)", color="C3")
    twin = ax.twinx()
    twin.plot(log["step"], log["valid_within_1db"], color="C2")
    twin.set_ylabel("validation within 1 dB", color="C2")
    ax.grid(True, alpha=0.3)


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
    validation_panel(b, log)
    fig.suptitle(f"Training the attention selector on {scn.name}")
    save_figure_atomic(fig, path)
    plt.close(fig)
