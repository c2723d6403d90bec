"""Checkpoints of the learned baselines: safetensors weights with their config as JSON metadata.

Like the selector's (:mod:`beamattn.wireless.checkpoint`): one ``*.safetensors`` file, weights only
(never pickled code). Its metadata key ``beamattn_learned`` holds the model config
(:class:`~beamattn.wireless.learned.models.LearnedConfig`: kind, architecture, sizes, loss), the
codebook size ``M``, antennas ``N``, the Set B indices, the parameter count, a SHA-256 of the codebook
(float32, for identification) and the training run. The codebook itself is stored beside the weights
(``codebook.real`` / ``codebook.imag``, as the selector's checkpoints do) so that loading refuses
another codebook of the same size, within float32 precision. A selector checkpoint, a checkpoint of
another model kind, Set B or codebook, and a corrupt file are refused with a
:class:`~beamattn.wireless.checkpoint.CheckpointError` that names the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ... import __version__
from ...io import write_file_atomic
from ..checkpoint import CheckpointError, config_from_metadata, read_metadata, stored_codebook
from .models import LearnedConfig, LearnedModel, build_model, count_parameters

__all__ = ["save_learned", "load_learned", "read_learned_config", "codebook_sha256", "CheckpointError"]

_KEY = "beamattn_learned"
_SELECTOR_KEY = "beamattn_config"  # the selector checkpoints' metadata key
_CODEBOOK = ("codebook.real", "codebook.imag")
_CODEBOOK_TOL = 1e-5  # float32 storage of unit-norm beams


def codebook_sha256(beams: torch.Tensor) -> str:
    """SHA-256 of the codebook ``[M, N]`` as contiguous complex64 (identification; loading compares values)."""
    return hashlib.sha256(beams.detach().cpu().to(torch.complex64).contiguous().numpy().tobytes()).hexdigest()


def save_learned(model: LearnedModel, beams: torch.Tensor, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``model`` (trained for codebook ``beams [M, N]``) atomically to ``path`` (``.safetensors``)."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {
        "model": model.config.to_dict(),
        "num_beams": int(beams.shape[0]),
        "num_ant": int(beams.shape[1]),
        "set_b": model.set_b.tolist(),
        "parameters": count_parameters(model),
        "codebook_sha256": codebook_sha256(beams),
        "beamattn": __version__,
        **(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    cb = beams.detach().cpu().to(torch.complex64)  # [M, N]
    state[_CODEBOOK[0]], state[_CODEBOOK[1]] = cb.real.contiguous(), cb.imag.contiguous()
    return write_file_atomic(path, lambda tmp: save_file(state, tmp, metadata={_KEY: json.dumps(meta)}))


def read_learned_config(path: str | Path) -> dict:
    """The metadata of a learned-baseline checkpoint (raises :class:`CheckpointError` naming the file)."""
    path = Path(path)
    meta = read_metadata(path)
    if _KEY not in meta:
        what = ("an attention-selector checkpoint (use policy 'attention')" if _SELECTOR_KEY in meta
                else f"no '{_KEY}' metadata")
        raise CheckpointError(f"checkpoint {path}: {what}; expected a learned-baseline file written by "
                              "`beamattn train --model NAME`")
    return config_from_metadata(path, meta, _KEY, "model")


def load_learned(path: str | Path, beams: torch.Tensor, measured: torch.Tensor, kind: str | None = None
                 ) -> LearnedModel:
    """Build the model stored in ``path`` for codebook ``beams [M, N]`` and Set B ``measured [M]`` (eval mode).

    Refused (:class:`CheckpointError`): a missing or corrupt file, a selector checkpoint, a model of
    another ``kind`` (when given), another codebook size / antenna count / Set B / codebook, weights
    that do not match the model or hold NaN/Inf. Weights are checked on the CPU, then moved to
    ``beams``' device.
    """
    from safetensors.torch import load_file

    meta = read_learned_config(path)
    try:
        config = LearnedConfig(**meta["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: bad model config ({e})") from None
    if kind is not None and config.kind != kind:
        raise CheckpointError(f"checkpoint {path}: holds model {config.kind!r}, expected {kind!r}")
    m, n = beams.shape
    set_b = measured.nonzero().flatten().tolist()
    for key, here in (("num_beams", m), ("num_ant", n), ("set_b", set_b)):
        if meta.get(key) != here:
            shown = meta.get(key)
            if key == "set_b":
                shown, here = f"{len(shown or [])} beams {str(shown)[:40]}", f"{len(here)} beams {str(here)[:40]}"
            raise CheckpointError(f"checkpoint {path}: made for {key} = {shown}, but this scenario has {here}")
    try:
        state = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"checkpoint {path}: unreadable weights ({e})") from None
    stored = stored_codebook(state, path)
    if stored is None:
        raise CheckpointError(f"checkpoint {path}: no stored codebook {_CODEBOOK}")
    err = float((stored.to(torch.complex128) - beams.detach().cpu().to(torch.complex128)).abs().max())
    if not err <= _CODEBOOK_TOL:
        raise CheckpointError(f"checkpoint {path}: made for another codebook of the same size [M={m}, N={n}] "
                              f"(largest beam difference {err:.3g}); expected this scenario's codebook")
    state = {k: v for k, v in state.items() if k not in _CODEBOOK}
    try:
        model = build_model(config, beams.detach().cpu(), measured.detach().cpu())
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: cannot build model {config.kind!r} ({e})") from None
    want = model.state_dict()
    if set(want) != set(state):
        raise CheckpointError(f"checkpoint {path}: weights {sorted(set(want) ^ set(state))} do not match model "
                              f"{config.kind!r}")
    for k, v in want.items():
        if state[k].shape != v.shape or state[k].dtype != v.dtype:
            raise CheckpointError(f"checkpoint {path}: weight {k!r} has shape {tuple(state[k].shape)} "
                                  f"({state[k].dtype}), expected {tuple(v.shape)} ({v.dtype})")
        if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all()):
            raise CheckpointError(f"checkpoint {path}: weight {k!r} has NaN/Inf values")
    model.load_state_dict(state)
    return model.to(beams.device).eval()
