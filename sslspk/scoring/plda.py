"""LDA and two-covariance PLDA back-ends, trained on (pseudo-)speaker labels, as Kaldi's x-vector recipe.

The pipeline is kaldi-asr/kaldi:egs/voxceleb/v2/run.sh (stages 10-11): subtract the training mean
(``ivector-mean``, ``ivector-subtract-global-mean``), LDA to ``lda_dim`` dimensions
(``ivector-compute-lda --total-covariance-factor=0.0 --dim=200``), length normalisation to norm
``sqrt(dim)`` (``ivector-normalize-length``), PLDA (``ivector-compute-plda``, 10 EM iterations), and
scoring with ``ivector-plda-scoring --normalize-length=true`` with one enrollment utterance per trial.
Every formula follows kaldi-asr/kaldi:src/ivector/plda.{h,cc} and src/ivectorbin/ivector-compute-lda.cc
(our own numpy implementation):

- LDA (``ComputeLdaTransform``): with the data centred, total covariance ``T = X'X / N``, between-class
  ``B = sum_s n_s m_s m_s' / N``, within-class ``W = T - B``; ``P = S^-1/2 U'`` whitens ``W`` (the
  eigenvalues of ``W`` floored at ``1e-6`` times the largest), then the eigenvectors of ``P B P'`` with
  the ``lda_dim`` largest eigenvalues: the projected within-class covariance is ``I`` and the
  between-class one diagonal.
- PLDA (``PldaEstimator``): speaker means ``m ~ N(mu, B + W/n)``, utterances ``x ~ N(m_s, W)``; EM
  from ``B = W = I``, each iteration splitting each centred class mean into its speaker part
  ``w = (B^-1 + n W^-1)^-1 n W^-1 m`` and residual. ``mu`` is the mean of the class means. The output
  transform ``A = U' C^-1`` (``W = C C'`` Cholesky, ``U`` the eigenvectors of ``C^-1 B C^-T``, sorted
  descending) makes ``W`` the identity and ``B`` ``diag(psi)``.
- ``TransformIvector``: ``u = A (x - mu)`` scaled by ``sqrt(dim / sum_i u_i^2 / (psi_i + 1))`` (the
  expected squared norm of ``u`` for one utterance, ``normalize_length``, not ``simple_length_norm``).
- ``LogLikelihoodRatio`` (n = 1): ``log N(v; psi/(psi+1) u, 1 + psi/(psi+1)) - log N(v; 0, 1 + psi)``,
  diagonal Gaussians; it equals ``log p(u, v | same) - log p(u) - log p(v)``, symmetric in ``u, v``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from sslspk.data.embeddings import l2_normalize, load_embeddings
from sslspk.scoring.cosine import paired_dot, trial_rows
from sslspk.scoring.metrics import compute_metrics
from sslspk.utils.errors import InputError
from sslspk.utils.fileio import atomic_write

#: ``--backend`` values of score.py: the scores of a trained :class:`Backend`
BACKENDS = ("plda", "lda-cosine")


def class_indices(labels: Sequence[str]) -> tuple[np.ndarray, int]:
    """Integer class of each label (classes in sorted label order) and the number of classes."""
    names, idx = np.unique(np.asarray(labels), return_inverse=True)
    return idx.astype(np.int64), len(names)


def scatter_stats(x: np.ndarray, classes: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(counts [C], class means [C, D])`` of the rows of ``x``."""
    counts = np.bincount(classes, minlength=num_classes).astype(np.float64)
    sums = np.zeros((num_classes, x.shape[1]))
    np.add.at(sums, classes, x)
    return counts, sums / counts[:, None]


def fit_lda(x: np.ndarray, labels: Sequence[str], dim: int, total_covariance_factor: float = 0.0,
            covariance_floor: float = 1e-6) -> np.ndarray:
    """``[dim, D]`` LDA projection of Kaldi's ``ivector-compute-lda`` (applied to ``x - x.mean(0)``).

    ``total_covariance_factor`` interpolates the normalised covariance between the within-class
    (0, Kaldi's default and the recipe's value) and the total one (1).
    """
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    if not 0 < dim <= d:
        raise InputError(f"LDA dimension must be in 1..{d} (the embedding dimension), got {dim}")
    if n < d:
        raise InputError(f"LDA needs at least as many embeddings as dimensions: {n} < {d}")
    classes, num_classes = class_indices(labels)
    if num_classes >= n:
        raise InputError(f"LDA needs a class with two or more embeddings ({n} embeddings, {num_classes} classes)")
    x = x - x.mean(axis=0)
    counts, means = scatter_stats(x, classes, num_classes)
    total = x.T @ x / n
    between = (means * counts[:, None]).T @ means / n
    within = total - between
    s, u = np.linalg.eigh(total_covariance_factor * total + (1 - total_covariance_factor) * within)
    s = np.maximum(s, covariance_floor * s.max())
    whiten = (u / np.sqrt(s)).T                          # whiten @ within @ whiten.T = I
    s_b, u_b = np.linalg.eigh(whiten @ between @ whiten.T)
    order = np.argsort(-s_b, kind="stable")[:dim]        # largest between-class variance first
    return u_b[:, order].T @ whiten


@dataclass
class Plda:
    """Two-covariance PLDA in Kaldi's diagonalised form: ``transform @ (x - mean)`` has within-class
    covariance ``I`` and between-class covariance ``diag(psi)``."""

    mean: np.ndarray
    transform: np.ndarray
    psi: np.ndarray

    @classmethod
    def from_covariances(cls, mean: np.ndarray, within: np.ndarray, between: np.ndarray) -> "Plda":
        """Kaldi's ``PldaEstimator::GetOutput``: ``A = U' C^-1`` with ``within = C C'`` (Cholesky) and ``U`` the
        eigenvectors of ``C^-1 between C^-T`` (eigenvalues ``psi``, descending, floored at 0)."""
        c_inv = np.linalg.inv(np.linalg.cholesky(within))
        s, u = np.linalg.eigh(c_inv @ between @ c_inv.T)
        order = np.argsort(-s, kind="stable")
        return cls(mean=np.asarray(mean, dtype=np.float64), transform=u[:, order].T @ c_inv,
                   psi=np.maximum(s[order], 0.0))

    def transform_embeddings(self, x: np.ndarray, normalize_length: bool = True) -> np.ndarray:
        """Kaldi's ``TransformIvector`` (one example) of each row of ``x``."""
        u = (np.asarray(x, dtype=np.float64) - self.mean) @ self.transform.T
        if normalize_length:
            expected = (u ** 2 / (self.psi + 1.0)).sum(axis=1)
            u *= np.sqrt(u.shape[1] / np.maximum(expected, 1e-300))[:, None]
        return u

    def llr(self, u: np.ndarray, v: np.ndarray, u_rows: np.ndarray, v_rows: np.ndarray) -> np.ndarray:
        """Kaldi's ``LogLikelihoodRatio`` with one enrollment example of ``u[u_rows[i]]`` vs ``v[v_rows[i]]``
        (both already transformed), vectorised as a sum of per-embedding terms and one dot product."""
        a = self.psi / (self.psi + 1.0)          # posterior mean factor n psi / (n psi + 1), n = 1
        var_same = 1.0 + a                       # 1 + psi / (psi + 1)
        var_diff = 1.0 + self.psi
        const = -0.5 * (np.log(var_same).sum() - np.log(var_diff).sum())
        u_term = -0.5 * (u ** 2 * (a ** 2 / var_same)).sum(axis=1)
        v_term = -0.5 * (v ** 2 * (1.0 / var_same - 1.0 / var_diff)).sum(axis=1)
        return const + u_term[u_rows] + v_term[v_rows] + paired_dot(u * (a / var_same), v, u_rows, v_rows)


def fit_plda(x: np.ndarray, labels: Sequence[str], num_em_iters: int = 10) -> Plda:
    """Kaldi's ``PldaEstimator``: EM of the between- and within-class covariances, then diagonalised."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    if num_em_iters < 1:
        raise InputError(f"PLDA EM iterations must be >= 1, got {num_em_iters}")
    classes, num_classes = class_indices(labels)
    if num_classes >= n:
        raise InputError(f"PLDA needs a class with two or more embeddings ({n} embeddings, {num_classes} classes)")
    counts, means = scatter_stats(x, classes, num_classes)
    resid = x - means[classes]
    offset_scatter = resid.T @ resid
    mu = means.mean(axis=0)                    # Kaldi: sum of class means / number of classes
    centred = means - mu
    within, between = np.eye(d), np.eye(d)
    sizes = np.unique(counts)
    for _ in range(num_em_iters):
        w_inv, b_inv = np.linalg.inv(within), np.linalg.inv(between)
        w_stats, b_stats = offset_scatter.copy(), np.zeros((d, d))
        for size in sizes:                     # one matrix inversion per class size
            m = centred[counts == size]
            mixed = np.linalg.inv(b_inv + size * w_inv)
            w = m @ (size * w_inv) @ mixed     # rows: (B^-1 + n W^-1)^-1 n W^-1 m
            b_stats += len(m) * mixed + w.T @ w
            r = m - w
            w_stats += size * (len(m) * mixed + r.T @ r)
        within = w_stats / n                   # counts: N - C intra-class terms + one per class mean
        between = b_stats / num_classes
        within, between = (within + within.T) / 2, (between + between.T) / 2
    return Plda.from_covariances(mu, within, between)


def project(x: np.ndarray, mean: np.ndarray, lda: np.ndarray | None) -> np.ndarray:
    """Mean subtraction, LDA (if any), length normalisation to norm ``sqrt(dim)`` (``ivector-normalize-length``)."""
    y = np.asarray(x, dtype=np.float64) - mean
    if lda is not None:
        y = y @ lda.T
    return l2_normalize(y) * np.sqrt(y.shape[1])


@dataclass
class Backend:
    """Training mean, optional LDA and PLDA of one system, with where its training data came from."""

    mean: np.ndarray
    lda: np.ndarray | None
    plda: Plda
    info: dict = field(default_factory=dict)

    def score_trials(self, kind: str, emb: tuple[list[str], np.ndarray], enroll_ids: Sequence[str],
                     test_ids: Sequence[str], test_emb: tuple[list[str], np.ndarray] | None = None,
                     source: str = "the embeddings") -> np.ndarray:
        """``plda``: Kaldi's PLDA LLR of each trial; ``lda-cosine``: the cosine after mean subtraction and LDA."""
        if kind not in BACKENDS:
            raise InputError(f"back-end must be one of {', '.join(BACKENDS)}, got {kind!r}")
        dim = self.mean.shape[0]
        for name, e in (("enrollment", emb), ("test", test_emb)):
            if e is not None and e[1].shape[1] != dim:
                raise InputError(f"{name} embeddings of {source} have dimension {e[1].shape[1]}, "
                                 f"the back-end was trained on {dim}")
        e_rows, t_rows = trial_rows(emb, enroll_ids, test_ids, test_emb, source)
        e_all = project(emb[1], self.mean, self.lda)
        t_all = e_all if test_emb is None else project(test_emb[1], self.mean, self.lda)
        if kind == "lda-cosine":
            return paired_dot(l2_normalize(e_all), l2_normalize(t_all), e_rows, t_rows)
        e_all = self.plda.transform_embeddings(e_all)
        t_all = e_all if test_emb is None else self.plda.transform_embeddings(t_all)
        return self.plda.llr(e_all, t_all, e_rows, t_rows)

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` (atomic); ``info`` is stored as JSON text."""
        arrays = {"mean": self.mean, "plda_mean": self.plda.mean, "plda_transform": self.plda.transform,
                  "plda_psi": self.plda.psi, "info": np.array(json.dumps(self.info, sort_keys=True))}
        if self.lda is not None:
            arrays["lda"] = self.lda
        with atomic_write(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Backend":
        """Read a file written by :meth:`save`; a clear error names a file that is not one."""
        try:
            with np.load(path, allow_pickle=False) as z:
                lda = z["lda"] if "lda" in z.files else None
                return cls(mean=z["mean"], lda=lda,
                           plda=Plda(mean=z["plda_mean"], transform=z["plda_transform"], psi=z["plda_psi"]),
                           info=json.loads(str(z["info"])))
        except FileNotFoundError:
            raise
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"{path}: not a back-end model of train_backend.py ({e})") from e


def train_backend(x: np.ndarray, labels: Sequence[str], lda_dim: int = 200, num_em_iters: int = 10,
                  info: dict | None = None) -> Backend:
    """The back-end of kaldi-asr/kaldi:egs/voxceleb/v2/run.sh on embeddings ``x`` with speaker ``labels``:
    training mean, LDA to ``lda_dim`` (0: none), length normalisation, PLDA."""
    x = np.asarray(x, dtype=np.float64)
    if len(labels) != len(x):
        raise InputError(f"{len(labels)} labels for {len(x)} embeddings")
    if lda_dim < 0:
        raise InputError(f"LDA dimension must be >= 0 (0: no LDA), got {lda_dim}")
    mean = x.mean(axis=0)
    lda = fit_lda(x - mean, labels, lda_dim) if lda_dim else None
    plda = fit_plda(project(x, mean, lda), labels, num_em_iters)
    info = dict(info or {}, lda_dim=lda_dim, num_em_iters=num_em_iters, num_embeddings=len(x),
                num_speakers=class_indices(labels)[1])
    return Backend(mean=mean, lda=lda, plda=plda, info=info)


def train_backend_on_dev(x: np.ndarray, labels: Sequence[str], lda_dims: Sequence[int],
                         dev_emb: tuple[list[str], np.ndarray], dev_enroll: Sequence[str], dev_test: Sequence[str],
                         dev_target: np.ndarray, num_em_iters: int = 10, info: dict | None = None) -> Backend:
    """:func:`train_backend` with the LDA dimension of ``lda_dims`` whose PLDA scores have the lowest EER on the
    dev trials (the first listed on a tie); ``info["dev_eer"]`` records each dimension's EER."""
    if not lda_dims:
        raise InputError("no LDA dimension to choose from")
    dev_target = np.asarray(dev_target)
    if dev_target.min() == dev_target.max():
        raise InputError("the dev trials need both target and non-target trials to choose the LDA dimension")
    best, dev_eer = None, {}
    for dim in lda_dims:
        backend = train_backend(x, labels, dim, num_em_iters, info)
        dev_eer[str(dim)] = compute_metrics(backend.score_trials("plda", dev_emb, dev_enroll, dev_test,
                                                                 source="the dev embeddings"), dev_target).eer
        if best is None or dev_eer[str(dim)] < dev_eer[str(best.info["lda_dim"])]:
            best = backend
    best.info["dev_eer"] = dev_eer
    return best


def capped_lda_dims(lda_dims: Sequence[int], dim: int, source: str) -> list[int]:
    """``lda_dims`` with each value above the embeddings' dimension ``dim`` lowered to ``dim`` (LDA without
    reduction), duplicates dropped, a note on stderr naming ``source``: one recipe's systems have embeddings of
    different sizes (egs/speechocean762: 60-d statistics, 192-d ECAPA, 256-d Whisper) under one --lda-dim."""
    over = [d for d in lda_dims if d > dim]
    if over:
        print(f"NOTE: --lda-dim {' '.join(map(str, over))} above the {dim} dimensions of {source}: LDA to {dim}",
              file=sys.stderr)
    return list(dict.fromkeys(min(d, dim) for d in lda_dims))


def train_backend_files(emb_scp: str, utt2spk: str, out_model: str, *, lda_dims: Sequence[int] = (200,),
                        dev_trials: str | None = None, dev_scp: str | None = None, num_em_iters: int = 10,
                        labels_of: str = "") -> Backend:
    """What ``train_backend.py`` does (its ``--help`` says what each option does): train a back-end on the
    embeddings of ``emb_scp`` labelled by ``utt2spk`` (ids without a label skipped, with a warning), choosing
    among several ``lda_dims`` on ``dev_trials``/``dev_scp`` (each at most the embeddings' dimension:
    :func:`capped_lda_dims`), and save it to ``out_model``; ``labels_of``:
    what ``utt2spk`` holds, recorded in the model."""
    from sslspk.utils.errors import MissingIdError
    from sslspk.utils.fileio import check_outputs_are_not_inputs, read_kv

    check_outputs_are_not_inputs([emb_scp, utt2spk, dev_trials, dev_scp], [out_model])
    if len(lda_dims) > 1 and not (dev_trials and dev_scp):
        raise InputError("several --lda-dim values need --dev-trials and --dev-scp to choose among them")
    keys, mat = load_embeddings(emb_scp)
    u2s = read_kv(utt2spk)
    rows = [i for i, k in enumerate(keys) if k in u2s]
    if not rows:
        raise MissingIdError(f"none of the {len(keys)} embeddings of {emb_scp} has a label in {utt2spk}")
    if len(rows) < len(keys):
        print(f"WARNING: {len(keys) - len(rows)} of the {len(keys)} embeddings of {emb_scp} have no label "
              f"in {utt2spk}: skipped", file=sys.stderr)
    info = {"embeddings": os.path.abspath(emb_scp), "utt2spk": os.path.abspath(utt2spk),
            "labels": labels_of}
    x, labels = mat[rows], [u2s[keys[i]] for i in rows]
    lda_dims = capped_lda_dims(lda_dims, x.shape[1], emb_scp)
    if len(lda_dims) > 1:
        from sslspk.data.trials import read_trials

        dev = read_trials(dev_trials)
        if dev.labels is None:
            raise InputError(f"{dev_trials}: the dev trials need target/nontarget labels")
        backend = train_backend_on_dev(x, labels, lda_dims, load_embeddings(dev_scp), dev.enroll,
                                       dev.test, dev.labels, num_em_iters, info)
        print("dev EER by LDA dimension: " + ", ".join(f"{d} {100 * e:.2f}%"
                                                       for d, e in backend.info["dev_eer"].items()))
    else:
        backend = train_backend(x, labels, lda_dims[0], num_em_iters, info)
    backend.save(out_model)
    print(f"back-end of {backend.info['num_embeddings']} embeddings, {backend.info['num_speakers']} speakers "
          f"(LDA {backend.info['lda_dim'] or 'none'}, PLDA) -> {out_model}")
    return backend
