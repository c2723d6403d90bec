"""Token embedding, encoder block (pre-LN or post-LN) and encoder, on ``beamattn.core``.

Style follows nanoGPT's ``model.py``: a small dataclass config, shape comments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..core import MultiHeadAttention, periodic_encoding, sinusoidal_encoding
from ..core.positional import LearnedPositionalEmbedding, RelativePositionBias

__all__ = ["EncoderConfig", "TokenEmbedding", "EncoderBlock", "Encoder"]

POSITIONS = ("none", "sinusoidal", "periodic", "learned", "relative")


@dataclass
class EncoderConfig:
    """Configuration of :class:`Encoder`.

    Args:
        vocab_size: number of token ids.
        dim: model width ``E``.
        num_heads: heads per block (equal sizes), or ``head_dims`` for heads of different sizes.
        head_dims: per-head sizes (overrides ``num_heads``).
        shared_scale: one score scale for every head (the failure mode of mismatched heads).
        num_layers: encoder blocks.
        mlp_ratio: MLP width / ``dim``.
        norm: ``"pre"`` (LayerNorm before attention/MLP) or ``"post"`` (after the residual sum).
        positions: ``"none"``, ``"sinusoidal"``, ``"periodic"``, ``"learned"``, ``"relative"``.
        period: period of the periodic encoding.
        max_length: longest sequence for learned positions; clipping distance for relative ones.
        normalizer, score, temperature, topk, window: passed to :func:`beamattn.core.attend`.
        dropout: residual / MLP dropout; ``attn_dropout``: attention-weight dropout.
        causal: causal self-attention.
    """

    vocab_size: int
    dim: int = 64
    num_heads: int = 4
    head_dims: list[int] | None = None
    shared_scale: float | None = None
    num_layers: int = 2
    mlp_ratio: float = 2.0
    norm: str = "pre"
    positions: str = "sinusoidal"
    period: int = 16
    max_length: int = 256
    normalizer: str = "softmax"
    score: str = "dot"
    temperature: float = 1.0
    topk: int | None = None
    window: int | None = None
    dropout: float = 0.0
    attn_dropout: float = 0.0
    causal: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.norm not in ("pre", "post"):
            raise ValueError(f"EncoderConfig: field 'norm' = {self.norm!r}; expected 'pre' or 'post'")
        if self.positions not in POSITIONS:
            raise ValueError(f"EncoderConfig: field 'positions' = {self.positions!r}; expected one of {POSITIONS}")
        for name in ("vocab_size", "dim", "num_layers", "period", "max_length"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"EncoderConfig: field '{name}' = {v!r}; expected an integer >= 1")


class TokenEmbedding(nn.Module):
    """Token ids ``[B, L]`` → vectors ``[B, L, E]`` (+ absolute positions unless "none"/"relative")."""

    def __init__(self, vocab_size: int, dim: int, positions: str = "sinusoidal", period: int = 16,
                 max_length: int = 256) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.tokens.weight, std=1.0)  # unit-variance components: positions add on the same scale
        self.positions, self.period, self.dim = positions, period, dim
        self.learned = LearnedPositionalEmbedding(max_length, dim) if positions == "learned" else None

    def position_table(self, length: int, device=None) -> Tensor | None:
        """``[L, E]`` absolute encodings, or None."""
        if self.positions == "sinusoidal":
            return sinusoidal_encoding(length, self.dim, device=device)
        if self.positions == "periodic":
            return periodic_encoding(length, self.dim, self.period, device=device)
        if self.positions == "learned":
            return self.learned(length)
        return None

    def forward(self, ids: Tensor) -> Tensor:
        x = self.tokens(ids)  # [B, L, E]
        pe = self.position_table(ids.shape[-1], device=ids.device)
        return x if pe is None else x + pe.to(x.dtype)


class EncoderBlock(nn.Module):
    """Self-attention + MLP with residuals; ``norm="pre"`` or ``"post"``.

    pre-LN:  ``x = x + Attn(LN(x)); x = x + MLP(LN(x))``
    post-LN: ``x = LN(x + Attn(x)); x = LN(x + MLP(x))``
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.norm_type = cfg.norm
        self.attn = MultiHeadAttention(
            cfg.dim, None if cfg.head_dims else cfg.num_heads, head_dims=cfg.head_dims, score=cfg.score,
            normalizer=cfg.normalizer, temperature=cfg.temperature, shared_scale=cfg.shared_scale,
            dropout=cfg.attn_dropout, topk=cfg.topk, window=cfg.window)
        hidden = max(1, int(cfg.dim * cfg.mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(), nn.Linear(hidden, cfg.dim))
        self.ln1, self.ln2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.causal = cfg.causal
        self.rel_bias = (RelativePositionBias(self.attn.num_heads, cfg.max_length)
                         if cfg.positions == "relative" else None)

    def _attend(self, x: Tensor, mask: Tensor | None, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        if self.rel_bias is not None:
            # The relative bias enters as a float mask: rebuild a combined bool mask + bias path.
            bias = self.rel_bias(x.shape[1], x.shape[1])  # [H, L, L]
            return self.attn(x, mask=mask, causal=self.causal, need_weights=need_weights, bias=bias)
        return self.attn(x, mask=mask, causal=self.causal, need_weights=need_weights)

    def forward(self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """``x [B, L, E]`` → ``([B, L, E], weights [B, H, L, L] or None)``."""
        if self.norm_type == "pre":
            a, w = self._attend(self.ln1(x), mask, need_weights)
            x = x + self.drop(a)
            x = x + self.drop(self.mlp(self.ln2(x)))
        else:
            a, w = self._attend(x, mask, need_weights)
            x = self.ln1(x + self.drop(a))
            x = self.ln2(x + self.drop(self.mlp(x)))
        return x, w


class Encoder(nn.Module):
    """Embedding → ``num_layers`` blocks → final LayerNorm (pre-LN only) → per-token logits."""

    def __init__(self, cfg: EncoderConfig, num_outputs: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.dim, cfg.positions, cfg.period, cfg.max_length)
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.num_layers))
        self.ln_f = nn.LayerNorm(cfg.dim) if cfg.norm == "pre" else nn.Identity()
        self.head = nn.Linear(cfg.dim, num_outputs or cfg.vocab_size)

    def forward(self, ids: Tensor, mask: Tensor | None = None, need_weights: bool = False
                ) -> tuple[Tensor, list[Tensor]]:
        """``ids [B, L]`` → ``(logits [B, L, V], per-layer weights)`` (weights empty unless asked for)."""
        x = self.embed(ids) * (1.0 if self.cfg.positions in ("none", "relative") else 1 / math.sqrt(2))
        weights = []
        for blk in self.blocks:
            x, w = blk(x, mask, need_weights)
            if w is not None:
                weights.append(w)
        return self.head(self.ln_f(x)), weights
