#!/usr/bin/env python
"""The attention selector inside a hand-written Sionna PHY chain.

A 16-antenna base station serves a 60 km/h user (built-in geometric channel,
28 GHz). Every 20 ms it measures Set B (the 16 orthogonal beams of a 4x
oversampled 64-beam DFT codebook) as noisy L1-RSRP reports; the attention
selector, as a Sionna ``Block`` (:class:`beamattn.linklevel.SelectorBlock`),
turns the reports into a beam; the beamformed channel then carries LDPC-coded
QPSK through Sionna's OFDM blocks, written out here by hand:

    LDPC5GEncoder -> Mapper -> ResourceGridMapper -> ApplyOFDMChannel
    -> LSChannelEstimator -> LMMSEEqualizer -> Demapper -> LDPC5GDecoder

It prints the block error rate with the selector's beam and with a random
beam, at a few transmit SNRs.

    python scripts/example_sionna_chain.py [--drops 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beamattn.linklevel import SelectorBlock  # noqa: E402
from beamattn.wireless.arrays import ULA  # noqa: E402
from beamattn.wireless.channels.geometric import GeometricChannel, GeometricConfig  # noqa: E402
from beamattn.wireless.codebooks import dft_codebook  # noqa: E402
from beamattn.wireless.measurement import MeasurementConfig, build_episode  # noqa: E402
from beamattn.wireless.selector import SelectorConfig  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drops", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    import sionna.phy
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
    from sionna.phy.mapping import BinarySource, Demapper, Mapper
    from sionna.phy.mimo import StreamManagement
    from sionna.phy.channel import ApplyOFDMChannel
    from sionna.phy.ofdm import LMMSEEqualizer, LSChannelEstimator, ResourceGrid, ResourceGridMapper
    from sionna.phy.utils import compute_bler

    sionna.phy.config.seed = a.seed

    # --- channels and beam-management reports (beamattn) --------------------------------------
    array = ULA(16)
    channel = GeometricChannel(GeometricConfig(array=array, speed=60 / 3.6, duration=0.3, sample_interval=1e-3,
                                               min_distance=15.0, max_distance=60.0, num_clusters=6,
                                               rays_per_cluster=4, k_factor_db=6.0))
    sample = channel.generate(a.drops, seed=a.seed)
    codebook = dft_codebook(array, 4)  # Set A: 64 beams
    meas = MeasurementConfig(period=0.02, delay=0.005, snr_db=0.0, samples=4, set_b=16, history=4)
    ep = build_episode(sample, codebook, None, meas, snr_db=0.0, seed=a.seed)
    measured = torch.zeros(codebook.num_beams, dtype=torch.bool)
    measured[ep.set_b] = True

    # --- the selector as a Sionna Block ---------------------------------------------------------
    select = SelectorBlock(SelectorConfig(learned=False, normalizer="sparsemax", temperature=1.0),
                           codebook=codebook.beams, measured=measured)
    rsrp, _ = ep.history(4)  # [B, D, L, M] reports, oldest first
    beams = select(rsrp)  # [B, D, N] complex unit-norm
    g = torch.Generator().manual_seed(a.seed)
    random_beams = codebook.beams[torch.randint(codebook.num_beams, beams.shape[:2], generator=g)]

    # The channel of each decision's first use sample, one OFDM slot (0.5 ms) long: [B*D, N].
    h = sample.h[:, ep.timeline.use_start]  # [B, D, N]

    # --- a hand-written Sionna PHY chain ----------------------------------------------------------
    rg = ResourceGrid(num_ofdm_symbols=14, fft_size=72, subcarrier_spacing=30e3, num_tx=1,
                      num_streams_per_tx=1, pilot_pattern="kronecker", pilot_ofdm_symbol_indices=[2, 11])
    n = int(rg.num_data_symbols) * 2  # QPSK
    k = n // 2
    source, encoder = BinarySource(), LDPC5GEncoder(k, n)
    mapper, demapper = Mapper("qam", 2), Demapper("app", "qam", 2)
    rg_mapper, apply_channel = ResourceGridMapper(rg), ApplyOFDMChannel(add_awgn=True)
    estimator = LSChannelEstimator(rg, interpolation_type="lin")
    equalizer = LMMSEEqualizer(rg, StreamManagement(np.array([[1]]), 1))
    decoder = LDPC5GDecoder(encoder, num_iter=20)

    def bler(w: torch.Tensor, snr_db: float) -> float:
        h_eff = torch.einsum("bdn,bdn->bd", h, w.to(h.dtype)).flatten()  # [S] = hᵀ w per decision
        s = h_eff.numel()
        # [S, rx=1, rx_ant=1, tx=1, tx_ant=1, symbols, subcarriers]: flat over the slot
        h_freq = h_eff.view(s, 1, 1, 1, 1, 1, 1).expand(s, 1, 1, 1, 1, 14, 72)
        no = torch.tensor(10 ** (-snr_db / 10))
        bits = source([s, 1, 1, k])
        x = rg_mapper(mapper(encoder(bits)))
        y = apply_channel(x, h_freq, no)
        h_hat, err_var = estimator(y, no)
        x_hat, no_eff = equalizer(y, h_hat, err_var, no)
        bits_hat = decoder(demapper(x_hat, no_eff))
        return float(compute_bler(bits, bits_hat))

    print(f"{a.drops} drops x {beams.shape[1]} decisions, QPSK rate 1/2 (k={k}, n={n}), LS + LMMSE, 60 km/h")
    print("| transmit SNR dB | BLER, attention selector (untrained, Set B) | BLER, random beam |")
    print("|---:|---:|---:|")
    for snr_db in (-10.0, -5.0, 0.0):
        print(f"| {snr_db:.0f} | {bler(beams, snr_db):.3f} | {bler(random_beams, snr_db):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
