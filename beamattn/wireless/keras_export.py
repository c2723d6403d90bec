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

import numpy as np
import torch

from .. import __version__
from ..keras.selector_file import weight_shapes, write_selector_file
from .checkpoint import CheckpointError, load_selector, read_checkpoint_config, stored_codebook
from .selector import AttentionSelector

__all__ = ["export_keras", "export_selector_keras", "checkpoint_codebook", "check_selector_forward",
           "representative_reports", "keras_weight_names", "REPORT_RANGE_DB"]

# Reports a selector can be fed: 10 log10 of a noisy RSRP, floored at 1e-12 (-120 dB) by the measurement, up to
# the noise-only report at the lowest measurement SNR (-100 dB: ~+100 dB, +13 dB for the exponential tail) plus
# the array gain. A selector whose weights overflow on some of these gives NaN beams in a pipeline.
REPORT_RANGE_DB = (-130.0, 130.0)
_NORM_TOL = 1e-3  # beams are unit norm to float32 precision

# Learned weights: torch state-dict name -> selector-file name (layouts are kept: Conv1d [d, L+1, K], or
# Conv2d [d, L+1, kv, kh] for a UPA grid of beams; the Keras layer transposes to TF's layouts).
_WEIGHTS = {"key_net.0.weight": "key_conv_weight", "key_net.0.bias": "key_conv_bias", "query": "query",
            "beam_bias": "beam_bias"}
# The transformer's tensors of one block: torch name after "blocks.{i}." -> file name after "block{i}_" (Linear
# weights [out, in], LayerNorm weights [d], the position tables [H, 2D+1]; layouts kept).
_BLOCK_WEIGHTS = {"norm1.weight": "norm1_weight", "norm1.bias": "norm1_bias",
                  "attn.q_proj.weight": "q_proj_weight", "attn.q_proj.bias": "q_proj_bias",
                  "attn.k_proj.weight": "k_proj_weight", "attn.k_proj.bias": "k_proj_bias",
                  "attn.v_proj.weight": "v_proj_weight", "attn.v_proj.bias": "v_proj_bias",
                  "attn.out_proj.weight": "out_proj_weight", "attn.out_proj.bias": "out_proj_bias",
                  "pos.h_table.weight": "pos_h_table", "pos.v_table.weight": "pos_v_table",
                  "norm2.weight": "norm2_weight", "norm2.bias": "norm2_bias",
                  "mlp.0.weight": "mlp_in_weight", "mlp.0.bias": "mlp_in_bias",
                  "mlp.2.weight": "mlp_out_weight", "mlp.2.bias": "mlp_out_bias"}
_QUERY_WEIGHTS = {"query_norm.weight": "query_norm_weight", "query_norm.bias": "query_norm_bias",
                  "query_net.weight": "query_net_weight", "query_net.bias": "query_net_bias"}


def keras_weight_names(selector: AttentionSelector) -> dict[str, str]:
    """Torch state-dict name -> selector-file name of every learned weight of ``selector`` (empty if untrained).

    The conv selector's four tensors; a transformer adds each block's (``blocks.{i}.attn.q_proj.weight`` ->
    ``block{i}_q_proj_weight``, ...; the vertical position table only for a grid) and the contextual query's.
    """
    cfg = selector.config
    if not cfg.learned:
        return {}
    names = dict(_WEIGHTS)
    if cfg.arch == "transformer":
        for i in range(cfg.layers):
            for key, name in _BLOCK_WEIGHTS.items():
                if key.startswith("pos.v_table") and cfg.grid is None:
                    continue  # a 1-D codebook has no vertical axis
                names[f"blocks.{i}.{key}"] = f"block{i}_{name}"
        if cfg.query == "context":
            names.update(_QUERY_WEIGHTS)
    return names


def representative_reports(selector: AttentionSelector, count: int = 32, seed: int = 0
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs that span what a selector can be fed: reports ``rsrp_db [S, L, M]`` over :data:`REPORT_RANGE_DB`
    and phases ``[S, M]`` uniform in ``[-pi, pi)``, on the selector's device and in its precision.

    ``S = count + 6``: the flat extremes (all beams at the low end, at 0 dB, at the high end), one beam far
    above the rest and the reverse, a ramp over the beams, then ``count`` random draws (uniform in dB,
    quantised to 1 dB like L1-RSRP), from a fixed seed: the same inputs for the same selector.
    """
    lo, hi = REPORT_RANGE_DB
    m, length = selector.num_beams, selector.config.history
    g = torch.Generator().manual_seed(seed)
    peak = torch.full((m,), lo, dtype=torch.float64)
    peak[m // 2] = hi
    structured = torch.stack([torch.full((m,), lo, dtype=torch.float64), torch.zeros(m, dtype=torch.float64),
                              torch.full((m,), hi, dtype=torch.float64), peak, lo + hi - peak,
                              torch.linspace(lo, hi, m, dtype=torch.float64)])  # [6, M]
    structured = structured[:, None, :].expand(-1, length, -1)  # [6, L, M]: the same report at every instant
    random = torch.round(lo + (hi - lo) * torch.rand(count, length, m, generator=g, dtype=torch.float64))  # [c, L, M]
    rsrp = torch.cat([structured, random])  # [S, L, M]
    phase = (torch.rand(rsrp.shape[0], m, generator=g, dtype=torch.float64) * 2 - 1) * torch.pi  # [S, M]
    real, dev = selector.beams.real.dtype, selector.beams.device
    return rsrp.to(device=dev, dtype=real), phase.to(device=dev, dtype=real)


@torch.no_grad()
def check_selector_forward(selector: AttentionSelector) -> None:
    """Refuse a selector whose weights are not finite or whose forward pass overflows.

    The forward pass runs on :func:`representative_reports` (the whole range of reports a measurement can
    give); every beam must be finite and of unit norm. When one is not, the error names the weight tensor
    that causes it: the tensors whose zeroing alone makes every beam finite (else the largest one).
    Raises one ``ValueError`` line; callers add where the selector came from.
    """
    state = dict(selector.named_parameters())
    for name, t in state.items():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"weight {name!r} has {int((~torch.isfinite(t)).sum())} NaN/Inf values; expected "
                             "finite weights")
    rsrp, phase = representative_reports(selector)
    # Phases of the L reports ending at the latest phases, with per-beam slopes: the phase history of phase_predict
    # and the reports' phases of csi_keys.
    slope = torch.linspace(-3.0, 3.0, phase.shape[-1], dtype=phase.dtype, device=phase.device)  # [M] rad/period
    steps = torch.arange(1 - selector.config.history, 1, dtype=phase.dtype, device=phase.device)  # [L]
    ramp = phase[:, None, :] + steps[:, None] * slope  # [S, L, M]
    history = ramp if selector.config.phase_predict else None
    report = ramp if selector.config.csi_keys and selector.config.learned else None

    def bad_outputs() -> int:
        try:
            beams = selector(rsrp, phase, phase_history=history, report_phase=report).beams  # [S, N]
        except (ValueError, RuntimeError):  # NaN scores: the core refuses them (or entmax's gather fails)
            return rsrp.shape[0]
        norm = torch.linalg.vector_norm(beams, dim=-1)  # [S]
        ok = torch.isfinite(torch.view_as_real(beams)).all(-1).all(-1) & ((norm - 1).abs() <= _NORM_TOL)
        return int((~ok).sum())

    was_training = selector.training
    selector.eval()
    try:
        bad = bad_outputs()
        if bad == 0:
            return
        culprits = []
        for name, t in state.items():  # which tensor, zeroed alone, gives finite unit-norm beams?
            kept = t.detach().clone()
            t.data.zero_()
            try:
                if bad_outputs() == 0:
                    culprits.append(name)
            finally:
                t.data.copy_(kept)
    finally:
        selector.train(was_training)
    if not culprits and state:
        culprits = [max(state, key=lambda k: float(state[k].detach().abs().max()))]
    shown = ", ".join(f"{k!r} (largest |value| {float(state[k].detach().abs().max()):.3g})" for k in culprits)
    lo, hi = REPORT_RANGE_DB
    raise ValueError(f"the selector's forward pass overflows: {bad} of {rsrp.shape[0]} representative inputs "
                     f"(reports in [{lo:g}, {hi:g}] dB) give non-finite or non-unit-norm beams"
                     + (f", caused by weight {shown}" if shown else "")
                     + "; expected weights whose forward pass stays finite (retrain, or check the file)")


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
        names = keras_weight_names(selector)
        if set(state) != set(names):
            raise ValueError(f"export: the selector has weights {sorted(state)}; expected {sorted(names)}")
        weights = {name: state[key].detach().cpu().to(torch.float32).numpy() for key, name in names.items()}
        shapes = weight_shapes(selector.config.to_dict(), selector.num_beams)
        for key, name in names.items():  # the file's layouts are the torch ones: a mismatch is a changed module
            if weights[name].shape != shapes.get(name):
                raise ValueError(f"export: weight {key!r} has shape {tuple(weights[name].shape)}; the Keras file "
                                 f"expects {shapes.get(name)} for {name!r}")
        for key, name in names.items():  # float32, as the Keras layer computes: 1e39 would become inf
            if not np.isfinite(weights[name]).all():
                raise ValueError(f"export: weight {key!r} is not finite in float32 (largest |value| "
                                 f"{float(state[key].detach().abs().max()):.3g}); expected weights a float32 Keras "
                                 "layer can hold")
    try:
        check_selector_forward(selector)
    except ValueError as e:
        raise ValueError(f"export: {source}: {e}") from None
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
