"""Stage 3 of the recipe: embeddings of a training data dir → pseudo speaker labels.

:func:`cluster_embeddings` runs faiss k-means (optionally followed by AHC of the centroids
and a minimum cluster size) on unit-norm (``normalize="l2"``) or raw (``"none"``) embeddings,
or, with ``k = 0``, AHC of the embeddings themselves (exact, O(n²) memory: small corpora);
:func:`make_pseudo_labels` does the whole step from an scp and a data dir to a new data dir whose
``utt2spk``/``spk2utt`` hold pseudo speakers ``<prefix>NNNNN`` (numbered by decreasing size), plus
``clusters.json`` and ``report.md``. Its stamp (``<out_dir>.stamp``, :mod:`sslspk.utils.stamp`, written last)
records the inputs' digests and the settings, so a finished, up-to-date run is skipped. :func:`cluster_stage`
is ``bin/cluster.py``: the checks and settings of its command line, the step and a one-line summary.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sslspk.cluster.ahc import ahc_centroids
from sslspk.cluster.config import ClusterConfig
from sslspk.cluster.evaluate import clustering_scores, size_summary
from sslspk.cluster.kmeans import assign, faiss_kmeans, use_gpu
from sslspk.data.embeddings import group_means, l2_normalize_, load_embeddings, standardize_
from sslspk.utils.errors import InputError
from sslspk.utils.fileio import atomic_write, check_outputs_are_not_inputs, dir_and_files, read_kv
from sslspk.utils.stamp import Stamp, remove_stamp

log = logging.getLogger(__name__)

LEGACY_MARKER = ".done"   # the completion record of before stamps (migration only)


@dataclass
class Clustering:
    """Result of :func:`cluster_embeddings`: final labels (``-1`` = dropped) and intermediate facts."""

    labels: np.ndarray
    kmeans_labels: np.ndarray
    num_kmeans_clusters: int
    num_ahc_clusters: int | None
    num_dropped: int
    num_merged: int
    kmeans_objective: float
    kmeans_iterations: int
    gpu: bool
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def num_clusters(self) -> int:
        """Number of final (non-dropped) clusters."""
        return int(self.labels.max()) + 1 if (self.labels >= 0).any() else 0


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber labels ``>= 0`` as ``0..m-1`` by decreasing cluster size (ties: smaller old id first)."""
    out = np.full_like(labels, -1)
    kept = labels >= 0
    uniq, inv, counts = np.unique(labels[kept], return_inverse=True, return_counts=True)
    order = np.lexsort((uniq, -counts))  # new id i <- old cluster order[i]
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    out[kept] = rank[inv.reshape(-1)]
    return out


def cluster_embeddings(x: np.ndarray, cfg: ClusterConfig) -> Clustering:
    """Cluster the rows of ``x`` [n, d] float32 with faiss k-means (+ AHC, + min cluster size).

    ``x`` is unit-norm for ``cfg.normalize == "l2"`` (the caller normalises it), raw for ``none``.
    With ``cfg.k == 0`` every row is its own "centroid": AHC runs on the rows themselves."""
    n = x.shape[0]
    cfg.check(n)
    seconds: dict[str, float] = {}
    gpu = False
    iterations = 0
    if cfg.k:
        t = time.perf_counter()
        gpu = use_gpu(cfg.gpu)
        km = faiss_kmeans(x, cfg.k, niter=cfg.niter, seed=cfg.seed, spherical=cfg.spherical, nredo=cfg.nredo,
                          max_points_per_centroid=cfg.max_points_per_centroid, init=cfg.init, gpu=gpu,
                          batch=cfg.batch)
        seconds["kmeans"] = time.perf_counter() - t
        kmeans_labels, centroids, objective, iterations = km.labels, km.centroids, km.objective, km.iterations
    else:
        kmeans_labels, centroids, objective = np.arange(n, dtype=np.int64), x, float("nan")
    labels = kmeans_labels
    num_ahc = None
    if cfg.use_ahc:
        t = time.perf_counter()
        used = np.unique(labels)  # AHC on non-empty k-means clusters only
        if cfg.ahc_clusters is not None and cfg.ahc_clusters > used.size:
            raise InputError(f"ahc_clusters={cfg.ahc_clusters} exceeds the {used.size} non-empty k-means clusters")
        c2s = np.full(len(centroids), -1, dtype=np.int64)
        c2s[used] = ahc_centroids(centroids[used], cfg.ahc_clusters, cfg.ahc_threshold, cfg.ahc_linkage,
                                normalize=cfg.normalize == "l2")
        labels = c2s[labels]
        num_ahc = int(c2s.max()) + 1
        seconds["ahc"] = time.perf_counter() - t
    labels = _by_size(labels)
    num_dropped = num_merged = 0
    if cfg.min_cluster_size > 1:
        t = time.perf_counter()
        sizes = np.bincount(labels)
        small = sizes < cfg.min_cluster_size
        if small.all():
            raise InputError(f"no cluster has >= {cfg.min_cluster_size} utterances (largest: {sizes.max()})")
        rows = np.flatnonzero(small[labels])
        if cfg.small_clusters == "drop":
            labels[rows] = -1
            num_dropped = rows.size
        elif rows.size:
            big = np.flatnonzero(~small)
            means = group_means(x, labels, sizes.size, batch=cfg.batch)[big].astype(np.float32)
            import faiss

            if cfg.normalize == "l2":   # the highest cosine to a cluster's mean direction
                index = faiss.IndexFlatIP(x.shape[1])
                means = l2_normalize_(means)
            else:                       # the nearest cluster mean in Euclidean distance
                index = faiss.IndexFlatL2(x.shape[1])
            index.add(np.ascontiguousarray(means))
            nearest = np.empty(rows.size, dtype=np.int64)
            for b in range(0, rows.size, cfg.batch):
                nearest[b:b + cfg.batch] = assign(x[rows[b:b + cfg.batch]], index, cfg.batch)[0]
            labels[rows] = big[nearest]
            num_merged = rows.size
        labels = _by_size(labels)
        seconds["min_cluster_size"] = time.perf_counter() - t
    return Clustering(labels, kmeans_labels, int(np.unique(kmeans_labels).size), num_ahc, num_dropped,
                      num_merged, objective, iterations, gpu, seconds)


# ----------------------------------------------------------------------------- the pipeline step

def _settings(cfg: ClusterConfig, scp: Path, data_dir: Path, ref: Path | None, report_dir: Path) -> dict:
    return {"config": dataclasses.asdict(cfg), "scp": str(scp.resolve()), "data_dir": str(data_dir.resolve()),
            "ref_utt2spk": str(ref.resolve()) if ref else None, "report_dir": str(report_dir.resolve())}


def clustering_stamp(cfg: ClusterConfig, scp: Path, data_dir: Path, ref: Path | None, report_dir: Path) -> Stamp:
    """What a pseudo-label data dir is made from: the embeddings (their scp, with its own stamp), the data dir's
    ``utt2spk`` and ``wav.scp``, the reference labels and every setting."""
    return Stamp([scp, data_dir / "utt2spk", data_dir / "wav.scp", ref],
                 {**{k: json.dumps(v) for k, v in dataclasses.asdict(cfg).items()},
                  "report_dir": str(report_dir.resolve())})


def _legacy_fresh(out_dir: Path, settings: dict, inputs: list[Path]) -> bool:
    """The rule of before stamps (migration only): ``out_dir/.done`` holds these settings and is newer than
    every input file."""
    marker = out_dir / LEGACY_MARKER
    try:
        if json.loads(marker.read_text()) != settings:
            return False
    except (OSError, ValueError):
        return False
    mtime = marker.stat().st_mtime
    return all(p.stat().st_mtime <= mtime for p in inputs if p.exists())


def _select_rows_(x: np.ndarray, rows: np.ndarray, batch: int) -> np.ndarray:
    """``x[rows]`` for increasing ``rows``, moved into the top of ``x`` in place (no second matrix)."""
    for b in range(0, rows.size, batch):
        chunk = rows[b:b + batch]
        x[b:b + chunk.size] = x[chunk]  # rows[i] >= i: a source row is read before it is overwritten
    return x[:rows.size]


def make_pseudo_labels(scp: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                       cfg: ClusterConfig, ref_utt2spk: str | os.PathLike | None = None,
                       report_dir: str | os.PathLike | None = None, force: bool = False,
                       command: str | None = None) -> dict | None:
    """Cluster the embeddings of ``data_dir``'s utts and write the pseudo-labelled data dir ``out_dir``.

    Every utt of ``data_dir`` needs an embedding in ``scp`` (extra embeddings are ignored).
    ``clusters.json`` and ``report.md`` go to ``report_dir`` (default ``out_dir``).
    Returns the summary written to ``clusters.json``, or None when ``out_dir`` was
    already complete and up to date (and not ``force``).
    """
    from sslspk.data.datadir import DataDir, DataDirError

    scp, data_dir, out_dir = Path(scp), Path(data_dir), Path(out_dir)
    report_dir = Path(report_dir) if report_dir is not None else out_dir
    ref = Path(ref_utt2spk) if ref_utt2spk is not None else None
    if not scp.is_file():
        raise FileNotFoundError(f"{scp}: embeddings scp not found")
    if ref is not None and not ref.is_file():
        raise FileNotFoundError(f"{ref}: reference utt2spk not found")
    if out_dir.resolve() == data_dir.resolve():
        raise DataDirError(f"output dir {out_dir} is the input data dir")
    stamp = clustering_stamp(cfg, scp, data_dir, ref, report_dir)
    if not force:
        legacy = _legacy_fresh(out_dir, _settings(cfg, scp, data_dir, ref, report_dir),
                               [scp, data_dir / "utt2spk", data_dir / "wav.scp"] + ([ref] if ref else []))
        if stamp.adopt(out_dir, legacy) or stamp.is_fresh(out_dir):
            (out_dir / LEGACY_MARKER).unlink(missing_ok=True)
            log.info("%s is complete and up to date: nothing to do (use --force true to redo)", out_dir)
            return None
    remove_stamp(out_dir)
    (out_dir / LEGACY_MARKER).unlink(missing_ok=True)

    t0 = time.perf_counter()
    dd = DataDir.load(data_dir)
    keys, x = load_embeddings(scp)
    index = {k: i for i, k in enumerate(keys)}
    utts = dd.utts
    missing = [u for u in utts if u not in index]
    if missing:
        raise DataDirError(f"{len(missing)} of the {len(utts)} utts of {data_dir} have no embedding in {scp}, "
                           f"e.g. {missing[:5]} (extract the embeddings of this data dir)")
    rows = np.fromiter((index[u] for u in utts), dtype=np.int64, count=len(utts))
    del index, keys
    num_extra = x.shape[0] - rows.size
    if num_extra or not np.array_equal(rows, np.arange(rows.size)):
        order = np.argsort(rows)
        x = _select_rows_(x, rows[order], cfg.batch)
        utts = [utts[i] for i in order]
    cfg.check(x.shape[0])
    if cfg.standardize:
        standardize_(x, cfg.batch)
    if cfg.normalize == "l2":
        l2_normalize_(x, cfg.batch)
    load_s = time.perf_counter() - t0
    log.info("loaded %d embeddings of dim %d in %.1fs; clustering into k=%d", x.shape[0], x.shape[1], load_s, cfg.k)

    dim = int(x.shape[1])
    result = cluster_embeddings(x, cfg)
    del x
    if result.num_clusters < 2:   # one class: a speaker classifier trained on it learns nothing
        cut = (f"--ahc-threshold {cfg.ahc_threshold}: lower it" if cfg.ahc_threshold is not None
               else f"--ahc-clusters {cfg.ahc_clusters}: raise it" if cfg.ahc_clusters is not None
               else f"--k {cfg.k}: raise it")
        kept = f" after --min-cluster-size {cfg.min_cluster_size}" if cfg.min_cluster_size > 1 else ""
        raise InputError(f"clustering the {len(utts)} embeddings of {scp} gave {result.num_clusters} pseudo-speaker(s)"
                         f"{kept}; training on pseudo-labels needs at least 2 ({cut}); nothing written to {out_dir}")

    t = time.perf_counter()
    width = max(5, len(str(max(result.num_clusters - 1, 0))))
    utt2spk = {u: f"{cfg.prefix}{lab:0{width}d}" for u, lab in zip(utts, result.labels.tolist()) if lab >= 0}
    out = dataclasses.replace(dd.subset(utt2spk), utt2spk=dict(sorted(utt2spk.items())))
    out.save(out_dir)
    save_s = time.perf_counter() - t

    sizes = np.bincount(result.labels[result.labels >= 0])
    summary: dict = {
        "scp": str(scp), "data_dir": str(data_dir), "out_dir": str(out_dir),
        "command": command,
        "num_utts_in": len(utts), "num_extra_embeddings": int(num_extra), "dim": dim,
        "num_utts_out": len(utt2spk), "num_dropped": result.num_dropped, "num_merged": result.num_merged,
        "num_kmeans_clusters": result.num_kmeans_clusters, "num_ahc_clusters": result.num_ahc_clusters,
        "num_clusters": result.num_clusters, "kmeans_objective": result.kmeans_objective,
        "kmeans_iterations": result.kmeans_iterations, "gpu": result.gpu,
        "config": dataclasses.asdict(cfg), "sizes": size_summary(sizes),
        "seconds": {"load": load_s, **result.seconds, "write": save_s},
    }
    if ref is not None:
        summary["reference"] = _reference_scores(ref, utts, result)
    _write_report(report_dir, summary)
    stamp.write(out_dir)
    return summary


def ahc_clusters_of(clusters_json: str | os.PathLike) -> int:
    """The number of pseudo speakers that the clustering of ``clusters_json`` (of :func:`make_pseudo_labels`)
    found."""
    try:
        return int(json.loads(Path(clusters_json).read_text())["num_clusters"])
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{clusters_json}: not a clusters.json with num_clusters ({e})") from None


def summary_line(s: dict) -> str:
    """One line of a :func:`make_pseudo_labels` summary: utterances and clusters of each step, the final
    clusters' scores against the reference speakers when known."""
    steps = ([f"k-means {s['num_kmeans_clusters']}"] if s["config"]["k"] else []) + (
        [f"AHC {s['num_ahc_clusters']}"] if s["num_ahc_clusters"] is not None else [])
    msg = (f"{s['num_utts_out']} of {s['num_utts_in']} utts in {s['num_clusters']} pseudo speakers "
           f"({', '.join(steps)})")
    if "reference" in s and "final" in s["reference"]:
        m = s["reference"]["final"]
        msg += (f"; vs reference: NMI {m['nmi']:.4f} ARI {m['ari']:.4f} purity {m['purity']:.4f} "
                f"inverse purity {m['inverse_purity']:.4f}")
    return msg


def cluster_stage(scp: str, data_dir: str, out_dir: str, cfg: ClusterConfig, *, ahc_clusters_from: str | None = None,
                  num_threads: int = 0, ref_utt2spk: str | None = None, report_dir: str | None = None,
                  force: bool = False, check_only: bool = False, command: str | None = None) -> None:
    """``bin/cluster.py``: :func:`make_pseudo_labels` after the checks of its options, printing what it did.

    ``ahc_clusters_from``: a ``clusters.json`` whose number of clusters becomes ``cfg.ahc_clusters`` (not with
    ``cfg``'s own AHC cut); ``check_only``: stop once the settings are checked (before any file is read);
    ``num_threads`` > 0: faiss's CPU threads. The outputs may not overwrite an input.
    """
    from sslspk.data.tables import MANAGED_FILES

    if ahc_clusters_from is not None:
        if cfg.use_ahc:
            raise InputError("--ahc-clusters-from goes without --ahc-clusters and --ahc-threshold")
        cfg = dataclasses.replace(cfg, ahc_clusters=ahc_clusters_of(ahc_clusters_from))
    cfg.check_settings()
    if check_only:
        return
    reports = [os.path.join(report_dir or out_dir, name) for name in ("report.md", "clusters.json")]
    check_outputs_are_not_inputs([scp, *dir_and_files(data_dir, MANAGED_FILES), ref_utt2spk],
                                 [*dir_and_files(out_dir, MANAGED_FILES), *reports])
    if num_threads > 0:
        import faiss

        faiss.omp_set_num_threads(num_threads)
    s = make_pseudo_labels(scp, data_dir, out_dir, cfg, ref_utt2spk=ref_utt2spk, report_dir=report_dir, force=force,
                           command=command)
    if s is None:
        print(f"{out_dir} is complete and up to date: nothing to do (use --force true to redo)")
        return
    print(f"wrote {out_dir}: {summary_line(s)}")


def _reference_scores(ref: Path, utts: list[str], result: Clustering) -> dict:
    """Scores of the k-means and final clusters against the reference speakers (utts with a reference only)."""
    ref_spk = read_kv(ref)
    has = np.fromiter((u in ref_spk for u in utts), dtype=bool, count=len(utts))
    if not has.any():
        raise InputError(f"{ref}: none of the clustered utts has a reference speaker")
    true = [ref_spk[u] for u, h in zip(utts, has) if h]
    kept = has & (result.labels >= 0)
    out = {"ref_utt2spk": str(ref), "num_utts_with_ref": int(has.sum()), "num_ref_speakers": len(set(true))}
    if result.num_kmeans_clusters < len(utts):   # not with k = 0 (one "cluster" per utterance)
        out["kmeans"] = clustering_scores(result.kmeans_labels[has], true)
    if kept.any():
        out["final"] = clustering_scores(result.labels[kept], [ref_spk[u] for u, k in zip(utts, kept) if k])
        out["final"]["num_utts"] = int(kept.sum())
        out["final"]["num_ref_speakers"] = len({ref_spk[u] for u, k in zip(utts, kept) if k})
    return out


def _write_report(report_dir: Path, s: dict) -> None:
    """``report.md`` (human) then ``clusters.json`` (machine), both atomically."""
    cfg = s["config"]
    sz = s["sizes"]
    lines = [f"# Pseudo-label clustering: {s['out_dir']}", "",
             f"- embeddings: `{s['scp']}` of data dir `{s['data_dir']}`",
             f"- utterances: {s['num_utts_in']} in, {s['num_utts_out']} out"
             + (f" ({s['num_dropped']} dropped, {s['num_merged']} merged from clusters smaller than "
                f"{cfg['min_cluster_size']}, --small-clusters {cfg['small_clusters']})"
                if cfg["min_cluster_size"] > 1 else ""),
             f"- clustered: {'L2-normalised' if cfg['normalize'] == 'l2' else 'raw (not normalised)'} embeddings"
             + (", standardised first" if cfg["standardize"] else ""),
             (f"- k-means (faiss, {'GPU' if s['gpu'] else 'CPU'}): k={cfg['k']}, niter={cfg['niter']}, "
              f"nredo={cfg['nredo']}, spherical={cfg['spherical']}, init={cfg['init']}, seed={cfg['seed']}, "
              f"max_points_per_centroid={cfg['max_points_per_centroid']}: {s['num_kmeans_clusters']} non-empty "
              f"clusters, objective {s['kmeans_objective']:.6g}" if cfg["k"] else "- no k-means (k=0)")]
    if s["num_ahc_clusters"] is not None:
        cut = (f"{cfg['ahc_clusters']} clusters" if cfg["ahc_clusters"] is not None
               else f"distance threshold {cfg['ahc_threshold']}")
        lines.append(f"- AHC of the {'centroids' if cfg['k'] else 'embeddings'}: {cfg['ahc_linkage']} linkage, "
                     f"cut at {cut}: {s['num_ahc_clusters']} clusters")
    lines.append(f"- **pseudo speakers: {s['num_clusters']}**")
    if s.get("command"):
        lines.append(f"- command: `{s['command']}`")
    if sz["num_clusters"]:
        p = sz["percentiles"]
        lines += ["", "## Cluster sizes (utterances)", "",
                  "| min | p5 | p25 | median | p75 | p95 | max | mean |", "|---|---|---|---|---|---|---|---|",
                  f"| {sz['min']} | {p['p5']:g} | {p['p25']:g} | {p['p50']:g} | {p['p75']:g} | {p['p95']:g} | "
                  f"{sz['max']} | {sz['mean']:.1f} |", "",
                  "| size | clusters |", "|---|---|", *(f"| {b} | {c} |" for b, c in sz["histogram"].items())]
    if "reference" in s:
        r = s["reference"]
        lines += ["", f"## Against the reference speakers (`{r['ref_utt2spk']}`)", "",
                  f"{r['num_utts_with_ref']} of the {s['num_utts_in']} input utterances have a reference speaker "
                  f"({r['num_ref_speakers']} speakers).", "",
                  "| clusters | utts | NMI | ARI | purity | inverse purity |", "|---|---|---|---|---|---|"]
        for name in ("kmeans", "final"):
            if name in r:
                m = r[name]
                n = m.get("num_utts", r["num_utts_with_ref"])
                lines.append(f"| {name} | {n} | {m['nmi']:.4f} | {m['ari']:.4f} | {m['purity']:.4f} | "
                             f"{m['inverse_purity']:.4f} |")
    lines += ["", "## Time (s)", "", " ".join(f"{k} {v:.2f}" for k, v in s["seconds"].items()), ""]
    with atomic_write(report_dir / "report.md") as f:
        f.write("\n".join(lines))
    with atomic_write(report_dir / "clusters.json") as f:
        json.dump(s, f, indent=1)
        f.write("\n")
