"""DET curves: the (lossless) corner points of a system's curve, a text dump, and a plot.

The plot uses normal-deviate axes (``scipy.stats.norm.ppf`` of the error rates) as in
NIST evaluations; matplotlib's Agg back-end renders it without a display.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from sslspk.scoring.metrics import det_points, eer_from_det
from sslspk.scoring.report import read_scores
from sslspk.utils.errors import InputError
from sslspk.utils.fileio import atomic_write, check_outputs_are_not_inputs

TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9)


def det_corners(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p_miss, p_fa, thresholds)`` of :func:`det_points` without the interior points of
    horizontal/vertical runs: the same piecewise-linear curve with far fewer points."""
    pm, pf, thr = det_points(scores, labels)
    keep = np.ones(len(pm), dtype=bool)
    # An interior point of a straight axis-parallel run lies between neighbours that share its coordinate.
    same_m = (pm[1:-1] == pm[:-2]) & (pm[1:-1] == pm[2:])
    same_f = (pf[1:-1] == pf[:-2]) & (pf[1:-1] == pf[2:])
    keep[1:-1] = ~(same_m | same_f)
    return pm[keep], pf[keep], thr[keep]


def write_det_points(path: str | os.PathLike, systems: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Text file of ``system p_miss p_fa threshold`` lines (one block per system)."""
    with atomic_write(path) as f:
        f.write("# system p_miss p_fa threshold\n")
        for name, (pm, pf, thr) in systems.items():
            for a, b, t in zip(pm, pf, thr):
                f.write(f"{name} {a:.8g} {b:.8g} {t:.8g}\n")


def plot_det(out_png: str | os.PathLike, systems: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
             title: str | None = None, limits: tuple[float, float] | None = None) -> None:
    """Plot the DET curve of each system (with its EER point) into ``out_png``.

    ``limits`` (error-rate range of both axes) defaults to 0.05%..60%, up to 95% when a
    system's EER exceeds 20%.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    if limits is None:
        worst = max(eer_from_det(*c)[0] for c in systems.values())
        limits = (0.0005, 0.95 if worst > 0.2 else 0.6)
    lo, hi = limits
    ticks = [t for t in TICKS if lo <= t <= hi and (hi <= 0.6 or t not in (0.002, 0.02))]  # no overlaps
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=120)
    for name, (pm, pf, thr) in systems.items():
        eer, _ = eer_from_det(pm, pf, thr)
        x = norm.ppf(np.clip(pf, lo / 2, 1 - 1e-9))
        y = norm.ppf(np.clip(pm, lo / 2, 1 - 1e-9))
        line, = ax.plot(x, y, lw=1.5, label=f"{name} (EER {100 * eer:.2f}%)")
        ax.plot(norm.ppf(max(eer, lo / 2)), norm.ppf(max(eer, lo / 2)), "o", color=line.get_color(), ms=5)
    ax.plot(norm.ppf([lo, hi]), norm.ppf([lo, hi]), ":", color="grey", lw=0.8)
    tick_pos = norm.ppf(ticks)
    labels = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(tick_pos, labels)
    ax.set_yticks(tick_pos, labels)
    ax.set_xlim(norm.ppf(lo), norm.ppf(hi))
    ax.set_ylim(norm.ppf(lo), norm.ppf(hi))
    ax.set_xlabel("False alarm rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.grid(True, lw=0.4, alpha=0.6)
    ax.legend(loc="lower left", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    tmp = f"{out_png}.tmp.png"
    try:
        fig.savefig(tmp)
        os.replace(tmp, out_png)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def parse_system_args(items: Sequence[str]) -> dict[str, str]:
    """``name=scores`` arguments (a bare path is named by its file stem) as an ordered dict."""
    out: dict[str, str] = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep:
            name, path = os.path.splitext(os.path.basename(it))[0], it
        if not name or not path:
            raise InputError(f"expected NAME=SCORES, got {it!r}")
        if name in out:
            raise InputError(f"system name {name!r} given twice")
        out[name] = path
    return out


def plot_det_files(system_args: Sequence[str], out_png: str, *, points: str | None = None, trials: str | None = None,
                   title: str | None = None, drop_bad_trials: bool = False) -> None:
    """``plot_det.py``: the DET curves of the score files named by ``system_args`` (``NAME=SCORES`` or a bare
    path, see :func:`parse_system_args`) into ``out_png`` and their corner points into ``points`` (default:
    ``out_png`` with ``.txt``); prints each system's EER. ``trials`` labels score files without labels."""
    files = parse_system_args(system_args)
    points = points or os.path.splitext(out_png)[0] + ".txt"
    check_outputs_are_not_inputs([*files.values(), trials], [out_png, points])
    systems = {name: det_corners(*read_scores(path, trials, drop_bad_trials)) for name, path in files.items()}
    plot_det(out_png, systems, title=title)
    write_det_points(points, systems)
    for name, curve in systems.items():
        print(f"{name}: EER {100 * eer_from_det(*curve)[0]:.3f}%")
    print(f"DET -> {out_png}, points -> {points}")
