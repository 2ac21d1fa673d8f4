"""The search space: which bit-widths each quantizable group may take, as a chromosome of genes.

A chromosome is a tuple of ints. It holds one *weight* gene per free (not pinned) group, in the
model's group order (with ``granularity="channel"``: one per cluster of the group's output channels,
the group's clusters in a row), followed — with ``search_activations=True`` — by one *activation* gene
per free group in the same order. Pinned groups carry no gene: their bits are fixed by the space. With
``prune_channels=True`` a cluster gene may also be 0 (the cluster is pruned), except each group's last. The
mapping chromosome <-> :class:`tfmpq.QuantPolicy` is exact in both directions (:meth:`SearchSpace.decode`,
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
from tfmpq.policy import FLOAT_BITS, PRUNED, QUANT_BITS  # the bit-width constants' one owner (TensorFlow-free)

_VALID_BITS = frozenset(QUANT_BITS + FLOAT_BITS)

Chromosome = tuple[int, ...]

#: ``"layer"``: one weight gene per free group; ``"channel"``: one per cluster of a group's output channels.
GRANULARITIES = ("layer", "channel")
#: What orders a group's output channels before they are cut into clusters (``tfmpq.hessian.channel_sensitivity``).
CHANNEL_RANKINGS = ("weight", "hessian")
#: ``channel_clusters`` and ``channel_ranking`` of a channel-wise space when not given.
DEFAULT_CHANNEL_CLUSTERS = 4
DEFAULT_CHANNEL_RANKING = "weight"
#: ``channel_clusters`` of one gene per output channel (Santini's neuron-wise search).
ALL_CHANNELS = "all"


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
        if a is None:  # what a weights-only pin is stored as (a config checked again by `replace`)
            return int(w), None
        _check_bits([a], f"pinned[{name!r}]")
        return int(w), int(a)
    _check_bits([value], f"pinned[{name!r}]")
    return int(value), None


def _check_channel_order(order) -> dict | None:
    """``{group: permutation of its channel indices}`` as tuples; a ValueError names a malformed entry."""
    if order is None:
        return None
    out = {}
    for name, perm in dict(order).items():
        perm = tuple(perm) if isinstance(perm, (tuple, list)) else None
        if not perm or any(isinstance(c, bool) or not isinstance(c, int) for c in perm) \
                or sorted(perm) != list(range(len(perm))):
            raise ValueError(f"Invalid value for `channel_order`: expected, per group, a permutation of its channel "
                             f"indices 0..C-1. Received: channel_order[{name!r}]={order[name]!r}")
        out[str(name)] = perm
    return out


def _check_granularity(config) -> dict:
    """The channel options of ``config`` checked and completed (Keras-style ValueErrors naming the option)."""
    if config.granularity not in GRANULARITIES:
        raise ValueError(f"Invalid value for `granularity`: expected one of {GRANULARITIES}. "
                         f"Received: granularity={config.granularity!r}")
    clusters = config.channel_clusters
    if isinstance(clusters, str) and clusters.strip().isdigit():  # the command line's text
        clusters = int(clusters)
    channel_options = {"channel_clusters": clusters, "channel_ranking": config.channel_ranking,
                       "channel_order": config.channel_order}
    if config.granularity == "layer":
        for name, value in channel_options.items():
            if value is not None:
                raise ValueError(f"Invalid value for `{name}`: expected None with granularity='layer' (it configures "
                                 f"a channel-wise space: pass granularity='channel'). Received: {name}={value!r}")
        if config.prune_channels:
            raise ValueError("Invalid value for `prune_channels`: expected False with granularity='layer' (it prunes "
                             "clusters of a group's output channels: pass granularity='channel'). "
                             "Received: prune_channels=True")
        return channel_options
    clusters = DEFAULT_CHANNEL_CLUSTERS if clusters is None else clusters
    if clusters != ALL_CHANNELS and (isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 1):
        raise ValueError(f"Invalid value for `channel_clusters`: expected an integer >= 1 (clusters of output channels "
                         f"per group) or {ALL_CHANNELS!r} (one per channel). "
                         f"Received: channel_clusters={config.channel_clusters!r}")
    ranking = DEFAULT_CHANNEL_RANKING if config.channel_ranking is None else config.channel_ranking
    if ranking not in CHANNEL_RANKINGS:
        raise ValueError(f"Invalid value for `channel_ranking`: expected one of {CHANNEL_RANKINGS}. "
                         f"Received: channel_ranking={config.channel_ranking!r}")
    floats = sorted({b for b in config.bits + tuple(b for v in config.overrides.values() for b in v) if b in FLOAT_BITS})
    if floats:
        raise ValueError(f"Invalid value for `bits`: a channel-wise space takes widths 2..8 (float is a whole group's "
                         f"choice: pin the group instead). Received: {floats} with granularity='channel'")
    return {"channel_clusters": clusters, "channel_ranking": ranking,
            "channel_order": _check_channel_order(config.channel_order)}


def cluster_channels(order: Sequence[int], num_clusters: int) -> tuple[tuple[int, ...], ...]:
    """``order`` cut into ``min(num_clusters, len(order))`` contiguous clusters of nearly equal size.

    The first ``len(order) % k`` clusters take one channel more (NumPy's ``array_split``); a group with fewer
    channels than ``num_clusters`` (or ``num_clusters="all"``) gets one cluster per channel.

    Example:
    >>> cluster_channels((4, 0, 3, 1, 2), 2)
    ((4, 0, 3), (1, 2))
    """
    k = len(order) if num_clusters == ALL_CHANNELS else min(int(num_clusters), len(order))
    size, extra = divmod(len(order), k)
    out, start = [], 0
    for i in range(k):
        stop = start + size + (i < extra)
        out.append(tuple(order[start:stop]))
        start = stop
    return tuple(out)


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
        granularity: ``"layer"`` (one weight gene per free group) or ``"channel"`` (each free group's
            output channels ordered by ``channel_ranking`` and cut into ``channel_clusters`` contiguous
            clusters of nearly equal size, one gene each; see :func:`cluster_channels`). Defaults to "layer".
        channel_clusters: clusters per group with ``granularity="channel"`` (a group with fewer channels
            gets one per channel), or ``"all"``: one gene per channel. Defaults to None (4 with "channel";
            must stay None with "layer").
        channel_ranking: what orders the channels: ``"weight"`` (each channel's quantization error at
            the lowest candidate width) or ``"hessian"`` (that error times the channel's Hessian trace,
            HAWQ-V3 eq. 7 per channel; needs training data); see ``tfmpq.hessian.channel_sensitivity``.
            Defaults to None ("weight" with "channel": as good as "hessian" in the README's measurement
            ("Channel-wise bits"), free, and it needs no data).
        channel_order: ``{group: its channel indices, least sensitive first}``: the order the clusters
            are cut from, fixed once per space and recorded with the run (a resumed run decodes
            identically). None: ``SearchSpace.from_model`` computes it with ``channel_ranking``.
            Defaults to None.
        prune_channels: with ``granularity="channel"``, each cluster gene may also be 0: the cluster is
            pruned (``tfmpq.policy.PRUNED``: pruning as a 0-bit choice of channel-wise mixed precision,
            Motetti et al. 2024, arXiv 2407.01054). The last cluster of each group, its most sensitive
            channels, is never pruned, so no policy prunes a whole group; a group with ``overrides`` keeps
            exactly its listed widths, a pinned group has no gene. Defaults to False.

    Raises:
        ValueError: a bit-width outside 2..8 and 16/32, an empty set of them, a malformed pin, or a bad
            channel option (an unknown granularity, ``channel_clusters`` < 1, a channel option or
            ``prune_channels`` with granularity "layer", float bits in a channel-wise space, a channel order
            that is not a permutation).

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
    granularity: str = option("layer", Flag("one gene per group (layer), or per cluster of a group's output "
                                            "channels (channel)", choices=GRANULARITIES))
    channel_clusters: int | str | None = option(None, Flag("clusters of output channels (genes) per group with "
                                                           "--granularity channel; 'all': one per channel",
                                                           metavar="K|all",
                                                           default_text=f"{DEFAULT_CHANNEL_CLUSTERS} with "
                                                                        "--granularity channel"))
    channel_ranking: str | None = option(None, Flag("what orders a group's channels before they are clustered",
                                                    choices=CHANNEL_RANKINGS,
                                                    default_text=f"{DEFAULT_CHANNEL_RANKING} with --granularity "
                                                                 "channel"))
    channel_order: Mapping | None = option(None)
    prune_channels: bool = option(False, Flag("let a channel-wise search prune (0 bits) each group's clusters but "
                                              "its most sensitive one", kind="switch", default_text=""))

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
        put("prune_channels", bool(self.prune_channels))
        for name, value in _check_granularity(self).items():
            put(name, value)

    def to_json(self) -> dict:
        """Every option, JSON-able (:meth:`from_json` is the inverse)."""
        out = dataclasses.asdict(self)
        out["bits"] = list(self.bits)
        out["activation_choices"] = None if self.activation_choices is None else list(self.activation_choices)
        out["overrides"] = {k: list(v) for k, v in self.overrides.items()}
        out["pinned"] = {k: list(v) for k, v in self.pinned.items()}
        if self.channel_order is not None:
            out["channel_order"] = {k: list(v) for k, v in self.channel_order.items()}
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


def rank_channels(model, config: SpaceConfig, *, data=None, seed: int = 0) -> dict[str, tuple[int, ...]]:
    """Each group's output channels, least sensitive first (ties by index): a channel-wise space's order.

    The sensitivity is ``tfmpq.hessian.channel_sensitivity(model, config.channel_ranking, ...)`` at each
    group's lowest candidate width (``config.overrides`` or ``config.bits``).

    Raises:
        ValueError: the ``"hessian"`` ranking without ``data``.
    """
    from tfmpq.hessian import channel_sensitivity  # TensorFlow work, only when a model is at hand

    scores = channel_sensitivity(model, config.channel_ranking, bits=min(config.bits), data=data, seed=seed,
                                 group_bits={n: min(v) for n, v in config.overrides.items()})
    return {name: tuple(sorted(range(len(s)), key=lambda c: (float(s[c]), c))) for name, s in scores.items()}


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
            ``activation_choices``, ``overrides``, ``pinned``, ``pin_first_last``, ``granularity``,
            ``channel_clusters``, ``channel_ranking``, ``channel_order``, ``prune_channels``; a channel-wise
            space built here needs ``channel_order``, :meth:`from_model` ranks the channels itself).

    Raises:
        ValueError: an unknown group name in ``overrides``/``pinned``/``channel_order``, a bit-width outside
            2..8 and 16/32 (:class:`SpaceConfig`), a space with no free group, or a channel-wise space
            without the order of a free group (or with one of the wrong length).

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
        self.granularity = config.granularity
        #: whether cluster genes may be 0 (pruned): see ``SpaceConfig.prune_channels``.
        self.prune_channels = config.prune_channels
        #: ``{free group: its channel clusters (tuples of channel indices)}``; empty with granularity "layer".
        self.clusters: dict[str, tuple[tuple[int, ...], ...]] = self._clusters(model)
        if self.clusters:  # the order of the free groups only: what the signature records
            self.config = config = config.replace(channel_order={n: config.channel_order[n] for n in self.free_groups})
        weight = [(n, f"{n}/w{c}" if self.clusters else f"{n}/w") for n in self.free_groups
                  for c in range(len(self.clusters.get(n, ((),))))]
        choices = [self.overrides.get(n, self.bits) for n, _ in weight]
        if config.prune_channels:  # 0 for every cluster but a group's last (most sensitive): no group wholly pruned
            last = {n: f"{n}/w{len(self.clusters[n]) - 1}" for n in self.free_groups}
            choices = [c if n in self.overrides or name == last[n] else (PRUNED,) + tuple(c)
                       for (n, name), c in zip(weight, choices)]
        names = [name for _, name in weight]
        #: the group of each gene (a channel-wise group has one weight gene per cluster).
        self.gene_groups: tuple[str, ...] = tuple(n for n, _ in weight)
        self.num_weight_genes = len(weight)
        if self.search_activations:
            choices += [self.activation_choices] * len(self.free_groups)
            names += [f"{n}/a" for n in self.free_groups]
            self.gene_groups += self.free_groups
        #: the allowed values of each gene, sorted ascending.
        self.choices: tuple[tuple[int, ...], ...] = tuple(choices)
        #: ``"<group>/w"`` (``"<group>/w<cluster>"`` channel-wise) or ``"<group>/a"`` for each gene.
        self.gene_names: tuple[str, ...] = tuple(names)

    def _clusters(self, model) -> dict[str, tuple[tuple[int, ...], ...]]:
        """Each free group's channel clusters, cut from ``config.channel_order`` (checked against the model)."""
        if self.config.granularity != "channel":
            return {}
        order = self.config.channel_order or {}
        missing = [n for n in self.free_groups if n not in order]
        if missing:
            raise ValueError(f"Invalid value for `channel_order`: granularity='channel' needs the channel order of every "
                             f"free group; none for {missing}. Build the space with SearchSpace.from_model(model, ...) "
                             "(it ranks the channels) or pass channel_order.")
        unknown = [n for n in order if n not in self.group_names]
        if unknown:
            raise ValueError(f"Invalid key in `channel_order`: no quantizable group named {unknown}. "
                             f"Expected names among {self.group_names}.")
        channels = {g.name: g.out_channels for g in model} if isinstance(model, (list, tuple)) else {}
        for name in self.free_groups:
            if name in channels and len(order[name]) != channels[name]:
                raise ValueError(f"Invalid value for `channel_order`: group `{name}` has {channels[name]} output "
                                 f"channels. Received an order of {len(order[name])}.")
        return {n: cluster_channels(order[n], self.config.channel_clusters) for n in self.free_groups}

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model, *, data=None, config: SpaceConfig | None = None, **options) -> "SearchSpace":
        """Builds the space of ``model``'s quantizable groups (``tfmpq.quantizable_groups``).

        A channel-wise space without a ``channel_order`` gets one here, fixed for the space's life:
        each group's channels sorted by ``tfmpq.hessian.channel_sensitivity`` (``channel_ranking``), least
        sensitive first, at the group's lowest candidate width.

        Args:
            model: a functional or Sequential Keras model.
            data: ``(x, y)`` arrays the ``"hessian"`` channel ranking estimates its traces on. Defaults to None.
            config: the space's options; None builds a :class:`SpaceConfig` from ``**options``. Defaults to None.
            **options: the :class:`SpaceConfig` fields.

        Returns:
            A :class:`SearchSpace` whose policies are built against ``model``.

        Raises:
            ValueError: invalid options, or the ``"hessian"`` ranking without ``data``.
        """
        from tfmpq.graph import quantizable_groups  # lazy: the core loads TensorFlow

        config = config if config is not None else SpaceConfig(**options)
        groups = quantizable_groups(model)  # walked once; decode() reuses the groups
        if config.granularity == "channel" and config.channel_order is None:
            config = config.replace(channel_order=rank_channels(model, config, data=data))
        return cls([g.name for g in groups], model=groups, config=config)

    def layer_space(self) -> "SearchSpace":
        """This space at granularity "layer" (itself if it is): every layer-wise chromosome's policy is also
        one of a channel-wise space (its clusters share the group's width), so :meth:`encode` maps it here."""
        if not self.clusters:
            return self
        config = self.config.replace(granularity="layer", channel_clusters=None, channel_ranking=None,
                                     channel_order=None, prune_channels=False)
        return SearchSpace(self.group_names, config=config, model=self.model)

    @property
    def weight_labels(self) -> tuple[str, ...]:
        """A name per weight gene: its group's (granularity "layer"), or ``"<group>/w<cluster>"``."""
        return self.gene_names[:self.num_weight_genes] if self.clusters else self.free_groups

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

        Used to map continuous updates (e.g. BBPSO eq. 7) back onto the candidate bit set; where a gene may be
        pruned (``prune_channels``), values below 1 map to 0 (1 itself ties and goes to 2).
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
        k = self.num_weight_genes
        w_free = self._group_weight_bits(genes[:k])
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

    def _group_weight_bits(self, weight_genes: Sequence[int]) -> dict:
        """``{free group: its weight bits}``: the gene itself, or channel-wise one width per channel (in the
        channels' own order) from its cluster's gene (one width for every channel: that int)."""
        if not self.clusters:
            return dict(zip(self.free_groups, weight_genes))
        out, genes = {}, iter(weight_genes)
        for name in self.free_groups:
            clusters = self.clusters[name]
            bits = [0] * sum(len(c) for c in clusters)
            for cluster in clusters:
                width = next(genes)
                for channel in cluster:
                    bits[channel] = width
            out[name] = bits[0] if len(set(bits)) == 1 else tuple(bits)
        return out

    def _weight_genes(self, bits_by_group: Mapping) -> list[int]:
        """The weight genes of the free groups' weight bits; inverse of :meth:`_group_weight_bits`.

        Raises:
            PolicyError: channel-wise bits that differ inside one of the space's clusters.
        """
        if not self.clusters:
            return [bits_by_group[n] for n in self.free_groups]
        genes = []
        for name in self.free_groups:
            bits = bits_by_group[name]
            for i, cluster in enumerate(self.clusters[name]):
                widths = sorted({bits[c] for c in cluster}) if isinstance(bits, tuple) else [bits]
                if len(widths) != 1:
                    raise PolicyError(f"Invalid policy for this search space: the channel bits of group `{name}` differ "
                                      f"inside its cluster {i} (channels {list(cluster)}). Received widths {widths}.")
                genes.append(widths[0])
        return genes

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
            return QuantPolicy.from_bits(self.model, weight_bits=list(wbits), activation_bits=list(abits),
                                         allow_pruning=self.config.prune_channels)
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
        genes = self._weight_genes(w)
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
