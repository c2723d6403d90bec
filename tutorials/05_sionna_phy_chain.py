# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 5. The selector inside a Sionna PHY chain
#
# `beamattn.linklevel.SelectorBlock` is the attention selector as a Sionna `Block`: it takes L1-RSRP
# reports `[..., L, M]` (dB, oldest first) and returns unit-norm beams `[..., N]`, so it composes with
# Sionna's other blocks. `beamattn.linklevel.LinkChain` is a 5G link built from Sionna blocks (LDPC, QAM,
# OFDM resource grid with pilots, LS / LMMSE / perfect channel estimation, LMMSE equalisation, APP
# demapping, LDPC decoding). Here the selector picks a beam from the reports of a scenario, the beamformed
# channel `h_eff = hᵀ w` carries codewords through the chain, and the block error rate is compared with the
# genie beam and a random beam.
#
# `beamattn linklevel SCENARIO --out DIR` does this for every policy of a scenario, with early stopping and
# Wilson intervals; `scripts/example_sionna_chain.py` writes the chain out block by block.

# %%
import os
from pathlib import Path

import torch

from beamattn.linklevel import LinkChain, LinkConfig, SelectorBlock
from beamattn.wireless.runner import episodes
from beamattn.wireless.scenario import load_scenario
from beamattn.wireless.selector import SelectorConfig

SMALL = os.environ.get("BEAMATTN_TUTORIAL_SMALL") == "1"
ROOT = Path.cwd() if (Path.cwd() / "scenarios").is_dir() else Path.cwd().parent

# %% [markdown]
# ## Reports and channels from a scenario
#
# `episodes` yields a batch of drops with every beam's reports (`ep.history(L)`: `[B, D, L, K]` dB) and the
# channel (`sample.h [B, T, N]`, `y = hᵀ w x + n`).

# %%
scn = load_scenario(ROOT / "scenarios" / "vehicular-60.toml")
drops = 2 if SMALL else 16
start, ep, sample = next(iter(episodes(scn, seed=scn.seed, num_drops=drops)))
M = ep.codebook.num_beams
measured = torch.zeros(M, dtype=torch.bool)  # [M]: Set B, the beams the selector may read
measured[ep.set_b] = True
rsrp, _ = ep.history(scn.selector.history)  # [B, D, L, K] reports, oldest first
rsrp = rsrp[..., :M]  # [B, D, L, M]: the narrow codebook (wide beams follow it when there are any)
print("reports", tuple(rsrp.shape), "Set B", int(measured.sum()), "of", M, "beams")

# %% [markdown]
# ## The selector as a Sionna Block
#
# Untrained here (`learned=False`: attention with the fixed goal "more RSRP is better"); a trained one is
# `SelectorBlock(selector=load_selector(...))` from a `beamattn train` checkpoint.

# %%
select = SelectorBlock(SelectorConfig(learned=False, normalizer="sparsemax", temperature=1.0,
                                      history=scn.selector.history),
                       codebook=ep.codebook.beams, measured=measured)
w_att = select(rsrp)  # [B, D, N] complex, unit norm
print("beams", tuple(w_att.shape), "norms", float(w_att.abs().pow(2).sum(-1).sqrt().mean()))

w_genie = ep.codebook.beams[ep.gain_use.argmax(-1)]  # [B, D, N] best beam over each use interval (an oracle)
g = torch.Generator().manual_seed(0)
w_random = ep.codebook.beams[torch.randint(M, w_att.shape[:2], generator=g)]  # [B, D, N]

# %% [markdown]
# ## Through the link
#
# One codeword per decision, over the channel of the decision's first use sample (`[B, D, N]`), constant
# over the 0.5 ms slot. `no = 1/ρ` is the noise variance at transmit SNR ρ; the same `seed` gives every
# beam the same bits and noise (common random numbers).

# %%
chain = LinkChain(LinkConfig(bits_per_symbol=2, code_rate=0.5, estimator="ls"))
h = sample.h[:, ep.timeline.use_start]  # [B, D, N] (narrowband scenario)
print(f"{h.shape[0] * h.shape[1]} codewords per point, QPSK rate 1/2, LS estimation")
print("| transmit SNR dB | genie beam | attention (untrained) | random beam |")
print("|---:|---:|---:|---:|")
results = {}
for snr_db in ((0.0,) if SMALL else (-10.0, -5.0, 0.0, 5.0)):
    row = []
    for w in (w_genie, w_att, w_random):
        h_eff = torch.einsum("bdn,bdn->bd", h, w.to(h.dtype)).flatten()  # [B·D] = hᵀ w per decision
        errors = chain.errors(h_eff, no=10 ** (-snr_db / 10), seed=1)  # [B·D] bool
        row.append(float(errors.float().mean()))
    results[snr_db] = row
    print(f"| {snr_db:.0f} | {row[0]:.3f} | {row[1]:.3f} | {row[2]:.3f} |")

# %% [markdown]
# The genie beam bounds what any codebook beam can do; the random beam shows what beam selection is worth.
# With few codewords (small settings) each BLER carries a wide interval: `beamattn linklevel` reports
# Wilson intervals and stops each point after enough block errors.

# %%
last = results[max(results)]
assert last[0] <= last[2], "the genie beam should not do worse than a random beam"
