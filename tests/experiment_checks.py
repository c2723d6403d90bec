"""The checks every experiment test makes on a small-scale run."""

import json

from beamattn.experiments import EXPERIMENTS, run_experiment


def run_small(name, tmp_path, seed=0):
    """Run experiment ``name`` at small scale; check its result.json and figures; return the result."""
    res = run_experiment(name, tmp_path, small=True, seed=seed)
    out = tmp_path / name
    assert (out / "result.json").is_file()
    assert res.figures, "an experiment must produce a figure"
    for f in res.figures:
        assert (out / f).is_file() and (out / f).stat().st_size > 10_000
    saved = json.loads((out / "result.json").read_text())
    assert saved["name"] == name and saved["small"] is True
    assert saved["supported"] == res.supported and saved["verdict"] == res.verdict
    assert saved["claim"] == EXPERIMENTS[name].claim and res.verdict
    return res
