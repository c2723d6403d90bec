"""NLP modules: encoder blocks (pre/post-LN) equal their formulas; tasks have their stated structure."""

import pytest
import torch

from beamattn.core import MultiHeadAttention
from beamattn.experiments.registry import EXPERIMENTS, Outcome, experiment, run_experiment
from beamattn.experiments.report import render_report
from beamattn.nlp import Encoder, EncoderBlock, EncoderConfig, alignment_task, associative_recall, copy_task, reverse_task


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_block_equals_its_formula(norm):
    torch.manual_seed(0)
    cfg = EncoderConfig(vocab_size=10, dim=16, num_heads=4, norm=norm, positions="none")
    blk = EncoderBlock(cfg).eval()
    x = torch.randn(2, 7, 16)
    out, _ = blk(x)
    attn = lambda t: blk.attn(t)[0]  # noqa: E731
    if norm == "pre":
        h = x + attn(blk.ln1(x))
        ref = h + blk.mlp(blk.ln2(h))
    else:
        h = blk.ln1(x + attn(x))
        ref = blk.ln2(h + blk.mlp(h))
    torch.testing.assert_close(out, ref)


def test_relative_bias_reaches_attention():
    torch.manual_seed(1)
    cfg = EncoderConfig(vocab_size=10, dim=16, num_heads=4, positions="relative", max_length=8)
    blk = EncoderBlock(cfg).eval()
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        blk.rel_bias.weight.normal_()
    _, w = blk(x, need_weights=True)
    bias = blk.rel_bias(6, 6)
    _, w_ref = blk.attn(blk.ln1(x), need_weights=True, bias=bias)
    torch.testing.assert_close(w, w_ref)
    _, w_none = blk.attn(blk.ln1(x), need_weights=True)
    assert not torch.allclose(w, w_none)


def test_mha_bias_equals_explicit_scores():
    torch.manual_seed(2)
    mha = MultiHeadAttention(8, 2).eval()
    x = torch.randn(1, 5, 8)
    bias = torch.randn(2, 5, 5)
    _, w = mha(x, need_weights=True, bias=bias)
    q = mha.q_proj(x).view(1, 5, 2, 4).transpose(1, 2)
    k = mha.k_proj(x).view(1, 5, 2, 4).transpose(1, 2)
    ref = torch.softmax(q @ k.transpose(-2, -1) / 2.0 + bias, -1)
    torch.testing.assert_close(w, ref)
    with pytest.raises(ValueError, match="'bias'"):
        mha(x, bias=torch.randn(3, 5, 5))


def test_encoder_shapes_and_config_errors():
    m = Encoder(EncoderConfig(vocab_size=12, dim=16, num_heads=2, num_layers=3))
    logits, weights = m(torch.randint(0, 12, (4, 9)), need_weights=True)
    assert logits.shape == (4, 9, 12) and len(weights) == 3 and weights[0].shape == (4, 2, 9, 9)
    with pytest.raises(ValueError, match="'norm' = 'mid'"):
        EncoderConfig(vocab_size=3, norm="mid")
    with pytest.raises(ValueError, match="'positions' = 'rope'"):
        EncoderConfig(vocab_size=3, positions="rope")


def test_tasks_structure():
    x, y = copy_task(3, 8, 10, seed=0)
    assert torch.equal(x, y) and x.min() >= 1
    x, y = reverse_task(3, 8, 10, seed=0)
    assert torch.equal(y, x.flip(-1))
    x, y = associative_recall(5, pairs=4, num_keys=8, num_values=6, seed=1)
    for b in range(5):
        keys, vals, q = x[b, 0:8:2], x[b, 1:8:2], x[b, -1]
        assert len(set(keys.tolist())) == 4  # distinct keys
        assert y[b, -1] == vals[(keys == q).nonzero()[0, 0]]
        assert (y[b, :-1] == -100).all()
    src, tgt, fert = alignment_task(4, 6, 10, max_fertility=2, seed=2)
    for b in range(4):
        assert (tgt[b] > 0).sum() == fert[b].sum()  # target length = total fertility


def test_experiment_registry_and_report(tmp_path):
    name = "_test-only"

    @experiment(name, "a test experiment", "claims nothing", order=999)
    def _fn(out_dir, small, seed):
        return Outcome(numbers={"x": seed}, verdict="measured x", supported=seed == 3)

    try:
        r = run_experiment(name, tmp_path, small=True, seed=3)
        assert r.supported and (tmp_path / name / "result.json").exists()
        text = render_report([r])
        assert "1 of 1 claims supported" in text and "a test experiment" in text
        with pytest.raises(ValueError, match="unknown name"):
            run_experiment("_test-onl", tmp_path)
    finally:
        EXPERIMENTS.pop(name)
