"""``beamattn export --format keras``: write a selector for :mod:`beamattn.keras` (TensorFlow pipelines).

The Keras layer needs the selector's config, its weights, Set B and the codebook
(the values). A checkpoint of ``beamattn train`` holds all four. The codebook comes
from ``--scenario`` when given (and must equal the stored one), else from the
checkpoint; checkpoints written before codebooks were stored get the DFT codebook of
a uniform linear array with ``N`` antennas and ``M/N``-fold oversampling — the
codebook of every shipped scenario. The file format is described in
:mod:`beamattn.keras.selector_file`; arrays are written as float32 (complex64 codebook).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import __version__
from ..keras.selector_file import write_selector_file
from .checkpoint import CheckpointError, load_selector, read_checkpoint_config, stored_codebook
from .selector import AttentionSelector

__all__ = ["export_keras", "export_selector_keras", "checkpoint_codebook"]

# Learned weights: torch state-dict name -> selector-file name (layouts are kept: Conv1d [d, L+1, K], or
# Conv2d [d, L+1, kv, kh] for a UPA grid of beams; the Keras layer transposes to TF's layouts).
_WEIGHTS = {"key_net.0.weight": "key_conv_weight", "key_net.0.bias": "key_conv_bias", "query": "query",
            "beam_bias": "beam_bias"}


def export_selector_keras(selector: AttentionSelector, out: str | Path, *, source: str = "in-memory selector"
                          ) -> Path:
    """Write an in-memory selector (learned or untrained) as a Keras selector file.

    Args:
        selector: the torch selector; its codebook ``[M, N]`` and Set B are written with it.
        out: the ``.safetensors`` file to write (atomically).
        source: what the selector came from (stored as metadata).

    Returns:
        ``out`` as a Path.
    """
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"export: argument '--out' = {str(out)!r}; expected a file name ending in .safetensors")
    weights = {}
    if selector.config.learned:
        state = selector.state_dict()
        if set(state) != set(_WEIGHTS):
            raise ValueError(f"export: the selector has weights {sorted(state)}; expected {sorted(_WEIGHTS)}")
        weights = {name: state[key].detach().cpu().to(torch.float32).numpy() for key, name in _WEIGHTS.items()}
    codebook = selector.beams.detach().cpu().to(torch.complex64).numpy()  # [M, N]
    set_b = selector.measured.nonzero().flatten().tolist()
    return write_selector_file(out, selector.config.to_dict(), codebook, set_b, weights,
                               beamattn_version=__version__, source=source)


def checkpoint_codebook(meta: dict, scenario: str | Path | None, path: Path) -> tuple[torch.Tensor, str]:
    """The codebook ``[M, N]`` of a checkpoint, and a description of where it came from."""
    m, n = meta.get("num_beams"), meta.get("num_ant")
    if not (isinstance(m, int) and isinstance(n, int) and m >= 1 and n >= 1):
        raise CheckpointError(f"checkpoint {path}: metadata num_beams = {m!r}, num_ant = {n!r}; expected integers >= 1")
    if scenario is not None:
        from .runner import make_codebooks
        from .scenario import load_scenario

        beams = make_codebooks(load_scenario(scenario))[0].beams
        if tuple(beams.shape) != (m, n):
            raise CheckpointError(f"checkpoint {path}: made for num_beams = {m}, num_ant = {n}, but scenario "
                                  f"{scenario} has a codebook of {beams.shape[0]} beams x {beams.shape[1]} antennas")
        return beams, f"scenario {scenario}"
    from safetensors.torch import load_file

    stored = stored_codebook(load_file(str(path)), path)
    if stored is not None:
        if tuple(stored.shape) != (m, n):
            raise CheckpointError(f"checkpoint {path}: stored codebook has shape {tuple(stored.shape)}; expected "
                                  f"[num_beams, num_ant] = [{m}, {n}]")
        return stored, "codebook stored in the checkpoint"
    if m % n != 0:
        raise CheckpointError(f"checkpoint {path}: num_beams = {m} is not a multiple of num_ant = {n}, so the "
                              "codebook is not a ULA DFT codebook; pass --scenario with the scenario it was "
                              "trained on")
    from .arrays import ULA
    from .codebooks import dft_codebook

    return dft_codebook(ULA(n), m // n).beams, f"ULA DFT codebook, {n} antennas, {m // n}x oversampled"


def export_keras(checkpoint_path: str | Path, out_path: str | Path, scenario: str | Path | None = None) -> Path:
    """Convert a checkpoint of ``beamattn train`` into a Keras selector file.

    Args:
        checkpoint_path: the ``selector.safetensors`` written by ``beamattn train``.
        out_path: the ``.safetensors`` file to write (atomically).
        scenario: the scenario file whose codebook the selector was trained for (checked against the
            codebook stored in the checkpoint); default: the stored codebook (older checkpoints: a ULA DFT
            codebook with ``N`` antennas and ``M/N``-fold oversampling, as in every shipped scenario).

    Returns:
        ``out_path`` as a Path.

    Raises:
        CheckpointError: a missing or corrupt checkpoint, or one that does not fit the codebook.
    """
    path = Path(checkpoint_path)
    meta = read_checkpoint_config(path)
    beams, codebook_source = checkpoint_codebook(meta, scenario, path)
    set_b = meta.get("set_b")
    if not (isinstance(set_b, list) and set_b and all(isinstance(i, int) and 0 <= i < beams.shape[0] for i in set_b)):
        raise CheckpointError(f"checkpoint {path}: metadata set_b = {str(set_b)[:60]}; expected a non-empty list of "
                              f"beam indices in [0, {beams.shape[0]})")
    measured = torch.zeros(beams.shape[0], dtype=torch.bool)
    measured[set_b] = True
    selector = load_selector(path, beams, measured)
    return export_selector_keras(selector, out_path, source=f"checkpoint {path.name} ({codebook_source})")
