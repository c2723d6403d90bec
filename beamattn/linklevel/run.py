"""``beamattn linklevel``: BLER and throughput of beam-selection policies through a Sionna PHY link.

What is simulated (see :mod:`beamattn.linklevel.chain` for the chain):

- Channels, measurements and decisions come from :func:`beamattn.wireless.runner.episodes`, as in
  ``beamattn run`` (same seed streams): every policy sees the same channels and the same measurement
  noise, and decides from measurements taken before its use interval.
- Slots: decision ``d``'s beam ``w`` is used over channel samples ``[use_start[d], use_start[d] + P)``.
  Each of those ``P`` samples starts one slot (14 OFDM symbols, ``slot_duration`` seconds); OFDM
  symbol ``s`` sees the channel linearly interpolated in time at ``t + (s + 1/2) slot_duration / 14``
  between the samples ``t`` and ``t + 1`` (the last sample of a drop is held). Narrowband channels use
  the same ``h`` on all subcarriers; wideband back-ends' subcarriers are linearly interpolated (by
  index, over the back-end's band) onto the slot's subcarriers. ``h_eff = Σ_n h_n w_n`` (no conjugate).
- ``mrt`` is, as in ``beamattn run``, maximum-ratio transmission with perfect instantaneous CSI: at every
  channel sample and subcarrier ``w = h* / ||h||``, so ``h_eff = ||h||`` (the single-stream bound), not
  one fixed beam per decision.
- x axis: transmit SNR ρ (dB) of the data link, ``no = 1/ρ``; the SNR per resource element is
  ``ρ |h_eff|²`` (so ``ρ`` = the scenario's ``snr_db`` is the operating point of ``beamattn run``).
- Per SNR point the slots are visited in one seeded random order, the same for all policies, in batches
  of ``batch`` slots whose bits and noise are seeded by (seed, point, batch): common random numbers.
  After each batch, a point stops once ``target_block_errors`` block errors are counted or ``max_blocks``
  slots were sent (or all slots were used): counts may overshoot the target by up to one batch.
- Throughput = (1 - BLER) k information bits per slot (also in Mbit/s).
- ``estimator = "lmmse"``: each policy's receiver knows the second-order statistics of the effective
  channel its beams produce, ``R = E[vec(h) vec(h)ᴴ]`` over the slot, estimated from up to
  ``correlation_slots`` of that policy's slots (:func:`beamattn.linklevel.estimation.slot_correlation`).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..io import save_figure_atomic, write_json_atomic
from ..outdir import StagedDir, check_out
from ..plugins import loaded_plugins
from ..seeds import check_seed
from .chain import LinkChain, LinkConfig, check_snr_db

__all__ = ["default_snr_list", "parse_snr_list", "run_linklevel", "slot_channels", "wilson_interval"]


def parse_snr_list(text: str | None) -> list[float] | None:
    """``"-5,0,5"`` -> ``[-5.0, 0.0, 5.0]`` (None stays None); a ValueError names the bad value."""
    if text is None:
        return None
    expected = "expected a comma-separated list of finite transmit SNRs in dB, e.g. -5,0,5"
    items = text.split(",")
    values = []
    for i, t in enumerate(items, 1):
        if not t.strip():  # "0,,5" or "0,5,": a missing value is a typo, not a shorter list
            raise ValueError(f"'--snr-db' = {text!r}: item {i} of {len(items)} is empty; {expected}")
        try:
            v = float(t)
        except ValueError:
            raise ValueError(f"'--snr-db' = {text!r}: item {i} = {t.strip()!r} is not a number; {expected}") from None
        if not math.isfinite(v):
            raise ValueError(f"'--snr-db' = {text!r}: item {i} = {t.strip()!r} is not finite; {expected}")
        values.append(v)
    return values


def default_snr_list(scn) -> list[float]:
    """Transmit SNRs (dB) of a link-level run without ``--snr-db``: the scenario's ``snr_db`` -10, -5, 0, +5."""
    return [scn.snr_db + d for d in (-10.0, -5.0, 0.0, 5.0)]


def _interp_freq(h: torch.Tensor, f: int) -> torch.Tensor:
    """``[..., Fc]`` -> ``[..., f]`` by linear interpolation over the subcarrier index."""
    fc = h.shape[-1]
    if fc == f:
        return h
    if fc == 1:
        return h.expand(*h.shape[:-1], f)
    pos = torch.linspace(0, fc - 1, f, dtype=torch.float64)
    lo = pos.floor().long().clamp(max=fc - 2)
    a = (pos - lo).to(device=h.device, dtype=h.real.dtype)
    lo = lo.to(h.device)
    return h[..., lo] * (1 - a) + h[..., lo + 1] * a


def slot_channels(g: torch.Tensor, slots: torch.Tensor, dt: float, cfg: LinkConfig) -> torch.Tensor:
    """Per-slot effective channels ``[S, 14, F]``.

    Args:
        g: effective channel per channel sample ``[B, D, P + 1, Fc]`` (sample ``P`` = the one after the use interval).
        slots: ``[S, 3]`` long (drop, decision, sample offset ``j < P``).
    """
    b, d, j = slots.to(g.device).unbind(-1)
    g0, g1 = g[b, d, j], g[b, d, j + 1]  # [S, Fc]
    sym_t = (torch.arange(cfg.num_ofdm_symbols, dtype=torch.float64) + 0.5) * cfg.slot_duration / cfg.num_ofdm_symbols
    a = (sym_t / dt).clamp(max=1.0).to(device=g.device, dtype=g.real.dtype)[None, :, None]  # [1, 14, 1]
    h = g0[:, None] * (1 - a) + g1[:, None] * a  # [S, 14, Fc]
    return _interp_freq(h, cfg.num_subcarriers)


def _effective(sample, ep, beams: torch.Tensor | None) -> torch.Tensor:
    """``g [B, D, P + 1, Fc]``: ``hᵀ w`` over each decision's use interval and the next sample;
    ``beams=None``: per-instant, per-subcarrier MRT, ``||h||``."""
    h = sample.h if sample.wideband else sample.h[:, :, None, :]  # [B, T, Fc, N]
    t_max = h.shape[1] - 1
    tl = ep.timeline
    idx = (tl.use_start[:, None] + torch.arange(tl.use_len + 1)[None]).clamp(max=t_max)  # [D, P+1], host-side
    hu = h[:, idx.to(h.device)]  # [B, D, P+1, Fc, N]
    if beams is None:
        return torch.linalg.vector_norm(hu, dim=-1).to(torch.complex64)  # [B, D, P+1, Fc]
    return torch.einsum("bdpfn,bdn->bdpf", hu, beams.to(hu.dtype)).to(torch.complex64)


def _mix(*xs: int) -> int:
    s = 0x9E3779B1
    for x in xs:
        s = (s * 1_000_003 + int(x) + 0x7F4A7C15) % (2**61 - 1)
    return s % (2**31 - 1)


def run_linklevel(scn, out_dir: str | Path | None, policies: list[str] | None = None,
                  snr_db_list: list[float] | None = None, checkpoint: str | None = None, max_blocks: int = 2000,
                  target_block_errors: int = 100, seed: int | None = None, config: LinkConfig | None = None,
                  batch: int = 100, progress: bool = True, figures: bool = True, correlation_slots: int = 2000,
                  device: str = "cpu", force: bool = False) -> dict:
    """Simulate every policy at every transmit SNR; write ``bler.json`` and ``bler.png``; return the result.

    ``out_dir`` is checked before anything is computed; an existing results folder is replaced, as a
    whole, only with ``force``.
    """
    from ..wireless.policies import MRT
    from ..wireless.policies.checks import check_decision
    from ..wireless.runner import describe_policies, episodes, make_policies

    if out_dir is not None:
        check_out(out_dir, kind="dir", force=force, inputs=[checkpoint])
    seed = scn.seed if seed is None else seed
    check_seed(seed)
    names = list(policies or scn.policies)
    snrs = [float(s) for s in (snr_db_list if snr_db_list is not None else default_snr_list(scn))]
    if not snrs or not all(math.isfinite(s) for s in snrs):
        raise ValueError(f"linklevel: '--snr-db' = {snr_db_list!r}; expected a list of finite SNRs in dB")
    for snr in snrs:  # before any drop is computed: outside [-100, 100] dB the float32 link overflows
        check_snr_db(snr, "'--snr-db'" if snr_db_list is not None else "default SNR point (scenario snr_db + "
                     "-10, -5, 0, 5 dB)")
    if max_blocks < 1 or target_block_errors < 1 or batch < 1 or correlation_slots < 1:
        raise ValueError("linklevel: max_blocks, target_block_errors, batch and correlation_slots must be >= 1")
    pols = make_policies(scn, names, checkpoint)
    if checkpoint is not None and "attention" not in pols:
        raise ValueError("linklevel: '--checkpoint' was given but policy 'attention' is not evaluated")
    cfg = config or LinkConfig()
    t_start = time.time()

    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    # 1. Decisions and effective channels per channel sample (common random numbers across policies).
    g = {n: [] for n in names}
    dt = None
    for start, ep, sample in episodes(scn, seed, scn.drops, device=device):
        dt = float(sample.times[1] - sample.times[0]) if sample.times.numel() > 1 else ep.dt
        for name, pol in pols.items():
            if isinstance(pol, MRT):  # per-instant, per-subcarrier MRT: the beam is computed from h here
                g[name].append(_effective(sample, ep, None))
                continue
            dec = pol.decide(ep)
            check_decision(name, ep, dec)  # unit-norm, finite beams of the right shape: one line naming it if not
            g[name].append(_effective(sample, ep, dec.beams))
        say(f"linklevel {scn.name}: decisions for drops {start}..{start + ep.gain_use.shape[0] - 1}")
    g = {n: torch.cat(v) for n, v in g.items()}
    nb, nd, p1, _ = next(iter(g.values())).shape
    slots = torch.stack(torch.meshgrid(torch.arange(nb), torch.arange(nd), torch.arange(p1 - 1), indexing="ij"),
                        -1).reshape(-1, 3)
    order = torch.randperm(slots.shape[0], generator=torch.Generator().manual_seed(_mix(seed, 7)))
    slots = slots[order]
    n_slots = slots.shape[0]

    # 2. The link.
    chain = LinkChain(cfg, device=str(device))
    result = {n: {"snr_db": [], "bler": [], "blocks": [], "errors": [], "throughput_bits": [],
                  "throughput_mbps": [], "bler_ci95": []} for n in names}
    for name in names:
        if cfg.estimator == "lmmse":
            chain.set_correlation(slot_channels(g[name], slots[:correlation_slots], dt, cfg))
        for i, snr in enumerate(snrs):
            no = 10 ** (-snr / 10)
            blocks = errors = 0
            bi = 0
            t0 = time.time()
            while errors < target_block_errors and blocks < min(max_blocks, n_slots):
                m = min(batch, max_blocks - blocks, n_slots - blocks)
                h = slot_channels(g[name], slots[blocks:blocks + m], dt, cfg)
                e = chain.errors(h, no, seed=_mix(seed, i, bi))
                errors += int(e.sum())
                blocks += m
                bi += 1
            bler = errors / blocks
            r = result[name]
            r["snr_db"].append(snr)
            r["bler"].append(bler)
            r["blocks"].append(blocks)
            r["errors"].append(errors)
            r["throughput_bits"].append((1 - bler) * chain.k)
            r["throughput_mbps"].append((1 - bler) * chain.k / cfg.slot_duration / 1e6)
            r["bler_ci95"].append(list(wilson_interval(errors, blocks)))
            say(f"linklevel {name} @ {snr:g} dB: BLER {bler:.4f} ({errors}/{blocks}) [{time.time() - t0:.1f} s]")

    elapsed = time.time() - t_start
    out = {"scenario": scn.name, "seed": seed, "policies": names, "checkpoint": checkpoint,
           "policies_config": describe_policies(scn, pols),  # what ran: a checkpoint's selector config
           "x_axis": "transmit SNR rho (dB): noise variance 1/rho, SNR per RE rho |h_eff|^2",
           "link": {**cfg.to_dict(), "k": chain.k, "n": chain.n, "data_res": chain.num_data_symbols,
                    "slot_duration_s": cfg.slot_duration},
           "slot_mapping": "each channel sample of a decision's use interval starts one slot; OFDM symbols "
                           "interpolate linearly in time to the next sample",
           "slots_available": n_slots, "max_blocks": max_blocks, "target_block_errors": target_block_errors,
           "elapsed_s": elapsed, "results": result,
           "plugins": loaded_plugins()}  # the user's policy modules (beamattn.plugins), with their SHA-256
    print(_table(out, chain.k))
    if out_dir is not None:
        with StagedDir(out_dir, force=force, command="linklevel") as stage:  # replaces out_dir when complete
            write_json_atomic(stage / "bler.json", out)
            if figures:
                _plot(out, stage / "bler.png")
    return out


def _table(out: dict, k: int) -> str:
    res = out["results"]
    snrs = next(iter(res.values()))["snr_db"]
    lines = [f"\nthroughput (information bits per slot, k = {k}; (1 - BLER) k) vs transmit SNR",
             "| policy | " + " | ".join(f"{s:g} dB" for s in snrs) + " |",
             "|---|" + "---:|" * len(snrs)]
    for name, r in res.items():
        lines.append(f"| {name} | " + " | ".join(f"{t:.0f}" for t in r["throughput_bits"]) + " |")
    return "\n".join(lines)


def wilson_interval(errors: int, blocks: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval ``(low, high)`` of a BLER measured as ``errors`` of ``blocks``.

    Valid at 0 errors too. The interval always contains the estimate ``errors / blocks``: at the ends
    the Wilson bounds are exactly 0 (no error) and 1 (every block in error), which the floating-point
    formula misses by an ulp (``wilson_interval(100, 100)`` gave a high end of 0.99999999999999989).
    """
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"wilson_interval: blocks = {blocks!r}; expected an integer >= 1")
    if isinstance(errors, bool) or not isinstance(errors, int) or not 0 <= errors <= blocks:
        raise ValueError(f"wilson_interval: errors = {errors!r}; expected an integer in [0, blocks = {blocks}]")
    p = errors / blocks
    den = 1 + z * z / blocks
    mid = (p + z * z / (2 * blocks)) / den
    half = z * math.sqrt(p * (1 - p) / blocks + z * z / (4 * blocks * blocks)) / den
    low = 0.0 if errors == 0 else min(p, max(0.0, mid - half))
    high = 1.0 if errors == blocks else max(p, min(1.0, mid + half))
    return low, high


def _plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    floor = 1.0
    for name, r in out["results"].items():
        x, b = np.array(r["snr_db"]), np.array(r["bler"], dtype=float)
        lo, hi = np.array(r["bler_ci95"]).T  # [points] each
        floor = min(floor, float(lo[lo > 0].min()) if (lo > 0).any() else floor, float(hi.min()))
        line, = ax.semilogy(x, np.where(b > 0, b, np.nan), "o-", label=name)
        c = line.get_color()
        ax.fill_between(x, np.maximum(lo, 1e-9), hi, color=c, alpha=0.12, lw=0)
        zero = b == 0  # no block error seen: the BLER is below the interval's upper end, drawn hollow there
        if zero.any():
            ax.semilogy(x[zero], hi[zero], "v", mfc="none", color=c)
    ax.set_ylim(floor / 2, 1.3)
    ax.set_xlabel("transmit SNR ρ (dB)")
    ax.set_ylabel("BLER")
    link = out["link"]
    ax.set_title(f"{out['scenario']}: {2 ** link['bits_per_symbol']}-QAM, rate {link['code_rate']:g}, "
                 f"k = {link['k']}, {link['estimator']} CSI\n(bands: 95% Wilson intervals; ▽: no errors, upper bound)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
