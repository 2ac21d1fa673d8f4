"""Tables and plots of a finished (or interrupted) search run, read back from its run directory.

A run directory (``tfmpq.search.store``) holds ``run.json`` (the problem), ``evaluations.jsonl``
(every scored candidate), ``history.json``, ``front.json`` / ``best.json`` and, after ``tfmpq
export``, ``export/export.json``. :func:`load_run` reads them into a :class:`RunView` that quacks
like the search's ``Result`` where plotting needs it: :func:`plot_pareto` / :func:`plot_history`
draw either, so a report made later looks like one drawn when the search ended (the search draws
nothing; ``tfmpq search`` and the demo call :func:`write_plots` on its ``Result``). No TensorFlow is imported.

Example:

>>> from tfmpq import report
>>> run = report.load_run("runs/fmnist")
>>> print(report.front_table(run))
>>> text, files = report.write_report(run, "runs/fmnist")   # report.md, pareto.png, history plot
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Mapping

from tfmpq.errors import CheckpointError
from tfmpq.metrics import is_byte_metric
from tfmpq.policy import bits_label
from tfmpq.search import store

__all__ = ["RunView", "load_run", "format_table", "front_table", "uniform_table", "export_table",
           "summary_text", "markdown_report", "plot_pareto", "plot_history", "write_report"]


@dataclasses.dataclass
class _Constraint:
    metric: str
    target: float


@dataclasses.dataclass
class RunView:
    """What a run directory holds, in the shape ``tfmpq.search.Result``'s plots read.

    Attributes:
        run_dir: the directory.
        strategy: the strategy's name (``"nsga2"``, ``"bbpso"``, ...).
        objectives: ``("accuracy", cost)``.
        constraint: ``metric <= target`` of a budgeted search (``.metric``, ``.target``), else None.
        candidates: every journaled candidate (``tfmpq.evaluate.Candidate``), in evaluation order.
        front: the Pareto front (from ``front.json``, else recomputed), by increasing cost.
        best: the best candidate (``best.json``), or None.
        history: one dict per generation (``history.json``).
        uniform: ``{label: Candidate}`` of the uniform policies that were scored.
        signature: ``run.json`` (space, evaluator, strategy options, seed).
        exports: rows of ``export.json`` files found under the run directory.
        report: the budget report of a constrained search (``best.json``'s ``report``), or None.
        search_activations: whether the chromosome holds activation bits too.
        comparison: the held-out comparison with uniform policies (``comparison.json``, written by
            ``Result.compare_with_uniform``), or None.
    """

    run_dir: Path
    strategy: str
    objectives: tuple
    constraint: _Constraint | None
    candidates: list
    front: list
    best: object | None
    history: list
    uniform: dict
    signature: dict
    exports: list
    report: dict | None = None
    search_activations: bool = False
    comparison: dict | None = None

    @property
    def cost(self) -> str:
        return self.objectives[1] if len(self.objectives) > 1 else "weight_bytes"


def _uniform_labeller(space_signature: dict):
    """``genes -> "4-bit"`` (or ``"w4a4"``) for the uniform chromosomes of a run's space (the space's
    own ``uniform_label``, rebuilt from ``run.json``); a run without a recorded space has none."""
    from tfmpq.search.space import SearchSpace

    try:
        space = SearchSpace.from_signature(space_signature)
    except (KeyError, TypeError, ValueError):
        return lambda genes: None
    return lambda genes: space.uniform_label(genes) if genes is not None and len(genes) == space.num_genes else None


def load_run(run_dir: str | os.PathLike) -> RunView:
    """Reads a search run directory (``tfmpq.search.store.read_run``, the one reader).

    Args:
        run_dir: a directory written by ``tfmpq search`` / ``tfmpq.search.nsga2(run_dir=...)`` / ``bbpso``.

    Returns:
        A :class:`RunView`.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist or holds no run (no ``evaluations.jsonl``,
            ``front.json`` nor ``run.json``).
        CheckpointError: a file of the run is not valid JSON.
    """
    from tfmpq.candidate import Candidate
    from tfmpq.search.constraints import Constraint
    from tfmpq.search.pareto import Objectives
    from tfmpq.search.store import read_json, read_run

    files = read_run(run_dir)
    d, signature = files.run_dir, files.signature
    objectives = tuple(signature.get("objectives") or ("accuracy", "weight_bytes"))
    c = signature.get("constraint")
    constraint = _Constraint(c["metric"], float(c["target"])) if c else None
    space = signature.get("space") or {}
    search_activations = bool(space.get("search_activations", False))
    candidates = [Candidate.from_json(r) for r in files.records]
    ranking = Objectives(objectives, None if c is None else Constraint(c["metric"], float(c["target"])))
    front = [Candidate.from_json(r) for r in files.front] if files.front is not None else ranking.front(candidates)
    best = Candidate.from_json(files.best) if files.best else None
    label = _uniform_labeller(space)
    uniform = {}
    for cand in candidates:
        name = label(cand.genes)
        if name is not None:
            uniform[name] = cand
    uniform = dict(sorted(uniform.items(), key=lambda kv: kv[1].genes[0]))
    exports = []
    for path in sorted(d.rglob("export.json")):
        try:
            rows = read_json(path)
        except CheckpointError:
            continue
        for row in rows if isinstance(rows, list) else []:
            exports.append({**row, "_file": str(path)})
    return RunView(
        run_dir=d, strategy=signature.get("strategy") or "search", objectives=objectives, constraint=constraint,
        candidates=candidates, front=front, best=best, history=files.history, uniform=uniform,
        signature=signature, exports=exports, report=(files.best or {}).get("report"),
        search_activations=search_activations, comparison=files.comparison,
    )


# ---------------------------------------------------------------------------------------- tables
def format_table(rows: list[list], markdown: bool = False) -> str:
    """Formats rows of cells (the first row is the header) as aligned plain text or a Markdown table."""
    rows = [[str(c) for c in r] for r in rows]
    if not rows:
        return ""
    widths = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(max(len(r) for r in rows))]
    rows = [r + [""] * (len(widths) - len(r)) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(rows[0], widths)) + " |",
                 "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows[1:]]
        return "\n".join(lines)
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _pct(v) -> str:
    return "failed" if v is None else f"{100 * v:.2f}%"


def _num(v, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def _kib(v) -> str:
    return "n/a" if v is None else f"{v / 1024:.2f}"


def _genes(c) -> str:
    return ",".join(bits_label(g) for g in (c.genes if c.genes is not None else getattr(c.policy, "weight_bits", ())))


def _bits(c, what: str) -> str:
    bits = getattr(c.policy, what, None)
    return _genes(c) if bits is None else ",".join(bits_label(b) for b in bits)


def _candidate_rows(cands: list, run: RunView) -> list[list]:
    acts = run.search_activations
    rows = [["#", "weight bits"] + (["act bits"] if acts else []) + [
        "accuracy", "weight KiB", "compression", "avg w bits", "avg op bits", "MBOPs", "uniform"]]
    for i, c in enumerate(cands):
        m = c.metrics
        rows.append([i, _bits(c, "weight_bits")] + ([_bits(c, "activation_bits")] if acts else []) + [
                     _pct(c.accuracy if c.ok else None), _kib(m.get("weight_bytes")),
                     _num(m.get("compression_ratio")) + "x" if m.get("compression_ratio") else "n/a",
                     _num(m.get("avg_weight_bits")), _num(m.get("avg_op_bits")),
                     _num(None if m.get("bops") is None else m["bops"] / 1e6, ".1f"),
                     _uniform_labeller(run.signature.get("space") or {})(c.genes) or ""])
    return rows


def front_table(run: RunView, markdown: bool = False) -> str:
    """The Pareto front: genes, accuracy, size, compression, average bits and BOPs of each member."""
    return format_table(_candidate_rows(run.front, run), markdown)


def uniform_table(run: RunView, markdown: bool = False) -> str:
    """The uniform policies scored during the run (the baselines the front is compared with)."""
    return format_table(_candidate_rows(list(run.uniform.values()), run), markdown)


def export_table(run: RunView, markdown: bool = False) -> str:
    """The exported models found under the run (``tfmpq export RUN_DIR -o RUN_DIR/...``)."""
    rows = [["file", "weight bits", "file B", "int8 weights B", "packed weights B", "TFLM arena B", "Keras acc",
             "TFLM acc"]]
    for r in run.exports:
        rep = r.get("report") or {}
        bits = [bits_label(tuple(b) if isinstance(b, list) else b) for g in rep.get("groups", [])
                for b in [g.get("weight_bits")]]
        acc = r.get("accuracy") or {}
        packed = rep.get("lut_weight_bytes") if rep.get("lut_weight_bytes") is not None else rep.get("packed_weight_bytes")
        rows.append([os.path.basename(rep.get("path", "?")), ",".join(map(str, bits)), rep.get("file_bytes", "n/a"),
                     rep.get("int8_weight_bytes", "n/a"), packed if packed is not None else "n/a",
                     rep.get("tflm_arena_bytes") or "n/a", _pct(r.get("keras_accuracy")) if "keras_accuracy" in r
                     else "n/a", _pct(acc.get("tflm")) if "tflm" in acc else "n/a"])
    return format_table(rows, markdown)


def summary_text(run: RunView) -> str:
    """A few lines: what was searched, how much, the best candidate and the budget report."""
    num_failed = sum(1 for c in run.candidates if not c.ok)
    ev = run.signature.get("evaluator") if isinstance(run.signature.get("evaluator"), dict) else {}
    how = ev.get("evaluation", "?")
    if how == "qat":
        how += f", {ev.get('epochs')} epoch(s)"
    lines = [f"run {run.run_dir}: {run.strategy}, objectives {' / '.join(run.objectives)}"
             + (f", budget {run.constraint.metric} <= {run.constraint.target:g}" if run.constraint else "")
             + f"; {len(run.candidates)} candidates ({num_failed} failed, {how}), "
               f"{max(len(run.history) - 1, 0)} generations, front of {len(run.front)}."]
    if run.history and run.history[-1].get("hypervolume") is not None:
        lines.append(f"final hypervolume {run.history[-1]['hypervolume']:.4f}")
    seconds = sum(h.get("seconds") or 0 for h in run.history)
    if seconds:
        lines.append(f"search time {seconds / 60:.1f} min")
    if run.best is not None:
        b = run.best
        lines.append(f"best: {_genes(b)} accuracy {_pct(b.accuracy if b.ok else None)}, "
                     f"{_kib(b.metrics.get('weight_bytes'))} KiB, avg op bits {_num(b.metrics.get('avg_op_bits'))}")
    r = run.report
    if r:
        parts = [f"accuracy {_pct(r.get('accuracy'))}"]
        if r.get("delta_accuracy") is not None:
            parts.append(f"{100 * r['delta_accuracy']:+.2f} pp vs. float")
        parts.append(f"compression ratio (eq. 9) {_num(r.get('compression_ratio_eq9'))}")
        parts.append(f"avg weight bits (eq. 10) {_num(r.get('avg_weight_bits'), '.3f')}")
        parts.append(f"avg op bits (eq. 11) {_num(r.get('avg_op_bits'), '.3f')}")
        if r.get("feasible") is False:
            parts.append("INFEASIBLE: no policy within the budget was seen")
        lines.append("budget report: " + ", ".join(parts))
    from tfmpq.search.compare import comparison_lines

    lines += comparison_lines(run.comparison, run.constraint is not None, hint=(
        "no held-out comparison yet: the accuracies below are the validation scores that chose the front "
        "(`tfmpq search ... --compare EPOCHS` or Result.compare_with_uniform(test=...))"))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- plots
def plot_pareto(run, path: str | os.PathLike) -> None:
    """Accuracy vs. cost (KiB for ``weight_bytes`` and ``flash_bytes*``): every scored point, the
    front, the uniform policies highlighted and labelled."""
    from matplotlib.figure import Figure  # the OO API: no pyplot, no global backend switch

    cost = run.objectives[1]
    scale, unit = (1 / 1024, "KiB") if is_byte_metric(cost) else (1.0, "")

    def xy(cs):
        return [c.metrics[cost] * scale for c in cs], [100 * c.accuracy for c in cs]

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ax.scatter(*xy([c for c in run.candidates if c.ok]), s=12, c="0.7", label="evaluated")
    fx, fy = xy(run.front)
    ax.step(fx, fy, where="post", c="tab:red", lw=1)
    ax.scatter(fx, fy, s=24, c="tab:red", label="Pareto front", zorder=3)
    uni = [(k, c) for k, c in run.uniform.items() if c.ok]
    if uni:
        ux, uy = xy([c for _, c in uni])
        ax.scatter(ux, uy, s=40, marker="s", facecolors="none", edgecolors="tab:blue", label="uniform", zorder=4)
        for (label, _), x, y in zip(uni, ux, uy):
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, color="tab:blue")
    ax.set_xlabel(f"{cost} ({unit})" if unit else cost)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{run.strategy}: {len(run.candidates)} evaluated, front of {len(run.front)}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)

def plot_budget_curve(comparison: dict, path: str | os.PathLike, *, label: str = "searched pick",
                      others: Mapping[str, dict] | None = None) -> "matplotlib.figure.Figure":
    """Held-out accuracy against the budget (``budget_curve.png``): the uniform staircase (the largest uniform
    policy that fits each budget) and the searched picks with their 95 % intervals, from
    :func:`tfmpq.search.budgets.compare_at_budgets`' dict (or its ``budgets.json``).

    Args:
        comparison: the comparison on one cost.
        path: the PNG written.
        label: the legend of this comparison's picks. Defaults to "searched pick".
        others: ``{legend: comparison}`` of other searches on the same cost and test images (e.g. the
            layer-wise run beside a channel-wise one): their picks drawn beside this one's, a little to the
            right of each budget. Defaults to None.

    Returns:
        The matplotlib ``Figure`` (already written to ``path``).
    """
    from matplotlib.figure import Figure

    cost = comparison["cost"]
    scale, unit = (1 / 1024, "KiB") if is_byte_metric(cost) else (1.0, "")
    rows = comparison["rows"]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    # the staircase: each fine-tuned uniform policy's accuracy from its own cost up to the next one's
    steps = sorted((r["cost"] * scale, 100 * r["test_accuracy"]) for r in comparison.get("finetuned", [])
                   if r.get("label"))
    if steps:
        right = max([rows[-1]["budget"] * scale if rows else steps[-1][0], steps[-1][0]]) * 1.02
        ax.step([x for x, _ in steps] + [right], [y for _, y in steps] + [steps[-1][1]], where="post",
                c="tab:blue", lw=1, alpha=0.6)
        for x, _ in steps:
            ax.axvline(x, c="tab:blue", lw=0.5, ls=":", alpha=0.5)
    series = [(rows, "uniform", "tab:blue", "s", "largest uniform that fits"), (rows, "front", "tab:red", "o", label)]
    series += [(other["rows"], "front", colour, marker, name) for (name, other), colour, marker
               in zip((others or {}).items(), ("tab:green", "tab:purple", "tab:orange", "tab:brown"), "D^vP")]
    span = max([r["budget"] for r in rows] or [1.0]) - min([r["budget"] for r in rows] or [0.0])
    for i, (side_rows, side, colour, marker, name) in enumerate(series):
        shift = 0.012 * span * max(i - 1, 0)  # other runs' picks a little to the right of the same budget
        pts = [((r["budget"] + shift) * scale, r[side]) for r in side_rows if r.get(side)]
        if not pts:
            continue
        xs = [x for x, _ in pts]
        ys = [100 * s["test_accuracy"] for _, s in pts]
        err = [[y - 100 * s["ci"][0] for (_, s), y in zip(pts, ys)], [100 * s["ci"][1] - y for (_, s), y in zip(pts, ys)]]
        ax.errorbar(xs, ys, yerr=err, fmt=marker, c=colour, ms=5, capsize=3, label=name, alpha=0.9)
    fl = comparison.get("float")
    if fl and fl.get("test_accuracy") is not None:
        ax.axhline(100 * fl["test_accuracy"], c="0.5", ls="--", lw=1, label="float, fine-tuned alike")
    mean = comparison.get("mean_gain")
    ax.set_xlabel((f"budget: {cost} ({unit})" if unit else f"budget: {cost}") + "; dotted: uniform policies' costs")
    ax.set_ylabel(f"test accuracy (%), {comparison['num_test']} images")
    ax.set_title("held-out accuracy under a budget" + ("" if mean is None else f" (mean gain {100 * mean:+.2f} pp)"))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def plot_history(run, path: str | os.PathLike) -> None:
    """Hypervolume per generation (unconstrained), or best feasible accuracy and the budget
    metric per generation (constrained)."""
    from matplotlib.figure import Figure

    gens = [h["generation"] for h in run.history]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    if run.constraint is None:
        ax.plot(gens, [h["hypervolume"] or 0.0 for h in run.history], marker="o")
        ax.set_ylabel("hypervolume (normalised)")
    else:
        acc = [h.get("best_feasible_accuracy") for h in run.history]
        ax.plot(gens, [math.nan if a is None else 100 * a for a in acc], marker="o", label="best feasible accuracy")
        ax.set_ylabel("accuracy (%)")
        key = "best_" + run.constraint.metric
        ax2 = ax.twinx()
        ax2.plot(gens, [h.get(key, math.nan) for h in run.history], c="tab:orange", marker=".", label=key)
        ax2.axhline(run.constraint.target, c="tab:orange", ls="--", lw=0.8)
        ax2.set_ylabel(run.constraint.metric)
        ax.legend(ax.get_lines() + ax2.get_lines()[:1], ["best feasible accuracy", f"its {run.constraint.metric}"],
                  loc="lower right", fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_plots(run, out_dir: str | os.PathLike | None = None) -> list[str]:
    """Writes ``pareto.png`` (two or more objectives, something scored) and the history plot
    (``hypervolume.png``, or ``convergence.png`` for a budgeted search) of a run or a
    :class:`~tfmpq.search.Result` into ``out_dir`` (default: the run directory).

    Returns:
        The paths written.
    """
    out = Path(out_dir if out_dir is not None else run.run_dir)
    files = []
    if len(run.objectives) >= 2 and any(c.ok for c in run.candidates):
        plot_pareto(run, out / store.PARETO_PLOT)
        files.append(str(out / store.PARETO_PLOT))
    if run.history:
        name = store.HYPERVOLUME_PLOT if run.constraint is None else store.CONVERGENCE_PLOT
        plot_history(run, out / name)
        files.append(str(out / name))
    return files


# ---------------------------------------------------------------------------------------- report
def markdown_report(run: RunView, plots: list[str] = ()) -> str:
    """The run as Markdown: summary, front, uniform baselines, exports, and the plot images."""
    parts = [f"# Search report: {run.run_dir.name}", "", "```", summary_text(run), "```", ""]
    for p in plots:
        parts += [f"![{Path(p).stem}]({Path(p).name})", ""]
    parts += ["## Pareto front" if run.constraint is None else "## Non-dominated candidates", "",
              front_table(run, markdown=True), ""]
    if run.uniform:
        parts += ["## Uniform policies", "", uniform_table(run, markdown=True), ""]
    if run.exports:
        parts += ["## Exported models", "", export_table(run, markdown=True), ""]
    parts += ["Metrics: accuracy = validation accuracy the search scored (it chose the front: use the held-out "
              "comparison above, not these, to judge the front against uniform policies); weight KiB = weights at their bit-widths "
              "plus 32-bit biases and per-channel scales; compression = float size / quantized size; avg w bits = "
              "parameter-weighted weight bits (eq. 10); avg op bits = MAC-weighted sqrt(w*a) bits (eq. 11), a = the bits of the tensor feeding "
              "the group; MBOPs = million bit operations (MACs x w x a).", ""]
    return "\n".join(parts)


def write_report(run: RunView, out_dir: str | os.PathLike | None = None, plots: bool = True) -> tuple[str, list]:
    """Writes ``report.md`` and (with ``plots``) ``pareto.png`` and the history plot.

    Args:
        run: a :class:`RunView` from :func:`load_run`.
        out_dir: where to write; None uses the run directory. Defaults to None.
        plots: draw the plots (needs matplotlib). Defaults to True.

    Returns:
        ``(text, files)``: the plain-text report printed by ``tfmpq report`` and the files written.
    """
    out = Path(out_dir) if out_dir is not None else run.run_dir
    out.mkdir(parents=True, exist_ok=True)
    files = write_plots(run, out) if plots else []
    store.write_output(out, store.REPORT, markdown_report(run, files))
    files.insert(0, str(out / store.REPORT))
    text = [summary_text(run), "", "Pareto front:" if run.constraint is None else "Non-dominated candidates:",
            front_table(run)]
    if run.uniform:
        text += ["", "Uniform policies:", uniform_table(run)]
    if run.exports:
        text += ["", "Exported models:", export_table(run)]
    return "\n".join(text), files
