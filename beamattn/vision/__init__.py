"""A small Vision Transformer on the shared attention core, and synthetic image data.

- :class:`ViT` / :class:`ViTConfig` — patch embedding for images of any size and aspect
  ratio (no resizing: padding with a patch mask, per-image 2-D sin-cos positions,
  mixed-size batches), pre-LN blocks on :class:`beamattn.core.MultiHeadAttention`,
  a CLS token and a classification head;
- :func:`landmark_images` — cluttered images whose class is set by a few landmark patches;
- :func:`scans` — variable-size noisy scans with or without a small lesion.
"""

from .data import landmark_images, scans
from .vit import ViT, ViTConfig, patch_grids

__all__ = ["ViT", "ViTConfig", "patch_grids", "landmark_images", "scans"]
