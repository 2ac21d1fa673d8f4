"""The ``tfmpq`` command: a thin argparse layer over the library.

Commands (``tfmpq COMMAND --help`` for every option)::

    tfmpq info MODEL                                   groups, parameters, MACs, what stays float
    tfmpq quantize MODEL --bits 8,4,4,8 --data D --epochs N -o OUT
    tfmpq search MODEL --strategy NAME --data D [--resume] -o RUN_DIR   (NAME: the strategy registry's)
    tfmpq export RUN_DIR|QAT_MODEL --data D [--c-array] [--packed [int4|lut|auto]] -o OUT
    tfmpq report RUN_DIR                               tables and plots of a search run

``MODEL`` is a ``.keras`` / ``.h5`` file, a SavedModel folder or ``zoo:NAME`` (``tfmpq.zoo``); ``D``
is a ``tfmpq.data.load`` name or path (default ``default``: the Fashion-MNIST subset shipped with
tfmpq). Exit status: 0 success, 1 an error (one ``tfmpq: error: ...`` line on stderr; ``--debug``
shows the traceback), 2 invalid command-line usage (argparse).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings

from tfmpq._io import captured_stderr, write_json_atomic

__all__ = ["main", "build_parser"]

PROG = "tfmpq"
#: ``tfmpq search`` options that belong to the command line itself (the data, the run, the objective and the
#: budget), with their defaults; the configurations' and the strategies' options are added from their
#: declarations (:func:`search_defaults`). ``--resume`` takes options not given from ``RUN_DIR/cli.json``.
CLI_SEARCH_DEFAULTS = {
    "strategy": "nsga2", "data": "default", "num_train": None, "num_val": None, "val_fraction": 0.1, "seed": 0,
    "objective": "weight_bytes", "budget": "avg_op_bits", "target": 4.0, "rescore": None, "rescore_epochs": 2,
    "rescore_members": None,
}


class CliError(Exception):
    """A user error found by the command line itself (printed as one line, exit status 1)."""


# ------------------------------------------------------------------------------------ parsing
def _int_list(text: str) -> list[int]:
    """``"8,4,4,8"`` -> ``[8, 4, 4, 8]``; argparse turns the ValueError into a usage error."""
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 8,4,4,8. Received: {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer. Received: {text!r}")
    return values


def _target(text: str):
    """A budget target: a number, or ``uN`` (uniform N-bit's value of the metric)."""
    text = text.strip()
    if text[:1] in ("u", "U") and text[1:].isdigit():
        return "u" + text[1:]
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or uN (e.g. u4). Received: {text!r}") from None


def _resolve_target(model, opts: dict) -> float:
    """``--target``: a number as given, ``uN`` the budget metric of uniform N-bit weights (and activations
    when they are searched)."""
    target = opts["target"]
    if not isinstance(target, str):
        return float(target)
    from tfmpq import QuantPolicy, metrics

    bits = int(target[1:])
    if bits not in range(2, 9):
        raise CliError(f"Invalid value for `--target`: expected uN with N in 2..8. Received: {target}.")
    act = bits if opts["search_activations"] else opts["activation_bits"]
    return float(metrics.summary(model, QuantPolicy.uniform(model, bits, act))[opts["budget"]])


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum`` (``what`` names it in the error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}. Received: {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")
#: How ``tfmpq.options.Flag.type`` values are parsed.
_FLAG_TYPES = {"str": str, "float": float, "positive_int": _positive_int, "non_negative_int": _non_negative_int,
               "ints": _int_list}


def _add_data_args(p: argparse.ArgumentParser, default=argparse.SUPPRESS, val: bool = True,
                   test: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default=default, metavar="D",
                   help="dataset name or path for tfmpq.data.load (fashion_mnist, mnist, cifar10, cifar100, "
                        "digits, a .npz or an image folder). Default: default (the Fashion-MNIST subset "
                        "shipped with tfmpq)")
    g.add_argument("--num-train", type=_positive_int, default=argparse.SUPPRESS if default is argparse.SUPPRESS
                   else None, metavar="N",
                   help="class-balanced subset (drawn with --seed) of the training samples left after the fixed "
                        "validation split")
    if val:
        g.add_argument("--num-val", type=_positive_int, default=argparse.SUPPRESS if default is argparse.SUPPRESS
                       else None, metavar="N",
                       help="use a fixed class-balanced subset of N samples of the validation split")
        g.add_argument("--val-fraction", type=float, default=argparse.SUPPRESS if default is argparse.SUPPRESS
                       else 0.1, metavar="F",
                       help="share of the training split held out for validation: a fixed draw, the same for "
                            "every --seed and --num-train (zoo checkpoints: the share they were trained "
                            "without). Default: 0.1")
        g.add_argument("--val", action=_RefuseValSplit, nargs="?", help=argparse.SUPPRESS)
    if test:
        g.add_argument("--num-test", type=_positive_int, default=None, metavar="N",
                       help="class-balanced subset of the test split used for the reported accuracy (default: all)")


class _RefuseValSplit(argparse.Action):
    """``--val``: refused by name. Validation is a fixed share of the training split; the test split is
    only ever reported on, never used to score or choose (issue 12)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"argument --val: there is no choice of validation split (you gave {values!r}): "
                     "validation is a fixed share of the training split (--val-fraction, --num-val), and the "
                     "test split is only reported on, never used to score or choose a policy")


# ------------------------------------------------------------------------ the generated search options
def _config_options() -> tuple:
    """The evaluator's and the space's options that have a flag (``EvaluatorConfig``, ``SpaceConfig``)."""
    from tfmpq.evaluate.config import EvaluatorConfig
    from tfmpq.options import options_of
    from tfmpq.search.space import SpaceConfig

    return tuple(o for o in options_of(EvaluatorConfig) + options_of(SpaceConfig) if o.flag is not None)


def _strategy_options() -> dict:
    """``{option name: Option}`` of every command-line strategy option, first declaration first."""
    from tfmpq.search import registry

    out = {}
    for name in registry.names(cli=True):
        for o in registry.get(name).options:
            if o.flag is not None:
                out.setdefault(o.name, o)
    return out


def _takers(option_name: str) -> list[str]:
    """The command-line strategies that take a strategy option."""
    from tfmpq.search import registry

    return [n for n in registry.names(cli=True) if option_name in registry.get(n).option_defaults()]


def _cli_value(option, value):
    """An option's value as the command line spells it (``--per-tensor``: ``not per_channel``)."""
    return (not value) if option.flag.invert else value


def search_defaults() -> dict:
    """Every ``tfmpq search`` option's default, by its ``cli.json`` name (strategy-dependent ones: the option's
    own default; :func:`_search_options` applies the strategy's)."""
    out = dict(CLI_SEARCH_DEFAULTS)
    for o in _config_options():
        out[o.dest] = _cli_value(o, o.default)
    for o in _strategy_options().values():
        out[o.dest] = o.default
    return out


def _strategy_default(name: str, option):
    """The command line's default of a configuration option under strategy ``name``."""
    from tfmpq.search import registry

    if not option.flag.per_strategy:
        return _cli_value(option, option.default)
    return _cli_value(option, registry.get(name).defaults.get(option.name, option.default))


def _default_text(option, strategies: list[str] | None = None) -> str:
    """The help's "Default: ..." (per strategy where the strategies' defaults differ)."""
    flag = option.flag
    if flag.default_text is not None:
        return f" Default: {flag.default_text}" if flag.default_text else ""

    def show(value):
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, (tuple, list)):
            return ",".join(map(str, value))
        return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    if strategies is not None and flag.per_strategy:
        by_value: dict = {}
        for name in strategies:
            by_value.setdefault(show(_strategy_default(name, option)), []).append(name)
        if len(by_value) > 1:
            return " Default: " + ", ".join(f"{v} ({', '.join(names)})" for v, names in by_value.items())
    return f" Default: {show(_cli_value(option, option.default))}"


def _add_flag(group, option, strategies: list[str] | None = None, prefix: str = "") -> None:
    """One generated flag (its value defaults to absent: given flags are told from defaults)."""
    flag = option.flag
    help_text = (prefix + flag.help + ("." if flag.help else "")).strip() + _default_text(option, strategies)
    kwargs = dict(default=argparse.SUPPRESS, help=help_text.strip(), dest=option.dest)
    if flag.kind == "switch":
        kwargs["action"] = "store_true"
    elif flag.kind == "toggle":
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = _FLAG_TYPES[flag.type]
        if flag.choices:
            kwargs["choices"] = flag.choices
        if flag.metavar:
            kwargs["metavar"] = flag.metavar
    group.add_argument(option.flag_name, **kwargs)


def _add_search_parser(sub, common) -> None:
    """``tfmpq search``: its strategies, their options and the configurations' flags come from the registry
    and the configuration dataclasses."""
    from tfmpq.metrics import COST_METRICS, TRADED_METRICS
    from tfmpq.search import registry

    strategies = list(registry.names(cli=True))
    entries = [registry.get(n) for n in strategies]
    budgeted = [e.name for e in entries if e.constrained]
    fronts = [e.name for e in entries if not e.constrained]
    linear = [e.name for e in entries if e.weights_only]  # their costs are sums of per-group terms
    lines = "; ".join(f"{e.name}: {e.summary}" for e in entries)
    p = sub.add_parser("search", parents=[common], allow_abbrev=False,
                       help=f"mixed-precision policy search ({', '.join(strategies)})",
                       description=f"Search per-group bit-widths. {lines}. A budget is e.g. --budget avg_op_bits "
                                   "--target 4, or --budget weight_bytes --target u4: uniform 4-bit's bytes. "
                                   "Everything goes to RUN_DIR; --resume continues a killed run (options not given "
                                   "are taken from RUN_DIR/cli.json).")
    p.add_argument("model", metavar="MODEL", help="a .keras/.h5 file (tf_keras or Keras 3), a SavedModel folder or zoo:NAME")
    p.add_argument("--strategy", choices=tuple(strategies), default=argparse.SUPPRESS,
                   help=f"{lines}. Default: {CLI_SEARCH_DEFAULTS['strategy']}")
    _add_data_args(p)
    evaluation, space = p.add_argument_group("evaluation of a candidate"), p.add_argument_group("search space")
    for o in _config_options():
        _add_flag(space if o.name in _space_fields() else evaluation, o, strategies)
    evaluation.add_argument("--rescore", choices=("qat",), default=argparse.SUPPRESS,
                            help="two-stage search: re-score the final front (a budgeted search: the best) with stand-alone QAT "
                                 "(--rescore-epochs each; rescored.json). Default: none")
    evaluation.add_argument("--rescore-epochs", type=_positive_int, default=argparse.SUPPRESS, help="Default: 2")
    evaluation.add_argument("--rescore-members", type=_positive_int, default=argparse.SUPPRESS,
                            help="re-score at most this many front members, spread evenly along the cost. Default: all")
    g = p.add_argument_group(f"front ({', '.join(fronts)})")
    g.add_argument("--objective", choices=TRADED_METRICS, default=argparse.SUPPRESS,
                   help="the cost traded against accuracy (flash_bytes: the weights as `tfmpq export --packed "
                        "auto` stores them; flash_bytes_int4 / _lut: --packed int4 / lut). Default: weight_bytes")
    g = p.add_argument_group(f"budget ({', '.join(budgeted)})")
    g.add_argument("--budget", choices=COST_METRICS, default=argparse.SUPPRESS,
                   help="the constrained metric (e.g. --budget flash_bytes --target 65536: fits in 64 KiB of "
                        f"flash; {' and '.join(linear)} need a metric linear in each group's bits: not flash_bytes). "
                        "Default: avg_op_bits")
    g.add_argument("--target", type=_target, default=argparse.SUPPRESS, metavar="T|uN",
                   help="budget: metric <= T, or uN: the metric's value for uniform N-bit weights (and "
                        "N-bit activations when they are searched). Default: 4.0")
    added = set()
    for e in entries:
        mine = [o for o in e.options if o.flag is not None and o.name not in added]
        if mine:
            g = p.add_argument_group(e.name)
            for o in mine:
                takers = _takers(o.name)
                _add_flag(g, o, prefix="" if takers == [e.name] else f"{' / '.join(takers)}: ")
                added.add(o.name)
    _add_search_run_args(p)


def _space_fields() -> set:
    from tfmpq.search.space import SpaceConfig

    return {f for f in SpaceConfig.__dataclass_fields__}


def build_parser() -> argparse.ArgumentParser:
    """The ``tfmpq`` argument parser (exposed for documentation and tests)."""
    # No abbreviated flags: `--val test` must not silently mean `--val-fraction test`.
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")

    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog=PROG, parents=[common],
        description="Find, train and deploy mixed-precision (per-layer N-bit) quantized Keras models.",
        epilog="MODEL is a .keras/.h5 file (saved by tf_keras or Keras 3), a SavedModel folder or zoo:NAME. "
               "Run `tfmpq COMMAND --help` for the options of each command.")
    from tfmpq import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    for add in (_add_info_parser, _add_quantize_parser, _add_search_parser, _add_export_parser, _add_report_parser):
        add(sub, common)
    return parser


def _add_info_parser(sub, common) -> None:
    p = sub.add_parser("info", parents=[common], allow_abbrev=False, help="quantizable groups of a model and what stays float",
                       description="Print a model's quantizable groups (index, name, kind, folded layers, "
                                   "parameters after BN folding, MACs) and the weighted layers left in float.")
    p.add_argument("model", metavar="MODEL", help="a .keras/.h5 file (tf_keras or Keras 3), a SavedModel folder or zoo:NAME")
    p.add_argument("--json", action="store_true", help="print the groups as JSON instead of a table")



def _add_quantize_parser(sub, common) -> None:
    p = sub.add_parser("quantize", parents=[common], allow_abbrev=False, help="QAT-train one per-layer policy",
                       description="Quantize MODEL with a per-group policy, train it with quantization-aware "
                                   "training and save OUT/qat.h5, OUT/policy.json and OUT/metrics.json.")
    p.add_argument("model", metavar="MODEL", help="a .keras/.h5 file (tf_keras or Keras 3), a SavedModel folder or zoo:NAME")
    p.add_argument("--bits", type=_int_list, required=True, metavar="B[,B...]",
                   help="weight bits: one value for every group or one per group in `tfmpq info` order "
                        "(2..8; 16 or 32 keep a group in float)")
    p.add_argument("--activation-bits", type=_int_list, default=[8], metavar="B[,B...]",
                   help="activation bits, one value or one per group. Default: 8")
    p.add_argument("--epochs", type=_non_negative_int, default=1, help="QAT epochs (0: calibrate only). Default: 1")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="Default: 64")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="Default: 1e-4")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)")
    p.add_argument("--seed", type=int, default=0, help="Default: 0")
    _add_data_args(p, default="default")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")



def _add_search_run_args(p) -> None:
    """``tfmpq search``'s run and parallel-evaluation flags."""
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="Default: 0")
    g.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    g.add_argument("--overwrite", action="store_true", help="replace a previous run in RUN_DIR")
    g.add_argument("--finetune", type=_non_negative_int, default=0, metavar="EPOCHS",
                   help="QAT-fine-tune the front (a budgeted search: the best) afterwards. Default: 0")
    g.add_argument("--compare", type=_non_negative_int, default=0, metavar="EPOCHS",
                   help="a front: afterwards fine-tune the uniform policies and the front members that may reach "
                        "uniform 8-bit accuracy, EPOCHS each, choose on validation and report on the test split "
                        "(Result.compare_with_uniform; comparison.json). Default: 0 (no comparison)")
    g.add_argument("--quiet", action="store_true", help="no per-generation progress")
    g = p.add_argument_group("parallel evaluation (same seed, same search on any executor; QAT on CPU: scores also depend on TensorFlow's thread count, see the README)")
    g.add_argument("--executor", choices=("serial", "process", "ray"), default="serial",
                   help="serial: this process; process: local worker processes; ray: Ray actors "
                        "(pip install tfmpq[ray]). Default: serial")
    g.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="worker processes / Ray actors. Default: one per CPU (ray: what the cluster holds)")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join, e.g. auto or ray://head:10001. Default: start a local Ray")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                   help="GPUs each Ray actor reserves (0.5: two per GPU). Default: 0")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run directory")



def _add_export_parser(sub, common) -> None:
    p = sub.add_parser("export", parents=[common], allow_abbrev=False, help="export a run's models or a QAT model to .tflite",
                       description="Export to full-integer .tflite files (sub-8-bit weights on their grid in "
                                   "int8 containers; --packed int4|lut|auto: stored at their bit-width) and report "
                                   "their accuracy on the TFLite Micro interpreter. SOURCE is a `tfmpq search` run "
                                   "directory (exports its front, or the best policy of a budgeted search; each "
                                   "is rebuilt as the search scored it, or fine-tuned with --finetune), a "
                                   "`tfmpq quantize` output folder, or a QAT .h5 file.")
    p.add_argument("source", metavar="RUN_DIR|QAT_MODEL")
    _add_data_args(p, default=None, val=False)
    p.add_argument("--members", choices=("front", "best"), default=None,
                   help="run directory: export the front or the best candidate (default: the front, or the best "
                        "of a budgeted search)")
    p.add_argument("--finetune", type=_non_negative_int, default=0, metavar="EPOCHS",
                   help="run directory: fine-tune each member with EPOCHS of QAT before exporting. Default: 0")
    p.add_argument("--model", default=None, help="run directory made from Python (no cli.json): the float MODEL")
    p.add_argument("--c-array", nargs="?", const="", default=None, metavar="NAME",
                   help="also write a C array (.h/.cc) for TFLite Micro (NAME: the C identifier; default from "
                        "the file name)")
    p.add_argument("--packed", nargs="?", const="lut", default=None, choices=("int4", "lut", "auto"),
                   help="store sub-8-bit weights at their bit-width: int4 (<= 4-bit groups as INT4 tensors; LiteRT "
                        "and TFLite Micro), lut (TFLite Micro LUT compression; TFLite Micro only; the default "
                        "of a bare --packed), auto (INT4 at <= 4 bits, LUT at 5..7). Default: int8 containers")
    p.add_argument("--float-io", action="store_true", help="float32 input/output instead of int8")
    p.add_argument("--runtime", choices=("tflm", "litert", "both"), default="tflm",
                   help="interpreter(s) for the accuracy. Default: tflm")
    p.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="data subset seed. Default: 0 (or the run's)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")



def _add_report_parser(sub, common) -> None:
    from tfmpq.metrics import COST_METRICS
    from tfmpq.recipe import FinetuneRecipe

    p = sub.add_parser("report", parents=[common], allow_abbrev=False, help="tables and plots of a search run",
                       description="Print the front (and best / uniform / export) tables of a run and write "
                                   "report.md, pareto.png and the history plot. With --budgets: the most accurate "
                                   "searched policy against the largest uniform one under each budget, fine-tuned "
                                   "alike, chosen on validation, scored on the test split of --test "
                                   "(Result.compare_at_budgets; budgets.json, budget_curve.png).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-o", "--output", default=None, metavar="OUT",
                   help="where report.md and the plots go. Default: RUN_DIR")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    g = p.add_argument_group("held-out accuracy under a budget (a run made by `tfmpq search`)")
    g.add_argument("--budgets", default=None, metavar="auto|N,N,...", type=_budget_list,
                   help="budgets on --cost: auto (midpoints of --num-budgets equal bins between uniform 2- and "
                        "5-bit) or numbers (bytes for byte metrics)")
    g.add_argument("--test", default=None, metavar="D",
                   help="the dataset whose test split scores the comparison. Default: the run's --data")
    g.add_argument("--num-test", type=_positive_int, default=None, metavar="N",
                   help="class-balanced subset of the test split. Default: all")
    g.add_argument("--cost", default=None, choices=COST_METRICS,
                   help="the metric the budgets bound. Default: the run's cost objective")
    g.add_argument("--num-budgets", type=_positive_int, default=8, metavar="N", help="budgets of auto. Default: 8")
    g.add_argument("--candidates-per-budget", type=_positive_int, default=2, metavar="K",
                   help="front members fine-tuned per budget (the best search scores that fit). Default: 2")
    g.add_argument("--finetune-epochs", type=_positive_int, default=None, metavar="EPOCHS",
                   help=f"epochs of the fine-tune recipe. Default: {FinetuneRecipe().epochs}")


def _budget_list(text: str):
    """``auto`` or comma-separated positive numbers."""
    if text.strip() == "auto":
        return "auto"
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or comma-separated numbers, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive budgets, got {text!r}")
    return values


# ------------------------------------------------------------------------------------ helpers
def _print_err(message: str) -> None:
    first = " ".join(str(message).split())  # one line, whatever the exception's text holds
    print(f"{PROG}: error: {first}", file=sys.stderr)


def _import_tensorflow(quiet: bool) -> None:
    # TensorFlow's C++ start-up lines (CUDA probes, absl banners) go to fd 2: a user sees tfmpq's own
    # messages; --debug keeps them.
    with captured_stderr() if quiet else contextlib.nullcontext():
        from tfmpq._keras import tf

        tf.config.list_physical_devices()  # the CUDA probe logs here, once


def _load_qat_model_or_none(spec: str):
    """A tfmpq QAT model saved as .h5 (``tfmpq quantize``'s qat.h5, or its folder), else None."""
    path = os.path.join(spec, "qat.h5") if os.path.isdir(spec) and os.path.isfile(os.path.join(spec, "qat.h5")) \
        else spec
    if not (path.endswith(".h5") and os.path.isfile(path)):
        return None
    import tfmpq
    from tfmpq._keras import keras
    from tfmpq.quantize import is_qat_model

    try:
        with tfmpq.quantize_scope():
            model = keras.models.load_model(path, compile=False)
    except Exception:  # not a QAT model: the plain loader reports what is wrong with it
        return None
    return model if is_qat_model(model) else None


def _load_model(spec: str):
    from tfmpq import zoo

    return zoo.resolve_model(spec)


def _load_data(spec: str, model_spec: str | None = None):
    """The whole dataset: the validation split is carved out of all of it (``tfmpq.data.roles``). For a zoo
    checkpoint trained on padded images of this dataset (``zoo:mobilenet_v1_fmnist``: 28x28 padded to 32x32),
    padded as it was trained (``tfmpq.zoo.checkpoint_dataset``)."""
    from tfmpq import data, zoo

    ds = data.load(spec)
    name = model_spec[len(zoo.ZOO_PREFIX):] if model_spec and model_spec.startswith(zoo.ZOO_PREFIX) else None
    if name in zoo.checkpoints():
        info = zoo.checkpoint_info(name)
        size = info.get("padded_to")
        if size and info["dataset"] == ds.name and len(ds.input_shape) == 3 and max(ds.input_shape[:2]) < size:
            ds = data.pad_to(ds, int(size))
    return ds


def _roles(ds, model_spec: str, num_train=None, num_val=None, val_fraction: float = 0.1, num_test=None,
           seed: int = 0):
    """Train / validation / test of a run: validation fixed (independent of ``--seed`` and
    ``--num-train``) and, for a zoo checkpoint, the images held out when it was trained."""
    from tfmpq import data

    if not 0 < val_fraction < 1:
        raise CliError(f"Invalid value for `--val-fraction`: expected a number in (0, 1). Received: {val_fraction}.")
    _check_validation_held_out(model_spec, ds.name, val_fraction)
    try:
        return data.roles(ds, val_fraction=val_fraction, num_val=num_val, num_train=num_train, num_test=num_test,
                          seed=seed)
    except ValueError as e:
        raise CliError(str(e).replace("`num_", "`--num-").replace("num_train=", "--num-train ")
                       .replace("num_val=", "--num-val ").replace("num_test=", "--num-test ")) from None


def _check_validation_held_out(model_spec: str, data_name: str, val_fraction: float) -> None:
    """A zoo checkpoint is only scored on validation images it was not trained on."""
    from tfmpq import data, zoo

    name = model_spec[len(zoo.ZOO_PREFIX):] if model_spec.startswith(zoo.ZOO_PREFIX) else None
    if name not in zoo.checkpoints():
        return
    info = zoo.checkpoint_info(name)
    trained_on, rule = info["dataset"], info["validation"]
    if data_name == trained_on:
        if abs(val_fraction - rule["fraction"]) > 1e-12 or rule["seed"] != data.VALIDATION_SEED:
            raise CliError(
                f"Invalid value for `--val-fraction`: zoo:{name} was trained on `{trained_on}` minus its fixed "
                f"validation split (fraction {rule['fraction']}, seed {rule['seed']}); another fraction would "
                f"validate on images it learned from. Received: --val-fraction {val_fraction}. Use "
                f"--val-fraction {rule['fraction']} (or --num-val N for fewer validation images).")
        return
    related = {"default", "fashion_mnist"}
    if {data_name, trained_on} <= related:
        raise CliError(
            f"Invalid value for `--data`: zoo:{name} was trained on `{trained_on}`, whose images are drawn from "
            f"the same Fashion-MNIST training split as `{data_name}`'s; a validation split of `{data_name}` would "
            f"include images the model learned from. Use --data {trained_on}, or a checkpoint trained on "
            f"`{data_name}` (tfmpq.zoo.checkpoints()).")


def _check_model_fits_data(model, ds) -> None:
    want = tuple(model.input_shape[1:])
    if any(w is not None and w != h for w, h in zip(want, ds.input_shape)) or len(want) != len(ds.input_shape):
        raise CliError(f"Model input shape {want} does not match dataset `{ds.name}` inputs {ds.input_shape}. "
                       "Pick a model and a dataset that fit (zoo builders take the data's shape automatically).")


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _write_json(path: str, obj) -> None:
    write_json_atomic(path, obj, default=_json_default)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _resolve_for_data(spec: str, ds):
    """``zoo:`` builders get the dataset's input shape and classes; everything else loads as is."""
    from tfmpq import zoo

    if spec.startswith(zoo.ZOO_PREFIX) and spec[len(zoo.ZOO_PREFIX):] in zoo.names():
        return zoo.resolve_model(spec, input_shape=ds.input_shape, num_classes=ds.num_classes)
    return zoo.resolve_model(spec)


# ------------------------------------------------------------------------------------ commands
def cmd_info(args) -> int:
    import tfmpq
    from tfmpq.graph import groups_table

    qat = _load_qat_model_or_none(args.model)
    if qat is not None:  # a `tfmpq quantize` output: show its trained policy
        from tfmpq.report import format_table

        rows = [["group", "kind", "weight bits", "activation bits", "per channel"]]
        for name, g in tfmpq.policy_of(qat).items():
            rows.append([name, g["kind"], g["weight_bits"], g["activation_bits"], "yes" if g["per_channel"] else "no"])
        print(f"QAT model `{qat.name}` (tfmpq.quantize_model): {len(rows) - 1} quantized groups")
        print(format_table(rows))
        return 0
    model = _load_model(args.model)
    groups = tfmpq.quantizable_groups(model)
    floats = tfmpq.float_layers(model)
    if args.json:
        print(json.dumps({"model": model.name, "params": int(model.count_params()),
                          "groups": [g.to_dict() for g in groups], "float_layers": floats},
                         indent=1, default=_json_default))
        return 0
    macs = sum(g.macs for g in groups)
    print(f"model `{model.name}`: input {tuple(model.input_shape[1:])}, {model.count_params():,} parameters, "
          f"{len(groups)} quantizable groups, {macs:,} MACs")
    print(groups_table(groups))
    if floats:
        print("stays float:")
        for name, why in floats.items():
            print(f"  {name}: {why}")
    else:
        print("stays float: nothing (every weighted layer is in a group)")
    print("policy: pass one weight bit-width per group, in this order, e.g. "
          f"--bits {','.join(['8'] + ['4'] * max(len(groups) - 2, 0) + (['8'] if len(groups) > 1 else []))}")
    return 0


def _expand_bits(values: list[int]):
    return values[0] if len(values) == 1 else values


def cmd_quantize(args) -> int:
    import tfmpq
    from tfmpq.accuracy import model_accuracy
    from tfmpq.evaluate import Evaluator

    start = time.perf_counter()
    ds = _load_data(args.data, args.model)
    model = _resolve_for_data(args.model, ds)
    _check_model_fits_data(model, ds)
    policy = tfmpq.QuantPolicy.from_bits(model, weight_bits=_expand_bits(args.bits),
                                         activation_bits=_expand_bits(args.activation_bits))
    summary = tfmpq.metrics.summary(model, policy, per_channel=not args.per_tensor)
    roles = _roles(ds, args.model, args.num_train, args.num_val, args.val_fraction, args.num_test, args.seed)
    train, val = roles.train, roles.val
    x_test, y_test = roles.test
    print(f"quantizing `{model.name}` with {policy}")
    print(f"weights {summary['weight_bytes'] / 1024:.2f} KiB (float {summary['float_weight_bytes'] / 1024:.2f} KiB, "
          f"{summary['compression_ratio']:.2f}x), avg weight bits {summary['avg_weight_bits']:.2f}, "
          f"avg op bits {summary['avg_op_bits']:.2f}")
    evaluator = Evaluator(model, train, val, evaluation="qat" if args.epochs else "ptq", epochs=max(args.epochs, 1),
                          batch_size=args.batch_size, seed=args.seed, per_channel=not args.per_tensor,
                          learning_rate=args.learning_rate)
    float_acc = model_accuracy(model, x_test, y_test)
    print(f"training: {len(train[1])} samples, validation: {len(val[1])}, "
          + (f"{args.epochs} QAT epoch(s)" if args.epochs else "calibration only (--epochs 0)"))
    qat, val_acc, info = evaluator.build(policy)
    test_acc = model_accuracy(qat, x_test, y_test)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "qat.h5")
    with warnings.catch_warnings():  # Keras calls .h5 "legacy"; tfmot's QuantizeLayer cannot reload from .keras
        warnings.simplefilter("ignore", UserWarning)
        qat.save(path, include_optimizer=False)
    with open(os.path.join(args.output, "policy.json"), "w", encoding="utf-8") as f:
        f.write(policy.to_json() + "\n")
    record = {
        "model": args.model, "data": args.data, "num_train": args.num_train, "num_val": args.num_val,
        "val_fraction": args.val_fraction, "num_test": len(y_test), "epochs": args.epochs,
        "batch_size": args.batch_size, "learning_rate": args.learning_rate, "per_channel": not args.per_tensor,
        "seed": args.seed, "float_test_accuracy": float_acc, "val_accuracy": val_acc, "test_accuracy": test_acc,
        "history": info, "seconds": time.perf_counter() - start, "metrics": summary,
    }
    _write_json(os.path.join(args.output, "metrics.json"), record)
    print(f"accuracy: validation {_pct(val_acc)}, test {_pct(test_acc)} (float model: test {_pct(float_acc)})")
    print(f"wrote {path}, policy.json, metrics.json in {time.perf_counter() - start:.0f} s")
    print(f"next: tfmpq export {path} --data {args.data} -o {os.path.join(args.output, 'export')}")
    return 0


def _search_options(args) -> dict:
    """The effective search options: given flags, else (``--resume``) the run's cli.json, else defaults (the
    strategy's where its registry entry sets one, e.g. bbpso's 2 epochs)."""
    from tfmpq.search import store

    defaults = search_defaults()
    given = {k: v for k, v in vars(args).items() if k in defaults}
    stored = {}
    if args.resume:
        stored = (store.read_cli_record(args.output) or {}).get("options", {})
    opts = {**defaults, **{k: v for k, v in stored.items() if k in defaults}, **given}
    for o in _config_options():
        if o.dest not in given and o.dest not in stored:
            opts[o.dest] = _strategy_default(opts["strategy"], o)
    opts["bits"] = list(opts["bits"]) if not isinstance(opts["bits"], str) else _int_list(opts["bits"])
    if isinstance(opts["target"], str):
        opts["target"] = _target(opts["target"])
    return opts


def _search_kwargs(args, opts: dict, model) -> dict:
    """The keyword arguments of ``tfmpq.search.search`` for the command line's options."""
    from tfmpq.search import registry

    entry = registry.get(opts["strategy"])
    kwargs = {o.name: _cli_value(o, opts[o.dest]) for o in _config_options()}
    kwargs["bits"] = tuple(kwargs["bits"])
    if entry.weights_only:
        kwargs.pop("search_activations")  # checked by cmd_search
    kwargs.update({o.name: opts[o.dest] for o in entry.options if o.flag is not None})
    if entry.constrained:
        kwargs.update(budget=opts["budget"], target=_resolve_target(model, opts))
    else:
        kwargs["objectives"] = ("accuracy", opts["objective"])
    kwargs.update(
        run_dir=args.output, resume=args.resume, overwrite=args.overwrite, seed=opts["seed"],
        verbose=0 if args.quiet else 1, executor=args.executor, workers=args.workers, ray_address=args.ray_address,
        gpus_per_worker=args.gpus_per_worker, rescore=opts["rescore"], rescore_epochs=opts["rescore_epochs"],
        rescore_members=opts["rescore_members"])
    return kwargs


def _check_search_flags(args, opts: dict) -> None:
    """The flag combinations ``tfmpq search`` refuses before loading anything but the options."""
    from tfmpq.search import registry

    entry = registry.get(opts["strategy"])
    if args.compare and entry.constrained:
        fronts = [n for n in registry.names(cli=True) if not registry.get(n).constrained]
        raise CliError(f"Invalid flags: --compare needs --strategy {' or '.join(fronts)} (it compares a front with "
                       "uniform policies).")
    if entry.weights_only and opts["search_activations"]:
        raise CliError(f"Invalid flags: --strategy {entry.name} allocates weight bits only; drop "
                       "--search-activations.")
    if opts["seed_ilp"] and "seed_ilp" not in entry.option_defaults():
        raise CliError(f"Invalid flags: --seed-ilp seeds {' or '.join(_takers('seed_ilp'))}; --strategy {entry.name} "
                       "does not take it.")
    from tfmpq.search.space import SpaceConfig

    space = {o.name: _cli_value(o, opts[o.dest]) for o in _config_options() if o.name in _space_fields()}
    SpaceConfig(**{**space, "bits": tuple(space["bits"])})  # a bad space option: its ValueError before any loading


def cmd_search(args) -> int:
    from tfmpq import report, search
    from tfmpq.search import store

    if args.resume and args.overwrite:
        raise CliError("Invalid flags: --resume and --overwrite exclude each other.")
    if args.executor == "serial" and (args.workers not in (None, 1) or args.ray_address or args.gpus_per_worker):
        raise CliError("Invalid flags: --workers, --ray-address and --gpus-per-worker need --executor process or ray.")
    if args.executor == "process" and (args.ray_address or args.gpus_per_worker):
        raise CliError("Invalid flags: --ray-address and --gpus-per-worker need --executor ray.")
    opts = _search_options(args)
    _check_search_flags(args, opts)
    previous = store.read_cli_record(args.output) if args.resume else None
    if previous is not None and previous.get("model") != args.model:
        raise CliError(f"Cannot resume {args.output}: it was searched with model {previous.get('model')!r}, "
                       f"not {args.model!r}.")
    ds = _load_data(opts["data"], args.model)
    model = _resolve_for_data(args.model, ds)
    _check_model_fits_data(model, ds)
    roles = _roles(ds, args.model, opts["num_train"], opts["num_val"], opts["val_fraction"], args.num_test,
                   opts["seed"])
    train, val = roles.train, roles.val
    print(f"{opts['strategy']} search of `{model.name}` on {ds.name}: {len(train[1])} training / {len(val[1])} "
          f"validation samples, {opts['evaluation']} evaluation"
          + (f" ({opts['epochs']} epoch(s){' of shared training' if opts['evaluation'] == 'oneshot' else ''})"
             if opts["evaluation"] in ("qat", "oneshot") else "") + f", run dir {args.output}"
          + ("" if args.executor == "serial" else f", {args.executor} executor"
             + (f" with {args.workers} workers" if args.workers else "")))
    record = {"command": "search", "model": args.model, "options": opts, "argv": getattr(args, "_argv", None)}
    if not store.holds_run(args.output) or args.resume or args.overwrite:  # else the search refuses the run dir
        os.makedirs(args.output, exist_ok=True)
        store.write_output(args.output, store.CLI_RECORD, record, default=_json_default)  # first: resumable, exportable
    start = time.perf_counter()
    result = search.search(opts["strategy"], model, train, val, **_search_kwargs(args, opts, model))
    report.write_plots(result)
    seconds = time.perf_counter() - start
    store.write_output(args.output, store.CLI_RECORD, {**record, "seconds": seconds}, default=_json_default)
    if args.quiet:
        print(result.summary())
    print(f"search wall time {seconds:.0f} s ({result.num_evaluated} evaluated here, {result.num_cached} cached)")
    if args.finetune:
        tuned = result.finetune(args.finetune)
        for c in tuned:
            print(f"fine-tuned {list(c.policy.weight_bits)}: validation " + (_pct(c.accuracy) if c.ok else "failed"))
    if args.compare:
        result.compare_with_uniform(test=roles.test, finetune_epochs=args.compare, verbose=0 if args.quiet else 1)
        if args.quiet:
            from tfmpq.search.compare import comparison_text

            print(comparison_text(result.comparison))
    print(f"wrote {args.output}: {store.FRONT}, {store.BEST}, {store.EVALUATIONS}, {store.SUMMARY}, plots"
          + (f", {store.COMPARISON}" if args.compare else ""))
    print(f"next: tfmpq report {args.output}   |   tfmpq export {args.output} -o {os.path.join(args.output, 'export')}")
    return 0


def _c_name(stem: str) -> str:
    import re

    name = re.sub(r"\W", "_", stem)
    return name if name and not name[0].isdigit() else f"model_{name}"


def _export_options(args) -> dict:
    """``export_models`` keyword arguments from the command line."""
    return {"runtimes": ("tflm", "litert") if args.runtime == "both" else (args.runtime,),
            "c_array": False if args.c_array is None else (args.c_array or True),
            "int8_io": not args.float_io, "packed": args.packed}


def _print_export_rows(rows: list[dict]) -> None:
    head = ["file", "weight bits", "storage", "file B", "int8 w B", "packed w B", "flash B", "arena B", "keras acc",
            "TFLM acc"]
    table = [head]
    for r in rows:
        rep = r["report"]
        table.append([
            os.path.basename(rep.path), ",".join(str(b) for b in rep.bits.values()),
            ",".join(rep.storage.values()), str(rep.file_bytes), str(rep.int8_weight_bytes),
            str(rep.stored_weight_bytes if rep.packed else rep.packed_weight_bytes), str(rep.flash_bytes),
            "n/a" if rep.arena_bytes is None else str(rep.arena_bytes),
            _pct(r.get("keras_accuracy")), _pct(r["accuracy"].get("tflm")),
        ])
        if "litert" in r["accuracy"]:
            table[0] = head + ["LiteRT acc"] if len(table[0]) == len(head) else table[0]
            table[-1].append(_pct(r["accuracy"]["litert"]))
    from tfmpq.report import format_table

    print(format_table(table))
    for r in rows:
        for note in r["report"].notes:
            print(f"note ({os.path.basename(r['report'].path)}): {note}")
        if r["report"].c_array:
            print("C array: " + ", ".join(r["report"].c_array))


def cmd_export(args) -> int:
    from tfmpq.search import store

    source = args.source
    if not os.path.exists(source):
        raise FileNotFoundError(f"Export source not found: {source!r}. Expected a `tfmpq search` run directory, "
                                "a `tfmpq quantize` output folder or a QAT .h5 file.")
    if os.path.isdir(source) and os.path.isfile(os.path.join(source, "qat.h5")) and not store.is_run_dir(source):
        source = os.path.join(source, "qat.h5")
    if store.is_run_dir(source):
        return _export_run(args, source)
    if os.path.isdir(source):
        raise CliError(f"Cannot export {source!r}: it is neither a search run directory (front.json, "
                       "evaluations.jsonl) nor a `tfmpq quantize` output folder (qat.h5).")
    return _export_model(args, source)


def _export_model(args, path: str) -> int:
    import tfmpq
    from tfmpq._keras import keras
    from tfmpq.export.models import export_models
    from tfmpq.quantize import is_qat_model

    start = time.perf_counter()
    seed = getattr(args, "seed", 0)
    try:
        with tfmpq.quantize_scope():
            qat = keras.models.load_model(path, compile=False)
    except Exception as e:  # a corrupt or foreign file: one clear line
        raise CliError(f"Cannot load a tfmpq QAT model from {path}: {type(e).__name__}: {e}") from e
    if not is_qat_model(qat):
        raise CliError(f"{path} is not a tfmpq QAT model (no quantized group). Quantize it first: "
                       f"tfmpq quantize {path} --bits ... -o OUT")
    ds = _load_data(args.data or "default")
    _check_model_fits_data(qat, ds)
    roles = _roles(ds, "", num_train=args.num_train, num_test=args.num_test, seed=seed)
    x_test, y_test = roles.test
    os.makedirs(args.output, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem == "qat":
        stem = os.path.basename(os.path.dirname(os.path.abspath(path))) or "model"
    rows = export_models([(_c_name(stem), qat, {"source": path})], args.output, roles.train[0][:256],
                         test=(x_test, y_test), **_export_options(args))
    _print_export_rows(rows)
    print(f"exported in {time.perf_counter() - start:.0f} s; accuracy on {len(y_test)} test samples of {ds.name}")
    return 0


def _export_evaluator(model, roles, ev_sig: dict, opts: dict):
    """The evaluator a run's members are rebuilt with: the run's recorded settings (``run.json``), the
    command line's where it recorded none. A one-shot run's members are fine-tuned with QAT, never scored
    on a shared model."""
    from tfmpq.evaluate import Evaluator, EvaluatorConfig

    evaluation = ev_sig.get("evaluation", opts["evaluation"])
    config = EvaluatorConfig(
        evaluation="qat" if evaluation == "oneshot" else evaluation,
        epochs=max(int(ev_sig.get("epochs") or opts["epochs"] or 1), 1),
        batch_size=int(ev_sig.get("batch_size", opts["batch_size"])),
        per_channel=bool(ev_sig.get("per_channel", not opts["per_tensor"])),
        symmetric=bool(ev_sig.get("symmetric", True)),
        learning_rate=float(ev_sig.get("learning_rate") or opts["learning_rate"]),
        calibration_batches=int(ev_sig.get("calibration_batches", 4)),
    )
    return Evaluator(model, roles.train, roles.val, config, seed=int(ev_sig.get("seed", opts["seed"])))


def _export_run(args, run_dir: str) -> int:
    from tfmpq.evaluate import Candidate
    from tfmpq.export.models import export_models, member_file_name
    from tfmpq.search import store

    start = time.perf_counter()
    files = store.read_run(run_dir)
    record, run = files.cli, files.signature
    model_spec = args.model or (record or {}).get("model")
    if model_spec is None:
        raise CliError(f"Cannot export {run_dir}: it has no {store.CLI_RECORD} (it was not made by `tfmpq search`). "
                       "Pass the float model with --model MODEL (and --data), or export from Python with "
                       "result.export(...).")
    opts = dict(search_defaults(), **((record or {}).get("options") or {}))
    if args.data is not None:
        opts["data"] = args.data
    if getattr(args, "num_train", None) is not None:
        opts["num_train"] = args.num_train
    if hasattr(args, "seed"):
        opts["seed"] = args.seed
    ev_sig = run.get("evaluator") if isinstance(run.get("evaluator"), dict) else {}
    if ev_sig.get("evaluation", opts["evaluation"]) == "oneshot" and not args.finetune:
        raise CliError(f"Cannot export {run_dir} as searched: its scores come from a shared one-shot model, "
                       "not a model of each policy. Add --finetune EPOCHS (stand-alone QAT of each member).")
    members = args.members or ("best" if run.get("constraint") else "front")
    chosen = ([files.best] if files.best else []) if members == "best" else (files.front or [])
    if not chosen:
        raise CliError(f"Nothing to export in {run_dir}: no {store.BEST if members == 'best' else store.FRONT} "
                       "(did the search finish? `tfmpq search ... --resume` completes it).")
    ds = _load_data(opts["data"], model_spec)
    model = _resolve_for_data(model_spec, ds)
    roles = _roles(ds, model_spec, opts["num_train"], opts["num_val"], opts["val_fraction"], args.num_test,
                   opts["seed"])
    x_test, y_test = roles.test
    evaluator = _export_evaluator(model, roles, ev_sig, opts)
    now = evaluator.signature()
    for key in ("weights_sha1", "data_sha1"):
        if ev_sig.get(key) and now.get(key) and ev_sig[key] != now[key]:
            print(f"warning: the {'model weights' if key == 'weights_sha1' else 'data'} differ from the search's "
                  f"({key}); accuracies will differ from the run's", file=sys.stderr)
    os.makedirs(args.output, exist_ok=True)
    print(f"exporting {len(chosen)} {'member(s) of the front' if members != 'best' else 'best candidate'} of "
          f"{run_dir} (rebuilt with {'%d epoch(s) of fine-tuning' % args.finetune if args.finetune else evaluator.evaluation})")
    items = []
    for i, data in enumerate(chosen):
        cand = Candidate.from_json(data)
        if args.finetune:
            tuned, qat = evaluator.finetune(cand.policy, args.finetune)
            val_acc = tuned.accuracy
        else:
            qat, val_acc, _ = evaluator.build(cand.policy)
        genes = cand.genes if cand.genes is not None else cand.policy.weight_bits
        items.append((member_file_name(i, genes), qat,
                      {"genes": list(genes), "search_accuracy": cand.accuracy, "val_accuracy": val_acc,
                       "metrics": cand.metrics}))
    rows = export_models(items, args.output, evaluator.representative_data(), test=(x_test, y_test),
                         **_export_options(args))
    _print_export_rows(rows)
    print(f"exported in {time.perf_counter() - start:.0f} s; accuracy on {len(y_test)} test samples of {ds.name}; "
          f"wrote {os.path.join(args.output, 'export.json')}")
    return 0


def cmd_report(args) -> int:
    from tfmpq import report

    run = report.load_run(args.run_dir)
    out_dir = args.output or args.run_dir
    text, files = report.write_report(run, out_dir, plots=not args.no_plots)
    print(text)
    if files:
        print("wrote " + ", ".join(files))
    if args.budgets is not None:
        return _report_budgets(args, out_dir)
    return 0


def _report_budgets(args, out_dir: str) -> int:
    """``tfmpq report RUN --budgets ...``: the run resumed (nothing is scored again), then
    ``Result.compare_at_budgets`` on the test split of ``--test`` and its picture."""
    from tfmpq import report, search
    from tfmpq.recipe import FinetuneRecipe
    from tfmpq.search import store
    from tfmpq.search.budgets import budgets_to_json

    record = store.read_cli_record(args.run_dir)
    if record is None:
        raise CliError(f"Cannot compare {args.run_dir} at budgets: it has no {store.CLI_RECORD} (it was not made by "
                       "`tfmpq search`). From Python: result.compare_at_budgets(test=..., budgets=...).")
    opts = dict(search_defaults(), **(record.get("options") or {}))
    ds = _load_data(opts["data"], record["model"])
    model = _resolve_for_data(record["model"], ds)
    roles = _roles(ds, record["model"], opts["num_train"], opts["num_val"], opts["val_fraction"], args.num_test,
                   opts["seed"])
    test = roles.test
    if args.test is not None and args.test != opts["data"]:
        other = _load_data(args.test, record["model"])
        _check_model_fits_data(model, other)
        test = _roles(other, "", num_test=args.num_test, seed=opts["seed"]).test
    resumed = argparse.Namespace(output=args.run_dir, resume=True, overwrite=False, quiet=True, executor="serial",
                                 workers=None, ray_address=None, gpus_per_worker=0.0)
    result = search.search(opts["strategy"], model, roles.train, roles.val, **_search_kwargs(resumed, opts, model))
    recipe = FinetuneRecipe() if args.finetune_epochs is None else FinetuneRecipe(epochs=args.finetune_epochs)
    out = result.compare_at_budgets(test=test, budgets=args.budgets, cost=args.cost, recipe=recipe,
                                    candidates_per_budget=args.candidates_per_budget, num_budgets=args.num_budgets,
                                    verbose=1)
    if not args.no_plots:
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, store.BUDGET_PLOT)
        report.plot_budget_curve(budgets_to_json(out), path)
        print(f"wrote {path} and {os.path.join(args.run_dir, store.BUDGETS)}")
    return 0


COMMANDS = {"info": cmd_info, "quantize": cmd_quantize, "search": cmd_search, "export": cmd_export,
            "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    """Runs the ``tfmpq`` command line.

    Args:
        argv: the arguments (without the program name). Defaults to ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 1 on an error (reported as one line on stderr).

    Raises:
        SystemExit: with status 2 for invalid usage (argparse), 0 for ``--help``/``--version``.

    Example:
    >>> main(["info", "zoo:small_cnn_fmnist"])  # doctest: +SKIP
    0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args._argv = argv
    debug = getattr(args, "debug", False)
    from tfmpq.errors import TfmpqError

    try:
        _import_tensorflow(quiet=not debug)
        return COMMANDS[args.command](args)
    except (CliError, TfmpqError, FileNotFoundError, ValueError, TypeError, ImportError, OSError) as e:
        if debug:
            raise
        _print_err(str(e) or type(e).__name__)
        return 1
    except Exception as e:  # anything else (a TensorFlow runtime error, a bug): still one line
        if debug:
            raise
        _print_err(f"unexpected {type(e).__name__}: {e} (run again with --debug for the traceback)")
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        _print_err("interrupted" + (" (a search resumes with --resume)" if args.command == "search" else ""))
        return 130


if __name__ == "__main__":
    sys.exit(main())
