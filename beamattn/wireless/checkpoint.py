"""Selector checkpoints: safetensors weights (never pickled code) with their config as metadata.

One file, ``*.safetensors``; its metadata holds ``beamattn_config``: the selector
config, the codebook size ``M``, antennas ``N``, the Set B indices and the scenario
it was trained on. Beside the weights it stores the codebook the selector was trained
for (``codebook.real`` / ``codebook.imag`` ``[M, N]`` float32), so that exporters need
not rebuild it and loading can refuse another codebook of the same size. Loading
refuses a checkpoint made for another configuration.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .. import __version__
from ..io import _non_finite, write_file_atomic
from .selector import AttentionSelector, SelectorConfig

__all__ = ["save_selector", "load_selector", "read_checkpoint_config", "checkpoint_selector_config", "check_grid",
           "file_sha256", "stored_codebook", "CheckpointError", "EVAL_FIELDS"]

_KEY = "beamattn_config"
_CODEBOOK = ("codebook.real", "codebook.imag")  # the values [M, N], stored beside the weights
_CODEBOOK_TOL = 1e-5  # float32 storage of unit-norm beams
_ANY_GRID = object()  # load_selector(grid=...) default: take the checkpoint's grid, whatever it is


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here; the message says why."""


def save_selector(selector: AttentionSelector, path: str | Path, extra: dict | None = None) -> Path:
    """Write the selector's weights and config atomically to ``path`` (``.safetensors``)."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {
        "selector": selector.config.to_dict(),
        "num_beams": selector.num_beams,
        "num_ant": selector.num_ant,
        "set_b": selector.measured.nonzero().flatten().tolist(),
        "beamattn": __version__,
        **(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in selector.state_dict().items()}
    beams = selector.beams.detach().cpu().to(torch.complex64)  # [M, N]
    state[_CODEBOOK[0]], state[_CODEBOOK[1]] = beams.real.contiguous(), beams.imag.contiguous()
    try:
        text = json.dumps(meta, allow_nan=False)  # strict JSON (no NaN/Infinity), as every file beamattn writes
    except ValueError:
        where = _non_finite(meta)
        raise CheckpointError(f"checkpoint {path}: metadata value {where[0] if where else '?'} = "
                              f"{where[1] if where else '?'} is not finite; expected finite numbers") from None
    return write_file_atomic(path, lambda tmp: save_file(state, tmp, metadata={_KEY: text}))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (:class:`CheckpointError` naming the file when it is
    missing or not a readable safetensors file)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt headers
        raise CheckpointError(f"checkpoint {path}: not a readable safetensors file ({e})") from None


def read_checkpoint_config(path: str | Path) -> dict:
    """The config stored in a checkpoint (raises :class:`CheckpointError` for missing/corrupt files)."""
    path = Path(path)
    meta = read_metadata(path)
    if _KEY not in meta:
        raise CheckpointError(f"checkpoint {path}: no '{_KEY}' metadata; expected a file written by "
                              "`beamattn train`")
    return config_from_metadata(path, meta, _KEY, "selector")


def config_from_metadata(path: str | Path, meta: dict[str, str], key: str, table: str) -> dict:
    """The JSON object stored under metadata ``key``, which must hold a ``table`` object
    (:class:`CheckpointError` naming the file otherwise)."""
    try:
        config = json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint {path}: corrupt '{key}' metadata ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get(table), dict):
        raise CheckpointError(f"checkpoint {path}: '{key}' metadata must be an object with a '{table}' table, got "
                              f"{str(config)[:60]!r}")
    return config


def load_selector(path: str | Path, beams: torch.Tensor, measured: torch.Tensor,
                  overrides: dict | None = None, grid: tuple[int, int] | None | object = _ANY_GRID
                  ) -> AttentionSelector:
    """Build a selector for codebook ``beams [M, N]`` and Set B ``measured [M]`` from a checkpoint.

    ``overrides`` may change evaluation-only fields (``mode``, ``topk``, ``normalizer`` is NOT one of
    them: the weights were trained for it). A checkpoint for another codebook size, antenna count or
    Set B is refused, and so is one whose codebook ``grid`` differs from ``grid`` when it is given
    (``(M_v, M_h)`` or None for 1-D keys; a checkpoint without the field has grid None).

    The weights are read and checked on the CPU and copied into a selector built on the device of
    ``beams`` (a checkpoint written on one device loads on any other).
    """
    from safetensors.torch import load_file

    meta = read_checkpoint_config(path)
    m, n = beams.shape
    set_b = measured.nonzero().flatten().tolist()
    for key, here in (("num_beams", m), ("num_ant", n), ("set_b", set_b)):
        if meta.get(key) != here:
            shown = meta.get(key)
            if key == "set_b":
                shown, here = f"{len(shown or [])} beams {str(shown)[:40]}", f"{len(here)} beams {str(here)[:40]}"
            raise CheckpointError(f"checkpoint {path}: made for {key} = {shown}, but this scenario has {here}")
    config = checkpoint_selector_config(meta, path, overrides)
    if grid is not _ANY_GRID:
        check_grid(config, grid, path)
    selector = AttentionSelector(config, beams, measured)
    state = load_file(str(path))
    stored = stored_codebook(state, path)
    err = None if stored is None else float((stored.to(torch.complex128) - beams.detach().cpu()).abs().max())
    if err is not None and not err <= _CODEBOOK_TOL:
        raise CheckpointError(f"checkpoint {path}: made for another codebook of the same size [M={m}, N={n}] "
                              f"(largest beam difference {err:.3g}); expected this scenario's codebook")
    state = {k: v for k, v in state.items() if k not in _CODEBOOK}
    missing = set(selector.state_dict()) ^ set(state)
    if missing:
        raise CheckpointError(f"checkpoint {path}: weights {sorted(missing)} do not match the selector")
    for k, v in selector.state_dict().items():
        if state[k].shape != v.shape:
            raise CheckpointError(f"checkpoint {path}: weight {k!r} has shape {tuple(state[k].shape)}, expected "
                                  f"{tuple(v.shape)}")
        if not bool(torch.isfinite(state[k]).all()):
            raise CheckpointError(f"checkpoint {path}: weight {k!r} has NaN/Inf values")
    selector.load_state_dict({k: v.to(beams.device) for k, v in state.items()})  # checked on the CPU, then moved
    from .keras_export import check_selector_forward  # here: keras_export imports this module

    try:  # finite weights can still overflow (huge values): refuse those whose forward pass gives NaN beams
        check_selector_forward(selector)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from None
    return selector.eval()


EVAL_FIELDS = ("mode", "topk")  # selector fields an evaluation may change: the weights do not depend on them


def checkpoint_selector_config(meta: dict, path: str | Path, overrides: dict | None = None) -> SelectorConfig:
    """The selector config that runs from a checkpoint's metadata ``meta`` (:func:`read_checkpoint_config`):
    the stored one, with the evaluation-only fields :data:`EVAL_FIELDS` replaced by ``overrides``."""
    cfg = dict(meta["selector"])
    for key, value in (overrides or {}).items():
        if key not in EVAL_FIELDS:
            raise CheckpointError(f"checkpoint {path}: field {key!r} cannot be changed at evaluation; only "
                                  f"{set(EVAL_FIELDS)}")
        cfg[key] = value
    try:
        return SelectorConfig(**cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: bad selector config ({e})") from None


def check_grid(config: SelectorConfig, grid: tuple[int, int] | None, path: str | Path) -> None:
    """Refuse a checkpoint config whose codebook ``grid`` is not the scenario's ``grid`` (``(M_v, M_h)`` or None)."""
    want = SelectorConfig(grid=grid).grid  # normalised as the config does ((1, M) -> None)
    if config.grid != want:
        def show(g: tuple[int, int] | None) -> str:
            return "none (1-D keys)" if g is None else f"{list(g)} (2-D keys)"

        raise CheckpointError(f"checkpoint {path}: made for selector grid = {show(config.grid)}, but this "
                              f"scenario has grid = {show(want)}; retrain, or set [selector] grid to match")


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), the identity of a checkpoint in the records of a run."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stored_codebook(state: dict, path: str | Path) -> torch.Tensor | None:
    """The codebook ``[M, N]`` complex64 stored in a checkpoint's tensors ``state``; None for checkpoints
    written before codebooks were stored."""
    if not any(k in state for k in _CODEBOOK):
        return None
    if not all(k in state for k in _CODEBOOK) or state[_CODEBOOK[0]].shape != state[_CODEBOOK[1]].shape \
            or state[_CODEBOOK[0]].dim() != 2:
        raise CheckpointError(f"checkpoint {path}: corrupt codebook tensors; expected {_CODEBOOK} of one shape [M, N]")
    return torch.complex(state[_CODEBOOK[0]].float(), state[_CODEBOOK[1]].float())  # [M, N]
