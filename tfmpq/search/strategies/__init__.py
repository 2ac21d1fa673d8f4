"""Search strategies: each proposes chromosomes to the shared engine; one file each."""
from tfmpq.search.strategies.base import Strategy
from tfmpq.search.strategies.bbpso import BBPSO
from tfmpq.search.strategies.ctpe import CTPE
from tfmpq.search.strategies.exhaustive import Exhaustive
from tfmpq.search.strategies.ga import GA
from tfmpq.search.strategies.ilp import ILP
from tfmpq.search.strategies.nsga2 import NSGA2

__all__ = ["Strategy", "NSGA2", "Exhaustive", "BBPSO", "GA", "ILP", "CTPE"]
