"""The training schedule: torch's OneCycleLR without its division by zero at exactly 10 steps."""

from __future__ import annotations

import pytest
import torch

from beamattn.wireless.train import one_cycle


def _lrs(sched_fn, steps: int) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = sched_fn(opt, steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("steps", range(2, 41))
def test_every_step_count_runs_and_keeps_torchs_schedule_elsewhere(steps):
    ours = _lrs(lambda o, n: one_cycle(o, 3e-3, n), steps)
    assert all(v > 0 for v in ours) and max(ours) == pytest.approx(3e-3, rel=0.5)
    if steps != 10:  # the same numbers as torch's own schedule (checkpoints and fixtures are unchanged)
        ref = _lrs(lambda o, n: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=3e-3, total_steps=n, pct_start=0.1),
                   steps)
        assert ours == ref
    else:  # torch's own schedule divides by zero here
        with pytest.raises(ZeroDivisionError):
            _lrs(lambda o, n: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=3e-3, total_steps=n, pct_start=0.1), 10)
