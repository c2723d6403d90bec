"""Multi-head attention with per-head sizes, on the single :func:`attend` primitive.

:class:`MultiHeadAttention` projects queries, keys and values once each (one
fused ``nn.Linear`` for Q, one for K, one for V), splits the projections into
heads, runs :func:`beamattn.core.attend.attend` and mixes the heads with the
output projection ``W_O``. Heads may have different sizes (``head_dims=[16, 32,
64, 64]``); heads of one size are batched into one ``attend`` call.

Shapes (batch first): ``query [B, Lq, E]``, ``key [B, Lk, kdim]``, ``value [B,
Lk, vdim]``; output ``[B, Lq, E]``; attention weights ``[B, H, Lq, Lk]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attend import NORMALIZERS, NormalizerFn, ScoreFn, attend

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
    """Multi-head attention whose heads may have different sizes.

    Head ``h`` has query/key size ``head_dims[h]`` and value size
    ``value_head_dims[h]``. The projections are fused: ``q_proj: Linear(E,
    sum(head_dims))``, ``k_proj: Linear(kdim, sum(head_dims))``, ``v_proj:
    Linear(vdim, sum(value_head_dims))``; head ``h`` owns a contiguous slice of
    their output features, in head order. ``out_proj: Linear(sum(value_head_dims),
    E)`` is ``W_O``; head ``h`` owns the matching slice of its input features.

    Heads that share ``(head_dims[h], value_head_dims[h])`` form a group and are
    computed in one batched :func:`attend` call on ``[B, G, L, d]``; with equal
    heads there is a single call.

    Args:
        embed_dim: ``E``, feature size of the query and of the output.
        num_heads: ``H`` equal heads of size ``embed_dim // num_heads`` (must
            divide). Give exactly one of ``num_heads`` and ``head_dims``.
        head_dims: per-head query/key sizes, e.g. ``[16, 32, 64, 64]``; the sum
            need not equal ``embed_dim``.
        value_head_dims: per-head value sizes (default: ``head_dims``).
        kdim: feature size of ``key`` (default ``embed_dim``).
        vdim: feature size of ``value`` (default ``embed_dim``).
        bias: biases in all four projections.
        score: ``"dot"``, ``"cosine"`` or a callable ``(q, k) -> [..., Lq, Lk]``
            (an ``nn.Module`` is registered as a submodule; it receives every
            head group, so it must accept each head size). ``"bilinear"`` is
            rejected: pass a callable such as :class:`BilinearScore` instead.
        normalizer: ``"softmax"``, ``"sparsemax"``, ``"entmax15"`` or a callable.
        temperature: scores are divided by it before normalising.
        shared_scale: if given, every head multiplies its scores by this one
            number. By default each head uses :func:`attend`'s default for its
            own size (``1/sqrt(d_h)`` for ``"dot"``). A shared scale reproduces
            the failure where larger heads have larger dot products, sharper
            weights and dominate the gradients.
        dropout: attention dropout probability (active in training mode).
        topk: keep only the ``topk`` largest scores per query.
        window: local attention, ``|i - j| <= window``.
    """

    embed_dim: Final[int]
    kdim: Final[int]
    vdim: Final[int]
    num_heads: Final[int]
    equal_heads: Final[bool]

    def __init__(
        self,
        embed_dim: int,
        num_heads: int | None = None,
        *,
        head_dims: Sequence[int] | None = None,
        value_head_dims: Sequence[int] | None = None,
        kdim: int | None = None,
        vdim: int | None = None,
        bias: bool = True,
        score: Union[str, ScoreFn] = "dot",
        normalizer: Union[str, NormalizerFn] = "softmax",
        temperature: float = 1.0,
        shared_scale: float | None = None,
        dropout: float = 0.0,
        topk: int | None = None,
        window: int | None = None,
    ) -> None:
        super().__init__()
        _check_int("embed_dim", embed_dim, 1)
        kdim = embed_dim if kdim is None else kdim
        vdim = embed_dim if vdim is None else vdim
        _check_int("kdim", kdim, 1)
        _check_int("vdim", vdim, 1)
        head_dims = _resolve_head_dims(embed_dim, num_heads, head_dims)
        if value_head_dims is None:
            value_head_dims = head_dims
        else:
            value_head_dims = _check_dims("value_head_dims", value_head_dims)
            if len(value_head_dims) != len(head_dims):
                raise ValueError(f"MultiHeadAttention: argument 'value_head_dims' = {list(value_head_dims)} has "
                                 f"{len(value_head_dims)} entries; expected one per head ({len(head_dims)} heads)")
        _check_score(score)
        _check_normalizer(normalizer)
        _check_positive_float("temperature", temperature)
        if shared_scale is not None:
            _check_positive_float("shared_scale", shared_scale)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadAttention: argument 'dropout' = {dropout!r}; expected a float in [0, 1)")
        if topk is not None:
            _check_int("topk", topk, 1)
        if window is not None:
            _check_int("window", window, 0)

        self.embed_dim = embed_dim
        self.kdim = kdim
        self.vdim = vdim
        self.head_dims: tuple[int, ...] = head_dims
        self.value_head_dims: tuple[int, ...] = value_head_dims
        self.num_heads = len(head_dims)
        self.equal_heads = len(set(zip(head_dims, value_head_dims))) == 1
        self.score = score  # an nn.Module score is registered as a submodule
        self.normalizer = normalizer
        self.temperature = float(temperature)
        self.shared_scale = None if shared_scale is None else float(shared_scale)
        self.dropout = float(dropout)
        self.topk = topk
        self.window = window

        self.q_proj = nn.Linear(embed_dim, sum(head_dims), bias=bias)
        self.k_proj = nn.Linear(kdim, sum(head_dims), bias=bias)
        self.v_proj = nn.Linear(vdim, sum(value_head_dims), bias=bias)
        self.out_proj = nn.Linear(sum(value_head_dims), embed_dim, bias=bias)

        # Feature offsets of each head in the fused projections.
        self._qk_offsets: tuple[int, ...] = tuple(_offsets(head_dims))
        self._v_offsets: tuple[int, ...] = tuple(_offsets(value_head_dims))
        # Head groups of one (d, dv), in order of first appearance: (head indices, d, dv).
        groups: dict[tuple[int, int], list[int]] = {}
        for h, dims in enumerate(zip(head_dims, value_head_dims)):
            groups.setdefault(dims, []).append(h)
        self.groups: tuple[tuple[tuple[int, ...], int, int], ...] = tuple(
            (tuple(idx), d, dv) for (d, dv), idx in groups.items())
        order = [h for idx, _, _ in self.groups for h in idx]  # head order after concatenating the groups
        self._weights_perm: tuple[int, ...] | None = (
            None if order == list(range(self.num_heads)) else tuple(order.index(h) for h in range(self.num_heads)))

    # ----------------------------------------------------------------------- public

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        bias: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: ``[B, Lq, embed_dim]``.
            key: ``[B, Lk, kdim]``; ``None`` = ``query`` (self-attention).
            value: ``[B, Lk, vdim]``; ``None`` = ``key``.
            mask: bool, True = may attend. ``[Lq, Lk]`` (same for every sample
                and head), ``[B, Lq, Lk]`` (per sample; a head dim is inserted)
                or ``[B, H, Lq, Lk]``; any dim may be 1 to broadcast, e.g. a key
                padding mask ``[B, 1, 1, Lk]`` or ``[B, 1, Lk]``. Note that a 2-D
                mask is ``[Lq, Lk]``, not ``[B, Lk]``.
            causal: query ``i`` attends only to keys ``j <= i``.
            need_weights: also return the attention weights (before dropout).
            bias: additive score bias ``[H, Lq, Lk]`` or ``[B, H, Lq, Lk]`` (e.g. a relative-position
                bias), added after scaling.

        Returns:
            ``(out [B, Lq, embed_dim], weights [B, H, Lq, Lk] or None)``.
        """
        heads, weights = self._attend_heads(query, key, value, mask, causal, need_weights, bias)  # [B, Lq, sum(dv)]
        out = self.out_proj(heads)  # [B, Lq, E]
        return out, weights

    def head_outputs(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        bias: Tensor | None = None,
    ) -> Tensor:
        """Each head's contribution to the output: ``o_h W_O[:, slice_h]ᵀ``, without the output bias.

        Same arguments as :meth:`forward`. Returns ``[B, H, Lq, embed_dim]``;
        ``head_outputs(...).sum(1) + out_proj.bias`` equals ``forward(...)[0]``.
        Useful for each head's share of the output norm.
        """
        heads, _ = self._attend_heads(query, key, value, mask, causal, False, bias)  # [B, Lq, sum(dv)]
        w_o = self.out_proj.weight  # [E, sum(dv)]
        per_head = [
            F.linear(heads[..., off:off + dv], w_o[:, off:off + dv])  # [B, Lq, E]
            for off, dv in zip(self._v_offsets, self.value_head_dims)
        ]
        return torch.stack(per_head, dim=1)  # [B, H, Lq, E]

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """An equal-heads, dot, softmax copy of ``torch.nn.MultiheadAttention`` with its weights.

        Our module is always batch-first, whatever ``mha.batch_first`` is:
        transpose ``[L, B, E]`` inputs of a ``batch_first=False`` module.
        ``add_bias_kv`` and ``add_zero_attn`` are not supported.
        """
        if not isinstance(mha, nn.MultiheadAttention):
            raise TypeError(f"MultiHeadAttention.from_torch: argument 'mha' must be a torch.nn.MultiheadAttention, "
                            f"got {type(mha).__name__}")
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("MultiHeadAttention.from_torch: argument 'mha' uses add_bias_kv or add_zero_attn; "
                             "expected neither (not supported)")
        w_o = mha.out_proj.weight  # [E, E]
        module = cls(mha.embed_dim, mha.num_heads, kdim=mha.kdim, vdim=mha.vdim, bias=mha.in_proj_bias is not None,
                     dropout=mha.dropout).to(device=w_o.device, dtype=w_o.dtype)
        e = mha.embed_dim
        with torch.no_grad():
            if mha.in_proj_weight is not None:  # packed [3E, E]: rows q, k, v
                w_q, w_k, w_v = mha.in_proj_weight.split(e, dim=0)
            else:  # kdim/vdim differ from embed_dim: separate weights
                w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
            module.q_proj.weight.copy_(w_q)  # [E, E]
            module.k_proj.weight.copy_(w_k)  # [E, kdim]
            module.v_proj.weight.copy_(w_v)  # [E, vdim]
            module.out_proj.weight.copy_(w_o)  # [E, E]
            if mha.in_proj_bias is not None:
                b_q, b_k, b_v = mha.in_proj_bias.split(e)
                module.q_proj.bias.copy_(b_q)
                module.k_proj.bias.copy_(b_k)
                module.v_proj.bias.copy_(b_v)
                module.out_proj.bias.copy_(mha.out_proj.bias)
        return module.train(mha.training)

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, head_dims={list(self.head_dims)}, "
                f"value_head_dims={list(self.value_head_dims)}, kdim={self.kdim}, vdim={self.vdim}, "
                f"score={self.score if isinstance(self.score, str) else type(self.score).__name__!r}, "
                f"normalizer={self.normalizer!r}, temperature={self.temperature}, shared_scale={self.shared_scale}, "
                f"dropout={self.dropout}, topk={self.topk}, window={self.window}")

    # ----------------------------------------------------------------------- internals

    def _attend_heads(
        self,
        query: Tensor,
        key: Tensor | None,
        value: Tensor | None,
        mask: Tensor | None,
        causal: bool,
        need_weights: bool,
        bias: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Projections and attention; returns the concatenated head outputs ``[B, Lq, sum(dv)]`` and weights."""
        key = query if key is None else key
        value = key if value is None else value
        self._check_inputs(query, key, value)
        b, lq, lk = query.shape[0], query.shape[1], key.shape[1]
        mask = self._check_mask(mask, b, lq, lk)  # bool [B|1, H|1, Lq|1, Lk|1] or None
        if bias is not None:
            if not isinstance(bias, Tensor) or bias.dim() not in (3, 4) or bias.shape[-3] != self.num_heads:
                got = tuple(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__
                raise ValueError(f"MultiHeadAttention: argument 'bias' has shape {got}; expected [H={self.num_heads}, "
                                 f"Lq, Lk] or [B, H, Lq, Lk]")
            bias = bias if bias.dim() == 4 else bias.unsqueeze(0)  # [B|1, H, Lq, Lk]

        q = self.q_proj(query)  # [B, Lq, sum(d)]
        k = self.k_proj(key)  # [B, Lk, sum(d)]
        v = self.v_proj(value)  # [B, Lk, sum(dv)]

        if self.equal_heads:  # one batched call on all heads
            h, d, dv = self.num_heads, self.head_dims[0], self.value_head_dims[0]
            q = q.view(b, lq, h, d).transpose(1, 2)  # [B, H, Lq, d]
            k = k.view(b, lk, h, d).transpose(1, 2)  # [B, H, Lk, d]
            v = v.view(b, lk, h, dv).transpose(1, 2)  # [B, H, Lk, dv]
            out, weights = self._attend(q, k, v, mask, causal, need_weights, bias)  # [B, H, Lq, dv], [B, H, Lq, Lk]
            return out.transpose(1, 2).reshape(b, lq, h * dv), weights  # [B, Lq, H*dv]

        per_head: list[Tensor | None] = [None] * self.num_heads  # filled in head order
        group_weights: list[Tensor] = []
        for idx, d, dv in self.groups:
            q_g = self._split(q, idx, self._qk_offsets, d)  # [B, G, Lq, d]
            k_g = self._split(k, idx, self._qk_offsets, d)  # [B, G, Lk, d]
            v_g = self._split(v, idx, self._v_offsets, dv)  # [B, G, Lk, dv]
            mask_g = mask
            if mask is not None and mask.shape[1] > 1:
                mask_g = mask[:, list(idx)]  # [B|1, G, Lq|1, Lk|1]
            bias_g = None if bias is None else bias[:, list(idx)]  # [B|1, G, Lq, Lk]
            out_g, w_g = self._attend(q_g, k_g, v_g, mask_g, causal, need_weights, bias_g)  # [B, G, Lq, dv]
            for i, h in enumerate(idx):
                per_head[h] = out_g[:, i]  # [B, Lq, dv]
            if w_g is not None:
                group_weights.append(w_g)  # [B, G, Lq, Lk]
        heads = torch.cat(per_head, dim=-1)  # type: ignore[arg-type]  # [B, Lq, sum(dv)]

        weights = None
        if need_weights:
            weights = torch.cat(group_weights, dim=1)  # [B, H, Lq, Lk], heads in group order
            if self._weights_perm is not None:
                perm = torch.tensor(self._weights_perm, device=weights.device)
                weights = weights.index_select(1, perm)  # [B, H, Lq, Lk], heads in head order
        return heads, weights

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool,
                need_weights: bool, bias: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """One :func:`attend` call on ``q [B, G, Lq, d]``, ``k [B, G, Lk, d]``, ``v [B, G, Lk, dv]``."""
        result = attend(
            q, k, v,
            mask=mask,
            bias=None if bias is None else bias.to(q.dtype),
            causal=causal,
            scale=self.shared_scale,  # None: attend's per-head default, e.g. 1/sqrt(d) for "dot"
            score=self.score,
            normalizer=self.normalizer,
            temperature=self.temperature,
            topk=self.topk,
            window=self.window,
            dropout_p=self.dropout,
            training=self.training,
            return_weights=need_weights,
        )
        if need_weights:
            out, weights = result  # [B, G, Lq, dv], [B, G, Lq, Lk]
            return out, weights
        return result, None  # [B, G, Lq, dv]

    @staticmethod
    def _split(x: Tensor, idx: tuple[int, ...], offsets: tuple[int, ...], d: int) -> Tensor:
        """Heads ``idx`` (all of size ``d``) of the fused projection ``x [B, L, F]`` → ``[B, G, L, d]``."""
        b, length = x.shape[0], x.shape[1]
        if list(idx) == list(range(idx[0], idx[0] + len(idx))):  # consecutive heads: a contiguous slice
            x_g = x.narrow(-1, offsets[idx[0]], len(idx) * d)  # [B, L, G*d]
            return x_g.reshape(b, length, len(idx), d).transpose(1, 2)  # [B, G, L, d]
        return torch.stack([x[..., offsets[h]:offsets[h] + d] for h in idx], dim=1)  # [B, G, L, d]

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        expected = {"query": ("Lq", self.embed_dim, "embed_dim"), "key": ("Lk", self.kdim, "kdim"),
                    "value": ("Lk", self.vdim, "vdim")}
        for name, t in (("query", query), ("key", key), ("value", value)):
            length, dim, dim_name = expected[name]
            if not isinstance(t, Tensor):
                raise TypeError(f"MultiHeadAttention: argument '{name}' must be a torch.Tensor, got "
                                f"{type(t).__name__}")
            if t.dim() != 3 or t.shape[-1] != dim:
                raise ValueError(f"MultiHeadAttention: argument '{name}' has shape {tuple(t.shape)}; expected "
                                 f"[B, {length}, {dim_name}={dim}] (batch first)")
        for name, t in (("key", key), ("value", value)):
            if t.shape[0] != query.shape[0]:
                raise ValueError(f"MultiHeadAttention: argument '{name}' has batch size {t.shape[0]} but 'query' "
                                 f"has {query.shape[0]}; expected equal batch sizes")
        if key.shape[1] != value.shape[1]:
            raise ValueError(f"MultiHeadAttention: 'key' has Lk={key.shape[1]} positions but 'value' has "
                             f"{value.shape[1]}; expected equal lengths")

    def _check_mask(self, mask: Tensor | None, b: int, lq: int, lk: int) -> Tensor | None:
        """Validate ``mask`` and bring it to 4 dims ``[B|1, H|1, Lq|1, Lk|1]``."""
        if mask is None:
            return None
        if not isinstance(mask, Tensor):
            raise TypeError(f"MultiHeadAttention: argument 'mask' must be a torch.Tensor, got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise TypeError(f"MultiHeadAttention: argument 'mask' has dtype {mask.dtype}; expected torch.bool "
                            "(True = may attend)")
        target = (b, self.num_heads, lq, lk)
        error = ValueError(f"MultiHeadAttention: argument 'mask' has shape {tuple(mask.shape)}; expected [Lq, Lk], "
                           f"[B, Lq, Lk] or [B, H, Lq, Lk] with each dim equal or 1, [B, H, Lq, Lk] = {target}")
        if mask.dim() == 2:
            mask = mask[None, None]  # [1, 1, Lq, Lk]
        elif mask.dim() == 3:
            mask = mask.unsqueeze(1)  # [B, 1, Lq, Lk]
        elif mask.dim() != 4:
            raise error
        if any(m not in (1, t) for m, t in zip(mask.shape, target)):
            raise error
        return mask


# --------------------------------------------------------------------------- helpers


def _offsets(dims: Sequence[int]) -> list[int]:
    """Start of each block in a concatenation of blocks of sizes ``dims``."""
    out, total = [], 0
    for d in dims:
        out.append(total)
        total += d
    return out


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"MultiHeadAttention: argument '{name}' = {value!r} must be an int")
    if value < low:
        raise ValueError(f"MultiHeadAttention: argument '{name}' = {value}; expected an int >= {low}")


def _check_positive_float(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"MultiHeadAttention: argument '{name}' = {value!r}; expected a finite float > 0")


def _check_dims(name: str, dims: object) -> tuple[int, ...]:
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or len(dims) == 0:
        raise ValueError(f"MultiHeadAttention: argument '{name}' = {dims!r}; expected a non-empty list of "
                         "positive ints, one per head")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"MultiHeadAttention: argument '{name}' = {list(dims)} contains {d!r}; expected "
                             "positive ints")
    return tuple(dims)


def _resolve_head_dims(embed_dim: int, num_heads: int | None, head_dims: Sequence[int] | None) -> tuple[int, ...]:
    if (num_heads is None) == (head_dims is None):
        raise ValueError(f"MultiHeadAttention: got num_heads={num_heads!r} and head_dims={head_dims!r}; expected "
                         "exactly one of 'num_heads' (equal heads) and 'head_dims' (per-head sizes)")
    if head_dims is not None:
        return _check_dims("head_dims", head_dims)
    _check_int("num_heads", num_heads, 1)
    if embed_dim % num_heads != 0:
        raise ValueError(f"MultiHeadAttention: argument 'embed_dim' = {embed_dim} is not divisible by "
                         f"'num_heads' = {num_heads}; expected a multiple (or give 'head_dims')")
    return (embed_dim // num_heads,) * num_heads


def _check_score(score: object) -> None:
    if isinstance(score, str):
        if score == "bilinear":
            raise ValueError("MultiHeadAttention: argument 'score' = 'bilinear' needs a weight per head size and is "
                             "not supported; expected 'dot', 'cosine' or a callable (q, k) -> scores, e.g. a "
                             "BilinearScore module when all heads have one size")
        if score not in ("dot", "cosine"):
            raise ValueError(f"MultiHeadAttention: argument 'score' = {score!r} is unknown; expected 'dot', "
                             "'cosine' or a callable (q, k) -> scores")
    elif not callable(score):
        raise TypeError(f"MultiHeadAttention: argument 'score' must be a name or a callable, got "
                        f"{type(score).__name__}")


def _check_normalizer(normalizer: object) -> None:
    if isinstance(normalizer, str):
        if normalizer not in NORMALIZERS:
            raise ValueError(f"MultiHeadAttention: argument 'normalizer' = {normalizer!r} is unknown; expected one "
                             f"of {tuple(NORMALIZERS)} or a callable")
    elif not callable(normalizer):
        raise TypeError(f"MultiHeadAttention: argument 'normalizer' must be a name or a callable, got "
                        f"{type(normalizer).__name__}")
