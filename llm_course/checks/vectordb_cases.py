"""Cases for lab 13 (vector databases). Each piece compares the learner's code with
``llm_course.vectordb`` and recognises the classic mistakes by recomputing them."""

from __future__ import annotations

import torch
from torch import Tensor

from llm_course import vectordb as ref
from llm_course.checks.engine import Case, Reason, compare_tensor, piece, randn


def _ids_reason(got, expected: Tensor, what: str, mistakes: list[tuple[str, Tensor]] = ()) -> Reason:
    if isinstance(got, Tensor) and got.is_floating_point():
        return f"{what} should be integer row indices (torch.long), got {got.dtype}"
    return compare_tensor(got, expected, what, known_mistakes=mistakes)


def _pair(result, what: str) -> Reason:
    if not isinstance(result, tuple) or len(result) != 2:
        return f"{what} should return a tuple of two tensors, got {type(result).__name__}"
    return None


# --- 13.normalize and 13.cosine -----------------------------------------------------------


@piece("13.normalize", "L2 normalisation")
def normalize_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(name: str, x: Tensor) -> Case:
        def run(fn) -> Reason:
            got = fn(x.clone())
            mistakes = [
                ("normalised each column (dim=0) instead of each row (dim=1)",
                 x / x.norm(dim=0, keepdim=True).clamp(min=1e-12)),
                ("divided by the squared length |x|² instead of the length |x|",
                 x / x.pow(2).sum(1, keepdim=True).clamp(min=1e-12)),
                ("divided by the sum of absolute values (L1) instead of the L2 length",
                 x / x.abs().sum(1, keepdim=True).clamp(min=1e-12)),
            ]
            if isinstance(got, Tensor) and torch.isnan(got).any() and not torch.isnan(x).any():
                return "the output contains NaN: an all-zero row must stay zero (clamp the norm away from 0)"
            return compare_tensor(got, ref.normalize(x), "normalize(x)", known_mistakes=mistakes)

        return Case(name, run)

    cases = [case("5 vectors of dimension 4", randn(gen, 5, 4)),
             case("vectors of very different lengths", randn(gen, 6, 3) * torch.tensor([[0.01], [1], [100], [3], [7], [0.5]]))]
    if extended:
        x = randn(gen, 4, 8)
        x[2] = 0
        cases += [case("an all-zero row", x), case("one vector of dimension 384", randn(gen, 1, 384))]
    return cases


@piece("13.cosine", "cosine similarity")
def cosine_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(name: str, a: Tensor, b: Tensor) -> Case:
        def run(fn) -> Reason:
            mistakes = [
                ("the vectors were not normalised: that is the dot product, not the cosine", a @ b.T),
                ("only the first argument was normalised; divide by both lengths", ref.normalize(a) @ b.T),
                ("only the second argument was normalised; divide by both lengths", a @ ref.normalize(b).T),
            ]
            return compare_tensor(fn(a.clone(), b.clone()), ref.cosine_similarity(a, b), "cosine_similarity(a, b)",
                                  known_mistakes=mistakes)

        return Case(name, run)

    scale = torch.tensor([[0.1], [2.0], [5.0]])
    cases = [case("3 × 2 pairs, dimension 4", randn(gen, 3, 4) * scale, randn(gen, 2, 4) * 3),
             case("a against itself", *(2 * [randn(gen, 4, 6) * 4]))]
    if extended:
        cases += [case("dimension 384, 5 × 7 pairs", randn(gen, 5, 384) * 2, randn(gen, 7, 384) * 0.5)]
    return cases


# --- 13.exact --------------------------------------------------------------------------------


@piece("13.exact", "exact top-k search")
def exact_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(name: str, nq: int, n: int, d: int, k: int, batch_size: int | None = None) -> Case:
        q, x = ref.normalize(randn(gen, nq, d)), ref.normalize(randn(gen, n, d))

        def run(fn) -> Reason:
            result = fn(q.clone(), x.clone(), k) if batch_size is None else fn(q.clone(), x.clone(), k, batch_size)
            reason = _pair(result, "exact_search")
            if reason:
                return reason
            scores, ids = result
            exp_s, exp_i = ref.exact_search(q, x, k)
            low = (q @ x.T).topk(k, dim=1, largest=False)
            mistakes_s = [("the scores are in ascending order: the best match must come first", exp_s.flip(1)),
                          ("these are the k *smallest* scores: take the largest", low.values)]
            mistakes_i = [("the ids are in ascending order of score: the best match must come first", exp_i.flip(1)),
                          ("these are the k *least* similar vectors: take the largest scores", low.indices)]
            return (compare_tensor(scores, exp_s, "scores", known_mistakes=mistakes_s)
                    or _ids_reason(ids, exp_i, "ids", mistakes_i))

        return Case(name, run)

    cases = [case("3 queries, 50 vectors, k = 5", 3, 50, 8, 5),
             case("k = 1", 4, 30, 6, 1),
             case("k = n (everything, sorted)", 2, 12, 4, 12)]
    if extended:
        cases += [case("700 queries in batches of 256", 700, 200, 16, 10),
                  case("batch_size = 3 with 10 queries", 10, 40, 8, 4, batch_size=3)]
    return cases


# --- 13.kmeans ------------------------------------------------------------------------------


def _kmeans_variant(x: Tensor, k: int, iters: int, seed: int, update: str) -> Tensor:
    """The reference k-means with one deliberate mistake in the centroid update."""
    centroids = ref.kmeans_plusplus(x, k, torch.Generator().manual_seed(seed))
    for _ in range(iters):
        assign = ref.squared_distances(x, centroids).argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        if update == "none":
            continue
        new = {"sum": sums, "plus_one": sums / (counts + 1),
               "n": sums / len(x)}[update]
        centroids = torch.where(counts > 0, new, centroids)
    return centroids


KMEANS_MISTAKES = {
    "the centroids never move: after assigning, set each centroid to the mean of its points": "none",
    "each centroid became the *sum* of its points: divide by the number of points in the cluster": "sum",
    "the centroid update is off: divided by (count + 1) instead of the number of points in the cluster": "plus_one",
    "the centroid update divides by all n points instead of the points in that cluster": "n",
}


@piece("13.kmeans", "k-means (Lloyd's algorithm)")
def kmeans_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(name: str, x: Tensor, k: int, iters: int, seed: int) -> Case:
        def run(fn) -> Reason:
            result = fn(x.clone(), k, iters, seed)
            reason = _pair(result, "kmeans")
            if reason:
                return reason
            centroids, assign = result
            exp_c, exp_a = ref.kmeans(x, k, iters, seed)
            mistakes = [(hint, _kmeans_variant(x, k, iters, seed, kind)) for hint, kind in KMEANS_MISTAKES.items()]
            reason = compare_tensor(centroids, exp_c, "centroids", atol=1e-4, known_mistakes=mistakes)
            if reason:
                return reason
            if isinstance(assign, Tensor) and assign.shape == exp_a.shape and not torch.equal(assign, exp_a):
                if torch.equal(assign, ref.squared_distances(x, exp_c).argmin(1)):
                    return None
                return ("the assignments are not each point's nearest final centroid: assign once more "
                        "after the last update")
            return _ids_reason(assign, exp_a, "assignments")

        return Case(name, run)

    centres = randn(gen, 4, 3) * 5
    blobs = (centres.repeat_interleave(25, 0) + randn(gen, 100, 3))
    cases = [case("4 blobs, k = 4, 10 iterations", blobs, 4, 10, 0),
             case("random points, k = 6, 5 iterations", randn(gen, 60, 5), 6, 5, 1)]
    if extended:
        cases += [case("0 iterations = the k-means++ seeds", randn(gen, 30, 4), 3, 0, 2),
                  case("k = 16, dimension 32", randn(gen, 200, 32), 16, 8, 3)]
    return cases


# --- 13.ivf_search --------------------------------------------------------------------------


def _ivf_variant(q, x, centroids, assign, k, nprobe, mode):
    probes = {"nearest_only": 1, "farthest": nprobe}[mode]
    largest = mode == "farthest"
    wrong = ref.squared_distances(q, centroids).topk(probes, dim=1, largest=largest).indices
    # recompute the search restricted to the wrongly chosen clusters
    scores = torch.full((len(q), k), float("-inf"))
    ids = torch.full((len(q), k), -1, dtype=torch.long)
    for i in range(len(q)):
        members = torch.isin(assign, wrong[i]).nonzero().squeeze(1)
        top = (x[members] @ q[i]).topk(min(k, len(members)))
        scores[i, :len(top.values)], ids[i, :len(top.values)] = top.values, members[top.indices]
    return scores, ids


@piece("13.ivf_search", "IVF search")
def ivf_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(name: str, nq: int, n: int, d: int, nlist: int, k: int, nprobe: int) -> Case:
        x, q = ref.normalize(randn(gen, n, d)), ref.normalize(randn(gen, nq, d))
        seed = int(torch.randint(0, 1000, (), generator=gen))
        centroids, assign = ref.kmeans(x, nlist, 5, seed)

        def run(fn) -> Reason:
            result = fn(q.clone(), x.clone(), centroids.clone(), assign.clone(), k, nprobe)
            reason = _pair(result, "ivf_search")
            if reason:
                return reason
            scores, ids = result
            exp_s, exp_i = ref.ivf_search(q, x, centroids, assign, k, nprobe)
            hints = {"nearest_only": "probed only the nearest cluster: scan the nprobe nearest clusters",
                     "farthest": "probed the *farthest* clusters: take the nprobe with the smallest distance"}
            variants = {m: _ivf_variant(q, x, centroids, assign, k, nprobe, m) for m in hints}
            ms = [(hints[m], v[0]) for m, v in variants.items() if not torch.equal(v[1], exp_i)]
            mi = [(hints[m], v[1]) for m, v in variants.items() if not torch.equal(v[1], exp_i)]
            if isinstance(scores, Tensor) and scores.shape == exp_s.shape and torch.isnan(scores).any():
                return "scores contain NaN: fill the places without a result with -inf (and id -1)"
            return compare_tensor(scores, exp_s, "scores", known_mistakes=ms) or _ids_reason(ids, exp_i, "ids", mi)

        return Case(name, run)

    cases = [case("nprobe = 3 of 8 clusters", 5, 200, 8, 8, 5, 3),
             case("nprobe = nlist (must equal exact search)", 4, 100, 6, 5, 4, 5),
             case("few vectors in the probed cluster: pad with id -1, score -inf", 3, 40, 4, 10, 8, 1)]
    if extended:
        cases += [case("nprobe = 5 of 16, 20 queries", 20, 400, 16, 16, 10, 5),
                  case("nprobe = 2, k = 1", 6, 150, 8, 12, 1, 2)]
    return cases


# --- 13.recall ------------------------------------------------------------------------------


@piece("13.recall", "recall@k")
def recall_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(name: str, found: Tensor, truth: Tensor) -> Case:
        def run(fn) -> Reason:
            got = fn(found.clone(), truth.clone())
            if isinstance(got, Tensor) and got.numel() == 1:
                got = got.item()
            if not isinstance(got, (float, int)) or isinstance(got, bool):
                return f"recall_at_k should return a float, got {type(got).__name__}"
            expected = ref.recall_at_k(found, truth)
            if abs(got - expected) < 1e-6:
                return None
            hits = (found[:, :, None] == truth[:, None, :]).any(1).sum().item()
            wrong = {
                "divided by the number of returned ids (found.numel()); recall@k divides by the k true neighbours per query":
                    hits / found.numel(),
                "divided by the number of queries only: divide by queries × k": hits / len(truth),
                "counted the same found id more than once, or compared position by position instead of as sets":
                    (found[:, :truth.shape[1]] == truth).float().mean().item(),
            }
            for hint, value in wrong.items():
                if abs(got - value) < 1e-6:
                    return hint
            return "recall is wrong: count the true neighbours found (in any order), divide by queries × k"

        return Case(name, run)

    cases = [case("same ids, different order", torch.tensor([[3, 1, 2]]), torch.tensor([[1, 2, 3]])),
             case("2 queries, half found, with -1 padding",
                  torch.tensor([[7, 1, -1, -1], [2, 9, 4, 8]]), torch.tensor([[1, 2, 3, 4], [5, 6, 8, 9]])),
             case("20 returned, recall@10 against 10 true neighbours",
                  torch.randperm(40, generator=gen)[:20].view(1, 20), torch.arange(10).view(1, 10))]
    if extended:
        truth = torch.stack([torch.randperm(50, generator=gen)[:10] for _ in range(8)])
        found = torch.stack([torch.randperm(50, generator=gen)[:15] for _ in range(8)])
        cases += [case("8 queries, random overlap", found, truth), case("nothing found", -torch.ones(2, 5, dtype=torch.long),
                                                                         torch.arange(10).view(2, 5))]
    return cases
