"""A small Vision Transformer for images of any size and aspect ratio, on ``beamattn.core``.

Images are never resized. Each image is zero-padded at the bottom/right to a
multiple of the patch size (a partial patch at the border is a real patch); a
batch of images of different sizes is further padded to a common patch grid and
a key padding mask ``[B, 1, 1, 1+L]`` keeps every real token from attending to a
padded patch. Each image gets the 2-D sin-cos encoding of its *own* grid
(:func:`beamattn.core.sincos_2d_encoding`), placed in its own patches, so an
image's tokens — and therefore its logits — do not depend on what it was batched
with.

Layout of the ``L`` patch tokens: the padded grid ``[Hg, Wg]`` in row-major order,
token ``r*Wg + c`` is grid cell (row ``r``, column ``c``). Image ``b`` with grid
``(h_b, w_b)`` occupies the cells ``r < h_b, c < w_b``.

The blocks are :class:`beamattn.nlp.model.EncoderBlock` (pre-LN) on
:class:`beamattn.core.MultiHeadAttention`: no second attention implementation.
Style follows nanoGPT's ``model.py``: a dataclass config, shape comments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import NORMALIZERS, sincos_2d_encoding
from ..nlp.model import EncoderBlock, EncoderConfig

__all__ = ["ViTConfig", "ViT", "patch_grids"]


@dataclass
class ViTConfig:
    """Configuration of :class:`ViT`.

    Args:
        patch_size: side ``P`` of the square patches, in pixels.
        in_channels: image channels ``C``.
        dim: model width ``E`` (a multiple of 4 for the 2-D sin-cos encoding, and of ``num_heads``).
        num_heads: attention heads per block (equal sizes ``dim // num_heads``).
        num_layers: pre-LN encoder blocks.
        mlp_ratio: MLP width / ``dim``.
        num_classes: outputs of the classification head.
        cls_token: classify from a learned CLS token; otherwise from the mean of the real patch tokens.
        normalizer: ``"softmax"``, ``"sparsemax"`` or ``"entmax15"`` (see :func:`beamattn.core.attend`).
        dropout: residual / MLP dropout; ``attn_dropout``: attention-weight dropout.
    """

    patch_size: int = 8
    in_channels: int = 1
    dim: int = 64
    num_heads: int = 4
    num_layers: int = 2
    mlp_ratio: float = 2.0
    num_classes: int = 2
    cls_token: bool = True
    normalizer: str = "softmax"
    dropout: float = 0.0
    attn_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("patch_size", "in_channels", "dim", "num_heads", "num_layers", "num_classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ViTConfig: field '{name}' = {v!r}; expected an integer >= 1")
        if self.dim % 4 != 0:
            raise ValueError(f"ViTConfig: field 'dim' = {self.dim}; expected a multiple of 4 (2-D sin-cos positions)")
        if self.dim % self.num_heads != 0:
            raise ValueError(f"ViTConfig: field 'dim' = {self.dim} is not divisible by 'num_heads' = "
                             f"{self.num_heads}; expected a multiple")
        if not (isinstance(self.mlp_ratio, (int, float)) and self.mlp_ratio > 0):
            raise ValueError(f"ViTConfig: field 'mlp_ratio' = {self.mlp_ratio!r}; expected a number > 0")
        if self.normalizer not in NORMALIZERS:
            raise ValueError(f"ViTConfig: field 'normalizer' = {self.normalizer!r}; expected one of "
                             f"{tuple(NORMALIZERS)}")

    def encoder_config(self) -> EncoderConfig:
        """The :class:`EncoderConfig` of one block (``vocab_size`` is unused by a block)."""
        return EncoderConfig(vocab_size=1, dim=self.dim, num_heads=self.num_heads, num_layers=self.num_layers,
                             mlp_ratio=float(self.mlp_ratio), norm="pre", positions="none",
                             normalizer=self.normalizer, dropout=self.dropout, attn_dropout=self.attn_dropout)


class ViT(nn.Module):
    """Patch embedding → 2-D sin-cos positions per image → [CLS] + pre-LN blocks → LayerNorm → linear head.

    ``forward`` takes a batch tensor ``[B, C, H, W]`` or a list of images
    ``[C, H_i, W_i]`` of different sizes; see the module docstring for padding
    and the patch layout.
    """

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        if not isinstance(cfg, ViTConfig):
            raise TypeError(f"ViT: argument 'cfg' must be a ViTConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.patch_embed = nn.Conv2d(cfg.in_channels, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.cls_token else None
        if self.cls is not None:
            nn.init.normal_(self.cls, std=0.02)
        block_cfg = cfg.encoder_config()
        self.blocks = nn.ModuleList(EncoderBlock(block_cfg) for _ in range(cfg.num_layers))
        self.ln_f = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)

    # ----------------------------------------------------------------------- public

    def forward(self, images: Tensor | Sequence[Tensor], need_weights: bool = False) -> tuple[Tensor, dict]:
        """Classify a batch of images.

        Args:
            images: ``[B, C, H, W]`` float, or a list of ``B`` float images ``[C, H_i, W_i]``
                (any sizes, each side ``>= patch_size``).
            need_weights: also return attention weights (and the CLS attention).

        Returns:
            ``(logits [B, num_classes], info)`` with ``info``:

            - ``"patch_mask"``: bool ``[B, L]``, True = a real patch of the image;
            - ``"grid_sizes"``: list of ``B`` tuples ``(h_b, w_b)``, each image's patch grid;
            - ``"grid"``: ``(Hg, Wg)``, the padded grid, ``L = Hg*Wg``;
            - ``"cls_attention"``: ``[B, L]`` the last layer's CLS→patch attention averaged
              over heads, exactly 0 on padded patches (with ``cls_token=False``: the mean
              attention each patch receives from the real patches); None unless ``need_weights``;
            - ``"weights"``: per-layer attention ``[B, H, T, T]`` (``T = 1+L`` with a CLS token,
              token 0 = CLS); None unless ``need_weights``.
        """
        pixels, patch_mask, grid_sizes = self._pad_batch(images)  # [B, C, Hg*P, Wg*P], [B, Hg, Wg]
        b = pixels.shape[0]
        x = self.patch_embed(pixels)  # [B, E, Hg, Wg]
        hg, wg = x.shape[-2], x.shape[-1]
        x = x.flatten(2).transpose(1, 2)  # [B, L, E]
        x = x + self._positions(grid_sizes, hg, wg, x.dtype, x.device)  # [B, L, E]
        patch_mask = patch_mask.reshape(b, hg * wg)  # [B, L]
        x = x * patch_mask.unsqueeze(-1).to(x.dtype)  # padded tokens = 0 (they are never attended anyway)

        keep = patch_mask
        if self.cls is not None:
            x = torch.cat([self.cls.expand(b, 1, -1).to(x.dtype), x], dim=1)  # [B, 1+L, E]
            keep = torch.cat([patch_mask.new_ones(b, 1), patch_mask], dim=1)  # [B, 1+L]
        key_mask = keep[:, None, None, :]  # [B, 1, 1, T]: no query attends to a padded patch

        weights: list[Tensor] = []
        for blk in self.blocks:
            x, w = blk(x, key_mask, need_weights)  # [B, T, E], [B, H, T, T] or None
            if w is not None:
                weights.append(w)
        x = self.ln_f(x)  # [B, T, E]

        if self.cls is not None:
            pooled = x[:, 0]  # [B, E]
        else:
            m = patch_mask.unsqueeze(-1).to(x.dtype)  # [B, L, 1]
            pooled = (x * m).sum(1) / m.sum(1)  # [B, E]
        logits = self.head(pooled)  # [B, num_classes]

        cls_attention = None
        if need_weights:
            last = weights[-1].mean(1)  # [B, T, T], averaged over heads
            if self.cls is not None:
                cls_attention = last[:, 0, 1:]  # [B, L]
            else:
                m = patch_mask.to(last.dtype)  # [B, L]
                cls_attention = (last * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True)  # [B, L]
        info = {"patch_mask": patch_mask, "grid_sizes": grid_sizes, "grid": (hg, wg),
                "cls_attention": cls_attention, "weights": weights if need_weights else None}
        return logits, info

    # ----------------------------------------------------------------------- internals

    def _pad_batch(self, images: Tensor | Sequence[Tensor]) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
        """Validate and pad: ``(pixels [B, C, Hg*P, Wg*P], patch_mask [B, Hg, Wg], grid sizes)``."""
        p, c = self.cfg.patch_size, self.cfg.in_channels
        if isinstance(images, Tensor):
            if images.dim() != 4:
                raise ValueError(f"ViT: argument 'images' has shape {tuple(images.shape)}; expected [B, C, H, W] "
                                 "or a list of [C, H, W] images")
            items = list(images)
        elif isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
            items = list(images)
            for i, img in enumerate(items):
                if not isinstance(img, Tensor):
                    raise TypeError(f"ViT: argument 'images[{i}]' must be a torch.Tensor, got {type(img).__name__}")
                if img.dim() != 3:
                    raise ValueError(f"ViT: argument 'images[{i}]' has shape {tuple(img.shape)}; expected [C, H, W]")
        else:
            raise TypeError(f"ViT: argument 'images' must be a tensor [B, C, H, W] or a list of [C, H, W] tensors, "
                            f"got {type(images).__name__}")
        if len(items) == 0:
            raise ValueError("ViT: argument 'images' is empty; expected at least one image")

        dtype = self.patch_embed.weight.dtype
        grid_sizes: list[tuple[int, int]] = []
        for i, img in enumerate(items):
            name = "images" if isinstance(images, Tensor) else f"images[{i}]"
            if not img.is_floating_point():
                raise TypeError(f"ViT: argument '{name}' has dtype {img.dtype}; expected a floating dtype "
                                "(convert with .float())")
            if img.shape[0] != c:
                raise ValueError(f"ViT: argument '{name}' has {img.shape[0]} channels (shape {tuple(img.shape)}); "
                                 f"expected in_channels = {c}")
            h, w = img.shape[-2], img.shape[-1]
            if h < p or w < p:
                raise ValueError(f"ViT: argument '{name}' has size {h}x{w} (H x W); expected each side >= "
                                 f"patch_size = {p}")
            grid_sizes.append((math.ceil(h / p), math.ceil(w / p)))

        hg = max(g[0] for g in grid_sizes)
        wg = max(g[1] for g in grid_sizes)
        if isinstance(images, Tensor):  # one size: one pad of the whole batch
            h, w = images.shape[-2:]
            pixels = F.pad(images.to(dtype), (0, wg * p - w, 0, hg * p - h))  # [B, C, Hg*P, Wg*P]
        else:
            pixels = torch.stack([F.pad(img.to(dtype), (0, wg * p - img.shape[-1], 0, hg * p - img.shape[-2]))
                                  for img in items])  # [B, C, Hg*P, Wg*P]
        rows = torch.arange(hg, device=pixels.device)  # [Hg]
        cols = torch.arange(wg, device=pixels.device)  # [Wg]
        h_b = torch.tensor([g[0] for g in grid_sizes], device=pixels.device)  # [B]
        w_b = torch.tensor([g[1] for g in grid_sizes], device=pixels.device)  # [B]
        patch_mask = (rows[None, :, None] < h_b[:, None, None]) & (cols[None, None, :] < w_b[:, None, None])
        return pixels, patch_mask, grid_sizes  # patch_mask: [B, Hg, Wg]

    def _positions(self, grid_sizes: list[tuple[int, int]], hg: int, wg: int, dtype: torch.dtype,
                   device: torch.device) -> Tensor:
        """Each image's own ``sincos_2d_encoding(h_b, w_b, E)`` in its patches, zeros elsewhere: ``[B, L, E]``."""
        e = self.cfg.dim
        pos = torch.zeros(len(grid_sizes), hg, wg, e, dtype=dtype, device=device)  # [B, Hg, Wg, E]
        tables: dict[tuple[int, int], Tensor] = {}
        for i, (h, w) in enumerate(grid_sizes):
            if (h, w) not in tables:
                tables[(h, w)] = sincos_2d_encoding(h, w, e, dtype=dtype, device=device).view(h, w, e)  # [h, w, E]
            pos[i, :h, :w] = tables[(h, w)]
        return pos.view(len(grid_sizes), hg * wg, e)  # [B, L, E]


def patch_grids(values: Tensor, info: dict) -> list[Tensor]:
    """Cut per-patch values ``[B, L]`` (e.g. ``info["cls_attention"]``) into each image's grid ``[h_b, w_b]``."""
    hg, wg = info["grid"]
    if not isinstance(values, Tensor) or values.dim() != 2 or values.shape[1] != hg * wg:
        got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"patch_grids: argument 'values' has shape {got}; expected [B, L={hg * wg}]")
    grid = values.view(values.shape[0], hg, wg)  # [B, Hg, Wg]
    return [grid[i, :h, :w] for i, (h, w) in enumerate(info["grid_sizes"])]
