"""Codebook checks written from the mutation run (scripts/mutation.py, group ``codebooks``).

Properties of the wide beams (a real pattern about the array centre, directions among their children),
argument checks at the ends of their documented ranges, dtypes of the gain helpers, and what
``Codebook.subset`` / ``Codebook.to`` / ``user_codebook`` keep.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from beamattn.wireless.arrays import AntennaArray, steering_vector
from beamattn.wireless.codebooks import (
    Codebook,
    beam_gain,
    beam_gains,
    dft_codebook,
    mrt_beam,
    user_codebook,
    wide_codebook,
)


def _wide(n: int = 8, o: int = 2, num_wide: int = 4, spacing: float = 0.5, **kw):
    array = AntennaArray(1, n, spacing_h=spacing)
    narrow = dft_codebook(array, o, dtype=torch.complex128)
    return array, narrow, wide_codebook(array, num_wide, narrow, **kw)


def _u(psi: torch.Tensor, spacing: float) -> torch.Tensor:
    """Unit vectors in the horizontal plane with ``u_y = psi / spacing`` (visible psi only)."""
    u_y = psi / spacing
    return torch.stack([torch.sqrt(1 - u_y**2), u_y, torch.zeros_like(u_y)], -1)  # [P, 3]


@pytest.mark.parametrize("spacing", [0.5, 0.7])
def test_wide_beam_patterns_are_real_about_the_array_centre(spacing):
    # The target of every wide beam has zero phase w.r.t. the array centre, so with the centred array
    # response a(u) (steering_vector) the pattern a(u)ᵀ w is real at every angle, not only its magnitude.
    array, _, wide = _wide(spacing=spacing)
    psi = torch.linspace(-0.49, 0.49, 101, dtype=torch.float64) * min(1.0, 2 * spacing)
    a = steering_vector(array, _u(psi, spacing), dtype=torch.complex128)  # [P, N]
    pattern = a @ wide.beams.T  # [P, G]
    assert float(pattern.imag.abs().max()) < 1e-9 * float(pattern.abs().max())


@pytest.mark.parametrize("spacing, o, num_wide", [(0.5, 2, 4), (0.5, 1, 8), (0.8, 2, 2), (0.5, 4, 1)])
def test_wide_directions_are_unit_vectors_between_their_children(spacing, o, num_wide):
    array, narrow, wide = _wide(spacing=spacing, o=o, num_wide=num_wide)
    assert wide.directions is not None and wide.directions.dtype == narrow.directions.dtype == torch.float64
    torch.testing.assert_close(torch.linalg.vector_norm(wide.directions, dim=-1),
                               torch.ones(num_wide, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.all(wide.directions[:, 0] >= 0) and torch.all(wide.directions[:, 2] == 0)
    for g, kids in enumerate(wide.children):
        u_kids = narrow.directions[kids, 1]  # children in azimuth (psi) order
        first, last = float(u_kids[0]), float(u_kids[-1])
        # halfway in psi between the first and the last child (psi = spacing·u_y, no wrap inside a group)
        assert float(wide.directions[g, 1]) == pytest.approx((first + last) / 2, abs=1e-12)


def test_wide_beams_in_complex64_follow_the_narrow_codebook_dtype():
    array = AntennaArray(1, 8)
    narrow = dft_codebook(array, 2)  # complex64, float32 directions
    wide = wide_codebook(array, 4, narrow)
    assert wide.beams.dtype == torch.complex64 and wide.directions.dtype == torch.float32


@pytest.mark.parametrize("kw", [{"num_wide": 1}, {"oversample_fit": 2}, {"overlap": 2}, {"overlap": 0}])
def test_wide_codebook_accepts_the_ends_of_its_ranges(kw):
    array = AntennaArray(1, 8)
    narrow = dft_codebook(array, 2)
    num_wide = kw.pop("num_wide", 4)
    wide = wide_codebook(array, num_wide, narrow, **kw)
    assert wide.num_beams == num_wide and sorted(i for c in wide.children for i in c) == list(range(16))


@pytest.mark.parametrize("kw, field", [
    ({"num_wide": True}, "num_wide"), ({"num_wide": 4.0}, "num_wide"),
    ({"oversample_fit": True}, "oversample_fit"), ({"oversample_fit": 2.0}, "oversample_fit"),
    ({"overlap": True}, "overlap"), ({"overlap": "0.5"}, "overlap"), ({"overlap": 2.5}, "overlap"),
])
def test_wide_codebook_refuses_bools_and_wrong_types(kw, field):
    array = AntennaArray(1, 8)
    narrow = dft_codebook(array, 2)
    num_wide = kw.pop("num_wide", 4)
    with pytest.raises(ValueError, match=f"wide_codebook: {field} = "):
        wide_codebook(array, num_wide, narrow, **kw)


def test_gain_helpers_keep_single_precision_for_real_float32_inputs():
    h = torch.tensor([3.0, 4.0])  # float32
    w = torch.tensor([0.6, 0.8])
    assert beam_gain(h, w).dtype == torch.float32 and float(beam_gain(h, w)) == pytest.approx(25.0)
    assert beam_gains(h, w[None]).dtype == torch.float32
    assert beam_gain(h.double(), w.double()).dtype == torch.float64
    m = mrt_beam(h)
    assert m.dtype == torch.complex64 and torch.allclose(m, torch.tensor([0.6, 0.8], dtype=torch.complex64))
    assert mrt_beam(h.double()).dtype == torch.complex128


def test_beam_gain_refuses_a_non_tensor_in_either_argument():
    t = torch.ones(4, dtype=torch.complex64) / 2
    for h, w in ((t, [0.5] * 4), ([0.5] * 4, t)):
        with pytest.raises(TypeError, match="beam_gain: h, w have types"):
            beam_gain(h, w)


def test_one_beam_codebooks_and_subset_names_and_children():
    array = AntennaArray(1, 4)
    one = Codebook(beams=torch.ones(1, 4, dtype=torch.complex64) / 2, array=array, name="one")
    assert one.num_beams == 1
    _, narrow, wide = _wide()
    sub = wide.subset([2, 0], name="setB")
    assert sub.name == "setB" and sub.children == [wide.children[2], wide.children[0]]
    assert narrow.subset([1]).name == f"{narrow.name}[subset]"


def test_codebook_to_another_device_moves_beams_and_directions():
    _, narrow, _ = _wide()
    assert narrow.to("cpu") is narrow
    moved = narrow.to("meta")
    assert moved is not narrow and moved.beams.device.type == "meta" and moved.directions.device.type == "meta"
    assert narrow.beams.device.type == "cpu" and moved.name == narrow.name and moved.array == narrow.array


def test_user_codebook_default_name_dtype_error_and_rescale_warning():
    array = AntennaArray(1, 2)
    beams = [[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cb = user_codebook(beams, array, normalize=True)
    assert cb.name == "user"
    assert [str(w.message) for w in caught] == ["user_codebook: rescaled 2 of 3 beams to unit norm"]
    torch.testing.assert_close(cb.beams[2], torch.tensor([0.6, 0.8], dtype=torch.complex64))
    with pytest.raises(TypeError, match="user_codebook: dtype = torch.float32"):
        user_codebook([[1.0, 0.0]], array, dtype=torch.float32)


def test_wide_sectors_cross_over_at_the_wrap_midpoint_as_at_the_inner_ones():
    # Sectors tile one period of psi and the gap across psi = ±1/2 is split like the inner gaps: the last
    # and first wide beams have equal gain at the middle of that gap, as adjacent beams do at theirs.
    array, narrow, wide = _wide(n=8, o=2, num_wide=4)
    psi_n = narrow.directions[:, 1] * array.spacing_h  # [M]
    order = [c for kids in wide.children for c in kids]
    psi_sorted = psi_n[order]
    per = len(wide.children[0])
    gaps = [(float(psi_sorted[(g + 1) * per - 1]), float(psi_sorted[(g + 1) * per]), g, g + 1) for g in range(3)]
    lo_wrap = float(psi_sorted[0]) - (float(psi_sorted[0]) + 1 - float(psi_sorted[-1])) / 2
    lo_wrap = lo_wrap + 1 if lo_wrap < -0.5 else lo_wrap  # the same point of the period, in visible space

    def gain_at(psi: float, g: int) -> float:
        a = steering_vector(array, _u(torch.tensor([psi], dtype=torch.float64), array.spacing_h),
                            dtype=torch.complex128)  # [1, N]
        return float((a @ wide.beams[g]).abs().square())
    for left, right, g, h in gaps:
        mid = (left + right) / 2
        assert gain_at(mid, g) == pytest.approx(gain_at(mid, h), rel=1e-6)
    assert gain_at(lo_wrap, 3) == pytest.approx(gain_at(lo_wrap, 0), rel=1e-6)
