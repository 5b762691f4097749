"""Stage 3: faiss k-means + AHC pseudo-labels, purity metrics, streaming scp loading, the CLI and steps/cluster.sh."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from sslspk.cluster.ahc import (
    ahc_centroids,
    ahc_peak_bytes,
    check_ahc_memory,
    condensed_distances,
    cut_linkage,
    linkage_in_place,
)
from sslspk.cluster.evaluate import clustering_scores, contingency, inverse_purity, purity, size_summary
from sslspk.cluster.kmeans import faiss_kmeans, use_gpu
from sslspk.cluster.pseudo_labels import ClusterConfig, cluster_embeddings, make_pseudo_labels
from sslspk.data.datadir import DataDir, DataDirError
from sslspk.data.embeddings import count_lines, l2_normalize_, load_embeddings, standardize_, write_embeddings
from sslspk.data.validate import validate
from sslspk.utils.fileio import FormatError


def planted(num: int = 20, per: int = 30, d: int = 32, noise: float = 0.15, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
    """``num`` well-separated clusters of ``per`` unit vectors around random directions (rows shuffled)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.permutation(np.repeat(np.arange(num), per))
    x = (centres[labels] + noise * rng.normal(size=(labels.size, d))).astype(np.float32)
    return l2_normalize_(x), labels


def nmi(a, b) -> float:
    return clustering_scores(a, b)["nmi"]


# ----------------------------------------------------------------------------- k-means and AHC

def test_kmeans_recovers_planted_clusters():
    x, true = planted()
    r = cluster_embeddings(x, ClusterConfig(k=20, nredo=5, init="kmeans++", gpu="no"))
    assert r.num_clusters == 20 and r.num_ahc_clusters is None
    assert nmi(r.labels, true) > 0.95
    # labels are numbered by decreasing size
    sizes = np.bincount(r.labels)
    assert list(sizes) == sorted(sizes, reverse=True)


def test_kmeans_assignment_is_nearest_centroid_and_deterministic():
    x, _ = planted(num=5, per=40, seed=3)
    a = faiss_kmeans(x, 7, seed=5, batch=33)
    b = faiss_kmeans(x, 7, seed=5, batch=1000)
    np.testing.assert_array_equal(a.labels, b.labels)
    d2 = ((x[:, None, :] - a.centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(a.labels, d2.argmin(1))
    # spherical: IP index, the score is the cosine to the (unit) centroid
    np.testing.assert_allclose(np.linalg.norm(a.centroids, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(a.distances, (x * a.centroids[a.labels]).sum(1), atol=1e-5)


@pytest.mark.parametrize("linkage", ["average", "ward"])
def test_ahc_merges_kmeans_overclustering(linkage):
    x, true = planted(seed=1)
    r = cluster_embeddings(x, ClusterConfig(k=60, ahc_clusters=20, ahc_linkage=linkage, seed=2))
    km = clustering_scores(r.kmeans_labels, true)
    final = clustering_scores(r.labels, true)
    assert r.num_kmeans_clusters > 40 and r.num_ahc_clusters == 20 == r.num_clusters
    assert km["inverse_purity"] < 0.8 < km["purity"]  # k-means splits speakers ...
    assert final["nmi"] > 0.95 and final["inverse_purity"] > 0.95  # ... AHC joins them again
    # every utterance follows its k-means centroid
    for c in np.unique(r.kmeans_labels):
        assert np.unique(r.labels[r.kmeans_labels == c]).size == 1


def test_k0_is_ahc_of_the_embeddings_themselves():
    from scipy.cluster.hierarchy import fcluster, linkage

    x, true = planted(num=8, per=15, noise=0.25, seed=4)   # clusters that touch: the partition is not trivial
    r = cluster_embeddings(x, ClusterConfig(k=0, ahc_clusters=8))
    assert r.num_kmeans_clusters == len(x) and r.num_ahc_clusters == 8 == r.num_clusters
    assert np.isnan(r.kmeans_objective) and not r.gpu
    np.testing.assert_array_equal(r.kmeans_labels, np.arange(len(x)))
    # the same partition as scipy's average-linkage AHC of the rows (cosine), cut at 8 clusters
    ref = fcluster(linkage(x.astype(np.float64), method="average", metric="cosine"), 8, criterion="maxclust")
    assert clustering_scores(r.labels, ref)["ari"] == pytest.approx(1.0)
    assert 0.7 < nmi(r.labels, true) < 0.99


def test_ahc_refuses_a_distance_matrix_larger_than_memory(monkeypatch):
    assert ahc_peak_bytes(1000) == 8 * 1000 * 999 // 2   # one condensed float64 matrix: the linkage works in it
    check_ahc_memory(1000, available=ahc_peak_bytes(1000))   # fits exactly: no error
    with pytest.raises(ValueError, match=r"AHC of 1000000 rows needs about 3725.3 GiB .* run k-means first"):
        check_ahc_memory(1_000_000, available=16 * 2**30)
    # cluster_embeddings with k=0 checks before computing anything
    monkeypatch.setattr("sslspk.cluster.ahc.available_memory_bytes", lambda: 1000)
    x, _ = planted(num=2, per=20, noise=0.1, seed=0)
    with pytest.raises(ValueError, match="AHC of 40 rows needs"):
        cluster_embeddings(x, ClusterConfig(k=0, ahc_clusters=2))


def test_condensed_distances_and_cut_match_scipy():
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    c = rng.normal(size=(57, 6))
    np.testing.assert_allclose(condensed_distances(c, "cosine", block=10), pdist(c, "cosine"), atol=1e-12)
    np.testing.assert_allclose(condensed_distances(c, "euclidean", block=7), pdist(c), atol=1e-9)
    z = linkage(pdist(c, "cosine"), "average")
    for n in (1, 5, 13, 57):
        lab = cut_linkage(z, 57, num_clusters=n)
        assert np.unique(lab).size == n and lab.min() == 0 and lab.max() == n - 1
        assert adjusted_rand_score(fcluster(z, n, "maxclust"), lab) == pytest.approx(1.0)
    t = float(np.median(z[:, 2]))
    assert adjusted_rand_score(fcluster(z, t, "distance"), cut_linkage(z, 57, threshold=t)) == pytest.approx(1.0)
    assert adjusted_rand_score(ahc_centroids(c, 9), fcluster(z, 9, "maxclust")) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="exactly one"):
        cut_linkage(z, 57)
    with pytest.raises(ValueError, match="linkage"):
        ahc_centroids(c, 3, linkage="median")


def scipy_ahc(c: np.ndarray, num_clusters: int, linkage: str) -> tuple[np.ndarray, np.ndarray]:
    """The former exact path: scipy's linkage (on a copy of the condensed matrix), cut as ahc_centroids cuts."""
    from scipy.cluster.hierarchy import linkage as scipy_linkage

    z = scipy_linkage(condensed_distances(c, "euclidean" if linkage == "ward" else "cosine"), method=linkage)
    return z, cut_linkage(z, len(c), num_clusters)


@pytest.mark.parametrize("k,linkage", [(10_000, "average"), (2000, "complete"), (2000, "single"), (2000, "ward")])
def test_inplace_ahc_equals_scipy(k, linkage):
    """ahc_centroids (fastcluster, in place) gives scipy's labels, on 10k centroids for the recipe's linkage."""
    rng = np.random.default_rng(k)
    c, _ = planted(num=int(k / 6.67), per=1, d=256, noise=0.0, seed=k)   # k/6.67 speaker directions ...
    c = l2_normalize_(c[rng.integers(0, len(c), k)] + 0.03 * rng.normal(size=(k, 256)).astype(np.float32))
    num = int(k / 6.67)                                                  # ... 6.67 centroids each, as 50k -> 7.5k
    z_ref, ref = scipy_ahc(c, num, linkage)
    np.testing.assert_array_equal(ahc_centroids(c, num, linkage=linkage), ref)
    if k > 2000:
        return
    dist = condensed_distances(c, "euclidean" if linkage == "ward" else "cosine")
    before = dist.copy()
    z = linkage_in_place(dist, k, linkage)
    np.testing.assert_array_equal(z[:, [0, 1, 3]], z_ref[:, [0, 1, 3]])   # the same merges in the same order
    np.testing.assert_allclose(z[:, 2], z_ref[:, 2], rtol=0, atol=1e-12)
    if linkage != "single":   # the matrix itself was the working memory (no copy); single linkage only reads it
        assert not np.array_equal(dist, before)
    with pytest.raises(ValueError, match="float64 condensed matrix of 2001 rows"):
        linkage_in_place(before, k + 1, linkage)


def test_ahc_threshold_option():
    x, true = planted(seed=4)
    r = cluster_embeddings(x, ClusterConfig(k=60, ahc_threshold=0.5, seed=1))
    assert r.num_clusters == 20 and nmi(r.labels, true) > 0.95
    assert cluster_embeddings(x, ClusterConfig(k=60, ahc_threshold=0.0, seed=1)).num_clusters == r.num_kmeans_clusters


def small_cluster_data() -> tuple[np.ndarray, np.ndarray]:
    """4 clusters of 40 and 3 far-apart clusters of 2."""
    big, big_lab = planted(num=4, per=40, d=16, noise=0.03, seed=7)
    tiny, tiny_lab = planted(num=3, per=2, d=16, noise=0.02, seed=8)
    return np.vstack([big, tiny]), np.concatenate([big_lab, tiny_lab + 4])


def test_min_cluster_size_drop():
    x, true = small_cluster_data()
    base = cluster_embeddings(x.copy(), ClusterConfig(k=7, nredo=5, init="kmeans++"))
    assert sorted(np.bincount(base.labels)) == [2, 2, 2, 40, 40, 40, 40] and nmi(base.labels, true) == 1.0
    r = cluster_embeddings(x.copy(), ClusterConfig(k=7, nredo=5, init="kmeans++", min_cluster_size=3))
    assert r.num_dropped == 6 and r.num_merged == 0 and r.num_clusters == 4
    np.testing.assert_array_equal(r.labels < 0, true >= 4)
    np.testing.assert_array_equal(r.labels[true < 4], base.labels[true < 4])


def test_min_cluster_size_merge_goes_to_nearest_big_cluster_mean():
    x, true = small_cluster_data()
    base = cluster_embeddings(x.copy(), ClusterConfig(k=7, nredo=5, init="kmeans++"))
    r = cluster_embeddings(x.copy(), ClusterConfig(k=7, nredo=5, init="kmeans++", min_cluster_size=3,
                                                   small_clusters="merge"))
    assert r.num_dropped == 0 and r.num_merged == 6 and r.num_clusters == 4 and (r.labels >= 0).all()
    means = np.stack([x[base.labels == c].mean(0) for c in range(4)])  # big clusters: 0..3 (by size)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    member = [int(np.flatnonzero(base.labels == c)[0]) for c in range(4)]
    for i in np.flatnonzero(true >= 4):
        assert r.labels[i] == r.labels[member[int(np.argmax(means @ x[i]))]]
    assert nmi(r.labels[true < 4], base.labels[true < 4]) == pytest.approx(1.0)  # big clusters unchanged
    with pytest.raises(ValueError, match="no cluster has"):
        cluster_embeddings(x.copy(), ClusterConfig(k=7, min_cluster_size=1000))


@pytest.mark.parametrize("kwargs,msg", [
    (dict(k=0), "k=0"), (dict(k=-1), "k=-1"), (dict(k=101), "k=101"), (dict(k=0, ahc_clusters=101), "ahc_clusters"),
    (dict(k=5, ahc_clusters=6), "ahc_clusters"),
    (dict(k=5, niter=0), "niter"), (dict(k=5, init="bad"), "init"), (dict(k=5, min_cluster_size=0), "min_cluster"),
    (dict(k=5, small_clusters="keep"), "small_clusters"), (dict(k=5, prefix="a b"), "prefix"),
    (dict(k=5, gpu="maybe"), "gpu"),
])
def test_bad_settings(kwargs, msg):
    x, _ = planted(num=5, per=20)
    with pytest.raises(ValueError, match=msg):
        cluster_embeddings(x, ClusterConfig(**kwargs))


def test_gpu_request_without_gpu():
    import faiss

    if faiss.get_num_gpus() > 0:
        assert use_gpu("yes") and use_gpu("auto")
    else:
        assert not use_gpu("auto")
        with pytest.raises(ValueError, match="no GPU"):
            use_gpu("yes")
    assert not use_gpu("no")


# ----------------------------------------------------------------------------- metrics

def brute_purity(pred, ref) -> tuple[float, float]:
    """Purity and inverse purity by explicit loops over clusters and classes."""
    n = len(pred)
    pur = sum(max(sum(1 for p, r in zip(pred, ref) if p == c and r == s) for s in set(ref)) for c in set(pred))
    inv = sum(max(sum(1 for p, r in zip(pred, ref) if p == c and r == s) for c in set(pred)) for s in set(ref))
    return pur / n, inv / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_purity_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, 9, 200)
    ref = (pred * 3 + rng.integers(0, 4, 200)) % 13  # correlated but not equal
    want = brute_purity(pred.tolist(), ref.tolist())
    assert purity(pred, ref) == pytest.approx(want[0]) and inverse_purity(pred, ref) == pytest.approx(want[1])
    s = clustering_scores([f"c{p}" for p in pred], [f"spk{r}" for r in ref])  # strings work too
    assert (s["purity"], s["inverse_purity"]) == pytest.approx(want)
    assert int(contingency(pred, ref).sum()) == 200


def test_purity_extremes_and_errors():
    ref = np.array([0, 0, 1, 1, 2, 2])
    assert purity(np.arange(6), ref) == 1.0 and inverse_purity(np.arange(6), ref) == pytest.approx(0.5)
    assert purity(np.zeros(6, int), ref) == pytest.approx(1 / 3) and inverse_purity(np.zeros(6, int), ref) == 1.0
    s = clustering_scores(ref + 5, ref)
    assert s == {"nmi": pytest.approx(1.0), "ari": pytest.approx(1.0), "purity": 1.0, "inverse_purity": 1.0}
    with pytest.raises(ValueError, match="shape"):
        purity(np.zeros(3, int), np.zeros(4, int))


def test_size_summary():
    s = size_summary(np.array([1, 2, 3, 4, 9, 40]))
    assert s["num_clusters"] == 6 and s["num_items"] == 59 and s["min"] == 1 and s["max"] == 40
    assert s["histogram"] == {"1": 1, "2-3": 2, "4-7": 1, "8-15": 1, "32-63": 1}
    assert s["percentiles"]["p50"] == 3.5


# ----------------------------------------------------------------------------- loading

def test_streaming_loader_matches_load_embeddings(tmp_path):
    rng = np.random.default_rng(0)
    items = [(f"u{i:03d}", rng.normal(size=12)) for i in range(50)]
    write_embeddings(tmp_path / "a.ark", tmp_path / "a.scp", items[:30])
    write_embeddings(tmp_path / "b.ark", tmp_path / "b.scp", items[30:])
    scp = tmp_path / "all.scp"
    scp.write_text((tmp_path / "a.scp").read_text() + (tmp_path / "b.scp").read_text())
    keys, mat = load_embeddings(scp)
    k2, m2 = load_embeddings(scp)
    assert keys == k2 and mat.dtype == np.float32 and mat.flags.c_contiguous
    np.testing.assert_array_equal(mat, m2)
    assert count_lines(scp) == 50
    l2_normalize_(mat, batch=7)
    np.testing.assert_allclose(np.linalg.norm(mat, axis=1), 1, atol=1e-6)


def test_streaming_loader_errors(tmp_path):
    write_embeddings(tmp_path / "a.ark", tmp_path / "a.scp", [("x", np.ones(4)), ("y", np.ones(3))])
    with pytest.raises(FormatError, match=r"a.scp:2: embedding 'y' has dim 3, expected 4"):
        load_embeddings(tmp_path / "a.scp")
    lines = (tmp_path / "a.scp").read_text().splitlines()
    (tmp_path / "dup.scp").write_text(f"{lines[0]}\n{lines[0]}\n")
    with pytest.raises(FormatError, match="dup.scp:2: duplicate key 'x'"):
        load_embeddings(tmp_path / "dup.scp")
    (tmp_path / "bad.scp").write_text(f"{lines[0]}\nz {tmp_path}/nothere.ark:5\n")
    with pytest.raises(FormatError, match="bad.scp:2: cannot read embedding 'z'"):
        load_embeddings(tmp_path / "bad.scp")
    (tmp_path / "empty.scp").write_text("")
    with pytest.raises(FormatError, match="no embeddings"):
        load_embeddings(tmp_path / "empty.scp")
    with pytest.raises(FileNotFoundError):
        load_embeddings(tmp_path / "missing.scp")


# ----------------------------------------------------------------------------- data dir, CLI, steps

def make_corpus(root: Path, num: int = 20, per: int = 30, extra: int = 0) -> tuple[Path, Path, np.ndarray]:
    """A data dir of ``num * per`` utts with planted embeddings in an scp (plus ``extra`` unrelated ones)."""
    x, lab = planted(num=num, per=per)
    utts = [f"spk{lab[i]:02d}-utt{i:04d}" for i in range(len(lab))]
    data = root / "data" / "train"
    dd = DataDir(utt2spk={u: u.split("-")[0] for u in utts},
                 wav_scp={u: f"/audio/{u}.wav" for u in utts},
                 utt2dur={u: 2.5 for u in utts})
    dd.save(data)
    rng = np.random.default_rng(9)
    items = list(zip(utts, x)) + [(f"zz-extra{i}", rng.normal(size=x.shape[1])) for i in range(extra)]
    rng.shuffle(items)  # scp order differs from the data dir's
    scp = root / "emb" / "embeddings.scp"
    write_embeddings(root / "emb" / "embeddings.ark", scp, items)
    return data, scp, lab


def test_make_pseudo_labels_writes_valid_data_dir_and_report(tmp_path):
    data, scp, _ = make_corpus(tmp_path, extra=5)
    out = tmp_path / "data" / "train_pl"
    cfg = ClusterConfig(k=60, ahc_clusters=20, min_cluster_size=2)
    s = make_pseudo_labels(scp, data, out, cfg, ref_utt2spk=data / "utt2spk")
    assert validate(out) == []
    dd = DataDir.load(out)
    assert set(dd.spks) == {f"pl{i:05d}" for i in range(20)} and len(dd.utts) == 600
    assert dd.utt2dur == DataDir.load(data).utt2dur  # the other tables are carried over
    assert s["num_extra_embeddings"] == 5 and s["num_clusters"] == 20 and s["num_kmeans_clusters"] > 40
    assert s["reference"]["final"]["nmi"] > 0.95 and s["reference"]["num_ref_speakers"] == 20
    saved = json.loads((out / "clusters.json").read_text())
    assert saved["reference"]["final"] == pytest.approx(s["reference"]["final"])
    assert saved["sizes"]["num_items"] == 600 and saved["sizes"]["max"] >= 30
    report = (out / "report.md").read_text()
    for text in ("pseudo speakers: 20", "AHC of the centroids: average linkage, cut at 20 clusters",
                 "| kmeans |", "| final |", "inverse purity", "## Cluster sizes"):
        assert text in report
    # the pseudo labels agree with the true speakers
    true = DataDir.load(data).utt2spk
    assert clustering_scores([dd.utt2spk[u] for u in dd.utts], [true[u] for u in dd.utts])["purity"] > 0.95


def test_make_pseudo_labels_k0_report(tmp_path):
    data, scp, _ = make_corpus(tmp_path, num=6, per=10)
    out = tmp_path / "data" / "train_pl"
    s = make_pseudo_labels(scp, data, out, ClusterConfig(k=0, ahc_clusters=6), ref_utt2spk=data / "utt2spk")
    assert s["num_clusters"] == 6 and s["reference"]["final"]["nmi"] > 0.95
    assert "kmeans" not in s["reference"]   # one "k-means cluster" per utterance: nothing to score
    report = (out / "report.md").read_text()
    assert "- no k-means (k=0)" in report and "AHC of the embeddings: average linkage, cut at 6 clusters" in report
    assert "| kmeans |" not in report


def test_make_pseudo_labels_is_idempotent(tmp_path):
    data, scp, _ = make_corpus(tmp_path, num=5, per=10)
    out = tmp_path / "pl"
    cfg = ClusterConfig(k=5, nredo=3)
    assert make_pseudo_labels(scp, data, out, cfg) is not None
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert make_pseudo_labels(scp, data, out, cfg) is None
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert make_pseudo_labels(scp, data, out, cfg, force=True) is not None  # --force redoes
    assert make_pseudo_labels(scp, data, out, ClusterConfig(k=4)) is not None  # other options: redone
    assert len(DataDir.load(out).spks) == 4
    stamp = Path(f"{out}.stamp")
    os.utime(scp, ns=(stamp.stat().st_mtime_ns + 10**10,) * 2)  # newer embeddings, same content: not redone
    assert make_pseudo_labels(scp, data, out, ClusterConfig(k=4)) is None
    lines = scp.read_text().splitlines(keepends=True)   # other content, an older time: redone
    scp.write_text("".join(lines[1:] + lines[:1]))
    os.utime(scp, ns=(stamp.stat().st_mtime_ns - 10**10,) * 2)
    assert make_pseudo_labels(scp, data, out, ClusterConfig(k=4)) is not None
    stamp.unlink()  # an unfinished output is redone
    assert make_pseudo_labels(scp, data, out, ClusterConfig(k=4)) is not None


def test_make_pseudo_labels_input_errors(tmp_path):
    data, scp, _ = make_corpus(tmp_path, num=3, per=4)
    with pytest.raises(FileNotFoundError, match="embeddings scp not found"):
        make_pseudo_labels(tmp_path / "nothing.scp", data, tmp_path / "o", ClusterConfig(k=2))
    with pytest.raises(ValueError, match="k=13 must be between 1 and the number of embeddings"):
        make_pseudo_labels(scp, data, tmp_path / "o", ClusterConfig(k=13))
    with pytest.raises(DataDirError, match="is the input data dir"):
        make_pseudo_labels(scp, data, data, ClusterConfig(k=2))
    sub = tmp_path / "sub.scp"
    sub.write_text("".join(scp.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(DataDirError, match="1 of the 12 utts .* have no embedding"):
        make_pseudo_labels(sub, data, tmp_path / "o", ClusterConfig(k=2))
    assert not (tmp_path / "o.stamp").exists()


def run_bin(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bin" / "cluster.py"), *args], capture_output=True,
                          text=True, env=env)


def test_cli_end_to_end_and_errors(tmp_path, recipe_env):
    data, scp, _ = make_corpus(tmp_path)
    out, exp = tmp_path / "train_pl", tmp_path / "exp"
    args = ["--k", "60", "--ahc-clusters", "20", "--ref-utt2spk", str(data / "utt2spk"),
            "--report-dir", str(exp), "--num-threads", "1", str(scp), str(data), str(out)]
    r = run_bin(args, recipe_env)
    assert r.returncode == 0, r.stderr
    assert "600 of 600 utts in 20 pseudo speakers (k-means" in r.stdout and "NMI" in r.stdout
    assert validate(out) == [] and (exp / "report.md").is_file() and not (out / "report.md").exists()
    assert json.loads((exp / "clusters.json").read_text())["command"].startswith("cluster.py --k 60")
    r = run_bin(args, recipe_env)
    assert r.returncode == 0 and "nothing to do" in r.stdout
    for bad, msg in [(["--k", "5", str(tmp_path / "no.scp"), str(data), str(out)], "embeddings scp not found"),
                     (["--k", "601", str(scp), str(data), str(out)], "k=601 must be between"),
                     (["--k", "5", str(scp), str(tmp_path / "nodata"), str(out)], "not a directory")]:
        r = run_bin(bad, recipe_env)
        assert r.returncode == 1 and "ERROR: " in r.stderr and msg in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_steps_cluster_sh(tmp_path, recipe_env):
    data, scp, _ = make_corpus(tmp_path, num=10, per=8)
    out = tmp_path / "data" / "train_pl_iter1"
    cmd = [str(REPO / "steps" / "cluster.sh"), "--k", "20", "--ahc-clusters", "10", "--min-cluster-size", "3",
           "--small-clusters", "merge", "--ref-utt2spk", str(data / "utt2spk"), str(scp), str(data), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=recipe_env, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert validate(out) == [] and len(DataDir.load(out).spks) <= 10
    assert "pseudo speakers" in (out / "log" / "cluster.log").read_text()
    r = subprocess.run(cmd[:1] + ["--force", "maybe"] + cmd[1:], capture_output=True, text=True,
                       env=recipe_env, cwd=REPO)
    assert r.returncode != 0
    r = subprocess.run([str(REPO / "steps" / "cluster.sh"), str(scp), str(data), str(out)], capture_output=True,
                       text=True, env=recipe_env, cwd=REPO)
    assert r.returncode == 1 and "Usage" in r.stderr


def test_steps_cluster_sh_reports_errors(tmp_path, recipe_env):
    data, scp, _ = make_corpus(tmp_path, num=3, per=4)
    r = subprocess.run([str(REPO / "steps" / "cluster.sh"), "--k", "13", str(scp), str(data), str(tmp_path / "o")],
                       capture_output=True, text=True, env=recipe_env, cwd=REPO)
    assert r.returncode == 1 and "ERROR: k=13 must be between 1 and the number of embeddings (12)" in r.stderr
    assert not (tmp_path / "o.stamp").exists()


def test_cli_help_imports_stdlib_only():
    code = ("import sys; import sslspk.bin.cluster as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = {'numpy', 'faiss', 'sklearn', 'scipy', 'kaldiio'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "--ahc-clusters" in r.stdout and "--min-cluster-size" in r.stdout


def test_standardize_lets_every_dimension_count(tmp_path):
    """A statistics-like embedding: the speakers live in small-scale dimensions next to two large,
    speaker-independent ones (as MFCC c0). L2 normalisation alone lets those decide the clusters;
    ``standardize`` (per-dimension mean/std over the data set first) recovers the speakers."""
    rng = np.random.default_rng(0)
    x, lab = planted(num=8, per=20)
    loud = rng.normal(size=(len(x), 2)) * 30.0   # speaker-independent, 30x the scale of the rest
    data, scp, _ = make_corpus(tmp_path, num=8, per=20)
    utts = [f"spk{lab[i]:02d}-utt{i:04d}" for i in range(len(lab))]
    write_embeddings(tmp_path / "loud.ark", tmp_path / "loud.scp", zip(utts, np.hstack([x, loud])))
    nmis = {}
    for flag in (False, True):
        s = make_pseudo_labels(tmp_path / "loud.scp", data, tmp_path / f"pl_{flag}",
                               ClusterConfig(k=0, ahc_clusters=8, ahc_linkage="ward", standardize=flag),
                               ref_utt2spk=data / "utt2spk")
        nmis[flag] = s["reference"]["final"]["nmi"]
    assert nmis[True] > 0.95 and nmis[False] < 0.5, nmis
    m = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]], dtype=np.float32)
    np.testing.assert_allclose(standardize_(m.copy(), batch=2), [[-1.2247449, 0], [0, 0], [1.2247449, 0]], rtol=1e-6)


def test_cluster_py_options_are_the_fields_of_cluster_config():
    """bin/cluster.py's clustering options are made from ClusterConfig: one per field, with its default."""
    import dataclasses

    from sslspk.bin.cluster import build_parser
    from sslspk.cluster.config import from_args, option_flag

    p = build_parser()
    flags = {s for a in p._actions for s in a.option_strings}
    assert {option_flag(f) for f in dataclasses.fields(ClusterConfig)} <= flags
    assert from_args(p.parse_args(["--k", "3", "e.scp", "d", "o"])) == ClusterConfig(k=3)
    cfg = from_args(p.parse_args(["--k", "3", "--spherical", "false", "--batch-size", "7", "--ahc-threshold", "0.5",
                                  "e.scp", "d", "o"]))
    assert cfg == ClusterConfig(k=3, spherical=False, batch=7, ahc_threshold=0.5)
    for bad in (["--spherical", "no"], ["--init", "nope"], ["--ahc-clusters", "2", "--ahc-threshold", "1"]):
        with pytest.raises(SystemExit):
            p.parse_args(["--k", "3", *bad, "e.scp", "d", "o"])


def test_a_field_added_to_cluster_config_is_an_option_of_steps_cluster_sh(tmp_path, recipe_env):
    """A setting added to ClusterConfig (here by a sitecustomize that extends it in every process) is an option
    of cluster.py and, passed through untouched, of steps/cluster.sh, which names no clustering option."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import dataclasses\nimport sslspk.cluster.config as c\n"
        "c.ClusterConfig = dataclasses.make_dataclass('ClusterConfig', [('tag', str, c._option('none', 'a new "
        "setting'))], bases=(c.ClusterConfig,))\n")
    env = dict(recipe_env, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    data, scp, _ = make_corpus(tmp_path, num=4, per=5)
    out = tmp_path / "pl"
    r = subprocess.run([str(REPO / "steps" / "cluster.sh"), "--k", "4", "--tag", "hello", "--prefix", "q",
                        str(scp), str(data), str(out)], capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = json.loads((out / "clusters.json").read_text())["config"]
    assert cfg["tag"] == "hello" and cfg["prefix"] == "q" and cfg["k"] == 4
    assert all(s.startswith("q") for s in DataDir.load(out).spks)
    script = (REPO / "steps" / "cluster.sh").read_text()
    assert not {"prefix", "standardize", "spherical", "niter", "linkage"} & set(re.findall(r"[a-z_]+", script))
    r = subprocess.run([str(REPO / "steps" / "cluster.sh"), "--k", "4", "--tag", "x", str(scp), str(data), str(out)],
                       capture_output=True, text=True, env=recipe_env, cwd=REPO)   # without the new field: refused
    assert r.returncode == 1 and "unrecognized arguments: --tag" in r.stderr


def test_ahc_clusters_from_takes_the_count_of_an_earlier_clustering(tmp_path):
    from sslspk.bin.cluster import main

    data, scp, _ = make_corpus(tmp_path, num=5, per=8)
    first = make_pseudo_labels(scp, data, tmp_path / "pl1", ClusterConfig(k=0, ahc_threshold=0.9))
    main(["--k", "0", "--ahc-clusters-from", str(tmp_path / "pl1" / "clusters.json"), "--num-threads", "1",
          str(scp), str(data), str(tmp_path / "pl2")])
    second = json.loads((tmp_path / "pl2" / "clusters.json").read_text())
    assert second["config"]["ahc_clusters"] == first["num_clusters"] == second["num_clusters"]
    with pytest.raises(SystemExit):   # not with --ahc-clusters
        main(["--k", "0", "--ahc-clusters", "3", "--ahc-clusters-from", str(tmp_path / "pl1" / "clusters.json"),
              str(scp), str(data), str(tmp_path / "pl3")])


def test_cluster_stage_checks_the_options_first_then_clusters_and_prints_one_line(tmp_path, capsys):
    """cluster_stage (bin/cluster.py): --check-options reads no file; --ahc-clusters-from needs a clusters.json
    and no AHC cut of its own; an output over an input is refused before any work; the summary line counts
    utterances and clusters and scores them against the reference."""
    from sslspk.cluster.pseudo_labels import cluster_stage
    from sslspk.utils.config import ConfigError
    from sslspk.utils.errors import InputError

    absent = [str(tmp_path / "none.scp"), str(tmp_path / "nodata"), str(tmp_path / "o")]
    cluster_stage(*absent, ClusterConfig(k=3), check_only=True)
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError, match="k=0 .* needs ahc_clusters"):
        cluster_stage(*absent, ClusterConfig(k=0), check_only=True)
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(InputError, match="c.json: not a clusters.json with num_clusters"):
        cluster_stage(*absent, ClusterConfig(k=0), ahc_clusters_from=str(tmp_path / "c.json"), check_only=True)
    (tmp_path / "c.json").write_text('{"num_clusters": 4}')
    with pytest.raises(InputError, match="goes without --ahc-clusters"):
        cluster_stage(*absent, ClusterConfig(k=0, ahc_clusters=2), ahc_clusters_from=str(tmp_path / "c.json"))
    data, scp, _ = make_corpus(tmp_path, num=4, per=5)
    with pytest.raises(InputError, match="utt2spk"):   # the report would overwrite the data dir's utt2spk
        cluster_stage(str(scp), str(data), str(tmp_path / "o"), ClusterConfig(k=0, ahc_clusters=4),
                      ref_utt2spk=str(tmp_path / "o" / "utt2spk"))
    capsys.readouterr()
    cluster_stage(str(scp), str(data), str(tmp_path / "pl"), ClusterConfig(k=10),
                  ahc_clusters_from=str(tmp_path / "c.json"), ref_utt2spk=str(data / "utt2spk"))
    s = json.loads((tmp_path / "pl" / "clusters.json").read_text())
    assert s["num_clusters"] == 4 and s["reference"]["final"]["nmi"] == pytest.approx(1.0)
    assert capsys.readouterr().out == (f"wrote {tmp_path / 'pl'}: 20 of 20 utts in 4 pseudo speakers (k-means 10, "
                                       "AHC 4); vs reference: NMI 1.0000 ARI 1.0000 purity 1.0000 "
                                       "inverse purity 1.0000\n")
    cluster_stage(str(scp), str(data), str(tmp_path / "pl"), ClusterConfig(k=10),
                  ahc_clusters_from=str(tmp_path / "c.json"), ref_utt2spk=str(data / "utt2spk"))
    assert "is complete and up to date: nothing to do" in capsys.readouterr().out
