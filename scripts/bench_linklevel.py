#!/usr/bin/env python
"""Link-level benchmark (CPU): codewords/s of the Sionna PHY chain, where the time goes, wrapper overheads.

Sections (every ratio is measured in this process against its reference, the two interleaved
in repeated rounds, A B / B A / ..., with the median of the per-round ratios reported):

1. Codewords/s of :meth:`beamattn.linklevel.LinkChain.errors` (one codeword per 14-symbol OFDM slot,
   72 subcarriers, pilots on symbols 2 and 11, 20 LDPC iterations) for QPSK r=1/2, 16-QAM r=1/2 and
   64-QAM r=3/4, LS estimation and perfect CSI, batches of 100 (and 500 for QPSK with LS). Channels: random,
   seeded, time-varying effective SISO channels ``h_eff [B, 14, F]`` (Ricean K = 6 dB: a line-of-sight
   path plus 8 scattered paths, exponential power-delay profile with 100 ns rms delay spread, Doppler
   up to 300 Hz), at a transmit SNR in each configuration's waterfall region (the BLER is reported).
   Time per batch: median of repeats after a warm-up call (codewords/s from the median; "best" from the
   fastest repeat, the least disturbed by other work on a shared machine).
2. Where the time goes: the chain's own blocks (``chain.source``, ``chain.encoder``, ...) called stage
   by stage on the same data as (1), LS estimation; ms per batch and % of the stage total; median per
   stage over repeats. The sum of the stages is compared with the median ``errors`` time of (1).
3. Wrapper overhead: the same chain written directly with ``sionna.phy`` blocks here
   (:class:`DirectChain`, same configuration, inputs and seed) against ``LinkChain.errors``.
   Target ratio <= 1.10. Both must give the same block errors (checked every round).
   And ``SelectorBlock`` (the attention selector as a Sionna ``Block``) against calling the
   ``AttentionSelector`` directly on a realistic batch (one chunk of the vehicular-60 scenario:
   16 drops x 50 decisions, history 8, 64 beams, 16 antennas, learned sparsemax, soft, with phase);
   target <= 1.10; outputs must agree.

torch's default thread count is used (``--threads N`` to change it). The machine's load average is
recorded at the start and end of each row; a note is printed when it exceeds the CPU count (times are then
inflated and ratios noisy: with 2+ threads every parallel op waits for all of its threads).

Prints markdown tables to stdout, progress to stderr, writes JSON (default results/bench_linklevel.json).
Exit code 0 even when a target is missed, unless ``--strict``.

    python scripts/bench_linklevel.py [--quick] [--out PATH] [--seed N] [--repeats N] [--rounds N]
                                       [--threads N] [--strict]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from beamattn import __version__  # noqa: E402
from beamattn.io import write_json_atomic  # noqa: E402
from beamattn.linklevel.chain import PILOT_SEED, LinkChain, LinkConfig  # noqa: E402

DEFAULT_OUT = Path("results/bench_linklevel.json")

# name -> (bits per symbol, code rate, transmit SNR in dB in the waterfall region of the channels below)
MODULATIONS = {
    "QPSK r=1/2": (2, 0.5, 5.0),
    "16-QAM r=1/2": (4, 0.5, 11.0),
    "64-QAM r=3/4": (6, 0.75, 20.0),
}
STAGES = ("source", "encoder", "mapper", "rg_mapper", "channel", "estimator", "equalizer", "demapper", "decoder")
OVERHEAD_TARGET = 1.10


def log(msg: str) -> None:
    print(f"[bench_linklevel {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def config(quick: bool) -> dict:
    if quick:  # smoke test: tiny sizes, timings indicative only
        return dict(num_subcarriers=24, batches=[8], big_batch=[], repeats=1, stage_repeats=1,
                    overhead_cases=[("QPSK r=1/2", "ls"), ("QPSK r=1/2", "perfect")], overhead_rounds=2,
                    overhead_batch=8, selector_shape=[2, 5], selector_rounds=2, selector_number=2)
    return dict(num_subcarriers=72, batches=[100, 500], big_batch=[("QPSK r=1/2", "ls")], repeats=5, stage_repeats=5,
                overhead_cases=[("QPSK r=1/2", "ls"), ("QPSK r=1/2", "perfect"), ("64-QAM r=3/4", "ls")],
                overhead_rounds=7, overhead_batch=100, selector_shape=[16, 50], selector_rounds=15,
                selector_number=20)


# --------------------------------------------------------------------------- inputs


def random_channels(batch: int, num_symbols: int, num_subcarriers: int, subcarrier_spacing: float,
                    slot_duration: float, seed: int, k_factor_db: float = 6.0, num_paths: int = 8,
                    delay_spread: float = 100e-9, max_doppler: float = 300.0) -> torch.Tensor:
    """Seeded time-varying effective SISO channels ``[batch, num_symbols, num_subcarriers]`` complex64,
    ``E|h|² = 1``: a line-of-sight path (delay 0) plus ``num_paths`` scattered paths with exponential
    delays and powers, random phases and Doppler shifts ``max_doppler cos θ``; Ricean factor ``k_factor_db``."""
    g = torch.Generator().manual_seed(int(seed))
    dt = torch.float64
    t = (torch.arange(num_symbols, dtype=dt) + 0.5) * slot_duration / num_symbols  # [S]
    f = (torch.arange(num_subcarriers, dtype=dt) - (num_subcarriers - 1) / 2) * subcarrier_spacing  # [F]
    tau = -delay_spread * torch.log(torch.rand(batch, num_paths, generator=g, dtype=dt))  # [B, P]
    power = torch.exp(-tau / delay_spread)
    power = power / power.sum(-1, keepdim=True)
    phi = 2 * math.pi * torch.rand(batch, num_paths + 1, generator=g, dtype=dt)
    nu = max_doppler * torch.cos(2 * math.pi * torch.rand(batch, num_paths + 1, generator=g, dtype=dt))
    tau = torch.cat([torch.zeros(batch, 1, dtype=dt), tau], -1)  # path 0: line of sight
    k = 10 ** (k_factor_db / 10)
    amp = torch.cat([torch.full((batch, 1), math.sqrt(k / (k + 1)), dtype=dt),
                     torch.sqrt(power / (k + 1))], -1)  # [B, P+1]
    arg = phi[:, :, None, None] + 2 * math.pi * (nu[:, :, None, None] * t[:, None] - tau[:, :, None, None] * f)
    return (amp[:, :, None, None] * torch.polar(torch.ones_like(arg), arg)).sum(1).to(torch.complex64)


# --------------------------------------------------------------------------- the chain written by hand


class DirectChain:
    """The chain of :class:`LinkChain`, written directly with ``sionna.phy`` blocks (the reference)."""

    def __init__(self, bits_per_symbol: int, code_rate: float, num_subcarriers: int, estimator: str,
                 num_iter: int = 20) -> None:
        from sionna.phy.channel import ApplyOFDMChannel
        from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
        from sionna.phy.mapping import BinarySource, Demapper, Mapper
        from sionna.phy.mimo import StreamManagement
        from sionna.phy.ofdm import LMMSEEqualizer, LSChannelEstimator, ResourceGrid, ResourceGridMapper

        from sionna.phy import config

        # The same pilot sequence as LinkChain's (a Kronecker pattern draws random QPSK pilots).
        config.torch_rng("cpu").manual_seed(PILOT_SEED)
        rg = ResourceGrid(num_ofdm_symbols=14, fft_size=num_subcarriers, subcarrier_spacing=30e3, num_tx=1,
                          num_streams_per_tx=1, pilot_pattern="kronecker", pilot_ofdm_symbol_indices=[2, 11])
        self.rg = rg
        self.n = int(rg.num_data_symbols) * bits_per_symbol
        self.k = int(round(code_rate * self.n))
        self.perfect = estimator == "perfect"
        self.source = BinarySource()
        self.encoder = LDPC5GEncoder(self.k, self.n)
        self.mapper = Mapper("qam", bits_per_symbol)
        self.rg_mapper = ResourceGridMapper(rg)
        self.channel = ApplyOFDMChannel()
        self.estimator = LSChannelEstimator(rg, interpolation_type="lin")
        self.equalizer = LMMSEEqualizer(rg, StreamManagement(np.array([[1]]), 1))
        self.demapper = Demapper("app", "qam", bits_per_symbol)
        self.decoder = LDPC5GDecoder(self.encoder, num_iter=num_iter, hard_out=True)

    @torch.no_grad()
    def errors(self, h_eff: torch.Tensor, no: float, seed: int) -> torch.Tensor:
        """Block errors ``[B]`` for channels ``h_eff [B, 14, F]`` complex64."""
        import sionna.phy

        sionna.phy.config.seed = seed
        b = h_eff.shape[0]
        h = h_eff[:, None, None, None, None]  # [B, rx, rx_ant, tx, tx_ant, S, F]
        bits = self.source([b, 1, 1, self.k])
        y = self.channel(self.rg_mapper(self.mapper(self.encoder(bits))), h, no)
        h_hat, err_var = (h, 0.0) if self.perfect else self.estimator(y, no)
        x_hat, no_eff = self.equalizer(y, h_hat, err_var, no)
        return (self.decoder(self.demapper(x_hat, no_eff)) != bits).any(-1).reshape(b)


# --------------------------------------------------------------------------- timing helpers


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine makes the timings noisy."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _timed(fn, number: int = 1) -> tuple[float, object]:
    t = time.perf_counter()
    for _ in range(number):
        out = fn()
    return (time.perf_counter() - t) / number, out


def _no(snr_db: float) -> float:
    return 10 ** (-snr_db / 10)


def _link_config(mod: str, estimator: str, f: int) -> LinkConfig:
    bps, rate, _ = MODULATIONS[mod]
    return LinkConfig(num_subcarriers=f, bits_per_symbol=bps, code_rate=rate, estimator=estimator)


def _seeded(build, seed: int):
    """Build a chain with Sionna's RNG seeded first, so that ``--seed`` fixes every number of the run
    (the pilots themselves come from ``PILOT_SEED`` in both chains)."""
    import sionna.phy

    sionna.phy.config.seed = seed
    return build()


def _channels(chain: LinkChain, batch: int, seed: int) -> torch.Tensor:
    c = chain.config
    return random_channels(batch, c.num_ofdm_symbols, c.num_subcarriers, c.subcarrier_spacing, c.slot_duration,
                           seed)


# --------------------------------------------------------------------------- 1. codewords/s


def bench_throughput(chain: LinkChain, mod: str, batch: int, repeats: int, seed: int) -> dict:
    snr = MODULATIONS[mod][2]
    no = _no(snr)
    h = _channels(chain, batch, seed)
    if chain.config.estimator == "lmmse":
        chain.set_correlation(h)  # the receiver knows the channel statistics; the filter is made in the warm-up
    load0 = _loadavg()
    chain.errors(h, no, seed=seed)  # warm-up (lazy builds, allocator)
    times, errs = [], 0
    for r in range(repeats):
        t, e = _timed(lambda: chain.errors(h, no, seed=seed + 1 + r))
        times.append(t)
        errs += int(e.sum())
    t = statistics.median(times)
    return dict(modulation=mod, estimator=chain.config.estimator, batch=batch, k=chain.k, n=chain.n, snr_db=snr,
                bler=errs / (batch * repeats), ms_per_batch=1e3 * t, times_s=times, codewords_per_s=batch / t,
                best_codewords_per_s=batch / min(times),
                info_kbit_per_s=batch * chain.k / t / 1e3, loadavg_start=load0, loadavg_end=_loadavg())


# --------------------------------------------------------------------------- 2. stages


def bench_stages(chain: LinkChain, mod: str, batch: int, repeats: int, seed: int) -> dict:
    """Time the chain's own blocks stage by stage (the same calls as ``LinkChain.errors``)."""
    from sionna.phy import config as sn_config

    no = _no(MODULATIONS[mod][2])
    h7 = _channels(chain, batch, seed)[:, None, None, None, None]
    perfect = chain.config.estimator == "perfect"
    if not perfect and chain.config.estimator != "ls":
        raise ValueError(f"bench_stages: estimator {chain.config.estimator!r}; expected 'ls' or 'perfect'")
    ls_estimator = chain.ls_estimator
    load0 = _loadavg()
    samples = {s: [] for s in STAGES}
    with torch.no_grad():
        for r in range(repeats + 1):  # round 0: warm-up
            sn_config.seed = seed + r
            t = {}
            t["source"], bits = _timed(lambda: chain.source([batch, 1, 1, chain.k]))
            t["encoder"], c = _timed(lambda: chain.encoder(bits))
            t["mapper"], s = _timed(lambda: chain.mapper(c))
            t["rg_mapper"], x = _timed(lambda: chain.rg_mapper(s))
            t["channel"], y = _timed(lambda: chain.channel(x, h7, no))
            if perfect:
                t["estimator"], (h_hat, err_var) = 0.0, (h7, torch.zeros(()))
            else:
                t["estimator"], (h_hat, err_var) = _timed(lambda: ls_estimator(y, no))
            t["equalizer"], (x_hat, no_eff) = _timed(lambda: chain.equalizer(y, h_hat, err_var, no))
            t["demapper"], llr = _timed(lambda: chain.demapper(x_hat, no_eff))
            t["decoder"], _ = _timed(lambda: chain.decoder(llr))
            if r:
                for k_, v in t.items():
                    samples[k_].append(v)
    med = {s: statistics.median(v) for s, v in samples.items()}
    total = sum(med.values())
    return dict(modulation=mod, estimator=chain.config.estimator, batch=batch,
                stages={s: dict(ms=1e3 * med[s], pct=100 * med[s] / total, samples_s=samples[s]) for s in STAGES},
                total_ms=1e3 * total, loadavg_start=load0, loadavg_end=_loadavg())


# --------------------------------------------------------------------------- 3. overheads


def _ratio_rows(cand, ref, rounds: int, number: int = 1):
    """Interleaved rounds (cand first on even rounds, ref first on odd): per-round times and outputs."""
    tc, tr, outs = [], [], []
    for r in range(rounds):
        if r % 2 == 0:
            a, oc = _timed(lambda: cand(r), number)
            b, orf = _timed(lambda: ref(r), number)
        else:
            b, orf = _timed(lambda: ref(r), number)
            a, oc = _timed(lambda: cand(r), number)
        tc.append(a)
        tr.append(b)
        outs.append((oc, orf))
    ratios = [a / b for a, b in zip(tc, tr)]
    return tc, tr, ratios, outs


def _finish(row: dict, tc, tr, ratios) -> dict:
    row.update(cand_s=statistics.median(tc), ref_s=statistics.median(tr), ratio=statistics.median(ratios),
               ratio_of_min=min(tc) / min(tr), ratios=ratios, cand_times_s=tc, ref_times_s=tr,
               target=OVERHEAD_TARGET)
    row["overhead_ms"] = 1e3 * (row["cand_s"] - row["ref_s"])
    row["pass"] = bool(row["ratio"] <= OVERHEAD_TARGET and row["outputs_equal"])
    return row


def bench_chain_overhead(mod: str, estimator: str, f: int, batch: int, rounds: int, seed: int) -> dict:
    bps, rate, snr = MODULATIONS[mod]
    no = _no(snr)
    chain = _seeded(lambda: LinkChain(_link_config(mod, estimator, f)), seed)
    direct = _seeded(lambda: DirectChain(bps, rate, f, estimator, num_iter=chain.config.num_iter), seed)
    assert torch.equal(chain.rg.pilot_pattern.pilots, direct.rg.pilot_pattern.pilots)
    assert (direct.k, direct.n) == (chain.k, chain.n), ((direct.k, direct.n), (chain.k, chain.n))
    h = _channels(chain, batch, seed)
    load0 = _loadavg()
    chain.errors(h, no, seed=seed)  # warm-up both
    direct.errors(h, no, seed=seed)
    tc, tr, ratios, outs = _ratio_rows(lambda r: chain.errors(h, no, seed=seed + 1 + r),
                                       lambda r: direct.errors(h, no, seed=seed + 1 + r), rounds)
    equal = all(torch.equal(a, b) for a, b in outs)
    row = dict(case=f"LinkChain.errors vs direct Sionna chain, {mod}, {estimator}, batch {batch}",
               kind="chain", modulation=mod, estimator=estimator, batch=batch, snr_db=snr,
               outputs_equal=equal, block_errors=[int(a.sum()) for a, _ in outs],
               block_errors_direct=[int(b.sum()) for _, b in outs])
    row = _finish(row, tc, tr, ratios)
    row.update(loadavg_start=load0, loadavg_end=_loadavg())
    return row


def bench_selector_overhead(shape: list[int], rounds: int, number: int, seed: int) -> dict:
    from beamattn.linklevel import SelectorBlock
    from beamattn.wireless.arrays import ULA
    from beamattn.wireless.codebooks import dft_codebook
    from beamattn.wireless.selector import AttentionSelector, SelectorConfig

    torch.manual_seed(seed)
    cb = dft_codebook(ULA(16), 4).beams.to(torch.complex64)  # 64 beams, 16 antennas
    measured = torch.zeros(cb.shape[0], dtype=torch.bool)
    measured[::4] = True  # Set B: 16 of 64
    cfg = SelectorConfig(normalizer="sparsemax", mode="soft", history=8, learned=True)
    sel = AttentionSelector(cfg, cb, measured).eval()
    block = SelectorBlock(selector=AttentionSelector(cfg, cb, measured))
    block.selector.load_state_dict(sel.state_dict())
    block.selector.eval()
    g = torch.Generator().manual_seed(seed)
    rsrp = -80 + 10 * torch.randn(*shape, 8, cb.shape[0], generator=g)  # [drops, decisions, L, M] dB
    phase = 2 * math.pi * torch.rand(*shape, cb.shape[0], generator=g)
    load0 = _loadavg()
    with torch.no_grad():
        for _ in range(3):  # warm-up
            sel(rsrp, phase)
            block(rsrp, phase)
        tc, tr, ratios, outs = _ratio_rows(lambda r: block(rsrp, phase), lambda r: sel(rsrp, phase).beams,
                                           rounds, number)
    equal = all(torch.allclose(a, b, rtol=1e-6, atol=1e-6) for a, b in outs)
    row = dict(case=f"SelectorBlock vs AttentionSelector, {shape[0]} x {shape[1]} decisions, N=16, M=64, L=8",
               kind="selector", decisions=math.prod(shape), calls_per_sample=number, outputs_equal=equal)
    row = _finish(row, tc, tr, ratios)
    row["overhead_us"] = 1e6 * (row["cand_s"] - row["ref_s"])
    row.update(loadavg_start=load0, loadavg_end=_loadavg())
    return row


# --------------------------------------------------------------------------- tables


def table_throughput(rows: list[dict]) -> str:
    lines = ["| modulation | CSI | batch | k | SNR dB | BLER | ms / batch | codewords/s | (best) | info kbit/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['modulation']} | {r['estimator']} | {r['batch']} | {r['k']} | {r['snr_db']:g} | "
                     f"{r['bler']:.3f} | {r['ms_per_batch']:,.0f} | {r['codewords_per_s']:.1f} | "
                     f"{r['best_codewords_per_s']:.1f} | {r['info_kbit_per_s']:,.1f} |")
    return "\n".join(lines)


def table_stages(rows: list[dict], thr: dict) -> str:
    head = "| stage | " + " | ".join(f"{r['modulation']} ms | %" for r in rows) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(rows)]
    for s in STAGES:
        lines.append(f"| {s} | " + " | ".join(f"{r['stages'][s]['ms']:,.1f} | {r['stages'][s]['pct']:.1f}"
                                              for r in rows) + " |")
    lines.append("| **sum of stages** | " + " | ".join(f"{r['total_ms']:,.1f} | 100" for r in rows) + " |")
    cells = []
    for r in rows:
        t = thr.get((r["modulation"], r["estimator"], r["batch"]))
        cells.append(f"{t['ms_per_batch']:,.1f} | {100 * r['total_ms'] / t['ms_per_batch']:.0f}" if t else "— | —")
    lines.append("| `LinkChain.errors` (section 1; % = sum of stages / errors) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_overhead(rows: list[dict]) -> str:
    lines = ["| case | candidate | reference | ratio (median of rounds) | target | result |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        fmt = (lambda s: f"{s * 1e3:,.1f} ms") if r["cand_s"] >= 1e-3 else (lambda s: f"{s * 1e6:,.0f} µs")
        if r["cand_s"] >= 1.0:
            fmt = lambda s: f"{s:.3f} s"  # noqa: E731
        res = "PASS" if r["pass"] else "FAIL"
        if not r["outputs_equal"]:
            res += " (outputs differ)"
        lines.append(f"| {r['case']} | {fmt(r['cand_s'])} | {fmt(r['ref_s'])} | {r['ratio']:.3f} | "
                     f"<= {r['target']:.2f} | {res} |")
    return "\n".join(lines)


def environment() -> dict:
    import sionna.phy

    cpu = None
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), None)
    except OSError:
        pass
    return dict(beamattn=__version__, torch=torch.__version__, sionna=getattr(sionna.phy, "__version__", None)
                or _dist_version("sionna-no-rt") or _dist_version("sionna"), numpy=np.__version__,
                python=platform.python_version(), threads=torch.get_num_threads(),
                interop_threads=torch.get_num_interop_threads(), cpu_count=os.cpu_count(), cpu_model=cpu,
                processor=platform.processor(), platform=platform.platform())


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke test; timings indicative only)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=0, help="seed of channels, bits and noise (default 0)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per throughput/stage row")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per overhead row")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    a = p.parse_args(argv)
    if a.threads is not None:
        torch.set_num_threads(a.threads)

    cfg = config(a.quick)
    if a.repeats is not None:
        cfg["repeats"] = cfg["stage_repeats"] = a.repeats
    if a.rounds is not None:
        cfg["overhead_rounds"] = cfg["selector_rounds"] = a.rounds
    f = cfg["num_subcarriers"]
    t_start = time.perf_counter()
    load_start = _loadavg()
    import sionna.phy  # noqa: F401  (~4 s; before any timing)

    env = environment()
    log(f"torch {env['torch']}, sionna {env['sionna']}, {env['threads']} threads, {env['cpu_count']} CPUs, "
        f"{'quick' if a.quick else 'full'} mode, load {load_start}")

    # 1. codewords/s (and the chains reused for the stage breakdown)
    thr_rows, chains = [], {}
    for mod in MODULATIONS:
        for est in ("ls", "lmmse", "perfect"):
            chain = chains[(mod, est)] = _seeded(lambda: LinkChain(_link_config(mod, est, f)), a.seed)
            for batch in cfg["batches"]:
                if batch != cfg["batches"][0] and (mod, est) not in cfg["big_batch"]:
                    continue
                log(f"throughput: {mod}, {est}, batch {batch}")
                row = bench_throughput(chain, mod, batch, cfg["repeats"], a.seed)
                thr_rows.append(row)
                log(f"  {row['codewords_per_s']:.1f} codewords/s, BLER {row['bler']:.3f}, load {row['loadavg_end']}")

    # 2. stages (LS estimation, first batch size)
    stage_rows = []
    b0 = cfg["batches"][0]
    for mod in MODULATIONS:
        log(f"stages: {mod}, ls, batch {b0}")
        stage_rows.append(bench_stages(chains[(mod, "ls")], mod, b0, cfg["stage_repeats"], a.seed))
        top = max(STAGES, key=lambda s: stage_rows[-1]["stages"][s]["ms"])
        log(f"  total {stage_rows[-1]['total_ms']:.0f} ms, largest: {top} "
            f"{stage_rows[-1]['stages'][top]['pct']:.0f}%")
    del chains

    # 3. overheads
    ovh_rows = []
    for mod, est in cfg["overhead_cases"]:
        log(f"overhead: LinkChain vs direct Sionna chain, {mod}, {est}, batch {cfg['overhead_batch']}")
        ovh_rows.append(bench_chain_overhead(mod, est, f, cfg["overhead_batch"], cfg["overhead_rounds"], a.seed))
        log(f"  ratio {ovh_rows[-1]['ratio']:.3f}, outputs equal: {ovh_rows[-1]['outputs_equal']}")
    log(f"overhead: SelectorBlock vs AttentionSelector, {cfg['selector_shape']}")
    ovh_rows.append(bench_selector_overhead(cfg["selector_shape"], cfg["selector_rounds"], cfg["selector_number"],
                                            a.seed))
    log(f"  ratio {ovh_rows[-1]['ratio']:.3f}, outputs equal: {ovh_rows[-1]['outputs_equal']}")

    total = time.perf_counter() - t_start
    load_end = _loadavg()
    thr_index = {(r["modulation"], r["estimator"], r["batch"]): r for r in thr_rows}
    t1, t2, t3 = table_throughput(thr_rows), table_stages(stage_rows, thr_index), table_overhead(ovh_rows)
    print(f"\n### Codewords/s of LinkChain.errors (CPU, {f} subcarriers x 14 symbols, 20 LDPC iterations; "
          f"medians of {cfg['repeats']} repeats)\n")
    print(t1)
    print(f"\n### Where the time goes (LS estimation, batch {b0}; medians of {cfg['stage_repeats']} repeats)\n")
    print(t2)
    print("\n### Wrapper overhead (interleaved rounds, median per-round ratio)\n")
    print(t3)
    loads = [x for r in thr_rows + stage_rows + ovh_rows for x in (r["loadavg_start"], r["loadavg_end"])]
    loads = [x[0] for x in [load_start, load_end, *loads] if x is not None]
    max_load = max(loads) if loads else None
    n_fail = sum(not r["pass"] for r in ovh_rows)
    print(f"\ntorch {env['torch']}, sionna {env['sionna']}, {env['threads']} threads, "
          f"{env['cpu_model'] or env['processor']} ({env['cpu_count']} CPUs); "
          f"{'quick' if a.quick else 'full'} mode; {total:.0f} s; 1-min load average "
          f"{load_start[0] if load_start else '?'} at start, {load_end[0] if load_end else '?'} at end, "
          f"max {max_load}")
    if a.quick:
        print("\nQuick mode: a smoke test at tiny sizes with one repeat; its timings are indicative only.")
    if max_load is not None and max_load > (os.cpu_count() or 1):
        print(f"\nNote: 1-minute load average reached {max_load:.1f} on {os.cpu_count()} CPUs (this run's own "
              f"{env['threads']} threads included): other work was running; times are inflated and ratios noisy. "
              "Rerun on a quiet machine, or with --threads 1.")

    data = dict(benchmark="bench_linklevel",
                created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                mode="quick" if a.quick else "full", seed=a.seed,
                config={**cfg, "modulations": {m: dict(bits_per_symbol=v[0], code_rate=v[1], snr_db=v[2])
                                               for m, v in MODULATIONS.items()},
                        "channel": dict(model="Ricean K=6 dB, LoS + 8 paths, exponential PDP 100 ns rms, "
                                              "Doppler <= 300 Hz", k_factor_db=6.0, num_paths=8,
                                        delay_spread_s=100e-9, max_doppler_hz=300.0)},
                environment=env, total_time_s=total, loadavg_start=load_start, loadavg_end=load_end,
                loadavg_max=max_load, throughput=thr_rows, stages=stage_rows, overhead=ovh_rows,
                n_fail=n_fail, tables_markdown=dict(throughput=t1, stages=t2, overhead=t3))
    write_json_atomic(a.out, data)
    log(f"wrote {a.out}")
    return 1 if (a.strict and n_fail) else 0


if __name__ == "__main__":
    sys.exit(main())
