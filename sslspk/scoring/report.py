"""Score files and per-experiment result tables (``results.md`` + ``results.json``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sslspk.data.trials import check_pairs, read_trials
from sslspk.scoring.metrics import Metrics, compute_metrics
from sslspk.utils.errors import InputError, MissingIdError
from sslspk.utils.fileio import FormatError, atomic_write, iter_lines

_LABELS = {"target": 1, "nontarget": 0}


def read_score_file(path: str | os.PathLike,
                    drop_bad_trials: bool = False) -> tuple[list[tuple[str, str]], np.ndarray, list[str | None]]:
    """``(pairs, scores, labels)`` of a score file; labels are ``'target'``/``'nontarget'`` or None.

    Repeated trials and self-pairs are checked as in a trial list (:func:`~sslspk.data.trials.check_pairs`)."""
    pairs: list[tuple[str, str]] = []
    scores: list[float] = []
    labels: list[str | None] = []
    numbers: list[int] = []
    for n, line in iter_lines(path):
        f = line.split()
        if len(f) not in (3, 4) or (len(f) == 4 and f[3] not in _LABELS):
            raise FormatError(path, n, f"expected '<enroll> <test> <score> [target|nontarget]', got {line!r}")
        try:
            scores.append(float(f[2]))
        except ValueError:
            raise FormatError(path, n, f"score {f[2]!r} is not a number") from None
        if not np.isfinite(scores[-1]):
            raise FormatError(path, n, f"score {f[2]!r} of {f[0]} {f[1]} is not finite")
        pairs.append((f[0], f[1]))
        labels.append(f[3] if len(f) == 4 else None)
        numbers.append(n)
    if not scores:
        raise FormatError(path, None, "no scores")
    keep = check_pairs(path, pairs, numbers, labels, drop_bad_trials)
    return [pairs[i] for i in keep], np.asarray(scores)[keep], [labels[i] for i in keep]


def read_scores(path: str | os.PathLike, trials: str | os.PathLike | None = None,
                drop_bad_trials: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels from ``enroll test score [label]`` lines (labels from ``trials`` if absent);
    ``drop_bad_trials``: see :func:`~sslspk.data.trials.check_pairs`."""
    pairs, score_arr, names = read_score_file(path, drop_bad_trials)
    labels = [_LABELS[x] for x in names if x is not None]
    if len(labels) == len(names):
        return score_arr, np.asarray(labels)
    if labels:
        raise FormatError(path, None, "some lines have a label and some do not")
    if trials is None:
        raise FormatError(path, None, "no target/nontarget labels: pass the trial list with --trials")
    t = read_trials(trials, drop_bad_trials)
    if t.labels is None:
        raise FormatError(trials, None, "trial list has no labels")
    lab = {(e, s): int(y) for e, s, y in zip(t.enroll, t.test, t.labels)}
    missing = [p for p in pairs if p not in lab]
    if missing:
        raise MissingIdError(f"{len(missing)} scored pair(s) of {path} are not in {trials}: {missing[:3]}")
    return score_arr, np.asarray([lab[p] for p in pairs])


def file_sha256(path: str | os.PathLike, length: int = 12) -> str:
    """First ``length`` hex digits of the SHA-256 of a file."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:length]


def update_results(exp_dir: str | os.PathLike, name: str, metrics: Metrics, scores: str | os.PathLike,
                   backend: str = "cosine", extra: dict | None = None) -> dict:
    """Add or replace row ``name`` in ``exp_dir/results.json`` and regenerate ``results.md``.

    The row records the metrics, the score file, the scoring ``backend`` (e.g. ``cosine``,
    ``as-norm``, ``+cal``), the model (``exp_dir``) and its ``config.yaml`` path and SHA-256.
    Returns the row.
    """
    exp_dir = Path(exp_dir)
    jpath = exp_dir / "results.json"
    try:
        rows: dict[str, dict] = json.loads(jpath.read_text()) if jpath.exists() else {}
    except json.JSONDecodeError as e:
        raise FormatError(jpath, e.lineno, f"invalid JSON: {e.msg}") from None
    row = {**metrics.as_dict(), "scores": str(scores), "backend": backend, "model": str(exp_dir)}
    cfg = exp_dir / "config.yaml"
    if cfg.exists():
        row["config"] = str(cfg)
        row["config_sha256"] = file_sha256(cfg)
    row.update(extra or {})
    rows[name] = row
    with atomic_write(jpath) as f:
        json.dump(rows, f, indent=2, sort_keys=True)
    with atomic_write(exp_dir / "results.md") as f:
        f.write(f"# Results: {exp_dir}\n\n")
        configs = sorted({f"`{r['config']}` (sha256 {r['config_sha256']})" for r in rows.values() if "config" in r})
        if configs:
            f.write("Model config: " + ", ".join(configs) + "\n\n")
        f.write(results_table([{"trials": n, **r} for n, r in sorted(rows.items())]))
    return row


def _fmt_map(rows: list[dict], key: str) -> list[str]:
    return sorted({p for r in rows for p in (r.get(key) or {})}, key=float)


def results_table(rows: list[dict], first: tuple[str, ...] = ("trials",), last: tuple[str, ...] = ()) -> str:
    """Markdown table of result rows (dicts as in ``results.json``, plus the ``first`` columns).

    Columns: ``first``, backend, EER, minDCF per p_target, Cllr and actDCF per p_target (when
    any row has them; ``-`` elsewhere), #target, #nontarget, ``last``.
    """
    dcf_p, act_p = _fmt_map(rows, "min_dcf"), _fmt_map(rows, "act_dcf")
    has_cllr = any(r.get("cllr") is not None for r in rows)
    head = [*first, "backend", "EER (%)", *(f"minDCF (p={p})" for p in dcf_p)]
    if has_cllr:
        head.append("Cllr")
    head += [*(f"actDCF (p={p})" for p in act_p), "#target", "#nontarget", *last]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r.get(c, "-")) for c in first] + [str(r.get("backend", "-")), f"{100 * r['eer']:.3f}"]
        cells += [f"{r['min_dcf'][p]:.4f}" if p in r.get("min_dcf", {}) else "-" for p in dcf_p]
        if has_cllr:
            cells.append(f"{r['cllr']:.4f}" if r.get("cllr") is not None else "-")
        cells += [f"{r['act_dcf'][p]:.4f}" if p in (r.get("act_dcf") or {}) else "-" for p in act_p]
        cells += [str(r.get("num_target", "-")), str(r.get("num_nontarget", "-"))]
        cells += [str(r.get(c, "-")) for c in last]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def collect_results(dirs: list[str | os.PathLike]) -> list[dict]:
    """Rows of every ``results.json`` in ``dirs`` or below them, with ``exp`` (the dir) and ``trials``.

    Directories are visited in natural order (``iter2`` before ``iter10``); a malformed file
    raises :class:`FormatError` naming it.
    """
    import re

    def natural(p: Path) -> list:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]

    found: list[Path] = []
    for d in dirs:
        d = Path(d)
        if d.is_file() and d.name == "results.json":
            found.append(d)
        elif d.is_dir():
            found += sorted(d.rglob("results.json"), key=natural)
        else:
            raise FileNotFoundError(f"{d}: no such directory (or results.json)")
    rows: list[dict] = []
    for j in dict.fromkeys(found):  # unique, in order
        try:
            data = json.loads(j.read_text())
        except json.JSONDecodeError as e:
            raise FormatError(j, e.lineno, f"invalid JSON: {e.msg}") from None
        if not isinstance(data, dict):
            raise FormatError(j, None, "expected an object of result rows")
        for name, r in sorted(data.items()):
            if not isinstance(r, dict) or "eer" not in r:
                raise FormatError(j, None, f"row {name!r} has no 'eer'")
            rows.append({"exp": str(j.parent), "trials": name, **r})
    return rows


def compare_results(dirs: Sequence[str | os.PathLike], trials: Sequence[str] | None = None, sort: str = "none",
                    as_json: bool = False) -> str:
    """``compare_results.py``: the result rows found in ``dirs`` (:func:`collect_results`), only those of the
    trial lists ``trials`` when given, sorted by ``sort`` (none: as found, eer, or exp: by experiment then trial
    list), as one markdown table or (``as_json``) a JSON list; InputError when no row is left."""
    rows = collect_results(list(dirs))
    if trials:
        rows = [r for r in rows if r["trials"] in trials]
    if not rows:
        raise InputError(f"no result rows found in {', '.join(map(str, dirs))}"
                         + (f" for trials {', '.join(trials)}" if trials else ""))
    if sort == "eer":
        rows.sort(key=lambda r: r["eer"])
    elif sort == "exp":
        rows.sort(key=lambda r: (r["exp"], r["trials"]))
    if as_json:
        return json.dumps(rows, indent=2, sort_keys=True) + "\n"
    return results_table(rows, first=("exp", "trials"), last=("config_sha256",))


def _last_dlg(train_log: Path) -> dict[str, float]:
    """Values of the last DLG-LC line of a train.log (``DLG-LC epoch N: dlg_kept=... ...``)."""
    if not train_log.exists():
        return {}
    lines = [line for line in train_log.read_text().splitlines() if "DLG-LC epoch" in line]
    if not lines:
        return {}
    return {k: float(v) for k, v in (f.split("=") for f in lines[-1].split(": ", 1)[1].split())}


def loop_table(exp_dir: str | os.PathLike, trials: str = "test", start: str = "ssl", tag: str = "") -> str:
    """Markdown table, one row per pseudo-label iteration (0 = ``exp_dir/start``, the model whose
    embeddings seeded the first clustering), then the oracle. ``tag``: the systems' name suffix
    (``pl<tag>_iterN``, ``oracle<tag>``; steps/stages.sh names them after non-default configs)."""
    import re

    exp_dir = Path(exp_dir)
    iters = sorted((int(m.group(1)), d) for d in exp_dir.glob(f"pl{tag}_iter*")
                   if (m := re.fullmatch(rf"pl{re.escape(tag)}_iter(\d+)", d.name)))
    if not iters:
        raise FileNotFoundError(f"no {exp_dir}/pl{tag}_iter* directories")
    head = ("| iteration | model | EER (%) | minDCF (0.01) | #clusters | NMI | purity | inv. purity "
            "| DLG kept | DLG corrected | correction precision |")
    rows = [f"# Pseudo-label iterations: {exp_dir}", "", head, "|" + "---|" * 11]

    def metrics(d: Path) -> tuple[str, str]:
        p = d / "results.json"
        r = json.loads(p.read_text()).get(trials) if p.exists() else None
        if not r:
            return "-", "-"
        return f"{100 * r['eer']:.2f}", f"{r['min_dcf'].get('0.01', float('nan')):.4f}"

    def fmt(x: float | None, pct: bool = False) -> str:
        return "-" if x is None else (f"{100 * x:.1f}%" if pct else f"{x:.3f}")

    if (exp_dir / start).is_dir():
        rows.append(f"| 0 | {start} | {' | '.join(metrics(exp_dir / start))} | - | - | - | - | - | - | - |")
    for n, d in iters:
        cj = d / "clusters" / "clusters.json"
        c = json.loads(cj.read_text()) if cj.exists() else {}
        ref = c.get("reference", {}).get("final", {})
        dlg = _last_dlg(d / "train.log")
        rows.append(f"| {n} | {d.name} | {' | '.join(metrics(d))} | {c.get('num_clusters', '-')} | "
                    f"{fmt(ref.get('nmi'))} | {fmt(ref.get('purity'))} | {fmt(ref.get('inverse_purity'))} | "
                    f"{fmt(dlg.get('dlg_kept'), True)} | {fmt(dlg.get('dlg_corrected'), True)} | "
                    f"{fmt(dlg.get('dlg_correction_precision'), True)} |")
    if (exp_dir / f"oracle{tag}").is_dir():
        rows.append(f"| - | oracle{tag} (true labels) | {' | '.join(metrics(exp_dir / f'oracle{tag}'))} "
                    "| - | 1.000 | 1.000 | 1.000 | - | - | - |")
    return "\n".join(rows) + "\n"


def score_file_metrics(scores_file: str, *, trials: str | None = None, p_target: Sequence[float] = (0.01, 0.05),
                       c_miss: float = 1.0, c_fa: float = 1.0, drop_bad_trials: bool = False,
                       results_dir: str | None = None, name: str | None = None, llr: bool = False,
                       backend: str | None = None) -> None:
    """What ``compute_metrics.py`` does (its ``--help`` says what each option does): print the EER and
    minDCF (with LLRs, ``llr`` or a ``--calibration`` in the ``score.py`` options of ``<scores_file>.stamp``:
    Cllr and actDCF too) of ``scores_file`` and, with ``results_dir``, add the row ``name`` to its results
    (``backend``: by default from those options)."""
    from sslspk.utils.fileio import check_outputs_are_not_inputs, dir_and_files
    from sslspk.utils.stamp import read_stamp, stamp_path

    check_outputs_are_not_inputs([scores_file, stamp_path(scores_file), trials],
                                 dir_and_files(results_dir, ("results.json", "results.md")))
    opts = ((read_stamp(scores_file) or {}).get("options") or {}).get("score.py", "").split()
    is_llr = llr or "--calibration" in opts
    trained = opts[opts.index("--backend") + 1] if "--backend" in opts[:-1] else None   # plda, lda-cosine
    row_backend = backend or (trained or ("as-norm" if "--cohort-scp" in opts else "cosine")) \
        + ("+cal" if "--calibration" in opts else "")
    scores, labels = read_scores(scores_file, trials, drop_bad_trials)
    m = compute_metrics(scores, labels, tuple(p_target), c_miss, c_fa, llr=is_llr)
    dcf = "  ".join(f"minDCF(p={p:g}) {v:.4f}" for p, v in m.min_dcf.items())
    if m.cllr is not None:
        dcf += f"  Cllr {m.cllr:.4f}  " + "  ".join(f"actDCF(p={p:g}) {v:.4f}" for p, v in m.act_dcf.items())
    print(f"EER {100 * m.eer:.3f}%  {dcf}  ({m.num_target} target, {m.num_nontarget} nontarget trials)")
    if results_dir:
        update_results(results_dir, name, m, scores_file, backend=row_backend)
