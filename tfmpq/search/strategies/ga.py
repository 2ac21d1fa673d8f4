"""The genetic-algorithm baseline of BBPSO-Quantizer's Table 10 (Tmamna et al., sec. 6.4).

A steady, elitist single-objective GA for eq. 3 (max accuracy s.t. budget <= target), on the shared
engine and with the same Deb's rule (Algorithm 1) as BBPSO, so the comparison isolates the search
operators: random initial population; binary tournaments decided by Deb's rule; uniform crossover
(probability ``crossover_prob``); per-gene mutation to another random allowed bit-width (probability
``1 / genes`` unless given); (mu + lambda) survival: parents and children ranked by Deb's rule.
The paper does not give its GA's operators; these are the textbook ones (Deb 2000 uses a GA of this
kind with the same constraint rule).
"""
from __future__ import annotations

from tfmpq.search.constraints import deb_key
from tfmpq.search.strategies.base import Ask, Strategy, check_counts

MAX_DEDUP_TRIES = 20


class GA(Strategy):
    """Constrained GA baseline (Table 10).

    Args:
        population: individuals per generation. Defaults to 15 (BBPSO's swarm, Table 4).
        generations: generations after the initial one. Defaults to 20.
        crossover_prob: probability a pair is crossed (uniform crossover). Defaults to 0.9.
        mutation_gene_prob: per-gene mutation probability; None = 1 / genes. Defaults to None.

    Raises:
        ValueError: a population below 2, negative generations, a probability outside [0, 1].
    """

    name = "ga"

    def __init__(self, population: int = 15, generations: int = 20, *, crossover_prob: float = 0.9,
                 mutation_gene_prob: float | None = None):
        check_counts(("population", population, 2), ("generations", generations, 0))
        for arg, value in (("crossover_prob", crossover_prob), ("mutation_gene_prob", mutation_gene_prob)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"Invalid value for `{arg}`: expected a probability in [0, 1]. Received: {arg}={value!r}"
                )
        self.population_size = population
        self.generations = generations
        self.crossover_prob = float(crossover_prob)
        self.mutation_gene_prob = mutation_gene_prob

    def options(self) -> dict:
        return {"population": self.population_size, "crossover_prob": self.crossover_prob,
                "mutation_gene_prob": self.mutation_gene_prob}

    def _rank(self, view, chromosomes) -> list[tuple]:
        """Chromosomes sorted best first by Deb's rule (stable: ties keep the earlier one)."""
        def key(genes):
            cand = view.candidate(genes)
            return deb_key(view.values(cand)[0], view.violation(cand))

        return sorted(chromosomes, key=key, reverse=True)

    def start(self, view):
        chromosomes, taken = [], set()
        while len(chromosomes) < self.population_size:
            x = view.space.random(view.rng)
            for _ in range(MAX_DEDUP_TRIES):
                if x not in taken:
                    break
                x = view.space.random(view.rng)
            chromosomes.append(x)
            taken.add(x)
        yield Ask(chromosomes, desc="init population")
        return {"population": [list(g) for g in self._rank(view, chromosomes)]}

    def _tournament(self, view, population) -> tuple:
        """Binary tournament decided by Deb's rule; a tie is a coin flip."""
        a, b = view.rng.choice(population), view.rng.choice(population)
        if view.better(view.candidate(a), view.candidate(b)):
            return a
        if view.better(view.candidate(b), view.candidate(a)):
            return b
        return a if view.rng.random() < 0.5 else b

    def step(self, view, state: dict, generation: int):
        rng, space = view.rng, view.space
        parents = [tuple(g) for g in state["population"]]
        p_gene = self.mutation_gene_prob if self.mutation_gene_prob is not None else 1.0 / space.num_genes
        children, taken = [], set(parents)
        while len(children) < self.population_size:
            c1, c2 = list(self._tournament(view, parents)), list(self._tournament(view, parents))
            if rng.random() < self.crossover_prob:
                for j in range(len(c1)):
                    if rng.random() < 0.5:
                        c1[j], c2[j] = c2[j], c1[j]
            for child in (c1, c2):
                if len(children) == self.population_size:
                    break
                for _ in range(MAX_DEDUP_TRIES):
                    for j, choices in enumerate(space.choices):
                        if len(choices) > 1 and rng.random() < p_gene:
                            child[j] = rng.choice([b for b in choices if b != child[j]])
                    if tuple(child) not in taken:
                        break
                children.append(tuple(child))
                taken.add(tuple(child))
        yield Ask(children, desc=f"gen {generation}")
        survivors = self._rank(view, list(dict.fromkeys(parents + children)))[: self.population_size]
        return {"population": [list(g) for g in survivors]}
