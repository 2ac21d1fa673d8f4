"""QuantPolicy: the bit-widths of every quantizable group, for weights and activations.

A policy is an immutable value: it compares, hashes and round-trips through JSON, and its
`genes` (one weight bit-width per group, in the network's topological order) are the chromosome the
searches work on. Bits 2..8 mean "quantize to that many bits"; 16 or 32 mean "leave in float".

Channel-wise bits: a group's weight bits may also be one bit-width per output channel, a tuple of
2..8 (and 0 = the channel is pruned: its output is zero and export removes it), in the channel order
of the kernel's last axis: Conv1D / Conv2D filters, Dense units, and for DepthwiseConv2D the
``in_channels x depth_multiplier`` outputs in TFLite's order (input channel major). A sequence whose
channels all share one width *is* that width (stored as the int), so a per-layer policy has one
representation. A float group (16/32) is float as a whole.
"""
from __future__ import annotations

import dataclasses
import json
import numbers
from typing import Iterable, Sequence

from tfmpq.errors import PolicyError
from tfmpq.graph import QuantGroup, model_signature, quantizable_groups

QUANT_BITS = (2, 3, 4, 5, 6, 7, 8)
FLOAT_BITS = (16, 32)
ALLOWED_BITS = QUANT_BITS + FLOAT_BITS
#: The bit-width of a pruned channel (channel-wise bits only).
PRUNED = 0
_ALLOWED_TEXT = "an integer in 2..8, or 16/32 for float"


def is_float(bits) -> bool:
    """Whether a bit-width means "leave this tensor in float" (never true of channel-wise bits)."""
    return not isinstance(bits, tuple) and bits in FLOAT_BITS


def is_channel_wise(bits) -> bool:
    """Whether a group's weight bits are one bit-width per output channel (a tuple) rather than one int."""
    return isinstance(bits, tuple)


def widest_bits(bits) -> int:
    """A group's widest weight bit-width: the int itself, or the widest channel."""
    return max(bits) if isinstance(bits, tuple) else bits


def channel_bits(bits, num_channels: int) -> tuple:
    """One bit-width per output channel: `bits` itself, or the group's int repeated `num_channels` times."""
    return bits if isinstance(bits, tuple) else (bits,) * int(num_channels)


def channel_segments(bits, num_channels: int) -> list[tuple[int, tuple]]:
    """The channels of one group grouped by width: what export stores as one sub-tensor per width.

    This order is the one definition of how a channel-wise group deploys (``tfmpq.metrics`` counts its
    bytes from it, ``tfmpq.export`` splits the kernel by it): one segment per width, narrowest first,
    each holding its channels in index order; pruned (0-bit) channels belong to none.

    Args:
        bits: the group's weight bits (an int or a per-channel tuple).
        num_channels: the group's output channels.

    Returns:
        ``[(width, channel indices), ...]``; one segment of every channel for an int.

    Example:
    >>> channel_segments((4, 2, 0, 2), 4)
    [(2, (1, 3)), (4, (0,))]
    """
    if not isinstance(bits, tuple):
        return [(bits, tuple(range(int(num_channels))))]
    return [(w, tuple(c for c, b in enumerate(bits) if b == w)) for w in sorted(set(bits) - {PRUNED})]


def bits_label(bits) -> str:
    """A short text for a group's weight bits: ``"4"``, or for channel-wise bits the count per width,
    narrowest first, e.g. ``"0x2+2x14+4x16"`` (pruned channels as width 0)."""
    if not isinstance(bits, tuple):
        return str(bits)
    return "+".join(f"{w}x{bits.count(w)}" for w in sorted(set(bits)))


def _groups_of(model_or_groups) -> list[QuantGroup]:
    if isinstance(model_or_groups, (list, tuple)) and all(isinstance(g, QuantGroup) for g in model_or_groups):
        return list(model_or_groups)
    return quantizable_groups(model_or_groups)


def _check_bits(value, what: str, group: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PolicyError(
            f"Invalid value for `{what}`: expected {_ALLOWED_TEXT}. Received: {what}={value!r} for group `{group}`."
        )
    value = int(value)
    if value not in ALLOWED_BITS:
        raise PolicyError(
            f"Invalid value for `{what}`: expected {_ALLOWED_TEXT}. Received: {what}={value} for group `{group}`."
        )
    return value


def _is_sequence(value) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, dict))


def _check_weight_bits(value, group: str, num_channels: int | None = None, allow_pruning: bool = True):
    """A group's weight bits: an int (`_check_bits`) or a per-channel sequence, normalised (one width -> int).

    Args:
        value: the bits given for the group.
        group: the group's name (for the messages).
        num_channels: the group's output channels; None skips the length check (no model at hand).
        allow_pruning: accept 0 (pruned) channels. Defaults to True.
    """
    if not _is_sequence(value):
        return _check_bits(value, "weight_bits", group)
    values = list(value)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not (int(v) in QUANT_BITS or int(v) == PRUNED):
            raise PolicyError(
                "Invalid value for `weight_bits`: expected per-channel bit-widths in 2..8"
                + (" (or 0 for a pruned channel)" if allow_pruning else "")
                + f". Received: {v!r} among the channel bits of group `{group}`."
            )
    values = tuple(int(v) for v in values)
    if num_channels is not None and len(values) != num_channels:
        raise PolicyError(
            f"Invalid value for `weight_bits`: group `{group}` has {num_channels} output channels, so its "
            f"per-channel bits need {num_channels} values. Received {len(values)}."
        )
    if not values or all(v == PRUNED for v in values):
        raise PolicyError(
            f"Invalid value for `weight_bits`: group `{group}` must keep at least one channel. Received: "
            f"{len(values)} channel(s), all pruned (0)."
        )
    if PRUNED in values and not allow_pruning:
        raise PolicyError(
            f"Invalid value for `weight_bits`: 0 (a pruned channel) in the channel bits of group `{group}`, "
            "but pruning was not allowed. Pass allow_pruning=True to prune channels."
        )
    return values[0] if len(set(values)) == 1 else values


def _expand(bits, groups: Sequence[QuantGroup], what: str, allow_pruning: bool = False) -> tuple:
    def check(value, g: QuantGroup):
        if what == "weight_bits":
            return _check_weight_bits(value, g.name, g.out_channels, allow_pruning)
        return _check_bits(value, what, g.name)

    if isinstance(bits, dict):
        names = [g.name for g in groups]
        unknown = [k for k in bits if k not in names]
        if unknown:
            raise PolicyError(
                f"Invalid value for `{what}`: unknown group(s) {unknown}. Expected names among {names}."
            )
        missing = [n for n in names if n not in bits]
        if missing:
            raise PolicyError(f"Invalid value for `{what}`: no bit-width for group(s) {missing}.")
        return tuple(check(bits[g.name], g) for g in groups)
    if isinstance(bits, Iterable) and not isinstance(bits, (str, bytes)):
        bits = list(bits)
        if len(bits) != len(groups):
            raise PolicyError(
                f"Invalid value for `{what}`: expected {len(groups)} bit-widths, one per group "
                f"({', '.join(g.name for g in groups)}). Received {len(bits)}: {bits}."
            )
        return tuple(check(b, g) for b, g in zip(bits, groups))
    return tuple(check(bits, g) for g in groups)


@dataclasses.dataclass(frozen=True)
class QuantPolicy:
    """Bits per quantizable group, for weights and activations.

    Build one with `QuantPolicy.uniform`, `QuantPolicy.from_bits` or `QuantPolicy.from_genes`; the
    constructor itself checks lengths and values.

    Attributes:
        group_names: the groups' names, in gene order.
        weight_bits: weight bit-width per group (2..8, or 16/32 = float), or for a channel-wise group a
            tuple of one bit-width per output channel (2..8, 0 = pruned; see the module docstring).
        activation_bits: output-activation bit-width per group (2..8, or 16/32 = float).
        signature: fingerprint of the model's group structure the policy was made for.

    Example:
        >>> policy = tfmpq.QuantPolicy.from_bits(model, weight_bits=[8, 4, 4, 8], activation_bits=8)
        >>> policy.genes
        (8, 4, 4, 8)
        >>> mixed = tfmpq.QuantPolicy.from_bits(model, weight_bits=[8, [2] * 16 + [4] * 16, 4, 8])  # conv2: 32 channels
        >>> mixed.weight_bits[1][:3], tfmpq.policy.bits_label(mixed.weight_bits[1])
        ((2, 2, 2), '2x16+4x16')
    """

    group_names: tuple
    weight_bits: tuple
    activation_bits: tuple
    signature: str = ""

    def __post_init__(self):
        n = len(self.group_names)
        for what in ("weight_bits", "activation_bits"):
            bits = getattr(self, what)
            if len(bits) != n:
                raise PolicyError(
                    f"Invalid value for `{what}`: expected {n} bit-widths, one per group. Received {len(bits)}."
                )
            check = _check_weight_bits if what == "weight_bits" else (lambda b, g: _check_bits(b, "activation_bits", g))
            object.__setattr__(self, what, tuple(check(b, g) for b, g in zip(bits, self.group_names)))
        object.__setattr__(self, "group_names", tuple(self.group_names))

    # ---- constructors -------------------------------------------------------------------------
    @classmethod
    def uniform(cls, model, weight_bits: int = 8, activation_bits: int = 8) -> "QuantPolicy":
        """Every group at the same weight and activation bit-width.

        Args:
            model: the float tf_keras or Keras 3 model (or its list of `QuantGroup`s).
            weight_bits: bits for every group's weights. Defaults to 8.
            activation_bits: bits for every group's output activations. Defaults to 8.
        """
        return cls.from_bits(model, weight_bits=int(weight_bits), activation_bits=int(activation_bits))

    @classmethod
    def from_bits(cls, model, weight_bits=8, activation_bits=8, allow_pruning: bool = False) -> "QuantPolicy":
        """A policy from per-group bits: an int (all groups), a list in gene order, or a {name: bits} dict.

        A group's weight bits may be a sequence of one bit-width per output channel (see the module
        docstring for the channel order); activation bits are per group.

        Args:
            model: the float tf_keras or Keras 3 model (or its list of `QuantGroup`s).
            weight_bits: as above. Defaults to 8.
            activation_bits: an int, a list in gene order or a {name: bits} dict. Defaults to 8.
            allow_pruning: accept 0 in per-channel bits (the channel is pruned: zero output, removed at
                export). Defaults to False.

        Raises:
            PolicyError (a ValueError): on a wrong length (of the groups, or of a group's channels), an
                unknown group, a bit-width out of range, a pruned channel without `allow_pruning`, or a
                group with every channel pruned; the message names the group and the allowed values.

        Example:
        >>> p = QuantPolicy.from_bits(model, weight_bits=[8, [2] * 16 + [4] * 16, 4, 8], activation_bits=8)
        """
        groups = _groups_of(model)
        return cls(
            group_names=tuple(g.name for g in groups),
            weight_bits=_expand(weight_bits, groups, "weight_bits", allow_pruning=allow_pruning),
            activation_bits=_expand(activation_bits, groups, "activation_bits"),
            signature=model_signature(groups),
        )

    @classmethod
    def from_genes(cls, model, genes: Sequence, activation_bits=8, allow_pruning: bool = False) -> "QuantPolicy":
        """The policy of a chromosome of weight bit-widths (one gene per group: an int, or a per-channel tuple)."""
        return cls.from_bits(model, weight_bits=list(genes), activation_bits=activation_bits,
                             allow_pruning=allow_pruning)

    # ---- views ---------------------------------------------------------------------------------
    @property
    def genes(self) -> tuple:
        """The chromosome of a per-layer search: weight bits per group, in topological order.

        For a channel-wise group the gene is its tuple of channel bits (so ``from_genes(model,
        policy.genes) == policy`` always holds); a channel-wise search space maps its own, shorter
        chromosome (e.g. one gene per cluster of channels) onto these bits. Per-layer policies' genes are
        the ints they always were.
        """
        return self.weight_bits

    @property
    def is_channel_wise(self) -> bool:
        """Whether some group's weight bits are per channel."""
        return any(isinstance(b, tuple) for b in self.weight_bits)

    def __len__(self) -> int:
        return len(self.group_names)

    def bits_of(self, group: str) -> tuple:
        """(weight bits, activation bits) of the group named `group` (weight bits: an int or a per-channel tuple)."""
        try:
            i = self.group_names.index(group)
        except ValueError:
            raise PolicyError(f"Unknown group `{group}`. Expected one of {list(self.group_names)}.") from None
        return self.weight_bits[i], self.activation_bits[i]

    def replace(self, **bits_by_group) -> "QuantPolicy":
        """A copy with some groups' weight bits changed: `policy.replace(conv2d=4)` (or per-channel bits)."""
        wb = list(self.weight_bits)
        for name, b in bits_by_group.items():
            wb[self.group_names.index(name)] = b
        return dataclasses.replace(self, weight_bits=tuple(wb))

    def check_model(self, model) -> list[QuantGroup]:
        """Check the policy was made for `model`; return the model's groups.

        Raises:
            PolicyError: when the model's groups differ from the policy's (names, count or shapes).
        """
        groups = _groups_of(model)
        names = tuple(g.name for g in groups)
        if names != self.group_names:
            if len(names) != len(self.group_names):
                detail = f"the model has {len(names)} groups, the policy {len(self.group_names)}"
            else:
                diff = [(a, b) for a, b in zip(self.group_names, names) if a != b][:3]
                detail = "group names differ: " + ", ".join(f"policy `{a}` vs model `{b}`" for a, b in diff)
            raise PolicyError(f"This policy was made for another model: {detail}.")
        if self.signature and self.signature != model_signature(groups):
            raise PolicyError(
                "This policy was made for another model: the groups have the same names but different shapes "
                f"(policy signature {self.signature}, model {model_signature(groups)})."
            )
        for g, bits in zip(groups, self.weight_bits):
            if isinstance(bits, tuple) and len(bits) != g.out_channels:
                raise PolicyError(
                    f"Invalid value for `weight_bits`: group `{g.name}` has {g.out_channels} output channels, so its "
                    f"per-channel bits need {g.out_channels} values. Received {len(bits)}."
                )
        return groups

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "groups": list(self.group_names),
            "weight_bits": [list(b) if isinstance(b, tuple) else b for b in self.weight_bits],
            "activation_bits": list(self.activation_bits),
            "signature": self.signature,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "QuantPolicy":
        try:
            return cls(
                group_names=tuple(d["groups"]),
                weight_bits=tuple(d["weight_bits"]),
                activation_bits=tuple(d["activation_bits"]),
                signature=d.get("signature", ""),
            )
        except KeyError as e:
            raise PolicyError(f"Invalid policy JSON: missing key {e}. Expected groups, weight_bits, activation_bits.")

    @classmethod
    def from_json(cls, text: str) -> "QuantPolicy":
        return cls.from_dict(json.loads(text))

    def __str__(self) -> str:
        pairs = ", ".join(f"{n}={bits_label(w)}/{a}" for n, w, a in zip(self.group_names, self.weight_bits,
                                                                       self.activation_bits))
        return f"QuantPolicy(w/a: {pairs})"
