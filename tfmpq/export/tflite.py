"""export_tflite: a tfmpq QAT model -> a full-integer .tflite that LiteRT and TFLite Micro run as trained.

Steps (each guards one way a deployed model can silently differ from the trained one):
1. refuse what cannot deploy: not a tfmpq QAT model, asymmetric weights (TFLite's int8 conv kernels
   need weight zero point 0), representative data of the wrong shape;
2. build the deployment graph (``deploy.build_deploy_model``): trained on-grid kernels baked in, trained
   activation ranges as fake-quant ops;
3. full-integer conversion (int8 weights and activations, int32 biases; int8 or float I/O);
4. put each 2..7-bit group exactly on its trained grid in the file (``grid.snap_to_grid``: int8
   values = grid indices, scale = trained step) and check it: each b-bit group holds at most 2^b
   distinct values per output channel (per-channel) or per tensor (``count_levels``);
5. optionally store the sub-8-bit groups packed (`packed`): <= 4-bit groups as native INT4 tensors
   (``int4.to_int4``), 2..7-bit groups as TFLite Micro LUT indices + value tables
   (``packed.lut_compress``), per group by ``tfmpq.metrics.choose_storages``; check the packed model
   gives the same outputs as the int8-container model on every runtime that runs it;
6. check the file runs (LiteRT ``allocate_tensors`` + one invoke; TFLite Micro), measure the TFLite
   Micro arena and the weights as stored (``flatbuffer.weight_storage``), then write to a temporary
   file and rename it into place: a failed export never leaves a half-written or unrunnable file.

A group with channel-wise bits is one filter tensor per width (``channels``): steps 4 and 5 and the
level check treat each as a group of its own width; the report shows the group with its ``segments``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile
import warnings

import numpy as np

from tfmpq._keras import keras, tf
from tfmpq._io import captured_stderr, write_bytes_atomic
from tfmpq.checks import check_inputs, num_samples, take_samples
from tfmpq.errors import ExportError
from tfmpq.export.c_array import check_c_name, write_c_array
from tfmpq.export.deploy import build_deploy_model, deployed_segments
from tfmpq.export.flatbuffer import operator_names, weight_storage, weight_tensors, with_keras_io
from tfmpq.export.grid import GridTarget, snap_to_grid
from tfmpq.export.int4 import int4_unsupported_reason, to_int4
from tfmpq.export.levels import count_activation_levels, count_levels
from tfmpq.export.packed import LUT_BITS, lut_compress
from tfmpq.export.runtimes import litert_interpreter, run_tflite, tflm_arena_bytes
from tfmpq.metrics import INT4_MAX_BITS, choose_storages, lut_kernel_bytes, packing_name
from tfmpq.policy import PRUNED, bits_label, widest_bits
from tfmpq.quantize import calibrate, is_qat_model, policy_of, unset_ranges


@dataclasses.dataclass
class ExportReport:
    """What `export_tflite` wrote and what it measured.

    Attributes:
        path: the .tflite file written.
        file_bytes: its size on disk.
        int8_weight_bytes: bytes of the quantized kernels in their int8 containers.
        packed_weight_bytes: bytes the kernels take at their trained bit-widths (ceil(params * b / 8)
            per group; groups left in float count at 8 bits, as deployed). Biases (int32) excluded.
        lut_weight_bytes: with ``packed="lut"`` (or True): bytes of the kernels in the file (LUT indices
            + value tables + 16-byte header; groups that stay int8 at their int8 size); else None.
        tflm_arena_bytes: the same as `arena_bytes` (the name of earlier reports).
        int8_io: whether the model's input and output are int8 (else float32).
        packed: whether any kernel is stored below 8 bits (INT4 or LUT) in the file.
        per_channel: whether weights are quantized per output channel.
        groups: one dict per group: name, kind, weight_bits, activation_bits, deployed_activation_bits,
            tensor (its name in the file), tensor_index, type, params, max_levels_per_channel,
            levels_per_tensor, exact_grid (int8 values are the trained grid indices, scale the trained
            step), int8_bytes, packed_bytes, lut_bytes, storage ("int8", "int4" or "lut"),
            stored_bytes (the kernel as stored) and flash_bytes (kernel + int32 bias + quantization
            parameters, as read back from the file). A group with channel-wise bits (weight_bits a
            tuple) deployed as several filter tensors has ``segments``: one such dict per tensor (with
            ``weight_bits`` its width and ``channels`` its output channels, in the order it holds them);
            the group's own tensor, tensor_index and levels_per_tensor are then None, its type and
            storage the segments' joined by "+", its byte counts their sums and its
            max_levels_per_channel their maximum.
        operators: the file's operators, in execution order.
        c_array: paths of the written ``.h`` / ``.cc`` pair, or None.
        notes: anything a user should know about this export.
        packing: the packing asked for: "int8", "int4", "lut" or "auto".
        stored_weight_bytes: the kernels as stored in the file (sum of the groups' stored_bytes).
        flash_bytes: the groups' weights as stored in the file: kernels, int32 biases and quantization
            parameters (sum of the groups' flash_bytes; ``tfmpq.metrics.summary``'s flash metrics
            predict it from the policy).
        arena_bytes: TFLite Micro's arena for the written file (host measurement, reference kernels),
            or None if TFLite Micro cannot run it (see `notes`).
        scratch_bytes: how much larger `arena_bytes` is than the arena of the same model in int8
            containers: where TFLite Micro's reference kernels unpack INT4 filters and DECODE writes
            LUT-decoded ones. 0 for an int8-container file; None without a TFLite Micro measurement.
        runtimes: the runtimes the file runs on, of "litert" and "tflm" (a LUT file: "tflm" only).
    """

    path: str
    file_bytes: int
    int8_weight_bytes: int
    packed_weight_bytes: int
    lut_weight_bytes: int | None
    tflm_arena_bytes: int | None
    int8_io: bool
    packed: bool
    per_channel: bool
    groups: list
    operators: list
    c_array: list | None = None
    notes: list = dataclasses.field(default_factory=list)
    packing: str = "int8"
    stored_weight_bytes: int = 0
    flash_bytes: int = 0
    arena_bytes: int | None = None
    scratch_bytes: int | None = None
    runtimes: list = dataclasses.field(default_factory=list)

    @property
    def bits(self) -> dict:
        """group name -> trained weight bits."""
        return {g["name"]: g["weight_bits"] for g in self.groups}

    @property
    def storage(self) -> dict:
        """group name -> how its kernel is stored ("int8", "int4" or "lut"; for a channel-wise group its
        widths' storages joined by "+")."""
        return {g["name"]: g["storage"] for g in self.groups}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON. Args: indent: passed to ``json.dumps``. Defaults to 2."""
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        arena = "n/a" if self.arena_bytes is None else f"{self.arena_bytes} B"
        if self.scratch_bytes:
            arena += f" ({self.scratch_bytes} B of it INT4 / LUT decode scratch)"
        kinds = sorted({k for g in self.groups for k in g["storage"].split("+")}, key=["int8", "int4", "lut"].index)
        runs = " and ".join({"litert": "LiteRT", "tflm": "TFLite Micro"}[r] for r in self.runtimes) or "no runtime"
        # channel-wise groups: "2x16+4x16" bits, "int4+int8" storage; the columns widen for them
        wb = max([7] + [len(bits_label(g["weight_bits"])) + 1 for g in self.groups])
        st = max([8] + [len(g["storage"]) + 1 for g in self.groups])
        lines = [
            f"{self.path}: {self.file_bytes} B on disk (packing {self.packing!r}: {' + '.join(kinds)} kernels, "
            f"{'int8' if self.int8_io else 'float'} I/O, runs on {runs}), TFLite Micro arena {arena}",
            f"weights: {self.int8_weight_bytes} B in int8 containers, {self.packed_weight_bytes} B at trained bits, "
            f"{self.stored_weight_bytes} B as stored; flash {self.flash_bytes} B with biases and quantization "
            "parameters",
            f"{'group':<28}{'kind':<17}{'w bits':>{wb}}{'a bits':>7}{'levels/ch':>10}{'int8 B':>9}{'packed B':>9}"
            f"{'storage':>{st}}{'stored B':>9}{'flash B':>9}",
        ]
        for g in self.groups:
            lines.append(
                f"{g['name']:<28}{g['kind']:<17}{bits_label(g['weight_bits']):>{wb}}{g['activation_bits']:>7}"
                f"{str(g['max_levels_per_channel']):>10}{g['int8_bytes']:>9}{g['packed_bytes']:>9}"
                f"{g['storage']:>{st}}{g['stored_bytes']:>9}{g['flash_bytes']:>9}"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _check_qat_model(qat_model) -> dict:
    if not isinstance(qat_model, keras.Model) or not is_qat_model(qat_model):
        name = getattr(qat_model, "name", type(qat_model).__name__)
        raise ExportError(
            "Invalid value for `qat_model`: expected a QAT model built by `tfmpq.quantize_model` (with at least "
            f"one QuantGroupLayer). Received: `{name}` ({type(qat_model).__name__}). "
            "Call `tfmpq.quantize_model(model, policy)` (and train it) before exporting"
        )
    info = policy_of(qat_model)
    asymmetric = [name for name, g in info.items() if widest_bits(g["weight_bits"]) <= 8 and not g["symmetric"]]
    if asymmetric:
        raise ExportError(
            f"Cannot export groups {asymmetric}: their weights were trained asymmetric (symmetric=False), but "
            "TFLite's int8 conv and fully-connected kernels need weight zero point 0 (such a model converts, "
            "then fails at allocate_tensors). Re-run `tfmpq.quantize_model(model, policy, symmetric=True)` "
            "and retrain"
        )
    modes = {g["per_channel"] for name, g in info.items() if widest_bits(g["weight_bits"]) <= 8}
    if len(modes) > 1:
        raise ExportError(
            "Cannot export a model mixing per-channel and per-tensor weight groups: the TFLite converter applies "
            "one mode to the whole model. Received: per_channel="
            + str({name: g["per_channel"] for name, g in info.items()})
        )
    return info


def _check_representative_data(qat_model, data):
    """The calibration inputs as float32 (a tuple of arrays for several inputs), refused (ExportError)
    when empty, of another sample shape than the model's input, or holding NaN/Inf
    (``tfmpq.checks.check_inputs``)."""
    x = check_inputs(qat_model, data, name="representative_data", error=ExportError)
    if isinstance(x, tuple):
        return tuple(np.asarray(a, dtype=np.float32) for a in x)
    return np.asarray(x, dtype=np.float32)


def _calibrate_unset_ranges(qat_model, x, notes: list) -> None:
    """Sets the activation ranges never set (a model neither trained nor calibrated) from `x`.

    Exported as they are, those ranges would deploy their initial [-6, 6] grid: on the issue's Keras 3
    CNN, 74.6% on LiteRT against 78.3% in float (after calibration: 78.0%).
    """
    unset = unset_ranges(qat_model)
    if not unset:
        return
    calibrate(qat_model, x, only_unset=True)
    text = (f"{len(unset)} activation range(s) of `{qat_model.name}` were never set (the model was neither trained "
            f"nor calibrated): calibrated from `representative_data` ({num_samples(x)} samples), which the QAT "
            "model now holds too")
    notes.append(text)
    warnings.warn(f"{text}. Train the model or call `tfmpq.calibrate(qat_model, x)` first to choose the data.",
                  UserWarning, stacklevel=3)


def _convert(deploy, x, int8_io: bool, per_channel: bool) -> bytes:
    def representative_dataset():
        if isinstance(x, tuple):  # one array per input: by name (the file keeps the model's input order)
            for i in range(len(x[0])):
                yield {name: a[i : i + 1] for name, a in zip(deploy.input_names, x)}
            return
        for i in range(len(x)):
            yield [x[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(deploy)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if not per_channel:
        converter._experimental_disable_per_channel = True  # noqa: SLF001 - the only switch TF offers
    with captured_stderr() as log:  # the converter's C++ log: kept for the error message only
        try:
            return converter.convert()
        except Exception as e:  # ConverterError / RuntimeError / ValueError, depending on the stage
            error = e
    text = f"{error}\n{log[0] if log else ''}"
    unsupported = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)))
    unsupported += [op.strip() for line in re.findall(r"TF Select ops: ([^\n]+)", text) for op in line.split(",")]
    if unsupported:
        ops = sorted(set(unsupported))
        raise ExportError(
            f"Cannot export: unsupported op(s) {ops}: TFLite has no builtin (int8) kernel for them, so neither "
            "LiteRT's builtin kernels nor TFLite Micro could run the model. Replace the layer(s) that use them"
        ) from error
    lines = [line.strip() for line in text.splitlines() if "error" in line.lower()]
    detail = "; ".join(dict.fromkeys(line[:300] for line in lines[:6])) or str(error)[:500]
    raise ExportError(f"Full-integer TFLite conversion failed. Converter: {detail}") from error


def _with_io_order(data: bytes, deploy) -> bytes:
    """Several inputs or outputs: the Keras names in the Keras order recorded in the file
    (``flatbuffer.keras_io``), which the converter does not keep, so that the runtimes take a list of
    inputs in the Keras order."""
    if len(deploy.inputs) == 1 and len(deploy.outputs) == 1:
        return data
    return with_keras_io(data, list(deploy.input_names), list(deploy.output_names))


def _filters(info: dict, deployed_names: dict, segments: dict) -> list[dict]:
    """The filter tensors to find in the file: one per group, one per width of a channel-wise group.

    Returns:
        ``{"group", "layer" (the name fragment of its tensors), "bits", "channels" (None: every channel
        in order)}`` per filter.
    """
    out = []
    for group, layer_name in deployed_names.items():
        bits = info[group]["weight_bits"]
        if group not in segments:
            out.append({"group": group, "layer": layer_name, "bits": bits, "channels": None})
            continue
        for sub, width, chans in segments[group]:
            out.append({"group": group, "layer": f"{layer_name}/{sub}", "bits": width, "channels": list(chans)})
    return out


def _match_tensors(levels: dict, filters: list[dict]) -> list:
    """(tensor name, level info) of each filter, matched by its deployed layer name in tensor names."""
    def named(text: str, layer_name: str) -> bool:
        return f"/{layer_name}/" in text or text.startswith(f"{layer_name}/")

    matched = []
    for f in filters:
        layer_name = f["layer"]
        candidates = [name for name in levels if named(name, layer_name)]
        if len(candidates) != 1:  # TF < 2.21 names quantized filters tfl.pseudo_qconst*: use the op's output
            candidates = [name for name, lv in levels.items() if named(lv.get("output", ""), layer_name)]
        if len(candidates) != 1:
            raise ExportError(
                f"Cannot find the weight tensor of group `{f['group']}` in the converted model (tensors matching "
                f"`{layer_name}`: {candidates}). Weight tensors: {list(levels)}"
            )
        matched.append((candidates[0], levels[candidates[0]]))
    return matched


def _verify_litert(data: bytes, x) -> None:
    try:
        interpreter = litert_interpreter(data)
        interpreter.allocate_tensors()
    except Exception as e:
        raise ExportError(f"The converted model does not run on LiteRT (allocate_tensors failed): {e}") from e
    run_tflite(data, take_samples(x, 1), runtime="litert")


def _check_output_path(path) -> str:
    """The output path, checked before any conversion work: its folder exists and takes a file."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ExportError(f"Invalid value for `path`: expected a .tflite file path. Received: path={path!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ExportError(f"Invalid value for `path`: `{path}` is a folder; expected a file path such as "
                          f"`{os.path.join(path, 'model.tflite')}`. Nothing was written.")
    if not os.path.isdir(directory):
        raise ExportError(f"Invalid value for `path`: its folder `{directory}` does not exist (or is not a folder). "
                          "Create it first. Nothing was written.")
    try:  # a real probe: os.access says yes to root on a read-only file system
        fd, probe = tempfile.mkstemp(prefix=".tfmpq-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ExportError(f"Invalid value for `path`: cannot write in `{directory}` ({e.strerror or e}). "
                          "Nothing was written.") from None
    return path


def _write_atomic(path: str, data: bytes) -> None:
    """``tfmpq._io.write_bytes_atomic``: a failure (disk full, a kill) leaves no partial file."""
    try:
        write_bytes_atomic(path, data)
    except OSError as e:
        raise ExportError(f"Cannot write `{path}`: {e.strerror or e}. Nothing was written.") from None


def export_tflite(
    qat_model,
    path: str | os.PathLike,
    representative_data,
    int8_io: bool = True,
    c_array: str | None = None,
    packed: bool | str | None = False,
    dense_as_conv: bool = True,
) -> ExportReport:
    """Exports a tfmpq QAT model to a full-integer .tflite file that runs on LiteRT and TFLite Micro.

    Weights are int8 (sub-8-bit groups in int8 containers whose values stay on the group's b-bit grid:
    at most 2^b distinct values per output channel, or per tensor), activations int8, biases int32.
    With `packed`, sub-8-bit kernels are stored at their bit-width instead:

    | packed | <= 4-bit group | 5..7-bit group | file runs on |
    |---|---|---|---|
    | False / None / "int8" | int8 | int8 | LiteRT, TFLite Micro |
    | "int4" | INT4 | int8 | LiteRT, TFLite Micro |
    | True / "lut" | LUT | LUT | TFLite Micro |
    | "auto" | INT4 | LUT | TFLite Micro (LiteRT too if no group is LUT) |

    INT4: a native TFLite INT4 tensor (two values per byte, the same scales, zero point 0), for
    CONV_2D and DEPTHWISE_CONV_2D filters (a per-channel FULLY_CONNECTED filter stays int8: TFLite
    Micro has no kernel for it; see ``tfmpq.export.int4``). LUT: TFLite Micro's compression, b-bit
    indices into per-channel value tables, decoded by DECODE operators (``tfmpq.export.packed``), only
    where that is smaller than int8. Each packed file is checked to give the int8-container model's
    outputs bit for bit on every runtime that runs it. ``tfmpq.metrics.summary`` predicts
    ``flash_bytes`` for every packing from the policy alone.

    Args:
        qat_model: a model built by ``tfmpq.quantize_model`` with symmetric weights (and trained).
        path: where to write the .tflite file.
        representative_data: float model inputs, shape (N, ...) like the model's input (several inputs:
            a list / tuple of arrays in input order or a dict by input name); used by the converter for
            tensors without a trained range (a few hundred samples is plenty), and to calibrate the
            activation ranges of a QAT model that was never trained nor calibrated (`unset_ranges`: they
            would deploy their initial [-6, 6]; a `UserWarning` and a note say so).
        int8_io: int8 model input and output (quantized with the tensors' scale and zero point); False
            keeps float32 input and output. Defaults to True.
        c_array: a C identifier: also write ``<name>.h`` / ``<name>.cc`` (the file as an aligned
            ``const unsigned char <name>[]`` and ``<name>_len``) next to `path`. Defaults to None.
        packed: how sub-8-bit kernels are stored (table above): False / None / "int8", "int4", "lut"
            (True, the former switch, means "lut") or "auto". Defaults to False.
        dense_as_conv: deploy Dense layers (on 2-D inputs) as 1x1 CONV_2D, so LiteRT and TFLite Micro
            compute bit-identical outputs (their FULLY_CONNECTED kernels round differently).
            Defaults to True.

    Returns:
        An ExportReport (also ``.to_json()``).

    Raises:
        ExportError: for a model that is not a tfmpq QAT model, asymmetric weights, mixed per-channel
            and per-tensor groups, representative data of the wrong shape, an operator TFLite cannot
            convert to int8, a deployed group off its grid, or a converted model that does not run.
            Nothing is written then.
            So is `packed="int4"` without a group at <= 4 bits and `packed="lut"` without one at 2..7.
        ValueError: for a `c_array` name that is not a C identifier, or an unknown `packed`.

    Example:
    >>> report = tfmpq.export_tflite(qat, "model.tflite", representative_data=x_train[:256],
    ...                              c_array="model_data", packed="auto")  # doctest: +SKIP
    >>> report.storage, report.flash_bytes, report.arena_bytes  # doctest: +SKIP
    >>> tfmpq.evaluate_tflite("model.tflite", x_test, y_test, runtime="tflm")  # doctest: +SKIP
    """
    info = _check_qat_model(qat_model)
    path = _check_output_path(path)
    x = _check_representative_data(qat_model, representative_data)
    if c_array is not None:
        check_c_name(c_array)  # before converting: a bad name must not cost a conversion
    packing = _check_packing(packed, info)
    per_channel = all(g["per_channel"] for g in info.values() if widest_bits(g["weight_bits"]) <= 8)
    notes = []

    _calibrate_unset_ranges(qat_model, x, notes)  # never ship the initial [-6, 6] ranges
    deploy, deployed_names = build_deploy_model(qat_model, dense_as_conv=dense_as_conv)
    data, filters, matched, snapped = _convert_on_grid(deploy, deployed_names, info, x, int8_io, per_channel)
    groups, off_grid = _group_records(info, filters, matched, snapped, per_channel, notes)
    _check_activation_levels(data, groups, x, off_grid)
    if off_grid:
        raise ExportError(
            "The converted model is not the trained model: these groups lost their bit-width grid in conversion: "
            + "; ".join(off_grid)
        )

    data, arena, scratch = _pack_and_measure(data, groups, packing, x, notes)
    _read_back_storage(data, groups)
    groups = _merge_segments(groups, info)
    if any("lut" in g["storage"].split("+") for g in groups):
        notes.append("LUT-compressed: runs on TFLite Micro only (LiteRT rejects compressed tensors)")
    data = _with_io_order(data, deploy)  # again: a packing may have rewritten the file without it
    c_paths = _write_files(path, data, c_array)
    return _export_report(path, data, groups, packing, arena, scratch, int8_io, per_channel, c_paths, notes)


def _convert_on_grid(deploy, deployed_names: dict, info: dict, x, int8_io: bool, per_channel: bool):
    """The converted file with every sub-8-bit filter snapped back to its trained grid, checked to run on
    LiteRT.

    Returns:
        ``(data, filters, matched, snapped)``: the file, its filters (:func:`_filters`), each filter's
        (tensor name, level info) in the final file, and what ``snap_to_grid`` changed.
    """
    data = _with_io_order(_convert(deploy, x, int8_io, per_channel), deploy)
    filters = _filters(info, deployed_names, deployed_segments(deploy))
    matched = _match_tensors(count_levels(data), filters)
    targets = [
        GridTarget(lv["index"], f["bits"], info[f["group"]]["per_channel"])
        for f, (_, lv) in zip(filters, matched)
        if 2 <= f["bits"] <= 7
    ]
    data, snapped = snap_to_grid(data, targets)
    _verify_litert(data, x)
    levels = count_levels(data)
    return data, filters, [(tensor, levels[tensor]) for tensor, _ in matched], snapped


def _group_records(info: dict, filters: list, matched: list, snapped, per_channel: bool, notes: list) -> tuple[list, list]:
    """Each filter's record of ``export_tflite``'s report (what the file holds for it: one per group, one per width
    of a channel-wise group), and the groups found off their bit-width grid."""
    groups, off_grid = [], []
    for f, (tensor, lv) in zip(filters, matched):
        name, g, width = f["group"], info[f["group"]], f["bits"]
        bits = width if width <= 8 else 8
        limit = 2**bits - 1  # the symmetric narrow-range grid: -(2^(b-1) - 1) .. 2^(b-1) - 1
        count = lv["max_levels_per_channel"] if per_channel else lv["levels_per_tensor"]
        if 2 <= width <= 7 and lv["index"] not in snapped:
            notes.append(f"group `{name}`: int8 values left as converted (not rewritten to the exact grid)")
        if width <= 8 and count > limit:
            off_grid.append(f"`{name}` ({width} bits): {count} distinct values in `{tensor}`")
        int8_bytes = int(lv["params"] if lv["type"] != "INT4" else math.ceil(lv["params"] / 2))
        groups.append(
            {
                "name": name,
                "kind": g["kind"],
                "weight_bits": width,
                **({} if f["channels"] is None else {"channels": f["channels"]}),
                "activation_bits": g["activation_bits"],
                "deployed_activation_bits": None,  # set below from the levels counted in the file
                "activation_levels": None,
                "tensor": tensor,
                "tensor_index": lv["index"],
                "type": lv["type"],
                "params": lv["params"],
                "max_levels_per_channel": lv["max_levels_per_channel"],
                "levels_per_tensor": lv["levels_per_tensor"],
                "exact_grid": width == 8 and per_channel or lv["index"] in snapped,
                "int8_bytes": int8_bytes,
                "packed_bytes": math.ceil(lv["params"] * bits / 8),
                "lut_bytes": None,
                "storage": "int8",
                "stored_bytes": None,
                "flash_bytes": None,
            }
        )
        if g["activation_bits"] < 8:
            notes.append(
                f"group `{name}`: {g['activation_bits']}-bit activations are kept on their grid inside int8 "
                "(scale = the trained step, a MINIMUM op clamps at the trained maximum)"
            )
        if width > 8:
            notes.append(f"group `{name}` was left in float ({width} bits): deployed as int8")
    notes[:] = list(dict.fromkeys(notes))  # one note per group, not per filter
    return groups, off_grid


def _check_activation_levels(data: bytes, groups: list, x, off_grid: list) -> None:
    """Counts the values each group's output takes in the file over the representative data; a group with
    more than its activation bits allow joins ``off_grid``."""
    act = count_activation_levels(data, [g["tensor_index"] for g in groups], take_samples(x, 256))
    for g in groups:
        found = act.get(g["tensor_index"])
        abits = g["activation_bits"] if g["activation_bits"] <= 8 else 8
        if found is None:
            continue
        g["activation_levels"] = found["levels"]
        if found["levels"] > 2**abits:
            off_grid.append(f"`{g['name']}` ({abits}-bit activations): {found['levels']} distinct values in its "
                            f"output `{found['tensor']}`")
        else:
            g["deployed_activation_bits"] = abits  # at most 2^b values: the trained grid, in int8 containers


def _pack_and_measure(data: bytes, groups: list, packing: str, x, notes: list):
    """``packing`` applied to the int8-container file, and the TFLite Micro arena of the result.

    Returns:
        ``(data, arena bytes or None, scratch bytes over the int8 file's arena or None)``.
    """
    int8_data = data
    try:
        int8_arena = tflm_arena_bytes(int8_data, take_samples(x, 1))
    except RuntimeError as e:
        int8_arena = None
        notes.append(f"TFLite Micro cannot run this model: {str(e).splitlines()[0]}")
    if packing != "int8":
        data = _pack(int8_data, groups, packing, x, tflm=int8_arena is not None, notes=notes)
    arena, scratch = int8_arena, 0 if int8_arena is not None else None
    if data is not int8_data and int8_arena is not None:
        try:
            arena = tflm_arena_bytes(data, take_samples(x, 1))
        except RuntimeError as e:
            raise ExportError(f"The packed model does not run on TFLite Micro: {e}") from e
        scratch = arena - int8_arena
        if scratch > 0:
            notes.append(
                f"packed kernels take {scratch} B more TFLite Micro arena than int8 containers (reference "
                "kernels: INT4 filters are unpacked into scratch, LUT filters decoded into a tensor)"
            )
    return data, arena, scratch


def _write_files(path: str, data: bytes, c_array: str | None) -> list | None:
    """Writes the .tflite file (and the C array asked for): all or nothing. Returns the C array's paths."""
    _write_atomic(path, data)
    c_paths = None
    if c_array is not None:
        try:
            c_paths = list(write_c_array(data, c_array, os.path.dirname(os.path.abspath(path))))
        except OSError as e:
            os.unlink(path)  # all or nothing: no .tflite without the C array asked for
            raise ExportError(f"Cannot write the C array `{c_array}` next to `{path}`: {e.strerror or e}. "
                              "Nothing was written.") from None
    return c_paths


def _export_report(path, data: bytes, groups: list, packing: str, arena, scratch, int8_io, per_channel, c_paths,
                   notes) -> ExportReport:
    """``export_tflite``'s report of the file written (LiteRT runs it unless a group is LUT-compressed)."""
    lut_in_file = any("lut" in g["storage"].split("+") for g in groups)
    runtimes = ([] if lut_in_file else ["litert"]) + ([] if arena is None else ["tflm"])
    lut_weight_bytes = sum(g["lut_bytes"] for g in groups) if packing == "lut" else None
    return ExportReport(
        path=path,
        file_bytes=len(data),
        int8_weight_bytes=sum(g["int8_bytes"] for g in groups),
        packed_weight_bytes=sum(g["packed_bytes"] for g in groups),
        lut_weight_bytes=lut_weight_bytes,
        tflm_arena_bytes=arena,
        int8_io=bool(int8_io),
        packed=any(g["storage"] != "int8" for g in groups),
        per_channel=per_channel,
        groups=groups,
        operators=operator_names(data),
        c_array=c_paths,
        notes=notes,
        packing=packing,
        stored_weight_bytes=sum(g["stored_bytes"] for g in groups),
        flash_bytes=sum(g["flash_bytes"] for g in groups),
        arena_bytes=arena,
        scratch_bytes=scratch,
        runtimes=runtimes,
    )


def _merge_segments(rows: list, info: dict) -> list:
    """One report dict per group: a channel-wise group's filters become its ``segments`` (see ExportReport)."""
    by_group: dict = {}
    for row in rows:
        by_group.setdefault(row["name"], []).append(row)
    groups = []
    for name, parts in by_group.items():
        bits = info[name]["weight_bits"]
        if len(parts) == 1:
            group = dict(parts[0], weight_bits=bits)
            group.pop("channels", None)
            if "channels" in parts[0]:
                group["segments"] = [dict(parts[0])]
            groups.append(group)
            continue
        first = parts[0]
        acts = {p["deployed_activation_bits"] for p in parts}
        luts = [p["lut_bytes"] for p in parts]
        groups.append({
            "name": name, "kind": first["kind"], "weight_bits": bits, "activation_bits": first["activation_bits"],
            "deployed_activation_bits": acts.pop() if len(acts) == 1 else None,
            "activation_levels": max((p["activation_levels"] or 0) for p in parts) or None,
            "tensor": None, "tensor_index": None, "type": "+".join(p["type"] for p in parts),
            "params": sum(p["params"] for p in parts),
            "max_levels_per_channel": max(p["max_levels_per_channel"] for p in parts), "levels_per_tensor": None,
            "exact_grid": all(p["exact_grid"] for p in parts),
            "int8_bytes": sum(p["int8_bytes"] for p in parts), "packed_bytes": sum(p["packed_bytes"] for p in parts),
            "lut_bytes": None if any(v is None for v in luts) else sum(luts),
            "storage": "+".join(p["storage"] for p in parts),
            "stored_bytes": sum(p["stored_bytes"] for p in parts), "flash_bytes": sum(p["flash_bytes"] for p in parts),
            "segments": parts,
        })
    return groups


def _widths(bits) -> set:
    """The widths a group's filters are stored at: its bits, or the channel widths of channel-wise bits."""
    return set(bits) - {PRUNED} if isinstance(bits, tuple) else {bits}


def _check_packing(packed, info: dict) -> str:
    """The packing name; an ExportError when "int4" / "lut" would store nothing packed."""
    packing = packing_name(packed)
    bits = sorted({w for g in info.values() for w in _widths(g["weight_bits"])})
    if packing == "lut" and not any(b in LUT_BITS for b in bits):
        raise ExportError(
            "Invalid value for `packed`: no group was trained at 2..7 bits, so there is nothing to LUT-compress. "
            f"Received: packed={packed!r} for weight bits {bits}"
        )
    if packing == "int4" and not any(b <= INT4_MAX_BITS for b in bits):
        raise ExportError(
            "Invalid value for `packed`: no group was trained at 2..4 bits, so there is nothing to store as INT4. "
            f"Received: packed={packed!r} for weight bits {bits}"
        )
    return packing


def _pack(int8_data: bytes, groups: list, packing: str, x, tflm: bool, notes: list) -> bytes:
    """Stores each group as `metrics.choose_storages` says (INT4 first, then LUT) and checks the outputs.

    Sets each group's "storage" and (for `packing="lut"`) "lut_bytes". Returns the new model bytes
    (`int8_data` itself when nothing is packed).
    """
    weights = {w.index: w for w in weight_tensors(int8_data)}
    kernels, reasons = [], []
    for g in groups:
        bits, weight = g["weight_bits"], weights[g["tensor_index"]]
        reasons.append(int4_unsupported_reason(weight))
        lut_bytes = None
        if bits in LUT_BITS and weight.values is not None:
            axis = weight.channel_axis
            slices = [weight.values] if axis is None else np.moveaxis(weight.values, axis, 0)
            stride = max(np.unique(s).size for s in slices)  # the compressor pads tables to the fullest one
            if stride <= 2**bits:
                lut_bytes = lut_kernel_bytes(weight.values.size, bits, len(slices), stride)
        kernels.append((bits, reasons[-1] is None, lut_bytes, g["int8_bytes"]))
    int4, lut, no_int4, not_smaller = [], {}, [], []
    storages = choose_storages(kernels, packing)
    for g, (bits, _, lut_bytes, _), reason, storage in zip(groups, kernels, reasons, storages):
        g["storage"] = storage
        if packing == "lut":
            g["lut_bytes"] = lut_bytes if storage == "lut" else g["int8_bytes"]
        if packing in ("int4", "auto") and bits <= INT4_MAX_BITS and reason is not None:
            no_int4.append(f"`{g['name']}` ({reason})")
        if storage == "int8" and packing in ("lut", "auto") and bits in LUT_BITS and (
            packing == "lut" or bits > INT4_MAX_BITS or reason is not None
        ):
            not_smaller.append(g["name"])
        if storage == "int4":
            int4.append(g["tensor_index"])
        elif storage == "lut":
            lut[g["tensor_index"]] = bits
    if no_int4:
        notes.append("not INT4, kept " + ("int8 or LUT" if packing == "auto" else "int8") + ": " + "; ".join(no_int4))
    if not_smaller:
        notes.append(f"groups {not_smaller} stay int8: indices + value table would not be smaller")
    if not int4 and not lut:
        return int8_data
    probe = take_samples(x, 8)
    data = int8_data
    if int4:
        data = to_int4(int8_data, int4)
        try:
            same = _same_outputs(run_tflite(data, probe, "litert"), run_tflite(int8_data, probe, "litert"))
        except (RuntimeError, ValueError) as e:
            raise ExportError(f"The INT4 model does not run on LiteRT: {e}") from e
        if not same:
            raise ExportError("The INT4 model's outputs differ from the int8 model's on LiteRT")
    if lut:
        data, packed_tensors = lut_compress(data, lut, only_if_smaller=False)
        if sorted(p.index for p in packed_tensors) != sorted(lut):
            raise ExportError(f"TFLite Micro's compressor packed {[p.name for p in packed_tensors]}, not {sorted(lut)}")
    if tflm:
        try:
            same = _same_outputs(run_tflite(data, probe, "tflm"), run_tflite(int8_data, probe, "tflm"))
        except RuntimeError as e:
            raise ExportError(f"The packed model does not run on TFLite Micro: {e}") from e
        if not same:
            raise ExportError("The packed model's outputs differ from the int8 model's on TFLite Micro")
    elif lut:
        raise ExportError("Cannot LUT-compress a model that TFLite Micro cannot run (LUT files run on TFLite Micro only)")
    return data


def _same_outputs(a, b) -> bool:
    """Equal outputs of two runs: arrays, or dicts of arrays by output name (several outputs)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return np.array_equal(a, b)


def _read_back_storage(data: bytes, groups: list) -> None:
    """Sets each group's "stored_bytes" and "flash_bytes" from the file, and checks its "storage"."""
    stored = {w.name: w for w in weight_storage(data)}
    for g in groups:
        w = stored.get(g["tensor"])
        if w is None or w.storage != g["storage"]:
            found = None if w is None else w.storage
            raise ExportError(f"Group `{g['name']}` should be stored as {g['storage']} in the file, found {found}")
        g["stored_bytes"] = w.kernel_bytes
        g["flash_bytes"] = w.total_bytes
