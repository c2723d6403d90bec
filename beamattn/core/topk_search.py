"""Sub-quadratic candidate search for top-k attention: an inverted-file (IVF) index over the keys.

Exact top-k attention must compute all ``Lq·Lk`` scores to find the largest ones, so it saves memory
(query chunking) but not the quadratic compute. An IVF index avoids that, as in faiss's
``IndexIVFFlat`` with the inner-product metric and in the Routing Transformer:

1. **build**: k-means on the keys (``clusters`` centroids, Lloyd iterations from a seeded random subset
   of the keys), cost ``O(iters · Lk · clusters · d)``;
2. **probe**: each query scores the centroids and keeps its ``probes`` best clusters,
   cost ``O(Lq · clusters · d)``;
3. **search**: exact scores between each query and the keys of its probed clusters only, and the top
   ``topk`` of those, cost ``O(Lq · probes · Lk / clusters · d)``.

With ``clusters ≈ sqrt(Lk)`` and fixed ``probes`` every step is ``O(L^1.5 d)`` instead of ``O(L² d)``.
The result is approximate (a true top-k key in an unprobed cluster is missed); with
``probes = clusters`` every key is a candidate and the result is the exact top-k. Pure torch: no index
library is needed, and the same code runs on any device (k-means draws its initial centroids from a
CPU generator seeded by ``seed``, so one seed gives one index everywhere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["IVFSearch", "kmeans", "ivf_topk", "check_search"]


@dataclass(frozen=True)
class IVFSearch:
    """Options of the IVF candidate search (see the module docstring).

    Attributes:
        clusters: k-means centroids; ``None`` = ``ceil(sqrt(Lk))`` (capped at ``Lk``).
        probes: clusters searched per query (capped at ``clusters``); more = better recall, more time.
        iters: Lloyd iterations of k-means.
        seed: seed of the k-means initialisation.
    """

    clusters: int | None = None
    probes: int = 8
    iters: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        for name, val, lo in (("clusters", self.clusters, 1), ("probes", self.probes, 1), ("iters", self.iters, 0),
                              ("seed", self.seed, 0)):
            if val is None and name == "clusters":
                continue
            if isinstance(val, bool) or not isinstance(val, int) or val < lo:
                raise ValueError(f"IVFSearch: field '{name}' = {val!r}; expected an int >= {lo}")

    def num_clusters(self, lk: int) -> int:
        """Centroids used for ``lk`` keys."""
        return min(lk, self.clusters if self.clusters is not None else math.ceil(math.sqrt(lk)))


def check_search(topk_search: object) -> IVFSearch | None:
    """``attend``'s ``topk_search`` argument → an :class:`IVFSearch` or ``None`` (exact); one error line otherwise."""
    if topk_search is None or topk_search == "exact":
        return None
    if topk_search == "ivf":
        return IVFSearch()
    if isinstance(topk_search, IVFSearch):
        return topk_search
    raise ValueError(f"attend: argument 'topk_search' = {topk_search!r}; expected None, 'exact', 'ivf' or an "
                     "IVFSearch(clusters, probes, iters, seed)")


def kmeans(x: Tensor, clusters: int, iters: int, seed: int) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means of the rows of ``x [n, d]`` → centroids ``[clusters, d]``, assignment ``[n]`` (int64).

    Initial centroids: ``clusters`` distinct rows drawn with a CPU generator seeded by ``seed``. An empty
    cluster keeps its previous centroid. Distances are computed as ``|c|²/2 − x·c`` (one matmul).
    """
    n = x.shape[0]
    g = torch.Generator().manual_seed(seed)
    first = torch.randperm(n, generator=g)[:clusters].to(x.device)
    centroids = x[first].clone()  # [c, d]
    xd = x.detach()
    for it in range(iters + 1):
        # argmin_c |x - c|² = argmin_c (|c|²/2 - x·c)
        assign = (0.5 * (centroids * centroids).sum(-1) - xd @ centroids.T).argmin(-1)  # [n]
        if it == iters:
            break
        sums = torch.zeros_like(centroids).index_add_(0, assign, xd)  # [c, d]
        counts = torch.bincount(assign, minlength=clusters).to(x.dtype)  # [c]
        filled = counts > 0
        centroids = torch.where(filled[:, None], sums / counts.clamp(min=1)[:, None], centroids)
    return centroids, assign


def ivf_topk(q: Tensor, k: Tensor, topk: int, search: IVFSearch) -> Tensor:
    """Approximate top-``topk`` keys by inner product for each query, through an IVF index of ``k``.

    Args:
        q: queries ``[Lq, d]``.
        k: keys ``[Lk, d]`` (the index is built from them).
        topk: keys per query, ``1 <= topk <= Lk``.
        search: index options.

    Returns:
        indices ``[Lq, topk]`` (int64) into the keys, best first; where the probed clusters hold fewer than
        ``topk`` keys the rest are ``-1``. No gradient flows through the search (indices only).
    """
    lq, lk = q.shape[0], k.shape[0]
    c = search.num_clusters(lk)
    probes = min(search.probes, c)
    with torch.no_grad():
        centroids, assign = kmeans(k, c, search.iters, search.seed)  # [c, d], [Lk]
        probe = (q @ centroids.T).topk(probes, dim=-1).indices  # [Lq, P]: each query's best clusters
        key_order = assign.argsort()  # keys grouped by cluster
        key_counts = torch.bincount(assign, minlength=c).tolist()
        pair_cluster = probe.reshape(-1)  # [Lq·P] (query, probe slot) pairs, query-major
        pair_order = pair_cluster.argsort()  # pairs grouped by cluster
        pair_counts = torch.bincount(pair_cluster, minlength=c).tolist()
        best_s = torch.full((lq * probes, topk), -math.inf, dtype=q.dtype, device=q.device)  # [Lq·P, topk]
        # int32 indices: half the memory of these Lq·P·topk buffers, the largest tensors of the search
        best_i = torch.full((lq * probes, topk), -1, dtype=torch.int32, device=q.device)
        k0 = p0 = 0
        for cl in range(c):
            nk, npairs = key_counts[cl], pair_counts[cl]
            keys_idx = key_order[k0:k0 + nk]  # [nk] keys of this cluster
            pairs = pair_order[p0:p0 + npairs]  # [np] pairs that probe it
            k0, p0 = k0 + nk, p0 + npairs
            if nk == 0 or npairs == 0:
                continue
            s = q[pairs // probes] @ k[keys_idx].T  # [np, nk] exact scores against this cluster only
            kk = min(topk, nk)
            top_s, top_j = s.topk(kk, dim=-1, sorted=False)  # [np, kk]; order is not needed before the merge
            best_s[pairs, :kk] = top_s
            best_i[pairs, :kk] = keys_idx[top_j].to(torch.int32)
        # merge each query's P per-cluster lists: [Lq, P·topk] -> its best topk
        merged_s = best_s.reshape(lq, probes * topk)
        merged_i = best_i.reshape(lq, probes * topk)
        sel = merged_s.topk(topk, dim=-1).indices  # [Lq, topk]
        out = merged_i.gather(-1, sel).long()
        return out.masked_fill(merged_s.gather(-1, sel) == -math.inf, -1)
