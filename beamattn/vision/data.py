"""Two synthetic image data sets, made in code and seeded.

- :func:`landmark_images`: cluttered noise images whose class is set by a few
  "landmark" patches (an oriented bar whose orientation is the class) among
  "distractor" patches of other textures; the landmark patches are known, so
  one can check where a model attends.
- :func:`scans`: noisy "scans" of random size and aspect ratio with a small
  bright lesion present (label 1) or absent (label 0); the lesion's patch is known.

Pixel values are unitless intensities of order 1; images are float32 ``[C=1, H, W]``.
Patch indices are row-major over an image's own patch grid: index ``r*Wg + c``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["landmark_images", "scans", "LANDMARK_ORIENTATIONS_DEG", "DISTRACTORS"]

# Class k = a bar at this orientation (degrees, counter-clockwise from horizontal, image y axis down).
LANDMARK_ORIENTATIONS_DEG: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0)
# Distractor textures; "plus" and "cross" contain bars of every class, so bar detectors alone are not enough.
DISTRACTORS: tuple[str, ...] = ("checker", "ring", "plus", "cross", "blob")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check_int(fn: str, name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{fn}: argument '{name}' = {value!r} must be an int")
    if value < low:
        raise ValueError(f"{fn}: argument '{name}' = {value}; expected an int >= {low}")


def _patch_coords(patch: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates ``(x, y)`` of a patch, ``[P, P]`` each, origin at the patch centre (pixels)."""
    t = torch.arange(patch, dtype=torch.float32) - (patch - 1) / 2  # [P]
    y, x = torch.meshgrid(t, t, indexing="ij")  # [P, P] each
    return x, y


def _bar(patch: int, angle_deg: float) -> Tensor:
    """A bar through the patch centre at ``angle_deg``, about 2 px thick: ``[P, P]`` in {0, 1}."""
    x, y = _patch_coords(patch)
    a = math.radians(angle_deg)
    across = (-math.sin(a) * x + math.cos(a) * y).abs()  # [P, P] distance from the bar's axis (px)
    along = (math.cos(a) * x + math.sin(a) * y).abs()  # [P, P] distance along the axis (px)
    return ((across <= 0.75) & (along <= patch / 2 - 0.5)).float()


def _texture(patch: int, name: str) -> Tensor:
    """Distractor texture ``name`` (see :data:`DISTRACTORS`): ``[P, P]`` with values in [-1, 1]."""
    x, y = _patch_coords(patch)
    if name == "checker":
        cell = max(1, patch // 4)
        ix = torch.arange(patch) // cell
        return ((ix[:, None] + ix[None, :]) % 2).float() * 2 - 1
    if name == "ring":
        r = (x ** 2 + y ** 2).sqrt()
        return ((r - patch / 3).abs() <= 0.7).float()
    if name == "plus":
        return torch.maximum(_bar(patch, 0.0), _bar(patch, 90.0))
    if name == "cross":
        return torch.maximum(_bar(patch, 45.0), _bar(patch, 135.0))
    if name == "blob":
        return torch.exp(-(x ** 2 + y ** 2) / (2 * (patch / 5) ** 2))
    raise ValueError(f"_texture: unknown texture {name!r}; expected one of {DISTRACTORS}")


def landmark_images(
    batch: int,
    size: tuple[int, int] = (32, 32),
    patch: int = 8,
    num_landmarks: int = 3,
    num_distractors: int = 6,
    seed: int = 0,
    *,
    num_classes: int = 4,
    noise: float = 0.35,
) -> tuple[Tensor, Tensor, Tensor]:
    """Cluttered images whose class is the orientation of a few landmark bars.

    Each image is Gaussian noise (std ``noise``) with ``num_landmarks`` patches
    carrying a bar at orientation ``LANDMARK_ORIENTATIONS_DEG[label]`` and
    ``num_distractors`` patches carrying a random texture from :data:`DISTRACTORS`
    (class-independent), all at distinct random patch-aligned cells and with
    random amplitudes in [0.8, 1.2]. Only the landmarks carry the class.

    Args:
        batch: number of images ``B``.
        size: ``(H, W)`` in pixels, each a multiple of ``patch``.
        patch: patch side ``P`` (the model's patch size), pixels.
        num_landmarks: landmark patches per image, ``>= 1``.
        num_distractors: distractor patches per image, ``>= 0``.
        seed: seed of the generator.
        num_classes: classes (orientations), 2 to 4.
        noise: standard deviation of the background noise.

    Returns:
        ``(images [B, 1, H, W] float32, labels [B] long, landmark_mask [B, L] bool)`` with
        ``L = (H/P)·(W/P)`` row-major patch cells, True = a landmark patch.
    """
    fn = "landmark_images"
    _check_int(fn, "batch", batch, 1)
    _check_int(fn, "patch", patch, 2)
    _check_int(fn, "num_landmarks", num_landmarks, 1)
    _check_int(fn, "num_distractors", num_distractors, 0)
    _check_int(fn, "num_classes", num_classes, 2)
    if num_classes > len(LANDMARK_ORIENTATIONS_DEG):
        raise ValueError(f"{fn}: argument 'num_classes' = {num_classes}; expected <= "
                         f"{len(LANDMARK_ORIENTATIONS_DEG)} (one bar orientation per class)")
    if not (isinstance(size, (tuple, list)) and len(size) == 2):
        raise ValueError(f"{fn}: argument 'size' = {size!r}; expected (H, W)")
    h, w = size
    for name, v in (("size[0]", h), ("size[1]", w)):
        _check_int(fn, name, v, patch)
        if v % patch != 0:
            raise ValueError(f"{fn}: argument '{name}' = {v}; expected a multiple of 'patch' = {patch}")
    hg, wg = h // patch, w // patch
    n_cells = hg * wg
    if num_landmarks + num_distractors > n_cells:
        raise ValueError(f"{fn}: num_landmarks + num_distractors = {num_landmarks + num_distractors} exceeds the "
                         f"{n_cells} patches of a {h}x{w} image with patch {patch}")
    if not (isinstance(noise, (int, float)) and noise >= 0):
        raise ValueError(f"{fn}: argument 'noise' = {noise!r}; expected a number >= 0")

    g = _gen(seed)
    bars = torch.stack([_bar(patch, a) for a in LANDMARK_ORIENTATIONS_DEG[:num_classes]])  # [K, P, P]
    textures = torch.stack([_texture(patch, n) for n in DISTRACTORS])  # [D, P, P]

    labels = torch.randint(num_classes, (batch,), generator=g)  # [B]
    order = torch.rand(batch, n_cells, generator=g).argsort(dim=1)  # [B, L] random cell order
    landmark_cells = order[:, :num_landmarks]  # [B, NL]
    distractor_cells = order[:, num_landmarks:num_landmarks + num_distractors]  # [B, ND]
    kinds = torch.randint(len(DISTRACTORS), (batch, num_distractors), generator=g)  # [B, ND]
    amp_l = 0.8 + 0.4 * torch.rand(batch, num_landmarks, generator=g)  # [B, NL]
    amp_d = 0.8 + 0.4 * torch.rand(batch, num_distractors, generator=g)  # [B, ND]

    cells = torch.zeros(batch, n_cells, patch, patch)  # [B, L, P, P] pattern in each cell
    cells.scatter_(1, landmark_cells[..., None, None].expand(-1, -1, patch, patch),
                   bars[labels][:, None] * amp_l[..., None, None])  # landmarks
    cells.scatter_(1, distractor_cells[..., None, None].expand(-1, -1, patch, patch),
                   textures[kinds] * amp_d[..., None, None])  # distractors
    clean = cells.view(batch, hg, wg, patch, patch).permute(0, 1, 3, 2, 4).reshape(batch, 1, h, w)  # [B, 1, H, W]
    images = clean + noise * torch.randn(batch, 1, h, w, generator=g)  # [B, 1, H, W]

    landmark_mask = torch.zeros(batch, n_cells, dtype=torch.bool)  # [B, L]
    landmark_mask.scatter_(1, landmark_cells, True)
    return images, labels, landmark_mask


def scans(
    batch: int,
    min_size: int = 16,
    max_size: int = 48,
    patch: int = 8,
    seed: int = 0,
    *,
    lesion_prob: float = 0.5,
    lesion_amplitude: float = 2.0,
    noise: float = 0.3,
) -> tuple[list[Tensor], Tensor, Tensor]:
    """Noisy "scans" of random size and aspect ratio; label 1 = a small bright lesion is present.

    Height and width are drawn independently and uniformly from ``[min_size,
    max_size]`` pixels (so aspect ratios vary up to ``max_size/min_size``). The
    background is a smooth random "tissue" field (a few low-frequency cosines,
    amplitude about 0.3) plus Gaussian noise (std ``noise``). A lesion is a
    Gaussian spot of width 1–1.5 px and peak ``lesion_amplitude``·[0.8, 1.2] at a
    random pixel at least 2 px from the border.

    Args:
        batch: number of scans ``B``.
        min_size, max_size: side range in pixels, ``patch <= min_size <= max_size``.
        patch: patch side ``P`` used for the lesion's patch index.
        seed: seed of the generator.
        lesion_prob: probability of a lesion.
        lesion_amplitude: mean lesion peak (intensity).
        noise: standard deviation of the pixel noise.

    Returns:
        ``(images, labels [B] long, lesion_patch [B] long)``: ``images`` is a list of
        ``B`` float32 tensors ``[1, H_b, W_b]``; ``lesion_patch`` is the row-major index
        of the lesion's patch in the image's own grid of ``ceil(H_b/P) × ceil(W_b/P)``
        patches, or -1 without a lesion.
    """
    fn = "scans"
    _check_int(fn, "batch", batch, 1)
    _check_int(fn, "patch", patch, 1)
    _check_int(fn, "min_size", min_size, max(patch, 5))
    _check_int(fn, "max_size", max_size, min_size)
    if not (isinstance(lesion_prob, (int, float)) and 0.0 <= lesion_prob <= 1.0):
        raise ValueError(f"{fn}: argument 'lesion_prob' = {lesion_prob!r}; expected a number in [0, 1]")
    for name, v in (("lesion_amplitude", lesion_amplitude), ("noise", noise)):
        if not (isinstance(v, (int, float)) and v >= 0):
            raise ValueError(f"{fn}: argument '{name}' = {v!r}; expected a number >= 0")

    g = _gen(seed)
    images: list[Tensor] = []
    labels = (torch.rand(batch, generator=g) < lesion_prob).long()  # [B]
    lesion_patch = torch.full((batch,), -1, dtype=torch.long)  # [B]
    for i in range(batch):
        h = int(torch.randint(min_size, max_size + 1, (1,), generator=g))
        w = int(torch.randint(min_size, max_size + 1, (1,), generator=g))
        y = torch.arange(h, dtype=torch.float32)[:, None]  # [H, 1] pixels
        x = torch.arange(w, dtype=torch.float32)[None, :]  # [1, W] pixels
        # Smooth field: 3 plane waves, wavelengths 16-48 px along each axis.
        k = 2 * math.pi / (16 + 32 * torch.rand(3, 2, 1, 1, generator=g))  # [3, 2, 1, 1] rad/px
        phase = 2 * math.pi * torch.rand(3, 1, 1, generator=g)  # [3, 1, 1] rad
        tissue = 0.1 * torch.cos(k[:, 0] * x + k[:, 1] * y + phase).sum(0)  # [H, W]
        img = tissue + noise * torch.randn(h, w, generator=g)  # [H, W]
        if labels[i] == 1:
            cy = int(torch.randint(2, h - 2, (1,), generator=g))
            cx = int(torch.randint(2, w - 2, (1,), generator=g))
            sigma = 1.0 + 0.5 * float(torch.rand(1, generator=g))  # px
            peak = lesion_amplitude * (0.8 + 0.4 * float(torch.rand(1, generator=g)))
            img = img + peak * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2))
            lesion_patch[i] = (cy // patch) * math.ceil(w / patch) + cx // patch
        images.append(img[None])  # [1, H, W]
    return images, labels, lesion_patch
