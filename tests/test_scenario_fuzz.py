"""Property-based: any malformed scenario gives one clear ScenarioError line, never another exception; any
accepted one holds exactly the values given, every number within its documented range, and can be computed.

The fields fuzzed are every field a scenario file may set (taken from the config dataclasses, so a new field is
fuzzed too), the aliases ``backend`` and ``speed_kmh``, and misspelt names. Values are generic ones (any type,
NaN, inf) and the ends of the documented ranges (:data:`beamattn.wireless.limits.RANGES`) and just beyond them.
"""

import dataclasses
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beamattn.seeds import MAX_SEED
from beamattn.wireless.arrays import AntennaArray
from beamattn.wireless.channels.geometric import GeometricConfig
from beamattn.wireless.channels.sionna_tr38901 import SionnaCDLConfig, SionnaUrbanConfig
from beamattn.wireless.limits import RANGES
from beamattn.wireless.measurement import MeasurementConfig
from beamattn.wireless.scenario import (CodebookConfig, ScenarioError, TrainingConfig, _toml_settable,
                                        check_memory, parse_scenario)
from beamattn.wireless.selector import SelectorConfig
from wireless_fixtures import TINY_DOC

TABLES = {"array": AntennaArray, "codebook": CodebookConfig, "measurement": MeasurementConfig,
          "selector": SelectorConfig, "training": TrainingConfig}
CHANNELS = (GeometricConfig, SionnaCDLConfig, SionnaUrbanConfig)
HEAD = ("name", "description", "seed", "drops", "chunk_drops", "snr_db", "outage_db", "policies")


def _settable(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if _toml_settable(f) and f.name != "array"]


FIELDS = sorted(
    {("scenario", k) for k in HEAD}
    | {(table, k) for table, cls in TABLES.items() for k in _settable(cls)}
    | {("channel", k) for cls in CHANNELS for k in _settable(cls)}
    | {("channel", "speed_kmh"), ("channel", "backend")}
    | {("scenario", "nmae"), ("channel", "sped"), ("array", "num_col")}  # misspelt: refused with a hint
)
# The ends of every documented range and just beyond them (int ranges: integers).
EDGES = sorted({v for r in RANGES.values() for v in (
    (r.lo, r.hi, r.lo - 1, r.hi + 1) if r.integer else
    (r.lo, r.hi, math.nextafter(r.lo, -math.inf), math.nextafter(r.hi, math.inf), r.hi * 10))}, key=float)
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(EDGES), st.sampled_from([1e300, -1e300, 2**64, 2**63, 0, 1, 2, 0.5, 0.4]),
    st.text(max_size=8), st.sampled_from(["", "a/b", "..", "ok-name", "sionna-cdl", "umi", "C"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))



def _in_range(rng):
    if rng.integer:
        return st.integers(int(rng.lo), int(rng.hi))
    return st.floats(rng.lo, rng.hi, exclude_min=rng.open_lo)


# Changes that pass their own field's range: what the other rules (memory, timeline, codebook) must judge.
IN_RANGE = st.sampled_from([f for f in FIELDS if f[1] in RANGES]).flatmap(
    lambda f: st.tuples(st.just(f), _in_range(RANGES[f[1]])))
CHANGES = st.lists(st.one_of(st.tuples(st.sampled_from(FIELDS), VALUES), IN_RANGE), min_size=1, max_size=3)


def _config_of(scn, table: str):
    return {"scenario": scn, "channel": scn.channel, "array": scn.array, "codebook": scn.codebook,
            "measurement": scn.measurement, "selector": scn.selector, "training": scn.training}[table]


def _check_accepted(scn, data: dict) -> None:
    # 1. Every value given is the value held (TOML integers in float form become ints; speed_kmh is converted).
    for table, values in data.items():
        for key, value in values.items():
            if table == "channel" and key == "backend":
                assert scn.backend == value
            elif table == "channel" and key == "speed_kmh":
                assert math.isclose(scn.channel.speed, value / 3.6, rel_tol=1e-12)
            elif table == "scenario" and key == "policies":
                assert scn.policies == tuple(value)
            elif not (table == "selector" and key == "grid"):  # the grid is normalised ([1, M] -> None)
                held = getattr(_config_of(scn, table), key)
                assert held == value and type(held) is type(value) or (
                    isinstance(value, float) and value.is_integer() and type(held) is int and held == value), \
                    (table, key, value, held)
    # 2. Every numeric field of every table lies within its documented range (the ones not given too).
    for table in ("scenario", "channel", "array", "codebook", "measurement", "selector", "training"):
        cfg = _config_of(scn, table)
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if f.name in RANGES and value is not None and not (f.name == "k_factor_db" and value == math.inf):
                assert RANGES[f.name].contains(value), (table, f.name, value)
    assert 0 <= scn.seed <= MAX_SEED and 0 <= scn.training.seed <= MAX_SEED
    assert math.isfinite(scn.snr_db) and scn.measurement.period > 0 and scn.array.num_ant >= 1
    assert isinstance(scn.name, str) and scn.name and "/" not in scn.name and scn.name not in (".", "..")
    assert scn.codebook.num_wide == 0 or scn.codebook.num_wide >= 2
    assert check_memory(scn) > 0  # the accepted scenario fits the memory limit
    # 3. What computing builds first can be built: the codebooks (small ones: the fuzz stays fast).
    if scn.array.num_ant * scn.codebook.oversampling <= 64:
        from beamattn.wireless.runner import make_codebooks

        narrow, wide = make_codebooks(scn)
        assert 0 <= scn.measurement.set_b <= narrow.num_beams
        assert (wide is None) == (scn.codebook.num_wide == 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CHANGES)
def test_malformed_scenarios_give_one_clear_error(changes):
    data = {k: dict(v) for k, v in TINY_DOC.items()}
    for (table, key), value in changes:
        if value is None:
            continue  # TOML has no null
        data.setdefault(table, {})[key] = value
    try:
        scn = parse_scenario(data, source="fuzz.toml")
    except ScenarioError as e:
        msg = str(e)
        assert msg.startswith("fuzz.toml: ") and "\n" not in msg
        return
    _check_accepted(scn, data)


def test_the_fuzz_covers_every_settable_field():
    """FIELDS comes from the dataclasses: at least the ~50 fields a scenario file may set."""
    assert len(FIELDS) >= 50
    for needed in (("channel", "blockage_duration"), ("array", "num_cols"), ("scenario", "snr_db"),
                   ("measurement", "quantization_db"), ("training", "weight_decay"), ("channel", "delay_spread")):
        assert needed in FIELDS


@given(st.sampled_from(sorted((t, k) for t, k in FIELDS if k in RANGES and t != "scenario")))
@settings(max_examples=60, deadline=None)
def test_the_ends_of_each_range_are_accepted_or_refused_by_another_rule(field):
    """A value at the end of its documented range is never refused for that field's range."""
    table, key = field
    rng = RANGES[key]
    for value in (rng.lo if not rng.open_lo else rng.hi, rng.hi):
        data = {k: dict(v) for k, v in TINY_DOC.items()}
        data.setdefault(table, {})[key] = value
        try:
            parse_scenario(data, source="edge.toml")
        except ScenarioError as e:
            assert f"'{key}' = {value!r}; expected {rng.describe()}" not in str(e), str(e)
