"""Tests of beamattn.wireless.codebooks: Sionna equality, closed forms, and the properties each codebook promises."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from beamattn.wireless.arrays import ULA, UPA, AntennaArray, steering_vector, unit_vector
from beamattn.wireless.codebooks import (
    Codebook,
    beam_gain,
    beam_gains,
    beam_pattern,
    dft_codebook,
    mrt_beam,
    user_codebook,
    wide_codebook,
)


def _db(x: float) -> float:
    return 10 * math.log10(x)


def _horizontal(u_y: torch.Tensor) -> torch.Tensor:
    """Unit vectors [..., 3] in the horizontal plane with sin(azimuth) = u_y."""
    return torch.stack([torch.sqrt(1 - u_y**2), u_y, torch.zeros_like(u_y)], dim=-1)


def _wrapped_nu(num: int) -> torch.Tensor:
    m = torch.arange(num, dtype=torch.float64)
    return torch.where(m <= num // 2, m / num, (m - num) / num)


# --------------------------------------------------------------------------- DFT vs Sionna


@pytest.mark.parametrize("num_ant", [8, 16])
@pytest.mark.parametrize("oversampling", [1, 2, 4])
def test_dft_ula_equals_sionna(num_ant, oversampling):
    from sionna.phy.mimo import grid_of_beams_dft_ula

    cb = dft_codebook(ULA(num_ant), oversampling)
    assert cb.beams.shape == (num_ant * oversampling, num_ant) and cb.beams.dtype == torch.complex64
    ref = grid_of_beams_dft_ula(num_ant, oversampling, precision="double")  # [M, N]
    torch.testing.assert_close(cb.beams.to(torch.complex128), ref, atol=1e-6, rtol=0)
    # Sionna's single precision carries its own float32 phase rounding (about 2e-6 at N = 16).
    ref32 = grid_of_beams_dft_ula(num_ant, oversampling, precision="single")
    torch.testing.assert_close(cb.beams, ref32, atol=5e-6, rtol=0)


@pytest.mark.parametrize("oversampling", [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_dft_upa_equals_sionna(oversampling):
    from sionna.phy.mimo import grid_of_beams_dft

    nv, nh = 4, 8
    cb = dft_codebook(UPA(nv, nh), oversampling)
    ref = grid_of_beams_dft(nv, nh, *oversampling, precision="double")  # [Mv, Mh, N]
    assert ref.shape[:2] == (nv * oversampling[0], nh * oversampling[1])
    torch.testing.assert_close(cb.beams.to(torch.complex128), ref.reshape(-1, nv * nh), atol=1e-6, rtol=0)


def test_dft_int_oversampling_applies_to_both_dimensions_of_a_upa():
    torch.testing.assert_close(dft_codebook(UPA(2, 4), 2).beams, dft_codebook(UPA(2, 4), (2, 2)).beams)


def test_dft_rejects_bad_arguments():
    with pytest.raises(ValueError, match="oversampling"):
        dft_codebook(ULA(8), 0)
    with pytest.raises(ValueError, match="vertical oversampling = 2 with num_rows = 1"):
        dft_codebook(ULA(8), (2, 1))
    with pytest.raises(TypeError, match="dtype"):
        dft_codebook(ULA(8), 1, dtype=torch.float32)


@pytest.mark.parametrize(
    "array, oversampling",
    [(ULA(16), 1), (ULA(16), 4), (UPA(4, 8), (2, 2)), (ULA(8, 0.7), 2), (UPA(4, 8, 0.4, 0.7), (1, 2))],
)
def test_dft_beams_have_unit_norm(array, oversampling):
    for dtype in (torch.complex64, torch.complex128):
        cb = dft_codebook(array, oversampling, dtype=dtype)
        assert cb.beams.dtype == dtype and cb.num_beams == cb.beams.shape[0]
        norms = torch.linalg.vector_norm(cb.beams, dim=-1)
        torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- directions


@pytest.mark.parametrize(
    "array, oversampling",
    [
        (ULA(8), 1),
        (ULA(16), 2),
        (ULA(16, 0.7), 2),  # grating lobes: the principal direction is given
        (ULA(16, 0.35), 2),  # some beams point into invisible space
        (UPA(4, 8), (1, 1)),
        (UPA(4, 8), (2, 2)),
        (UPA(4, 8, 0.4, 0.7), (1, 2)),
    ],
)
def test_los_at_beam_direction_gives_gain_n_and_that_beam_is_best(array, oversampling):
    cb = dft_codebook(array, oversampling, dtype=torch.complex128)
    n = array.num_ant
    o_v, o_h = (1, oversampling) if isinstance(oversampling, int) else oversampling
    # Invisible beams are exactly those with (nu_h / d_h)² + (nu_v / d_v)² > 1.
    nu_v = _wrapped_nu(array.num_rows * o_v)[:, None]
    nu_h = _wrapped_nu(array.num_cols * o_h)[None, :]
    s2 = ((nu_h / array.spacing_h) ** 2 + (nu_v / array.spacing_v) ** 2).reshape(-1)  # [M]
    nan_rows = torch.isnan(cb.directions).any(dim=-1)
    assert torch.equal(nan_rows, s2 > 1 + 1e-12)
    visible = ~nan_rows
    assert visible.sum() >= 1
    dirs = cb.directions[visible]  # [V, 3]
    torch.testing.assert_close(torch.linalg.vector_norm(dirs, dim=-1), torch.ones(len(dirs), dtype=torch.float64))
    assert bool((dirs[:, 0] >= 0).all())  # front half-space
    gains = beam_gains(steering_vector(array, dirs, dtype=torch.complex128), cb.beams)  # [V, M]
    own = gains[torch.arange(len(dirs)), visible.nonzero()[:, 0]]  # [V]
    torch.testing.assert_close(own, torch.full_like(own, n), rtol=1e-4, atol=0)
    others = gains.clone()
    others[torch.arange(len(dirs)), visible.nonzero()[:, 0]] = -1
    assert bool((others.max(dim=1).values < n * (1 - 1e-3)).all())


def test_ula_direction_formula_matches_sionna_docstring_mirrored():
    # sin(phi_m) = -2 nu_m · (0.5 / spacing) under y = hᵀ w.
    for spacing in (0.5, 0.7):
        cb = dft_codebook(ULA(8, spacing), 2, dtype=torch.complex128)
        expected = -2 * _wrapped_nu(16) * (0.5 / spacing)
        torch.testing.assert_close(cb.directions[:, 1], expected)
        assert bool((cb.directions[:, 2] == 0).all())


# --------------------------------------------------------------------------- worst-case loss


def _worst_loss_db(num_ant: int, oversampling: int, u_y: torch.Tensor) -> float:
    array = ULA(num_ant)
    cb = dft_codebook(array, oversampling, dtype=torch.complex128)
    gains = beam_gains(steering_vector(array, _horizontal(u_y), dtype=torch.complex128), cb.beams)  # [K, M]
    return _db(num_ant / gains.max(dim=1).values.min().item())


def _closed_form_loss_db(num_ant: int, oversampling: int) -> float:
    # Halfway between two beams the phase offset per element is pi / (N O):
    # gain = sin²(pi / (2 O)) / (N sin²(pi / (2 N O))), loss = N / gain.
    ratio = num_ant * math.sin(math.pi / (2 * num_ant * oversampling)) / math.sin(math.pi / (2 * oversampling))
    return _db(ratio**2)


def test_worst_case_loss_between_dft_beams():
    measured = {}
    for num_ant in (4, 8, 16, 32):  # full visible region, fine azimuth grid
        phi = torch.linspace(-math.pi / 2, math.pi / 2, 20001, dtype=torch.float64)
        measured[num_ant] = _worst_loss_db(num_ant, 1, torch.sin(phi))
    # N = 256: the loss pattern repeats between neighbours in sin(phi); scan two beam spacings at broadside.
    u = torch.linspace(-2 / 256, 2 / 256, 1001, dtype=torch.float64)  # midpoints ±1/256 on the grid
    measured[256] = _worst_loss_db(256, 1, u)
    limit = 20 * math.log10(math.pi / 2)  # 3.9224 dB
    for num_ant, loss in measured.items():
        closed = _closed_form_loss_db(num_ant, 1)
        assert closed - 0.01 <= loss <= closed + 1e-9, (num_ant, loss, closed)
    assert abs(measured[256] - limit) < 0.02
    values = [measured[k] for k in sorted(measured)]
    assert all(a < b for a, b in zip(values, values[1:]))  # monotone towards the limit
    assert values[-1] < limit
    # measured: N=8 3.868 dB, N=32 3.918 dB, N=256 3.922 dB

    # Oversampling 2: halfway between beams is a quarter of the native spacing.
    phi = torch.linspace(-math.pi / 2, math.pi / 2, 20001, dtype=torch.float64)
    loss2 = _worst_loss_db(32, 2, torch.sin(phi))
    closed2 = _closed_form_loss_db(32, 2)  # -> 10 log10(pi² / 8) = 0.912 dB for large N
    assert closed2 - 0.01 <= loss2 <= closed2 + 1e-9
    assert loss2 < 1.0 < measured[32] - 2.5


# --------------------------------------------------------------------------- gains, MRT


def _random_channels(shape: tuple[int, ...], n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(*shape, n, generator=g), torch.randn(*shape, n, generator=g)) / math.sqrt(2)


@pytest.mark.parametrize("array, oversampling", [(ULA(16), 1), (ULA(16), 4), (UPA(4, 8), (1, 1)), (UPA(4, 8), (2, 2))])
def test_mrt_bounds_every_beam_and_parseval(array, oversampling):
    cb = dft_codebook(array, oversampling)
    h = _random_channels((5, 7), array.num_ant)  # [5, 7, N]
    w = mrt_beam(h)  # [5, 7, N]
    assert w.shape == h.shape
    torch.testing.assert_close(torch.linalg.vector_norm(w, dim=-1), torch.ones(5, 7), atol=1e-6, rtol=0)
    energy = torch.linalg.vector_norm(h, dim=-1) ** 2  # [5, 7]
    torch.testing.assert_close(beam_gain(h, w), energy, rtol=1e-5, atol=0)
    gains = beam_gains(h, cb.beams)  # [5, 7, M]
    assert gains.shape == (5, 7, cb.num_beams) and not gains.is_complex()
    assert bool((gains <= energy[..., None] * (1 + 1e-5)).all())
    if cb.num_beams == array.num_ant:  # orthonormal basis: Parseval
        torch.testing.assert_close(gains.sum(-1), energy, rtol=1e-5, atol=0)
    # beam_gain on broadcast beams agrees with beam_gains
    torch.testing.assert_close(beam_gain(h[..., None, :], cb.beams), gains)


def test_gain_functions_reject_mismatched_shapes_and_zero_channels():
    with pytest.raises(ValueError, match="expected \\[..., 8\\]"):
        beam_gains(torch.ones(3, 4, dtype=torch.complex64), dft_codebook(ULA(8)).beams)
    with pytest.raises(ValueError, match="same last dimension"):
        beam_gain(torch.ones(4, dtype=torch.complex64), torch.ones(5, dtype=torch.complex64))
    with pytest.raises(ValueError, match="1 channel"):
        mrt_beam(torch.zeros(2, 4, dtype=torch.complex64).index_fill(0, torch.tensor([0]), 1.0))


def test_beam_gains_promotes_dtypes():
    cb = dft_codebook(ULA(8), dtype=torch.complex128)
    h = _random_channels((3,), 8)  # complex64
    assert beam_gains(h, cb.beams).dtype == torch.float64


# --------------------------------------------------------------------------- beam pattern


def test_beam_pattern_peaks_at_beam_direction():
    array = ULA(16)
    cb = dft_codebook(array, 2)
    phi = torch.linspace(-math.pi / 2, math.pi / 2, 3601)  # 0.05 degree steps
    pattern = beam_pattern(cb.beams, array, phi)  # [M, A]
    assert pattern.shape == (32, 3601)
    beam_phi = torch.asin(cb.directions[:, 1])  # [M]
    peak_phi = phi[pattern.argmax(dim=1)]
    # beam m = 16 points at -90 deg, the same pattern as +90 deg (endfire alias)
    err = torch.minimum((peak_phi - beam_phi).abs(), math.pi - (peak_phi - beam_phi).abs())
    assert float(err.max()) < math.radians(0.1)
    torch.testing.assert_close(pattern.max(dim=1).values, torch.full((32,), 16.0), rtol=1e-3, atol=0)


def test_beam_pattern_with_zenith_on_upa():
    array = UPA(4, 4)
    cb = dft_codebook(array, dtype=torch.complex128)
    visible = ~torch.isnan(cb.directions[:, 0])
    d = cb.directions[visible]  # [V, 3]
    zen = torch.acos(d[:, 2])
    az = torch.atan2(d[:, 1], d[:, 0])
    torch.testing.assert_close(unit_vector(az, zen), d)
    pattern = beam_pattern(cb.beams[visible], array, az, zen)  # [V, V]
    torch.testing.assert_close(pattern.diagonal(), torch.full((len(d),), 16.0, dtype=torch.float64))


# --------------------------------------------------------------------------- user codebooks


def test_user_codebook_accepts_valid_input():
    beams = np.eye(4)[:3] * 1j  # [3, 4], unit rows
    cb = user_codebook(beams, ULA(4), name="mine")
    assert cb.num_beams == 3 and cb.name == "mine" and cb.directions is None and cb.beams.dtype == torch.complex64
    cb2 = user_codebook(dft_codebook(ULA(4)).beams, ULA(4), dtype=torch.complex128)
    assert cb2.beams.dtype == torch.complex128


def test_user_codebook_validation_errors():
    array = ULA(4)
    with pytest.raises(ValueError, match="empty"):
        user_codebook([], array)
    with pytest.raises(ValueError, match="empty"):
        user_codebook(torch.zeros(0, 4, dtype=torch.complex64), array)
    with pytest.raises(ValueError, match="5 columns.*expected N = array.num_ant = 4"):
        user_codebook(torch.ones(2, 5) / math.sqrt(5), array)
    with pytest.raises(ValueError, match="shape"):
        user_codebook(torch.ones(4) / 2, array)
    beams = dft_codebook(array).beams.clone()
    beams[2] *= 1.1
    with pytest.raises(ValueError, match="beam 2 has norm 1.1"):
        user_codebook(beams, array)
    beams = dft_codebook(array).beams.clone()
    beams[1, 3] = float("nan")
    with pytest.raises(ValueError, match="beam 1 has non-finite"):
        user_codebook(beams, array)
    beams = dft_codebook(array).beams.clone()
    beams[3] = 0
    with pytest.raises(ValueError, match="beam 3 is all zeros"):
        user_codebook(beams, array, normalize=True)
    with pytest.raises(TypeError):
        user_codebook([["a", "b", "c", "d"]], array)
    with pytest.raises(TypeError):
        user_codebook(torch.ones(1, 4, dtype=torch.bool), array)


def test_user_codebook_normalize_warns_and_fixes():
    array = ULA(4)
    beams = dft_codebook(array).beams.clone()
    beams[0] *= 3
    beams[2] *= 0.5
    with pytest.warns(UserWarning, match="rescaled 2 of 4"):
        cb = user_codebook(beams, array, normalize=True)
    torch.testing.assert_close(cb.beams, dft_codebook(array).beams)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        user_codebook(dft_codebook(array).beams, array, normalize=True)  # nothing to rescale: no warning


def test_codebook_subset_and_field_checks():
    cb = dft_codebook(ULA(8), 2)
    sub = cb.subset([3, 0, 5])
    torch.testing.assert_close(sub.beams, cb.beams[[3, 0, 5]])
    torch.testing.assert_close(sub.directions, cb.directions[[3, 0, 5]])
    for bad in ([], [16], [-1], [1, 1]):
        with pytest.raises(ValueError, match="subset"):
            cb.subset(bad)
    with pytest.raises(ValueError, match="'beams' has shape"):
        Codebook(beams=torch.ones(2, 4, dtype=torch.complex64), array=ULA(8), name="x")
    with pytest.raises(TypeError, match="complex"):
        Codebook(beams=torch.ones(2, 8), array=ULA(8), name="x")
    with pytest.raises(ValueError, match="beam 0 has norm 2.82843"):
        Codebook(beams=torch.ones(2, 8, dtype=torch.complex64), array=ULA(8), name="x")


# --------------------------------------------------------------------------- wide beams


def _wide_metrics(array: AntennaArray, narrow: Codebook, num_wide: int) -> dict[str, float]:
    wide = wide_codebook(array, num_wide, narrow)
    d, n = array.spacing_h, array.num_ant
    m = narrow.num_beams
    # children partition the narrow beams into equal groups, each contiguous in azimuth order
    flat = [i for group in wide.children for i in group]
    assert sorted(flat) == list(range(m)) and all(len(c) == m // num_wide for c in wide.children)
    sin_sorted = narrow.directions[flat, 1].to(torch.float64)
    assert bool((sin_sorted[1:] >= sin_sorted[:-1] - 1e-6).all())
    torch.testing.assert_close(
        torch.linalg.vector_norm(wide.beams, dim=-1), torch.ones(num_wide), atol=1e-6, rtol=0
    )

    beams = wide.beams.to(torch.complex128)
    owner = torch.empty(m, dtype=torch.long)
    for g, group in enumerate(wide.children):
        owner[group] = g
    at_children = beam_gains(steering_vector(array, narrow.directions.double(), torch.complex128), beams)  # [M, G]
    coverage = (at_children.argmax(dim=1) == owner).double().mean().item()

    # dense scan of each group's core: from its first to its last child (in sin(phi))
    psi_dense = torch.linspace(-min(d, 0.5), min(d, 0.5), 128 * n + 1, dtype=torch.float64)
    gains = beam_gains(steering_vector(array, _horizontal(psi_dense / d), torch.complex128), beams)  # [K, G]
    ripple, dense_hits, dense_total = 0.0, 0, 0
    for g, group in enumerate(wide.children):
        s = narrow.directions[group, 1].double()
        inside = (psi_dense >= s.min() * d - 1e-9) & (psi_dense <= s.max() * d + 1e-9)
        core = gains[inside]  # [k, G]
        ripple = max(ripple, _db(core[:, g].max().item() / core[:, g].min().item()))
        dense_hits += int((core.argmax(dim=1) == g).sum())
        dense_total += int(inside.sum())
    flat_top = float(num_wide)  # Parseval: a unit-norm flat top over 1/G of the period has gain G
    worst = _db(gains.max(dim=1).values.min().item() / flat_top)
    return {
        "coverage": coverage,
        "dense": dense_hits / dense_total,
        "ripple_db": ripple,
        "worst_vs_flat_db": worst,
        "min_child_vs_flat_db": _db(at_children.max(dim=1).values.min().item() / flat_top),
    }


@pytest.mark.parametrize(
    "num_ant, spacing, oversampling, num_wide",
    [(8, 0.5, 1, 4), (32, 0.5, 1, 4), (32, 0.5, 1, 8), (32, 0.5, 2, 4), (64, 0.5, 1, 8), (32, 0.7, 1, 4)],
)
def test_wide_beams_cover_their_children(num_ant, spacing, oversampling, num_wide):
    array = ULA(num_ant, spacing)
    metrics = _wide_metrics(array, dft_codebook(array, oversampling), num_wide)
    # measured (overlap = 0.5): coverage 1.0 everywhere; core ripple 0.13-1.06 dB;
    # worst best-wide gain over the whole visible region -0.7 to -2.1 dB below the flat top.
    assert metrics["coverage"] == 1.0
    assert metrics["dense"] == 1.0
    assert metrics["ripple_db"] < 1.2
    assert metrics["worst_vs_flat_db"] > -2.5
    assert metrics["min_child_vs_flat_db"] > -1.5


def test_wide_beams_for_visible_subset_at_small_spacing():
    array = ULA(32, 0.4)
    narrow = dft_codebook(array)
    visible = (~torch.isnan(narrow.directions[:, 0])).nonzero()[:, 0]
    assert len(visible) == 25
    with pytest.raises(ValueError, match="NaN"):
        wide_codebook(array, 5, narrow)
    metrics = _wide_metrics(array, narrow.subset(visible), 5)
    assert metrics["coverage"] == 1.0 and metrics["dense"] == 1.0
    assert metrics["ripple_db"] < 1.7  # measured 1.59 dB
    assert metrics["min_child_vs_flat_db"] > -1.0


def test_wide_codebook_rejects_bad_arguments():
    narrow = dft_codebook(ULA(16))
    with pytest.raises(ValueError, match="num_wide = 3"):
        wide_codebook(ULA(16), 3, narrow)
    with pytest.raises(ValueError, match="num_rows = 2"):
        wide_codebook(UPA(2, 8), 4, dft_codebook(UPA(2, 8)))
    with pytest.raises(ValueError, match="same array"):
        wide_codebook(ULA(16, 0.6), 4, narrow)
    with pytest.raises(ValueError, match="directions"):
        wide_codebook(ULA(16), 4, user_codebook(narrow.beams, ULA(16)))


# --------------------------------------------------------------------------- argument checks (mutation survivors)


def test_beam_gain_of_single_vectors_and_type_checks():
    g = torch.Generator().manual_seed(9)
    h = torch.randn(8, dtype=torch.complex128, generator=g)  # [N]: one channel, no batch dims
    w = torch.randn(8, dtype=torch.complex128, generator=g)
    gain = beam_gain(h, w)
    assert gain.shape == () and float(gain) == pytest.approx(abs(complex((h * w).sum())) ** 2, rel=1e-12)
    for a, b in ((h.numpy(), w), (h, w.numpy())):  # either argument not a tensor
        with pytest.raises(TypeError, match="^beam_gain: h, w have types"):
            beam_gain(a, b)
    with pytest.raises(ValueError, match="^beam_gain: h has shape \\(8,\\) and w \\(7,\\)"):
        beam_gain(h, w[:7])


def test_beam_pattern_of_a_1d_beam_keeps_double_precision_and_checks_n():
    arr = ULA(8)
    w = dft_codebook(arr, 1, dtype=torch.complex128).beams[3]  # [N] one beam
    az = [0.1 * i - 1.0 for i in range(21)]  # a Python list of angles (rad)
    ref = beam_pattern(w, arr, torch.tensor(az, dtype=torch.float64))  # [A]
    assert ref.dtype == torch.float64 and ref.shape == (21,)
    # lists are read at the beam's precision (float64), not float32
    torch.testing.assert_close(beam_pattern(w, arr, az), ref, rtol=1e-13, atol=1e-13)
    zen = [math.pi / 2 - 0.01 * i for i in range(21)]
    torch.testing.assert_close(beam_pattern(w, arr, az, zen),
                               beam_pattern(w, arr, torch.tensor(az, dtype=torch.float64),
                                            torch.tensor(zen, dtype=torch.float64)), rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="^beam_pattern: w has shape \\(9,\\); expected \\[..., 8\\]"):
        beam_pattern(torch.ones(9, dtype=torch.complex128), arr, az)
