"""QuantPolicy: the bit-widths of every quantizable group, for weights and activations.

A policy is an immutable value: it compares, hashes and round-trips through JSON, and its
`genes` (one weight bit-width per group, in the network's topological order) are the chromosome the
searches work on. Bits 2..8 mean "quantize to that many bits"; 16 or 32 mean "leave in float".
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
_ALLOWED_TEXT = "an integer in 2..8, or 16/32 for float"


def is_float(bits: int) -> bool:
    """Whether a bit-width means "leave this tensor in float"."""
    return bits in FLOAT_BITS


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


def _expand(bits, groups: Sequence[QuantGroup], what: str) -> tuple:
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
        return tuple(_check_bits(bits[g.name], what, g.name) for g in groups)
    if isinstance(bits, Iterable) and not isinstance(bits, (str, bytes)):
        bits = list(bits)
        if len(bits) != len(groups):
            raise PolicyError(
                f"Invalid value for `{what}`: expected {len(groups)} bit-widths, one per group "
                f"({', '.join(g.name for g in groups)}). Received {len(bits)}: {bits}."
            )
        return tuple(_check_bits(b, what, g.name) for b, g in zip(bits, groups))
    return tuple(_check_bits(bits, what, g.name) for g in groups)


@dataclasses.dataclass(frozen=True)
class QuantPolicy:
    """Bits per quantizable group, for weights and activations.

    Build one with `QuantPolicy.uniform`, `QuantPolicy.from_bits` or `QuantPolicy.from_genes`; the
    constructor itself checks lengths and values.

    Attributes:
        group_names: the groups' names, in gene order.
        weight_bits: weight bit-width per group (2..8, or 16/32 = float).
        activation_bits: output-activation bit-width per group (2..8, or 16/32 = float).
        signature: fingerprint of the model's group structure the policy was made for.

    Example:
        >>> policy = tfmpq.QuantPolicy.from_bits(model, weight_bits=[8, 4, 4, 8], activation_bits=8)
        >>> policy.genes
        (8, 4, 4, 8)
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
            object.__setattr__(self, what, tuple(_check_bits(b, what, g) for b, g in zip(bits, self.group_names)))
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
    def from_bits(cls, model, weight_bits=8, activation_bits=8) -> "QuantPolicy":
        """A policy from per-group bits: an int (all groups), a list in gene order, or a {name: bits} dict.

        Raises:
            PolicyError (a ValueError): on a wrong length, an unknown group or a bit-width out of range;
                the message names the group and the allowed values.
        """
        groups = _groups_of(model)
        return cls(
            group_names=tuple(g.name for g in groups),
            weight_bits=_expand(weight_bits, groups, "weight_bits"),
            activation_bits=_expand(activation_bits, groups, "activation_bits"),
            signature=model_signature(groups),
        )

    @classmethod
    def from_genes(cls, model, genes: Sequence[int], activation_bits=8) -> "QuantPolicy":
        """The policy of a chromosome of weight bit-widths (one gene per group)."""
        return cls.from_bits(model, weight_bits=list(genes), activation_bits=activation_bits)

    # ---- views ---------------------------------------------------------------------------------
    @property
    def genes(self) -> tuple:
        """The chromosome the searches use: weight bits per group, in topological order."""
        return self.weight_bits

    def __len__(self) -> int:
        return len(self.group_names)

    def bits_of(self, group: str) -> tuple[int, int]:
        """(weight bits, activation bits) of the group named `group`."""
        try:
            i = self.group_names.index(group)
        except ValueError:
            raise PolicyError(f"Unknown group `{group}`. Expected one of {list(self.group_names)}.") from None
        return self.weight_bits[i], self.activation_bits[i]

    def replace(self, **bits_by_group: int) -> "QuantPolicy":
        """A copy with some groups' weight bits changed: `policy.replace(conv2d=4)`."""
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
        return groups

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "groups": list(self.group_names),
            "weight_bits": list(self.weight_bits),
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
        pairs = ", ".join(f"{n}={w}/{a}" for n, w, a in zip(self.group_names, self.weight_bits, self.activation_bits))
        return f"QuantPolicy(w/a: {pairs})"
