"""A Sionna 2.x PHY link: 5G LDPC, QAM, one OFDM slot with pilots, a beamformed SISO channel.

Chain (per codeword = one slot of 14 OFDM symbols x ``num_subcarriers``)::

    bits -> LDPC5GEncoder(k, n) -> Mapper("qam") -> ResourceGridMapper
         -> y = h_eff x + n  (ApplyOFDMChannel, h_eff per OFDM symbol and subcarrier)
         -> LSChannelEstimator (pilots on symbols ``pilot_symbols``, linear interpolation),
            joint time-frequency LMMSE (:mod:`beamattn.linklevel.estimation`, needs the channel's
            correlation: :meth:`LinkChain.set_correlation`) or perfect CSI
         -> LMMSEEqualizer -> Demapper("app") -> LDPC5GDecoder

Conventions: unit-energy constellation symbols, so with the beamformed channel
``h_eff = hᵀ w`` (no conjugate, unit-norm ``w``, ``E|h_n|² = 1``) and noise
variance ``no = 1/ρ`` the received SNR per resource element is ``ρ |h_eff|²``;
``ρ`` is the transmit SNR of the data link (the scenario's ``snr_db``).

The code fills the slot's data resource elements exactly: ``n = data REs x
bits per symbol`` and ``k = round(code_rate x n)``.

Sionna is imported when a :class:`LinkChain` or :class:`SelectorBlock` is built,
so that ``import beamattn`` stays fast.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from ..wireless.limits import SNR_DB_RANGE
from .estimation import LMMSESlotEstimator, slot_correlation

__all__ = ["ESTIMATORS", "LinkChain", "LinkConfig", "SelectorBlock", "check_snr_db", "check_noise_variance",
           "ebno_to_no", "reference_awgn_errors"]

ESTIMATORS = ("ls", "lmmse", "perfect")
PILOT_SEED = 0  # fixes the pilot sequence of every LinkChain


def _is_int(x: object) -> bool:
    """An integer, not a bool (``True`` is an ``int`` in Python: refused as a count, as everywhere else)."""
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class LinkConfig:
    """Link-level configuration.

    Args:
        num_subcarriers: subcarriers of the slot's resource grid (e.g. 72 = 6 PRBs).
        subcarrier_spacing: Hz (30 kHz: a 0.5 ms slot).
        num_ofdm_symbols: OFDM symbols per slot (14).
        pilot_symbols: OFDM symbols carrying pilots (Kronecker pattern, all subcarriers).
        bits_per_symbol: 2, 4 or 6 (QPSK, 16-QAM, 64-QAM).
        code_rate: LDPC code rate; k = round(code_rate x n).
        estimator: "ls" (least squares on the pilots, linear interpolation), "lmmse" (joint time-frequency
            LMMSE from the channel's correlation) or "perfect" (h_eff known).
        num_iter: LDPC belief-propagation iterations.
    """

    num_subcarriers: int = 72
    subcarrier_spacing: float = 30e3
    num_ofdm_symbols: int = 14
    pilot_symbols: tuple = (2, 11)
    bits_per_symbol: int = 2
    code_rate: float = 0.5
    estimator: str = "ls"
    num_iter: int = 20

    def __post_init__(self) -> None:
        checks = (
            ("num_subcarriers", _is_int(self.num_subcarriers) and self.num_subcarriers >= 12, "an integer >= 12"),
            ("subcarrier_spacing", self.subcarrier_spacing > 0, "Hz > 0"),
            ("num_ofdm_symbols", _is_int(self.num_ofdm_symbols) and self.num_ofdm_symbols >= 2, "an integer >= 2"),
            ("pilot_symbols", all(0 <= int(p) < self.num_ofdm_symbols for p in self.pilot_symbols)
             and len(self.pilot_symbols) >= 1, "OFDM symbol indices inside the slot"),
            ("bits_per_symbol", self.bits_per_symbol in (2, 4, 6), "2, 4 or 6 (QPSK, 16-QAM, 64-QAM)"),
            ("code_rate", 0 < self.code_rate < 1, "a rate in (0, 1)"),
            ("estimator", self.estimator in ESTIMATORS, "'ls', 'lmmse' or 'perfect'"),
            ("num_iter", _is_int(self.num_iter) and self.num_iter >= 1, "an integer >= 1"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"linklevel: field '{name}' = {getattr(self, name)!r}; expected {expected}")

    @property
    def slot_duration(self) -> float:
        """Seconds per slot (14 symbols at ``subcarrier_spacing``: 1 ms x 15 kHz / spacing)."""
        return 1e-3 * 15e3 / self.subcarrier_spacing * self.num_ofdm_symbols / 14

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pilot_symbols"] = list(self.pilot_symbols)
        return d


# The noise variances the chain accepts: those of transmit SNRs in the physically meaningful range
# [-100, 100] dB (beamattn.wireless.limits). Far outside it the float32 chain breaks down instead of
# giving a result: Sionna's LMMSE equalizer returns NaN once `no` is subnormal in float32 (no < 1.2e-38,
# SNR > 379 dB: `--snr-db=400` gave BLER 1.0 where 200 dB gave 0), and the demapper's LLRs saturate at
# ~1.7e38 already at 380 dB.
NO_RANGE = (10 ** (-SNR_DB_RANGE.hi / 10), 10 ** (-SNR_DB_RANGE.lo / 10))


def check_snr_db(snr_db: float, field: str = "'--snr-db'") -> float:
    """Return ``snr_db`` if it is a transmit SNR in [-100, 100] dB, else raise one ValueError line naming ``field``."""
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not SNR_DB_RANGE.contains(snr_db):
        raise ValueError(f"linklevel: {field} value {snr_db!r}; expected a transmit SNR in [{SNR_DB_RANGE.lo:g}, "
                         f"{SNR_DB_RANGE.hi:g}] dB (beyond it the float32 link overflows: NaN LLRs, not a BLER)")
    return float(snr_db)


def check_noise_variance(no: float) -> float:
    """Return ``no`` if it lies in :data:`NO_RANGE` (transmit SNR in [-100, 100] dB), else one ValueError line."""
    lo, hi = NO_RANGE
    try:
        value = float(no)  # a Python, NumPy or 0-d torch number
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(no, bool) or not lo <= value <= hi:
        raise ValueError(f"linklevel: noise variance no = {no!r}; expected a number in [{lo:g}, {hi:g}] (a transmit "
                         f"SNR in [{SNR_DB_RANGE.lo:g}, {SNR_DB_RANGE.hi:g}] dB; beyond it the float32 link "
                         "overflows: NaN LLRs, not a BLER)")
    return value


def ebno_to_no(ebno_db, bits_per_symbol: int, code_rate: float) -> float:
    """Noise variance per complex RE for Eb/N0 (dB), unit-energy symbols, no pilot overhead
    (the same as ``sionna.phy.utils.ebnodb2no`` without a resource grid)."""
    return 1.0 / (10 ** (ebno_db / 10) * bits_per_symbol * code_rate)


class LinkChain:
    """The link: :meth:`errors` sends one codeword per slot through given effective channels."""

    def __init__(self, config: LinkConfig | None = None, precision: str = "single", device: str = "cpu") -> None:
        from sionna.phy import config as sn_config
        from sionna.phy.channel import ApplyOFDMChannel
        from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
        from sionna.phy.mapping import BinarySource, Demapper, Mapper
        from sionna.phy.mimo import StreamManagement
        from sionna.phy.ofdm import LMMSEEqualizer, LSChannelEstimator, ResourceGrid, ResourceGridMapper

        self.config = cfg = config or LinkConfig()
        kw = dict(precision=precision, device=device)
        # The Kronecker pattern draws random QPSK pilots from Sionna's generator: draw them from a fixed
        # seed (and leave the generator's stream as it was), so that the same seed gives the same numbers.
        rng = sn_config.torch_rng(device)
        state = rng.get_state()
        rng.manual_seed(PILOT_SEED)
        try:
            self.rg = ResourceGrid(num_ofdm_symbols=cfg.num_ofdm_symbols, fft_size=cfg.num_subcarriers,
                                   subcarrier_spacing=cfg.subcarrier_spacing, num_tx=1, num_streams_per_tx=1,
                                   pilot_pattern="kronecker", pilot_ofdm_symbol_indices=list(cfg.pilot_symbols), **kw)
        finally:
            rng.set_state(state)
        self.num_data_symbols = int(self.rg.num_data_symbols)
        self.n = self.num_data_symbols * cfg.bits_per_symbol
        self.k = int(round(cfg.code_rate * self.n))
        self.source = BinarySource(**kw)
        self.encoder = LDPC5GEncoder(self.k, self.n, **kw)
        self.mapper = Mapper("qam", cfg.bits_per_symbol, **kw)
        self.rg_mapper = ResourceGridMapper(self.rg, **kw)
        self.channel = ApplyOFDMChannel(**kw)
        self.ls_estimator = LSChannelEstimator(self.rg, interpolation_type="lin", **kw)
        self.lmmse_estimator: LMMSESlotEstimator | None = None  # set_correlation() makes it
        self.equalizer = LMMSEEqualizer(self.rg, StreamManagement(np.array([[1]]), 1), **kw)
        self.demapper = Demapper("app", "qam", cfg.bits_per_symbol, **kw)
        self.decoder = LDPC5GDecoder(self.encoder, num_iter=cfg.num_iter, hard_out=True, **kw)
        self.device = device
        self.cdtype = self.mapper.cdtype

    @property
    def shape(self) -> tuple[int, int]:
        """(OFDM symbols, subcarriers) of one slot."""
        return self.config.num_ofdm_symbols, self.config.num_subcarriers

    def set_correlation(self, h: Tensor) -> None:
        """Give the LMMSE estimator the channel statistics: slot channels ``h [B, S, F]`` (realisations of
        the effective channel the link will see) -> their correlation ``E[vec(h) vec(h)ᴴ]``."""
        s, f = self.shape
        if not torch.is_tensor(h) or h.dim() != 3 or tuple(h.shape[1:]) != (s, f):
            got = tuple(h.shape) if torch.is_tensor(h) else type(h).__name__
            raise ValueError(f"linklevel: set_correlation got slot channels {got}; expected [B, S={s}, F={f}]")
        pp = self.rg.pilot_pattern
        self.lmmse_estimator = LMMSESlotEstimator(pp.mask, pp.pilots, slot_correlation(h.cpu()))

    @torch.no_grad()
    def errors(self, h_eff: Tensor | complex, no: float, batch: int | None = None, seed: int | None = None) -> Tensor:
        """Block errors ``[B]`` bool of one codeword per slot.

        Args:
            h_eff: effective SISO channel ``[B, S, F]`` (per OFDM symbol and subcarrier), ``[B]`` or ``[B, 1, 1]``
                (constant over the slot), or a scalar with ``batch`` (e.g. 1.0: the AWGN channel).
            no: noise variance per complex RE (``1/ρ`` with ρ the transmit SNR), in :data:`NO_RANGE`.
            seed: fixes bits and noise (``sionna.phy.config.seed``), for common random numbers.
        """
        from sionna.phy import config as sn_config

        check_noise_variance(no)
        s, f = self.shape
        if not torch.is_tensor(h_eff):
            if batch is None:
                raise ValueError("linklevel: a scalar h_eff needs 'batch'")
            h_eff = torch.full((batch, 1, 1), complex(h_eff))
        if h_eff.dim() == 1:
            h_eff = h_eff[:, None, None]
        h = h_eff.to(device=self.device, dtype=self.cdtype).expand(h_eff.shape[0], s, f)
        b_count = h.shape[0]
        if seed is not None:
            sn_config.seed = int(seed) % (2**31)
        bits = self.source([b_count, 1, 1, self.k])
        x = self.rg_mapper(self.mapper(self.encoder(bits)))  # [B, 1, 1, S, F]
        h7 = h[:, None, None, None, None]  # [B, rx, rx_ant, tx, tx_ant, S, F]
        y = self.channel(x, h7, no)  # [B, 1, 1, S, F]
        if self.config.estimator == "ls":
            h_hat, err_var = self.ls_estimator(y, no)
        elif self.config.estimator == "lmmse":
            if self.lmmse_estimator is None:
                raise ValueError("linklevel: estimator 'lmmse' needs the channel's statistics; call "
                                 "LinkChain.set_correlation(slot_channels) first")
            h_hat, err_var = self.lmmse_estimator(y, no)
        else:
            h_hat, err_var = h7, torch.zeros((), dtype=h.real.dtype, device=h.device)
        x_hat, no_eff = self.equalizer(y, h_hat, err_var, no)
        b_hat = self.decoder(self.demapper(x_hat, no_eff))
        return (b_hat != bits).any(-1).reshape(b_count)


def reference_awgn_errors(k: int, n: int, bits_per_symbol: int, no: float, batch: int, seed: int | None = None,
                          num_iter: int = 20) -> Tensor:
    """Sionna's own AWGN simulation of the same code and modulation (no OFDM): block errors ``[batch]``."""
    from sionna.phy import config as sn_config
    from sionna.phy.channel import AWGN
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
    from sionna.phy.mapping import BinarySource, Demapper, Mapper

    if seed is not None:
        sn_config.seed = int(seed) % (2**31)
    enc = LDPC5GEncoder(k, n)
    dec = LDPC5GDecoder(enc, num_iter=num_iter, hard_out=True)
    mapper, demapper = Mapper("qam", bits_per_symbol), Demapper("app", "qam", bits_per_symbol)
    with torch.no_grad():
        b = BinarySource()([batch, k])
        y = AWGN()(mapper(enc(b)), no)
        b_hat = dec(demapper(y, no))
    return (b_hat != b).any(-1)


_SELECTOR_BLOCK = None


def _selector_block_class():
    """``SelectorBlock``: made on first use so that Sionna is imported only when it is needed."""
    global _SELECTOR_BLOCK
    if _SELECTOR_BLOCK is not None:
        return _SELECTOR_BLOCK
    from sionna.phy import Block

    class SelectorBlock(Block):
        """The attention beam selector as a Sionna PHY ``Block``.

        Wraps an :class:`~beamattn.wireless.selector.AttentionSelector` (built from ``config``,
        ``codebook [M, N]`` and ``measured [M]`` bool, or given as ``selector``). Inputs are cast to
        the block's precision and device by Sionna (``Block.__call__``); the selector's weights are
        moved to the same precision and device, so the block composes with other Sionna blocks.

        ``call(rsrp_db [..., L, M], phase [..., M] or None, phase_history [..., T, M] or None,
        report_phase [..., L, M] or None) -> beams [..., N]`` complex, unit norm (the block's ``cdtype``); apply
        them as ``h_eff = einsum("...n,...n->...", h, beams)``. ``phase_history`` (rad, oldest first) is what a
        ``phase_predict`` selector co-phases from (it predicts each beam's phase ``config.phase_lead`` spacings on);
        ``report_phase`` (rad, the phases of the reports ``rsrp_db``) is what a ``csi_keys`` selector's keys read
        (the channel reconstructed from each complex report); other selectors do not read them.
        """

        def __init__(self, config=None, codebook: Tensor | None = None, measured: Tensor | None = None,
                     selector=None, precision: str | None = None, device: str | None = None) -> None:
            super().__init__(precision=precision, device=device)
            from ..wireless.selector import AttentionSelector, SelectorConfig

            if selector is None:
                if codebook is None:
                    raise ValueError("SelectorBlock: give 'selector' or 'codebook' (and 'measured')")
                if measured is None:
                    measured = torch.ones(codebook.shape[0], dtype=torch.bool)
                selector = AttentionSelector(config or SelectorConfig(learned=False), codebook.to(self.cdtype),
                                             measured)
            self.selector = selector.to(device=self.device)
            for p in self.selector.parameters():
                p.data = p.data.to(self.dtype)
            self.selector.beams = self.selector.beams.to(self.cdtype)
            if hasattr(self.selector, "recon"):  # csi_keys: T = V_A V_B⁺ [M, J] again, in the block's precision
                from ..wireless.selector import reconstruction_matrix

                self.selector.recon = reconstruction_matrix(self.selector.beams, self.selector.measured)

        def call(self, rsrp_db: Tensor, phase: Tensor | None = None, phase_history: Tensor | None = None,
                 report_phase: Tensor | None = None) -> Tensor:
            return self.selector(rsrp_db, phase, phase_history=phase_history,
                                 report_phase=report_phase).beams.to(self.cdtype)

    _SELECTOR_BLOCK = SelectorBlock
    return SelectorBlock


def __getattr__(name: str):
    if name == "SelectorBlock":
        return _selector_block_class()
    raise AttributeError(name)
