"""Score files and per-experiment result tables (``results.md`` + ``results.json``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from sslspk.scoring.metrics import Metrics
from sslspk.scoring.trials import read_trials
from sslspk.utils.fileio import FormatError, atomic_write, iter_lines

_LABELS = {"target": 1, "nontarget": 0}


def read_scores(path: str | os.PathLike, trials: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels from ``enroll test score [label]`` lines (labels from ``trials`` if absent)."""
    pairs: list[tuple[str, str]] = []
    scores: list[float] = []
    labels: list[int] = []
    for n, line in iter_lines(path):
        f = line.split()
        if len(f) not in (3, 4) or (len(f) == 4 and f[3] not in _LABELS):
            raise FormatError(path, n, f"expected '<enroll> <test> <score> [target|nontarget]', got {line!r}")
        try:
            scores.append(float(f[2]))
        except ValueError:
            raise FormatError(path, n, f"score {f[2]!r} is not a number") from None
        pairs.append((f[0], f[1]))
        if len(f) == 4:
            labels.append(_LABELS[f[3]])
    if not scores:
        raise FormatError(path, None, "no scores")
    if len(labels) == len(scores):
        return np.asarray(scores), np.asarray(labels)
    if labels:
        raise FormatError(path, None, "some lines have a label and some do not")
    if trials is None:
        raise ValueError(f"{path} has no target/nontarget labels: pass the trial list with --trials")
    t = read_trials(trials)
    if t.labels is None:
        raise FormatError(trials, None, "trial list has no labels")
    lab = {(e, s): int(l) for e, s, l in zip(t.enroll, t.test, t.labels)}
    missing = [p for p in pairs if p not in lab]
    if missing:
        raise KeyError(f"{len(missing)} scored pair(s) of {path} are not in {trials}: {missing[:3]}")
    return np.asarray(scores), np.asarray([lab[p] for p in pairs])


def update_results(exp_dir: str | os.PathLike, name: str, metrics: Metrics, scores: str | os.PathLike) -> None:
    """Add or replace row ``name`` in ``exp_dir/results.json`` and regenerate ``results.md``."""
    exp_dir = Path(exp_dir)
    jpath = exp_dir / "results.json"
    rows: dict[str, dict] = json.loads(jpath.read_text()) if jpath.exists() else {}
    rows[name] = {**metrics.as_dict(), "scores": str(scores)}
    with atomic_write(jpath) as f:
        json.dump(rows, f, indent=2, sort_keys=True)
    p_targets = sorted({p for r in rows.values() for p in r["min_dcf"]}, key=float)
    head = "| trials | EER (%) | " + " | ".join(f"minDCF (p={p})" for p in p_targets) + " | #target | #nontarget |"
    lines = [f"# Results: {exp_dir}", "", head, "|" + "---|" * (5 + len(p_targets) - 1)]
    for n, r in sorted(rows.items()):
        dcf = " | ".join(f"{r['min_dcf'][p]:.4f}" if p in r["min_dcf"] else "-" for p in p_targets)
        lines.append(f"| {n} | {100 * r['eer']:.3f} | {dcf} | {r['num_target']} | {r['num_nontarget']} |")
    with atomic_write(exp_dir / "results.md") as f:
        f.write("\n".join(lines) + "\n")
