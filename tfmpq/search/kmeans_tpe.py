"""k-means TPE (Azizi et al. 2023), pure: Hessian-based bit pruning and the dual-threshold proposal.

Azizi, Nazemi, Fayyazi and Pedram 2023, "Sensitivity-aware mixed-precision quantization and width
optimization of deep neural networks through cluster-based tree-structured Parzen estimation":

* **Search-space pruning** (sec. III.A): the trace of each layer's loss Hessian divided by its number
  of weights, clustered with k-means; clusters sorted by decreasing centroid; the layers of the
  ``i``-th cluster may only take the ``i``-th of ``k`` possibly overlapping bit subsets, higher bits
  for more sensitive clusters (:func:`prune_bits`).
* **Dual-threshold TPE** (sec. III.B, Algorithm 1): the observed objective values are clustered with
  k-means into ``k`` clusters sorted by decreasing centroid; ``l(x)`` is fitted to the top cluster
  ``C_1`` and ``g(x)`` to the bottom one ``C_k`` (the middle is left out, so configurations just
  below a threshold on a flat loss landscape are not pushed into ``g``); the next configuration
  maximises ``l(x) / g(x)`` (:func:`dual_threshold_split`, :func:`tpe_propose`). ``k`` grows as the
  search goes on, an annealing from large to small moves (:func:`annealed_k`).

The Parzen estimators, the candidates drawn from ``l`` and the ``l/g`` argmax are Optuna's
``TPESampler`` (Akiba et al. 2019; Bergstra et al. 2011), driven through its ask/tell API: each
proposal builds an in-memory study holding only ``C_1`` (told as the best values) and ``C_k``, and a
sampler whose ``gamma`` puts exactly ``|C_1|`` trials in ``l``. k-means is scikit-learn's ``KMeans``.
Both are imported when first used: ``pip install "tfmpq[search]"``.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

#: Azizi et al. 2023, Algorithm 1 and sec. IV.A: k = 4, c = 0.25, alpha = 0.98.
DEFAULT_K = 4
DEFAULT_C = 0.25
DEFAULT_ALPHA = 0.98
SCALES = ("log", "linear")
#: Restarts of k-means (scikit-learn's ``n_init``): 1-D data, cheap, and a bad start would change the split.
KMEANS_RESTARTS = 10


def _optuna():
    try:
        import optuna
    except ImportError as e:
        raise ImportError("Clustered TPE needs Optuna: pip install 'tfmpq[search]' (or pip install 'optuna>=4,<6').") \
            from e
    return optuna


def _kmeans():
    try:
        from sklearn.cluster import KMeans
    except ImportError as e:
        raise ImportError("Clustered TPE needs scikit-learn's KMeans: pip install 'tfmpq[search]' "
                          "(or pip install scikit-learn).") from e
    return KMeans


def check_installed() -> None:
    """Raises ImportError (naming what to install) unless Optuna and scikit-learn are installed."""
    _optuna(), _kmeans()


def kmeans_1d(values: Sequence[float], k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means of scalars: each value's cluster rank (0 = the cluster with the largest centroid) and the
    sorted centroids (largest first).

    ``k`` is lowered to the number of distinct values (k-means cannot fill more clusters).

    Args:
        values: the scalars.
        k: clusters wanted, >= 1.
        seed: scikit-learn's ``random_state``. Defaults to 0.

    Returns:
        ``(ranks, centroids)``: an int array of ``len(values)`` and a float array of the clusters used.

    Raises:
        ValueError: no values, a non-finite value, or ``k < 1``.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"Invalid value for `values`: expected finite numbers. Received: {list(v)[:5]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"Invalid value for `k`: expected an integer >= 1. Received: k={k!r}")
    distinct = np.unique(v)
    k = min(int(k), len(distinct))
    if k == 1:
        return np.zeros(len(v), int), np.array([float(v.mean())])
    if k == len(distinct):  # every distinct value its own cluster: exact, no k-means needed
        centroids = distinct[::-1]
        return np.array([int(np.nonzero(centroids == x)[0][0]) for x in v]), centroids
    km = _kmeans()(n_clusters=k, n_init=KMEANS_RESTARTS, random_state=seed).fit(v[:, None])
    centers = km.cluster_centers_[:, 0]
    order = np.argsort(-centers, kind="stable")  # rank 0 = largest centroid
    rank_of = np.empty(k, int)
    rank_of[order] = np.arange(k)
    return rank_of[km.labels_], centers[order]


def cluster_windows(choices: Sequence[int], num_clusters: int) -> list[tuple[int, ...]]:
    """The bit subset of each sensitivity cluster, most sensitive first.

    Azizi et al. give one example (sec. III.A): ``B = {8, 6, 4, 3, 2}``, ``k = 4``:
    ``{8, 6}, {6, 4, 3}, {4, 3, 2}, {3, 2}``, "possibly overlapping subsets", higher bits for more
    sensitive clusters. The general rule here: with the ``m`` choices sorted in decreasing order,
    cluster ``i`` of ``k`` centres on position ``c_i = round(i (m - 1) / (k - 1))`` and takes the
    choices at ``c_i - 1 .. c_i + 1``, cut at both ends. For the paper's example this gives
    ``{8, 6}, {8, 6, 4}, {4, 3, 2}, {3, 2}`` (pass ``cluster_bits`` to :func:`prune_bits` for others).

    Args:
        choices: the allowed bit-widths.
        num_clusters: clusters, >= 1 (1 keeps every choice).

    Returns:
        ``num_clusters`` tuples of bit-widths, each in decreasing order.
    """
    desc = sorted(set(int(b) for b in choices), reverse=True)
    m = len(desc)
    if num_clusters <= 1 or m <= 1:
        return [tuple(desc)] * max(num_clusters, 1)
    out = []
    for i in range(num_clusters):
        c = int(math.floor(i * (m - 1) / (num_clusters - 1) + 0.5))
        out.append(tuple(desc[max(0, c - 1): c + 2]))
    return out


def prune_bits(
    sensitivity: Sequence[float],
    choices: Sequence[Sequence[int]],
    num_clusters: int = DEFAULT_K,
    *,
    cluster_bits: Sequence[Sequence[int]] | None = None,
    scale: str = "log",
    seed: int = 0,
) -> list[tuple[int, ...]]:
    """Azizi et al. 2023 sec. III.A: each group's bit-widths pruned by its sensitivity cluster.

    Args:
        sensitivity: per group, the Hessian trace divided by the kernel's weights (``tfmpq.sensitivity(...,
            average=True)``), in the order of ``choices``.
        choices: per group, the bit-widths the search space allows.
        num_clusters: k of the k-means over the sensitivities. Defaults to 4 (sec. III.A's example).
        cluster_bits: the bit subset of each cluster, most sensitive first (``num_clusters`` of them);
            None uses :func:`cluster_windows` over each group's choices. Defaults to None.
        scale: ``"log"`` clusters ``log10`` of the sensitivities (traces spread over orders of magnitude:
            on the raw values one outlier takes a cluster and the rest share another), ``"linear"`` the
            raw values as the paper states. Non-positive values count as the smallest positive one.
            Defaults to "log".
        seed: k-means seed. Defaults to 0.

    Returns:
        Per group, the allowed bit-widths after pruning, ascending (never empty: a cluster subset that
        misses every allowed width of a group falls back to the allowed width nearest to it).

    Raises:
        ValueError: mismatched lengths, an unknown ``scale``, or ``cluster_bits`` of the wrong length.
    """
    if scale not in SCALES:
        raise ValueError(f"Invalid value for `scale`: expected one of {SCALES}. Received: scale={scale!r}")
    s = np.asarray(sensitivity, dtype=np.float64)
    if len(s) != len(choices):
        raise ValueError(f"Invalid value for `sensitivity`: expected one value per group ({len(choices)}). "
                         f"Received: {len(s)}.")
    if cluster_bits is not None and len(cluster_bits) != num_clusters:
        raise ValueError(f"Invalid value for `cluster_bits`: expected {num_clusters} subsets (one per cluster). "
                         f"Received: {len(cluster_bits)}.")
    if scale == "log":
        positive = s[s > 0]
        floor = positive.min() if positive.size else 1.0
        s = np.log10(np.maximum(s, floor))
    ranks, centroids = kmeans_1d(s, num_clusters, seed=seed)
    used = len(centroids)
    out = []
    for g, ch in enumerate(choices):
        if cluster_bits is not None:
            # k-means may use fewer clusters than asked (equal sensitivities): spread the ranks
            r = ranks[g] if used == num_clusters else int(round(ranks[g] * (num_clusters - 1) / max(used - 1, 1)))
            wanted = {int(b) for b in cluster_bits[r]}
        else:
            wanted = set(cluster_windows(ch, used)[ranks[g]])
        kept = tuple(sorted(b for b in ch if b in wanted))
        if not kept:
            target = float(np.mean(sorted(wanted)))
            kept = (min(ch, key=lambda b: (abs(b - target), -b)),)
        out.append(kept)
    return out


def annealed_k(iteration: int, k: int = DEFAULT_K, c: float = DEFAULT_C, alpha: float = DEFAULT_ALPHA) -> int:
    """The number of objective clusters at a TPE iteration: ``max(k, floor(1 / (c * alpha^t)))``.

    Algorithm 1 of Azizi et al. multiplies ``c`` (0.25) by ``alpha`` (0.98) each iteration and says in
    sec. III.B that ``k`` grows "after every few iterations"; we read ``1 / c`` as the cluster count, so
    with the paper's values ``k`` is 4 until iteration 12, 5 until 21, 6 until 28, ...

    Args:
        iteration: TPE iterations done after the random start (t >= 0).
        k: the initial number of clusters, >= 3 (sec. III.B). Defaults to 4.
        c: the initial fraction. Defaults to 0.25.
        alpha: its decay per iteration, in (0, 1]. Defaults to 0.98.

    Returns:
        The number of clusters.
    """
    return max(int(k), int(math.floor(1.0 / (c * alpha ** max(int(iteration), 0)) + 1e-9)))


def dual_threshold_split(values: Sequence[float], k: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """The indices of ``C_1`` (the top k-means cluster of ``values``) and ``C_k`` (the bottom one).

    With fewer than 2 distinct values, ``C_1`` holds the best value(s) and ``C_k`` the others (maybe none).

    Args:
        values: the objective values (larger is better).
        k: clusters.
        seed: k-means seed. Defaults to 0.

    Returns:
        ``(top, bottom)`` index lists, ascending.
    """
    if len(values) == 0:
        return [], []
    ranks, centroids = kmeans_1d(values, k, seed=seed)
    last = len(centroids) - 1
    top = [i for i, r in enumerate(ranks) if r == 0]
    bottom = [i for i, r in enumerate(ranks) if r == last and last > 0]
    return top, bottom


class TPEProposer:
    """TPE proposals of one iteration: ``argmax l(x) / g(x)`` over Optuna's candidates drawn from ``l``.

    Each gene is a categorical parameter (a bit-width is a choice, as in HyperOpt's ``hp.choice``),
    sampled independently (HyperOpt's and Optuna's default univariate TPE). One in-memory study holds
    ``good`` (``C_1``, told as the best values) and ``bad`` (``C_k``, infeasible, failed); the sampler's
    ``gamma`` puts exactly ``len(good)`` trials in ``l(x)``. :meth:`ask` draws a proposal (the sampler's
    random state advances, so asking again gives another draw); :meth:`add_bad` adds a proposal found
    undesirable (over the budget) to ``g(x)`` before the next ask.

    Args:
        choices: per gene, the allowed values.
        good: ``(chromosome, value)`` pairs that form ``l(x)``.
        bad: pairs that form ``g(x)``; every value below every ``good`` value.
        seed: the sampler's seed (the proposals are a deterministic function of the inputs).
        n_ei_candidates: candidates drawn from ``l(x)`` per proposal. Defaults to 24 (Optuna's and HyperOpt's).

    Raises:
        ValueError: no ``good`` pairs, or a ``bad`` value not below the ``good`` ones.
    """

    def __init__(self, choices: Sequence[Sequence[int]], good: Sequence[tuple[Sequence[int], float]],
                 bad: Sequence[tuple[Sequence[int], float]], *, seed: int, n_ei_candidates: int = 24):
        optuna = self._optuna = _optuna()
        if not good:
            raise ValueError("Invalid value for `good`: expected at least one (chromosome, value) pair for l(x).")
        self._floor = min(v for _, v in good)
        if bad and max(v for _, v in bad) >= self._floor:
            raise ValueError("Invalid values: every value of `bad` must be below every value of `good`.")
        self._names = [f"g{j}" for j in range(len(choices))]
        self._dists = {n: optuna.distributions.CategoricalDistribution(tuple(int(b) for b in ch))
                       for n, ch in zip(self._names, choices)}
        n_good = len(good)
        with self._quiet():
            with warnings.catch_warnings():
                # `gamma` is deprecated since Optuna 4.9 (removal planned for 6.0; the requirements pin < 6):
                # it is the only way to make l(x) exactly C_1.
                warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
                sampler = optuna.samplers.TPESampler(seed=int(seed), n_startup_trials=0,
                                                     n_ei_candidates=n_ei_candidates, gamma=lambda n: n_good,
                                                     constant_liar=False)
            self._study = optuna.create_study(direction="maximize", sampler=sampler)
            self._study.add_trials([self._trial(x, v) for x, v in list(good) + list(bad)])

    def _quiet(self):
        import contextlib

        optuna = self._optuna

        @contextlib.contextmanager
        def quiet():
            verbosity = optuna.logging.get_verbosity()
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            try:
                yield
            finally:
                optuna.logging.set_verbosity(verbosity)
        return quiet()

    def _trial(self, genes, value: float):
        return self._optuna.trial.create_trial(params={n: int(b) for n, b in zip(self._names, genes)},
                                               distributions=self._dists, value=float(value))

    def ask(self) -> tuple[int, ...]:
        """The next proposal."""
        with self._quiet():
            trial = self._study.ask(self._dists)
            genes = tuple(int(trial.params[n]) for n in self._names)
            self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)  # not an observation
        return genes

    def add_bad(self, genes: Sequence[int], value: float) -> None:
        """Adds an undesirable configuration to ``g(x)`` (``value`` below every good value)."""
        if value >= self._floor:
            raise ValueError(f"Invalid value: a configuration added to g(x) must score below l(x)'s "
                             f"{self._floor}. Received: {value}.")
        with self._quiet():
            self._study.add_trial(self._trial(genes, value))


def tpe_propose(
    choices: Sequence[Sequence[int]],
    good: Sequence[tuple[Sequence[int], float]],
    bad: Sequence[tuple[Sequence[int], float]],
    *,
    seed: int,
    n_ei_candidates: int = 24,
) -> tuple[int, ...]:
    """One TPE proposal, ``argmax l(x) / g(x)`` (see :class:`TPEProposer`).

    Args:
        choices, good, bad, seed, n_ei_candidates: see :class:`TPEProposer`.

    Returns:
        The proposed chromosome.

    Raises:
        ValueError: no ``good`` pairs, or a ``bad`` value not below the ``good`` ones.
    """
    return TPEProposer(choices, good, bad, seed=seed, n_ei_candidates=n_ei_candidates).ask()
