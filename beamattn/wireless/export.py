"""``beamattn channels``: export a scenario's channels for other tools (NumPy ``.npz``).

Arrays: ``h`` [drops, T, N] (or [drops, T, F, N]) complex64, ``positions`` [drops, T, 3] m,
``times`` [T] s, ``los`` [drops, T] bool, ``beams`` [M, N] complex64 (the scenario's codebook),
``beam_gains`` [drops, T, M] = |hᵀ v|² (averaged over subcarriers when wideband), and
``subcarrier_frequencies`` [F] Hz when wideband; ``meta`` holds the scenario as JSON.
The same drops as ``beamattn run`` with the same seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..outdir import StagedFile, check_out
from ..seeds import check_seed
from .runner import channel_chunks, make_codebooks
from .scenario import Scenario

__all__ = ["export_channels"]


def export_channels(scn: Scenario, out: str | Path, seed: int | None = None,
                    device: torch.device | str = "cpu", force: bool = False) -> Path:
    """Write ``out`` (.npz) atomically; returns its path.

    Channels and beam gains are computed on ``device`` and copied to the CPU chunk by chunk. ``out`` is
    checked before computing (:func:`beamattn.outdir.check_out`); an existing file is replaced only with
    ``force``.
    """
    out = Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"channels: argument '--out' = {str(out)!r}; expected a file name ending in .npz")
    check_out(out, kind="file", force=force)
    seed = scn.seed if seed is None else seed
    check_seed(seed)  # [0, 2^63): larger seeds would alias smaller ones
    narrow, _ = make_codebooks(scn)
    beams = narrow.beams.to(device)
    parts = {"h": [], "positions": [], "los": [], "beam_gains": []}
    times = freqs = None
    for _, s in channel_chunks(scn, seed, scn.drops, device=device):
        g = torch.matmul(s.h, beams.to(s.h.dtype).T).abs() ** 2  # [B, T, (F,) M]
        parts["h"].append(s.h.cpu().numpy())
        parts["positions"].append(s.positions.cpu().numpy())
        parts["los"].append(s.los.cpu().numpy())
        parts["beam_gains"].append((g.mean(2) if s.h.dim() == 4 else g).cpu().numpy())
        times, freqs = s.times.cpu().numpy(), s.subcarrier_frequencies
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    arrays["times"] = times
    arrays["beams"] = narrow.beams.numpy()
    if freqs is not None:
        arrays["subcarrier_frequencies"] = freqs.cpu().numpy()
    arrays["meta"] = np.array(json.dumps({"scenario": scn.to_dict(), "seed": seed}, allow_nan=False))
    with StagedFile(out, force=force) as tmp:  # same name as out, so np.savez adds no second ".npz"
        np.savez_compressed(tmp, **arrays)
    print(f"wrote {out}: {arrays['h'].shape[0]} drops, h {arrays['h'].shape}")
    return out
