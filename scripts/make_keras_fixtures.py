"""Parity fixtures for ``beamattn.keras``: torch selectors, random inputs and the torch outputs.

Run in the torch environment (``.venv``)::

    .venv/bin/python scripts/make_keras_fixtures.py            # writes tests/keras/fixtures/

For every spec below it writes two files:

- ``NAME.selector.safetensors`` — the selector as ``beamattn export --format keras`` writes it
  (random, seeded, non-zero weights for learned selectors);
- ``NAME.io.safetensors`` — inputs ``rsrp_db [*B, L', M]`` (dB, continuous so there are no ties)
  and ``phase [*B, M]`` (rad) when the selector was called with phases, and the torch outputs
  ``beams_real``/``beams_imag [*B, N]``, ``weights [*B, M]``, ``index [*B]``, ``entropy [*B]``,
  ``active [*B]``.

The specs cover softmax/sparsemax/entmax15 x soft/hard/topk, learned and untrained, with and
without co-phasing, batch shapes with 0-2 dims, more reports than the history uses, NaN in the
unmeasured beams' entries (only Set B entries are read), a top-k larger than Set B, and UPA grids
of beams (2-D keys, square and non-square grids, a kernel clipped to the grid).
``tests/test_keras_export.py`` regenerates them and checks the committed files equal the fresh ones;
``tests/keras/test_keras_selector.py`` (TensorFlow environment) checks the Keras layer against them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from beamattn.core.sparsemax import entmax15, sparsemax  # noqa: E402
from beamattn.wireless.arrays import ULA, UPA  # noqa: E402
from beamattn.wireless.codebooks import dft_codebook  # noqa: E402
from beamattn.wireless.keras_export import export_selector_keras  # noqa: E402
from beamattn.wireless.selector import AttentionSelector, SelectorConfig  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "keras" / "fixtures"
NUM_ANT = 16  # N
HISTORY = 4  # L


@dataclass(frozen=True)
class Spec:
    """One fixture: a selector config, its codebook size and its inputs.

    ``oversampling`` sets ``M = 16 * oversampling``; Set B is every ``M/16``-th beam from
    ``set_b_offset`` (16 beams); ``batch`` the leading dims of the inputs; ``extra_reports``
    reports beyond the history ``L``; ``nan_unmeasured`` puts NaN in the unmeasured beams' entries.
    ``upa = (rows, cols)`` (``rows·cols = 16``) uses a UPA's DFT grid of beams instead, oversampled
    by ``oversampling`` on both axes (``M = 16·oversampling²``), with the selector's ``grid`` set to
    ``(rows·o, cols·o)`` (2-D keys); Set B is then every ``set_b_step``-th beam from ``set_b_offset``.
    """

    name: str
    config: dict
    oversampling: int = 4
    set_b_offset: int = 0
    batch: tuple[int, ...] = (8,)
    with_phase: bool = True
    extra_reports: int = 0
    nan_unmeasured: bool = False
    upa: tuple[int, int] | None = None
    set_b_step: int | None = None


SPECS = (
    Spec("learned-softmax-soft", dict(normalizer="softmax", mode="soft"), extra_reports=2, with_phase=False),
    Spec("learned-softmax-hard", dict(normalizer="softmax", mode="hard", d_model=16, neighbours=2), oversampling=2,
         batch=(2, 3), nan_unmeasured=True),
    Spec("learned-softmax-topk-cophase", dict(normalizer="softmax", mode="topk", topk=4, cophase=True),
         set_b_offset=1),
    Spec("learned-sparsemax-soft-cophase", dict(normalizer="sparsemax", mode="soft", cophase=True, temperature=0.5)),
    Spec("learned-sparsemax-hard-cophase", dict(normalizer="sparsemax", mode="hard", cophase=True, d_model=16),
         oversampling=2, batch=()),
    Spec("learned-sparsemax-topk", dict(normalizer="sparsemax", mode="topk", topk=3, d_model=16), oversampling=2,
         set_b_offset=1, with_phase=False),
    Spec("learned-entmax15-soft", dict(normalizer="entmax15", mode="soft", temperature=2.0), extra_reports=1),
    Spec("learned-entmax15-hard", dict(normalizer="entmax15", mode="hard", neighbours=1), batch=(2, 4)),
    Spec("learned-entmax15-topk-cophase", dict(normalizer="entmax15", mode="topk", topk=5, cophase=True,
                                               d_model=16), oversampling=2),
    Spec("untrained-softmax-soft", dict(normalizer="softmax", mode="soft", temperature=3.0), extra_reports=2),
    Spec("untrained-softmax-hard", dict(normalizer="softmax", mode="hard", temperature=3.0), oversampling=2,
         with_phase=False),
    Spec("untrained-softmax-topk-cophase", dict(normalizer="softmax", mode="topk", topk=4, cophase=True,
                                                temperature=3.0), batch=(2, 4)),
    Spec("untrained-sparsemax-soft-cophase", dict(normalizer="sparsemax", mode="soft", cophase=True,
                                                  temperature=10.0), nan_unmeasured=True),
    Spec("untrained-sparsemax-hard", dict(normalizer="sparsemax", mode="hard", temperature=10.0), oversampling=2,
         set_b_offset=1, batch=()),
    Spec("untrained-sparsemax-topk-beyond-set-b", dict(normalizer="sparsemax", mode="topk", topk=20,
                                                       temperature=10.0), with_phase=False),
    Spec("untrained-entmax15-soft-cophase", dict(normalizer="entmax15", mode="soft", cophase=True, temperature=10.0),
         oversampling=2),
    Spec("untrained-entmax15-hard", dict(normalizer="entmax15", mode="hard", temperature=10.0), set_b_offset=3),
    Spec("untrained-entmax15-topk", dict(normalizer="entmax15", mode="topk", topk=3, temperature=10.0),
         oversampling=2, batch=(3,)),
    # UPA grids of beams (2-D keys); appended last, so the seeds of the fixtures above do not change.
    Spec("learned-sparsemax-soft-upa4x4", dict(normalizer="sparsemax", mode="soft", neighbours=2, d_model=16),
         oversampling=2, upa=(4, 4), set_b_step=2, set_b_offset=1, nan_unmeasured=True),  # grid 8x8, kernel 5x5
    Spec("learned-softmax-topk-cophase-upa2x8", dict(normalizer="softmax", mode="topk", topk=4, cophase=True),
         oversampling=2, upa=(2, 8), set_b_step=4, batch=(2, 3), extra_reports=1),  # grid 4x16, kernel 3x9
)


def build_selector(spec: Spec, seed: int) -> AttentionSelector:
    """The spec's torch selector; learned ones get random, seeded, non-zero weights."""
    learned = spec.name.startswith("learned")
    if spec.upa is None:
        cfg = SelectorConfig(**{"history": HISTORY, **spec.config, "learned": learned})
        beams = dft_codebook(ULA(NUM_ANT), spec.oversampling).beams  # [M, N] complex64
    else:
        rows, cols = spec.upa
        o = spec.oversampling
        grid = (rows * o, cols * o)
        cfg = SelectorConfig(**{"history": HISTORY, **spec.config, "learned": learned, "grid": grid})
        beams = dft_codebook(UPA(rows, cols), (o, o)).beams  # [M, N] complex64, beam m = m_v·M_h + m_h
    m = beams.shape[0]
    measured = torch.zeros(m, dtype=torch.bool)
    measured[spec.set_b_offset::spec.set_b_step or spec.oversampling] = True  # Set B (16 of the M beams for a ULA)
    torch.manual_seed(seed)
    sel = AttentionSelector(cfg, beams, measured)
    if learned:
        with torch.no_grad():  # the conv keeps torch's random init; query and bias get a wider spread
            sel.query.normal_(0.0, 8.0 / cfg.d_model**0.5)
            sel.beam_bias.normal_(0.0, 0.5)
    return sel.eval()


def make_inputs(spec: Spec, sel: AttentionSelector, seed: int) -> dict[str, np.ndarray]:
    """Reports of a user at a drifting angle: ``rsrp_db [*B, L', M]`` (dB) and ``phase [*B, M]`` (rad)."""
    rng = np.random.default_rng(seed)
    m, n = sel.num_beams, sel.num_ant
    reports = sel.config.history + spec.extra_reports
    s = int(np.prod(spec.batch, dtype=int))
    codebook = sel.beams.numpy().astype(np.complex128)  # [M, N]
    theta = rng.uniform(-1.0, 1.0, (s, 1)) + np.cumsum(rng.normal(0.0, 0.02, (s, reports)), -1)  # [S, L'] rad
    h = np.exp(1j * np.pi * np.arange(n) * np.sin(theta)[..., None])  # [S, L', N] steering vectors, |h_n| = 1
    gain = np.abs(h @ codebook.T) ** 2 / n  # [S, L', M] = |hᵀ v|² / N, at most 1
    level = rng.uniform(-90.0, -60.0, (s, 1, 1))  # [S, 1, 1] dB: the best beam's RSRP
    rsrp = level + 10 * np.log10(gain + 1e-3) + rng.normal(0.0, 1.0, (s, reports, m))  # [S, L', M] dB, no ties
    phase = rng.uniform(-np.pi, np.pi, (s, m))  # [S, M] rad
    if spec.nan_unmeasured:
        unmeasured = ~sel.measured.numpy()
        rsrp[..., unmeasured] = np.nan
        phase[..., unmeasured] = np.nan
    out = {"rsrp_db": rsrp.reshape(*spec.batch, reports, m).astype(np.float32)}
    if spec.with_phase:
        out["phase"] = phase.reshape(*spec.batch, m).astype(np.float32)
    return out


def decision_margin(sel: AttentionSelector, rsrp_db: np.ndarray) -> float:
    """The smallest score margin of a discrete choice: best vs second beam, in top-k mode the
    ``topk``-th vs the next, and for sparsemax/entmax every score's distance to the support
    threshold. A guard against near-ties, which could flip between implementations."""
    cfg = sel.config
    r = torch.from_numpy(rsrp_db)[..., -cfg.history:, :]  # [*B, L, M]
    with torch.no_grad():
        if cfg.learned:
            s = sel.keys(r) @ sel.query / cfg.d_model**0.5 / cfg.temperature + sel.beam_bias  # [*B, M]
        else:
            s = (r[..., -1, :] / cfg.temperature).masked_fill(~sel.measured, float("-inf"))
    srt = s.reshape(-1, s.shape[-1]).double().sort(-1, descending=True).values  # [S, M]
    margins = [srt[:, 0] - srt[:, 1]]
    if cfg.mode == "topk":
        if cfg.topk < srt.shape[-1] and torch.isfinite(srt[:, cfg.topk]).all():
            margins.append(srt[:, cfg.topk - 1] - srt[:, cfg.topk])
        srt = srt[:, :cfg.topk]  # the normaliser sees these only
    if cfg.normalizer == "sparsemax":  # p = max(z - tau, 0)
        tau = srt[:, :1] - sparsemax(srt, -1)[:, :1]
        margins.append((srt - tau).abs().amin(-1))
    elif cfg.normalizer == "entmax15":  # p = max(z/2 - tau, 0)²
        tau = srt[:, :1] / 2 - entmax15(srt, -1)[:, :1].sqrt()
        margins.append((srt / 2 - tau).abs().amin(-1))
    return min(m.min().item() for m in margins)


MIN_GAP = 1e-3  # in score units; torch and TF differ by rounding, ~1e-6


def _save_atomic(arrays: dict[str, np.ndarray], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # Contiguous copies: safetensors.numpy writes a strided view's raw buffer (e.g. ``beams.real``).
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_fixture(spec: Spec, out_dir: Path, seed: int) -> tuple[Path, Path]:
    """Write ``NAME.selector.safetensors`` and ``NAME.io.safetensors`` for one spec."""
    sel = build_selector(spec, seed)
    # Inputs without near-ties: the next input seed until every discrete choice is clear.
    input_seed = next(seed + 1000 * t for t in range(50)
                      if decision_margin(sel, make_inputs(spec, sel, seed + 1000 * t)["rsrp_db"]) >= MIN_GAP)
    inputs = make_inputs(spec, sel, input_seed)
    selector_path = export_selector_keras(sel, out_dir / f"{spec.name}.selector.safetensors",
                                          source=f"scripts/make_keras_fixtures.py: {spec.name}")
    with torch.no_grad():
        out = sel(torch.from_numpy(inputs["rsrp_db"]),
                  torch.from_numpy(inputs["phase"]) if "phase" in inputs else None)
    arrays = {**inputs, "beams_real": out.beams.real.numpy(), "beams_imag": out.beams.imag.numpy(),
              "weights": out.weights.numpy(), "index": out.index.numpy(), "entropy": out.entropy.numpy(),
              "active": out.active.numpy()}
    io_path = out_dir / f"{spec.name}.io.safetensors"
    _save_atomic(arrays, io_path, {"fixture": spec.name, "seed": str(seed), "input_seed": str(input_seed),
                                     "spec": json.dumps(spec.config)})
    return selector_path, io_path


def make_fixtures(out_dir: str | Path = DEFAULT_OUT, seed: int = 0) -> list[Path]:
    """Write every spec's fixture files into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for i, spec in enumerate(SPECS):
        paths.extend(make_fixture(spec, out_dir, seed + i))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    paths = make_fixtures(args.out)
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} files ({len(SPECS)} fixtures, {total / 1024:.0f} KiB) to {args.out}")
    from safetensors.numpy import load_file

    for spec in SPECS:
        io = load_file(str(Path(args.out) / f"{spec.name}.io.safetensors"))
        print(f"  {spec.name:40s} M={io['weights'].shape[-1]:3d}, inputs {io['rsrp_db'].shape}, active beams "
              f"{io['active'].min()}-{io['active'].max()}, entropy {io['entropy'].mean():.2f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
