"""Scenario files: TOML in, validated dataclasses out.

A scenario file has these tables (every field is optional unless noted; unknown
or misspelt fields are errors that name the field and suggest the closest one):

``[scenario]``
    ``name`` (required), ``description``, ``seed`` (evaluation seed), ``drops``,
    ``chunk_drops`` (drops generated per batch; part of the seed contract),
    ``snr_db`` (transmit SNR ρ of the data link, dB, with E|h_n|² = 1),
    ``outage_db`` (outage threshold on the received SNR, dB), ``policies``.
``[channel]``
    ``backend`` = ``"geometric"`` (default) | ``"sionna-cdl"`` | ``"sionna-urban"``;
    ``speed_kmh`` (converted to ``speed`` in m/s) and the fields of the back-end's
    config dataclass (:class:`~beamattn.wireless.channels.geometric.GeometricConfig`, ...).
``[array]``
    ``num_rows`` (default 1), ``num_cols`` (default 16), ``spacing_v``, ``spacing_h`` (wavelengths).
``[codebook]``
    ``oversampling`` (int), ``num_wide`` (wide beams for hierarchical search; 0 = none).
``[measurement]``
    the fields of :class:`~beamattn.wireless.measurement.MeasurementConfig`.
``[selector]``
    the fields of :class:`~beamattn.wireless.selector.SelectorConfig`. ``grid`` (the codebook as
    an ``[M_v, M_h]`` grid of beams, for 2-D angular neighbourhoods in the keys) is set from the
    array: ``[num_rows·o, num_cols·o]`` for a UPA's DFT codebook, none for a ULA; ``grid = [1, M]``
    forces the 1-D keys of a ULA on a UPA.
``[training]``
    ``drops``, ``steps``, ``batch``, ``lr``, ``seed`` (training seeds are disjoint from
    evaluation seeds by construction), ``weight_decay``.
``[policy.NAME]``
    keyword arguments of policy NAME (e.g. ``[policy.stale] every = 5``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .arrays import AntennaArray
from .measurement import MeasurementConfig
from .selector import SelectorConfig

__all__ = ["Scenario", "TrainingConfig", "CodebookConfig", "load_scenario", "parse_scenario", "ScenarioError"]

BACKENDS = ("geometric", "sionna-cdl", "sionna-urban")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file, the field and the value."""


@dataclass(frozen=True)
class CodebookConfig:
    oversampling: int = 1
    num_wide: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.oversampling, int) or self.oversampling < 1:
            raise ValueError(f"codebook: field 'oversampling' = {self.oversampling!r}; expected an integer >= 1")
        if not isinstance(self.num_wide, int) or self.num_wide < 0:
            raise ValueError(f"codebook: field 'num_wide' = {self.num_wide!r}; expected an integer >= 0")


@dataclass(frozen=True)
class TrainingConfig:
    drops: int = 256
    steps: int = 1500
    batch: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("drops", "steps", "batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"training: field '{name}' = {v!r}; expected an integer >= 1")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"training: field 'lr' = {self.lr!r}; expected a learning rate > 0")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"training: field 'weight_decay' = {self.weight_decay!r}; expected >= 0")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"training: field 'seed' = {self.seed!r}; expected an integer >= 0")


@dataclass
class Scenario:
    name: str
    description: str = ""
    seed: int = 0
    drops: int = 64
    chunk_drops: int = 16
    snr_db: float = 10.0
    outage_db: float = 0.0
    policies: tuple[str, ...] = ("genie", "mrt", "exhaustive", "best-of-set-b", "stale", "hierarchical", "random",
                                 "uniform", "attention")
    backend: str = "geometric"
    channel: Any = None  # the back-end's config dataclass
    array: AntennaArray = field(default_factory=lambda: AntennaArray(1, 16))
    codebook: CodebookConfig = field(default_factory=CodebookConfig)
    measurement: MeasurementConfig = field(default_factory=MeasurementConfig)
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    policy_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "<memory>"
    selector_explicit: tuple[str, ...] = ()  # the [selector] fields the file set (a checkpoint must agree on them)

    def make_channel(self):
        """The channel back-end object for this scenario."""
        cls = _backend_classes(self.backend)[1]
        return cls(self.channel)

    def to_dict(self) -> dict:
        def plain(x):
            if dataclasses.is_dataclass(x):
                return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
            if isinstance(x, (list, tuple)):
                return [plain(v) for v in x]
            if isinstance(x, dict):
                return {k: plain(v) for k, v in x.items()}
            if isinstance(x, float) and not math.isfinite(x):
                return str(x)  # "inf" (e.g. k_factor_db = inf, LoS only): strict JSON has no Infinity
            if isinstance(x, (int, float, str, bool)) or x is None:
                return x
            return str(x)

        return plain(self)


def _backend_classes(backend: str):
    if backend == "geometric":
        from .channels.geometric import GeometricChannel, GeometricConfig

        return GeometricConfig, GeometricChannel
    if backend == "sionna-cdl":
        from .channels.sionna_tr38901 import SionnaCDLChannel, SionnaCDLConfig

        return SionnaCDLConfig, SionnaCDLChannel
    if backend == "sionna-urban":
        from .channels.sionna_tr38901 import SionnaUrbanChannel, SionnaUrbanConfig

        return SionnaUrbanConfig, SionnaUrbanChannel
    raise ValueError(f"channel: field 'backend' = {backend!r}; expected one of {BACKENDS}")


def _unknown(section: str, key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{section}: unknown field {key!r}{hint}; expected one of {sorted(known)}"


def _toml_settable(f: dataclasses.Field) -> bool:
    """Fields a scenario file may set: plain numbers, strings, booleans (not arrays, dtypes, ...)."""
    if not f.init:
        return False
    if f.default is dataclasses.MISSING:
        return f.default_factory is dataclasses.MISSING  # required field
    return f.default is None or isinstance(f.default, (int, float, str, bool))


def _build(cls, table: dict, section: str, aliases: tuple[str, ...] = (), **extra):
    """Build dataclass ``cls`` from a TOML table; unknown fields and bad types are errors naming the field."""
    if not isinstance(table, dict):
        raise ValueError(f"{section}: expected a table, got {type(table).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls) if _toml_settable(f) and f.name not in extra}
    for key, value in table.items():
        if key not in known:
            raise ValueError(_unknown(section, key, [*known, *aliases]))
        default = known[key].default
        if default is not dataclasses.MISSING and default is not None and not isinstance(default, bool):
            if isinstance(default, (int, float)) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{section}: field {key!r} = {value!r}; expected a number")
            if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(f"{section}: field {key!r} = {value!r}; expected an integer")
                table = {**table, key: int(value)}
            if isinstance(default, float) and isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{section}: field {key!r} = {value!r}; expected a finite number")
            if isinstance(default, str) and not isinstance(value, str):
                raise ValueError(f"{section}: field {key!r} = {value!r}; expected a string")
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"{section}: field {key!r} = {value!r}; expected true or false")
    try:
        return cls(**table, **extra)
    except TypeError as e:  # e.g. a required field missing
        raise ValueError(f"{section}: {e}") from None


def _selector_grid(selector: SelectorConfig, table: object, array: AntennaArray, codebook: CodebookConfig,
                   num_beams: int) -> SelectorConfig:
    """The selector config with its codebook grid: the UPA DFT grid ``(num_rows·o, num_cols·o)`` unless the
    ``[selector]`` table gives ``grid`` (checked: ``M_v·M_h`` must be the codebook size); None for a ULA."""
    given = table.get("grid") if isinstance(table, dict) else None
    if given is not None:
        if given[0] * given[1] != num_beams:  # the shape was checked by SelectorConfig
            raise ValueError(f"selector: field 'grid' = {list(given)} has {given[0] * given[1]} beams; expected "
                             f"M_v·M_h = {num_beams} (the codebook of {array.num_rows}x{array.num_cols} antennas, "
                             f"oversampling {codebook.oversampling})")
        return selector
    if array.num_rows == 1:
        return selector
    o = codebook.oversampling  # make_codebooks oversamples both axes of a UPA by o
    return dataclasses.replace(selector, grid=(array.num_rows * o, array.num_cols * o))


def parse_scenario(data: dict, source: str = "<memory>") -> Scenario:
    """Validate a parsed TOML document and build a :class:`Scenario`."""
    data = dict(data)
    try:
        top = {"scenario", "channel", "array", "codebook", "measurement", "selector", "training", "policy"}
        for key in data:
            if key not in top:
                raise ValueError(_unknown("scenario file", key, sorted(top)))
        head = dict(data.get("scenario", {}))
        if "name" not in head:
            raise ValueError("scenario: field 'name' is missing; expected a name string")
        policies = head.pop("policies", None)
        scn_fields = {"name", "description", "seed", "drops", "chunk_drops", "snr_db", "outage_db"}
        for key in head:
            if key not in scn_fields:
                raise ValueError(_unknown("scenario", key, sorted(scn_fields | {"policies"})))
        for key in ("seed", "drops", "chunk_drops"):
            v = head.get(key, 1)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "seed" else 1):
                raise ValueError(f"scenario: field {key!r} = {v!r}; expected an integer >= {0 if key == 'seed' else 1}")
        for key in ("snr_db", "outage_db"):
            v = head.get(key, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"scenario: field {key!r} = {v!r}; expected a finite number (dB)")
        if policies is not None:
            if not isinstance(policies, list) or not policies or not all(isinstance(p, str) for p in policies):
                raise ValueError(f"scenario: field 'policies' = {policies!r}; expected a non-empty list of names")
            from .policies import make_policy  # noqa: F401 - validates names below

            _check_policy_names(policies)
            head["policies"] = tuple(policies)

        array_table = data.get("array", {})
        if isinstance(array_table, dict):
            array_table = {"num_rows": 1, "num_cols": 16, **array_table}  # default: a 16-element ULA
        array = _build(AntennaArray, array_table, "array")
        codebook = _build(CodebookConfig, data.get("codebook", {}), "codebook")
        measurement = _build(MeasurementConfig, data.get("measurement", {}), "measurement")
        selector = _build(SelectorConfig, data.get("selector", {}), "selector")
        training = _build(TrainingConfig, data.get("training", {}), "training")
        if selector.history > measurement.history:
            raise ValueError(f"selector: field 'history' = {selector.history} exceeds measurement 'history' = "
                             f"{measurement.history}; expected selector.history <= measurement.history")

        chan = dict(data.get("channel", {}))
        backend = chan.pop("backend", "geometric")
        if backend not in BACKENDS:
            raise ValueError(f"channel: field 'backend' = {backend!r}; expected one of {BACKENDS}")
        if "speed_kmh" in chan:
            if "speed" in chan:
                raise ValueError("channel: give 'speed' (m/s) or 'speed_kmh', not both")
            v = chan.pop("speed_kmh")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"channel: field 'speed_kmh' = {v!r}; expected a number")
            if v < 0:
                raise ValueError(f"channel: field 'speed_kmh' = {v!r}; expected a speed >= 0")
            chan["speed"] = v / 3.6
        config_cls, _ = _backend_classes(backend)
        channel = _build(config_cls, chan, "channel", aliases=("backend", "speed_kmh"), array=array)

        policy_args = data.get("policy", {})
        if not isinstance(policy_args, dict) or not all(isinstance(v, dict) for v in policy_args.values()):
            raise ValueError("policy: expected tables like [policy.stale] with the policy's arguments")
        _check_policy_names(list(policy_args))

        scn = Scenario(**head, backend=backend, channel=channel, array=array, codebook=codebook,
                       measurement=measurement, selector=selector, training=training, policy_args=policy_args,
                       source=source, selector_explicit=tuple(sorted(data.get("selector", {}))))
        num_beams = array.num_ant * codebook.oversampling ** (1 if array.num_rows == 1 else 2)
        scn.selector = _selector_grid(selector, data.get("selector", {}), array, codebook, num_beams)
        if measurement.set_b > num_beams:
            raise ValueError(f"measurement: field 'set_b' = {measurement.set_b} is larger than Set A ({num_beams} "
                             f"beams); expected 0 <= set_b <= {num_beams}")
        if policies is None and codebook.num_wide == 0:  # the default list, without the wide-beam search
            scn.policies = tuple(p for p in scn.policies if p != "hierarchical")
        if "hierarchical" in scn.policies and codebook.num_wide == 0:
            raise ValueError("codebook: field 'num_wide' = 0 but policy 'hierarchical' needs wide beams; "
                             "expected num_wide >= 2")
        return scn
    except ValueError as e:
        raise ScenarioError(f"{source}: {e}") from None


def _check_policy_names(names: list[str]) -> None:
    from .policies import POLICIES, available_policies

    for name in names:
        if name not in POLICIES:
            close = difflib.get_close_matches(name, POLICIES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"scenario: unknown policy {name!r}{hint}; expected names from {available_policies()}")


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: scenario file not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None
    return parse_scenario(data, source=str(path))
