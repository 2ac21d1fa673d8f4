"""Options described once: their default, their help and how the command line spells them.

The configuration dataclasses (``tfmpq.evaluate.EvaluatorConfig``, ``tfmpq.search.SpaceConfig``) declare
each field with :func:`option`, and the strategy registry (``tfmpq.search.registry``) lists each
strategy's :class:`Option` s. ``tfmpq.cli`` generates ``tfmpq search``'s flags, their help and defaults
from these, so an option added to a config or a strategy reaches the command line without an edit there.
Pure Python: no TensorFlow.
"""
from __future__ import annotations

import dataclasses
from typing import Any

#: How a command-line value is parsed (``tfmpq.cli`` maps each to its parser; ``"ints"``: ``4,8``).
FLAG_TYPES = ("str", "float", "positive_int", "non_negative_int", "ints")
#: ``value``: ``--name VALUE``; ``switch``: ``--name`` sets True; ``toggle``: ``--name`` / ``--no-name``.
FLAG_KINDS = ("value", "switch", "toggle")


@dataclasses.dataclass(frozen=True)
class Flag:
    """How an option appears on the command line.

    Attributes:
        help: the help text (``tfmpq.cli`` appends "Default: ..." unless ``default_text`` is "").
        flag: the flag, e.g. ``"--per-tensor"``; "" derives ``--name-with-dashes`` from the option's name.
        kind: one of ``FLAG_KINDS``. Defaults to "value".
        type: one of ``FLAG_TYPES`` (``kind="value"``). Defaults to "str".
        choices: the values allowed. Defaults to ().
        metavar: the value's placeholder in the help. Defaults to None.
        invert: the flag sets the opposite of the option (``--per-tensor``: ``per_channel=False``).
            Defaults to False.
        default_text: the help's "Default: ..." text; None derives it from the default, "" shows none.
            Defaults to None.
        per_strategy: the command line's default is each strategy's (its registry entry's ``defaults``,
            e.g. ``--epochs``: 2 for bbpso); False keeps the option's own default for every strategy.
            Defaults to True.
    """

    help: str
    flag: str = ""
    kind: str = "value"
    type: str = "str"
    choices: tuple = ()
    metavar: str | None = None
    invert: bool = False
    default_text: str | None = None
    per_strategy: bool = True

    def __post_init__(self):
        if self.kind not in FLAG_KINDS:
            raise ValueError(f"Invalid value for `kind`: expected one of {FLAG_KINDS}. Received: kind={self.kind!r}")
        if self.type not in FLAG_TYPES:
            raise ValueError(f"Invalid value for `type`: expected one of {FLAG_TYPES}. Received: type={self.type!r}")


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a configuration or a strategy.

    Attributes:
        name: the keyword argument, e.g. ``"population"``.
        default: its default.
        flag: how ``tfmpq search`` spells it; None keeps it to Python. Defaults to None.
    """

    name: str
    default: Any
    flag: Flag | None = None

    @property
    def dest(self) -> str:
        """The command line's name of the option (its key in ``cli.json``): the flag without dashes."""
        if self.flag is None or not self.flag.flag:
            return self.name
        return self.flag.flag.lstrip("-").replace("-", "_")

    @property
    def flag_name(self) -> str:
        return (self.flag.flag if self.flag is not None and self.flag.flag else "--" + self.name.replace("_", "-"))


def option(default: Any = dataclasses.MISSING, flag: Flag | None = None, **kwargs) -> Any:
    """A dataclass field with its command-line spelling (``flag``) as metadata (see :func:`options_of`)."""
    return dataclasses.field(default=default, metadata={"flag": flag}, **kwargs)


def options_of(config_class) -> tuple[Option, ...]:
    """The :class:`Option` of every field of a configuration dataclass, in field order."""
    return tuple(Option(f.name, f.default, f.metadata.get("flag")) for f in dataclasses.fields(config_class))


def known_fields(config_class, data) -> dict:
    """``data`` as keyword arguments of a configuration dataclass; a ValueError names any other key."""
    names = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"Invalid keys for {config_class.__name__}: {unknown}. Expected some of {names}.")
    return dict(data)
