"""Channels read from the user's own files (``backend = "file"``): measured, ray-traced or exported ones.

Scenario table::

    [channel]
    backend = "file"
    path = "my_channels.npz"        # relative to the scenario file; .npz, .mat (MATLAB v5-v7) or .h5/.hdf5
    normalize = "per-drop"          # or "none"
    train_path = "my_train.npz"     # optional: drops for `beamattn train` (never the evaluation drops)

The file holds, by name (NumPy arrays in a ``.npz``, variables of a ``.mat``, datasets or root attributes of
an HDF5 file):

=========================  ================  ======================================================
name                       shape             meaning
=========================  ================  ======================================================
``h``                      ``[B, T, N]`` or  complex channel to the single-antenna user, ``y = hᵀ w x + n``
                           ``[B, T, F, N]``  (no conjugate), antennas in the order of
                                             :meth:`~beamattn.wireless.arrays.AntennaArray.positions`
``times``                  ``[T]``           seconds, strictly increasing and uniform (the measurement
                                             timeline counts in samples of one interval)
``positions`` (optional)   ``[B, T, 3]``     user positions in metres (default: zeros)
``los`` (optional)         ``[B, T]``        line-of-sight flag, bool or 0/1 (default: all False)
``subcarrier_frequencies`` ``[F]``           Hz offsets from the carrier; required when ``h`` is 4-D
``num_rows``, ``num_cols`` scalar            the array the channels were made for: must equal the
(optional)                                   scenario's ``[array]``
``carrier_frequency``      scalar            Hz; must equal ``[channel] carrier_frequency`` when both
(optional)                                   are given
=========================  ================  ======================================================

Files written by ``beamattn channels`` load as they are: their ``meta`` (the scenario as JSON) gives the
array and the carrier, and ``beams`` / ``beam_gains`` are ignored. Any other name is refused (a misspelt
``H`` would otherwise be silently unused).

Checks (each one line naming the file, the field, the value and what was expected): the suffix, the names,
complex ``h`` of 3 or 4 dimensions with ``N = num_rows x num_cols`` of the scenario's array, the other shapes
against ``h``, ``times`` uniform with an interval and a drop length in the ranges of
:mod:`beamattn.wireless.limits`, at least 2 samples, the array and carrier the file was made for, and, when
the channels are first read, finite values and no drop whose channel is zero everywhere. A scenario asking
for more ``drops`` than the file holds is refused (drops are read in order, never cycled: a repeated drop
would count twice in the confidence intervals).

Normalisation (``normalize``). The package's convention is ``E|h_n|² = 1`` without large-scale path loss
(:mod:`.base`): a transmit SNR ``ρ`` is then the average per-antenna SNR. Ray-traced and measured channels
carry their path loss (``|h|² ~ 1e-9`` at 100 m and 28 GHz), which would silently give a genie SNR of
``ρ - 90`` dB. ``"per-drop"`` (default) divides each drop by its RMS over time, subcarriers and antennas,
``h_b / sqrt(mean_{t,f,n} |h_b|²)``: every drop then has ``E|h_n|² = 1`` exactly while the fading *within* a
drop (shadowing along the track, blockage, a LoS that appears) is kept relative to the drop's mean.
``"none"`` uses the values as stored: for channels that already follow the convention (``beamattn
channels`` output: the round trip then gives the same ``run`` numbers, bit for bit) or to keep path loss on
purpose (``snr_db`` is then the SNR at unit channel gain).

Drops and common random numbers. The runner asks for chunk ``c`` of ``chunk_drops`` drops; this back-end
returns the file's drops ``c·chunk_drops ..`` in order, and the measurement noise of each drop is drawn from
the scenario seed exactly as for the generated back-ends (:func:`beamattn.wireless.runner.episodes`): every
policy sees the same channels and noise, and a file exported with ``beamattn channels`` reproduces the
generated run. The evaluation seed changes the noise, not the channels. Training reads ``train_path``: the
training drops from its start, the validation drops from its end (last drop first), and the scenario's
``[training] drops`` plus the validation drops (``max(16, drops // 4)``, as :mod:`beamattn.wireless.train`)
must fit in it without overlap. Without ``train_path`` training is refused: the evaluation drops are never
trained on.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..arrays import AntennaArray
from ..limits import check_range
from .base import ChannelSample

__all__ = ["FileConfig", "FileChannel", "SUFFIXES", "NORMALIZE", "resolve_paths", "read_channel_file",
           "file_digests"]

SUFFIXES = (".npz", ".mat", ".h5", ".hdf5")
NORMALIZE = ("per-drop", "none")
FIELDS = ("h", "times", "positions", "los", "subcarrier_frequencies", "num_rows", "num_cols", "carrier_frequency")
IGNORED = ("beams", "beam_gains", "meta")  # written by `beamattn channels`; meta gives the array and carrier
UNIFORM_RTOL = 1e-3  # sample intervals may differ by float rounding of the stored times, not more


def _valid_drops(training_drops: int) -> int:
    """Validation drops of a training (as :func:`beamattn.wireless.train.train_selector` collects them)."""
    return max(16, training_drops // 4)


# --------------------------------------------------------------------------- readers


class _Reader:
    """Names, shapes and dtypes of a channel file without reading the big arrays; ``read(name)`` reads one."""

    def __init__(self, path: Path):
        self.path = path
        self.suffix = path.suffix.lower()
        self.info: dict[str, tuple[tuple[int, ...], np.dtype | None]] = {}  # name -> (shape, dtype or None)
        try:
            if self.suffix == ".npz":
                self._npz_info()
            elif self.suffix == ".mat":
                self._mat_info()
            else:
                self._h5_info()
        except ValueError:
            raise
        except ImportError as e:  # SciPy (.mat) or h5py (.h5) missing
            raise ValueError(f"channel: file {str(path)!r} needs {e.name} to be read ({self.suffix}); expected it "
                             "installed: pip install 'beamattn[files]'") from None
        except Exception as e:  # a damaged or foreign file: one line naming it
            raise ValueError(f"channel: file {str(path)!r} cannot be read as {self.suffix} "
                             f"({type(e).__name__}: {str(e)[:120]})") from None

    def _npz_info(self) -> None:
        with zipfile.ZipFile(self.path) as z:
            for item in z.namelist():
                if not item.endswith(".npy"):
                    continue
                with z.open(item) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                self.info[item[:-4]] = (tuple(shape), dtype)

    def _mat_info(self) -> None:
        import scipy.io

        try:
            entries = scipy.io.whosmat(str(self.path))
        except NotImplementedError:  # MATLAB v7.3 is HDF5 with transposed, compound-complex arrays
            raise ValueError(f"channel: file {str(self.path)!r} is a MATLAB v7.3 file; expected one saved with "
                             "save(..., '-v7') (or an HDF5 .h5 file)") from None
        for name, shape, _ in entries:
            self.info[name] = (tuple(shape), None)  # dtype known when read

    def _h5_info(self) -> None:
        import h5py

        with h5py.File(self.path, "r") as f:
            for name, obj in f.items():
                if isinstance(obj, h5py.Dataset):
                    self.info[name] = (tuple(obj.shape), obj.dtype)
            for name, value in f.attrs.items():
                if name not in self.info:
                    self.info[name] = (tuple(np.shape(value)), np.asarray(value).dtype)

    def read(self, name: str) -> np.ndarray:
        """The array ``name``; a damaged member or an object (pickled) array is one error line naming it."""
        try:
            return self._read(name)
        except Exception as e:
            raise ValueError(f"channel: file {str(self.path)!r} field {name!r} cannot be read "
                             f"({type(e).__name__}: {str(e)[:120]}); expected a numeric array") from None

    def _read(self, name: str) -> np.ndarray:
        if self.suffix == ".npz":
            with np.load(self.path, allow_pickle=False) as f:  # never unpickle a user's file
                return f[name]
        if self.suffix == ".mat":
            import scipy.io

            value = scipy.io.loadmat(str(self.path), variable_names=[name])[name]
            return value.reshape(self.shape(name))  # MATLAB's [1, T] vectors and [1, 1] scalars
        import h5py

        with h5py.File(self.path, "r") as f:
            return np.asarray(f[name][()] if name in f else f.attrs[name])

    def shape(self, name: str) -> tuple[int, ...]:
        """The field's shape; MATLAB keeps at least 2 dimensions, so its vectors and scalars are flattened."""
        shape = self.info[name][0]
        if self.suffix == ".mat" and name in _VECTORS and len(shape) == 2 and min(shape) == 1:
            return (int(np.prod(shape)),)
        if self.suffix == ".mat" and name in _SCALARS and int(np.prod(shape)) == 1:
            return ()
        return shape


_VECTORS = ("times", "subcarrier_frequencies")
_SCALARS = ("num_rows", "num_cols", "carrier_frequency")


def _scalar(reader: _Reader, name: str) -> float:
    value = np.asarray(reader.read(name)).reshape(-1)
    if value.size != 1 or value.dtype.kind not in "iuf" or not np.isfinite(value[0]):
        raise ValueError(f"channel: file {str(reader.path)!r} field {name!r} = {value[:3].tolist()!r}; expected "
                         "one finite real number")
    return float(value[0])


def _meta(reader: _Reader) -> dict:
    """The scenario that ``beamattn channels`` recorded (its array and carrier), or {}."""
    if "meta" not in reader.info:
        return {}
    try:
        text = np.asarray(reader.read("meta")).reshape(-1)[0]
        meta = json.loads(text.decode() if isinstance(text, bytes) else str(text))
        return meta.get("scenario", {}) if isinstance(meta, dict) else {}
    except (ValueError, IndexError):
        return {}


def _sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)  # keyed by the file's version: a sweep asks for the same files' digests per task
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:  # noqa: ARG001
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digests(doc: dict) -> dict[str, str]:
    """``{path: SHA-256}`` of the channel files a scenario document reads (``backend = "file"``), {} for
    other back-ends or files that do not exist (the scenario loader reports those)."""
    chan = doc.get("channel") if isinstance(doc, dict) else None
    if not isinstance(chan, dict) or chan.get("backend") != "file":
        return {}
    paths = [chan.get(k) for k in ("path", "train_path")]
    return {p: _sha256(Path(p)) for p in paths if isinstance(p, str) and p and Path(p).is_file()}


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class _FileInfo:
    """What the header of one channel file says (checked against the scenario)."""

    num_drops: int
    num_time_steps: int
    sample_interval: float
    num_subcarriers: int | None
    carrier_frequency: float | None
    complex128: bool


def _inspect(path_text: str, field_name: str, array: AntennaArray) -> _FileInfo:
    """Check one file's names, shapes, dtypes, times and array without reading ``h``."""
    if not path_text:
        raise ValueError(f"channel: field {field_name!r} is missing; expected the path of a channel file "
                         f"({', '.join(SUFFIXES)})")
    path = Path(path_text)
    where = f"channel: field {field_name!r} = {path_text!r}"
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{where}; expected a file name ending in one of {SUFFIXES}")
    if not path.is_file():
        raise ValueError(f"{where}: file not found" + ("" if path.is_absolute() else
                                                        " (a relative path is relative to the scenario file)"))
    r = _Reader(path)
    f = f"channel: file {path_text!r}"
    for name in r.info:
        if name not in FIELDS and name not in IGNORED:
            close = [k for k in FIELDS if k.lower() == name.lower()] or difflib.get_close_matches(name, FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{f}: unknown field {name!r}{hint}; expected names from {list(FIELDS)}")
    for name, what in (("h", "h [B, T, (F,) N] complex"), ("times", "times [T] seconds")):
        if name not in r.info:
            raise ValueError(f"{f}: field {name!r} is missing; expected {what}")
    shape, dtype = r.info["h"]
    if len(shape) not in (3, 4):
        raise ValueError(f"{f}: field 'h' has shape {list(shape)}; expected [B, T, N] or [B, T, F, N]")
    if dtype is not None and dtype.kind != "c":
        raise ValueError(f"{f}: field 'h' has dtype {dtype}; expected complex (complex64 or complex128)")
    b, t, n = shape[0], shape[1], shape[-1]
    if n != array.num_ant:
        raise ValueError(f"{f}: field 'h' has N = {n} antennas (shape {list(shape)}); expected N = "
                         f"{array.num_ant} for the scenario's array num_rows {array.num_rows} x num_cols "
                         f"{array.num_cols}")
    if b < 1:
        raise ValueError(f"{f}: field 'h' has shape {list(shape)}, no drops; expected B >= 1")
    check_range(f"{f}: field 'h' drops B", "drops", b)
    if t < 2:
        raise ValueError(f"{f}: field 'h' has T = {t} time samples (shape {list(shape)}); expected T >= 2 "
                         "(the timeline needs the sample interval)")
    if r.shape("times") != (t,):
        raise ValueError(f"{f}: field 'times' has shape {list(r.shape('times'))}; expected [T] = [{t}] as 'h'")
    times = np.asarray(r.read("times"))
    if times.dtype.kind not in "iuf" or not np.isfinite(times).all():
        raise ValueError(f"{f}: field 'times' has dtype {times.dtype} or non-finite values; expected finite "
                         "seconds")
    times = times.astype(np.float64).reshape(-1)
    steps = np.diff(times)
    dt = (times[-1] - times[0]) / (t - 1)
    if not (steps > 0).all():
        k = int(np.argmin(steps > 0))
        raise ValueError(f"{f}: field 'times' is not strictly increasing (times[{k}] = {times[k]:g}, times[{k + 1}] "
                         f"= {times[k + 1]:g}); expected increasing seconds")
    worst = int(np.argmax(np.abs(steps - dt)))
    if abs(steps[worst] - dt) > UNIFORM_RTOL * dt:
        raise ValueError(f"{f}: field 'times' is not uniform (interval {steps[worst]:g} s at index {worst}, mean "
                         f"{dt:g} s); expected one sample interval (the measurement timeline counts samples)")
    check_range(f"{f}: field 'times' interval", "sample_interval", float(dt))
    check_range(f"{f}: field 'times' drop length", "duration", float(t * dt))
    if "positions" in r.info and r.shape("positions") != (b, t, 3):
        raise ValueError(f"{f}: field 'positions' has shape {list(r.shape('positions'))}; expected [B, T, 3] = "
                         f"[{b}, {t}, 3]")
    if "los" in r.info and r.shape("los") != (b, t):
        raise ValueError(f"{f}: field 'los' has shape {list(r.shape('los'))}; expected [B, T] = [{b}, {t}]")
    freqs = "subcarrier_frequencies" in r.info
    if len(shape) == 4:
        if not freqs:
            raise ValueError(f"{f}: field 'subcarrier_frequencies' is missing; expected [F] = [{shape[2]}] Hz "
                             "offsets with a wideband h [B, T, F, N]")
        if r.shape("subcarrier_frequencies") != (shape[2],):
            raise ValueError(f"{f}: field 'subcarrier_frequencies' has shape "
                             f"{list(r.shape('subcarrier_frequencies'))}; expected [F] = [{shape[2]}] as 'h'")
        sf = np.asarray(r.read("subcarrier_frequencies"))
        if sf.dtype.kind not in "iuf" or not np.isfinite(sf).all():
            raise ValueError(f"{f}: field 'subcarrier_frequencies' has non-finite or non-real values; expected "
                             "finite Hz offsets")
        check_range(f"{f}: field 'h' subcarriers F", "num_subcarriers", shape[2])
    elif freqs:
        raise ValueError(f"{f}: field 'subcarrier_frequencies' is given but 'h' is narrowband (shape "
                         f"{list(shape)}); expected h [B, T, F, N] or no subcarrier_frequencies")
    meta = _meta(r)
    made = {"num_rows": meta.get("array", {}).get("num_rows"), "num_cols": meta.get("array", {}).get("num_cols")}
    for name in ("num_rows", "num_cols"):
        if name in r.info:
            made[name] = _scalar(r, name)
    for name, value in made.items():
        if value is not None and value != getattr(array, name):
            raise ValueError(f"{f}: made for an array with {name} = {value:g}; expected {name} = "
                             f"{getattr(array, name)} as the scenario's [array]")
    carrier = meta.get("channel", {}).get("carrier_frequency")
    if "carrier_frequency" in r.info:
        carrier = _scalar(r, "carrier_frequency")
    if carrier is not None:
        check_range(f, "carrier_frequency", float(carrier))
    return _FileInfo(num_drops=b, num_time_steps=t, sample_interval=float(dt),
                     num_subcarriers=shape[2] if len(shape) == 4 else None,
                     carrier_frequency=None if carrier is None else float(carrier),
                     complex128=dtype is not None and dtype == np.complex128)


@dataclass(frozen=True)
class FileConfig:
    """Channels read from a file (see the module docstring for the format and the checks).

    Args:
        path: the evaluation drops' file (.npz, .mat, .h5); relative paths are resolved against the
            scenario file's folder by :func:`~beamattn.wireless.scenario.load_scenario`.
        normalize: ``"per-drop"`` (each drop scaled to ``E|h_n|² = 1``) or ``"none"`` (as stored).
        train_path: the training and validation drops' file (optional; same array, interval and band).
        carrier_frequency: Hz; checked against the file's when both are given (None: the file's, if any).
        array: the scenario's array (set by the scenario loader).

    The other fields are read from the file header on construction: ``num_drops``, ``num_time_steps``,
    ``sample_interval`` (s), ``duration`` (s), ``num_subcarriers`` (None when narrowband), ``precision``
    (``"double"`` for complex128 files), ``train_drops`` (0 without ``train_path``).
    """

    path: str = ""
    normalize: str = "per-drop"
    train_path: str | None = None
    carrier_frequency: float | None = None
    array: AntennaArray = field(default_factory=lambda: AntennaArray(1, 16))
    num_drops: int = field(init=False, default=0)
    num_time_steps: int = field(init=False, default=0)
    sample_interval: float = field(init=False, default=0.0)
    duration: float = field(init=False, default=0.0)
    num_subcarriers: int | None = field(init=False, default=None)
    precision: str = field(init=False, default="single")
    train_drops: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE:
            raise ValueError(f"channel: field 'normalize' = {self.normalize!r}; expected one of {NORMALIZE}")
        if self.carrier_frequency is not None:
            check_range("channel", "carrier_frequency", self.carrier_frequency)
        if self.train_path is not None and not isinstance(self.train_path, str):
            raise ValueError(f"channel: field 'train_path' = {self.train_path!r}; expected a path string")
        info = _inspect(self.path, "path", self.array)
        carrier = info.carrier_frequency
        if carrier is not None and self.carrier_frequency is not None \
                and not math.isclose(carrier, self.carrier_frequency, rel_tol=1e-9):
            raise ValueError(f"channel: field 'carrier_frequency' = {self.carrier_frequency:g}; expected "
                             f"{carrier:g} Hz, the carrier file {self.path!r} was made for")
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen: derived fields set once
        if self.carrier_frequency is None:
            set_("carrier_frequency", carrier)
        set_("num_drops", info.num_drops)
        set_("num_time_steps", info.num_time_steps)
        set_("sample_interval", info.sample_interval)
        set_("duration", info.num_time_steps * info.sample_interval)
        set_("num_subcarriers", info.num_subcarriers)
        set_("precision", "double" if info.complex128 else "single")
        if self.train_path is not None:
            tr = _inspect(self.train_path, "train_path", self.array)
            for name in ("num_time_steps", "sample_interval", "num_subcarriers"):
                a, b = getattr(info, name), getattr(tr, name)
                if a != b and not (isinstance(a, float) and math.isclose(a, b, rel_tol=UNIFORM_RTOL)):
                    raise ValueError(f"channel: file {self.train_path!r} ('train_path') has {name} = {b}; expected "
                                     f"{a} as file {self.path!r} ('path'): training and evaluation drops need "
                                     "the same timeline and band")
            set_("train_drops", tr.num_drops)

    def check_counts(self, drops: int, training_drops: int) -> None:
        """Refuse ``drops`` evaluation drops beyond the file, and training + validation drops beyond
        ``train_path`` (one line each; drops are never cycled)."""
        if drops > self.num_drops:
            raise ValueError(f"channel: scenario 'drops' = {drops} but file {self.path!r} holds {self.num_drops} "
                             f"drops; expected drops <= {self.num_drops} (drops are read in order, not cycled)")
        need = training_drops + _valid_drops(training_drops)
        if self.train_path is not None and need > self.train_drops:
            raise ValueError(f"channel: training 'drops' = {training_drops} (+ {_valid_drops(training_drops)} "
                             f"validation drops) but file {self.train_path!r} ('train_path') holds "
                             f"{self.train_drops} drops; expected training drops + max(16, drops // 4) <= "
                             f"{self.train_drops}")

    def describe(self) -> dict[str, Any]:
        """The files' SHA-256, for the records."""
        out = {"path": str(Path(self.path).resolve()), "sha256": _sha256(Path(self.path))}
        if self.train_path is not None:
            out.update(train_path=str(Path(self.train_path).resolve()), train_sha256=_sha256(Path(self.train_path)))
        return out


def resolve_paths(doc: dict, base_dir: str | Path) -> dict:
    """A copy of scenario document ``doc`` whose ``[channel] path`` / ``train_path`` (for ``backend =
    "file"``) are resolved against ``base_dir`` (the scenario file's folder) when relative."""
    chan = doc.get("channel") if isinstance(doc, dict) else None
    if not isinstance(chan, dict) or chan.get("backend") != "file":
        return doc
    chan = dict(chan)
    for key in ("path", "train_path"):
        value = chan.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            chan[key] = str(Path(base_dir) / value)
    return {**doc, "channel": chan}


# --------------------------------------------------------------------------- reading the channels


@dataclass
class _Loaded:
    h: torch.Tensor  # [B, T, (F,) N] complex, normalised as asked
    positions: torch.Tensor  # [B, T, 3] float64 metres
    times: torch.Tensor  # [T] float64 seconds
    los: torch.Tensor  # [B, T] bool
    freqs: torch.Tensor | None  # [F] float64 Hz


def read_channel_file(path: str | Path, array: AntennaArray, normalize: str = "none") -> _Loaded:
    """Read and check a whole channel file (every value; see the module docstring); cached per file version."""
    p = Path(path)
    st = p.stat()
    return _read_cached(str(p.resolve()), st.st_mtime_ns, st.st_size, array, normalize)


@lru_cache(maxsize=2)  # the evaluation file and the training file; a changed file has a new mtime/size
def _read_cached(path: str, mtime_ns: int, size: int, array: AntennaArray, normalize: str) -> _Loaded:  # noqa: ARG001
    _inspect(path, "file", array)  # the header checks again: the file may have changed since the scenario loaded
    r = _Reader(Path(path))
    f = f"channel: file {path!r}"
    h = np.asarray(r.read("h"))
    if h.dtype.kind != "c":
        raise ValueError(f"{f}: field 'h' has dtype {h.dtype}; expected complex (complex64 or complex128)")
    if h.dtype not in (np.complex64, np.complex128):
        h = h.astype(np.complex128)
    b, t = h.shape[:2]
    finite = np.isfinite(h.real) & np.isfinite(h.imag)
    if not finite.all():
        idx = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(f"{f}: field 'h' has {int((~finite).sum())} NaN/Inf entries (first at index {list(idx)}); "
                         "expected finite values")
    power = (np.abs(h.astype(np.complex128)) ** 2).reshape(b, -1).mean(1)  # [B] mean |h|² per drop
    if (power == 0).any():
        raise ValueError(f"{f}: field 'h' of drop {int(np.argmax(power == 0))} is zero everywhere; expected a "
                         "channel with at least one non-zero entry per drop (no path is no channel)")
    ht = torch.from_numpy(np.ascontiguousarray(h))  # [B, T, (F,) N]
    if normalize == "per-drop":
        scale = torch.from_numpy(1 / np.sqrt(power)).view(b, *([1] * (h.ndim - 1)))  # [B, 1, 1, (1)] float64
        ht = (ht.to(torch.complex128) * scale).to(ht.dtype)
    times = torch.from_numpy(np.asarray(r.read("times"), dtype=np.float64).reshape(-1).copy())  # [T]
    if "positions" in r.info:
        pos = np.asarray(r.read("positions"))
        if pos.dtype.kind not in "iuf" or not np.isfinite(pos).all():
            raise ValueError(f"{f}: field 'positions' has non-finite or non-real values; expected metres")
        positions = torch.from_numpy(pos.astype(np.float64).reshape(b, t, 3))
    else:
        positions = torch.zeros(b, t, 3, dtype=torch.float64)
    if "los" in r.info:
        los = np.asarray(r.read("los")).reshape(b, t)
        if los.dtype.kind not in "biu" or not np.isin(los, (0, 1)).all():
            raise ValueError(f"{f}: field 'los' has values {np.unique(los)[:4].tolist()}; expected bool (or 0/1)")
        los_t = torch.from_numpy(los.astype(bool))
    else:
        los_t = torch.zeros(b, t, dtype=torch.bool)
    freqs = None
    if h.ndim == 4:
        freqs = torch.from_numpy(np.asarray(r.read("subcarrier_frequencies"), dtype=np.float64).reshape(-1).copy())
    return _Loaded(ht, positions, times, los_t, freqs)


class FileChannel:
    """The file back-end: drops are read in order (see the module docstring), not drawn from a seed."""

    def __init__(self, config: FileConfig):
        self.config = config
        self.array = config.array
        self.carrier_frequency = config.carrier_frequency

    def generate(self, num_drops: int, seed: int, device: torch.device | str = "cpu") -> ChannelSample:
        raise ValueError("channel: backend 'file' reads its drops in order; use FileChannel.drops(stream, "
                         "first, count) (beamattn.wireless.runner.channel_chunks does)")

    def drops(self, stream: int, first: int, count: int, device: torch.device | str = "cpu") -> ChannelSample:
        """Drops ``first .. first + count - 1`` of ``stream`` (the runner's evaluation, training or validation
        stream) as a :class:`ChannelSample` on ``device``."""
        from ..runner import EVAL_STREAM, TRAIN_STREAM, VALID_STREAM

        cfg = self.config
        if stream == EVAL_STREAM:
            path, available = cfg.path, cfg.num_drops
        elif stream in (TRAIN_STREAM, VALID_STREAM):
            if cfg.train_path is None:
                raise ValueError("channel: field 'train_path' is not set; expected a file of training drops to "
                                 "train on file channels (the evaluation drops of 'path' are never trained on)")
            path, available = cfg.train_path, cfg.train_drops
        else:
            raise ValueError(f"channel: stream {stream}; expected the runner's evaluation, training or validation "
                             "stream")
        if first + count > available:
            raise ValueError(f"channel: drops {first}..{first + count - 1} asked for, but file {path!r} holds "
                             f"{available} drops; expected at most {available} drops (drops are not cycled)")
        data = read_channel_file(path, cfg.array, cfg.normalize)
        idx = torch.arange(first, first + count)  # [count]
        if stream == VALID_STREAM:  # validation drops from the end of the training file: never a training drop
            idx = available - 1 - idx
        sample = ChannelSample(h=data.h[idx], positions=data.positions[idx], times=data.times.clone(),
                               los=data.los[idx], subcarrier_frequencies=None if data.freqs is None else data.freqs)
        return sample.to(device)


def _memory_bytes(cfg: FileConfig) -> tuple[int, str]:
    """Bytes of the whole files held in memory (read once, sliced per chunk) and the fields behind them."""
    f = cfg.num_subcarriers or 1
    cb = 16 if cfg.precision == "double" else 8
    per_drop = cfg.num_time_steps * f * cfg.array.num_ant * cb
    drops = cfg.num_drops + cfg.train_drops
    return (drops * per_drop * 2,  # the file's array and the normalised copy
            f"file drops = {cfg.num_drops} + train_path drops {cfg.train_drops}, T = {cfg.num_time_steps}, "
            f"F = {f}, N = {cfg.array.num_ant}")

