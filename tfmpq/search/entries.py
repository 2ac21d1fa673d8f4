"""The named entry points: ``nsga2``, ``exhaustive``, ``bbpso``, ``plain_bbpso``, ``ga``, ``ilp``, ``ctpe``.

Each is :func:`tfmpq.search.search` with its strategy's name: the options, their defaults and how the
strategy is made live in its registry entry (:mod:`tfmpq.search.registry`), the space and evaluator
options in ``SpaceConfig`` / ``EvaluatorConfig``, the run's in :func:`tfmpq.search.run`. Every entry
point takes all of them as keyword arguments.
"""
from __future__ import annotations

from types import MappingProxyType

from tfmpq.search.driver import search
from tfmpq.search.result import Result

#: Santini's neuron-wise NSGA-II as one configuration of :func:`nsga2` (Santini, "NN Quantization Bit
#: Optimization via MOEAs", sec. III.B steps 1-9 and sec. IV's neuron-wise experiment): one gene per output
#: channel ("neuron"; ``channel_clusters="all"``), a random initial population (step 1), post-training
#: quantization scoring with no training (sec. II.A, step 2), binary tournament on rank and crowding
#: distance (step 5), a mutation rate of 0.3 (step 6) and 20 generations (step 9). Run it as
#: ``nsga2(model, train, val, population=N, offspring=N, **SANTINI_NEURON_WISE)``; Santini's N is the
#: chromosome length (110 for the 784-100-10 MLP, ``tfmpq.zoo``'s ``mlp``). What differs from the paper:
#: the tournament has 2 entrants, not 5; crossover is uniform on the integer genes, not blend crossover;
#: mutation redraws genes uniformly from their bit set (each with probability 1/genes, a child mutated with
#: probability 0.3), not Gaussian; candidates are scored on the validation split, not on the test set the
#: paper used; tfmpq's weight quantizer is per-channel symmetric (what TFLite deploys), not the paper's
#: per-tensor affine one (sec. II.A), and activations are quantized too (8 bits; the paper quantized
#: weights only); biases and quantization parameters count in the size objective.
SANTINI_NEURON_WISE = MappingProxyType({
    "evaluation": "ptq", "granularity": "channel", "channel_clusters": "all", "init": "random",
    "mutation": "per_gene", "mutation_prob": 0.3, "generations": 20,
})


def nsga2(model=None, train=None, val=None, **options) -> Result:
    """NSGA-II search for the accuracy / size Pareto front (Šafář, "Automated Quantization of
    Neural Networks", sec. 2.2).

    Args:
        model: the trained float Keras model.
        train: training data ``(x, y)`` or a batched ``tf.data.Dataset``.
        val: validation data.
        **options: NSGA-II's own options:

            - ``population``: parents kept per generation (mu). Defaults to 16.
            - ``offspring``: offspring per generation (lambda). Defaults to 16.
            - ``generations``: generations after the initial population. Defaults to 10.
            - ``init``: ``"uniform"`` (all uniform policies + their mutants, Šafář) or ``"random"``.
              Defaults to "uniform".
            - ``crossover``: ``"uniform"``, ``"one_point"`` or ``"two_point"``. Defaults to "uniform".
            - ``crossover_prob``: probability a pair is crossed. Defaults to 0.9.
            - ``mutation``: ``"one_gene"`` (Šafář) or ``"per_gene"``. Defaults to "one_gene".
            - ``mutation_prob``: probability a child is mutated (Šafář: 10 %). Defaults to 0.1.
            - ``seed_ilp``: put this many ILP allocations into the initial population (Hessian traces
              of the float model on ``train``, then :func:`tfmpq.search.ilp`'s Omega-optimal allocation
              at budgets on ``objectives[1]`` spread evenly between the cheapest and the dearest
              policy), after the uniform policies. 0 for none. Defaults to 0.
            - ``sensitivity``: precomputed traces for ``seed_ilp`` (``tfmpq.hessian.TraceEstimate`` or
              ``{group: Tr(H)}``). Defaults to None.
            - ``seed_budgets``: budgets on ``objectives[1]`` (or ``"auto"``: the budgets ``compare_at_budgets``
              takes) at each of which the ILP's allocation and the hand-made policies
              (:mod:`tfmpq.search.handmade`) join the initial population (``seed_kinds``: ``("ilp",
              "handmade")``), so that the front holds them where a user's budget lies. Defaults to None.

            and those of :func:`tfmpq.search.run`: ``evaluation`` (``"qat"``, Šafář, or ``"ptq"``,
            Santini; default "qat"), ``epochs`` (default 1), ``objectives`` (e.g.
            ``("accuracy", "bops")``), ``run_dir``, ``resume``, ``seed``, ``evaluator``, ``space``,
            ``bits``, ``pinned``, ``constraint``, ``batch_size``, ...

    Returns:
        A :class:`Result` (``front``, ``candidates``, ``history``, ``finetune()``, ``export()``).

    Example:
    >>> result = tfmpq.search.nsga2(model, (x_tr, y_tr), (x_val, y_val), evaluation="ptq",
    ...                             generations=5, run_dir="runs/digits", seed=0)
    >>> result.front[0].weight_bytes
    >>> # channel-wise: 4 clusters of output channels per group, each its own gene
    >>> result = tfmpq.search.nsga2(model, train, val, granularity="channel", channel_clusters=4)
    >>> # Santini's neuron-wise NSGA-II with PTQ scoring (see SANTINI_NEURON_WISE)
    >>> result = tfmpq.search.nsga2(model, train, val, population=110, offspring=110, **SANTINI_NEURON_WISE)
    """
    return search("nsga2", model, train, val, **options)


def exhaustive(model=None, train=None, val=None, **options) -> Result:
    """Scores every policy of a small space (Santini, sec. V: a 2-layer space is better enumerated).

    Args:
        model, train, val: as in :func:`nsga2`.
        **options: ``batch_size_search`` (chromosomes per checkpointed batch; default 64), ``max_size``
            (the largest space accepted; default 4096), and those of :func:`tfmpq.search.run`, except
            that ``evaluation`` defaults to "ptq".

    Returns:
        A :class:`Result` whose ``front`` is the true Pareto front of the space.

    Raises:
        ValueError: the space has more than ``max_size`` chromosomes.
    """
    return search("exhaustive", model, train, val, **options)


def bbpso(model=None, train=None, val=None, **options) -> Result:
    """BBPSO-Quantizer (Tmamna et al. 2024): the most accurate mixed-precision policy with ``budget <= target``.

    Args:
        model: the trained float Keras model.
        train: training data ``(x, y)`` or a batched ``tf.data.Dataset``.
        val: validation data, same forms.
        **options: the budget:

            - ``budget``: the constrained metric: ``"avg_op_bits"`` (eq. 11), ``"avg_weight_bits"``
              (eq. 10), ``"weight_bytes"``, ``"bops"``, or ``"flash_bytes"`` (``"flash_bytes_int4"``,
              ``"flash_bytes_lut"``): the weights as ``export_tflite(packed="auto")`` (``"int4"``,
              ``"lut"``) writes them, e.g. ``budget="flash_bytes", target=64 * 1024`` for the most
              accurate model whose weights fit in 64 KiB of flash. Defaults to "avg_op_bits".
            - ``target``: the budget, e.g. 4.0 average bits or a byte count. Defaults to 4.0.
            - ``float_accuracy``: the float model's validation accuracy for eq. 8; None computes it
              from ``model`` and ``val``. Defaults to None.

            BBPSO's own options:

            - ``swarm``: swarm size N (Table 4). Defaults to 15.
            - ``iterations``: iterations T (Table 4). Defaults to 20.
            - ``init``: ``"ligpi"`` (eq. 5-6) or ``"random"`` (Table 9's "-IN" variant). Defaults to "ligpi".
            - ``screening``: similarity screening (sec. 4.3.4); False re-evaluates remembered positions.
              Defaults to True.
            - ``local_search``: the local search process (sec. 4.3.5; False: Table 9's "-LSP").
              Defaults to True.
            - ``gamma``: LSP period in iterations. Defaults to 5.
            - ``R``: dimensions changed by the LSP. Defaults to 2.
            - ``kernels``: ``{group: float kernel}`` for LIGPI; None reads them from ``model``.
              Defaults to None.
            - ``importance``: per-group importance overriding eq. 5-6. Defaults to None.
            - ``seed_ilp``: put this many ILP allocations into the initial swarm, replacing the last
              particles (Hessian traces of the float model on ``train``, then ``tfmpq.search.ilp``'s
              Omega-optimal allocation at budgets spread evenly from the cheapest policy up to
              ``target``; with searched activations, the weights are allocated with activations at
              their widest choice). ``budget`` must be linear (not ``flash_bytes``). 0 for none.
              Defaults to 0.
            - ``sensitivity``: precomputed traces for ``seed_ilp``. Defaults to None.

            and those of :func:`tfmpq.search.run`, with BBPSO's defaults: ``evaluation`` "qat" (the
            paper: fine-tune each particle, then score), ``epochs`` 2 (Table 4: ep_eval = 2),
            ``search_activations`` True (a position holds weight and activation bits of every group,
            Table 5), ``bits`` 2..8; ``run_dir`` (journal, checkpoint, best.json), ``resume``,
            ``seed``, ``evaluator``, ``space``, ``pinned``, ``activation_bits``, ``batch_size``, ...

    Returns:
        A ``Result``: ``best`` (the Deb-best candidate: the most accurate feasible one when any was
        seen), ``report`` (sec. 5.3: accuracy, ``delta_accuracy`` eq. 8, ``compression_ratio_eq9``,
        ``avg_op_bits`` eq. 11), ``history``, ``finetune()``, ``export()``.

    Raises:
        ValueError: an unknown budget, a non-positive target, invalid sizes or switches.

    Example:
    >>> result = bbpso(model, (x_tr, y_tr), (x_val, y_val), target=4.0, evaluation="ptq",
    ...                swarm=8, iterations=5, run_dir="runs/bbpso4")
    >>> result.best.genes, result.report["delta_accuracy"], result.report["compression_ratio_eq9"]
    """
    return search("bbpso", model, train, val, **options)


def plain_bbpso(model=None, train=None, val=None, **options) -> Result:
    """Plain BBPSO with Deb's rule (Table 10's "BBPSO"): random initialisation, no local search.

    Args:
        model, train, val, **options: as in :func:`bbpso` (``init`` and ``local_search`` are fixed).

    Returns:
        A ``Result`` as :func:`bbpso`.
    """
    return bbpso(model, train, val, **{**options, "init": "random", "local_search": False})


def ga(model=None, train=None, val=None, **options) -> Result:
    """The GA baseline of Table 10 (Tmamna et al. 2024, sec. 6.4) on the same problem as :func:`bbpso`.

    Args:
        model, train, val: as in :func:`bbpso`.
        **options: the GA's own options: ``population`` (individuals per generation; default 15),
            ``generations`` (after the initial one; default 20), ``crossover_prob`` (uniform-crossover
            probability; default 0.9), ``mutation_gene_prob`` (per-gene mutation probability; None =
            1 / genes), and those of :func:`bbpso` (``budget``, ``target``, ``float_accuracy``, with
            BBPSO's defaults of the evaluation and the space).

    Returns:
        A ``Result`` with ``best`` and ``report`` as ``bbpso``'s.

    Example:
    >>> result = ga(model, (x_tr, y_tr), (x_val, y_val), target=4.0, evaluation="ptq", generations=5)
    """
    return search("ga", model, train, val, **options)


def ilp(model=None, train=None, val=None, **options) -> Result:
    """Hessian sensitivity + ILP (HAWQ-V3, Yao et al. 2021 sec. 3.4): the best allocations under a budget,
    scored with the evaluator.

    1. Hessian traces of every group's folded kernel on ``sensitivity_data`` (Hutchinson, see
       ``tfmpq.hessian``), and ``Omega_g(b) = Tr(H_g) ||Q_b(W_g) - W_g||^2 / n_g``.
    2. ``min sum_g Omega_g(b_g)`` subject to ``budget <= target``, solved exactly (HiGHS via
       ``scipy.optimize.milp``), with the ``solutions - 1`` next-best allocations (no-good cuts).
    3. Each is scored by the evaluator on the shared engine (cache, journal, resume, executors);
       ``result.best`` is the most accurate on validation within the budget, ``result.ilp_optimum`` the
       Omega-optimal one.

    Weight bits only: activations stay at ``activation_bits`` (8), so BOPs are linear in the choices.

    Args:
        model: the trained float Keras model.
        train: training data ``(x, y)`` (also the default ``sensitivity_data``).
        val: validation data.
        **options: the budget: ``budget`` (``"weight_bytes"``, ``"bops"``, ``"avg_op_bits"`` as
            ``bops <= target^2 MACs``, ``"avg_weight_bits"``, ``"flash_bytes_int4"`` or
            ``"flash_bytes_lut"``; default "weight_bytes"), ``target`` (the bound, e.g. uniform 4-bit's
            weight bytes; required), ``float_accuracy`` (as in :func:`bbpso`). The ILP's own options:

            - ``solutions``: allocations scored: the optimum and the next-best. Defaults to 4.
            - ``generations``: further rounds of ``solutions`` next-best allocations. Defaults to 0.
            - ``sensitivity``: precomputed traces (``tfmpq.hessian.TraceEstimate`` or ``{group: Tr(H)}``);
              None estimates them. Defaults to None.
            - ``sensitivity_data``: ``(x, y)`` for the traces; None uses ``train``. Defaults to None.
            - ``num_probes``: Hutchinson probes. Defaults to 64.
            - ``num_samples``: samples of ``sensitivity_data`` in the loss. Defaults to 512.

            and those of :func:`tfmpq.search.run` (``evaluation`` default "qat", ``epochs`` default 1,
            ``bits`` default 2..8, ``run_dir``, ``resume``, ``seed``, ``evaluator``, ``space``,
            ``pinned``, ``executor``, ``batch_size``, ...).

    Returns:
        A ``Result`` with ``best``, ``report`` (as ``bbpso``'s), ``ilp_optimum`` (the Omega-optimal
        candidate), ``sensitivity`` (the traces) and ``sensitivity_seconds``; ``run_dir/sensitivity.json``.

    Raises:
        ValueError: no ``target``, a budget that is not linear, a target below every allocation,
            searched activation bits.

    Example:
    >>> u4 = tfmpq.metrics.summary(model, tfmpq.QuantPolicy.uniform(model, 4))["weight_bytes"]
    >>> result = tfmpq.search.ilp(model, (x_tr, y_tr), (x_val, y_val), budget="weight_bytes", target=u4)
    >>> result.best.genes, result.best.accuracy, result.ilp_optimum.genes
    """
    return search("ilp", model, train, val, **options)


def ctpe(model=None, train=None, val=None, **options) -> Result:
    """Clustered TPE (Azizi et al. 2023): Hessian-pruned bits, then k-means TPE under a budget.

    See :class:`~tfmpq.search.strategies.ctpe.CTPE` for the algorithm and every deviation from the paper.

    Args:
        model: the trained float Keras model.
        train: training data ``(x, y)`` (also the default ``sensitivity_data``).
        val: validation data.
        **options: the budget as in :func:`ilp` (``budget`` default "weight_bytes", ``target``
            required, ``float_accuracy``). Clustered TPE's own options:

            - ``trials``: configurations scored (n). Defaults to 40.
            - ``startup``: random configurations first (n0); None: a quarter of ``trials``. Defaults to None.
            - ``k``, ``c``, ``alpha``: the objective clusters and their annealing (Algorithm 1).
              Defaults to 4, 0.25, 0.98.
            - ``prune_clusters``, ``cluster_bits``, ``scale``: the sensitivity pruning (sec. III.A).
              Defaults to 4, None, "log".
            - ``sensitivity``: precomputed traces (``TraceEstimate`` or ``{group: Tr(H)}``, totals);
              None estimates them. Defaults to None.
            - ``sensitivity_data``, ``num_probes``, ``num_samples``: as in :func:`ilp`. Defaults to
              None, 64, 512.

            and those of :func:`tfmpq.search.run` (``bits``: the paper's B, default 2..8; ``space``,
            ``pinned``, ``executor``, ...).

    Returns:
        A ``Result`` with ``best`` and ``report`` (as ``bbpso``'s), ``pruned`` (each gene's bits after
        pruning), ``sensitivity``; ``run_dir/sensitivity.json``.

    Raises:
        ValueError: no ``target``, a non-linear budget, searched activations, bad options.
        ImportError: Optuna or scikit-learn missing (``pip install "tfmpq[search]"``).

    Example:
    >>> result = tfmpq.search.ctpe(model, (x_tr, y_tr), (x_val, y_val), budget="weight_bytes", target=u4,
    ...                            trials=40, run_dir="runs/ctpe", seed=0)
    >>> result.best.genes, result.pruned
    """
    return search("ctpe", model, train, val, **options)
