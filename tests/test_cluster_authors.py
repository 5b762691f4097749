"""The authors' clustering (theolepage/wavlm_ssl_sv:pseudo_labeling.py) as options: Euclidean k-means of the raw
embeddings with k-means++ seeding and a set number of iterations, Ward AHC of the raw centroids, every cluster
kept; the import of their embeddings file; the recipe options reaching cluster.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, copy_recipe

from sslspk.cluster.ahc import ahc_centroids
from sslspk.cluster.kmeans import faiss_kmeans
from sslspk.cluster.pseudo_labels import ClusterConfig, cluster_embeddings, make_pseudo_labels
from sslspk.data.embeddings import load_embeddings, write_embeddings
from sslspk.utils.errors import InputError


def same_partition(a, b) -> bool:
    """Whether two labelings split the rows identically (up to the label names)."""
    a, b = np.asarray(a), np.asarray(b)
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == np.unique(a).size == np.unique(b).size


def write_data_dir(d: Path, utts: list[str], paths: dict[str, str] | None = None) -> Path:
    """A data dir of ``utts`` (speaker: the part before the first ``/`` or ``-``), wav.scp from ``paths``."""
    d.mkdir(parents=True, exist_ok=True)
    utts = sorted(utts)
    spk = {u: u.replace("-", "/").split("/")[0] for u in utts}
    (d / "utt2spk").write_text("".join(f"{u} {spk[u]}\n" for u in utts))
    (d / "wav.scp").write_text("".join(f"{u} {(paths or {}).get(u, f'/corpus/{u}.flac')}\n" for u in utts))
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(spk[u], []).append(u)
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items())))
    return d


# ----------------------------------------------------------------------------- k-means

def norm_and_direction_groups(per: int = 25, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows in two directions 30 degrees apart, each at norm 1 and at norm 10 (small noise).

    Euclidean k=2: {norm 1} / {norm 10} (within-cluster spread 2.6 vs 4.5 for the direction split);
    cosine (unit-norm rows): {direction u} / {direction v}. Returns the rows, norm groups, direction groups."""
    rng = np.random.default_rng(seed)
    dirs = np.array([[1.0, 0.0], [np.cos(np.pi / 6), np.sin(np.pi / 6)]])
    direction = np.repeat([0, 1, 0, 1], per)
    norm = np.repeat([0, 0, 1, 1], per)
    x = dirs[direction] * np.where(norm == 1, 10.0, 1.0)[:, None] + 0.02 * rng.normal(size=(4 * per, 2))
    return x.astype(np.float32), norm, direction


def test_euclidean_kmeans_of_raw_embeddings_groups_by_norm_spherical_by_direction(tmp_path):
    x, norm, direction = norm_and_direction_groups()
    utts = [f"u{i:03d}" for i in range(len(x))]
    data = write_data_dir(tmp_path / "data", utts)
    write_embeddings(tmp_path / "e.ark", tmp_path / "e.scp", zip(utts, x))
    labels = {}
    for name, cfg in {"authors": dict(normalize="none", spherical=False),
                      "spherical": dict(normalize="l2", spherical=True)}.items():
        s = make_pseudo_labels(tmp_path / "e.scp", data, tmp_path / name,
                               ClusterConfig(k=2, init="kmeans++", niter=50, gpu="no", **cfg))
        assert s["config"]["normalize"] == cfg["normalize"]
        lab = dict(line.split() for line in (tmp_path / name / "utt2spk").read_text().splitlines())
        labels[name] = [lab[u] for u in utts]
    assert same_partition(labels["authors"], norm)
    assert same_partition(labels["spherical"], direction)
    # the Euclidean partition is the one of lower sum of squared distances to the cluster means
    sse = {k: sum(((x[np.asarray(v) == c] - x[np.asarray(v) == c].mean(0)) ** 2).sum() for c in set(v))
           for k, v in labels.items()}
    assert sse["authors"] < sse["spherical"]


def test_kmeans_plus_plus_seeding_finds_the_small_far_clusters_random_rows_miss():
    """1000 rows around the origin and two far groups of 5: random initial rows (seed 1) all come from the big
    group and Lloyd never leaves it; k-means++ draws rows in proportion to their squared distance to the
    centroids drawn so far, so the far groups get their own centroids."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(1000, 2)), [100.0, 0.0] + rng.normal(size=(5, 2)),
                        [0.0, 100.0] + rng.normal(size=(5, 2))]).astype(np.float32)
    truth = np.repeat([0, 1, 2], [1000, 5, 5])
    common = dict(niter=20, seed=1, spherical=False, max_points_per_centroid=1000)
    pp = faiss_kmeans(x, 3, init="kmeans++", **common)
    assert same_partition(pp.labels, truth)
    rand = faiss_kmeans(x, 3, init="random", **common)
    assert not same_partition(rand.labels, truth)
    assert np.unique(rand.labels[:1000]).size > 1   # the big group split, the far rows joined to one of its parts
    assert pp.objective < rand.objective


def test_kmeans_iterations_option_is_honoured(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    one, five, many = (faiss_kmeans(x, 10, niter=n, seed=3, spherical=False, init="kmeans++") for n in (1, 5, 300))
    assert one.iterations == 1 and five.iterations == 5 and 5 < many.iterations < 300   # stopped once converged
    assert many.objective < five.objective < one.objective   # Lloyd lowers the objective each iteration
    converged = faiss_kmeans(x, 10, niter=many.iterations + 50, seed=3, spherical=False, init="kmeans++")
    assert converged.iterations == many.iterations
    np.testing.assert_array_equal(converged.labels, many.labels)
    # one iteration = one assignment to the seeds + one mean update: the same seeds give the same k-means++ start,
    # so a second iteration started from one's centroids is what niter=2 gives
    two = faiss_kmeans(x, 10, niter=2, seed=3, spherical=False, init="kmeans++")
    d2 = ((x[:, None] - one.centroids[None]) ** 2).sum(-1).argmin(1)
    means = np.stack([x[d2 == c].mean(0) for c in range(10)])
    np.testing.assert_allclose(two.centroids, means, atol=1e-5)
    r = cluster_embeddings(x, ClusterConfig(k=10, niter=7, spherical=False, normalize="none", gpu="no"))
    assert r.kmeans_iterations == 7


# ----------------------------------------------------------------------------- AHC

def test_ward_of_raw_centroids_is_sklearn_agglomerative_clustering_and_scipy_ward():
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.cluster import AgglomerativeClustering

    rng = np.random.default_rng(0)
    c = rng.normal(size=(60, 5)) * rng.uniform(0.2, 5.0, size=(60, 1))   # centroids of very different norms
    ours = ahc_centroids(c, 8, linkage="ward", normalize=False)
    assert same_partition(ours, AgglomerativeClustering(n_clusters=8).fit_predict(c))   # the authors' call
    assert same_partition(ours, fcluster(linkage(c, "ward"), 8, "maxclust"))
    # the default (l2) normalises the centroids first: Ward of the unit vectors, another partition here
    unit = c / np.linalg.norm(c, axis=1, keepdims=True)
    normalized = ahc_centroids(c, 8, linkage="ward")
    assert same_partition(normalized, fcluster(linkage(unit, "ward"), 8, "maxclust"))
    assert not same_partition(ours, normalized)


def test_authors_mode_clusters_raw_embeddings_and_centroids(tmp_path, monkeypatch):
    """--normalize none: k-means and AHC see the embeddings as written (no L2 normalisation anywhere)."""
    import sslspk.cluster.pseudo_labels as pl

    seen = {}
    real_kmeans, real_ahc = pl.faiss_kmeans, pl.ahc_centroids

    def spy_kmeans(x, k, **kw):
        seen["x"] = x.copy()
        return real_kmeans(x, k, **kw)

    def spy_ahc(c, *a, **kw):
        seen["normalize"] = kw["normalize"]
        return real_ahc(c, *a, **kw)

    monkeypatch.setattr(pl, "faiss_kmeans", spy_kmeans)
    monkeypatch.setattr(pl, "ahc_centroids", spy_ahc)
    x, _, _ = norm_and_direction_groups(per=10)
    utts = [f"u{i:03d}" for i in range(len(x))]
    data = write_data_dir(tmp_path / "data", utts)
    write_embeddings(tmp_path / "e.ark", tmp_path / "e.scp", zip(utts, x))
    make_pseudo_labels(tmp_path / "e.scp", data, tmp_path / "pl", ClusterConfig(
        k=6, ahc_clusters=2, ahc_linkage="ward", normalize="none", spherical=False, gpu="no"))
    np.testing.assert_array_equal(seen["x"], x)
    assert seen["normalize"] is False
    make_pseudo_labels(tmp_path / "e.scp", data, tmp_path / "pl2", ClusterConfig(k=6, ahc_clusters=2, gpu="no"))
    np.testing.assert_allclose(np.linalg.norm(seen["x"], axis=1), 1.0, rtol=1e-6)
    assert seen["normalize"] is True
    with pytest.raises(ValueError, match="normalize must be one of l2, none"):
        ClusterConfig(k=2, normalize="cosine").check(10)


def test_min_cluster_size_1_keeps_singletons(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(30, 3)), [[50.0, 50.0, 50.0]]]).astype(np.float32)   # one outlier
    utts = [f"u{i:03d}" for i in range(len(x))]
    data = write_data_dir(tmp_path / "data", utts)
    write_embeddings(tmp_path / "e.ark", tmp_path / "e.scp", zip(utts, x))
    for size, kept in ((1, 31), (2, 30)):
        s = make_pseudo_labels(tmp_path / "e.scp", data, tmp_path / f"pl{size}", ClusterConfig(
            k=0, ahc_clusters=3, ahc_linkage="ward", normalize="none", min_cluster_size=size))
        assert s["num_utts_out"] == kept and s["num_dropped"] == 31 - kept
        utt2spk = (tmp_path / f"pl{size}" / "utt2spk").read_text()
        assert ("u030 " in utt2spk) == (size == 1)
    assert s["sizes"]["min"] > 1


# ----------------------------------------------------------------------------- the authors' embeddings file

def save_authors_file(path: Path, table: dict[str, np.ndarray], shape_1d: set[str] = frozenset()) -> None:
    """``torch.save`` of ``{key: tensor}`` as SpeakerNet.py:generate_embeddings writes it ([1, D] per file)."""
    import torch

    torch.save({k: torch.from_numpy(v if k in shape_1d else v[None]) for k, v in table.items()}, path)


def test_import_torch_embeddings_matches_keys_to_utterances(tmp_path):
    from sslspk.data.torch_embeddings import import_torch_embeddings

    rng = np.random.default_rng(0)
    utts = ["id00012/21Uxsk56VDQ/00001", "id00012/21Uxsk56VDQ/00002", "id00015/0fijmz4vTVU/00001"]
    data = write_data_dir(tmp_path / "data", utts, {u: f"/raw/voxceleb2_flac/dev/aac/{u}.flac" for u in utts})
    vecs = {u: rng.normal(size=4).astype(np.float32) for u in utts}
    table = {f"{u}.wav": vecs[u] for u in utts} | {"id09999/xxxxxxxxxxx/00001.wav": np.zeros(4, np.float32)}
    save_authors_file(tmp_path / "dino.pt", table, shape_1d={f"{utts[1]}.wav"})   # [1, D] and [D] alike
    r = import_torch_embeddings(tmp_path / "dino.pt", data, tmp_path / "out")
    assert (r.num_keys, r.num_utts, r.num_written, r.dim) == (4, 3, 3, 4)
    assert r.unmatched_keys == ["id09999/xxxxxxxxxxx/00001.wav"] and r.missing_utts == []
    keys, mat = load_embeddings(tmp_path / "out" / "embeddings.scp")
    assert keys == sorted(utts)
    np.testing.assert_array_equal(mat, np.stack([vecs[u] for u in keys]))

    # utterance ids that are not paths: matched through the audio file of wav.scp (a path or an ffmpeg pipe)
    ids = {u: u.replace("/", "-") for u in utts}
    paths = {ids[utts[0]]: f"/a/b/{utts[0]}.flac",
             ids[utts[1]]: f"ffmpeg -v 8 -i /raw/dev/aac/{utts[1]}.m4a -f wav -ar 16000 -ac 1 - |",
             ids[utts[2]]: f"/c/{utts[2]}.wav"}
    data2 = write_data_dir(tmp_path / "data2", list(ids.values()), paths)
    r = import_torch_embeddings(tmp_path / "dino.pt", data2, tmp_path / "out2")
    keys, mat = load_embeddings(tmp_path / "out2" / "embeddings.scp")
    assert keys == sorted(ids.values()) and r.num_written == 3
    np.testing.assert_array_equal(mat, np.stack([vecs[k.replace("-", "/")] for k in keys]))


def test_import_torch_embeddings_errors(tmp_path):
    import torch

    from sslspk.data.torch_embeddings import import_torch_embeddings

    utts = ["id1/v/00001", "id1/v/00002", "id2/w/00001"]
    data = write_data_dir(tmp_path / "data", utts)
    save_authors_file(tmp_path / "part.pt", {f"{u}.wav": np.ones(3, np.float32) for u in utts[:2]})
    with pytest.raises(InputError, match=r"1 of the 3 utterances .* have no embedding, e.g. \['id2/w/00001'\]"):
        import_torch_embeddings(tmp_path / "part.pt", data, tmp_path / "o")
    assert not (tmp_path / "o" / "embeddings.scp").exists()
    r = import_torch_embeddings(tmp_path / "part.pt", data, tmp_path / "o", allow_missing=True)
    assert r.missing_utts == ["id2/w/00001"] and r.num_written == 2
    torch.save({f"{utts[0]}.wav": torch.ones(2, 3)}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match=r"has shape \[2, 3\], expected \[D\] or \[1, D\]"):
        import_torch_embeddings(tmp_path / "bad.pt", data, tmp_path / "o3", allow_missing=True)
    save_authors_file(tmp_path / "none.pt", {"x/y/z.wav": np.ones(3, np.float32)})
    with pytest.raises(InputError, match="no key matches an utterance"):
        import_torch_embeddings(tmp_path / "none.pt", data, tmp_path / "o4")
    (tmp_path / "junk.pt").write_text("not a torch file")
    with pytest.raises(InputError, match="not a torch.save file"):
        import_torch_embeddings(tmp_path / "junk.pt", data, tmp_path / "o5")


def test_import_embeddings_cli(tmp_path, recipe_env):
    utts = ["id1/v/00001", "id2/w/00001"]
    data = write_data_dir(tmp_path / "data", utts)
    one = np.ones(3, np.float32)
    save_authors_file(tmp_path / "e.pt", {f"{utts[0]}.wav": one, "q/r/s.wav": one})
    cmd = ["import_embeddings.py", "--allow-missing", str(tmp_path / "e.pt"), str(data), str(tmp_path / "out")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=recipe_env)
    assert r.returncode == 0, r.stderr
    assert "1 of the 2 keys" in r.stdout and "['q/r/s.wav']" in r.stdout and "1 of the 2 utterances" in r.stdout
    assert "wrote" in r.stdout and (tmp_path / "out" / "embeddings.scp").read_text().startswith("id1/v/00001 ")


# ----------------------------------------------------------------------------- the recipe options

def stage3_from_embeddings_file(tmp_path: Path, recipe_env: dict, recipe: str, *options: str) -> dict:
    """Stage 3 of egs/<recipe>/v1 (a copy) from a file in the authors' format: returns clusters.json."""
    rng = np.random.default_rng(0)
    utts = [f"id{s:05d}/vid{v}/{n:05d}" for s in range(4) for v in range(2) for n in range(5)]
    centres = rng.normal(size=(4, 8)) * 3
    table = {f"{u}.wav": (centres[int(u[2:7])] + rng.normal(size=8)).astype(np.float32) for u in utts}
    d = copy_recipe(REPO / "egs" / recipe / "v1", tmp_path / recipe)
    data = write_data_dir(d / "data" / "train", utts)
    save_authors_file(tmp_path / "dino.pt", table)
    r = subprocess.run(["./run.sh", "--stage", "3", "--stop-stage", "3", "--train-data", str(data), "--exp", "exp/t",
                        "--init-embeddings", str(tmp_path / "dino.pt"), "--nj", "1", *options],
                       cwd=d, env=dict(recipe_env, SSLSPK_ROOT=str(REPO)), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Stage 3: clustering the training embeddings of " + str(tmp_path / "dino.pt") in r.stdout
    assert not (d / "exp" / "t" / "ssl").exists()   # nothing extracted: the file's embeddings were clustered
    scp = (d / "exp" / "t" / "init_embeddings" / "train" / "embeddings.scp").read_text()   # ark paths relative to d
    assert [line.split()[0] for line in scp.splitlines()] == sorted(utts)
    return json.loads((d / "exp" / "t" / "pl_iter1" / "clusters" / "clusters.json").read_text())


def test_voxceleb_recipe_clusters_with_the_authors_values(tmp_path, recipe_env):
    s = stage3_from_embeddings_file(tmp_path, recipe_env, "voxceleb", "--num-clusters", "8", "--ahc-clusters", "4")
    cfg = s["config"]
    assert (cfg["normalize"], cfg["spherical"], cfg["init"], cfg["niter"], cfg["ahc_linkage"], cfg["min_cluster_size"]
            ) == ("none", False, "kmeans++", 300, "ward", 1)
    assert (cfg["k"], cfg["ahc_clusters"]) == (8, 4) and s["num_utts_out"] == s["num_utts_in"] == 40
    assert 1 < s["kmeans_iterations"] <= 300
    assert s["reference"]["final"]["purity"] == 1.0   # 4 well-separated speakers, AHC to 4: each one a cluster


@pytest.mark.slow
def test_voxceleb_tiny_keeps_the_authors_clustering(tmp_path, recipe_env):
    tiny = stage3_from_embeddings_file(tmp_path, recipe_env, "voxceleb", "--tiny", "true")   # k-means 4 -> AHC 3
    assert (tiny["config"]["k"], tiny["num_clusters"], tiny["num_utts_out"]) == (4, 3, 40)
    assert tiny["config"]["normalize"] == "none" and tiny["config"]["ahc_linkage"] == "ward"


@pytest.mark.slow
def test_stage_options_reach_cluster_py(tmp_path, recipe_env):
    s = stage3_from_embeddings_file(
        tmp_path, recipe_env, "TEMPLATE", "--num-clusters", "6", "--ahc-clusters", "3", "--cluster-normalize", "none",
        "--kmeans-spherical", "false", "--kmeans-init", "kmeans++", "--kmeans-iters", "7", "--ahc-linkage", "complete",
        "--min-cluster-size", "3")
    cfg = s["config"]
    assert (cfg["normalize"], cfg["spherical"], cfg["init"], cfg["niter"], cfg["ahc_linkage"], cfg["min_cluster_size"]
            ) == ("none", False, "kmeans++", 7, "complete", 3)
    assert 1 < s["kmeans_iterations"] <= 7
