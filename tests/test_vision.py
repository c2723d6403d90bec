"""Vision: the ViT takes images of any size (padding masks, per-image positions); the synthetic data sets."""

import pytest
import torch

from beamattn.core import sincos_2d_encoding
from beamattn.vision import ViT, ViTConfig, landmark_images, scans
from beamattn.vision.vit import patch_grids

P = 4  # patch size of the test models


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one thread is faster (and far faster on a busy machine) than several."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(cls_token: bool = True, normalizer: str = "softmax", seed: int = 0, **kw) -> ViT:
    torch.manual_seed(seed)
    cfg = ViTConfig(patch_size=P, in_channels=2, dim=16, num_heads=4, num_layers=2, num_classes=3,
                    cls_token=cls_token, normalizer=normalizer, **kw)
    return ViT(cfg).eval()


def _mixed_images(seed: int = 0) -> list[torch.Tensor]:
    """Different sizes and aspect ratios, some not multiples of the patch (partial border patches)."""
    g = torch.Generator().manual_seed(seed)
    sizes = [(12, 20), (13, 7), (4, 4), (24, 9), (8, 8)]
    return [torch.randn(2, h, w, generator=g) for h, w in sizes]


def test_shapes_tensor_and_list():
    m = _model()
    logits, info = m(torch.randn(3, 2, 12, 16), need_weights=True)
    assert logits.shape == (3, 3)
    assert info["grid"] == (3, 4) and info["grid_sizes"] == [(3, 4)] * 3
    assert info["patch_mask"].shape == (3, 12) and bool(info["patch_mask"].all())
    assert info["cls_attention"].shape == (3, 12)
    assert len(info["weights"]) == 2 and info["weights"][0].shape == (3, 4, 13, 13)

    images = _mixed_images()
    logits, info = m(images, need_weights=True)
    assert logits.shape == (5, 3)
    assert info["grid_sizes"] == [(3, 5), (4, 2), (1, 1), (6, 3), (2, 2)]
    assert info["grid"] == (6, 5)
    assert info["patch_mask"].sum(1).tolist() == [15, 8, 1, 18, 4]
    grids = patch_grids(info["cls_attention"], info)
    assert [tuple(a.shape) for a in grids] == info["grid_sizes"]

    logits, info = m(images)  # no weights unless asked for
    assert info["cls_attention"] is None and info["weights"] is None


@pytest.mark.parametrize("cls_token", [True, False])
@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax"])
def test_padding_invariance(cls_token, normalizer):
    """An image's logits alone equal its logits inside a padded mixed-size batch."""
    m = _model(cls_token=cls_token, normalizer=normalizer)
    images = _mixed_images()
    with torch.no_grad():
        batched, info = m(images, need_weights=True)
        for i, img in enumerate(images):
            alone, info_1 = m([img], need_weights=True)
            torch.testing.assert_close(batched[i:i + 1], alone, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(patch_grids(info["cls_attention"], info)[i],
                                       patch_grids(info_1["cls_attention"], info_1)[0], atol=1e-5, rtol=1e-5)
            alone_t, _ = m(img[None])  # the tensor path agrees with the list path
            torch.testing.assert_close(alone_t, alone, atol=1e-5, rtol=1e-5)


def test_positions_are_each_images_own_grid():
    """With a zero patch embedding the block input is the positions: sincos_2d_encoding(3, 5) for a 3x5 grid."""
    m = _model()
    with torch.no_grad():
        m.patch_embed.weight.zero_()
        m.patch_embed.bias.zero_()
    seen = {}
    m.blocks[0].register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    images = [torch.randn(2, 3 * P, 5 * P), torch.randn(2, 6 * P, 7 * P)]  # grids 3x5 and 6x7
    with torch.no_grad():
        m(images)
    tokens = seen["x"][:, 1:].reshape(2, 6, 7, 16)  # [B, Hg, Wg, E] without the CLS token
    expected = sincos_2d_encoding(3, 5, 16).view(3, 5, 16)
    torch.testing.assert_close(tokens[0, :3, :5], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(tokens[1], sincos_2d_encoding(6, 7, 16).view(6, 7, 16), atol=1e-6, rtol=0)
    assert bool((tokens[0, 3:] == 0).all()) and bool((tokens[0, :, 5:] == 0).all())  # padded patches


def test_padded_patches_get_zero_attention():
    m = _model()
    images = _mixed_images()
    with torch.no_grad():
        _, info = m(images, need_weights=True)
    padded = ~info["patch_mask"]  # [B, L]
    assert bool(padded.any())
    for w in info["weights"]:  # [B, H, 1+L, 1+L]
        keys = w[:, :, :, 1:]  # attention to patch keys
        assert bool((keys.permute(0, 3, 1, 2)[padded] == 0).all())
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))  # rows still sum to 1
    assert bool((info["cls_attention"][padded] == 0).all())


def test_gradients_finite_on_mixed_batch():
    m = _model().train()
    logits, _ = m(_mixed_images())
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_bad_inputs_name_the_argument():
    m = _model()
    with pytest.raises(ValueError, match=r"'images' has 3 channels.*in_channels = 2"):
        m(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"'images\[1\]' has 1 channels"):
        m([torch.randn(2, 8, 8), torch.randn(1, 8, 8)])
    with pytest.raises(ValueError, match=r"'images\[1\]' has size 3x8.*patch_size = 4"):
        m([torch.randn(2, 8, 8), torch.randn(2, 3, 8)])
    with pytest.raises(TypeError, match=r"'images' has dtype torch.int64"):
        m(torch.ones(1, 2, 8, 8, dtype=torch.long))
    with pytest.raises(TypeError, match=r"'images\[0\]' has dtype torch.uint8"):
        m([torch.ones(2, 8, 8, dtype=torch.uint8)])
    with pytest.raises(ValueError, match=r"'images' has shape \(2, 8, 8\)"):
        m(torch.randn(2, 8, 8))
    with pytest.raises(ValueError, match=r"'images\[0\]' has shape"):
        m([torch.randn(1, 2, 8, 8)])
    with pytest.raises(TypeError, match="'images' must be"):
        m("image.png")
    with pytest.raises(ValueError, match="'images' is empty"):
        m([])
    with pytest.raises(ValueError, match="'dim' = 18"):
        ViTConfig(dim=18, num_heads=2)
    with pytest.raises(ValueError, match="'num_heads'"):
        ViTConfig(dim=16, num_heads=3)
    with pytest.raises(ValueError, match="'normalizer'"):
        ViTConfig(normalizer="relu")
    with pytest.raises(ValueError, match="'patch_size'"):
        ViTConfig(patch_size=0)


def test_landmark_images_structure():
    x, y, marks = landmark_images(16, (24, 32), 8, 2, 5, seed=3)
    assert x.shape == (16, 1, 24, 32) and x.dtype == torch.float32
    assert y.shape == (16,) and y.dtype == torch.long and int(y.min()) >= 0 and int(y.max()) < 4
    assert marks.shape == (16, 12) and marks.sum(1).tolist() == [2] * 16
    x2, y2, marks2 = landmark_images(16, (24, 32), 8, 2, 5, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(marks, marks2)
    # Without noise, the landmark patches of two images of one class are the same pattern.
    x, y, marks = landmark_images(64, (16, 16), 8, 1, 0, seed=0, noise=0.0)
    patches = x.unfold(2, 8, 8).unfold(3, 8, 8).reshape(64, 4, 8, 8)  # [B, L, P, P] row-major
    lm = patches[marks]  # [B, P, P]
    for c in range(4):
        same = lm[y == c]
        shape = (same > 0).float()
        assert bool((shape == shape[0]).all())
    with pytest.raises(ValueError, match="'size\\[1\\]' = 30"):
        landmark_images(2, (24, 30), 8, 1, 1, seed=0)
    with pytest.raises(ValueError, match="exceeds"):
        landmark_images(2, (16, 16), 8, 3, 2, seed=0)
    with pytest.raises(ValueError, match="'num_classes' = 5"):
        landmark_images(2, (16, 16), 8, 1, 1, seed=0, num_classes=5)


def test_scans_structure():
    images, labels, lesion = scans(40, 16, 40, 8, seed=1)
    assert len(images) == 40 and labels.shape == (40,) and lesion.shape == (40,)
    sizes = {tuple(img.shape) for img in images}
    assert len(sizes) > 10 and all(s[0] == 1 and 16 <= s[1] <= 40 and 16 <= s[2] <= 40 for s in sizes)
    assert bool(((labels == 1) == (lesion >= 0)).all()) and 5 < int(labels.sum()) < 35
    for img, lab, idx in zip(images, labels, lesion):
        h, w = img.shape[-2:]
        wg = -(-w // 8)
        assert int(idx) < -(-h // 8) * wg
        if lab == 1:  # the brightest pixel lies in (or next to) the lesion's patch
            r, c = divmod(int(img[0].flatten().argmax()), w)
            assert abs(r // 8 - int(idx) // wg) <= 1 and abs(c // 8 - int(idx) % wg) <= 1
    with pytest.raises(ValueError, match="'max_size' = 10"):
        scans(2, 16, 10, 8, seed=0)
