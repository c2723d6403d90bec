"""The confidence level of the bootstrap intervals, against the normal quantile (SciPy).

For a large sample the sampling distribution of the mean is normal, so a percentile-bootstrap
interval at level ``c`` has half-width ≈ ``Φ⁻¹((1 + c)/2) · s/√n``: 1.960 for 95%, 1.645 for 90%,
2.576 for 99%. The check tells a 90% interval labelled 95% from a true 95% one (a width-only test
with a 30% margin does not).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from beamattn.wireless.metrics import SUMMARY_KEYS, bootstrap_ci, summarize

N = 2_000  # Gaussian data: the mean is normal; large enough that s/√n is the bootstrap standard error
SEEDS = range(8)  # bootstrap seeds averaged: the 1000-resample quantiles have ~4% noise each, ~1.5% averaged


def _sample(seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(5.0, sigma, N)


def _z(lo: float, hi: float, x: np.ndarray) -> float:
    """Half-width of ``[lo, hi]`` in standard errors ``s/√n``."""
    return (hi - lo) / 2 / (x.std(ddof=1) / np.sqrt(x.size))


@pytest.mark.parametrize("level", [0.90, 0.95, 0.99])
def test_bootstrap_half_width_is_the_normal_quantile_of_its_level(level):
    x = _sample()
    z = np.mean([_z(*bootstrap_ci(x, seed=s, level=level)[1:], x) for s in SEEDS])
    expected = norm.ppf((1 + level) / 2)  # 1.645, 1.960, 2.576
    # 0.08 is ~4 standard errors of the averaged estimate; neighbouring levels are >= 0.3 apart.
    assert z == pytest.approx(expected, abs=0.08), (level, z, expected)


def test_default_level_and_summarize_ci95_are_95_percent():
    x = _sample(1)
    z_default = np.mean([_z(*bootstrap_ci(x, seed=s)[1:], x) for s in SEEDS])
    assert z_default == pytest.approx(norm.ppf(0.975), abs=0.08)
    assert abs(z_default - norm.ppf(0.95)) > 0.2  # not a 90% interval
    # summarize labels its intervals "ci95": the same 1.96 standard errors, for every KPI.
    zs = []
    for s in SEEDS:
        per_drop = {k: x for k in SUMMARY_KEYS}
        out = summarize(per_drop, np.array([]), seed=s)
        zs.append([_z(*out[k]["ci95"], x) for k in SUMMARY_KEYS])
    np.testing.assert_allclose(np.mean(zs, axis=0), norm.ppf(0.975), atol=0.08)  # [len(SUMMARY_KEYS)]


def test_bootstrap_interval_is_centred_on_the_mean_and_reproducible():
    x = _sample(2)
    mean, lo, hi = bootstrap_ci(x, seed=3)
    assert mean == pytest.approx(float(x.mean()), abs=1e-12)
    se = x.std(ddof=1) / np.sqrt(N)
    # symmetric for a normal mean: both ends ~1.96 s/√n from the mean (within the quantile noise)
    assert (mean - lo) / se == pytest.approx(1.96, abs=0.3) and (hi - mean) / se == pytest.approx(1.96, abs=0.3)
    assert bootstrap_ci(x, seed=3) == (mean, lo, hi)  # one seed fixes the interval
    assert bootstrap_ci(x, seed=4) != (mean, lo, hi)


def test_bootstrap_small_samples_every_drop_and_float64():
    # two drops already give an interval (one does not); every drop can be resampled, the first one too
    mean, lo, hi = bootstrap_ci(np.array([0.0, 1.0]))
    assert mean == 0.5 and lo < 0.5 < hi
    x = np.zeros(10)
    x[0] = 100.0  # an outlier in the first drop: resamples that include it lift the upper end
    mean, lo, hi = bootstrap_ci(x)
    assert mean == 10.0 and lo <= mean <= hi and hi >= 20.0
    # float32 input is averaged in float64 (no float32 accumulation error)
    x32 = np.random.default_rng(5).normal(0.1, 0.01, 4001).astype(np.float32)
    assert bootstrap_ci(x32)[0] == float(x32.astype(np.float64).mean())
