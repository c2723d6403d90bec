"""Figures of ``beamattn run`` (beamattn.wireless.plots) on a small synthetic trace and summary."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from beamattn.wireless.arrays import ULA, UPA
from beamattn.wireless.codebooks import dft_codebook
from beamattn.wireless.plots import policy_style, run_figures

ALL = ("snr_cdf.png", "snr_time.png", "attention_weights.png", "beam_pattern.png", "accuracy_overhead.png")
N, M, D = 8, 8, 12  # antennas, beams, decisions


def _scn():
    return SimpleNamespace(name="t", array=ULA(N), snr_db=0.0, outage_db=0.0, measurement=SimpleNamespace(set_b=2),
                           channel=SimpleNamespace(sample_interval=0.001))


def _make(policies, seed: int = 0):
    """A trace and summary shaped as ``run_scenario`` builds them, for ``policies``."""
    rng = np.random.default_rng(seed)
    beams = dft_codebook(ULA(N)).beams  # [M, N]
    genie = [int(v) for v in np.clip(np.round(np.linspace(1, 6, D) + rng.normal(0, 0.3, D)), 0, M - 1)]
    genie_db = list(10 + rng.normal(0, 1, D))
    trace: dict = {"_times": [0.005 + 0.02 * k for k in range(D)], "_genie_index": genie,
                   "_positions": [[20.0, 0.05 * t - 10, 0.0] for t in range(D * 20 + 10)]}
    summary: dict = {}
    for name in policies:
        if name in ("mrt", "uniform"):
            index = [-1] * D
        elif name == "genie":
            index = list(genie)
        else:
            index = [int(v) for v in rng.integers(0, M, D)]
        weights = None
        if name == "uniform":
            weights = [[1 / M] * M for _ in range(D)]
        elif name == "attention":
            w = rng.random((D, M)) * (rng.random((D, M)) < 0.3)
            w[np.arange(D), index] += 1
            weights = (w / w.sum(1, keepdims=True)).tolist()
        w_mid = beams[max(index[D // 2], 0)]
        if name == "mrt":
            w_mid = (beams[genie[D // 2]] + 0.3 * beams[(genie[D // 2] + 1) % M]) / 1.04
        trace[name] = {
            "snr_db": list(np.array(genie_db) - (0 if name in ("genie", "mrt") else rng.exponential(3, D))),
            "index": index, "genie_db": genie_db, "mrt_db": list(np.array(genie_db) + 1), "weights": weights,
            "beam_mid": torch.view_as_real(w_mid).tolist(), "snr_all": list(rng.normal(8, 4, 400)),
        }
        summary[name] = {}
        for key, mean in (("top1", rng.random()), ("within_1db", rng.random()), ("overhead", float(rng.integers(0, M))),
                          ("snr_db", 8.0), ("loss_db", 2.0)):
            summary[name][key] = {"mean": float(mean), "ci95": [float(mean) - 0.05, float(mean) + 0.05]}
        summary[name]["loss_db_p95"] = 5.0
        summary[name]["loss_db_median"] = 1.0
    return trace, summary


def _check(paths, fig_dir: Path, expected):
    assert sorted(Path(p).name for p in paths) == sorted(expected)
    assert sorted(p.name for p in fig_dir.iterdir()) == sorted(expected)  # nothing else, no temp files
    for name in expected:
        assert (fig_dir / name).stat().st_size > 10_000, name
        assert (fig_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_all_five_figures(tmp_path):
    names = ("genie", "mrt", "exhaustive", "best-of-set-b", "random", "uniform", "attention")
    trace, summary = _make(names)
    paths = run_figures(trace, summary, _scn(), tmp_path / "figures")
    _check(paths, tmp_path / "figures", ALL)


def test_subset_without_attention_skips_the_weights(tmp_path):
    trace, summary = _make(("genie", "exhaustive"))
    paths = run_figures(trace, summary, _scn(), tmp_path)
    _check(paths, tmp_path, [n for n in ALL if n != "attention_weights.png"])
    # "uniform" has weights but they say nothing: still no weights figure
    from beamattn.wireless import plots

    trace, _ = _make(("genie", "mrt", "uniform"))
    paths = []
    plots._attention_weights(trace, _scn(), tmp_path / "u", paths)
    assert paths == [] and not (tmp_path / "u").exists()


def test_nan_and_inf_do_not_crash(tmp_path):
    trace, summary = _make(("genie", "mrt", "exhaustive", "attention"), seed=1)
    nan, inf = math.nan, math.inf
    for name in ("genie", "exhaustive", "attention"):
        t = trace[name]
        t["snr_db"][0], t["snr_db"][3] = nan, -inf
        t["snr_all"][:50] = [nan] * 25 + [inf] * 10 + [-inf] * 15
    trace["attention"]["weights"][2] = [nan] * M
    trace["attention"]["index"][5] = -1
    trace["_genie_index"][4] = nan
    trace["mrt"]["beam_mid"][0] = [nan, 0.0]  # this beam is left out of the pattern
    summary["exhaustive"]["top1"] = {"mean": nan, "ci95": [nan, nan]}
    summary["attention"]["overhead"]["ci95"] = [inf, nan]
    paths = run_figures(trace, summary, _scn(), tmp_path)
    _check(paths, tmp_path, ALL)


def test_nothing_to_plot_writes_nothing_much(tmp_path):
    trace, summary = _make(("genie",))
    trace["genie"]["snr_all"] = [math.nan] * 5
    trace["genie"]["snr_db"] = [math.nan] * D
    trace["genie"]["beam_mid"] = None
    summary["genie"]["overhead"]["mean"] = math.nan
    paths = run_figures(trace, summary, _scn(), tmp_path)
    assert [Path(p).name for p in paths] == ["snr_time.png"]  # only the genie beam index is left


def test_colours_are_fixed_per_policy():
    assert policy_style("genie")["color"] == "black" and policy_style("genie")["linestyle"] == "--"
    assert policy_style("mrt")["linestyle"] == "--"
    assert policy_style("attention")["color"] != policy_style("exhaustive")["color"]
    assert policy_style("my-new-policy") == policy_style("my-new-policy")  # unknown names: stable too


@pytest.mark.parametrize("array", [ULA(16), UPA(2, 4)])
def test_beam_pattern_on_other_arrays(tmp_path, array):
    from beamattn.wireless import plots

    trace, _ = _make(("genie",))
    trace["genie"]["beam_mid"] = torch.view_as_real(dft_codebook(array).beams[1]).tolist()
    scn = _scn()
    scn.array = array
    paths: list[str] = []
    plots._beam_pattern(trace, scn, tmp_path, paths)
    assert [Path(p).name for p in paths] == ["beam_pattern.png"]
    # a beam of the wrong size is left out (nothing else to draw: no file)
    trace["genie"]["beam_mid"] = trace["genie"]["beam_mid"][:-1]
    paths = []
    plots._beam_pattern(trace, scn, tmp_path / "x", paths)
    assert paths == []
