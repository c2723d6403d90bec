"""Scenario files: TOML in, validated dataclasses out.

A scenario file has these tables (every field is optional unless noted; unknown
or misspelt fields are errors that name the field and suggest the closest one):

``[scenario]``
    ``name`` (required), ``description``, ``seed`` (evaluation seed), ``drops``,
    ``chunk_drops`` (drops generated per batch; part of the seed contract),
    ``snr_db`` (transmit SNR ρ of the data link, dB, with E|h_n|² = 1),
    ``outage_db`` (outage threshold on the received SNR, dB), ``policies``.
``[channel]``
    ``backend`` = ``"geometric"`` (default) | ``"sionna-cdl"`` | ``"sionna-urban"`` | ``"file"`` (the user's
    own channels: :mod:`~beamattn.wireless.channels.file`, ``path`` relative to the scenario file) |
    ``"sionna-rt"`` (ray-traced city scenes: :mod:`~beamattn.wireless.channels.sionna_rt`);
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

Every number must lie in its physically meaningful range (the table of :mod:`beamattn.wireless.limits`:
e.g. SNRs in [-100, 100] dB, 1..1024 antennas per axis, drops of at most an hour), seeds in
``[0, 2^63)``, and ``name`` must be a safe folder name. What computing would refuse later is refused at
load time: a codebook that cannot be built (oversampling along a one-element axis; wide beams on a UPA,
not dividing ``M``, or with beams in invisible space), a drop too short for the measurement history, and a
chunk whose tensors would not fit in memory (:func:`estimate_memory`, :func:`check_memory`: half of the
RAM unless ``$BEAMATTN_MEMORY_LIMIT`` says otherwise).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..seeds import check_seed
from .arrays import AntennaArray
from .codebooks import dft_grid_shape, dft_invisible_beams
from .limits import RANGES, check_range, format_bytes, memory_limit
from .measurement import MeasurementConfig, Timeline, make_timeline
from .selector import SelectorConfig

__all__ = ["Scenario", "TrainingConfig", "CodebookConfig", "MemoryItem", "load_scenario", "parse_scenario",
           "estimate_memory", "check_memory", "ScenarioError"]

BACKENDS = ("geometric", "sionna-cdl", "sionna-urban", "file", "sionna-rt")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file, the field and the value."""


@dataclass(frozen=True)
class CodebookConfig:
    """The ``[codebook]`` table: Set A and the wide beams of hierarchical search.

    Args:
        oversampling: DFT oversampling factor ``o`` per array axis: ``M = N·o`` beams on a ULA,
            ``(num_rows·o) x (num_cols·o)`` on a UPA; in [1, 64].
        num_wide: wide beams for the first stage of hierarchical search (0 = none, else an integer >= 2
            dividing ``M``; ULA only).
    """

    oversampling: int = 1
    num_wide: int = 0

    def __post_init__(self) -> None:
        check_range("codebook", "oversampling", self.oversampling)
        # One wide beam would cover the whole codebook: the wide stage of a hierarchical search needs >= 2.
        if isinstance(self.num_wide, bool) or not isinstance(self.num_wide, int) or self.num_wide < 0 \
                or self.num_wide == 1:
            raise ValueError(f"codebook: field 'num_wide' = {self.num_wide!r}; expected 0 (no wide beams) or an "
                             "integer >= 2")


@dataclass(frozen=True)
class TrainingConfig:
    """The ``[training]`` table of ``beamattn train`` (the selector and the learned baselines).

    Args:
        drops: training drops (validation adds ``max(16, drops // 4)``), from seeds disjoint from the
            evaluation seeds by construction.
        steps: optimiser (AdamW) steps.
        batch: decisions per minibatch.
        lr: learning rate of AdamW.
        weight_decay: AdamW weight decay.
        seed: training seed: the training drops, the initial weights and the minibatches.
    """

    drops: int = 256
    steps: int = 1500
    batch: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("drops", "steps", "batch", "lr", "weight_decay"):  # ranges of beamattn.wireless.limits
            check_range("training", name, getattr(self, name))
        check_seed(self.seed, "training: field 'seed'")


@dataclass
class Scenario:
    """A validated scenario (:func:`load_scenario`): the ``[scenario]`` fields and the other tables' configs.

    Args:
        name: names the result folders (letters, digits and ``_ . + = -``); required.
        description: free text, recorded in ``metrics.json``.
        seed: evaluation seed: it fixes the drops and the measurement noise of every policy.
        drops: evaluation drops (independent user tracks); confidence intervals are over drops.
        chunk_drops: drops generated and evaluated per batch (memory; part of the seed contract).
        snr_db: transmit SNR ``ρ = P/N0`` of the data link in dB, with ``E|h_n|² = 1``.
        outage_db: outage threshold on the received SNR in dB (the ``outage`` KPI).
        policies: names of the registered policies to evaluate.
    """

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
    if backend == "file":
        from .channels.file import FileChannel, FileConfig

        return FileConfig, FileChannel
    if backend == "sionna-rt":  # ray-traced scenes; sionna.rt itself is imported only when channels are traced
        from .channels.sionna_rt import SionnaRTChannel, SionnaRTConfig

        return SionnaRTConfig, SionnaRTChannel
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


def parse_scenario(data: dict, source: str = "<memory>", *, max_memory: int | None = None) -> Scenario:
    """Validate a parsed TOML document and build a :class:`Scenario`.

    Every number must lie in its physically meaningful range (:mod:`beamattn.wireless.limits`), the
    codebook, the wide beams and the measurement timeline must be buildable, and the tensors of one chunk
    must fit in ``max_memory`` bytes (default :func:`~beamattn.wireless.limits.memory_limit`: see
    :func:`check_memory`). Any failure is one :class:`ScenarioError` line naming ``source`` and the field.
    """
    try:
        if not isinstance(data, dict):
            raise ValueError(f"scenario document = {type(data).__name__}; expected a table of tables (a parsed "
                             "TOML document, e.g. from tomllib.load)")
        data = dict(data)
        top = {"scenario", "channel", "array", "codebook", "measurement", "selector", "training", "policy"}
        for key in data:
            if key not in top:
                raise ValueError(_unknown("scenario file", key, sorted(top)))
            if not isinstance(data[key], dict):
                raise ValueError(f"{key}: expected a table [{key}], got {type(data[key]).__name__} {data[key]!r:.40}")
        head = dict(data.get("scenario", {}))
        if "name" not in head:
            raise ValueError("scenario: field 'name' is missing; expected a name string")
        _check_name(head["name"])
        policies = head.pop("policies", None)
        scn_fields = {"name", "description", "seed", "drops", "chunk_drops", "snr_db", "outage_db"}
        for key in head:
            if key not in scn_fields:
                raise ValueError(_unknown("scenario", key, sorted(scn_fields | {"policies"})))
        if "description" in head and not isinstance(head["description"], str):
            raise ValueError(f"scenario: field 'description' = {head['description']!r:.40}; expected a string")
        check_seed(head.get("seed", 0), "scenario: field 'seed'")
        for key in ("drops", "chunk_drops", "snr_db", "outage_db"):  # physically meaningful ranges
            if key in head:
                check_range("scenario", key, head[key])
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
        for key in ("temperature", "history", "neighbours", "d_model", "topk"):  # ranges of limits.RANGES
            check_range("selector", key, getattr(selector, key))
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
            check_range("channel", "speed_kmh", v)
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
        # Everything that computing would refuse later is refused now, before any drop is generated.
        num_beams = _num_beams(array, codebook)
        scn.selector = _selector_grid(selector, data.get("selector", {}), array, codebook, num_beams)
        if scn.selector.arch == "transformer" and "phase_lead" not in data.get("selector", {}):
            # The phase predictor's horizon: from the latest report to the middle of the use interval, in periods.
            dt = getattr(channel, "sample_interval", None) or measurement.period
            p_steps, d_steps = max(1, round(measurement.period / dt)), round(measurement.delay / dt)
            scn.selector = dataclasses.replace(scn.selector, phase_lead=(d_steps + (p_steps - 1) / 2) / p_steps)
        if measurement.set_b > num_beams:
            raise ValueError(f"measurement: field 'set_b' = {measurement.set_b} is larger than Set A ({num_beams} "
                             f"beams); expected 0 <= set_b <= {num_beams}")
        if selector.mode == "topk" and selector.topk > num_beams:  # the selector would refuse it when it runs
            raise ValueError(f"selector: field 'topk' = {selector.topk} exceeds the codebook size M = {num_beams}; "
                             f"expected 1 <= topk <= {num_beams}")
        if policies is None and codebook.num_wide == 0:  # the default list, without the wide-beam search
            scn.policies = tuple(p for p in scn.policies if p != "hierarchical")
        if "hierarchical" in scn.policies and codebook.num_wide == 0:
            raise ValueError("codebook: field 'num_wide' = 0 but policy 'hierarchical' needs wide beams; "
                             "expected num_wide >= 2")
        _check_wide(array, codebook, num_beams)  # the wide codebook is built whenever num_wide > 0
        _timeline(scn)  # a drop long enough for history x period + delay
        check_memory(scn, max_memory)
        if backend == "file":  # drops are read in order from the file(s), never cycled
            scn.channel.check_counts(scn.drops, scn.training.drops)
        return scn
    except ValueError as e:
        raise ScenarioError(f"{source}: {e}") from None


_NAME = re.compile(r"\w[\w.+=-]*")  # letters, digits, _ . + = - (unicode letters too); no separators, spaces


def _check_name(name: object) -> None:
    """The scenario name names result folders: a non-empty string that is a safe single folder name."""
    if not isinstance(name, str) or len(name) > 100 or not _NAME.fullmatch(name):
        raise ValueError(f"scenario: field 'name' = {name!r:.60}; expected a non-empty string of at most 100 "
                         "letters, digits and _ . + = - starting with a letter, digit or _ (it names result folders)")


def _num_beams(array: AntennaArray, codebook: CodebookConfig) -> int:
    """Set A's size ``M``: the DFT codebook :func:`beamattn.wireless.runner.make_codebooks` builds (``o`` on each
    axis of a UPA), validated as :func:`~beamattn.wireless.codebooks.dft_codebook` validates it."""
    o = codebook.oversampling
    try:
        m_v, m_h = dft_grid_shape(array, o if array.num_rows == 1 else (o, o))
    except ValueError as e:
        raise ValueError(f"codebook: field 'oversampling' = {o} does not fit the {array.num_rows}x{array.num_cols} "
                         f"array ({e})") from None
    return m_v * m_h


def _check_wide(array: AntennaArray, codebook: CodebookConfig, num_beams: int) -> None:
    """The conditions of :func:`~beamattn.wireless.codebooks.wide_codebook`, checked on the scenario's fields."""
    w = codebook.num_wide
    if w == 0:
        return
    if array.num_rows != 1:
        raise ValueError(f"codebook: field 'num_wide' = {w} needs a horizontal ULA (wide beams for hierarchical "
                         f"search are built for num_rows = 1), but the array has num_rows = {array.num_rows}; "
                         "expected num_wide = 0 for a UPA")
    if num_beams % w != 0:
        divisors = [d for d in range(2, num_beams + 1) if num_beams % d == 0][:6]
        raise ValueError(f"codebook: field 'num_wide' = {w} does not divide the codebook size M = {num_beams}; "
                         f"expected a divisor of M such as {divisors}")
    invisible = dft_invisible_beams(array, codebook.oversampling)
    if invisible:
        raise ValueError(f"codebook: field 'num_wide' = {w} needs every narrow beam in visible space, but with "
                         f"array 'spacing_h' = {array.spacing_h} wavelengths {invisible} of {num_beams} beams point "
                         "into invisible space; expected spacing_h >= 0.5 or num_wide = 0")


def _timeline(scn: Scenario) -> Timeline:
    """The measurement timeline of one drop (raises the error computing would raise, naming 'duration')."""
    cfg = scn.channel
    t = cfg.num_time_steps
    dt = cfg.sample_interval if t > 1 else scn.measurement.period  # as build_episode reads it from the times
    return make_timeline(t, dt, scn.measurement)


@dataclass(frozen=True)
class MemoryItem:
    """One large tensor (or set of objects) a scenario allocates: what it is, its bytes, and the fields that
    drive its size (``"chunk_drops = 16, ..."``), named in the refusal when it is the largest."""

    what: str
    bytes: int
    fields: str


def estimate_memory(scn: Scenario) -> list[MemoryItem]:
    """The largest tensors (bytes) the scenario allocates, before anything is allocated.

    Per chunk of ``B = chunk_drops`` drops with ``T`` samples, ``F`` subcarriers (1 when narrowband),
    ``N`` antennas, ``M`` narrow + ``W`` wide beams, ``D`` decisions of ``U`` samples each and ``R = D + H - 1``
    reports of ``S`` samples (complex64 = 8 bytes; Sionna's "double" precision 16):

    - the channel ``h [B, T, F, N]`` x 3 (the previous chunk's, which the loop still holds, and the new one
      twice: the back-end's time chunks and their concatenation), and the back-end's own tensors: the
      geometric steering matrices ``[B, P, N]`` and blockage events ``[B, T, E]`` float64 x 3; Sionna's path
      coefficients ``[B, T, N, P]`` and its ``[B, T, T]`` spatial-consistency matrices;
    - the measurements: noise, products and samples ``[B, R, S, K]`` x 4, the measured channels ``[B, R, S, N]``;
    - the truth over the use intervals: ``h_u [B, D, U·F, N]``, every beam's gain over it
      ``[B, D, U·F, M]`` complex + 2 float32, the covariances ``[B, D, N, N]`` x 3 (the previous chunk's,
      the product and its scaled copy);
    - the operations' temporaries: as much again as the above (measured: the peak is 1.0-1.4 x their sum).

    Over all drops: the per-decision rows of ``steps.csv`` (``drops x D x policies`` Python tuples, ~700 B
    each) and the training pool (``1.25 x training.drops x D`` decisions of an ``[N, N]`` covariance and
    ``[L, M]`` reports).
    """
    c, arr = scn.channel, scn.array
    b, t, n = scn.chunk_drops, c.num_time_steps, arr.num_ant
    if scn.backend == "geometric":
        f = c.num_subcarriers if c.wideband else 1  # 0 or 1: narrowband
    else:
        f = c.num_subcarriers or 1  # None: narrowband
    m = _num_beams(arr, scn.codebook)
    k = m + scn.codebook.num_wide
    cb = 16 if getattr(c, "precision", "single") == "double" else 8
    tl = _timeline(scn)
    d, u, h = tl.num_decisions, tl.use_len, tl.history
    r, s = d + h - 1, scn.measurement.samples
    shape_t = f"T = {t} (duration {c.duration} s / sample_interval {c.sample_interval} s)"
    shape_n = f"N = {n} (array num_rows {arr.num_rows} x num_cols {arr.num_cols})"
    shape_f = f"F = {f} (num_subcarriers {c.num_subcarriers})"
    shape_m = f"M = {m} (N x oversampling {scn.codebook.oversampling}{' per axis' if arr.num_rows > 1 else ''})"
    shape_d = (f"D = {d} decisions of U = {u} samples (duration {c.duration} s / period {scn.measurement.period} s, "
               f"sample_interval {c.sample_interval} s)")
    chunk = f"chunk_drops = {b}"
    # Alive at the peak: the previous chunk's channel and episode (the loop still holds them while the next
    # chunk is made), and the new channel twice (the back-end's time chunks and their concatenation).
    items = [MemoryItem("channel h [B, T, F, N] x 3", 3 * b * t * f * n * cb,
                        f"{chunk}, {shape_t}, {shape_f}, {shape_n}")]
    if scn.backend == "geometric":
        p = c.num_paths
        items.append(MemoryItem("steering matrices [B, P, N]", b * p * n * cb,
                                f"{chunk}, P = {p} (num_clusters {c.num_clusters} x rays_per_cluster "
                                f"{c.rays_per_cluster}), {shape_n}"))
        if c.los and c.blockage_rate > 0 and c.blockage_attenuation_db > 0:
            mean = c.blockage_rate * (c.duration + 2 * c.blockage_transition + 20 * c.blockage_duration)
            events = int(mean + 6 * math.sqrt(mean) + 1)  # the largest Poisson count over a chunk, generously
            items.append(MemoryItem("blockage events [B, T, E] float64 x 3", 3 * b * t * events * 8,
                                    f"{chunk}, {shape_t}, E ~ {events} events (blockage_rate {c.blockage_rate} /s "
                                    f"x (duration + 20 x blockage_duration {c.blockage_duration} s))"))
    elif scn.backend == "file":
        from .channels.file import _memory_bytes

        nbytes, fields = _memory_bytes(c)
        items.append(MemoryItem("file channels [drops, T, F, N] x 2 (read whole, then normalised)", nbytes, fields))
    elif scn.backend == "sionna-rt":
        p = 160 if c.diffraction else 40  # traced paths per position (measured: munich <= 19, ~150 with diffraction)
        items.append(MemoryItem("evolved path coefficients [B, T, N, P] x 4 (two traces, phases, products)",
                                4 * b * t * n * p * cb, f"{chunk}, {shape_t}, {shape_n}, P ~ {p} traced paths "
                                                        f"(diffraction {c.diffraction})"))
    else:
        p = 24 if scn.backend == "sionna-cdl" else 24 * 20  # CDL clusters; UMi/UMa/RMa clusters x rays
        items.append(MemoryItem("path coefficients [B, T, N, P]", b * t * n * p * cb,
                                f"{chunk}, {shape_t}, {shape_n}, P ~ {p} paths"))
        if scn.backend == "sionna-urban":
            items.append(MemoryItem("spatial-consistency matrices [B, T, T] x 8", 8 * b * t * t * 4,
                                    f"{chunk}, {shape_t}"))
    items += [
        MemoryItem("measurement noise and samples [B, R, S, K] x 4", 4 * b * r * s * k * 8,
                   f"{chunk}, R = {r} reports (D = {d} + history {h} - 1), S = samples {s}, K = {k} beams "
                   f"({shape_m} + num_wide {scn.codebook.num_wide})"),
        MemoryItem("measured channels [B, R, S, N]", b * r * s * n * cb, f"{chunk}, R = {r}, S = samples {s}, "
                                                                         f"{shape_n}"),
        MemoryItem("use-interval channels [B, D, U·F, N]", b * d * u * f * n * cb,
                   f"{chunk}, {shape_d}, {shape_f}, {shape_n}"),
        MemoryItem("use-interval beam gains [B, D, U·F, M] complex + 2 float32", b * d * u * f * m * (cb + 8),
                   f"{chunk}, {shape_d}, {shape_f}, {shape_m}"),  # h_u vᵀ, its |.|, its |.|²
        MemoryItem("covariances [B, D, N, N] x 3", 3 * b * d * n * n * cb, f"{chunk}, {shape_d}, {shape_n}"),
    ]
    # The operations' own temporaries (strided and conjugated copies, broadcast operands, the allocator's
    # slack): as much again as the tensors listed. Measured peak RSS growth of a loop over chunks (after a
    # small warm-up): 1.0-1.4 x the listed tensors' sum on UPA 8x8 wideband, ULA 64 x4 oversampled and
    # UPA 16x16 shapes, so the total (2 x) bounds it with margin (tests/test_value_bounds.py checks one).
    items.append(MemoryItem("temporaries of the chunk's operations (as much as the tensors above)",
                            sum(i.bytes for i in items), ""))
    items.append(MemoryItem("steps.csv rows [drops x D x policies] (Python tuples)", scn.drops * d * len(scn.policies)
                            * 700, f"drops = {scn.drops}, D = {d} decisions, {len(scn.policies)} policies"))
    sel = scn.selector
    batch = max(scn.training.batch, 1024)  # a training minibatch, or an inference chunk of 1024 decisions
    items.append(MemoryItem("selector keys [batch, M, d_model] float32 x 4 (convolution, GELU, gradients)",
                            4 * batch * m * sel.d_model * 4,
                            f"training batch = {scn.training.batch}, {shape_m}, selector d_model = {sel.d_model}"))
    tr, hist = scn.training, scn.selector.history
    pool = (tr.drops + max(16, tr.drops // 4)) * d  # training + validation decisions
    items.append(MemoryItem("training pool [drops x D] x (covariance [N, N] + reports [L, M])",
                            pool * (n * n * cb + (hist + 2) * m * 4),
                            f"training drops = {tr.drops} (+ validation {max(16, tr.drops // 4)}), D = {d}, "
                            f"{shape_n}, L = selector history {hist}, {shape_m}"))
    return items


def check_memory(scn: Scenario, max_memory: int | None = None) -> int:
    """Refuse, in one line naming the fields that drive the largest tensor, a scenario whose tensors
    (:func:`estimate_memory`, all counted at once: an upper bound) need more than ``max_memory`` bytes
    (default :func:`~beamattn.wireless.limits.memory_limit`: half of the RAM, or ``$BEAMATTN_MEMORY_LIMIT``).

    Returns the estimated bytes.
    """
    items = estimate_memory(scn)
    total = sum(i.bytes for i in items)
    limit, where = (max_memory, "max_memory") if max_memory is not None else memory_limit()
    if total > limit:
        top = max((i for i in items if i.fields), key=lambda i: i.bytes)  # a tensor whose fields can be named
        raise ValueError(f"memory: the scenario needs about {format_bytes(total)}, most of it for the "
                         f"{top.what} ({format_bytes(top.bytes)}, from {top.fields}); expected at most "
                         f"{format_bytes(limit)} ({where}): make these fields smaller")
    return total


def _check_policy_names(names: list[str]) -> None:
    from ..plugins import find_policy
    from .policies import POLICIES, available_policies

    for name in names:
        if not find_policy(name):  # registered, or by an installed plugin's entry point (loaded lazily)
            close = difflib.get_close_matches(name, POLICIES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"scenario: unknown policy {name!r}{hint}; expected names from {available_policies()}")


def load_scenario(path: str | Path, *, max_memory: int | None = None) -> Scenario:
    """Read and validate a scenario TOML file (see :func:`parse_scenario`)."""
    if not isinstance(path, (str, Path)):
        raise ScenarioError(f"scenario file = {path!r:.60}; expected a path (str or pathlib.Path)")
    path = Path(path)
    if path.is_dir():
        raise ScenarioError(f"{path}: is a directory; expected a scenario TOML file")
    if not path.is_file():
        raise ScenarioError(f"{path}: scenario file not found")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{path}: not a text file (byte {e.start} is not UTF-8); expected a scenario "
                            "TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ScenarioError(f"{path}: cannot be read ({e.strerror})") from None
    from .channels.file import resolve_paths

    data = resolve_paths(data, path.parent)  # a file back-end's paths are relative to the scenario file
    data = _resolve_scene_path(data, path.parent)  # and so is a ray-traced scene's XML file
    return parse_scenario(data, source=str(path), max_memory=max_memory)


def _resolve_scene_path(doc: dict, base_dir: Path) -> dict:
    """``[channel] scene`` of a ``sionna-rt`` scenario, when it is a relative path to an XML file (not the name
    of a shipped scene), resolved against the scenario file's folder."""
    chan = doc.get("channel") if isinstance(doc, dict) else None
    if not isinstance(chan, dict) or chan.get("backend") != "sionna-rt":
        return doc
    scene = chan.get("scene")
    if not isinstance(scene, str) or not scene.lower().endswith(".xml"):
        return doc  # a shipped scene's name (or a bad value, refused by the config with its own message)
    if Path(scene).expanduser().is_absolute():
        return doc
    return {**doc, "channel": {**chan, "scene": str(base_dir / scene)}}
