"""llm_course.vectordb against independent references: FAISS, scikit-learn,
sentence-transformers and hand-computed cases; crash safety of save; bad inputs."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llm_course import vectordb as vdb
from llm_course.vectordb import Index, IndexFileError

ROOT = Path(__file__).resolve().parents[1]


def unit(n, d, seed=0):
    return vdb.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)))


# --------------------------------------------------------------------------- similarity


def test_normalize_and_cosine_match_torch():
    a, b = torch.randn(5, 7), torch.randn(4, 7)
    assert torch.allclose(vdb.normalize(a), torch.nn.functional.normalize(a, dim=1))
    expected = torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1)
    assert torch.allclose(vdb.cosine_similarity(a, b), expected, atol=1e-6)
    assert torch.equal(vdb.normalize(torch.zeros(1, 3)), torch.zeros(1, 3))  # no NaN for a zero vector


def test_squared_distances_match_cdist():
    x, y = torch.randn(6, 5), torch.randn(3, 5)
    assert torch.allclose(vdb.squared_distances(x, y), torch.cdist(x, y) ** 2, atol=1e-5)


def test_cosine_dot_and_l2_rank_unit_vectors_identically():
    x, q = unit(50, 8), unit(3, 8, seed=1)
    by_dot = (q @ x.T).argsort(1, descending=True)
    by_l2 = vdb.squared_distances(q, x).argsort(1)
    assert torch.equal(by_dot, by_l2)  # |q − x|² = 2 − 2 q·x for unit vectors


# --------------------------------------------------------------------------- exact search


def test_exact_search_matches_faiss_flat_ip():
    faiss = pytest.importorskip("faiss")
    x, q = unit(2000, 32), unit(50, 32, seed=1)
    ref = faiss.IndexFlatIP(32)
    ref.add(x.numpy())
    ref_scores, ref_ids = ref.search(q.numpy(), 10)
    scores, ids = vdb.exact_search(q, x, 10, batch_size=7)  # several batches, one ragged
    assert np.allclose(scores.numpy(), ref_scores, atol=1e-5)
    assert np.array_equal(ids.numpy(), ref_ids)


@pytest.mark.parametrize("query_block, vector_block", [(7, 9), (50, 2000), (16, 3), (1024, 4096)])
def test_blocked_exact_search_matches_faiss_flat_ip(query_block, vector_block):
    faiss = pytest.importorskip("faiss")
    x, q = unit(2000, 32), unit(50, 32, seed=1)
    ref = faiss.IndexFlatIP(32)
    ref.add(x.numpy())
    ref_scores, ref_ids = ref.search(q.numpy(), 10)
    # ragged tiles on both axes, and tiles smaller than k (vector_block 3 < k 10)
    scores, ids = vdb.exact_search_blocked(q, x, 10, query_block=query_block, vector_block=vector_block)
    assert np.allclose(scores.numpy(), ref_scores, atol=1e-5)
    assert np.array_equal(ids.numpy(), ref_ids)


@pytest.mark.parametrize("query_block, vector_block, per_tile, k", [
    (7, 9, 2, 10), (50, 2000, 16, 10), (16, 3, 1, 10), (1024, 4096, 16, 25), (8, 100, 4, 300)])
def test_bf16_exact_search_matches_faiss_flat_ip(query_block, vector_block, per_tile, k):
    faiss = pytest.importorskip("faiss")
    x, q = unit(2000, 32), unit(50, 32, seed=1)
    ref = faiss.IndexFlatIP(32)
    ref.add(x.numpy())
    ref_scores, ref_ids = ref.search(q.numpy(), k)
    # ragged tiles, tiles smaller than k, per_tile < k, and k much larger than per_tile
    scores, ids = vdb.exact_search_bf16(q, x, k, query_block=query_block, vector_block=vector_block,
                                        per_tile=per_tile)
    assert np.allclose(scores.numpy(), ref_scores, atol=1e-5)
    assert np.array_equal(ids.numpy(), ref_ids)


def test_bf16_error_bound_holds_and_is_about_three_bf16_roundoffs():
    torch.manual_seed(0)
    for d in (8, 384, 4096):
        q, x = torch.randn(64, d), torch.randn(512, d) * torch.rand(512, 1) * 10
        bf16 = torch.mm(q.bfloat16(), x.bfloat16().T).double()
        exact = q.double() @ x.double().T
        worst = ((bf16 - exact).abs() / (q.norm(dim=1)[:, None] * x.norm(dim=1)).double()).max()
        assert worst <= vdb.bf16_error_bound(d)
    assert 3 * 2 ** -8 < vdb.bf16_error_bound(384) < 3.1 * 2 ** -8


def test_bf16_exact_search_is_exact_when_many_scores_are_within_the_error_bound():
    # 4000 vectors all within 1e-3 of the query: every bf16 score ties with the top k, most
    # tiles overflow their per_tile slots, and the float32 re-score must still pick the exact top k
    base = unit(1, 64)
    x = vdb.normalize(base + 1e-3 * torch.randn(4000, 64, generator=torch.Generator().manual_seed(1)))
    q = vdb.normalize(base + 1e-3 * torch.randn(3, 64, generator=torch.Generator().manual_seed(2)))
    exact_scores, exact_ids = vdb.exact_search(q, x, 10)
    scores, ids = vdb.exact_search_bf16(q, x, 10, vector_block=512)
    assert torch.equal(ids, exact_ids)
    assert torch.allclose(scores, exact_scores, atol=1e-6)


def test_bf16_exact_search_rejects_a_mismatched_copy():
    x, q = unit(20, 8), unit(3, 8, seed=1)
    with pytest.raises(ValueError, match="vectors_bf16"):
        vdb.exact_search_bf16(q, x, 2, vectors_bf16=x)  # float32, not bf16
    with pytest.raises(ValueError, match="vectors_bf16"):
        vdb.exact_search_bf16(q, x, 2, vectors_bf16=x[:10].bfloat16())
    with pytest.raises(ValueError, match="per_tile"):
        vdb.exact_search_bf16(q, x, 2, per_tile=0)


def test_blocked_exact_search_rejects_bad_blocks():
    x, q = unit(20, 8), unit(3, 8, seed=1)
    with pytest.raises(ValueError, match="vector_block"):
        vdb.exact_search_blocked(q, x, 2, vector_block=0)
    with pytest.raises(ValueError, match="query_block"):
        vdb.exact_search_blocked(q, x, 2, query_block=-1)
    with pytest.raises(ValueError, match="k"):
        vdb.exact_search_blocked(q, x, 21)


def test_exact_search_ties_give_the_same_scores_and_tied_sets():
    faiss = pytest.importorskip("faiss")
    base = unit(20, 8)
    x = torch.cat([base, base, base[:5]])  # every vector appears two or three times: exact ties
    q = unit(6, 8, seed=3)
    ref = faiss.IndexFlatIP(8)
    ref.add(x.numpy())
    ref_scores, ref_ids = ref.search(q.numpy(), 6)
    scores, ids = vdb.exact_search(q, x, 6)
    assert np.allclose(scores.numpy(), ref_scores, atol=1e-6)
    for i in range(len(q)):  # tied ids may come in any order: compare them as sets per distinct score
        for s in np.unique(ref_scores[i].round(5)):
            ours = set(ids[i][np.isclose(scores[i].numpy(), s, atol=1e-5)].tolist())
            theirs = set(ref_ids[i][np.isclose(ref_scores[i], s, atol=1e-5)].tolist())
            if np.isclose(s, ref_scores[i, -1], atol=1e-5):  # the group cut by k: ours ⊆ all tied
                tied = set(np.flatnonzero(np.isclose(q[i].numpy() @ x.numpy().T, s, atol=1e-5)).tolist())
                assert ours <= tied and len(ours) == len(theirs)
            else:
                assert ours == theirs


def test_recall_at_k_hand_computed():
    truth = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = torch.tensor([[4, 3, 9, -1], [5, 6, 7, 8]])  # 2 of 4, then 4 of 4; order is irrelevant
    assert vdb.recall_at_k(found, truth) == pytest.approx(6 / 8)
    assert vdb.recall_at_k(truth, truth) == 1.0


# --------------------------------------------------------------------------- k-means


def blobs(n=600, k=4, d=5, seed=0):
    from sklearn.datasets import make_blobs

    x, _ = make_blobs(n_samples=n, centers=k, n_features=d, cluster_std=0.6, random_state=seed)
    return torch.from_numpy(x).float()


def test_kmeans_inertia_matches_sklearn_on_easy_blobs():
    from sklearn.cluster import KMeans

    x = blobs()
    centroids, assign = vdb.kmeans(x, 4, seed=0)
    ours = vdb.inertia(x, centroids, assign)
    theirs = KMeans(4, n_init=4, random_state=0).fit(x.numpy()).inertia_
    assert ours == pytest.approx(theirs, rel=0.01)
    assert torch.equal(assign, vdb.squared_distances(x, centroids).argmin(1))


def test_lloyd_iterations_never_increase_inertia():
    x = blobs(k=8, seed=3) + 0.5 * torch.randn(600, 5)
    values = [vdb.inertia(x, *vdb.kmeans(x, 8, iters=t, seed=1)) for t in range(8)]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(values, values[1:])), values
    assert values[-1] < values[0]


def test_kmeans_is_deterministic_and_handles_duplicate_points():
    x = blobs()
    assert torch.equal(vdb.kmeans(x, 4, seed=5)[0], vdb.kmeans(x, 4, seed=5)[0])
    same = torch.ones(10, 3)  # fewer distinct points than clusters: no NaN, no crash
    centroids, _ = vdb.kmeans(same, 3)
    assert torch.isfinite(centroids).all()


# --------------------------------------------------------------------------- IVF and PQ


def test_ivf_with_every_list_probed_is_exact():
    x, q = unit(1500, 16), unit(40, 16, seed=1)
    centroids, assign = vdb.kmeans(x, 12)
    s, i = vdb.ivf_search(q, x, centroids, assign, 10, nprobe=12)
    es, ei = vdb.exact_search(q, x, 10)
    assert torch.equal(i, ei) and torch.allclose(s, es)
    index = Index(16, kind="ivf", nlist=12)
    index.add(x)
    s2, i2 = index.search(q, 10, nprobe=12)
    assert torch.equal(i2, ei) and torch.allclose(s2, es, atol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_batched_ivf_in_index_is_exact_search_over_the_probed_clusters(metric):
    x, q = unit(1500, 16) * (1 if metric == "cosine" else 3), unit(40, 16, seed=1)
    index = Index(16, kind="ivf", nlist=20, metric=metric)
    index.add(x)
    # the Index probes the clusters whose centres score best under the metric (cosine: the
    # centre's direction); within them it must find exactly what brute force finds
    centres = vdb.normalize(index.centroids) if metric == "cosine" else index.centroids
    for nprobe in (1, 3, 7):
        s, i = index.search(q, 10, nprobe=nprobe)
        probes = (q @ centres.T).topk(nprobe, dim=1).indices
        for row in range(len(q)):
            members = torch.isin(index.lists, probes[row]).nonzero().squeeze(1)
            top = (x[members] @ q[row]).topk(min(10, len(members)))
            assert torch.equal(i[row, :len(members)], members[top.indices])
            assert torch.allclose(s[row, :len(members)], top.values, atol=1e-5)


def test_ivf_in_index_and_the_readable_version_agree_when_probing_the_same_clusters():
    # for unit centres, nearest in L2 = best cosine: both rules pick the same clusters
    x, q = unit(1500, 16), unit(40, 16, seed=1)
    index = Index(16, kind="ivf", nlist=20)
    index.add(x)
    index.centroids = vdb.normalize(index.centroids)
    index.lists = vdb.squared_distances(x, index.centroids).argmin(1)
    index._cache.clear()
    for nprobe in (1, 3, 7):
        s, i = index.search(q, 10, nprobe=nprobe)
        rs, ri = vdb.ivf_search(q, x, index.centroids, index.lists, 10, nprobe)
        assert torch.equal(i, ri) and torch.allclose(s, rs, atol=1e-6)


def test_ivf_recall_grows_with_nprobe_and_is_close_to_faiss():
    faiss = pytest.importorskip("faiss")
    x, q = unit(3000, 16), unit(100, 16, seed=2)
    _, truth = vdb.exact_search(q, x, 10)
    index = Index(16, kind="ivf", nlist=30)
    index.add(x)
    recalls = [vdb.recall_at_k(index.search(q, 10, nprobe=p)[1], truth) for p in (1, 4, 30)]
    assert recalls[0] < recalls[1] < recalls[2] == 1.0
    quantizer = faiss.IndexFlatL2(16)
    ref = faiss.IndexIVFFlat(quantizer, 16, 30, faiss.METRIC_INNER_PRODUCT)
    ref.train(x.numpy())
    ref.add(x.numpy())
    ref.nprobe = 4
    theirs = vdb.recall_at_k(torch.from_numpy(ref.search(q.numpy(), 10)[1]), truth)
    assert abs(recalls[1] - theirs) < 0.15  # same algorithm, different k-means: similar recall


def test_pq_codes_reconstruct_and_ivfpq_with_refinement_reaches_high_recall():
    x, q = unit(3000, 32), unit(60, 32, seed=4)
    codebooks = vdb.train_pq(x, 8, iters=5)
    codes = vdb.pq_encode(x, codebooks)
    assert codes.shape == (3000, 8) and codes.dtype == torch.uint8
    err = (vdb.pq_decode(codes, codebooks) - x).pow(2).sum(1).mean()
    assert err < 0.5 * x.pow(2).sum(1).mean()  # far better than storing nothing
    _, truth = vdb.exact_search(q, x, 10)
    index = Index(32, kind="ivfpq", nlist=10, m=8)
    index.add(x)
    approx = vdb.recall_at_k(index.search(q, 10, nprobe=10, refine=0)[1], truth)
    refined = vdb.recall_at_k(index.search(q, 10, nprobe=10, refine=8)[1], truth)
    assert refined > approx and refined > 0.9


# --------------------------------------------------------------------------- the Index API


def test_filter_returns_only_matching_ids_and_their_true_top_k():
    x, q = unit(400, 8), unit(5, 8, seed=1)
    meta = [{"colour": "red" if i % 3 == 0 else "blue", "n": i} for i in range(400)]
    for kind in ("flat", "ivf"):
        index = Index(8, kind=kind, nlist=8)
        index.add(x, ids=torch.arange(1000, 1400), metadata=meta)
        s, ids = index.search(q, 5, filter={"colour": "red"}, nprobe=8)
        assert ((ids - 1000) % 3 == 0).all()
        red = torch.arange(0, 400, 3)
        es, ei = vdb.exact_search(q, x[red], 5)
        assert torch.equal(ids, red[ei] + 1000) and torch.allclose(s, es, atol=1e-6)
        _, few = index.search(q, 5, filter=lambda md: md["n"] in (3, 6), nprobe=8)
        assert (few[:, 2:] == -1).all() and set(few[:, :2].flatten().tolist()) == {1003, 1006}


def test_delete_never_returns_deleted_ids_and_ids_can_be_reused():
    x = unit(300, 8)
    for kind in ("flat", "ivf", "ivfpq"):
        index = Index(8, kind=kind, nlist=5, m=4)
        index.add(x)
        _, before = index.search(x[:20], 3, nprobe=5)
        gone = before[:, 0].unique()
        assert index.delete(gone) == len(gone) and len(index) == 300 - len(gone)
        _, after = index.search(x[:20], 3, nprobe=5)
        assert not torch.isin(after, gone).any()
        index.add(x[:1], ids=gone[:1])  # a deleted id is free again
        assert index.search(x[:1], 1, nprobe=5)[1].item() == gone[0]


def test_default_ids_and_ip_metric():
    index = Index(4, metric="ip")
    assert index.add(torch.eye(4) * 2).tolist() == [0, 1, 2, 3]
    assert index.add(torch.ones(1, 4)).tolist() == [4]
    scores, ids = index.search(torch.tensor([[1.0, 0, 0, 0]]), 1)
    assert ids.item() == 0 and scores.item() == 2.0  # ip: lengths count


# --------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("kind", ["flat", "ivf", "ivfpq"])
def test_save_load_round_trip(tmp_path, kind):
    x, q = unit(500, 16), unit(10, 16, seed=1)
    index = Index(16, kind=kind, nlist=8, m=4)
    index.add(x, metadata=[{"i": i} for i in range(500)])
    index.save(tmp_path / "a.vdb")
    loaded = Index.load(tmp_path / "a.vdb")
    assert repr(loaded) == repr(index) and loaded.metadata == index.metadata
    for a, b in zip(index.search(q, 5, nprobe=3), loaded.search(q, 5, nprobe=3)):
        assert torch.equal(a, b)


def test_a_save_interrupted_halfway_leaves_the_previous_file_loadable(tmp_path, monkeypatch):
    path = tmp_path / "index.vdb"
    old = Index(8)
    old.add(unit(10, 8))
    old.save(path)
    new = Index(8)
    new.add(unit(5000, 8))

    def crash_halfway(f, data, chunk=1 << 20):
        f.write(data[: len(data) // 2])
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(vdb, "_write_all", crash_halfway)
    with pytest.raises(OSError, match="simulated"):
        new.save(path)
    assert len(Index.load(path)) == 10
    assert [p.name for p in tmp_path.iterdir()] == ["index.vdb"]  # the temporary file is cleaned up


def test_a_process_killed_mid_save_leaves_the_previous_file_loadable(tmp_path):
    path = tmp_path / "index.vdb"
    old = Index(8)
    old.add(unit(10, 8))
    old.save(path)
    script = f"""
import os, torch
from llm_course import vectordb as vdb
def die(f, data, chunk=1 << 20):
    f.write(data[: len(data) // 2]); f.flush(); os._exit(9)   # no cleanup, no exception handlers
vdb._write_all = die
index = vdb.Index(8); index.add(torch.randn(5000, 8)); index.save({str(path)!r})
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 9, result.stderr
    assert len(Index.load(path)) == 10  # the half-written temporary file never replaced it


def test_truncated_corrupted_foreign_and_future_files_give_clear_errors(tmp_path):
    index = Index(8)
    index.add(unit(50, 8))
    good = tmp_path / "good.vdb"
    index.save(good)
    data = good.read_bytes()
    cases = {
        "truncated.vdb": (data[: len(data) // 2], "truncated"),
        "header.vdb": (data[:20], "truncated"),
        "corrupt.vdb": (data[:-10] + bytes(10), "corrupted"),
        "future.vdb": (data[:8] + (99).to_bytes(4, "little") + data[12:], "format version 99"),
        "image.png": (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a vector index file"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(IndexFileError, match=message) as err:
            Index.load(tmp_path / name)
        assert name in str(err.value)
    checkpoint = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(3)}, checkpoint)
    with pytest.raises(IndexFileError, match="model.pt is not a vector index file"):
        Index.load(checkpoint)


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_name_the_argument():
    index = Index(8)
    index.add(unit(20, 8))
    with pytest.raises(ValueError, match="queries has dimension 4"):
        index.search(torch.randn(2, 4), 3)
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.search(unit(2, 8), 0)
    with pytest.raises(ValueError, match="k=21 is larger than the number of vectors"):
        index.search(unit(2, 8), 21)
    with pytest.raises(ValueError, match="vectors contains NaN"):
        index.add(torch.full((2, 8), float("nan")))
    with pytest.raises(ValueError, match="ids contains duplicates"):
        index.add(unit(2, 8), ids=[100, 100])
    with pytest.raises(ValueError, match="ids already in the index"):
        index.add(unit(1, 8), ids=[3])
    with pytest.raises(ValueError, match="metadata must be a list of 2"):
        index.add(unit(2, 8), metadata=[{}])
    with pytest.raises(ValueError, match="kind must be one of"):
        Index(8, kind="hnsw")
    with pytest.raises(ValueError, match="m=5 must divide dim=8"):
        Index(8, kind="ivfpq", m=5)
    with pytest.raises(ValueError, match="queries must be a 2-D float tensor"):
        vdb.exact_search(torch.randn(8), unit(5, 8), 2)
    with pytest.raises(ValueError, match="nprobe"):
        vdb.ivf_search(unit(2, 8), unit(10, 8), unit(3, 8), torch.zeros(10, dtype=torch.long), 2, nprobe=4)
    with pytest.raises(ValueError, match="found and truth"):
        vdb.recall_at_k(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long))
    ivf = Index(8, kind="ivf", nlist=4)
    ivf.add(unit(50, 8))
    with pytest.raises(ValueError, match="nprobe"):
        ivf.search(unit(1, 8), 3, nprobe=5)


# --------------------------------------------------------------------------- embeddings


def test_embed_matches_sentence_transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    st = pytest.importorskip("sentence_transformers")
    from llm_course.pretrained import minilm_path

    sentences = ["To be, or not to be, that is the question.", "The food was great!", "a"]
    reference = st.SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    expected = torch.from_numpy(reference.encode(sentences, normalize_embeddings=True))
    got = vdb.embed(sentences, batch_size=2)
    assert got.shape == (3, 384)
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("kind", ["flat", "ivf", "ivfpq"])
def test_an_empty_batch_of_queries_gets_empty_answers(kind):
    index = Index(8, kind=kind, nlist=4, m=2)
    index.add(unit(300, 8))  # PQ needs ≥ 256 training vectors
    scores, ids = index.search(torch.empty(0, 8), 3, nprobe=2)
    assert scores.shape == ids.shape == (0, 3) and ids.dtype == torch.long
