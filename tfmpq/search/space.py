"""The search space: which bit-widths each quantizable group may take, as a chromosome of genes.

A chromosome is a tuple of ints. It holds one *weight* gene per free (not pinned) group, in the
model's group order, followed — with ``search_activations=True`` — by one *activation* gene per free
group in the same order. Pinned groups carry no gene: their bits are fixed by the space. The mapping
chromosome <-> :class:`tfmpq.QuantPolicy` is exact in both directions (:meth:`SearchSpace.decode`,
:meth:`SearchSpace.encode`), and it lives here only: strategies see chromosomes, the evaluator sees
policies.

This module never imports TensorFlow; ``SearchSpace.from_model`` asks the core for the group names.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import random
from typing import Iterable, Iterator, Mapping, Sequence

from tfmpq.errors import PolicyError
from tfmpq.options import Flag, known_fields, option
from tfmpq.policy import FLOAT_BITS, QUANT_BITS  # the bit-width constants' one owner (TensorFlow-free)

_VALID_BITS = frozenset(QUANT_BITS + FLOAT_BITS)

Chromosome = tuple[int, ...]


def _check_bits(values: Iterable[int], what: str) -> tuple[int, ...]:
    values = tuple(values)
    if not values:
        raise ValueError(f"Invalid value for `{what}`: expected a non-empty set of bit-widths. Received: {what}=()")
    for b in values:
        if isinstance(b, bool) or not isinstance(b, int) or b not in _VALID_BITS:
            raise ValueError(
                f"Invalid value for `{what}`: expected integers in 2..8 or 16/32. Received: {what}={values!r}"
            )
    return tuple(sorted(set(values)))


def _check_pin(name: str, value) -> tuple[int, int | None]:
    """A pin is ``bits`` (weights; activations keep the space default) or ``(weight, activation)``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"Invalid pin for group `{name}`: expected bits or (weight_bits, activation_bits). "
                f"Received: {value!r}"
            )
        w, a = value
        _check_bits([w], f"pinned[{name!r}]")
        _check_bits([a], f"pinned[{name!r}]")
        return int(w), int(a)
    _check_bits([value], f"pinned[{name!r}]")
    return int(value), None


@dataclasses.dataclass(frozen=True)
class SpaceConfig:
    """Which bit-widths a search may give each group: the one place a space option is declared and checked.

    The options do not depend on the model; :class:`SearchSpace` applies them to a model's groups (and
    checks the group names in ``overrides`` / ``pinned``). Every entry point takes these fields as
    keyword arguments (``tfmpq.search.problem.build_problem`` sorts them out) and ``tfmpq search``
    generates its flags from their metadata.

    Args:
        bits: the candidate weight bit-widths of every free group. Defaults to ``(2, ..., 8)``.
        search_activations: if True, each free group also gets an activation gene. Defaults to False.
        activation_bits: activation bits of every group whose activations are not searched.
            Defaults to 8.
        activation_choices: candidate activation bit-widths when ``search_activations=True``; None:
            ``bits``. Defaults to None.
        overrides: per-group candidate weight bit-widths replacing ``bits``, e.g. ``{"dense": (4, 8)}``.
            Defaults to None.
        pinned: groups fixed out of the search: ``{"conv2d": 8}`` (weights) or
            ``{"conv2d": (8, 8)}`` (weights, activations). Defaults to None.
        pin_first_last: pin the first and the last group to 8-bit weights and activations.
            Defaults to False.

    Raises:
        ValueError: a bit-width outside 2..8 and 16/32, an empty set of them, or a malformed pin.

    Example:
    >>> SpaceConfig(bits=(8, 4), search_activations=True).to_json()["bits"]
    [4, 8]
    """

    bits: tuple = option(QUANT_BITS, Flag("candidate weight bits", type="ints", metavar="B[,B...]"))
    search_activations: bool = option(False, Flag("search activation bits too", kind="toggle"))
    activation_bits: int = option(8, Flag("activation bits when activations are not searched", type="positive_int"))
    activation_choices: tuple | None = option(None)
    overrides: Mapping | None = option(None)
    pinned: Mapping | None = option(None)
    pin_first_last: bool = option(False, Flag("keep the first and last groups at 8 bits", kind="switch",
                                              default_text=""))

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("bits", _check_bits(self.bits, "bits"))
        put("search_activations", bool(self.search_activations))
        put("activation_bits", _check_bits([self.activation_bits], "activation_bits")[0])
        if self.activation_choices is not None:
            put("activation_choices", _check_bits(self.activation_choices, "activation_choices"))
        put("overrides", {str(n): _check_bits(v, f"overrides[{n!r}]") for n, v in dict(self.overrides or {}).items()})
        put("pinned", {str(n): _check_pin(n, v) for n, v in dict(self.pinned or {}).items()})
        put("pin_first_last", bool(self.pin_first_last))

    def to_json(self) -> dict:
        """Every option, JSON-able (:meth:`from_json` is the inverse)."""
        out = dataclasses.asdict(self)
        out["bits"] = list(self.bits)
        out["activation_choices"] = None if self.activation_choices is None else list(self.activation_choices)
        out["overrides"] = {k: list(v) for k, v in self.overrides.items()}
        out["pinned"] = {k: list(v) for k, v in self.pinned.items()}
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> "SpaceConfig":
        """The configuration :meth:`to_json` wrote.

        Raises:
            ValueError: a key that is not an option (the message lists them).
        """
        return cls(**known_fields(cls, data))

    def replace(self, **changes) -> "SpaceConfig":
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def added_options(self) -> dict:
        """Options added after the run-directory format was fixed, where they differ from their default:
        part of the space's signature, so old run directories keep theirs (see ``SIGNED``)."""
        return {f.name: self.to_json()[f.name] for f in dataclasses.fields(self)
                if f.name not in SIGNED and getattr(self, f.name) != f.default}


#: The options :meth:`SearchSpace.signature` records explicitly (as bits, choices and pins); an option
#: added later enters the signature only where it differs from its default (:meth:`SpaceConfig.added_options`).
SIGNED = ("bits", "search_activations", "activation_bits", "activation_choices", "overrides", "pinned",
          "pin_first_last")


class SearchSpace:
    """Per-group bit-widths as a chromosome of integer genes.

    Args:
        group_names: the quantizable groups' names in the model's order (``QuantPolicy.group_names``).
        bits: the candidate weight bit-widths of every free group. Defaults to ``(2, ..., 8)``.
        model: the Keras model the groups belong to, or its list of ``QuantGroup``s; when given,
            policies are built with ``QuantPolicy.from_bits(model, ...)`` and carry the model's
            signature. Defaults to None.
        config: the space's options as a :class:`SpaceConfig`; None builds one from ``bits`` and
            ``**options``. Defaults to None.
        **options: the other :class:`SpaceConfig` fields (``search_activations``, ``activation_bits``,
            ``activation_choices``, ``overrides``, ``pinned``, ``pin_first_last``).

    Raises:
        ValueError: an unknown group name in ``overrides``/``pinned``, a bit-width outside 2..8 and
            16/32 (:class:`SpaceConfig`), or a space with no free group.

    Example:
    >>> space = SearchSpace(["dense", "dense_1"], bits=(4, 8))
    >>> space.size()
    4
    >>> space.decode((4, 8)).weight_bits
    (4, 8)
    """

    def __init__(self, group_names: Sequence[str], bits: Sequence[int] = QUANT_BITS, *, model=None,
                 config: SpaceConfig | None = None, **options):
        if config is None:
            config = SpaceConfig(bits=bits, **options)
        elif options or tuple(bits) != QUANT_BITS:
            raise ValueError("Invalid arguments: pass the space's options in `config` or as keywords, not both. "
                             f"Received: config={config!r} and {sorted(options) or ['bits']}.")
        self.config = config
        self.group_names: tuple[str, ...] = tuple(group_names)
        if not self.group_names:
            raise ValueError("Invalid value for `group_names`: expected at least one group. Received: ()")
        if len(set(self.group_names)) != len(self.group_names):
            raise ValueError(f"Invalid value for `group_names`: names must be unique. Received: {self.group_names}")
        self.bits = config.bits
        self.search_activations = config.search_activations
        self.activation_bits = config.activation_bits
        self.activation_choices = config.activation_choices or config.bits
        self.model = model
        for what, names in (("overrides", config.overrides), ("pinned", config.pinned)):
            for name in names:
                if name not in self.group_names:
                    raise ValueError(
                        f"Invalid key in `{what}`: no quantizable group named `{name}`. "
                        f"Expected one of {self.group_names}."
                    )
        self.overrides = dict(config.overrides)
        pins: dict[str, tuple[int, int | None]] = {}
        if config.pin_first_last:
            pins[self.group_names[0]] = (8, 8)
            pins[self.group_names[-1]] = (8, 8)
        pins.update(config.pinned)
        self.pinned = pins
        self.pin_first_last = config.pin_first_last
        self.free_groups: tuple[str, ...] = tuple(n for n in self.group_names if n not in pins)
        if not self.free_groups:
            raise ValueError(
                "Invalid search space: every group is pinned, so there is nothing to search. "
                f"Received: pinned={dict(options.get('pinned') or config.pinned)}, "
                f"pin_first_last={config.pin_first_last} for groups {self.group_names}."
            )
        choices = [self.overrides.get(n, self.bits) for n in self.free_groups]
        names = [f"{n}/w" for n in self.free_groups]
        if self.search_activations:
            choices += [self.activation_choices] * len(self.free_groups)
            names += [f"{n}/a" for n in self.free_groups]
        #: the allowed values of each gene, sorted ascending.
        self.choices: tuple[tuple[int, ...], ...] = tuple(choices)
        #: ``"<group>/w"`` or ``"<group>/a"`` for each gene.
        self.gene_names: tuple[str, ...] = tuple(names)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model, **kwargs) -> "SearchSpace":
        """Builds the space of ``model``'s quantizable groups (``tfmpq.quantizable_groups``).

        Args:
            model: a functional or Sequential Keras model.
            **kwargs: the other :class:`SearchSpace` arguments (``config=`` or its fields).

        Returns:
            A :class:`SearchSpace` whose policies are built against ``model``.
        """
        from tfmpq.graph import quantizable_groups  # lazy: the core loads TensorFlow

        groups = quantizable_groups(model)  # walked once; decode() reuses the groups
        return cls([g.name for g in groups], model=groups, **kwargs)

    # -- size and enumeration ------------------------------------------------------------------
    @property
    def num_genes(self) -> int:
        """The chromosome length."""
        return len(self.choices)

    def size(self) -> int:
        """The number of distinct chromosomes (product of each gene's number of choices)."""
        return math.prod(len(c) for c in self.choices)

    def enumerate(self) -> Iterator[Chromosome]:
        """Every chromosome, in lexicographic order of the (ascending) choices."""
        return itertools.product(*self.choices)

    def random(self, rng: random.Random) -> Chromosome:
        """A chromosome drawn uniformly at random with ``rng`` (a ``random.Random``)."""
        return tuple(rng.choice(c) for c in self.choices)

    def nearest(self, index: int, value: float) -> int:
        """The allowed value of gene ``index`` nearest to ``value`` (ties go to the wider bit-width).

        Used to map continuous updates (e.g. BBPSO eq. 7) back onto the candidate bit set.
        """
        return min(self.choices[index], key=lambda b: (abs(b - value), -b))

    def uniform_chromosomes(self) -> list[Chromosome]:
        """One chromosome per bit-width in the bit set: every gene at that width (Šafář, sec. 2.2).

        A gene whose allowed set lacks the width takes its nearest allowed value; with
        ``search_activations=True`` the activation genes take the same width (uniform ``wNaN``).
        Duplicates are dropped, order follows ``bits``.
        """
        out: list[Chromosome] = []
        for b in self.bits:
            genes = tuple(self.nearest(i, b) for i in range(self.num_genes))
            if genes not in out:
                out.append(genes)
        return out

    def uniform_label(self, genes: Sequence[int]) -> str | None:
        """``"4-bit"`` (or ``"w4a4"`` when activations are searched) if ``genes`` is one of
        :meth:`uniform_chromosomes`, else None."""
        genes = tuple(genes)
        for b, u in zip(self.bits, self.uniform_chromosomes_by_bits()):
            if u == genes:
                return f"w{b}a{b}" if self.search_activations else f"{b}-bit"
        return None

    def uniform_chromosomes_by_bits(self) -> list[Chromosome]:
        """Like :meth:`uniform_chromosomes` but one entry per width in ``bits`` (duplicates kept)."""
        return [tuple(self.nearest(i, b) for i in range(self.num_genes)) for b in self.bits]

    # -- chromosome <-> policy -----------------------------------------------------------------
    def validate(self, genes: Sequence[int]) -> Chromosome:
        """Checks ``genes`` belongs to the space and returns it as a tuple of ints.

        Raises:
            PolicyError: wrong length or a value outside its gene's allowed set.
        """
        genes = tuple(int(g) for g in genes)
        if len(genes) != self.num_genes:
            raise PolicyError(
                f"Invalid chromosome: expected {self.num_genes} genes ({', '.join(self.gene_names)}). "
                f"Received: {len(genes)} genes {genes}."
            )
        for name, g, allowed in zip(self.gene_names, genes, self.choices):
            if g not in allowed:
                raise PolicyError(
                    f"Invalid chromosome: gene `{name}` must be one of {allowed}. Received: {g} in {genes}."
                )
        return genes

    def bits_of(self, genes: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(weight_bits, activation_bits)`` of every group (model order) for ``genes``."""
        genes = self.validate(genes)
        k = len(self.free_groups)
        w_free = dict(zip(self.free_groups, genes[:k]))
        a_free = dict(zip(self.free_groups, genes[k:])) if self.search_activations else {}
        wbits, abits = [], []
        for name in self.group_names:
            if name in self.pinned:
                w, a = self.pinned[name]
                wbits.append(w)
                abits.append(self.activation_bits if a is None else a)
            else:
                wbits.append(w_free[name])
                abits.append(a_free.get(name, self.activation_bits))
        return tuple(wbits), tuple(abits)

    def decode(self, genes: Sequence[int]):
        """The :class:`tfmpq.QuantPolicy` of a chromosome.

        Args:
            genes: a chromosome of this space.

        Returns:
            A ``QuantPolicy`` over every group, pinned ones included.

        Raises:
            PolicyError: ``genes`` does not belong to the space.
        """
        from tfmpq.policy import QuantPolicy  # pure Python; imported late to keep imports acyclic

        wbits, abits = self.bits_of(genes)
        if self.model is not None:
            return QuantPolicy.from_bits(self.model, weight_bits=list(wbits), activation_bits=list(abits))
        return QuantPolicy(group_names=self.group_names, weight_bits=wbits, activation_bits=abits)

    def encode(self, policy) -> Chromosome:
        """The chromosome of a policy; inverse of :meth:`decode`.

        Args:
            policy: a ``QuantPolicy`` (anything with ``group_names``, ``weight_bits`` and
                ``activation_bits``).

        Returns:
            The chromosome tuple.

        Raises:
            PolicyError: the policy has other groups, disagrees with a pinned group, or holds a
                bit-width the space does not allow.
        """
        names = tuple(policy.group_names)
        if names != self.group_names:
            raise PolicyError(
                f"Invalid policy for this search space: expected groups {self.group_names}. Received: {names}."
            )
        w = dict(zip(names, policy.weight_bits))
        a = dict(zip(names, policy.activation_bits))
        for name, (pw, pa) in self.pinned.items():
            pa = self.activation_bits if pa is None else pa
            if (w[name], a[name]) != (pw, pa):
                raise PolicyError(
                    f"Invalid policy for this search space: group `{name}` is pinned to w{pw}a{pa}. "
                    f"Received: w{w[name]}a{a[name]}."
                )
        if not self.search_activations:
            for name in self.free_groups:
                if a[name] != self.activation_bits:
                    raise PolicyError(
                        f"Invalid policy for this search space: activations are not searched and are "
                        f"{self.activation_bits}-bit. Received: {a[name]}-bit activations for group `{name}`."
                    )
        genes = [w[n] for n in self.free_groups]
        if self.search_activations:
            genes += [a[n] for n in self.free_groups]
        return self.validate(genes)

    # -- identity ------------------------------------------------------------------------------
    def signature(self) -> dict:
        """A JSON-able description; two spaces with equal signatures produce the same chromosomes, and
        :meth:`from_signature` rebuilds the space from it (a run directory's reader does)."""
        return {
            "group_names": list(self.group_names),
            "gene_names": list(self.gene_names),
            "choices": [list(c) for c in self.choices],
            "pinned": {k: [w, self.activation_bits if a is None else a] for k, (w, a) in self.pinned.items()},
            "activation_bits": self.activation_bits,
            "search_activations": self.search_activations,
            "bits": list(self.bits),
            "activation_choices": list(self.activation_choices),
            "overrides": {k: list(v) for k, v in self.overrides.items()},
            **self.config.added_options(),
        }

    @classmethod
    def from_signature(cls, signature: Mapping) -> "SearchSpace":
        """The space a :meth:`signature` describes (without its model).

        Raises:
            ValueError: a signature too old to hold the bit set (written before ``bits`` was recorded).
        """
        if "bits" not in signature:
            raise ValueError("Invalid value for `signature`: it does not record the space's `bits` "
                             "(a run directory of an older tfmpq). Received keys: " + ", ".join(sorted(signature)))
        known = {f.name for f in dataclasses.fields(SpaceConfig)}
        config = SpaceConfig(**{k: v for k, v in signature.items() if k in known and k not in ("pinned", "overrides")},
                             overrides=signature.get("overrides") or None,
                             pinned={k: tuple(v) for k, v in (signature.get("pinned") or {}).items()})
        return cls(signature["group_names"], config=config)

    def __eq__(self, other) -> bool:
        return isinstance(other, SearchSpace) and self.signature() == other.signature()

    def __repr__(self) -> str:
        return (
            f"SearchSpace(groups={len(self.group_names)}, genes={self.num_genes}, size={self.size()}, "
            f"bits={self.bits}, search_activations={self.search_activations})"
        )
