"""scripts/paired.py: runs with different policies merged over the same drops; paired differences."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from script_loader import load_script

FIELDS = ("drop", "decision", "time_s", "policy", "beam", "snr_db", "genie_db", "mrt_db", "loss_db", "se",
          "top1", "within_1db", "measured", "active", "entropy")


def _run(folder, values: dict[str, list[float]], seed: int = 0):
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"scenario": {"name": "x"}, "seed": seed}))
    with open(folder / "steps.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        for name, losses in values.items():
            for drop, loss in enumerate(losses):
                for dec in range(2):  # two decisions per drop, the same loss: per-drop mean = loss
                    w.writerow([drop, dec, 0.0, name, 0, 0, 0, 0, loss, 0, 1, 1, 4, 1, 0])
    return str(folder)


def test_paired_merges_runs_and_pairs_drops(tmp_path, capsys):
    paired = load_script("paired")
    a = np.array([1.0, 2.0, 0.5, 3.0])
    b = np.array([0.5, 2.5, 0.25, 1.0])
    r1 = _run(tmp_path / "base", {"exhaustive": a.tolist(), "genie": [0, 0, 0, 0]})
    r2 = _run(tmp_path / "att", {"attention": b.tolist(), "genie": [0, 0, 0, 0]})
    merged = paired.merge_runs([r1, r2])
    assert sorted(merged) == ["attention", "exhaustive", "genie"]
    assert paired.main([r1, r2, "--reference", "attention", "--metrics", "loss_db"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("| exhaustive |"))
    assert f"{(a - b).mean():+.3f} [" in line  # the paired mean of the per-drop differences


def test_paired_refuses_runs_of_other_drops_and_disagreeing_policies(tmp_path, capsys):
    paired = load_script("paired")
    r1 = _run(tmp_path / "a", {"genie": [0, 0]})
    r2 = _run(tmp_path / "b", {"genie": [0, 1]})
    with pytest.raises(ValueError, match="policy 'genie' differs between runs"):
        paired.merge_runs([r1, r2])
    r3 = _run(tmp_path / "c", {"x": [0, 0]}, seed=1)
    assert paired.main([r1, r3, "--reference", "genie"]) == 2
    assert "differ in their seed" in capsys.readouterr().err
    assert paired.main([r1, "--reference", "nope"]) == 2
