"""Is the searched front really smaller than uniform quantization? Fine-tune both the same way, choose
on validation, report on held-out test.

A search scores candidates with a short, noisy proxy (one QAT epoch, a few thousand validation
images), and it sees hundreds of scores: the front's validation accuracies are the maxima of noisy
draws, so comparing them with the uniform policies' single draws flatters the front. This module
makes the comparison a reader can trust (issue 12):

1. Every policy compared is fine-tuned with one recipe and the same epochs
   (``Evaluator.finetune``: QAT from the float weights, best epoch by validation accuracy), and so is
   the float model itself (``Evaluator.finetune_float``), the reference a QAT number must beat to
   show anything about quantization rather than training.
2. Choices use validation only: the accuracy to reach is uniform 8-bit's fine-tuned validation
   accuracy minus ``tolerance``; the uniform side is the cheapest uniform policy that reaches it
   (fine-tuned from 8 bits down until one fails), the front side the cheapest front member cheaper
   than that which reaches it (fine-tuned in increasing cost until one does).
3. The test set is used once, to report: each chosen model's test accuracy with its 95 % Wilson
   interval, whether it reaches uniform 8-bit's *test* accuracy minus ``tolerance`` (the target the
   issue states), the saving in the search's cost, and McNemar's exact test of the two chosen models'
   test predictions (paired: same images).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from tfmpq.metrics import format_cost
from tfmpq.search import store
from tfmpq.stats import mcnemar, wilson_interval

#: Accuracy allowed below uniform 8-bit (Šafář et al. compare at "the same accuracy").
DEFAULT_TOLERANCE = 0.005


def compare_with_uniform(result, test, finetune_epochs: int = 3, tolerance: float = DEFAULT_TOLERANCE,
                         slack: float = 0.02, keep_models: bool = False, verbose: int = 1) -> dict:
    """The front against uniform policies, fine-tuned equally, chosen on validation, scored on ``test``.

    Args:
        result: a search :class:`~tfmpq.search.Result` whose evaluator can fine-tune
            (``tfmpq.search.Evaluator``). After :meth:`~tfmpq.search.Result.rescore` (a two-stage
            one-shot search) its ``rescored_front`` is compared, chosen by the re-scores.
        test: ``(x, y)`` held-out data the search never saw; used for reporting only.
        finetune_epochs: QAT epochs for every policy compared (and float epochs for the float
            reference). Defaults to 3.
        tolerance: accuracy allowed below uniform 8-bit. Defaults to 0.005 (0.5 pp).
        slack: front members whose search score lies more than ``tolerance + slack`` below the
            search score of uniform 8-bit are not fine-tuned (they cannot plausibly reach it).
            Defaults to 0.02.
        keep_models: also return standalone fine-tuned QAT models of the chosen policies (``models``),
            e.g. to export them; the comparison itself fine-tunes on the evaluator's shared search model
            (no rebuild per policy), so this costs up to three more fine-tunes. Defaults to False.
        verbose: 1 prints a line per fine-tune. Defaults to 1.

    Returns:
        A dict: ``target_accuracy`` (uniform 8-bit test accuracy - tolerance), ``target_val_accuracy``
        (the same on validation: what the choices use), ``cost`` (the metric compared), ``front`` and
        ``uniform`` (the chosen policy of each side, or None: dicts with ``policy`` (a QuantPolicy),
        ``genes``, ``label``, the cost, ``val_accuracy``, ``test_accuracy``, ``ci`` (95 % Wilson),
        ``reaches_target``), ``saving`` (1 - front cost / uniform cost, None without both sides),
        ``mcnemar`` (front vs. uniform test predictions), ``uniform8``, ``float`` (the float model
        fine-tuned the same epochs), ``finetuned`` (every fine-tuned policy), ``num_test``, ``tolerance``,
        ``finetune_epochs``, ``seconds`` and, with ``keep_models``, ``models`` (standalone fine-tuned QAT
        models of ``front``, ``uniform`` and ``uniform8``; not saved). Also written to
        ``run_dir/comparison.json``.

    Raises:
        TypeError: the evaluator cannot fine-tune (a custom evaluator).
        ValueError: invalid ``finetune_epochs`` / ``tolerance``, or bad ``test`` data.
    """
    ev = result.evaluator
    for method in ("finetune", "finetune_float", "correct", "metrics"):
        if not callable(getattr(ev, method, None)):
            raise TypeError(f"Cannot compare with uniform policies: the evaluator {type(ev).__name__} has no "
                            f"`{method}`. Use tfmpq.search.Evaluator.")
    if not isinstance(finetune_epochs, int) or finetune_epochs < 1:
        raise ValueError(f"Invalid value for `finetune_epochs`: expected an integer >= 1. Received: {finetune_epochs!r}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"Invalid value for `tolerance`: expected a fraction in [0, 1). Received: {tolerance!r}")
    start = time.perf_counter()
    tuner = _Tuner(result, test, finetune_epochs, verbose)
    tuner.say(f"Comparing the front with uniform policies: {finetune_epochs} fine-tuning epoch(s) each, chosen on "
              f"validation, reported on {len(tuner.test[1])} test samples.")
    float_row = tuner.float_row()
    uniforms = sorted(tuner.space.uniform_chromosomes(), key=lambda g: -ev.metrics(tuner.space.decode(g))[tuner.cost])
    u8, best_uniform = tuner.uniform_side(uniforms, tolerance)
    target_val = u8["val_accuracy"] - tolerance
    target_test = u8["test_accuracy"] - tolerance
    best_front = tuner.front_side(uniforms[0], best_uniform, target_val, tolerance, slack)

    for side in (best_front, best_uniform, u8):
        if side is not None:
            side["reaches_target"] = bool(side["test_accuracy"] >= target_test)
    saving = None if best_front is None else 1.0 - best_front["cost"] / best_uniform["cost"]
    paired = None
    if best_front is not None:
        paired = mcnemar(tuner.hits[best_front["genes"]], tuner.hits[best_uniform["genes"]])
    out = {
        "cost": tuner.cost,
        "tolerance": float(tolerance),
        "finetune_epochs": int(finetune_epochs),
        "num_test": int(len(tuner.test[1])),
        "selection": "validation",
        "target_accuracy": float(target_test),
        "target_val_accuracy": float(target_val),
        "front": best_front,
        "uniform": best_uniform,
        "uniform8": u8,
        "float": float_row,
        "saving": saving,
        "mcnemar": paired,
        "finetuned": sorted(tuner.rows.values(), key=lambda r: -r["cost"]),
        "seconds": time.perf_counter() - start,
    }
    if keep_models:  # standalone copies (the shared search model is overwritten by the next policy)
        out["models"] = {}
        for role, row in (("front", best_front), ("uniform", best_uniform), ("uniform8", u8)):
            if row is not None:
                out["models"][role] = ev.finetune(row["policy"], finetune_epochs)[1]
    if result.run_dir is not None:
        store.write_output(result.run_dir, store.COMPARISON, comparison_to_json(out))
    tuner.say(comparison_text(out))
    return out


class _Tuner:
    """The fine-tunes of one comparison: each policy once, its validation score, its test hits."""

    def __init__(self, result, test, epochs: int, verbose: int):
        from tfmpq.checks import check_data

        self.result, self.ev, self.epochs, self.verbose = result, result.evaluator, epochs, verbose
        self.test = check_data(self.ev.model, test, name="test")
        self.space = result.space
        self.cost = result.objectives[1] if len(result.objectives) > 1 else "weight_bytes"
        self.rows: dict[tuple, dict] = {}
        self.hits: dict[Any, np.ndarray] = {}
        # a two-stage search (one-shot scores, then stand-alone QAT re-scores of its front: Result.rescore):
        # the re-scored front, on its QAT scores (the one-shot scores are on another scale)
        self.rescored = {tuple(c.genes): c for c in getattr(result, "rescored", None) or [] if c.ok}

    def say(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)

    def tune(self, genes: tuple, role: str) -> dict:
        """The row of ``genes`` fine-tuned (once: a second call returns the first row)."""
        if genes in self.rows:
            return self.rows[genes]
        ev, cost, policy = self.ev, self.cost, self.space.decode(genes)
        t0 = time.perf_counter()
        try:
            candidate, model = ev.finetune(policy, self.epochs, reuse=True)
        except TypeError:  # an evaluator without the shared search model
            candidate, model = ev.finetune(policy, self.epochs)
        ok = candidate.ok
        h = ev.correct(model, self.test) if ok else np.zeros(len(self.test[1]), bool)
        searched = self.rescored.get(genes) or self.result.candidate(genes)
        row = _row(h, candidate.accuracy if ok else None, policy, genes, self.space.uniform_label(genes), cost,
                   ev.metrics(policy)[cost], role)
        row["search_accuracy"] = None if searched is None or not searched.ok else searched.accuracy
        row["seconds"] = time.perf_counter() - t0
        self.rows[genes], self.hits[genes] = row, h
        self.say(f"  fine-tuned {role:<8} {_label(row):<28} {cost} {format_cost(cost, row['cost'])}: val "
                 f"{_pct(row['val_accuracy'])}, test {_pct(row['test_accuracy'])} ({row['seconds']:.0f} s)")
        return row

    def float_row(self) -> dict:
        """The float model fine-tuned alike (the reference a QAT number must beat)."""
        val_f, float_model = self.ev.finetune_float(self.epochs)
        self.hits["float"] = self.ev.correct(float_model, self.test)
        row = _row(self.hits["float"], val_f if math.isfinite(val_f) else None, None, None, "float", self.cost,
                   None, "float")
        self.say(f"  fine-tuned float    {'float':<28}: val {_pct(row['val_accuracy'])}, "
                 f"test {_pct(row['test_accuracy'])}")
        return row

    def uniform_side(self, uniforms: list, tolerance: float) -> tuple[dict, dict]:
        """Uniform 8-bit's row and the cheapest uniform row that reaches its validation accuracy - tolerance."""
        u8 = self.tune(uniforms[0], "uniform")
        if u8["val_accuracy"] is None:
            raise RuntimeError(f"Fine-tuning uniform {u8['label']} diverged: no target accuracy to compare at.")
        target_val = u8["val_accuracy"] - tolerance
        best_uniform = u8
        for genes in uniforms[1:]:  # cheaper and cheaper
            row = self.tune(genes, "uniform")
            if row["val_accuracy"] is None or row["val_accuracy"] < target_val:
                break  # fewer bits will not do better: stop fine-tuning
            best_uniform = row
        return u8, best_uniform

    def front_side(self, uniform8: tuple, best_uniform: dict, target_val: float, tolerance: float,
                   slack: float) -> dict | None:
        """The cheapest front member cheaper than ``best_uniform`` that reaches ``target_val`` (members whose
        search score lies more than ``tolerance + slack`` below uniform 8-bit's are not fine-tuned)."""
        result, cost = self.result, self.cost
        front = result.rescored_front if self.rescored else result.front
        search_u8 = self.rescored.get(tuple(uniform8)) if self.rescored else result.candidate(uniform8)
        floor = (search_u8.accuracy if search_u8 is not None and search_u8.ok else -math.inf) - tolerance - slack
        members = sorted((c for c in front if c.ok and c.genes not in self.rows),
                         key=lambda c: (c.metrics[cost], -c.accuracy))
        for c in members:
            if c.metrics[cost] >= best_uniform["cost"]:
                break  # no saving possible from here on
            if c.accuracy < floor:
                continue
            row = self.tune(tuple(c.genes), "front")
            if row["val_accuracy"] is not None and row["val_accuracy"] >= target_val:
                return row
        if best_uniform["genes"] in {tuple(c.genes) for c in result.front}:
            return best_uniform  # the uniform policy is the front's own answer: no saving, no loss
        return None


def _row(h: np.ndarray, val, policy, genes, label, cost: str, cost_value, role: str) -> dict:
    n, k = len(h), int(np.sum(h))
    return {
        "role": role, "label": label, "genes": None if genes is None else tuple(genes), "policy": policy,
        "cost": None if cost_value is None else float(cost_value), "cost_name": cost,
        "val_accuracy": None if val is None else float(val), "test_accuracy": k / n,
        "ci": list(wilson_interval(k, n)), "test_correct": k,
    }


def comparison_to_json(comparison: dict) -> dict:
    """A JSON-able copy of :func:`compare_with_uniform`'s dict (policies as dicts, genes as lists)."""
    def row(r):
        if r is None:
            return None
        r = dict(r)
        r["policy"] = None if r.get("policy") is None else r["policy"].to_dict()
        r["genes"] = None if r.get("genes") is None else list(r["genes"])
        return r

    out = {k: v for k, v in comparison.items() if k != "models"}
    for key in ("front", "uniform", "uniform8", "float"):
        out[key] = row(comparison.get(key))
    out["finetuned"] = [row(r) for r in comparison.get("finetuned", [])]
    return out


def comparison_lines(comparison: dict | None, constrained: bool, hint: str) -> list[str]:
    """The held-out comparison's lines of a run summary; without one, ``hint`` (an unconstrained run's
    accuracies are the validation scores that chose its front, which cannot show it beats uniform)."""
    if comparison is not None:
        return [comparison_text(comparison)]
    return [] if constrained else [hint]


def comparison_text(c: dict) -> str:
    """The comparison in a few lines (the run summary, ``tfmpq report`` and the demo print it)."""
    cost = c["cost"]
    lines = [f"held-out comparison ({c['num_test']} test samples, {c['finetune_epochs']} fine-tuning epoch(s) for "
             f"every model, choices made on validation):",
             f"  float model, fine-tuned alike: test {_pct_ci(c['float'])}",
             f"  uniform {c['uniform8']['label']}: test {_pct_ci(c['uniform8'])}; target = that - "
             f"{100 * c['tolerance']:.1f} pp = {_pct(c['target_accuracy'])}"]
    u, f = c["uniform"], c["front"]
    lines.append(f"  smallest uniform reaching it on validation: {u['label']} at {format_cost(cost, u['cost'])}, test "
                 f"{_pct_ci(u)}{'' if u.get('reaches_target') else ' (misses the test target)'}")
    if f is None:
        lines.append("  no front member cheaper than that reaches the validation target: no saving shown.")
    else:
        p = c["mcnemar"]["p_value"] if c.get("mcnemar") else float("nan")
        lines.append(f"  smallest front member reaching it on validation: {_label(f)} at {format_cost(cost, f['cost'])}, "
                     f"test {_pct_ci(f)}{'' if f.get('reaches_target') else ' (misses the test target)'}")
        lines.append(f"  front is {100 * c['saving']:.1f}% smaller in {cost}; test accuracy "
                     f"{100 * (f['test_accuracy'] - u['test_accuracy']):+.2f} pp vs. that uniform policy "
                     f"(McNemar exact p = {p:.3g})")
    return "\n".join(lines)


def _label(row: dict) -> str:
    if row.get("label"):
        return f"uniform {row['label']}"
    genes = row.get("genes")
    return "bits " + ",".join(map(str, genes)) if genes is not None else "?"


def _pct(acc) -> str:
    return "failed" if acc is None else f"{100 * acc:.2f}%"


def _pct_ci(row: dict) -> str:
    lo, hi = row["ci"]
    return f"{_pct(row['test_accuracy'])} [{100 * lo:.2f}, {100 * hi:.2f}]"
