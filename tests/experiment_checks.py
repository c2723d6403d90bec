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


# --------------------------------------------------------------------------- independent references
# NumPy/SciPy Monte Carlo and quadrature of the experiments' stated setups: evidence that does not come from the
# experiment's own code (it calls beamattn's attend; these do not).


def softmax_rows_mc(sigma: "np.ndarray", num_keys: int, key0: "np.ndarray | float" = None, rng=None):
    """Softmax weights of ``num_keys`` scores ``sigma·N(0, 1)`` per row (key 0's score replaced by ``key0``)."""
    import numpy as np

    rng = np.random.default_rng(0) if rng is None else rng
    z = sigma[:, None] * rng.standard_normal((sigma.size, num_keys))  # [T, n]
    if key0 is not None:
        z[:, 0] = key0
    z = z - z.max(-1, keepdims=True)
    w = np.exp(z)
    return w / w.sum(-1, keepdims=True)  # [T, n]


def query_norm_scale(d: int, draws: int, rng) -> "np.ndarray":
    """``||q||/√d`` for ``q ~ N(0, I_d)``: the std of a scaled dot score ``q·k/√d`` given ``q`` (k ~ N(0, I))."""
    import numpy as np

    return np.sqrt(rng.chisquare(d, draws) / d)


def assert_mc_mean(value: float, samples: "np.ndarray", trials: int, what: str, k: float = 4.0) -> None:
    """``value`` (a mean over ``trials`` draws in the experiment) equals the Monte Carlo mean of ``samples``
    within ``k`` standard errors of the difference."""
    import numpy as np

    se = samples.std() * np.sqrt(1 / trials + 1 / samples.size)
    assert abs(value - samples.mean()) <= k * se + 1e-9, (what, value, float(samples.mean()), float(se))
