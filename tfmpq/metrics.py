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

Channel-wise bits (``QuantPolicy`` with a per-channel tuple for a group) are counted per channel, as
they deploy (``tfmpq.policy.channel_segments``: one sub-tensor per width): weight_bytes and
avg_weight_bits sum each channel's kernel weights at its own width, BOPs each channel's MACs at its
width, and flash_bytes each width's sub-tensor in its own storage (INT4, LUT or int8, with its bias
and quantization parameters). A pruned (0-bit) channel costs nothing: no weights, bias, parameters or
MACs, and a Conv1D / Conv2D / Dense group whose input is that group's output (``QuantGroup.input_group``)
loses the kernel rows and MACs of the pruned channels too (QAT keeps them off its grid, export removes
them: :func:`pruned_inputs`).
Pruned weights and MACs count as 0 bits in the averages (whose denominators stay the model's).

There is no ``arena_bytes`` cost here. TFLite Micro's arena is set by the activations, int8 in every
full-integer export whatever the policy's activation bits, so with int8 containers it does not depend
on the policy at all. Packed kernels add scratch: TFLite Micro's reference kernels unpack an INT4
filter into the arena on every invoke and DECODE writes a LUT filter's int8 copy there, one operator
at a time, so the arena grows by at most the largest packed kernel (measured: ``bench.deploy_sizes``)
at a place TFLite Micro's memory planner chooses. It is measured on the written file
(``ExportReport.arena_bytes`` and ``scratch_bytes``), not predicted.
"""
from __future__ import annotations

import dataclasses
import math

import dataclasses

from tfmpq.convert import as_tf_keras
from tfmpq.graph import QuantGroup, float_costs
from tfmpq.errors import PolicyError
from tfmpq.policy import PRUNED, QuantPolicy, _groups_of, channel_segments, is_float

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


@dataclasses.dataclass(frozen=True)
class CostMetric:
    """A cost of a policy that :func:`summary` computes and a search minimises (objective) or bounds (budget).

    Attributes:
        name: the key of :func:`summary`'s dict.
        unit: ``"bytes"``, ``"bit-ops"`` or ``"bits"`` (an average bit-width: a budget, not a size to trade).
        linear: a sum of per-group terms when activation bits are fixed, so an integer linear program can
            allocate bits under it (``tfmpq.search.allocation``; ``avg_op_bits <= T`` as ``bops <= T^2 MACs``).
        description: what it is, with its source.
    """

    name: str
    unit: str
    linear: bool
    description: str


#: The one table of the cost metrics a search may use, in the order budgets are offered (Tmamna et al.'s
#: avg_op_bits first). ``flash_bytes_int8`` is not here: int8 containers take 8 bits per weight whatever
#: the policy, so it is the reference of the flash costs, never a cost.
COST_METRIC_TABLE = {m.name: m for m in (
    CostMetric("avg_op_bits", "bits", True, "MAC-weighted operation bit-width (Tmamna et al. 2024, eq. 11)"),
    CostMetric("avg_weight_bits", "bits", True, "parameter-weighted weight bit-width (Tmamna et al. 2024, eq. 10)"),
    CostMetric("weight_bytes", "bytes", True, "weights, biases and quantization parameters"),
    CostMetric("bops", "bit-ops", True, "bit operations (Baskin et al. 2021)"),
    CostMetric("flash_bytes", "bytes", False, "the weights as export_tflite(packed='auto') stores them (a group's "
                                              "storage depends on the others': not a sum of per-group terms)"),
    CostMetric("flash_bytes_int4", "bytes", True, "the weights as export_tflite(packed='int4') stores them"),
    CostMetric("flash_bytes_lut", "bytes", True, "the weights as export_tflite(packed='lut') stores them"),
)}
#: Every cost metric: a search's objectives after accuracy, and the metrics a budget may bound.
COST_METRICS = tuple(COST_METRIC_TABLE)
#: Costs that are sums of per-group terms (with fixed activation bits): what the ILP allocates under.
LINEAR_METRICS = tuple(m.name for m in COST_METRIC_TABLE.values() if m.linear)
#: Sizes and operation counts: the costs a front trades against accuracy on the command line.
TRADED_METRICS = tuple(m.name for m in COST_METRIC_TABLE.values() if m.unit != "bits")
#: The flash metrics that depend on the policy: search objectives and budgets.
FLASH_BUDGETS = tuple(n for n in COST_METRICS if n.startswith("flash_bytes"))


#: Group kinds whose kernel rows are indexed by input channel: pruned input channels drop rows.
ROW_KINDS = ("Conv1D", "Conv2D", "Dense")


def _live(bits, channels: int) -> int:
    """Output channels that are not pruned."""
    return channels - bits.count(PRUNED) if isinstance(bits, tuple) else channels


def pruned_inputs(groups: list[QuantGroup], weight_bits) -> dict:
    """Which kernel rows of each group multiply a pruned channel of the group that feeds it.

    A Conv1D, Conv2D or Dense group whose input is another group's output through layers that keep
    channels apart (``QuantGroup.input_group``: pooling, Flatten, Dropout, padding, ...) multiplies each
    pruned channel's zeros by a block of kernel rows: row ``r`` of its input axis (length ``R``) belongs to
    the producer's channel ``r mod C`` (``R`` = 3 x 3 x C for a conv, S x C for a Dense after a Flatten
    of S positions). QAT keeps those rows out of the consumer's weight grid (they are zeros there) and
    export removes them; a group whose rows are not a multiple of C keeps them all.

    Args:
        groups: the model's `QuantGroup`s.
        weight_bits: one weight bit-width (int or per-channel tuple) per group.

    Returns:
        ``{group name: (C, kept)}`` for the groups that lose rows: the producer's channels and a tuple of
        C booleans, True for a kept channel.
    """
    by_name = {g.name: (g, b) for g, b in zip(groups, weight_bits)}
    out = {}
    for g in groups:
        source = by_name.get(g.input_group) if g.input_group is not None else None
        if source is None or g.kind not in ROW_KINDS or not isinstance(source[1], tuple) or PRUNED not in source[1]:
            continue
        producer, bits = source
        if (g.kernel_params // max(g.out_channels, 1)) % producer.out_channels:
            continue
        out[g.name] = (producer.out_channels, tuple(b != PRUNED for b in bits))
    return out


def deployed_groups(groups: list[QuantGroup], weight_bits, keep_fed_rows: bool = False) -> list[QuantGroup]:
    """The groups as deployed under `weight_bits`: without the kernel rows that pruned channels feed
    (:func:`pruned_inputs`), so with fewer kernel weights, parameters and MACs.

    Args:
        groups: the model's `QuantGroup`s.
        weight_bits: one weight bit-width (int or per-channel tuple) per group.
        keep_fed_rows: keep those rows (the groups unchanged): see :func:`summary`. Defaults to False.

    Returns:
        The groups, with `kernel_params`, `params` and `macs` reduced where rows are removed (the same
        objects where nothing is).
    """
    rows = {} if keep_fed_rows else pruned_inputs(groups, weight_bits)
    out = []
    for g in groups:
        if g.name not in rows:
            out.append(g)
            continue
        channels, kept = rows[g.name]
        kernel = g.kernel_params // channels * sum(kept)
        macs = g.macs // channels * sum(kept)
        out.append(dataclasses.replace(g, kernel_params=kernel, params=kernel + g.bias_params, macs=macs))
    return out


def group_weight_bytes(group: QuantGroup, weight_bits, per_channel: bool = True) -> float:
    """Bytes one group's weights take at `weight_bits` (see the module docstring).

    Channel-wise bits: each live channel's kernel weights at its width, plus its bias and quantization
    parameters (channel-wise bits imply one scale per channel); pruned channels cost nothing.
    """
    if is_float(weight_bits):
        return group.params * weight_bits / 8
    if isinstance(weight_bits, tuple):
        per_channel_params = group.kernel_params / group.out_channels
        live = _live(weight_bits, group.out_channels)
        bias = 4 * live if group.bias_params else 0
        return per_channel_params * sum(weight_bits) / 8 + bias + live * QPARAM_BYTES
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


def _lut_bound(group: QuantGroup, weight_bits: int, channels: int | None = None) -> int | None:
    """LUT bytes of a group's kernel (or of `channels` of its channels) with tables of min(2^b - 1,
    weights per channel) entries."""
    if is_float(weight_bits) or weight_bits not in LUT_INDEX_BITS:
        return None
    per_channel = max(group.kernel_params // max(group.out_channels, 1), 1)
    params = group.kernel_params if channels is None else per_channel * channels
    channels = max(group.out_channels, 1) if channels is None else channels
    stride = min(2**weight_bits - 1, per_channel)
    return lut_kernel_bytes(params, weight_bits, channels, stride)


def _kernels(groups: list[QuantGroup], weight_bits) -> list[list[tuple]]:
    """Per group, its stored kernels (one per width of a channel-wise group, see ``channel_segments``)
    as ``choose_storage`` arguments plus the channel count: (bits, int4_supported, lut_bytes, int8_bytes, channels)."""
    out = []
    for g, bits in zip(groups, weight_bits):
        if not isinstance(bits, tuple):
            out.append([(bits, int4_supported(g), _lut_bound(g, bits), g.kernel_params, g.out_channels)])
            continue
        per_channel = g.kernel_params // g.out_channels
        out.append([(w, int4_supported(g), _lut_bound(g, w, len(ch)), per_channel * len(ch), len(ch))
                    for w, ch in channel_segments(bits, g.out_channels)])
    return out


def flash_bytes(groups, weight_bits, packing: str = "auto", keep_fed_rows: bool = False) -> list[tuple[str, int]]:
    """The storage and the bytes in the .tflite file of every group's weights under `packing`.

    Per group: kernel (:func:`kernel_bytes`) + 4 bytes of int32 bias per output channel + 2 x 12
    bytes of quantization parameters per output channel (filter and bias: a float32 scale and an int64
    zero point each; the converter writes one per channel even for a per-tensor group). A channel-wise
    group is one such kernel per width (``tfmpq.policy.channel_segments``), each stored as
    ``choose_storages`` says for its width, without its pruned channels; its storage is then the
    widths' storages joined by "+" (e.g. "int4+int8"), narrowest first. A LUT kernel
    is counted with tables of min(2^b - 1, weights per channel) entries, the most a b-bit symmetric
    grid holds: exact when some channel uses every level, else an upper bound (the file pads the
    tables to its fullest channel only). A float group (16/32 bits) is deployed as int8. Weights
    outside the groups (rare: tfmpq folds BatchNormalization into its group) are not counted.
    Assumes the export's defaults (Dense on a 2-D input deployed as a 1x1 CONV_2D).

    Args:
        groups: the model's `QuantGroup`s.
        weight_bits: one weight bit-width (int, or per-channel tuple) per group.
        packing: one of `PACKINGS`. Defaults to "auto".
        keep_fed_rows: count the kernel rows pruned channels feed as kept (see :func:`summary`).
            Defaults to False.

    Returns:
        One (storage, bytes) per group.

    Example:
    >>> groups = tfmpq.quantizable_groups(model)  # doctest: +SKIP
    >>> sum(b for _, b in flash_bytes(groups, [8, 4, 4, 8], "int4"))  # doctest: +SKIP
    """
    groups = deployed_groups(list(groups), list(weight_bits), keep_fed_rows)
    per_group = _kernels(groups, weight_bits)
    storages = iter(choose_storages([k[:4] for kernels in per_group for k in kernels], packing))
    result = []
    for kernels in per_group:
        names, total = [], 0
        for bits, _, lut, params, channels in kernels:
            storage = next(storages)
            kernel = lut if storage == "lut" else kernel_bytes(storage, params)
            total += int(kernel + 4 * channels + 2 * channels * FILE_QPARAM_BYTES)
            names.append(storage)
        result.append(("+".join(names), total))
    return result


def group_flash_bytes(group: QuantGroup, weight_bits, packing: str = "auto") -> tuple[str, int]:
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


def summary(model, policy: QuantPolicy, per_channel: bool = True, packing: str = "auto",
            keep_fed_rows: bool = False) -> dict:
    """Size and compute cost of `policy` on `model`.

    Args:
        model: the float tf_keras or Keras 3 model (or its list of `QuantGroup`s, which skips float
            layers outside the groups).
        policy: a `QuantPolicy` made for this model.
        per_channel: whether weights have one scale per output channel. Defaults to True.
        packing: the packing `flash_bytes` is computed for (see `PACKINGS`); `flash_bytes_int4`,
            `flash_bytes_lut` and `flash_bytes_int8` are always given. Defaults to "auto".
        keep_fed_rows: count the kernel rows that pruned channels feed (:func:`pruned_inputs`) as if they
            were kept; pruned channels still cost nothing themselves. Each cost metric is then at least the
            deployed one and, with fixed activation bits, a sum of per-channel terms (a pruned channel no
            longer changes its consumer's cost): the bound an integer linear program allocates under
            (``tfmpq.search.sensitivity.budget_tables``). Defaults to False (the deployed costs).

    Returns:
        A dict with `float_weight_bytes`, `weight_bytes`, `compression_ratio`, `compression_ratio_eq9`,
        `avg_weight_bits`, `avg_activation_bits`, `bops`, `avg_op_bits`, `macs` (executed: without
        pruned channels), `params`, `float_weight_share` (the share of the weights in layers outside every
        group, counted at 32 bits in every average and ratio), the `FLASH_METRICS`, and `groups` (a per-group list of name,
        weight/activation bits, the bits of its input tensor ``input_bits``, params, MACs, bytes, and
        the storage and flash bytes under `packing`; a channel-wise group adds ``channels``, its
        ``[width, count]`` pairs, narrowest first, and ``pruned``, its pruned channels).

    Raises:
        PolicyError: if `policy` was made for another model, or has channel-wise bits and
            `per_channel` is False.
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
    if policy.is_channel_wise and not per_channel:
        raise PolicyError(
            "Invalid value for `per_channel`: channel-wise weight bits need one scale per output channel "
            "(per_channel=True). Received: per_channel=False."
        )
    floats = float_costs(model)  # layers outside the groups: 32-bit weights fed by 32-bit tensors
    other, other_macs = sum(p for p, _ in floats.values()), sum(m for _, m in floats.values())
    float_bytes = sum(g.params for g in groups) * 4 + other * 4
    per_group, size = [], other * 4.0
    bit_params = float(FLOAT_BITS * other)  # eq. 10 numerator, then eq. 11's and the BOPs below
    bit_ops, total_ops = float(FLOAT_BITS * FLOAT_BITS * other_macs), float(other_macs)
    act_macs, executed = float(FLOAT_BITS * other_macs), float(other_macs)
    feeding = input_bits(groups, policy)
    flash = {name: flash_bytes(groups, policy.weight_bits, name, keep_fed_rows) for name in PACKINGS}
    deployed = deployed_groups(groups, policy.weight_bits, keep_fed_rows)
    for g, d, wb, ab, ib, (storage, flash_group) in zip(
        groups, deployed, policy.weight_bits, policy.activation_bits, feeding, flash[packing]
    ):
        nbytes = group_weight_bytes(d, wb, per_channel)
        size += nbytes
        if isinstance(wb, tuple):  # per channel: each channel's weights and MACs at its own width
            bit_params += sum(wb) * (d.kernel_params / d.out_channels)
            bit_ops += sum(wb) * ib * (d.macs / d.out_channels)
            macs = d.macs * (len(wb) - wb.count(PRUNED)) / d.out_channels
        else:
            bit_params += wb * d.kernel_params  # eq. 10 numerator
            bit_ops += wb * ib * d.macs  # BOPs, and eq. 11 numerator: weights x the tensor fed in
            macs = d.macs
        total_ops += g.macs  # pruned MACs count as 0-bit operations in eq. 11
        executed += macs
        act_macs += ib * macs
        row = {"name": g.name, "kind": g.kind, "weight_bits": wb, "activation_bits": ab, "input_bits": ib,
               "params": g.params, "macs": g.macs, "weight_bytes": nbytes, "storage": storage,
               "flash_bytes": flash_group}
        if isinstance(wb, tuple):
            row["channels"] = [[w, wb.count(w)] for w in sorted(set(wb) - {PRUNED})]
            row["pruned"] = wb.count(PRUNED)
        per_group.append(row)
    kernel_params = sum(g.kernel_params for g in groups) + other
    all_params = sum(g.params for g in groups) + other
    avg_w = bit_params / kernel_params if kernel_params else 0.0
    return {
        "float_weight_bytes": float(float_bytes),
        "weight_bytes": float(size),
        "compression_ratio": float(float_bytes / size) if size else float("inf"),
        "compression_ratio_eq9": 32.0 / avg_w if avg_w else float("inf"),
        "avg_weight_bits": avg_w,
        "avg_activation_bits": act_macs / executed if executed else 0.0,
        "bops": float(bit_ops),
        "avg_op_bits": math.sqrt(bit_ops / total_ops) if total_ops else 0.0,
        "macs": int(round(executed)),
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
