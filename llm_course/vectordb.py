"""A vector database from scratch (chapter 13): embeddings, exact and approximate search.

A vector database stores data as high-dimensional vectors produced by an embedding
function, and answers "which stored vectors are most similar to this one?". This module
has every layer of that, small enough to read in one sitting:

* ``embed``: sentences → unit vectors with the packaged MiniLM encoder (mean pooling);
* ``normalize``, ``cosine_similarity``: the similarity measure;
* ``exact_search``: brute force, one matrix product and a top-k per batch of queries
  (``exact_search_blocked``: the same, tiled as FAISS does it — what ``Index`` uses);
* ``kmeans``: Lloyd's algorithm with k-means++ seeding — the clustering IVF is built on;
* ``ivf_search``: the inverted-file index, readable version (scan only nprobe clusters);
* product quantisation (``train_pq``, ``pq_encode``): vectors compressed to m bytes;
* ``recall_at_k``: how much of the true top-k an approximate search found;
* ``Index``: add / search (batched, filtered) / delete / save / load, with kind "flat"
  (exact), "ivf" or "ivfpq", and crash-safe, versioned files.

Shapes: vectors (n, d) float; queries (q, d); a search returns scores (q, k) and ids (q, k),
best first, with id -1 (score -inf) where fewer than k vectors qualified.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from llm_course.attention import _check_positive_int, _describe
from llm_course.files import atomic_write

# --------------------------------------------------------------------------- input checks


def _check_matrix(name: str, x: object, dim: int | None = None) -> None:
    """x must be a finite 2-D float tensor (n, d), with d == dim if given."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, d), got {type(x).__name__}")
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"{name} must be a 2-D float tensor (n, d), got {_describe(x)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has dimension {x.shape[1]}, but the index holds {dim}-dimensional vectors")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values (row {int((~torch.isfinite(x)).any(1).nonzero()[0])})")


def _check_k(k: object, n: int, what: str = "vectors", name: str = "k") -> None:
    _check_positive_int(name, k)
    if k > n:
        raise ValueError(f"{name}={k} is larger than the number of {what} ({n})")


def _as_tensor(name: str, x: Any) -> Tensor:
    """Accept numpy arrays where a user would naturally have them; compute in float32."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if isinstance(x, Tensor) and x.is_floating_point():
        x = x.float()
    return x


# --------------------------------------------------------------------------- embeddings


def embed(texts: list[str], batch_size: int = 64) -> Tensor:
    """MiniLM sentence embeddings: (n,) strings → (n, 384) float32 unit vectors.

    Each sentence's token vectors (MiniLM's last layer) are averaged over its real tokens
    (mean pooling; padding is masked out) and the average is scaled to length 1, exactly as
    sentence-transformers' all-MiniLM-L6-v2 does. Sentences are batched by length, so a
    batch holds little padding.
    """
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of strings")
    if not texts:
        raise ValueError("texts is empty")
    _check_positive_int("batch_size", batch_size)
    from llm_course.pretrained import load_minilm

    model, tokenizer = load_minilm()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), model.config.hidden_size)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=256,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state                      # (b, T, 384)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, T, 1)
            out[rows] = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    return normalize(out)


def embed_cached(texts: list[str], progress: bool = False, chunk: int = 4096) -> Tensor:
    """``embed(texts)``, computed once and kept under ``cache_dir()/embeddings``.

    Encoding 100k sentences takes many CPU-minutes, so the texts are embedded in chunks and
    each chunk is saved as its own .npy file, named by a hash of its texts and written
    atomically (a reader never sees a half-written file). An interrupted run resumes where
    it stopped, a changed text never picks up stale vectors, and a corpus that starts with
    the same chunk as another (the first 4096 lines) reuses its vectors.
    """
    from llm_course.pretrained import cache_dir

    _check_positive_int("chunk", chunk)
    folder = cache_dir() / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    pieces = []
    for start in range(0, len(texts), chunk):
        part = texts[start:start + chunk]
        key = hashlib.sha256(("minilm-mean-l2\n" + "\n".join(part)).encode()).hexdigest()[:24]
        path = folder / f"minilm-{key}.npy"
        if not path.exists():
            _atomic_write_bytes(path, _npy_bytes(embed(part).numpy()))
        pieces.append(np.load(path))
        if progress:
            print(f"embedded {start + len(part)}/{len(texts)}", flush=True)
    return torch.from_numpy(np.concatenate(pieces))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# --------------------------------------------------------------------------- similarity


def normalize(x: Tensor) -> Tensor:
    """Scale every row of x to length 1 (L2 norm): (n, d) → (n, d).

    After this, the dot product of two rows *is* their cosine similarity. An all-zero row
    has no direction; it stays zero rather than becoming NaN.
    """
    _check_matrix("x", x)
    norms = x.norm(dim=1, keepdim=True)
    return x / norms.clamp(min=1e-12)


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """cos(a_i, b_j) = a_i·b_j / (|a_i| |b_j|) for every pair: (n, d), (m, d) → (n, m).

    It depends only on the angle between the vectors, not their lengths, and lies in [-1, 1].
    """
    _check_matrix("a", a)
    _check_matrix("b", b, a.shape[1])
    return normalize(a) @ normalize(b).T


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """|x_i − y_j|² for every pair: (n, d), (m, d) → (n, m).

    Expanded as |x|² − 2 x·y + |y|², so the work is one matrix product (the way FAISS and
    scikit-learn compute it); tiny negative values from rounding are clipped to 0.
    """
    _check_matrix("x", x)
    _check_matrix("y", y, x.shape[1])
    return ((x * x).sum(1, keepdim=True) - 2 * x @ y.T + (y * y).sum(1)).clamp(min=0)


# --------------------------------------------------------------------------- exact search


def exact_search(queries: Tensor, vectors: Tensor, k: int, batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """The k vectors with the largest inner product with each query, by brute force.

    Args:
        queries: (q, d); vectors: (n, d); k: 1 ≤ k ≤ n.
        batch_size: queries scored at once; bounds memory at batch_size × n scores.

    Returns:
        scores: (q, k) float, each row in descending order; ids: (q, k) long, row indices
        into ``vectors``. For unit vectors the scores are cosine similarities.
    """
    _check_matrix("queries", queries)
    _check_matrix("vectors", vectors, queries.shape[1])
    _check_k(k, len(vectors))
    _check_positive_int("batch_size", batch_size)
    all_scores, all_ids = [], []
    for start in range(0, len(queries), batch_size):
        scores = queries[start:start + batch_size] @ vectors.T  # (batch, n): one matmul
        top = scores.topk(k, dim=1)                               # sorted, largest first
        all_scores.append(top.values); all_ids.append(top.indices)
    return torch.cat(all_scores), torch.cat(all_ids)


def exact_search_blocked(queries: Tensor, vectors: Tensor, k: int, query_block: int = 1024,
                         vector_block: int = 4096, *, vectors_checked: bool = False) -> tuple[Tensor, Tensor]:
    """``exact_search`` computed the way FAISS's ``IndexFlatIP`` does it: same results, faster.

    The scores are computed one tile (query_block × vector_block, 16 MB) at a time into
    one reused buffer, and each tile keeps only its own top k; the tiles' winners are merged
    at the end. The full (q, n) score matrix never exists, so no time goes to allocating
    and faulting in hundreds of MB per call (about 1.3× faster than ``exact_search`` on 100k
    vectors). Used by ``Index(kind="flat")``. Shapes and results as ``exact_search``.
    ``vectors_checked=True`` skips checking that ``vectors`` is finite (a full pass over them,
    ~0.1 s for 100k × 384) when the caller already did, as ``Index.add`` does.
    """
    _check_matrix("queries", queries)
    _check_matrix("vectors", vectors[:0] if vectors_checked else vectors, queries.shape[1])
    _check_k(k, len(vectors))
    _check_positive_int("query_block", query_block)
    _check_positive_int("vector_block", vector_block)
    buffer = torch.empty(min(query_block, len(queries)), min(vector_block, len(vectors)), dtype=queries.dtype)
    all_scores, all_ids = [], []
    for qs in range(0, len(queries), query_block):
        q = queries[qs:qs + query_block]
        tile_scores, tile_ids = [], []
        for vs in range(0, len(vectors), vector_block):
            block = vectors[vs:vs + vector_block]
            scores = buffer[:len(q), :len(block)]
            torch.mm(q, block.T, out=scores)
            top = scores.topk(min(k, len(block)), dim=1)
            tile_scores.append(top.values); tile_ids.append(top.indices + vs)
        merged_scores, merged_ids = torch.cat(tile_scores, 1), torch.cat(tile_ids, 1)
        top = merged_scores.topk(k, dim=1)
        all_scores.append(top.values); all_ids.append(merged_ids.gather(1, top.indices))
    return torch.cat(all_scores), torch.cat(all_ids)


def bf16_error_bound(d: int) -> float:
    """c such that |bf16 score − exact score| ≤ c·|q|·|x| for d-dimensional q and x.

    Scoring in bfloat16 rounds q and x to 8 significant bits (unit roundoff u = 2⁻⁸), adds
    their products in float32 (error ≤ γ_d = d·2⁻²⁴ / (1 − d·2⁻²⁴) of Σ|q̃ᵢx̃ᵢ|) and rounds
    the sum to bfloat16 again. By Cauchy–Schwarz each step's error is at most its factor
    times |q|·|x|; added up, c ≈ 3u ≈ 0.0118 for d = 384.
    """
    _check_positive_int("d", d)
    u, gamma = 2.0 ** -8, d * 2.0 ** -24 / (1 - d * 2.0 ** -24)
    rounding_inputs = 2 * u + u * u                      # |q̃·x̃ − q·x| / (|q||x|)
    accumulating = gamma * (1 + u) ** 2                  # float32 sum of d products
    rounding_output = u * (1 + gamma) * (1 + u) ** 2     # the result stored as bfloat16
    return rounding_inputs + accumulating + rounding_output


@functools.cache
def native_bf16() -> bool:
    """Does this CPU multiply bfloat16 in hardware (AVX512-BF16 or AMX)? Only then is scoring
    in bf16 faster than float32; elsewhere PyTorch emulates it, slowly."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: don't guess
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def exact_search_bf16(queries: Tensor, vectors: Tensor, k: int, vectors_bf16: Tensor | None = None,
                      max_norm: float | None = None, query_block: int = 1024, vector_block: int = 4096,
                      per_tile: int = 16, *, vectors_checked: bool = False) -> tuple[Tensor, Tensor]:
    """Exact top-k at bfloat16 speed: filter in bf16, then re-score the survivors in float32.

    A bf16 matrix product runs about twice as fast as a float32 one on CPUs with bf16
    hardware, but its scores are off by up to ε = ``bf16_error_bound(d)``·|q|·max|x|. That
    error is bounded, so the result can still be exact. Let τ be the k-th best bf16 score of
    a query. The k vectors above τ have true scores ≥ τ − ε, so the true k-th best score is
    ≥ τ − ε, and every true top-k vector has a bf16 score ≥ (τ − ε) − ε. So: keep the
    candidates with bf16 score ≥ τ − 2ε (about 20–60 per query on 100k vectors), compute
    their scores exactly in float32, and take the top k of those.

    Tiles as in ``exact_search_blocked``; each keeps its ``per_tile`` best bf16 scores. If a
    tile's last kept score still clears τ − 2ε, it may have held more candidates than it kept:
    such (rare) queries are redone in float32 with ``exact_search_blocked``.

    Args:
        queries: (q, d); vectors: (n, d); k: 1 ≤ k ≤ n.
        vectors_bf16, max_norm: ``vectors.bfloat16()`` and ``vectors.norm(dim=1).max()``
            if already at hand (``Index`` keeps them), else computed here.
        vectors_checked: as in ``exact_search_blocked``.
    Returns: as ``exact_search`` — the same ids, with float32 scores.
    """
    _check_matrix("queries", queries)
    _check_matrix("vectors", vectors[:0] if vectors_checked else vectors, queries.shape[1])
    _check_k(k, len(vectors))
    for name, value in (("query_block", query_block), ("vector_block", vector_block), ("per_tile", per_tile)):
        _check_positive_int(name, value)
    low = vectors.bfloat16() if vectors_bf16 is None else vectors_bf16
    if low.shape != vectors.shape or low.dtype != torch.bfloat16:
        raise ValueError(f"vectors_bf16 must be vectors.bfloat16() {tuple(vectors.shape)}, got {_describe(low)}")
    max_norm = float(vectors.norm(dim=1).max()) if max_norm is None else max_norm
    eps = bf16_error_bound(queries.shape[1]) * queries.norm(dim=1) * max_norm  # (q,)
    keep = max(per_tile, k)
    # (tiles,): did the tile hold more vectors than it keeps? Only those can have dropped candidates
    dropped_some = torch.tensor([min(vector_block, len(vectors) - vs) > keep
                                 for vs in range(0, len(vectors), vector_block)])
    all_scores, all_ids = [], []
    for qs in range(0, len(queries), query_block):
        q = queries[qs:qs + query_block]
        q_low = q.bfloat16()
        kept_scores, kept_ids = [], []
        for vs in range(0, len(vectors), vector_block):
            tile = low[vs:vs + vector_block]
            top = torch.mm(q_low, tile.T).topk(min(keep, len(tile)), dim=1)
            kept_scores.append(top.values); kept_ids.append(top.indices + vs)
        last_kept = torch.stack([s[:, -1] for s in kept_scores], 1).float()  # (q, tiles)
        approx, cand = torch.cat(kept_scores, 1).float(), torch.cat(kept_ids, 1)  # (q, tiles·keep)
        floor = approx.topk(k, dim=1).values[:, -1] - 2 * eps[qs:qs + query_block]  # τ − 2ε
        # exact float32 scores for the survivors only; the others stay at -inf
        qi, slot = (approx >= floor[:, None]).nonzero(as_tuple=True)
        exact = torch.full_like(approx, float("-inf"))
        exact[qi, slot] = _dot_rows(q, qi, vectors, cand[qi, slot])
        top = exact.topk(k, dim=1)
        scores, ids = top.values, cand.gather(1, top.indices)
        spilled = ((last_kept >= floor[:, None]) & dropped_some).any(1)
        if spilled.any():
            redo = spilled.nonzero().squeeze(1)
            scores[redo], ids[redo] = exact_search_blocked(q[redo], vectors, k, vectors_checked=True)
        all_scores.append(scores); all_ids.append(ids)
    return torch.cat(all_scores), torch.cat(all_ids)


def _dot_rows(a: Tensor, a_rows: Tensor, b: Tensor, b_rows: Tensor) -> Tensor:
    """(c,) float32: a[a_rows[i]] · b[b_rows[i]] for each i — the exact re-score of candidates."""
    return torch.einsum("cd,cd->c", a.index_select(0, a_rows), b.index_select(0, b_rows))


def recall_at_k(found: Tensor, truth: Tensor) -> float:
    """The fraction of the true top-k neighbours that a search found, averaged over queries.

    Args:
        found: (q, k') ids returned by an approximate search (-1 = no result).
        truth: (q, k) ids of the exact top-k.

    Order does not matter: recall@k = |found ∩ truth| / k per query, then the mean.
    """
    for name, t in (("found", found), ("truth", truth)):
        if not isinstance(t, Tensor) or t.dim() != 2 or t.is_floating_point():
            raise ValueError(f"{name} must be a 2-D integer tensor of ids (queries, k), got {_describe(t)}")
    if found.shape[0] != truth.shape[0]:
        raise ValueError(f"found and truth must have one row per query, got {found.shape[0]} and {truth.shape[0]}")
    if truth.shape[1] == 0:
        raise ValueError("truth must hold at least one id per query")
    hits = (found[:, :, None] == truth[:, None, :]).any(1)  # (q, k): was truth[i, j] found?
    return hits.float().sum().item() / truth.numel()


# --------------------------------------------------------------------------- k-means


def kmeans_plusplus(x: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """k initial centroids, chosen by k-means++ (Arthur & Vassilvitskii, 2007): (n, d) → (k, d).

    The first is a random point; each next one is a point drawn with probability
    proportional to its squared distance from the nearest centroid chosen so far, so the
    seeds spread over the data instead of bunching up in its densest part.
    """
    _check_matrix("x", x)
    _check_k(k, len(x), "points")
    centroids = x.new_empty(k, x.shape[1])
    centroids[0] = x[torch.randint(len(x), (1,), generator=gen)]
    d2 = squared_distances(x, centroids[:1]).squeeze(1)
    for i in range(1, k):
        # all remaining points coincide with a centroid: any choice is as good as any other
        weights = d2 if d2.sum() > 0 else torch.ones_like(d2)
        centroids[i] = x[torch.multinomial(weights, 1, generator=gen)]
        d2 = torch.minimum(d2, squared_distances(x, centroids[i:i + 1]).squeeze(1))
    return centroids


def kmeans(x: Tensor, k: int, iters: int = 20, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means with k-means++ seeding: (n, d) → centroids (k, d), assignments (n,).

    Each iteration assigns every point to its nearest centroid (squared L2), then moves
    every centroid to the mean of its points. Neither step can increase the inertia
    Σ|x − c(x)|², so it decreases monotonically. A centroid that lost all its points stays
    where it was. Deterministic for a given seed.
    """
    _check_matrix("x", x)
    _check_k(k, len(x), "points")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be a non-negative int, got {_describe(iters)}")
    centroids = kmeans_plusplus(x, k, torch.Generator().manual_seed(seed))
    for _ in range(iters):
        assign = squared_distances(x, centroids).argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids, squared_distances(x, centroids).argmin(1)


def inertia(x: Tensor, centroids: Tensor, assignments: Tensor) -> float:
    """Σ |x_i − centroids[assignments_i]|²: what k-means minimises."""
    return (x - centroids[assignments]).pow(2).sum().item()


# --------------------------------------------------------------------------- IVF


def ivf_search(queries: Tensor, vectors: Tensor, centroids: Tensor, assignments: Tensor,
               k: int, nprobe: int) -> tuple[Tensor, Tensor]:
    """Inverted-file search: score only the vectors in the nprobe clusters nearest each query.

    Args:
        queries: (q, d); vectors: (n, d); centroids: (nlist, d) from k-means;
        assignments: (n,) long, the cluster (inverted list) of each vector;
        k ≥ 1; nprobe: 1 ≤ nprobe ≤ nlist, how many clusters to scan per query.

    Returns:
        scores (q, k) descending, ids (q, k) row indices into vectors; where the probed
        clusters hold fewer than k vectors, the missing places are id -1 with score -inf.

    This is the readable version, one query at a time; ``Index`` does the same search
    batched (grouping queries by cluster), and the tests check that the two agree.
    """
    _check_matrix("queries", queries)
    _check_matrix("vectors", vectors, queries.shape[1])
    _check_matrix("centroids", centroids, queries.shape[1])
    if not isinstance(assignments, Tensor) or assignments.shape != (len(vectors),) or assignments.is_floating_point():
        raise ValueError(f"assignments must be a (n,) = ({len(vectors)},) integer tensor, got {_describe(assignments)}")
    _check_positive_int("k", k)
    _check_k(nprobe, len(centroids), "clusters (nlist)", "nprobe")
    probes = squared_distances(queries, centroids).topk(nprobe, dim=1, largest=False).indices  # (q, nprobe)
    scores = torch.full((len(queries), k), float("-inf"))
    ids = torch.full((len(queries), k), -1, dtype=torch.long)
    for i, query in enumerate(queries):
        members = torch.isin(assignments, probes[i]).nonzero().squeeze(1)  # rows in the probed lists
        top = (vectors[members] @ query).topk(min(k, len(members)))
        scores[i, :len(top.values)] = top.values
        ids[i, :len(top.values)] = members[top.indices]
    return scores, ids


# --------------------------------------------------------------------------- files


def shakespeare_lines(min_chars: int = 20) -> list[str]:
    """Distinct lines of the complete works with at least min_chars characters, in order
    of first appearance (103,658 lines at the default): a real corpus to embed."""
    from llm_course.data import shakespeare

    lines = (line.strip() for line in shakespeare().splitlines())
    return list(dict.fromkeys(line for line in lines if len(line) >= min_chars))


def _write_all(f, data: bytes, chunk: int = 1 << 20) -> None:
    """Write data in 1 MiB pieces (a separate function so tests can interrupt it halfway)."""
    for start in range(0, len(data), chunk):
        f.write(data[start:start + chunk])


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` all at once: readers see the old file or the new one.

    The bytes go to a temporary file in the same folder (os.replace is atomic only within
    one file system), are flushed to disk, and only then is the temporary file renamed over
    the target. A crash before the rename leaves the previous file untouched.
    """
    path = Path(path)
    with atomic_write(path) as f:
        _write_all(f, data)


# --------------------------------------------------------------------------- product quantisation


def train_pq(x: Tensor, m: int, iters: int = 15, seed: int = 0, bits: int = 8) -> Tensor:
    """Product-quantisation codebooks (Jégou et al., 2011): (n, d) → (m, 2**bits, d/m).

    Each vector is cut into m sub-vectors of d/m numbers, and each of the m sub-spaces gets
    its own k-means codebook of 2**bits centroids. A vector is then stored as m codeword
    numbers (m bytes at 8 bits) instead of 4·d bytes of floats.
    """
    _check_matrix("x", x)
    _check_positive_int("m", m)
    if x.shape[1] % m:
        raise ValueError(f"m={m} must divide the vector dimension d={x.shape[1]}")
    n_codes = 2 ** bits
    _check_k(n_codes, len(x), "training vectors", "2**bits")
    subs = x.view(len(x), m, -1)
    return torch.stack([kmeans(subs[:, j].contiguous(), n_codes, iters, seed + j)[0] for j in range(m)])


def pq_encode(x: Tensor, codebooks: Tensor) -> Tensor:
    """(n, d) → (n, m) uint8 codes: the nearest codeword in each sub-space."""
    m = codebooks.shape[0]
    subs = x.view(len(x), m, -1)
    return torch.stack([squared_distances(subs[:, j], codebooks[j]).argmin(1) for j in range(m)], 1).to(torch.uint8)


def pq_decode(codes: Tensor, codebooks: Tensor) -> Tensor:
    """(n, m) codes → (n, d) the approximate vectors they stand for."""
    m = codebooks.shape[0]
    return codebooks[torch.arange(m), codes.long()].reshape(len(codes), -1)


# --------------------------------------------------------------------------- the index

KINDS = ("flat", "ivf", "ivfpq")
METRICS = ("cosine", "ip")
MAGIC = b"LLMVECDB"        # the first 8 bytes of every index file
FORMAT_VERSION = 1         # bump when the layout changes; load refuses versions it does not know
_HEADER = len(MAGIC) + 4 + 8 + 32  # magic, version (u32), payload length (u64), sha256


#: IVF scores the queries of a cluster in blocks whose shape is rounded up to these steps
SHAPE_STEP = (64, 16)


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def _best_k_per_query(query: Tensor, scores: Tensor, rows: Tensor, n_queries: int,
                      k: int) -> tuple[Tensor, Tensor]:
    """The k best (score, row) of each query from a flat list of candidates.

    query, scores, rows: (c,) — candidate i belongs to query[i]. Returns scores (n_queries, k)
    descending and rows (n_queries, k), padded with -inf / -1 where a query has fewer than k.
    """
    by_score = torch.argsort(scores, descending=True, stable=True)
    order = by_score[torch.argsort(query[by_score], stable=True)]  # grouped by query, best first
    query, scores, rows = query[order], scores[order], rows[order]
    first = torch.zeros(n_queries + 1, dtype=torch.long)
    first[1:] = torch.bincount(query, minlength=n_queries).cumsum(0)
    rank = torch.arange(len(query)) - first[query]                 # 0 for each query's best
    top = rank < k
    out_scores = torch.full((n_queries, k), float("-inf"))
    out_rows = torch.full((n_queries, k), -1, dtype=torch.long)
    out_scores[query[top], rank[top]] = scores[top]
    out_rows[query[top], rank[top]] = rows[top]
    return out_scores, out_rows


class IndexFileError(ValueError):
    """An index file that cannot be loaded: foreign, truncated, corrupted or too new."""


class Index:
    """A small vector database: add, search (batched, filtered), delete, save, load.

    Args:
        dim: vector dimension d.
        kind: "flat" (exact brute force), "ivf" (inverted file over k-means clusters) or
            "ivfpq" (IVF whose vectors are scored through 8-bit product-quantisation codes).
        metric: "cosine" (vectors and queries are normalised; score = cosine similarity)
            or "ip" (raw inner product).
        nlist: number of IVF clusters (default: about √n, chosen at training).
        m: PQ sub-quantisers (bytes per vector) for "ivfpq"; must divide dim.
        seed: makes training deterministic.

    Every vector has an int64 id (given, or the next free one) and an optional metadata
    dict (JSON-serialisable) that ``search(..., filter=...)`` can select on. IVF kinds are
    trained (k-means, PQ codebooks) on the first ``add`` unless ``train`` is called first.
    """

    def __init__(self, dim: int, kind: str = "flat", metric: str = "cosine", nlist: int | None = None,
                 m: int = 8, seed: int = 0):
        _check_positive_int("dim", dim)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if nlist is not None:
            _check_positive_int("nlist", nlist)
        _check_positive_int("m", m)
        if kind == "ivfpq" and dim % m:
            raise ValueError(f"m={m} must divide dim={dim} for kind 'ivfpq'")
        self.dim, self.kind, self.metric, self.nlist, self.m, self.seed = dim, kind, metric, nlist, m, seed
        self.vectors = torch.empty(0, dim)
        self.ids = torch.empty(0, dtype=torch.long)
        self.metadata: list[dict | None] = []
        self.centroids: Tensor | None = None   # (nlist, d) for the IVF kinds
        self.codebooks: Tensor | None = None   # (m, 256, d/m) for ivfpq
        self.lists = torch.empty(0, dtype=torch.long)          # (n,) cluster of each vector
        self.codes = torch.empty(0, m, dtype=torch.uint8)      # (n, m) PQ codes of the residuals
        self._cache: dict[str, Any] = {}  # derived from the vectors: rebuilt after add/delete/train

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        extra = f", nlist={self.nlist}" if self.kind != "flat" else ""
        extra += f", m={self.m}" if self.kind == "ivfpq" else ""
        return f"Index(dim={self.dim}, kind={self.kind!r}, metric={self.metric!r}{extra}, n={len(self)})"

    # ---- building
    def _prepare(self, name: str, x: Any) -> Tensor:
        x = _as_tensor(name, x)
        _check_matrix(name, x, self.dim)
        return normalize(x) if self.metric == "cosine" else x

    @property
    def trained(self) -> bool:
        return self.kind == "flat" or self.centroids is not None

    def train(self, vectors: Any, max_points: int = 50_000) -> "Index":
        """Learn the IVF centroids (and PQ codebooks) from a sample of vectors like the data."""
        x = self._prepare("vectors", vectors)
        if self.kind == "flat":
            return self
        nlist = self.nlist or max(1, int(round(len(x) ** 0.5)))
        _check_k(nlist, len(x), "training vectors", "nlist")
        gen = torch.Generator().manual_seed(self.seed)
        if len(x) > max_points:  # k-means on a sample: centroids barely change, training is far faster
            x = x[torch.randperm(len(x), generator=gen)[:max_points]]
        self.nlist = nlist
        self.centroids, assign = kmeans(x, nlist, seed=self.seed)
        if self.kind == "ivfpq":
            # PQ encodes the residual x − centroid: smaller and more alike across clusters than x
            self.codebooks = train_pq(x - self.centroids[assign], self.m, seed=self.seed)
        self.lists = squared_distances(self.vectors, self.centroids).argmin(1) if len(self) else self.lists
        if self.kind == "ivfpq" and len(self):
            self.codes = pq_encode(self.vectors - self.centroids[self.lists], self.codebooks)
        self._cache.clear()
        return self

    def add(self, vectors: Any, ids: Any = None, metadata: list[dict | None] | None = None) -> Tensor:
        """Add (n, dim) vectors; returns their ids. Ids must be new and distinct."""
        x = self._prepare("vectors", vectors)
        n = len(x)
        if ids is None:
            start = int(self.ids.max()) + 1 if len(self) else 0
            ids = torch.arange(start, start + n)
        ids = torch.as_tensor(ids)
        if ids.shape != (n,) or ids.is_floating_point():
            raise ValueError(f"ids must be {n} integers, one per vector, got {_describe(ids)}")
        ids = ids.long()
        if len(torch.unique(ids)) != n:
            raise ValueError("ids contains duplicates; every vector needs its own id")
        clash = torch.isin(ids, self.ids)
        if clash.any():
            raise ValueError(f"ids already in the index: {ids[clash][:5].tolist()} (delete them first)")
        if metadata is None:
            metadata = [None] * n
        if not isinstance(metadata, (list, tuple)) or len(metadata) != n:
            raise ValueError(f"metadata must be a list of {n} dicts (or None), one per vector")
        if any(md is not None and not isinstance(md, dict) for md in metadata):
            raise ValueError("metadata must hold a dict (or None) per vector")
        if not self.trained:
            self.train(x)
        self.vectors = torch.cat([self.vectors, x])
        self.ids = torch.cat([self.ids, ids])
        self.metadata.extend(metadata)
        if self.kind != "flat":
            lists = squared_distances(x, self.centroids).argmin(1)
            self.lists = torch.cat([self.lists, lists])
            if self.kind == "ivfpq":
                self.codes = torch.cat([self.codes, pq_encode(x - self.centroids[lists], self.codebooks)])
        self._cache.clear()
        return ids

    def delete(self, ids: Any) -> int:
        """Remove the vectors with these ids (unknown ids are ignored); returns how many went.

        Rows are removed for real (the storage is compacted), so a deleted id can never come
        back from a search and can be reused by a later ``add``.
        """
        ids = torch.as_tensor(ids).long().reshape(-1)
        keep = ~torch.isin(self.ids, ids)
        removed = int((~keep).sum())
        if removed:
            self.vectors, self.ids = self.vectors[keep], self.ids[keep]
            self.metadata = [md for md, k in zip(self.metadata, keep.tolist()) if k]
            if self.kind != "flat":
                self.lists = self.lists[keep]
                self.codes = self.codes[keep] if self.kind == "ivfpq" else self.codes
            self._cache.clear()
        return removed

    # ---- searching
    def _allowed(self, filter: dict | Callable[[dict], bool] | None) -> Tensor | None:
        """(n,) bool: which stored vectors the filter lets through (None = all)."""
        if filter is None:
            return None
        if isinstance(filter, dict):
            wanted = filter
            filter = lambda md: all(md.get(key) == value for key, value in wanted.items())  # noqa: E731
        if not callable(filter):
            raise TypeError(f"filter must be a dict of required metadata values or a function, got {_describe(filter)}")
        return torch.tensor([md is not None and bool(filter(md)) for md in self.metadata], dtype=torch.bool)

    def search(self, queries: Any, k: int, filter: dict | Callable[[dict], bool] | None = None,
               nprobe: int = 8, refine: int = 4) -> tuple[Tensor, Tensor]:
        """The k best matches of each query: scores (q, k), ids (q, k), best first.

        Args:
            queries: (q, dim) — a batch is much faster than a loop over single queries.
            k: 1 ≤ k ≤ len(index).
            filter: keep only vectors whose metadata match: a dict of required values
                ({"play": "hamlet"}) or a function metadata → bool. Exact for "flat"; for the
                IVF kinds the filter applies inside the probed clusters, so a selective filter
                can leave fewer than k results (id -1, score -inf), as in FAISS.
            nprobe: IVF clusters scanned per query (more = slower, higher recall).
            refine: ivfpq only: re-score the refine·k best PQ candidates with the exact
                vectors (0 = return the PQ approximations).
        """
        q = self._prepare("queries", queries)
        _check_k(k, len(self), "vectors in the index")
        allowed = self._allowed(filter)
        if len(q) == 0:  # an empty batch (e.g. the last slice of a stream) has empty answers
            return torch.empty(0, k), torch.empty(0, k, dtype=torch.long)
        if self.kind == "flat":
            if allowed is None:
                scores, rows = self._exact_search(q, self.vectors, k, subset=False)
            else:
                subset = allowed.nonzero().squeeze(1)
                scores = torch.full((len(q), k), float("-inf"))
                rows = torch.full((len(q), k), -1, dtype=torch.long)
                if len(subset):
                    kk = min(k, len(subset))
                    s, r = self._exact_search(q, self.vectors[subset], kk, subset=True)
                    scores[:, :kk], rows[:, :kk] = s, subset[r]
        else:
            _check_k(nprobe, self.nlist, "clusters (nlist)", "nprobe")
            if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
                raise ValueError(f"refine must be a non-negative int, got {_describe(refine)}")
            scores, rows = self._ivf_search(q, k, nprobe, allowed, refine)
        ids = torch.where(rows >= 0, self.ids[rows.clamp(min=0)], -1)
        return scores, ids

    def _inverted_lists(self) -> tuple[Tensor, Tensor]:
        """(order, offsets): rows sorted by cluster; cluster l owns order[offsets[l]:offsets[l+1]]."""
        if "inverted" not in self._cache:
            order = torch.argsort(self.lists, stable=True)
            counts = torch.bincount(self.lists, minlength=self.nlist)
            offsets = torch.zeros(self.nlist + 1, dtype=torch.long)
            offsets[1:] = counts.cumsum(0)
            self._cache["inverted"] = (order, offsets)
        return self._cache["inverted"]

    def _scoring_copy(self) -> tuple[Tensor, Tensor | None, Tensor | None, float]:
        """What the fast searches score with: the vectors in bf16 where the CPU has bf16
        hardware (else float32); for IVF, the same and the float32 vectors sorted by cluster, so
        that a cluster's vectors are one contiguous block; and max |x|."""
        if "scoring" not in self._cache:
            low = self.vectors.bfloat16() if native_bf16() else self.vectors
            by_list = low_by_list = None
            if self.kind != "flat":
                by_list = self.vectors[self._inverted_lists()[0]]
                # + spare zero rows, so that a cluster's block can be read rounded up (_ivf_search)
                low_by_list = torch.cat([by_list, by_list.new_zeros(SHAPE_STEP[1], self.dim)]).to(low.dtype)
            self._cache["scoring"] = (low, low_by_list, by_list,
                                      float(self.vectors.norm(dim=1).max()) if len(self) else 0.0)
        return self._cache["scoring"]

    def _exact_search(self, q: Tensor, vectors: Tensor, k: int, subset: bool) -> tuple[Tensor, Tensor]:
        """Exact search over ``vectors`` (all stored vectors unless ``subset``): in bf16 with an
        exact re-score where the CPU has bf16 hardware, else in float32 — the same results."""
        if not native_bf16():
            return exact_search_blocked(q, vectors, k, vectors_checked=True)
        if subset:
            return exact_search_bf16(q, vectors, k, vectors_checked=True)
        low, _, _, max_norm = self._scoring_copy()
        return exact_search_bf16(q, vectors, k, low, max_norm, vectors_checked=True)

    def _clusters(self, probes: Tensor):
        """For each probed cluster: (cluster, lo, hi, pairs) — its rows are order[lo:hi], and
        ``pairs`` are the flat indices into ``probes`` (query·nprobe + slot) that probe it."""
        order, offsets = self._inverted_lists()
        pairs = torch.argsort(probes.flatten(), stable=True)     # (query, probe) pairs grouped by cluster
        per_list = torch.bincount(probes.flatten(), minlength=self.nlist).tolist()
        start = 0
        for cluster, n_pairs in enumerate(per_list):
            lo, hi = int(offsets[cluster]), int(offsets[cluster + 1])
            if n_pairs and hi > lo:
                yield cluster, lo, hi, pairs[start:start + n_pairs]
            start += n_pairs

    def _ivf_search(self, q: Tensor, k: int, nprobe: int, allowed: Tensor | None,
                    refine: int) -> tuple[Tensor, Tensor]:
        """IVF search, batched: instead of looping over queries, loop over clusters and score
        all the queries that probe a cluster with one matrix product against its vectors."""
        # Probe the clusters whose centres score best under the search's own metric. For
        # cosine that is the centre's direction: a spread-out cluster has a short centre, which
        # the textbook rule (nearest centre in L2, as ``ivf_search`` does) ranks too low. On
        # MiniLM vectors it finds 95.7% instead of 94.3% of the true top 10 at the same nprobe.
        centres = normalize(self.centroids) if self.metric == "cosine" else self.centroids
        probes = (q @ centres.T).topk(nprobe, dim=1).indices
        if self.kind == "ivfpq":
            return self._ivfpq_search(q, k, probes, allowed, refine)
        order, _ = self._inverted_lists()
        _, low_by_list, by_list, max_norm = self._scoring_copy()
        q_low = q.to(low_by_list.dtype)
        allowed_by_list = allowed[order] if allowed is not None else None

        def approx_scores(qi: Tensor, lo: int, hi: int) -> Tensor:  # (len(qi), hi − lo), float32
            # oneDNN compiles a bf16 kernel per matrix shape and caches 1,024 of them; rounding
            # the shapes up (extra rows and columns are scored, then dropped) keeps them few, so
            # every search after the first reuses them instead of compiling hundreds (~0.5 ms each)
            rows, n = _round_up(len(qi), SHAPE_STEP[0]), _round_up(hi - lo, SHAPE_STEP[1])
            qi_padded = torch.cat([qi, qi.new_zeros(rows - len(qi))])
            s = (q_low[qi_padded] @ low_by_list[lo:lo + n].T)[:len(qi), :hi - lo].float()
            return s if allowed_by_list is None else s.masked_fill(~allowed_by_list[lo:hi], float("-inf"))

        # Scores from by_list are off by at most ε (bf16_error_bound; it bounds float32 scoring
        # too). 1. A bar per query: τ = the k-th best approximate score in its nearest cluster,
        # which every search scans. Its top k have true scores ≥ τ − ε, so every final result
        # does too, and has an approximate score ≥ τ − 2ε. (Fewer than k there: no bar.)
        # (Float32 here: a cluster has only a few of these queries; its error is below ε.)
        eps = bf16_error_bound(self.dim) * q.norm(dim=1) * max_norm
        floor = torch.full((len(q),), float("-inf"))
        for _, lo, hi, qi in self._clusters(probes[:, :1]):
            if hi - lo >= k:
                s = q[qi] @ by_list[lo:hi].T
                if allowed_by_list is not None:
                    s = s.masked_fill(~allowed_by_list[lo:hi], float("-inf"))
                floor[qi] = s.topk(k, dim=1).values[:, -1] - 2 * eps[qi]
        floor = floor.clamp(min=torch.finfo(floor.dtype).min)  # filtered-out (-inf) scores never pass
        # 2. Every probed cluster: score its queries at once; keep what clears the bar (a few %)
        # and re-score those exactly in float32 while the cluster's vectors are still in cache.
        found_q, found_at, found_scores = [], [], []
        for _, lo, hi, pairs in self._clusters(probes):
            qi = pairs // nprobe
            i, j = (approx_scores(qi, lo, hi) >= floor[qi, None]).nonzero(as_tuple=True)
            found_q.append(qi[i]); found_at.append(j + lo)
            found_scores.append(_dot_rows(q, qi[i], by_list, lo + j))
        # 3. The best k per query win.
        at = torch.cat(found_at)
        return _best_k_per_query(torch.cat(found_q), torch.cat(found_scores), order[at], len(q), k)

    def _ivfpq_search(self, q: Tensor, k: int, probes: Tensor, allowed: Tensor | None,
                      refine: int) -> tuple[Tensor, Tensor]:
        """IVF-PQ: the same loop over clusters, scoring each query's vectors from their PQ codes."""
        order, _ = self._inverted_lists()
        nprobe = probes.shape[1]
        keep = k * refine if refine else k     # candidates kept per (query, cluster)
        # ADC lookup table: score(q, x) ≈ q·c + Σ_j q_j·codebook_j[code_j]; for every query,
        # sub-space and codeword, q_j·codeword is computed once, then only looked up.
        sub = q.view(len(q), self.m, -1)
        table = torch.einsum("qjs,jcs->qjc", sub, self.codebooks).reshape(len(q), -1)  # (q, m·256)
        shift = torch.arange(self.m) * self.codebooks.shape[1]
        cand_scores = torch.full((len(q), nprobe, keep), float("-inf"))
        cand_rows = torch.full((len(q), nprobe, keep), -1, dtype=torch.long)
        for cluster, lo, hi, pairs in self._clusters(probes):
            qi, slot = pairs // nprobe, pairs % nprobe
            rows = order[lo:hi]
            idx = (self.codes[rows].long() + shift).flatten()            # (n_l·m,)
            s = table[qi][:, idx].view(len(qi), hi - lo, self.m).sum(-1)
            s += (q[qi] @ self.centroids[cluster]).unsqueeze(1)  # the q·c part of q·(c + r)
            if allowed is not None:
                s = s.masked_fill(~allowed[rows], float("-inf"))
            top = s.topk(min(keep, hi - lo), dim=1)
            cand_scores[qi, slot, :top.values.shape[1]] = top.values
            cand_rows[qi, slot, :top.values.shape[1]] = rows[top.indices]
        cand_scores, cand_rows = cand_scores.view(len(q), -1), cand_rows.view(len(q), -1)
        cand_rows = torch.where(torch.isinf(cand_scores), -1, cand_rows)
        if refine:
            # re-rank the best PQ candidates with the exact vectors (FAISS's IndexRefineFlat)
            best = cand_scores.topk(min(keep, cand_scores.shape[1]), dim=1).indices
            cand_rows = cand_rows.gather(1, best)
            exact = torch.einsum("qd,qcd->qc", q, self.vectors[cand_rows.clamp(min=0)])
            cand_scores = exact.masked_fill(cand_rows < 0, float("-inf"))
        top = cand_scores.topk(k, dim=1)
        rows = cand_rows.gather(1, top.indices)
        return top.values, torch.where(torch.isinf(top.values), -1, rows)

    # ---- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the index to ``path`` atomically (see ``_atomic_write_bytes``).

        File layout: MAGIC (8 bytes) · format version (u32) · payload length (u64) ·
        SHA-256 of the payload (32 bytes) · payload (``torch.save`` of tensors and JSON).
        The header lets ``load`` tell a foreign, truncated or corrupted file from a good one.
        """
        try:
            metadata_json = json.dumps(self.metadata)
        except TypeError as err:
            raise ValueError(f"metadata must be JSON-serialisable to save the index: {err}") from None
        state = {
            "config": json.dumps({"dim": self.dim, "kind": self.kind, "metric": self.metric,
                                  "nlist": self.nlist, "m": self.m, "seed": self.seed}),
            "metadata": metadata_json,
            "vectors": self.vectors, "ids": self.ids, "lists": self.lists, "codes": self.codes,
            "centroids": self.centroids, "codebooks": self.codebooks,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        payload = buffer.getvalue()
        header = MAGIC + FORMAT_VERSION.to_bytes(4, "little") + len(payload).to_bytes(8, "little")
        _atomic_write_bytes(Path(path), header + hashlib.sha256(payload).digest() + payload)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Index":
        """Read an index written by ``save``; raise IndexFileError saying what is wrong otherwise."""
        path = Path(path)
        data = path.read_bytes()
        if data[:len(MAGIC)] != MAGIC:
            raise IndexFileError(f"{path} is not a vector index file: it starts with {data[:8]!r}, "
                                 f"expected the magic bytes {MAGIC!r}")
        if len(data) < _HEADER:
            raise IndexFileError(f"{path} is truncated: {len(data)} bytes, shorter than the {_HEADER}-byte header")
        version = int.from_bytes(data[8:12], "little")
        if version != FORMAT_VERSION:
            raise IndexFileError(f"{path} has format version {version}; this library reads version "
                                 f"{FORMAT_VERSION} (upgrade llm_course to read newer files)")
        length = int.from_bytes(data[12:20], "little")
        payload = data[_HEADER:]
        if len(payload) != length:
            raise IndexFileError(f"{path} is truncated: the header promises {length} bytes of data, "
                                 f"the file holds {len(payload)}")
        if hashlib.sha256(payload).digest() != data[20:_HEADER]:
            raise IndexFileError(f"{path} is corrupted: its checksum does not match its contents")
        state = torch.load(io.BytesIO(payload), weights_only=True)  # tensors and strings only: no code runs
        index = cls(**json.loads(state["config"]))
        index.metadata = json.loads(state["metadata"])
        for name in ("vectors", "ids", "lists", "codes", "centroids", "codebooks"):
            setattr(index, name, state[name])
        return index
