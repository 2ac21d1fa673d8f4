"""Per-gene tables of the sensitivity-guided strategies: Omega, cost terms, sensitivities.

The ILP and clustered TPE strategies keep their tables in the run's signature (``run.json``), so a
resumed run reads them back and a resume with other tables is refused: values at 12 significant
digits (JSON-stable across machines' last bits), bit-width keys as strings in JSON, and either one
table per gene of the space or one per group name (:func:`per_gene` resolves them on a space).
Pure Python.
"""
from __future__ import annotations

import math
from typing import Mapping


def sig(value: float) -> float:
    """12 significant digits: what the run signature stores (JSON-stable across machines' last bits)."""
    return float(f"{float(value):.12g}")


def normalise_tables(tables, what: str):
    """Tables as given, values at 12 significant digits: a list (one per gene) or ``{group: table}``."""
    if isinstance(tables, Mapping):
        out = {str(g): {int(b): sig(v) for b, v in dict(t).items()} for g, t in tables.items()}
    else:
        out = [{int(b): sig(v) for b, v in dict(t).items()} for t in tables]
    if not out:
        raise ValueError(f"Invalid value for `{what}`: expected one table per gene or group. Received: none.")
    return out


def tables_json(tables):
    """JSON form of :func:`normalise_tables`'s result (bit-width keys as strings)."""
    if isinstance(tables, dict):
        return {g: {str(b): v for b, v in t.items()} for g, t in tables.items()}
    return [{str(b): v for b, v in t.items()} for t in tables]


def per_gene(tables, space, what: str, *, pinned_constant: bool = False) -> tuple[list, float]:
    """The tables of the space's genes, and (``pinned_constant``) the pinned groups' summed terms.

    Args:
        tables: a list with one entry per gene, or ``{group name: entry}`` covering every group (the
            pinned ones too when ``pinned_constant``).
        space: the ``SearchSpace`` (weight genes of the free groups).
        what: the argument's name for errors.
        pinned_constant: add each pinned group's entry at its pinned bits to the returned constant.

    Returns:
        ``(entries per gene, constant)``.

    Raises:
        ValueError: a missing group or a list of the wrong length.
    """
    if isinstance(tables, dict):
        if getattr(space, "clusters", None):
            raise ValueError(f"Invalid value for `{what}`: a channel-wise space takes one entry per gene "
                             f"({space.num_genes}: {space.gene_names}), not one per group. Received keys {sorted(tables)}.")
        needed = list(space.free_groups) + (list(space.pinned) if pinned_constant else [])
        missing = [g for g in needed if g not in tables]
        if missing:
            raise ValueError(f"Invalid value for `{what}`: no entry for groups {missing}. Received keys "
                             f"{sorted(tables)}.")
        constant = math.fsum(tables[g][space.pinned[g][0]] for g in space.pinned) if pinned_constant else 0.0
        return [tables[g] for g in space.free_groups], constant
    if len(tables) != space.num_genes:
        raise ValueError(f"Invalid value for `{what}`: expected one entry per gene ({space.num_genes}: "
                         f"{space.gene_names}). Received: {len(tables)}.")
    return list(tables), 0.0


def weight_tables(space, strategy: str, why: str, costs, **tables) -> tuple[dict, list, float]:
    """The tables of a strategy that allocates weight bits only, on the genes of ``space``.

    Args:
        space: the ``SearchSpace``.
        strategy: the strategy's name, for errors.
        why: why it allocates weight bits only, for the error on searched activations.
        costs: the budget's cost terms (:func:`per_gene`, the pinned groups' terms summed as a constant).
        **tables: other per-bit tables to resolve and check (e.g. ``omega``).

    Returns:
        ``({name: entries per gene}, cost entries per gene, the pinned groups' constant)``.

    Raises:
        ValueError: activation bits searched in ``space``; a table without an entry for a bit-width a
            gene allows (the message names the table, the gene and the bit-widths).
    """
    if space.search_activations:
        raise ValueError(f"Invalid search space for `{strategy}`: activation bits are searched; {why} "
                         "(search_activations=False).")
    resolved = {name: per_gene(t, space, name)[0] for name, t in tables.items()}
    per_gene_costs, constant = per_gene(costs, space, "costs", pinned_constant=True)
    for name, entries in (*resolved.items(), ("costs", per_gene_costs)):
        for gene, allowed, entry in zip(space.gene_names, space.choices, entries):
            missing = [b for b in allowed if b not in entry]
            if missing:
                raise ValueError(f"Invalid value for `{name}`: gene `{gene}` has no entry for bit-widths {missing}.")
    return resolved, per_gene_costs, constant
