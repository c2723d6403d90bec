"""The range of seeds the package really uses, and the one check every entry point applies.

Every random stream is derived from the user's seed through 64-bit arithmetic
(:func:`beamattn.wireless.measurement.mix_seed` multiplies modulo 2^64, and
``torch.Generator.manual_seed`` keeps 64 bits), so seeds ``s`` and ``s + 2^64``
would give the same numbers while recording different seeds. Seeds are
therefore integers in ``[0, 2^63)``: every one of them gives its own streams,
and offsets added to a seed (per drop, per stream) stay inside 64 bits.
"""

from __future__ import annotations

__all__ = ["MAX_SEED", "check_seed"]

MAX_SEED = 2**63 - 1


def check_seed(value: object, field: str = "seed") -> int:
    """Return ``value`` if it is an integer seed in ``[0, MAX_SEED]``, else raise one ``ValueError`` line naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{field} = {value!r}; expected an integer in [0, 2^63 - 1] (larger seeds would alias "
                         "smaller ones in the 64-bit seed streams)")
    return value
