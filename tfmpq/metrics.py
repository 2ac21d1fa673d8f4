"""Cost metrics of a mixed-precision policy: size, BOPs and average bit-widths (pure Python).

Formulas and their sources:
- weight_bytes: sum over groups of kernel_params * w_bits / 8 + bias_params * 4 (32-bit biases, as
  TFLite stores them) + QPARAM_BYTES per quantization channel (a float32 scale and an int32 zero point),
  plus every float weight outside the groups at 4 bytes. Float groups (16/32 bits) count
  params * bits / 8 and no quantization parameters.
- Layers outside every group (``tfmpq.float_layers``: they stay in float) count at 32 bits in every
  average and ratio below: their weights at n = 32 in avg_weight_bits, their multiply-accumulates
  (``tfmpq.graph.float_costs``: an estimate, each kernel weight used once per output position) at
  n = m = 32 in bops, avg_op_bits and avg_activation_bits. float_weight_share is their share of the
  model's weights.
- compression_ratio: float_weight_bytes / weight_bytes (Tmamna et al. sec. 5.3: original size over
  quantized size); compression_ratio_eq9 = 32 / avg_weight_bits (Tmamna et al. eq. 9), which ignores biases.
- avg_weight_bits: sum_j n_j * nbr(j) / sum_j nbr(j), parameter-weighted (Tmamna et al. eq. 10).
- bops: sum_j MACs_j * n_j * m_j (bit operations; Rakka et al. 2022's survey of mixed-precision
  methods, and Baskin et al. 2021), with n_j the weight bits of group j and m_j the bits of the
  tensor that *feeds* its multiplies: 8 for the model's input; the activation bits of the group
  before it when the layers in between keep that group's grid (max pooling, Flatten, Reshape,
  Dropout, zero padding: ``QuantGroup.input_group``); 8 for a tensor re-quantized after Add,
  Concatenate, average pooling or a float layer. A group's own output bits cost nothing in its own
  multiplies: they are paid by its consumer, and the logits of the last group feed no multiply.
- avg_op_bits: sqrt(sum_j m_j * n_j * OP(j) / sum_j OP(j)), MAC-weighted (Tmamna et al. 2024, eq. 11),
  with m_j as above, so a policy at 4-bit weights and 4-bit activations everywhere has avg_op_bits
  4 except for the groups fed by the 8-bit input or 8-bit re-quantized tensors.
- avg_activation_bits: sum_j m_j * MACs_j / sum_j MACs_j, the MAC-weighted bits of the tensors
  feeding the multiplies.
- flash_bytes: the groups' weights as ``tfmpq.export.export_tflite(packed=...)`` writes them into the
  .tflite file (see :func:`flash_bytes`): the kernel in its storage (int8 container, native INT4,
  or TFLite Micro LUT indices + value tables), the int32 bias, and the quantization parameters as the
  TFLite schema stores them. ``flash_bytes`` is the ``"auto"`` packing; ``flash_bytes_int4``,
  ``flash_bytes_lut`` and ``flash_bytes_int8`` the others.

There is no ``arena_bytes`` cost here. TFLite Micro's arena is set by the activations, int8 in every
full-integer export whatever the policy's activation bits, so with int8 containers it does not depend
on the policy at all. Packed kernels add scratch: TFLite Micro's reference kernels unpack an INT4
filter into the arena on every invoke and DECODE writes a LUT filter's int8 copy there, one operator
at a time, so the arena grows by at most the largest packed kernel (measured: ``bench.deploy_sizes``)
at a place TFLite Micro's memory planner chooses. It is measured on the written file
(``ExportReport.arena_bytes`` and ``scratch_bytes``), not predicted.
"""
from __future__ import annotations

import math

from tfmpq.convert import as_tf_keras
from tfmpq.graph import QuantGroup, float_costs
from tfmpq.policy import QuantPolicy, _groups_of, is_float

QPARAM_BYTES = 8  # per quantization channel: float32 scale + int32 zero point
#: Bits of the weights of a layer that stays in float (outside every group), and of the tensors it multiplies.
FLOAT_BITS = 32

#: ``export_tflite(packed=...)`` modes: how sub-8-bit kernels are stored in the file.
PACKINGS = ("int8", "int4", "lut", "auto")
#: How one kernel can be stored: an int8 container, a native TFLite INT4 tensor (two values per byte),
#: or TFLite Micro's LUT compression (b-bit indices + per-channel value tables, decoded by DECODE).
STORAGES = ("int8", "int4", "lut")
#: Widest weight bit-width stored as INT4: a symmetric b-bit grid index lies in -(2^(b-1)-1)..2^(b-1)-1,
#: inside INT4's -8..7 up to b = 4.
INT4_MAX_BITS = 4
#: TFLite Micro's LUT index widths (the DECODE metadata's bit-width field has 3 bits).
LUT_INDEX_BITS = tuple(range(1, 8))
#: The 16-byte DECODE common metadata (DCM) that heads every LUT value-table tensor.
LUT_HEADER_BYTES = 16
#: Bytes per quantization parameter entry in a .tflite file: a float32 scale and an int64 zero point
#: (TFLite schema ``QuantizationParameters``). The filter and the bias each have one per output channel.
FILE_QPARAM_BYTES = 12
#: Flash metrics computed by :func:`summary`.
FLASH_METRICS = ("flash_bytes", "flash_bytes_int4", "flash_bytes_lut", "flash_bytes_int8")
#: The flash metrics that depend on the policy: search objectives and budgets. (``flash_bytes_int8``
#: does not: int8 containers take 8 bits per weight whatever the bits; it is the reference.)
FLASH_BUDGETS = ("flash_bytes", "flash_bytes_int4", "flash_bytes_lut")


def group_weight_bytes(group: QuantGroup, weight_bits: int, per_channel: bool = True) -> float:
    """Bytes one group's weights take at `weight_bits` (see the module docstring)."""
    if is_float(weight_bits):
        return group.params * weight_bits / 8
    channels = group.out_channels if per_channel else 1
    return group.kernel_params * weight_bits / 8 + group.bias_params * 4 + channels * QPARAM_BYTES


#: Bits of a tensor that no group's activation quantizer sets: the model's input and the tensors
#: re-quantized after Add, Concatenate, average pooling or float layers (int8 in TFLite).
REQUANTIZED_BITS = 8


def input_bits(groups: list[QuantGroup], policy: QuantPolicy) -> list[int]:
    """The bit-width of the tensor that feeds each group's multiplies (see the module docstring).

    Args:
        groups: the model's groups (``tfmpq.quantizable_groups``).
        policy: a policy of those groups.

    Returns:
        One bit-width per group: the activation bits of ``group.input_group``, else 8.
    """
    act = dict(zip(policy.group_names, policy.activation_bits))
    return [act[g.input_group] if g.input_group is not None else REQUANTIZED_BITS for g in groups]


def packing_name(packed) -> str:
    """Normalises an ``export_tflite(packed=...)`` value to one of `PACKINGS`.

    Args:
        packed: False or None (int8 containers), True (the former LUT switch: "lut"), or one of
            "int8", "int4", "lut", "auto".

    Returns:
        The packing name.

    Raises:
        ValueError: for any other value.

    Example:
    >>> packing_name(True), packing_name(None), packing_name("auto")
    ('lut', 'int8', 'auto')
    """
    if packed is None or packed is False:
        return "int8"
    if packed is True:
        return "lut"
    if isinstance(packed, str) and packed in PACKINGS:
        return packed
    raise ValueError(
        f"Invalid value for `packed`: expected one of {PACKINGS} (or True for 'lut', False/None for 'int8'). "
        f"Received: packed={packed!r}"
    )


def lut_kernel_bytes(params: int, bits: int, tables: int, stride: int) -> int:
    """Bytes of a LUT-compressed kernel in a TFLite Micro file.

    TFLite Micro's compression (``tflite_micro.tensorflow.lite.micro.compression.lut``) writes
    `params` b-bit indices packed into bytes, and an ancillary tensor: the 16-byte DECODE header then
    one value table per channel, each padded to `stride` int8 entries (the most distinct values in
    any one channel).

    Args:
        params: kernel weights.
        bits: index bits, 1..7.
        tables: value tables (output channels; 1 for a per-tensor table).
        stride: entries per table.

    Returns:
        ceil(params * bits / 8) + 16 + tables * stride.
    """
    return math.ceil(params * bits / 8) + LUT_HEADER_BYTES + tables * stride


def kernel_bytes(storage: str, params: int, bits: int = 8, tables: int = 1, stride: int = 0) -> int:
    """Bytes of a kernel of `params` weights stored as `storage` ("int8", "int4" or "lut").

    Args:
        storage: one of `STORAGES`.
        params: kernel weights.
        bits: the LUT index bits (only for "lut"). Defaults to 8.
        tables: LUT value tables (only for "lut"). Defaults to 1.
        stride: entries per LUT value table (only for "lut"). Defaults to 0.

    Returns:
        params (int8), ceil(params / 2) (INT4: two values per byte) or :func:`lut_kernel_bytes`.

    Raises:
        ValueError: for an unknown storage.
    """
    if storage == "int8":
        return int(params)
    if storage == "int4":
        return math.ceil(params / 2)
    if storage == "lut":
        return lut_kernel_bytes(params, bits, tables, stride)
    raise ValueError(f"Invalid value for `storage`: expected one of {STORAGES}. Received: storage={storage!r}")


def choose_storage(
    weight_bits: int,
    packing: str,
    int4_supported: bool = True,
    lut_bytes: int | None = None,
    int8_bytes: int = 0,
    lut_file: bool = False,
) -> str:
    """The storage `export_tflite(packed=packing)` gives one kernel trained at `weight_bits`.

    - "int8": always an int8 container;
    - "int4": INT4 at <= 4 bits where the consuming operator has INT4 kernels on LiteRT and TFLite
      Micro (`int4_supported`), else int8;
    - "lut": LUT indices at 2..7 bits where indices + tables are smaller than the int8 kernel, else int8;
    - "auto": the smallest storage that runs where the file runs: INT4 at <= 4 bits where supported,
      LUT at 5..7 bits (and at <= 4 bits without INT4) where smaller than int8, else int8; in a file
      that holds LUT tensors anyway (`lut_file`: TFLite Micro only), LUT also replaces INT4 where it
      is smaller (2 or 3 bits on channels of more than about 60 weights).

    8-bit and float groups (deployed as int8) always stay int8. See `choose_storages` for a whole model.

    Args:
        weight_bits: the group's trained weight bits.
        packing: one of `PACKINGS`.
        int4_supported: the kernel's operator runs INT4 filters on both runtimes. Defaults to True.
        lut_bytes: bytes of the LUT-compressed kernel (None: LUT not possible). Defaults to None.
        int8_bytes: bytes of the int8 kernel (its number of weights). Defaults to 0.
        lut_file: other kernels of the file are LUT-compressed ("auto" only). Defaults to False.

    Returns:
        One of `STORAGES`.
    """
    packing = packing_name(packing)
    if is_float(weight_bits) or weight_bits >= 8 or packing == "int8":
        return "int8"
    lut_ok = packing in ("lut", "auto") and weight_bits in LUT_INDEX_BITS and lut_bytes is not None
    if packing in ("int4", "auto") and weight_bits <= INT4_MAX_BITS and int4_supported:
        if packing == "auto" and lut_file and lut_ok and lut_bytes < kernel_bytes("int4", int8_bytes):
            return "lut"
        return "int4"
    if lut_ok and lut_bytes < int8_bytes:
        return "lut"
    return "int8"


def choose_storages(kernels, packing: str) -> list[str]:
    """`choose_storage` for every kernel of a model (two passes for "auto": does the file hold LUT?).

    Args:
        kernels: one (weight_bits, int4_supported, lut_bytes, int8_bytes) tuple per group.
        packing: one of `PACKINGS`.

    Returns:
        One storage per kernel.
    """
    kernels = list(kernels)
    storages = [choose_storage(k[0], packing, *k[1:]) for k in kernels]
    if packing_name(packing) == "auto" and "lut" in storages:
        storages = [choose_storage(k[0], packing, *k[1:], lut_file=True) for k in kernels]
    return storages


def int4_supported(group: QuantGroup) -> bool:
    """Whether the operator `export_tflite` deploys `group` as runs INT4 filters on LiteRT and TFLite Micro.

    Conv2D, Conv1D and DepthwiseConv2D deploy as CONV_2D / DEPTHWISE_CONV_2D: both runtimes have
    INT4 kernels. A Dense on a 2-D input (MACs == kernel weights) deploys as a 1x1 CONV_2D (the
    export's default ``dense_as_conv=True``); a Dense on a longer input deploys as FULLY_CONNECTED,
    whose TFLite Micro kernel refuses per-channel INT4 filters, so it stays int8.
    """
    if group.kind in ("Conv2D", "Conv1D", "DepthwiseConv2D"):
        return True
    return group.kind == "Dense" and group.macs == group.kernel_params


def _lut_bound(group: QuantGroup, weight_bits: int) -> int | None:
    """LUT bytes of a group's kernel with tables of min(2^b - 1, weights per channel) entries."""
    if is_float(weight_bits) or weight_bits not in LUT_INDEX_BITS:
        return None
    channels = max(group.out_channels, 1)
    stride = min(2**weight_bits - 1, max(group.kernel_params // channels, 1))
    return lut_kernel_bytes(group.kernel_params, weight_bits, channels, stride)


def flash_bytes(groups, weight_bits, packing: str = "auto") -> list[tuple[str, int]]:
    """The storage and the bytes in the .tflite file of every group's weights under `packing`.

    Per group: kernel (:func:`kernel_bytes`) + 4 bytes of int32 bias per output channel + 2 x 12
    bytes of quantization parameters per output channel (filter and bias: a float32 scale and an int64
    zero point each; the converter writes one per channel even for a per-tensor group). A LUT kernel
    is counted with tables of min(2^b - 1, weights per channel) entries, the most a b-bit symmetric
    grid holds: exact when some channel uses every level, else an upper bound (the file pads the
    tables to its fullest channel only). A float group (16/32 bits) is deployed as int8. Weights
    outside the groups (rare: tfmpq folds BatchNormalization into its group) are not counted.
    Assumes the export's defaults (Dense on a 2-D input deployed as a 1x1 CONV_2D).

    Args:
        groups: the model's `QuantGroup`s.
        weight_bits: one weight bit-width per group.
        packing: one of `PACKINGS`. Defaults to "auto".

    Returns:
        One (storage, bytes) per group.

    Example:
    >>> groups = tfmpq.quantizable_groups(model)  # doctest: +SKIP
    >>> sum(b for _, b in flash_bytes(groups, [8, 4, 4, 8], "int4"))  # doctest: +SKIP
    """
    kernels = [(b, int4_supported(g), _lut_bound(g, b), g.kernel_params) for g, b in zip(groups, weight_bits)]
    result = []
    for g, (bits, _, lut, params), storage in zip(groups, kernels, choose_storages(kernels, packing)):
        kernel = lut if storage == "lut" else kernel_bytes(storage, params)
        result.append((storage, int(kernel + 4 * g.out_channels + 2 * g.out_channels * FILE_QPARAM_BYTES)))
    return result


def group_flash_bytes(group: QuantGroup, weight_bits: int, packing: str = "auto") -> tuple[str, int]:
    """The storage and the bytes in the .tflite file of one group's weights under `packing`, alone.

    ``flash_bytes([group], [weight_bits], packing)[0]``: under "auto", a group in a model whose other
    groups are LUT-compressed may store differently (see `choose_storage`); use :func:`flash_bytes`.

    Args:
        group: a `QuantGroup`.
        weight_bits: its weight bits.
        packing: one of `PACKINGS`. Defaults to "auto".

    Returns:
        (storage, bytes).
    """
    return flash_bytes([group], [weight_bits], packing)[0]


def summary(model, policy: QuantPolicy, per_channel: bool = True, packing: str = "auto") -> dict:
    """Size and compute cost of `policy` on `model`.

    Args:
        model: the float tf_keras or Keras 3 model (or its list of `QuantGroup`s, which skips float
            layers outside the groups).
        policy: a `QuantPolicy` made for this model.
        per_channel: whether weights have one scale per output channel. Defaults to True.
        packing: the packing `flash_bytes` is computed for (see `PACKINGS`); `flash_bytes_int4`,
            `flash_bytes_lut` and `flash_bytes_int8` are always given. Defaults to "auto".

    Returns:
        A dict with `float_weight_bytes`, `weight_bytes`, `compression_ratio`, `compression_ratio_eq9`,
        `avg_weight_bits`, `avg_activation_bits`, `bops`, `avg_op_bits`, `macs`, `params`,
        `float_weight_share` (the share of the weights in layers outside every group, counted at 32
        bits in every average and ratio), the `FLASH_METRICS`, and `groups` (a per-group list of name,
        weight/activation bits, the bits of its input tensor ``input_bits``, params, MACs, bytes, and the
        storage and flash bytes under `packing`).

    Raises:
        PolicyError: if `policy` was made for another model.
        ValueError: for an unknown `packing`.

    Example:
        >>> s = tfmpq.metrics.summary(model, tfmpq.QuantPolicy.uniform(model, 4, 4))
        >>> [g["input_bits"] for g in s["groups"]]  # the first conv sees the 8-bit input
        [8, 4, 4, 4]
    """
    model = as_tf_keras(model)
    packing = packing_name(packing)
    groups = _groups_of(model)
    policy.check_model(groups)
    floats = float_costs(model)  # layers outside the groups: 32-bit weights fed by 32-bit tensors
    other = sum(p for p, _ in floats.values())
    other_macs = sum(m for _, m in floats.values())
    float_bytes = sum(g.params for g in groups) * 4 + other * 4
    per_group, size = [], other * 4.0
    bit_params = float(FLOAT_BITS * other)  # eq. 10 numerator, then eq. 11's and the BOPs below
    bit_ops = float(FLOAT_BITS * FLOAT_BITS * other_macs)
    total_ops = float(other_macs)
    act_macs = float(FLOAT_BITS * other_macs)
    feeding = input_bits(groups, policy)
    flash = {name: flash_bytes(groups, policy.weight_bits, name) for name in PACKINGS}
    for g, wb, ab, ib, (storage, flash_group) in zip(
        groups, policy.weight_bits, policy.activation_bits, feeding, flash[packing]
    ):
        nbytes = group_weight_bytes(g, wb, per_channel)
        size += nbytes
        bit_params += wb * g.kernel_params  # eq. 10 numerator
        bit_ops += wb * ib * g.macs  # BOPs, and eq. 11 numerator: weights x the tensor fed in
        total_ops += g.macs
        act_macs += ib * g.macs
        per_group.append(
            {"name": g.name, "kind": g.kind, "weight_bits": wb, "activation_bits": ab, "input_bits": ib,
             "params": g.params, "macs": g.macs, "weight_bytes": nbytes, "storage": storage,
             "flash_bytes": flash_group}
        )
    kernel_params = sum(g.kernel_params for g in groups) + other
    avg_w = bit_params / kernel_params if kernel_params else 0.0
    all_params = sum(g.params for g in groups) + other
    return {
        "float_weight_bytes": float(float_bytes),
        "weight_bytes": float(size),
        "compression_ratio": float(float_bytes / size) if size else float("inf"),
        "compression_ratio_eq9": 32.0 / avg_w if avg_w else float("inf"),
        "avg_weight_bits": avg_w,
        "avg_activation_bits": act_macs / total_ops if total_ops else 0.0,
        "bops": float(bit_ops),
        "avg_op_bits": math.sqrt(bit_ops / total_ops) if total_ops else 0.0,
        "macs": int(total_ops),
        "params": int(all_params),
        "float_weight_share": other / all_params if all_params else 0.0,
        "flash_bytes": sum(b for _, b in flash[packing]),
        "flash_bytes_int4": sum(b for _, b in flash["int4"]),
        "flash_bytes_lut": sum(b for _, b in flash["lut"]),
        "flash_bytes_int8": sum(b for _, b in flash["int8"]),
        "groups": per_group,
    }


def is_byte_metric(name: str) -> bool:
    """Whether a metric is a size in bytes (``weight_bytes``, ``flash_bytes*``): shown in KiB."""
    return name == "weight_bytes" or name.startswith("flash_bytes")


def format_cost(name: str, value) -> str:
    """A metric's value as the summaries, reports and plots show it: KiB for sizes, else 4 digits."""
    if value is None:
        return "n/a"
    return f"{value / 1024:.2f} KiB" if is_byte_metric(name) else f"{value:.4g}"
