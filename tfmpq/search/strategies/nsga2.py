"""NSGA-II over bit-width chromosomes (Deb et al. 2002), as used by Šafář
("Automated Quantization of Neural Networks", sec. 2.2).

* Initial population: every uniform policy of the bit set, filled up with their mutated offspring
  (Šafář, sec. 2.2: "all uniform solutions and their offspring"), or random chromosomes (``init="random"``,
  Santini, "NN Quantization Bit Optimization via MOEAs", sec. III.B step 1).
* Mating selection: binary tournament on (non-domination rank, crowding distance) (Deb et al. 2002
  sec. III-C, the crowded-comparison operator; Santini, sec. III.B step 5).
* Variation: uniform crossover, then with probability 0.1 one gene changed to another random
  bit-width (Šafář, sec. 2.2: "a 10 % chance for mutation where one gene of the chromosome is changed to a
  random N-bit precision"). Offspring duplicating the population or each other are re-mutated
  (pymoo's ``eliminate_duplicates``), which matters in small spaces.
* Environmental selection: ``deap.tools.selNSGA2`` on parents + offspring (Santini, Algorithm 1).

DEAP supplies the fitness type, non-dominated sorting, crowding distance and ``selNSGA2``; the
random operators use ``view.rng`` (not the global ``random`` DEAP's own operators draw from), so
the checkpointed RNG state alone makes a resumed run identical to an uninterrupted one. No
``deap.creator`` class is created: creator classes are process-global, and two searches with
different objectives in one process would clash.
"""
from __future__ import annotations

from deap import base, tools

from tfmpq.search.constraints import constrained_objectives
from tfmpq.search.strategies.base import Ask, Strategy, check_counts

INITS = ("uniform", "random")
CROSSOVERS = ("uniform", "one_point", "two_point")
MUTATIONS = ("one_gene", "per_gene")
#: Re-mutation attempts to make an offspring unique before a duplicate is accepted.
MAX_DEDUP_TRIES = 20


class _Individual(list):
    """A chromosome with a DEAP fitness (what ``tools.selNSGA2`` works on)."""

    fitness: base.Fitness


class NSGA2(Strategy):
    """NSGA-II on DEAP.

    Args:
        population: parents kept per generation (mu). Defaults to 16.
        offspring: children per generation (lambda). Defaults to 16.
        generations: generations after the initial population. Defaults to 10.
        init: ``"uniform"`` (uniform policies + their mutants, Šafář) or ``"random"``.
            Defaults to "uniform".
        crossover: ``"uniform"``, ``"one_point"`` or ``"two_point"``. Defaults to "uniform".
        crossover_prob: probability a parent pair is crossed. Defaults to 0.9.
        crossover_swap_prob: per-gene swap probability of uniform crossover. Defaults to 0.5.
        mutation: ``"one_gene"`` (Šafář) or ``"per_gene"`` (each gene redrawn with
            ``mutation_gene_prob``). Defaults to "one_gene".
        mutation_prob: probability a child is mutated (Šafář: 10 %). Defaults to 0.1.
        mutation_gene_prob: per-gene probability for ``mutation="per_gene"``; None = 1 / genes.
            Defaults to None.
        unique: re-mutate offspring that duplicate the population or each other. Defaults to True.
        initial: chromosomes put into the initial population before it is filled up (e.g. ILP
            allocations at several budgets, ``tfmpq.search.nsga2(seed_ilp=...)``); with ``init="uniform"``
            they come after the uniform policies and replace mutants. Defaults to ().

    Raises:
        ValueError: a size below 1 (population below 2), an unknown option or a probability outside [0, 1].
    """

    name = "nsga2"

    def __init__(
        self,
        population: int = 16,
        offspring: int = 16,
        generations: int = 10,
        *,
        init: str = "uniform",
        crossover: str = "uniform",
        crossover_prob: float = 0.9,
        crossover_swap_prob: float = 0.5,
        mutation: str = "one_gene",
        mutation_prob: float = 0.1,
        mutation_gene_prob: float | None = None,
        unique: bool = True,
        initial=(),
    ):
        check_counts(("population", population, 2), ("offspring", offspring, 1), ("generations", generations, 0))
        for arg, value, allowed in (("init", init, INITS), ("crossover", crossover, CROSSOVERS), ("mutation", mutation, MUTATIONS)):
            if value not in allowed:
                raise ValueError(f"Invalid value for `{arg}`: expected one of {allowed}. Received: {arg}={value!r}")
        probs = (("crossover_prob", crossover_prob), ("crossover_swap_prob", crossover_swap_prob),
                 ("mutation_prob", mutation_prob)) + ((("mutation_gene_prob", mutation_gene_prob),) if mutation_gene_prob is not None else ())
        for arg, value in probs:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Invalid value for `{arg}`: expected a probability in [0, 1]. Received: {arg}={value!r}")
        self.population_size = population
        self.offspring_size = offspring
        self.generations = generations
        self.init = init
        self.crossover = crossover
        self.crossover_prob = float(crossover_prob)
        self.crossover_swap_prob = float(crossover_swap_prob)
        self.mutation = mutation
        self.mutation_prob = float(mutation_prob)
        self.mutation_gene_prob = mutation_gene_prob
        self.unique = bool(unique)
        self.initial = [tuple(int(b) for b in g) for g in initial]

    def options(self) -> dict:
        return {
            "population": self.population_size, "offspring": self.offspring_size, "init": self.init,
            "crossover": self.crossover, "crossover_prob": self.crossover_prob,
            "crossover_swap_prob": self.crossover_swap_prob, "mutation": self.mutation,
            "mutation_prob": self.mutation_prob, "mutation_gene_prob": self.mutation_gene_prob,
            "unique": self.unique, **({"initial": [list(g) for g in self.initial]} if self.initial else {}),
        }

    # -- DEAP glue -----------------------------------------------------------------------------
    def setup(self, view) -> None:
        # A Fitness subclass per run, outside deap.creator (see the module docstring).
        self._fitness_cls = type("NSGA2Fitness", (base.Fitness,), {"weights": view.weights})

    def _individuals(self, view, chromosomes, candidates) -> list[_Individual]:
        """Individuals with fitness from their candidates (constrained domination, Deb's rule, when
        the run has a constraint)."""
        out = []
        for genes, cand in zip(chromosomes, candidates):
            ind = _Individual(genes)
            ind.fitness = self._fitness_cls()
            ind.fitness.values = constrained_objectives(view.values(cand), view.violation(cand))
            out.append(ind)
        return out

    @staticmethod
    def _rank_and_crowd(individuals: list[_Individual]) -> dict[int, int]:
        """Non-domination rank per individual (by id) and ``fitness.crowding_dist`` set on each."""
        rank = {}
        for r, front in enumerate(tools.sortNondominated(individuals, len(individuals))):
            tools.emo.assignCrowdingDist(front)
            for ind in front:
                rank[id(ind)] = r
        return rank

    # -- operators (view.rng only) -----------------------------------------------------------
    def _tournament(self, rng, individuals, rank) -> _Individual:
        """Binary crowded tournament (Deb et al. 2002, the crowded-comparison operator)."""
        a, b = rng.choice(individuals), rng.choice(individuals)
        if rank[id(a)] != rank[id(b)]:
            return a if rank[id(a)] < rank[id(b)] else b
        if a.fitness.crowding_dist != b.fitness.crowding_dist:
            return a if a.fitness.crowding_dist > b.fitness.crowding_dist else b
        return a if rng.random() < 0.5 else b

    def _cross(self, rng, p1, p2) -> tuple[list, list]:
        c1, c2 = list(p1), list(p2)
        if len(c1) < 2 or rng.random() >= self.crossover_prob:
            return c1, c2
        if self.crossover == "uniform":
            for i in range(len(c1)):
                if rng.random() < self.crossover_swap_prob:
                    c1[i], c2[i] = c2[i], c1[i]
        elif self.crossover == "one_point":
            k = rng.randrange(1, len(c1))
            c1[k:], c2[k:] = c2[k:], c1[k:]
        else:  # two_point
            i, j = sorted(rng.sample(range(1, len(c1) + 1), 2))
            c1[i:j], c2[i:j] = c2[i:j], c1[i:j]
        return c1, c2

    @staticmethod
    def _mutate_one_gene(rng, space, genes) -> list:
        """Seed 003: one random gene changed to a different random allowed bit-width."""
        genes = list(genes)
        movable = [i for i, c in enumerate(space.choices) if len(c) > 1]
        if not movable:
            return genes
        i = rng.choice(movable)
        genes[i] = rng.choice([b for b in space.choices[i] if b != genes[i]])
        return genes

    def _mutate(self, rng, space, genes) -> list:
        if rng.random() >= self.mutation_prob:
            return list(genes)
        if self.mutation == "one_gene":
            return self._mutate_one_gene(rng, space, genes)
        p = self.mutation_gene_prob if self.mutation_gene_prob is not None else 1.0 / len(genes)
        out = list(genes)
        for i, choices in enumerate(space.choices):
            if len(choices) > 1 and rng.random() < p:
                out[i] = rng.choice([b for b in choices if b != out[i]])
        return out

    def _make_unique(self, rng, space, genes, taken: set) -> tuple:
        genes = tuple(genes)
        tries = 0
        while self.unique and genes in taken and tries < MAX_DEDUP_TRIES:
            genes = tuple(self._mutate_one_gene(rng, space, genes))
            tries += 1
        return genes

    # -- the algorithm -------------------------------------------------------------------------
    def start(self, view):
        rng, space = view.rng, view.space
        seeds = [space.validate(g) for g in self.initial]
        if self.init == "uniform":
            uniforms = space.uniform_chromosomes()
            chromosomes = list(dict.fromkeys(list(uniforms) + seeds))
            taken = set(chromosomes)
            while len(chromosomes) < self.population_size:
                child = self._make_unique(rng, space, self._mutate_one_gene(rng, space, rng.choice(uniforms)), taken)
                chromosomes.append(child)
                taken.add(child)
        else:
            chromosomes = list(dict.fromkeys(seeds))
            taken = set(chromosomes)
            while len(chromosomes) < self.population_size:
                child = space.random(rng)
                tries = 0
                while self.unique and child in taken and tries < MAX_DEDUP_TRIES:
                    child, tries = space.random(rng), tries + 1
                chromosomes.append(child)
                taken.add(child)
        candidates = yield Ask(chromosomes, desc="gen 0")
        individuals = self._individuals(view, chromosomes, candidates)
        if len(individuals) > self.population_size:  # more uniform policies than population slots
            individuals = tools.selNSGA2(individuals, self.population_size)
        return {"population": [list(ind) for ind in individuals]}

    def step(self, view, state: dict, generation: int):
        rng, space = view.rng, view.space
        parent_genes = [tuple(g) for g in state["population"]]
        parents = self._individuals(view, parent_genes, [view.candidate(g) for g in parent_genes])
        rank = self._rank_and_crowd(parents)
        taken = {tuple(p) for p in parents}
        children: list[tuple] = []
        while len(children) < self.offspring_size:
            p1 = self._tournament(rng, parents, rank)
            p2 = self._tournament(rng, parents, rank)
            for child in self._cross(rng, p1, p2):
                if len(children) == self.offspring_size:
                    break
                child = self._make_unique(rng, space, self._mutate(rng, space, child), taken)
                children.append(child)
                taken.add(child)
        candidates = yield Ask(children, desc=f"gen {generation}")
        offspring = self._individuals(view, children, candidates)
        survivors = tools.selNSGA2(parents + offspring, self.population_size)
        return {"population": [list(ind) for ind in survivors]}

    def report(self, view, state: dict) -> dict:
        scored = [view.candidate(g) for g in state["population"]]
        return {"population_best_accuracy": max((c.accuracy for c in scored if c.ok), default=None)}
