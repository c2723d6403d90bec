"""Link level (Sionna 2.x PHY): the chain against Sionna's own AWGN simulation, policy ranking,
the selector as a Sionna Block, and the ``beamattn linklevel`` command."""

import json
import math

import pytest
import torch
from wireless_fixtures import tiny_scenario

from beamattn.cli import main
from beamattn.linklevel.chain import LinkChain, LinkConfig, ebno_to_no, reference_awgn_errors
from beamattn.linklevel.run import run_linklevel


def _agree(e1: torch.Tensor, e2: torch.Tensor) -> tuple[float, float, float]:
    n1, n2 = e1.numel(), e2.numel()
    p1, p2 = e1.float().mean().item(), e2.float().mean().item()
    p = (e1.sum() + e2.sum()).item() / (n1 + n2)
    bound = 3 * math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2)) + 0.02
    return p1, p2, bound


def test_awgn_extremes_with_ls_estimation():
    # Fast check of the OFDM chain with LS estimation on a unit-gain channel: error free well above the
    # waterfall, all blocks lost well below it.
    chain = LinkChain(LinkConfig(num_subcarriers=48))
    assert (chain.k, chain.n) == (576, 1152)
    assert not chain.errors(1.0, ebno_to_no(6.0, 2, 0.5), batch=40, seed=1).any()
    assert chain.errors(1.0, ebno_to_no(-2.0, 2, 0.5), batch=40, seed=2).all()


@pytest.mark.parametrize("bits_per_symbol, code_rate", [(2, 0.5), (4, 0.75), (6, 1 / 3), (2, 0.9)])
def test_ebno_to_no_equals_sionnas_ebnodb2no(bits_per_symbol, code_rate):
    # Independent reference: Sionna's ebnodb2no (no resource grid: no pilot overhead), float64 on both sides.
    from sionna.phy.utils import ebnodb2no

    for ebno in (-3.0, 0.0, 1.25, 7.5, 20.0):
        ref = float(ebnodb2no(torch.tensor(ebno, dtype=torch.float64), bits_per_symbol, code_rate,
                              precision="double"))
        assert ebno_to_no(ebno, bits_per_symbol, code_rate) == pytest.approx(ref, rel=1e-12)
        # the closed form: N0 = 1 / (Eb/N0 · bits per symbol · code rate)
        assert ebno_to_no(ebno, bits_per_symbol, code_rate) == pytest.approx(
            10 ** (-ebno / 10) / (bits_per_symbol * code_rate), rel=1e-12)


def test_awgn_bler_matches_sionna_reference():
    # Unit-gain SISO AWGN channel, known CSI: the OFDM chain's BLER equals Sionna's own
    # encoder -> mapper -> AWGN -> demapper -> decoder simulation of the same (k, n) code and QPSK.
    # The noise level comes from Sionna's ebnodb2no, not from the package's own mapping.
    from sionna.phy.utils import ebnodb2no

    chain = LinkChain(LinkConfig(bits_per_symbol=2, code_rate=0.5, estimator="perfect"))
    n = 300
    for i, ebno in enumerate((0.75, 1.0, 1.25)):
        no = float(ebnodb2no(ebno, 2, 0.5))
        e1 = chain.errors(1.0, no, batch=n, seed=10 + i)
        e2 = reference_awgn_errors(chain.k, chain.n, 2, no, n, seed=20 + i)
        p1, p2, bound = _agree(e1, e2)
        print(f"Eb/N0 {ebno} dB: chain BLER {p1:.3f}, Sionna reference {p2:.3f}, bound {bound:.3f}")
        assert abs(p1 - p2) <= bound


def test_policies_rank_as_by_mean_snr():
    from beamattn.wireless.runner import run_scenario

    scn = tiny_scenario()
    snr = run_scenario(scn, None, policies=["genie", "random"], progress=False, figures=False).summary
    assert snr["genie"]["snr_db"]["mean"] > snr["random"]["snr_db"]["mean"] + 6
    out = run_linklevel(scn, None, policies=["genie", "random"], snr_db_list=[0.0], max_blocks=100,
                        target_block_errors=100, progress=False, config=LinkConfig(num_subcarriers=48))
    r = out["results"]
    print({n: r[n]["bler"] for n in r})
    assert r["genie"]["bler"][0] + 0.3 < r["random"]["bler"][0]
    assert r["genie"]["throughput_bits"][0] > r["random"]["throughput_bits"][0]
    assert r["genie"]["blocks"][0] == 100


@pytest.mark.parametrize("precision", ["single", "double"])
def test_selector_block_equals_selector_and_composes(precision):
    from sionna.phy.channel import ApplyOFDMChannel

    from beamattn.linklevel import SelectorBlock
    from beamattn.wireless.arrays import AntennaArray
    from beamattn.wireless.codebooks import dft_codebook
    from beamattn.wireless.selector import AttentionSelector, SelectorConfig

    torch.manual_seed(0)
    cb = dft_codebook(AntennaArray(num_rows=1, num_cols=8), 2).beams.to(torch.complex64)
    measured = torch.zeros(cb.shape[0], dtype=torch.bool)
    measured[::2] = True
    sel = AttentionSelector(SelectorConfig(learned=True, history=2, d_model=8, neighbours=2), cb, measured)
    block = SelectorBlock(selector=AttentionSelector(sel.config, cb, measured), precision=precision)
    block.selector.load_state_dict(sel.state_dict())
    rsrp = 10 * torch.randn(5, 3, 2, cb.shape[0])  # [B, D, L, M], float32 in; cast by the block
    phase = torch.rand(5, 3, cb.shape[0]) * 6.28
    beams = block(rsrp, phase)
    ref = sel(rsrp, phase).beams
    assert beams.dtype == block.cdtype and beams.shape == (5, 3, 8)
    torch.testing.assert_close(beams.to(torch.complex128), ref.to(torch.complex128), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(beams.abs().pow(2).sum(-1), torch.ones(5, 3, dtype=block.dtype))
    # Compose with the channel: h_eff = hᵀ w per OFDM symbol and subcarrier, then ApplyOFDMChannel.
    h = torch.randn(5, 3, 14, 12, 8, dtype=block.cdtype)  # [B, D, S, F, N]
    h_eff = torch.einsum("bdsfn,bdn->bdsf", h, beams).reshape(15, 1, 1, 1, 1, 14, 12)
    x = torch.ones(15, 1, 1, 14, 12, dtype=block.cdtype)
    y = ApplyOFDMChannel(precision=precision)(x, h_eff)
    torch.testing.assert_close(y.reshape(5, 3, 14, 12), torch.einsum("bdsfn,bdn->bdsf", h, beams))


def test_selector_block_passes_the_phase_history_to_a_phase_predicting_transformer():
    from beamattn.linklevel import SelectorBlock
    from beamattn.wireless.arrays import AntennaArray
    from beamattn.wireless.codebooks import dft_codebook
    from beamattn.wireless.selector import AttentionSelector, SelectorConfig

    torch.manual_seed(1)
    cb = dft_codebook(AntennaArray(num_rows=1, num_cols=8), 2).beams.to(torch.complex64)  # [16, 8]
    measured = torch.zeros(cb.shape[0], dtype=torch.bool)
    measured[::2] = True
    cfg = SelectorConfig(arch="transformer", normalizer="softmax", history=3, d_model=8, heads=2, neighbours=2,
                         cophase=True, phase_predict=True, phase_lead=1.5, query="context")
    sel = AttentionSelector(cfg, cb, measured)
    with torch.no_grad():  # a non-zero contextual query and position bias, so that every part counts
        sel.query_net.weight.normal_()
        sel.blocks[0].pos.h_table.weight.normal_()
    block = SelectorBlock(selector=sel, precision="single")
    rsrp = 10 * torch.randn(4, 3, cb.shape[0])  # [B, L, M]
    history = torch.rand(4, 5, cb.shape[0]) * 6.28  # [B, T, M]
    phase = history[:, -1]  # [B, M]
    beams = block(rsrp, phase, phase_history=history)
    ref = sel(rsrp, phase, phase_history=history).beams
    assert beams.dtype == torch.complex64 and beams.shape == (4, 8)
    torch.testing.assert_close(beams, ref, rtol=0, atol=0)
    # The history is read: the latest phases alone are not what the block co-phases with.
    assert (beams - sel(rsrp, phase, phase_history=history[:, -1:]).beams).abs().max() > 1e-3
    with pytest.raises(ValueError, match="'phase_predict' is on but no 'phase_history'"):
        block(rsrp, phase)


@pytest.mark.parametrize("precision", ["single", "double"])
def test_selector_block_passes_the_report_phases_to_csi_keys(precision):
    from beamattn.linklevel import SelectorBlock
    from beamattn.wireless.arrays import AntennaArray
    from beamattn.wireless.codebooks import dft_codebook
    from beamattn.wireless.selector import AttentionSelector, SelectorConfig

    torch.manual_seed(2)
    cb = dft_codebook(AntennaArray(num_rows=1, num_cols=8), 2).beams.to(torch.complex64)  # [16, 8]
    measured = torch.zeros(cb.shape[0], dtype=torch.bool)
    measured[::2] = True  # the orthogonal DFT basis
    cfg = SelectorConfig(normalizer="softmax", history=3, d_model=8, neighbours=2, csi_keys=True)
    sel = AttentionSelector(cfg, cb, measured)
    block = SelectorBlock(selector=AttentionSelector(cfg, cb, measured), precision=precision)
    block.selector.load_state_dict(sel.state_dict())
    # T = V_A V_B⁺ in the block's precision (recomputed from the codebook, not the complex64 one cast up)
    assert block.selector.recon.dtype == block.cdtype
    rsrp = 10 * torch.randn(4, 3, cb.shape[0])  # [B, L, M]
    report = torch.rand(4, 3, cb.shape[0]) * 6.28  # [B, L, M] the reports' phases
    beams = block(rsrp, None, report_phase=report)
    ref = sel(rsrp, report_phase=report).beams
    assert beams.dtype == block.cdtype and beams.shape == (4, 8)
    torch.testing.assert_close(beams.to(torch.complex128), ref.to(torch.complex128), rtol=1e-5, atol=1e-5)
    # The phases are read: other per-beam phases, another reconstructed channel, other beams.
    assert (beams - block(rsrp, None, report_phase=report.flip(-1))).abs().max() > 1e-3
    with pytest.raises(ValueError, match="'csi_keys' is on but no 'report_phase'"):
        block(rsrp)


def test_linklevel_cli_writes_outputs(tmp_path, capsys):
    p = tmp_path / "tiny.toml"
    p.write_text("""
[scenario]
name = "tiny"
drops = 2
chunk_drops = 2
snr_db = 0.0
[channel]
speed_kmh = 30
duration = 0.2
sample_interval = 0.002
[array]
num_cols = 8
""")
    out = tmp_path / "ll"
    assert main(["linklevel", str(p), "--out", str(out), "--policies", "genie,random", "--snr-db=-3,3",
                 "--max-blocks", "40", "--target-errors", "20", "--subcarriers", "48"]) == 0
    res = json.loads((out / "bler.json").read_text())
    assert (out / "bler.png").stat().st_size > 0
    for name in ("genie", "random"):
        r = res["results"][name]
        assert r["snr_db"] == [-3.0, 3.0] and len(r["bler"]) == 2
        assert all(0 < b <= 40 for b in r["blocks"]) and all(0 <= e <= b for e, b in zip(r["errors"], r["blocks"]))
        assert r["throughput_bits"] == pytest.approx([(1 - b) * res["link"]["k"] for b in r["bler"]])
    cap = capsys.readouterr()
    assert "| genie |" in cap.out and "linklevel genie @" in cap.err
    assert main(["linklevel", str(p), "--out", str(out), "--snr-db", "x"]) == 2


def test_slot_channels_time_and_frequency_mapping():
    from beamattn.linklevel.run import slot_channels

    cfg = LinkConfig(num_subcarriers=48)  # 0.5 ms slot
    g = torch.zeros(1, 1, 3, 4, dtype=torch.complex64)  # [B, D, P + 1, Fc = 4 subcarriers of the back-end]
    g[0, 0, 0] = torch.tensor([1, 2, 3, 4])
    g[0, 0, 1] = torch.tensor([1, 2, 3, 4]) * 3  # the next sample, dt = 1 ms later
    h = slot_channels(g, torch.tensor([[0, 0, 0]]), dt=1e-3, cfg=cfg)
    assert h.shape == (1, 14, 48)
    # Subcarriers: band edges are the back-end's edge subcarriers; symbols: linear in time.
    a = (torch.arange(14) + 0.5) * 0.5e-3 / 14 / 1e-3
    torch.testing.assert_close(h[0, :, 0].real, 1 + 2 * a)
    torch.testing.assert_close(h[0, :, -1].real, 4 * (1 + 2 * a))


def test_example_script_runs_the_selector_in_a_hand_written_chain(capsys):
    from script_loader import load_script

    mod = load_script("example_sionna_chain")
    assert mod.main(["--drops", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 0 |")]
    sel, rnd = (float(x) for x in rows[0].strip("| ").split("|")[1:])
    assert sel < rnd  # the selector's beam decodes better than a random beam at 0 dB


def test_wideband_end_to_end_with_lmmse_between_ls_and_perfect_csi():
    # A frequency-selective (wideband) geometric scenario through the whole link: each estimator sees the
    # same slots, bits and noise; the LMMSE receiver knows the genie beam's effective channel statistics.
    scn = tiny_scenario(channel={"num_subcarriers": 16, "subcarrier_spacing": 120e3})
    bler, outs = {}, {}
    for est in ("ls", "lmmse", "perfect"):
        outs[est] = run_linklevel(scn, None, policies=["genie"], snr_db_list=[-4.0], max_blocks=150,
                                  target_block_errors=150, progress=False, batch=150,
                                  config=LinkConfig(num_subcarriers=48, estimator=est))
        bler[est] = outs[est]["results"]["genie"]["bler"][0]
    print(bler)
    assert outs["lmmse"]["link"]["estimator"] == "lmmse"
    assert all(o["results"]["genie"]["blocks"] == [150] for o in outs.values())
    sd = math.sqrt(0.25 / 150)
    assert bler["lmmse"] < bler["ls"] - 4 * sd
    assert bler["perfect"] <= bler["lmmse"] + 3 * sd


def test_mrt_is_per_instant_conjugate_beamforming_at_link_level():
    # As in `beamattn run`: MRT's effective channel is ||h|| at every sample and subcarrier, so its mean
    # power over the use interval is the episode's MRT bound trace(R), above every fixed beam's.
    from beamattn.linklevel.run import _effective
    from beamattn.wireless.runner import episodes

    scn = tiny_scenario(channel={"num_subcarriers": 4})
    _, ep, sample = next(episodes(scn, 0, 2))
    p = ep.timeline.use_len
    g_mrt = _effective(sample, ep, None)  # [B, D, P + 1, Fc]
    power = g_mrt[:, :, :p].abs().pow(2).mean((-2, -1))  # [B, D]
    torch.testing.assert_close(power, ep.mrt_gain.to(power.dtype), rtol=1e-4, atol=1e-6)
    assert bool((g_mrt.imag == 0).all()) and bool((g_mrt.real >= 0).all())
    genie = ep.codebook.beams[ep.gain_use.argmax(-1)]  # [B, D, N]
    g_genie = _effective(sample, ep, genie)[:, :, :p].abs().pow(2).mean((-2, -1))
    torch.testing.assert_close(g_genie, ep.gain_use.amax(-1).to(g_genie.dtype), rtol=1e-4, atol=1e-6)
    assert bool((power >= g_genie - 1e-5).all())


def test_pilots_are_fixed_and_leave_sionnas_random_stream_alone():
    # Two chains have the same pilots (so one seed fixes every LS/LMMSE number), and building a chain
    # does not shift Sionna's random stream.
    from sionna.phy import config

    config.seed = 11
    a = LinkChain(LinkConfig(num_subcarriers=24))
    after_build = config.torch_rng("cpu").get_state()
    config.seed = 11
    b = LinkChain(LinkConfig(num_subcarriers=24))
    assert torch.equal(a.rg.pilot_pattern.pilots, b.rg.pilot_pattern.pilots)
    config.seed = 11
    assert torch.equal(config.torch_rng("cpu").get_state(), after_build)


@pytest.mark.parametrize("errors,blocks", [(0, 100), (3, 100), (50, 200), (200, 200), (1, 7)])
def test_bler_interval_is_scipys_wilson_interval(errors, blocks):
    from scipy.stats import binomtest

    from beamattn.linklevel.run import wilson_interval

    ref = binomtest(errors, blocks).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(errors, blocks) == pytest.approx((ref.low, ref.high), abs=1e-4)
