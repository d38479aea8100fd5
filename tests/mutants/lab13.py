"""Plausible wrong answers to lab 13 (vector databases)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/13-vector-databases/lab13-vector-databases.ipynb"
MAX_SCORE = 11
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "normalize": ("13.normalize", "normalize"),
    "cosine": ("13.cosine", "cosine_similarity"),
    "exact": ("13.exact", "exact_search"),
    "kmeans": ("13.kmeans", "kmeans"),
    "ivf_search": ("13.ivf_search", "ivf_search"),
    "recall": ("13.recall", "recall_at_k"),
}

MUTANTS = [
    Mutant("normalised over columns", "normalize", "x.norm(dim=1, keepdim=True)", "x.norm(dim=0, keepdim=True)",
           "each column"),
    Mutant("divided by the squared norm", "normalize", "x.norm(dim=1, keepdim=True)",
           "x.pow(2).sum(1, keepdim=True)", "squared length"),
    Mutant("cosine without normalisation", "cosine", "normalize(a) @ normalize(b).T", "a @ b.T", "not normalised"),
    Mutant("cosine normalises one side only", "cosine", "normalize(a) @ normalize(b).T", "normalize(a) @ b.T",
           "only the first"),
    Mutant("top-k in ascending order", "exact", "all_scores.append(top.values); all_ids.append(top.indices)",
           "all_scores.append(top.values.flip(1)); all_ids.append(top.indices.flip(1))", "ascending order"),
    Mutant("the k smallest scores", "exact", "scores.topk(k, dim=1)", "scores.topk(k, dim=1, largest=False)",
           "smallest"),
    Mutant("centroid update divides by count + 1", "kmeans", "sums / counts.clamp(min=1)", "sums / (counts + 1)",
           "centroid update is off"),
    Mutant("centroid = sum of its points", "kmeans", "sums / counts.clamp(min=1)", "sums", "*sum*"),
    Mutant("centroids never updated", "kmeans", "torch.where(counts > 0, sums / counts.clamp(min=1), centroids)",
           "centroids", "never move"),
    Mutant("IVF probes only the nearest list", "ivf_search", ".topk(nprobe, dim=1, largest=False)",
           ".topk(1, dim=1, largest=False)", "only the nearest cluster"),
    Mutant("IVF probes the farthest lists", "ivf_search", ".topk(nprobe, dim=1, largest=False)",
           ".topk(nprobe, dim=1, largest=True)", "farthest"),
    Mutant("recall divided by the returned count", "recall", "/ truth.numel()", "/ found.numel()",
           "number of returned ids"),
    Mutant("recall compared position by position", "recall", "(found[:, :, None] == truth[:, None, :]).any(1)",
           "(found[:, :truth.shape[1]] == truth)", "position by position"),
]
