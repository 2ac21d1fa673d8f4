"""The most accurate model whose weights fit a budget, measured held out (issue 24).

A microcontroller sets the budget ("the weights must fit in 48 KiB of flash"), not a uniform bit-width.
Between the costs of two uniform policies a user can only take the cheaper one, and that is where mixed
precision has room. :func:`compare_at_budgets` asks the question at each budget:

1. **Choose on validation.** From the search's front under the cost (after a two-stage search: its
   re-scored front, by the re-scores), the ``candidates_per_budget`` best-scoring members that fit the
   budget are fine-tuned with one :class:`~tfmpq.recipe.FinetuneRecipe` (longer and distilled: the short
   search score under-rates low-bit groups) and the one with the best fine-tuned validation accuracy is the
   pick. The uniform side is the largest uniform policy that fits, fine-tuned the same way; so is every
   hand-made ``baseline`` (:mod:`tfmpq.search.handmade`).
2. **Report on test, once.** Each chosen model's test accuracy with its 95 % Wilson interval, the gain over
   the uniform policy and McNemar's exact test on the same images (paired).

Fine-tunes are cached by chromosome and written to ``run_dir/budgets.json`` after each one (with the test
hits, packed): a comparison killed half-way resumes without training anything twice, one chromosome is
fine-tuned once however many budgets it serves, and comparisons on two cost metrics (``weight_bytes`` and
``flash_bytes``) of one search share their fine-tunes.
"""
from __future__ import annotations

import base64
import hashlib
import math
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from tfmpq.metrics import format_cost
from tfmpq.recipe import FinetuneRecipe
from tfmpq.search import store
from tfmpq.search.pareto import non_dominated
from tfmpq.stats import mcnemar, wilson_interval

__all__ = ["compare_at_budgets", "auto_budgets", "budgets_text", "budgets_to_json", "read_budgets"]

Baseline = Callable[[float], Sequence[int] | None]


def auto_budgets(low: float, high: float, num_budgets: int = 8) -> list[float]:
    """The midpoints of ``num_budgets`` equal bins between two costs: budgets at and between uniform steps.

    Args:
        low: the cheaper end (the cost of the lowest-bit uniform policy).
        high: the dearer end.
        num_budgets: how many budgets, >= 1. Defaults to 8.

    Returns:
        ``low + (i + 1/2) (high - low) / num_budgets`` for ``i = 0 .. num_budgets - 1``.

    Example:
    >>> auto_budgets(0.0, 8.0, 4)
    [1.0, 3.0, 5.0, 7.0]
    """
    if isinstance(num_budgets, bool) or not isinstance(num_budgets, int) or num_budgets < 1:
        raise ValueError(f"Invalid value for `num_budgets`: expected an integer >= 1. Received: {num_budgets!r}")
    if not high > low:
        raise ValueError(f"Invalid budget range: expected high > low. Received: low={low}, high={high}.")
    return [low + (i + 0.5) * (high - low) / num_budgets for i in range(num_budgets)]


def auto_range(space, cost_of, auto_bits: tuple[int, int] | None = None) -> tuple[float, float]:
    """The costs of the uniform policies at ``auto_bits`` (default: the space's lowest width and three more,
    2 and 5 bits for 2..8): where uniform steps are far apart and the accuracy still changes."""
    by_bits = dict(zip(space.bits, space.uniform_chromosomes_by_bits()))
    if len(by_bits) < 2:
        raise ValueError("Cannot choose budgets automatically: the space has fewer than two uniform policies. "
                         "Pass `budgets=[...]`.")
    widths = sorted(by_bits)
    lo_bits, hi_bits = auto_bits if auto_bits is not None else (widths[0], min(widths[0] + 3, widths[-1]))
    if lo_bits not in by_bits or hi_bits not in by_bits or hi_bits <= lo_bits:
        raise ValueError(f"Invalid value for `auto_bits`: expected two uniform widths of the space, low < high, among "
                         f"{widths}. Received: auto_bits={auto_bits!r}.")
    return float(cost_of(by_bits[lo_bits])), float(cost_of(by_bits[hi_bits]))


class _Tuner:
    """Fine-tunes chromosomes with one recipe, once each, and remembers their rows and test hits."""

    def __init__(self, result, test, cost: str, recipe: FinetuneRecipe, verbose: int):
        self.ev, self.space, self.result, self.run_dir = result.evaluator, result.space, result, result.run_dir
        self.test, self.cost, self.recipe, self.verbose = test, cost, recipe, verbose
        self.rows: dict[tuple, dict] = {}
        self.hits: dict[tuple, np.ndarray] = {}
        self.models: dict[tuple, object] = {}
        self.key = {"recipe": recipe.to_dict(), "evaluator": _jsonable(self.ev.signature()), "test_sha1": _test_sha1(test)}
        self.results: dict[str, dict] = {}  # the comparison per cost metric, as stored
        self._load()

    def _load(self) -> None:
        stored = store.read_output(self.run_dir, store.BUDGETS) if self.run_dir is not None else None
        if not isinstance(stored, dict) or stored.get("key") != self.key:
            return  # another recipe, evaluator or test set: another comparison (the file is replaced)
        self.results = dict(stored.get("results", {}))
        for row in stored.get("finetuned", []):
            genes = tuple(row["genes"])
            self.hits[genes] = unpack_hits(row)
            row = {k: v for k, v in row.items() if k != "hits"}
            self.rows[genes] = {**row, "genes": genes, "policy": self.space.decode(genes), "cost": self.cost_of(genes)}

    def save(self, result: dict | None = None) -> None:
        """Writes every fine-tune (the test hits packed) and the comparisons made so far."""
        if self.run_dir is None:
            return
        if result is not None:
            self.results[self.cost] = result
        finetuned = []
        for genes, row in self.rows.items():
            packed = base64.b64encode(np.packbits(self.hits[genes]).tobytes()).decode("ascii")
            finetuned.append({**_row_json(row), "hits": packed})
        store.write_output(self.run_dir, store.BUDGETS, {"key": self.key, "finetuned": finetuned,
                                                         "results": self.results})

    def cost_of(self, genes) -> float:
        return float(self.ev.metrics(self.space.decode(tuple(genes)))[self.cost])

    def __call__(self, genes, role: str, keep_model: bool = False) -> dict:
        genes = tuple(int(g) for g in genes)
        if genes in self.rows and (not keep_model or genes in self.models):
            return self.rows[genes]
        policy = self.space.decode(genes)
        t0 = time.perf_counter()
        candidate, model = self.ev.finetune(policy, recipe=self.recipe, reuse=not keep_model)
        hits = self.ev.correct(model, self.test) if candidate.ok else np.zeros(len(self.test[1]), bool)
        if keep_model:
            self.models[genes] = model
        if genes not in self.rows:
            searched = self.result.candidate(genes)
            k, n = int(np.sum(hits)), len(hits)
            self.rows[genes] = {
                "genes": genes, "policy": policy, "label": self.space.uniform_label(genes), "role": role,
                "cost": self.cost_of(genes), "val_accuracy": candidate.accuracy if candidate.ok else None,
                "test_accuracy": k / n, "ci": list(wilson_interval(k, n)), "test_correct": k, "num_test": n,
                "search_accuracy": searched.accuracy if searched is not None and searched.ok else None,
                "seconds": time.perf_counter() - t0,
            }
            self.hits[genes] = hits
            self.save()
            row = self.rows[genes]
            if self.verbose:
                print(f"  fine-tuned {role:<9} {_label(row):<30} {format_cost(self.cost, row['cost'])}: val "
                      f"{_pct(row['val_accuracy'])}, test {_pct(row['test_accuracy'])} ({row['seconds']:.0f} s)",
                      flush=True)
        return self.rows[genes]


def compare_at_budgets(result, test, budgets="auto", cost: str | None = None, recipe: FinetuneRecipe | None = None,
                       finetune_epochs: int | None = None, candidates_per_budget: int = 2, num_budgets: int = 8,
                       auto_bits: tuple[int, int] | None = None, baselines: Mapping[str, Baseline] | None = None,
                       candidates: Mapping[str, Baseline] | None = None, keep_models: bool = False,
                       verbose: int = 1) -> dict:
    """The most accurate searched policy and the largest uniform one under each budget, fine-tuned alike,
    chosen on validation, scored on ``test``.

    Args:
        result: a search :class:`~tfmpq.search.Result` whose evaluator can fine-tune (``tfmpq.search.Evaluator``).
        test: ``(x, y)`` held-out data the search never saw (reporting only).
        budgets: a list of budgets on ``cost``, or ``"auto"``: ``num_budgets`` midpoints of equal bins between
            the costs of two uniform policies (:func:`auto_budgets`; ``auto_bits``). Defaults to "auto".
        cost: any cost metric of ``tfmpq.metrics.summary`` (``"weight_bytes"``, ``"flash_bytes"``, ...); None
            takes the search's cost objective. The pool is the Pareto front of the run's candidates under this
            cost, so a search on one cost can be compared at budgets on another. Defaults to None.
        recipe: how every model is fine-tuned; None: ``FinetuneRecipe()`` (``finetune_epochs`` epochs if given).
            Defaults to None.
        finetune_epochs: overrides ``recipe.epochs``. Defaults to None.
        candidates_per_budget: front members (the best search scores that fit) fine-tuned per budget; the one
            with the best fine-tuned validation accuracy is the pick. Defaults to 2.
        num_budgets: budgets of ``"auto"``. Defaults to 8.
        auto_bits: ``(low, high)`` uniform widths bounding ``"auto"``; None: the space's lowest and three more
            (2 and 5 for 2..8). Defaults to None.
        baselines: hand-made policies to hold the pick against: ``{name: f(budget) -> chromosome or None}``
            (:func:`tfmpq.search.handmade.handmade_baselines`); each is fine-tuned alike. Defaults to None.
        candidates: more policies of the search's own to fine-tune beside the front members at each budget,
            ``{name: f(budget) -> chromosome or None}`` (e.g. ``"ilp"``: the Hessian ILP's allocation at the
            budget, which ``nsga2(seed_budgets=...)`` seeds the search with); the pick is the best of all
            finalists on validation and its ``pick_source`` says where it came from. Defaults to None.
        keep_models: also return the fine-tuned QAT model of each budget's pick (``models``, by budget), e.g. to
            export it; those fine-tunes then build standalone models. Defaults to False.
        verbose: 1 prints a line per fine-tune and the table. Defaults to 1.

    Returns:
        A dict: ``cost``, ``recipe``, ``num_test``, ``rows`` (one per budget: ``budget``; ``front`` and
        ``uniform``, each ``None`` where nothing fits or a dict with ``policy``, ``genes``, ``label``, ``cost``,
        ``val_accuracy``, ``test_accuracy``, ``ci`` (95 % Wilson), ``search_accuracy``; ``gain`` (front - uniform
        test accuracy), ``p_value`` (McNemar, exact), ``finalists`` (the fine-tuned members), ``pick_source``
        (``"front"`` or the name in ``candidates``), ``baselines``,
        ``best_baseline`` (by validation), ``gain_vs_baseline``, ``p_vs_baseline``), ``mean_gain`` (over the
        budgets with both sides), ``float`` (the float model fine-tuned alike), ``finetuned`` and ``seconds``.
        Written to ``run_dir/budgets.json``.

    Raises:
        TypeError: the evaluator cannot fine-tune. ValueError: bad budgets, cost, options or ``test`` data.

    Example:
    >>> out = result.compare_at_budgets(test=(x_test, y_test), budgets=[36_000, 48_000])
    >>> [(r["budget"], r["front"]["test_accuracy"], r["gain"], r["p_value"]) for r in out["rows"]]
    """
    from tfmpq.checks import check_data

    ev, space = result.evaluator, result.space
    recipe, cost = _check_options(result, cost, recipe, finetune_epochs, candidates_per_budget)
    test = check_data(ev.model, test, name="test")
    start = time.perf_counter()
    tune = _Tuner(result, test, cost, recipe, verbose)
    budgets = _budgets(budgets, space, tune.cost_of, num_budgets, auto_bits)
    pool = _pool(result, cost, tune.cost_of)
    uniforms = sorted(space.uniform_chromosomes(), key=tune.cost_of)
    if verbose:
        print(f"Comparing at {len(budgets)} budgets on {cost} ({', '.join(format_cost(cost, b) for b in budgets)}): "
              f"every model fine-tuned {recipe.label()}, chosen on validation, reported on {len(test[1])} test "
              f"samples; {len(pool)} front members.", flush=True)

    rows = []
    models = {}
    for budget in budgets:
        row = _budget_row(budget, pool, uniforms, tune, candidates_per_budget, baselines or {}, candidates or {},
                          keep_models)
        if keep_models and row["front"] is not None:
            models[budget] = tune.models[row["front"]["genes"]]
        rows.append(row)
    val_f, float_model = ev.finetune_float(recipe=recipe)
    float_hits = ev.correct(float_model, test)
    k = int(np.sum(float_hits))
    gains = [r["gain"] for r in rows if r["gain"] is not None]
    out = {
        "cost": cost, "recipe": recipe.to_dict(), "num_test": int(len(test[1])), "selection": "validation",
        "candidates_per_budget": candidates_per_budget, "rows": rows,
        "mean_gain": float(np.mean(gains)) if gains else None,
        "float": {"val_accuracy": None if not math.isfinite(val_f) else float(val_f), "test_accuracy": k / len(float_hits),
                  "ci": list(wilson_interval(k, len(float_hits)))},
        "finetuned": sorted(tune.rows.values(), key=lambda r: r["cost"]),
        "seconds": time.perf_counter() - start,
    }
    tune.save(budgets_to_json(out))
    if keep_models:
        out["models"] = models
    if verbose:
        print(budgets_text(out), flush=True)
    return out


def _check_options(result, cost, recipe, finetune_epochs, candidates_per_budget) -> tuple[FinetuneRecipe, str]:
    """:func:`compare_at_budgets`'s options checked before any work: ``(recipe, cost)``."""
    ev, space = result.evaluator, result.space
    for method in ("finetune", "finetune_float", "correct", "metrics", "signature"):
        if not callable(getattr(ev, method, None)):
            raise TypeError(f"Cannot compare at budgets: the evaluator {type(ev).__name__} has no `{method}`. "
                            f"Use tfmpq.search.Evaluator.")
    recipe = recipe or FinetuneRecipe()
    if finetune_epochs is not None:
        recipe = FinetuneRecipe.from_dict({**recipe.to_dict(), "epochs": finetune_epochs})
    if isinstance(candidates_per_budget, bool) or not isinstance(candidates_per_budget, int) or candidates_per_budget < 1:
        raise ValueError(f"Invalid value for `candidates_per_budget`: expected an integer >= 1. "
                         f"Received: {candidates_per_budget!r}")
    cost = cost or (result.objectives[1] if len(result.objectives) > 1 else "weight_bytes")
    probe = ev.metrics(space.decode(space.uniform_chromosomes()[0]))
    if cost not in probe:
        raise ValueError(f"Invalid value for `cost`: expected a cost metric of tfmpq.metrics.summary. Received: "
                         f"cost={cost!r}. Expected one of {sorted(k for k, v in probe.items() if isinstance(v, (int, float)))}.")
    return recipe, cost


def _budgets(budgets, space, cost_of, num_budgets: int, auto_bits) -> list[float]:
    if isinstance(budgets, str):
        if budgets != "auto":
            raise ValueError(f"Invalid value for `budgets`: expected 'auto' or a list of numbers. Received: {budgets!r}")
        return auto_budgets(*auto_range(space, cost_of, auto_bits), num_budgets)
    try:
        values = [float(b) for b in budgets]
    except (TypeError, ValueError):
        raise ValueError(f"Invalid value for `budgets`: expected 'auto' or a list of numbers. Received: {budgets!r}") \
            from None
    if not values or not all(math.isfinite(b) and b > 0 for b in values):
        raise ValueError(f"Invalid value for `budgets`: expected positive finite numbers. Received: {budgets!r}")
    return sorted(values)


def _pool(result, cost: str, cost_of) -> list[tuple[tuple, float, float]]:
    """``(genes, search score, cost)`` of the front under ``cost``: the re-scored members by their re-scores
    after a two-stage search, else every scored candidate of the run."""
    source = [c for c in (result.rescored or result.candidates) if c.ok]
    items = [(tuple(c.genes), float(c.accuracy), cost_of(c.genes)) for c in source]
    items = list({g: (g, a, c) for g, a, c in items}.values())
    return sorted(non_dominated(items, lambda t: (t[1], t[2]), (1, -1)), key=lambda t: (t[2], -t[1]))


def _budget_row(budget: float, pool, uniforms, tune: _Tuner, k: int, baselines: Mapping[str, Baseline],
                candidates: Mapping[str, Baseline], keep_models: bool) -> dict:
    fitting = sorted((t for t in pool if t[2] <= budget), key=lambda t: (-t[1], t[2], t[0]))
    sourced = [("front", genes) for genes, _, _ in fitting[:k]]  # the best search scores that fit, then extras
    for name, make in candidates.items():
        genes = make(budget)
        if genes is not None and tune.cost_of(genes) <= budget:
            sourced.append((name, genes))
    finalists = [(name, tune(genes, "searched", keep_models)) for name, genes in sourced]
    ok = [(name, r) for name, r in finalists if r["val_accuracy"] is not None]
    source, front = max(ok, key=lambda nr: (nr[1]["val_accuracy"], -nr[1]["cost"]), default=(None, None))
    fits = [g for g in uniforms if tune.cost_of(g) <= budget]
    uniform = tune(fits[-1], "uniform") if fits else None
    row = {"budget": float(budget), "front": front, "uniform": uniform, "finalists": [r for _, r in finalists],
           "pick_source": source, "gain": None, "p_value": None, "mcnemar": None}
    if front is not None and uniform is not None:
        paired = mcnemar(tune.hits[front["genes"]], tune.hits[uniform["genes"]])
        row.update(gain=front["test_accuracy"] - uniform["test_accuracy"], p_value=paired["p_value"], mcnemar=paired)
    row["baselines"] = {}
    for name, make in baselines.items():
        genes = make(budget)
        if genes is not None and tune.cost_of(genes) <= budget:
            row["baselines"][name] = tune(genes, "hand-made")
    best = max(((n, r) for n, r in row["baselines"].items() if r["val_accuracy"] is not None),
               key=lambda nr: (nr[1]["val_accuracy"], -nr[1]["cost"]), default=None)
    row["best_baseline"] = None if best is None else best[0]
    row["gain_vs_baseline"] = row["p_vs_baseline"] = None
    if best is not None and front is not None:
        row["gain_vs_baseline"] = front["test_accuracy"] - best[1]["test_accuracy"]
        row["p_vs_baseline"] = mcnemar(tune.hits[front["genes"]], tune.hits[best[1]["genes"]])["p_value"]
    return row


# -- text and JSON ------------------------------------------------------------------------------------
def unpack_hits(row: Mapping) -> np.ndarray:
    """The per-test-sample hits (bool) of one stored fine-tune of ``budgets.json`` (packed bits, base64)."""
    return np.unpackbits(np.frombuffer(base64.b64decode(row["hits"]), np.uint8))[:row["num_test"]].astype(bool)


def read_budgets(run_dir) -> dict[str, dict]:
    """The comparisons at budgets stored in a run directory, by cost metric (``{}`` when there are none)."""
    stored = store.read_output(run_dir, store.BUDGETS)
    return dict(stored.get("results", {})) if isinstance(stored, dict) else {}


def budgets_to_json(out: Mapping) -> dict:
    """A JSON-able copy of :func:`compare_at_budgets`' dict (policies as dicts, genes as lists, no models)."""
    def rows(r):
        if r is None:
            return None
        r = dict(r)
        for key in ("front", "uniform"):
            r[key] = _row_json(r.get(key))
        r["finalists"] = [_row_json(f) for f in r.get("finalists", [])]
        r["baselines"] = {n: _row_json(b) for n, b in r.get("baselines", {}).items()}
        return r

    data = {k: v for k, v in out.items() if k != "models"}
    data["rows"] = [rows(r) for r in out.get("rows", [])]
    data["finetuned"] = [_row_json(r) for r in out.get("finetuned", [])]
    return data


def budgets_text(out: Mapping) -> str:
    """The comparison as a table: one line per budget (what ``tfmpq report --budgets`` prints)."""
    cost = out["cost"]
    recipe = FinetuneRecipe.from_dict(out["recipe"]).label()
    lines = [f"held-out accuracy under a budget on {cost} ({out['num_test']} test samples; every model fine-tuned "
             f"{recipe}; picks chosen on validation):",
             f"  {'budget':>12}  {'searched pick':<34} {'test [95% CI]':<22} {'largest uniform':<18} "
             f"{'test [95% CI]':<22} {'gain':>8}  {'McNemar p':>9}"]
    for r in out["rows"]:
        f, u = r["front"], r["uniform"]
        gain = "n/a" if r["gain"] is None else f"{100 * r['gain']:+.2f} pp"
        p = "n/a" if r["p_value"] is None else f"{r['p_value']:.2g}"
        pick = "none fits" if f is None else f"{_label(f)} ({format_cost(cost, f['cost'])})"
        if f is not None and r.get("pick_source", "front") != "front":
            pick += f" [{r['pick_source']}]"  # an extra candidate of the search's (e.g. the ILP's allocation)
        lines.append(f"  {format_cost(cost, r['budget']):>12}  {pick:<34} {_pct_ci(f):<22} "
                     f"{'none fits' if u is None else _label(u):<18} {_pct_ci(u):<22} {gain:>8}  {p:>9}")
        if r.get("best_baseline"):
            b = r["baselines"][r["best_baseline"]]
            lines.append(f"  {'':>12}  best hand-made ({r['best_baseline']}): {_label(b)} "
                         f"({format_cost(cost, b['cost'])}) test {_pct_ci(b)}; pick - it "
                         f"{100 * r['gain_vs_baseline']:+.2f} pp (p {r['p_vs_baseline']:.2g})")
    mean = out.get("mean_gain")
    lines.append(f"  mean gain over the uniform staircase: {'n/a' if mean is None else f'{100 * mean:+.2f} pp'}; "
                 f"float model fine-tuned alike: test {_pct_ci(out['float'])}")
    return "\n".join(lines)


def _row_json(r):
    if r is None:
        return None
    r = dict(r)
    policy = r.get("policy")
    r["policy"] = policy.to_dict() if hasattr(policy, "to_dict") else policy
    r["genes"] = None if r.get("genes") is None else [int(g) for g in r["genes"]]
    return r


def _jsonable(value):
    import json

    return json.loads(json.dumps(value, default=str))


def _test_sha1(test) -> str:
    h = hashlib.sha1()
    for a in test:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _label(row) -> str:
    if row.get("label"):
        return f"uniform {row['label']}"
    return "bits " + ",".join(map(str, row["genes"]))


def _pct(acc) -> str:
    return "failed" if acc is None else f"{100 * acc:.2f}%"


def _pct_ci(row) -> str:
    if row is None:
        return "-"
    lo, hi = row["ci"]
    return f"{_pct(row['test_accuracy'])} [{100 * lo:.1f}, {100 * hi:.1f}]"
