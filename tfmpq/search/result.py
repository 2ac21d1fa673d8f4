"""The outcome of a search: the front, every candidate, the history and the summary."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

from tfmpq.candidate import Candidate, jsonable
from tfmpq.metrics import format_cost
from tfmpq.search import store
from tfmpq.search.compare import DEFAULT_TOLERANCE as SUMMARY_TOLERANCE
from tfmpq.search.compare import comparison_lines
from tfmpq.search.pareto import Objectives


@dataclasses.dataclass(eq=False, repr=False)
class Result:
    """What a search returns: a snapshot of the run (:meth:`from_engine`), and what was done after it.

    Attributes:
        strategy: the strategy's name.
        space: the :class:`~tfmpq.search.SearchSpace`.
        evaluator: the evaluator the run scored with (it fine-tunes, re-scores and exports).
        ranking: the run's objectives and constraint (:class:`~tfmpq.search.pareto.Objectives`).
        objectives: ``("accuracy", cost, ...)``.
        constraint: the run's :class:`~tfmpq.search.constraints.Constraint`, or None.
        candidates: every evaluated candidate, in evaluation order (failed ones included).
        front: the Pareto front of every scored (feasible) candidate of the run, sorted by increasing
            cost (``weight_bytes`` by default).
        best: the Deb-best candidate (the most accurate feasible one; unconstrained: most accurate).
        population: the strategy's final population / swarm, as candidates.
        history: one dict per generation (evaluations, cache hits, best accuracy, hypervolume, ...).
        uniform: ``{label: Candidate}`` of the uniform policies that were evaluated.
        run_dir: the run directory or None.
        num_evaluated / num_cached: evaluator calls and cache hits of this process.
        report: a budgeted search's report of its best policy (Tmamna et al. 2024, sec. 5.3:
            ``tfmpq.search.driver.budget_report``), or None.
        float_accuracy: the float model's validation accuracy of that report, or None.
        ilp_optimum: the ILP's Omega-optimal allocation (``ILP.extras``), or None.
        pruned: clustered TPE's bit-widths per group after pruning (``CTPE.extras``), or None.
        sensitivity: the Hessian traces a sensitivity-guided search used (None when resumed or unused).
        sensitivity_seconds: the time the ILP's tables took, or None.
        finetuned: ``[(Candidate, model)]`` after :meth:`finetune`.
        comparison: the held-out comparison, once :meth:`compare_with_uniform` ran.
        budget_comparison: the held-out comparison at budgets, once :meth:`compare_at_budgets` ran.
        rescored: the two-stage search's second stage (:meth:`rescore`): the members re-scored with
            stand-alone QAT.
        rescored_front: the front (a constrained search: the Deb-best) of the re-scored members.
    """

    strategy: str
    space: Any
    evaluator: Any
    ranking: Objectives
    objectives: tuple
    constraint: Any
    candidates: list[Candidate]
    front: list[Candidate]
    best: Candidate | None
    population: list[Candidate]
    history: list[dict]
    uniform: dict[str, Candidate]
    run_dir: Path | None = None
    num_evaluated: int = 0
    num_cached: int = 0
    report: dict | None = None
    float_accuracy: float | None = None
    ilp_optimum: Candidate | None = None
    pruned: dict | None = None
    sensitivity: Any = None
    sensitivity_seconds: float | None = None
    finetuned: list = dataclasses.field(default_factory=list)
    comparison: dict | None = None
    budget_comparison: dict | None = None
    rescored: list = dataclasses.field(default_factory=list)
    rescored_front: list = dataclasses.field(default_factory=list)

    @classmethod
    def from_engine(cls, engine, strategy, state: dict, **extras) -> "Result":
        """A snapshot of a finished run: copies of what the engine holds, and the strategy's extras
        (:meth:`Strategy.extras`) with ``extras`` (fields the caller knows, e.g. the Hessian traces).

        Raises:
            TypeError: an extra that is not a declared field of :class:`Result`.
        """
        extras = {**strategy.extras(engine.view, state), **extras}
        undeclared = sorted(set(extras) - set(EXTRAS))
        if undeclared:
            raise TypeError(f"Invalid result extras {undeclared} of strategy `{strategy.name}`: declare them as "
                            f"fields of tfmpq.search.Result (declared: {EXTRAS}).")
        space = engine.space
        return cls(
            strategy=strategy.name, space=space, evaluator=engine.evaluator, ranking=engine.ranking,
            objectives=engine.objectives, constraint=engine.constraint,
            candidates=list(engine.candidates), front=engine.front(), best=engine.best(),
            population=[engine.cache[tuple(g)] for g in strategy.population(state)], history=list(engine.history),
            uniform={space.uniform_label(g): engine.cache[g] for g in space.uniform_chromosomes() if g in engine.cache},
            run_dir=engine.store.run_dir, num_evaluated=engine.num_evaluated, num_cached=engine.num_cached, **extras)

    @property
    def num_failed(self) -> int:
        """Candidates that failed (diverged, crashed)."""
        return sum(1 for c in self.candidates if not c.ok)

    @property
    def hypervolume(self) -> float | None:
        """The final front's normalised hypervolume (see ``pareto.hypervolume_2d``)."""
        return self.ranking.hypervolume(self.candidates)

    def candidate(self, genes):
        """The candidate of a chromosome evaluated in this run, or None."""
        key = tuple(int(g) for g in genes)
        return next((c for c in self.candidates if c.genes == key), None)

    def feasible(self, candidate) -> bool:
        """Whether ``candidate`` satisfies the run's constraint (always, without one)."""
        return self.ranking.feasible(candidate)

    # -- outputs -------------------------------------------------------------------------------
    def save(self) -> None:
        """Writes ``front.json``, ``best.json``, ``history.json`` and ``summary.txt`` (the plots are
        drawn by the caller: ``write_plots`` of the report module)."""
        if self.run_dir is None:
            return
        store.write_output(self.run_dir, store.FRONT, [c.to_json() for c in self.front])
        if self.best is not None:
            best = self.best.to_json()
            if self.report is not None:
                best["report"] = self.report
            store.write_output(self.run_dir, store.BEST, best)
        store.write_output(self.run_dir, store.HISTORY, self.history)
        self._write_summary()

    def _write_summary(self) -> None:
        if self.run_dir is not None:
            store.write_output(self.run_dir, store.SUMMARY, self.summary() + "\n")

    # -- summary -------------------------------------------------------------------------------
    def compare_with_uniform(self, test, finetune_epochs: int = 3, tolerance: float = SUMMARY_TOLERANCE,
                             slack: float = 0.02, keep_models: bool = False, verbose: int = 1) -> dict:
        """Is the front smaller than uniform quantization at the same accuracy? Fine-tunes the uniform
        policies (from 8 bits down, those needed), the front members that may reach the target and the
        float model alike, chooses on validation and reports on ``test``
        (:func:`tfmpq.search.compare.compare_with_uniform`; written to ``comparison.json``).

        Args:
            test: held-out ``(x, y)`` the search never saw (reporting only).
            finetune_epochs: epochs for every model compared. Defaults to 3.
            tolerance: accuracy allowed below uniform 8-bit. Defaults to 0.005.
            slack, keep_models: see :func:`tfmpq.search.compare.compare_with_uniform`. Defaults to 0.02
                and False.
            verbose: 1 prints a line per fine-tune and the result. Defaults to 1.

        Returns:
            The comparison dict (``front``, ``uniform``, ``saving``, ``target_accuracy``, ``mcnemar``,
            ``float``, ...); also kept in ``result.comparison`` and used by :meth:`summary`.

        Example:
        >>> cmp = result.compare_with_uniform(test=(x_test, y_test), finetune_epochs=3)
        >>> cmp["saving"], cmp["front"]["test_accuracy"], cmp["front"]["ci"], cmp["mcnemar"]["p_value"]
        """
        from tfmpq.search.compare import compare_with_uniform

        self.comparison = compare_with_uniform(self, test, finetune_epochs=finetune_epochs, tolerance=tolerance,
                                               slack=slack, keep_models=keep_models, verbose=verbose)
        self._write_summary()
        return self.comparison

    def compare_at_budgets(self, test, budgets="auto", cost: str | None = None, recipe=None,
                           finetune_epochs: int | None = None, candidates_per_budget: int = 2, num_budgets: int = 8,
                           auto_bits=None, baselines=None, candidates=None, keep_models: bool = False,
                           verbose: int = 1) -> dict:
        """The most accurate searched policy and the largest uniform one under each budget, fine-tuned alike,
        chosen on validation, scored on ``test`` (:func:`tfmpq.search.budgets.compare_at_budgets`; written to
        ``budgets.json`` and resumed from it).

        Args:
            test: held-out ``(x, y)`` the search never saw (reporting only).
            budgets: a list of budgets on ``cost`` or ``"auto"`` (``num_budgets`` midpoints of equal bins between
                the costs of uniform 2- and 5-bit for a 2..8 space). Defaults to "auto".
            cost: any cost metric (``"weight_bytes"``, ``"flash_bytes"``, ...); None: the search's. Defaults to None.
            recipe: a :class:`~tfmpq.recipe.FinetuneRecipe`; None: its defaults. Defaults to None.
            finetune_epochs, candidates_per_budget, num_budgets, auto_bits, baselines, candidates, keep_models,
                verbose: see
                :func:`~tfmpq.search.budgets.compare_at_budgets`.

        Returns:
            ``{"cost", "rows": [{"budget", "front", "uniform", "gain", "p_value", ...}], "mean_gain", ...}``;
            also kept in ``result.budget_comparison``.

        Example:
        >>> out = result.compare_at_budgets(test=(x_test, y_test), budgets=[36_000, 48_000])
        >>> out["mean_gain"], [(r["front"]["genes"], r["gain"], r["p_value"]) for r in out["rows"]]
        """
        from tfmpq.search.budgets import compare_at_budgets

        self.budget_comparison = compare_at_budgets(
            self, test, budgets=budgets, cost=cost, recipe=recipe, finetune_epochs=finetune_epochs,
            candidates_per_budget=candidates_per_budget, num_budgets=num_budgets, auto_bits=auto_bits,
            baselines=baselines, candidates=candidates, keep_models=keep_models, verbose=verbose)
        return self.budget_comparison

    def summary(self) -> str:
        """A short text: counts, the front, and how it compares with the uniform policies."""
        cost = self.objectives[1] if len(self.objectives) > 1 else "weight_bytes"
        lines = [
            f"{self.strategy}: {len(self.candidates)} candidates evaluated ({self.num_failed} failed), "
            f"{len(self.history) - 1} generations, front of {len(self.front)}"
            + ("" if self.hypervolume is None else f", hypervolume {self.hypervolume:.4f}") + ".",
        ]
        if self.constraint is not None and self.best is not None:
            feasible = self.ranking.feasible(self.best)
            lines.append(
                f"best under {self.constraint.metric} <= {self.constraint.target}: {self.best.genes} "
                f"accuracy {_pct(self.best.accuracy)}, {self.constraint.metric} "
                f"{self.best.metrics.get(self.constraint.metric)}" + ("" if feasible else " (INFEASIBLE: none feasible seen)")
            )
        lines.append(f"front ({cost}, accuracy, genes):")
        for c in self.front:
            tag = self.space.uniform_label(c.genes)
            lines.append(f"  {format_cost(cost, c.metrics.get(cost))}  {_pct(c.accuracy)}  {c.genes}"
                         + (f"  [uniform {tag}]" if tag else ""))
        if self.uniform:
            lines.append("uniform policies: " + ", ".join(
                f"{k} {_pct(c.accuracy)} @ {format_cost(cost, c.metrics.get(cost))}" for k, c in self.uniform.items()))
        info = getattr(self.evaluator, "oneshot_info", None)
        if info:
            lines.append(f"one-shot scores: a shared model trained once ({info.get('source')}; one-time cost "
                         f"{info.get('seconds', float('nan')):.1f} s, {info.get('epochs')} epochs, "
                         f"{info.get('policies_per_step')} policies per step)")
        if self.rescored:
            lines.append("re-scored with stand-alone QAT (genes: search -> QAT accuracy): " + ", ".join(
                f"{c.genes}: {_pct(self.candidate(c.genes).accuracy if self.candidate(c.genes) else None)} -> "
                f"{_pct(c.accuracy)}" for c in self.rescored))
        lines += comparison_lines(self.comparison, self.constraint is not None, hint=(
            "(validation scores only: they chose the front, so they cannot show it beats uniform quantization; run "
            "result.compare_with_uniform(test=...) for the held-out comparison)"))
        return "\n".join(lines)

    def rescore(self, epochs: int = 2, members: Sequence[Candidate] | None = None, max_members: int | None = None,
                verbose: int = 0) -> list[Candidate]:
        """The second stage of a two-stage search: re-scores the front (a constrained search: the best)
        with stand-alone QAT, each member trained ``epochs`` epochs from the float weights exactly as
        ``Evaluator(evaluation="qat", epochs=epochs)`` scores a candidate (one-shot scores rank policies;
        stand-alone QAT says what each reaches on its own). Written to ``rescored.json`` after each
        member: a re-run in the same ``run_dir`` (a resumed search killed while re-scoring) re-uses
        the members already re-scored with the same evaluator and epochs instead of training them again.

        Args:
            epochs: QAT epochs per member. Defaults to 2.
            members: the candidates to re-score. Defaults to the front (a constrained search: ``[best]``).
            max_members: re-score at most this many of them, spread evenly along the cost objective
                (:func:`spread_members`: the cheapest and the dearest always among them). A one-shot front
                can hold dozens of members, each a QAT candidate's cost; None re-scores all.
                Defaults to None.
            verbose: 1 prints a line per member. Defaults to 0.

        Returns:
            The re-scored candidates (also ``result.rescored``); ``result.rescored_front`` is their
            front under the run's objectives (a constrained search: the Deb-best of them).

        Raises:
            TypeError: the evaluator has no ``finetune(policy, epochs, reuse)`` (a custom evaluator).
            ValueError: ``epochs < 1`` or ``max_members < 1``.
        """
        if not hasattr(self.evaluator, "finetune"):
            raise TypeError(
                f"Cannot re-score: the evaluator {type(self.evaluator).__name__} has no `finetune(policy, epochs)`. "
                "Use tfmpq.search.Evaluator."
            )
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Invalid value for `rescore_epochs`: expected an integer >= 1. Received: {epochs!r}")
        if max_members is not None and (not isinstance(max_members, int) or max_members < 1):
            raise ValueError(
                f"Invalid value for `rescore_members`: expected None or an integer >= 1. Received: {max_members!r}")
        if members is None:
            members = self.front if self.constraint is None else [c for c in [self.best] if c is not None]
        if max_members is not None:
            members = spread_members(members, self.ranking.cost, max_members)
        # what a re-score means: the evaluator's signature, its QAT learning rate and optimizer (a one-shot
        # evaluator's signature leaves them out) and the epochs; a stored re-score of another is ignored
        ev = self.evaluator
        signature = dict(getattr(ev, "signature", dict)(), finetune_learning_rate=getattr(ev, "learning_rate", None),
                         finetune_optimizer=getattr(ev, "optimizer", None))
        meaning = json.loads(json.dumps({"epochs": int(epochs), "evaluator": jsonable(signature)}))  # as stored
        done = _stored_rescores(self.run_dir, meaning)
        self.rescored = []
        records = []
        for c in members:
            stored = done.get(tuple(c.genes))
            if stored is not None:
                scored = Candidate.from_json(stored["rescored"], policy=c.policy)
            else:
                # reuse=True: the shared QAT search model, reset to the float weights: a stand-alone QAT score
                scored, _ = self.evaluator.finetune(c.policy, epochs, reuse=True)
            scored.genes = c.genes
            self.rescored.append(scored)
            records.append({"genes": list(c.genes), "search_accuracy": c.accuracy, "epochs": int(epochs),
                            "rescored": scored.to_json()})
            if self.run_dir is not None:  # after each member: a kill loses at most the one in training
                store.write_output(self.run_dir, store.RESCORED, dict(meaning, members=records, front=None))
            if verbose:
                print(f"rescore {c.genes}: search {_pct(c.accuracy)} -> QAT ({epochs} epochs) {_pct(scored.accuracy)}"
                      + (" (re-used from rescored.json)" if stored is not None else ""), flush=True)
        ok = [c for c in self.rescored if c.ok]
        if self.constraint is None:
            self.rescored_front = self.ranking.front(ok)
        else:
            best = self.ranking.best(ok)
            self.rescored_front = [] if best is None else [best]
        if self.run_dir is not None:
            store.write_output(self.run_dir, store.RESCORED,
                               dict(meaning, members=records, front=[list(c.genes) for c in self.rescored_front]))
            self._write_summary()
        return self.rescored

    def __repr__(self) -> str:
        return (f"Result(strategy={self.strategy!r}, candidates={len(self.candidates)}, front={len(self.front)}, "
                f"run_dir={None if self.run_dir is None else str(self.run_dir)!r})")

    # -- after the search ----------------------------------------------------------------------
    def finetune(self, epochs: int, members: Sequence[Candidate] | None = None) -> list[Candidate]:
        """Fully fine-tunes the front with QAT (Šafář sec. 2.2: 50 epochs) and records the result
        in ``finetune.json``.

        Args:
            epochs: QAT epochs per member.
            members: the candidates to fine-tune. Defaults to the front (a constrained search: ``[best]``).

        Returns:
            The fine-tuned candidates (models in ``result.finetuned``).

        Raises:
            TypeError: the evaluator has no ``finetune(policy, epochs)`` (a custom evaluator).
        """
        if not hasattr(self.evaluator, "finetune"):
            raise TypeError(
                f"Cannot fine-tune: the evaluator {type(self.evaluator).__name__} has no `finetune(policy, epochs)`. "
                "Use tfmpq.search.Evaluator."
            )
        if members is None:
            members = self.front if self.constraint is None else [c for c in [self.best] if c is not None]
        self.finetuned = []
        records = []
        for c in members:
            tuned, model = self.evaluator.finetune(c.policy, epochs)
            tuned.genes = c.genes
            self.finetuned.append((tuned, model))
            records.append({"genes": list(c.genes), "search_accuracy": c.accuracy, "epochs": int(epochs),
                            "finetuned": tuned.to_json()})
        if self.run_dir is not None:
            store.write_output(self.run_dir, store.FINETUNE, records)
        return [t for t, _ in self.finetuned]

    def export(self, directory: str | os.PathLike, representative_data=None, test=None, **kwargs) -> list:
        """Writes one ``.tflite`` per front member (the fine-tuned models when :meth:`finetune` ran,
        else each member rebuilt by the evaluator) and ``export.json``, with
        ``tfmpq.export.models.export_models``: the same files and record as ``tfmpq export RUN_DIR``.

        Args:
            directory: where to write ``<i>_<genes>.tflite``.
            representative_data: float inputs for the converter; None uses the evaluator's
                calibration samples. Defaults to None.
            test: ``(x, y)`` held-out data to measure each file on (``keras_accuracy`` and the
                runtimes' accuracy in ``export.json``); None measures nothing. Defaults to None.
            **kwargs: passed to ``export_models`` (``runtimes``, ``c_array``) and ``export_tflite``
                (``int8_io``, ``packed``).

        Returns:
            The ``ExportReport`` of each file, in front order.

        Raises:
            ImportError: ``tfmpq.export`` is not available in this installation.
            ValueError: no ``representative_data`` and the evaluator has none.
        """
        try:
            from tfmpq.export.models import export_models, member_file_name
        except ImportError as e:
            raise ImportError(
                "Result.export needs tfmpq.export, which this installation lacks "
                f"({e}). Export a model yourself from result.finetuned."
            ) from e
        if representative_data is None:
            fn = getattr(self.evaluator, "representative_data", None)
            if fn is None:
                raise ValueError(
                    "Invalid value for `representative_data`: the evaluator has no samples to offer; pass "
                    "representative_data=x (float model inputs)."
                )
            representative_data = fn()
        pairs = self.finetuned or [(c, None) for c in self.front]
        items = []
        for i, (c, model) in enumerate(pairs):
            if model is None:
                model, _, _ = self.evaluator.build(c.policy)
            items.append((member_file_name(i, c.genes), model,
                          {"genes": list(c.genes), "search_accuracy": c.accuracy, "metrics": c.metrics}))
        rows = export_models(items, directory, representative_data, test=test, **kwargs)
        return [row["report"] for row in rows]


#: The fields a strategy (``Strategy.extras``) or its registry entry may fill in.
EXTRAS = ("report", "float_accuracy", "ilp_optimum", "pruned", "sensitivity", "sensitivity_seconds")


def spread_members(members: Sequence[Candidate], cost: str, count: int) -> list[Candidate]:
    """At most ``count`` of ``members``, spread evenly along ``cost`` (by rank: sorted by the cost, the
    members at ``count`` evenly spaced positions, the cheapest and the dearest always among them; a
    count of one: the most accurate); all of them when there are no more than ``count``. Cheapest first."""
    ordered = sorted(members, key=lambda c: (c.metrics.get(cost, float("inf")), tuple(c.genes or ())))
    if len(ordered) <= count:
        return ordered
    if count == 1:
        return [max(ordered, key=lambda c: (c.accuracy if c.ok else float("-inf")))]
    picks = sorted({round(i * (len(ordered) - 1) / (count - 1)) for i in range(count)})
    return [ordered[i] for i in picks]


def _stored_rescores(run_dir, meaning: dict) -> dict:
    """The members of ``rescored.json`` re-scored with the same evaluator and epochs, by genes."""
    stored = None if run_dir is None else store.read_output(run_dir, store.RESCORED)
    if not isinstance(stored, dict):  # none, or damaged (the writes are atomic: not from a kill): re-score
        return {}
    if stored.get("epochs") != meaning["epochs"] or stored.get("evaluator") != meaning["evaluator"]:
        return {}
    return {tuple(m["genes"]): m for m in stored.get("members", []) if m.get("rescored", {}).get("status") == "ok"}


def _pct(acc: float | None) -> str:
    return "failed" if acc is None else f"{100 * acc:.2f}%"
