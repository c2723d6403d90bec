"""Synthetic sequence tasks, generated in code and seeded.

Each returns ``(inputs [B, L] long, targets [B, L] long)`` plus what the task
needs; token 0 is padding/blank where used.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["copy_task", "reverse_task", "associative_recall", "alignment_task"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def copy_task(batch: int, length: int, vocab: int, seed: int) -> tuple[Tensor, Tensor]:
    """Targets equal the inputs (tokens 1..vocab-1)."""
    x = torch.randint(1, vocab, (batch, length), generator=_gen(seed))
    return x, x.clone()


def reverse_task(batch: int, length: int, vocab: int, seed: int) -> tuple[Tensor, Tensor]:
    """Targets are the inputs reversed: needs positions (a set model cannot do it)."""
    x = torch.randint(1, vocab, (batch, length), generator=_gen(seed))
    return x, x.flip(-1)


def associative_recall(batch: int, pairs: int, num_keys: int, num_values: int, seed: int
                       ) -> tuple[Tensor, Tensor]:
    """``k1 v1 k2 v2 ... kP vP q``: the target at the last position is the value paired with key ``q``.

    Keys are ids ``1..num_keys``, values ``num_keys+1 .. num_keys+num_values`` (distinct keys per
    sequence). Targets are -100 (ignored) except at the last position.
    """
    g = _gen(seed)
    keys = torch.stack([torch.randperm(num_keys, generator=g)[:pairs] for _ in range(batch)]) + 1  # [B, P]
    vals = torch.randint(num_keys + 1, num_keys + num_values + 1, (batch, pairs), generator=g)  # [B, P]
    pick = torch.randint(pairs, (batch,), generator=g)
    seq = torch.stack([keys, vals], dim=-1).flatten(1)  # [B, 2P]
    query = keys.gather(1, pick[:, None])  # [B, 1]
    x = torch.cat([seq, query], dim=1)  # [B, 2P+1]
    y = torch.full_like(x, -100)
    y[:, -1] = vals.gather(1, pick[:, None]).squeeze(1)
    return x, y


def alignment_task(batch: int, src_len: int, vocab: int, max_fertility: int, seed: int
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """A toy translation with known alignment: each source token emits ``fertility`` target copies.

    Returns ``(source [B, S], target [B, T], fertility [B, S])`` where target token ``t`` is
    ``(source token + vocab // 2) mod vocab`` repeated ``fertility`` times (0 = dropped),
    padded with 0 to the longest target. Coverage of a model's cross-attention can be
    compared with ``fertility``.
    """
    g = _gen(seed)
    src = torch.randint(1, vocab, (batch, src_len), generator=g)
    fert = torch.randint(0, max_fertility + 1, (batch, src_len), generator=g)
    tgt_rows = []
    for b in range(batch):
        mapped = (src[b] + vocab // 2) % vocab
        mapped = torch.where(mapped == 0, torch.ones_like(mapped), mapped)
        tgt_rows.append(mapped.repeat_interleave(fert[b]))
    t_max = max(1, max(len(r) for r in tgt_rows))
    tgt = torch.zeros(batch, t_max, dtype=torch.long)
    for b, r in enumerate(tgt_rows):
        tgt[b, : len(r)] = r
    return src, tgt, fert
