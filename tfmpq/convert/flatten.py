"""Nested models inlined and SeparableConv2D split: the flat tf_keras graph tfmpq works on.

Transfer learning puts a whole model inside another (``Sequential([MobileNetV2(include_top=False),
GlobalAveragePooling2D(), Dense(10)])``); to the outer model's graph the backbone is one opaque layer,
so none of its convolutions could be a group. :func:`flatten_model` builds the equivalent flat
functional model by replaying, node by node, what Keras itself runs when it calls the outer model
(``Functional._run_internal_graph``), descending into every nested Sequential or functional model,
at any depth, instead of calling it. Every layer is a copy (same class and configuration) of the
original, so the outputs are the same up to float rounding; the weights and ``trainable`` flags are
copied again from the original on every call, so a model trained further is seen with its new
weights (as a Keras 3 model is, :func:`tfmpq.convert.as_tf_keras`).

Names keep their nesting: a layer ``block_1_expand`` of the nested model ``mobilenetv2_0.35_96``
becomes ``mobilenetv2_0.35_96/block_1_expand``, so groups, policies and reports read as the user
built the model, and two nested blocks with layers of the same name stay apart. The separator is
``/`` because it is already TensorFlow's: a layer's variables are named ``<layer>/<weight>`` under
name scopes, tf_keras accepts it in layer names, and a flat model named so quantizes, trains,
exports (the export finds each group's tensor by its name) and round-trips through ``.keras``,
``.h5`` and SavedModel files (``tests/convert/test_nested.py``). Keras 3 refuses ``/`` in names, but the flat
model is a tf_keras model only.

A ``SeparableConv2D`` (channels last) is split into the two convolutions it computes
(``tf.nn.separable_conv2d``): a ``DepthwiseConv2D`` named ``<name>/depthwise`` (the strides,
padding, dilation and depth multiplier, no bias) and a 1x1 ``Conv2D`` named ``<name>/pointwise``
(the bias and the activation), so each is its own group with its own bits, and a BatchNormalization
after the SeparableConv2D folds into the pointwise one.

What is not carried over: the ``training`` and ``mask`` arguments of the call of a nested model
(as in the Keras 3 conversion): a BatchNormalization folded into a group follows tfmpq's
``bn_freeze_step``; to keep a backbone's statistics frozen while training the float model, set
``backbone.trainable = False`` (copied to every layer). A nested subclassed model cannot be read and
stays one opaque float layer (``tfmpq.float_layers`` says so).
"""
from __future__ import annotations

import weakref

from tf_keras.src.saving.serialization_lib import SafeModeScope

from tfmpq._keras import keras, tf
from tfmpq.errors import UnsupportedModelError

#: The separator between a nested model's name and its layers' names.
SEPARATOR = "/"


def _is_model(layer) -> bool:
    return isinstance(layer, keras.Model)


def _readable(layer) -> bool:
    """A nested model whose graph can be replayed: functional, or a built Sequential (a subclassed
    model cannot be read and stays one opaque layer)."""
    if not _is_model(layer):
        return False
    return bool(getattr(layer, "_is_graph_network", False)) or (isinstance(layer, keras.Sequential) and layer.built)


def _splits(layer) -> bool:
    return type(layer) is keras.layers.SeparableConv2D and layer.data_format == "channels_last"


def needs_flattening(model) -> bool:
    """Whether `model` holds a readable nested model or a SeparableConv2D (channels last)."""
    return any(_readable(layer) or _splits(layer) for layer in getattr(model, "layers", ()))


class _Flat:
    """The flat twin of one model: the model, and how to copy the original's weights into it."""

    def __init__(self, model, copies: list, key: tuple):
        self.model = model
        self.copies = copies  # (original layer, [(flat layer, indices of the original's weights)])
        self.key = key

    def sync(self) -> None:
        """Copies every original layer's weights and ``trainable`` flag onto its flat copies."""
        pairs = []
        for source, targets in self.copies:
            values = source.get_weights()
            for target, indices in targets:
                target.trainable = source.trainable
                pairs += [(w, values[i]) for w, i in zip(target.weights, indices)]
        keras.backend.batch_set_value(pairs)


class _Flattener:
    """Replays a model's graph with copies of its layers, inlining the nested models."""

    def __init__(self):
        self.copies = {}  # id(original layer) -> (original, callable on tensors, [(flat layer, indices)])
        self.order = []

    def run(self, model):
        inputs = [keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=t._keras_history.layer.name)
                  for t in model.inputs]
        outputs = self._replay(model, inputs, "")
        nested_inputs = model._nested_inputs  # noqa: SLF001 - the structure the model was built with
        structure = tf.nest.pack_sequence_as(nested_inputs, inputs) if tf.nest.is_nested(nested_inputs) \
            else inputs[0]
        flat = keras.Model(structure, outputs, name=model.name)
        return flat, [(self.copies[i][0], self.copies[i][2]) for i in self.order]

    def _replay(self, model, inputs: list, prefix: str):
        """`model`'s outputs computed from `inputs` (one tensor per ``model.inputs``), as Keras does."""
        if not getattr(model, "_is_graph_network", False):  # a Sequential built without a graph
            x = inputs[0]
            for layer in model.layers:
                x = self._call(layer, (x,), {}, prefix)
            return x
        usage = model._tensor_usage_count  # noqa: SLF001 - Keras's own bookkeeping, as _run_internal_graph
        tensors = {}
        for reference, value in zip(model.inputs, inputs):
            tensors[str(id(reference))] = [value] * usage[str(id(reference))]
        for depth in sorted(model._nodes_by_depth, reverse=True):  # noqa: SLF001
            for node in model._nodes_by_depth[depth]:  # noqa: SLF001
                if node.is_input or any(t not in tensors for t in node.flat_input_ids):
                    continue
                args, kwargs = node.map_arguments(tensors)
                outputs = self._call(node.layer, args, kwargs, prefix)
                for tensor_id, value in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
                    tensors[tensor_id] = [value] * usage[tensor_id]
        outputs = [tensors[str(id(t))].pop() for t in model.outputs]
        return tf.nest.pack_sequence_as(model._nested_outputs, outputs)  # noqa: SLF001

    def _call(self, layer, args, kwargs, prefix: str):
        if _readable(layer):
            inputs = layer._flatten_to_reference_inputs(args[0]) if args else []  # noqa: SLF001
            return self._replay(layer, list(inputs), prefix + layer.name + SEPARATOR)
        entry = self.copies.get(id(layer))
        if entry is None:
            entry = self.copies[id(layer)] = self._copy(layer, prefix)
            self.order.append(id(layer))
        return entry[1](*args, **kwargs)

    def _copy(self, layer, prefix: str):
        """(layer, a callable computing it with copies, [(copy, indices of the layer's weights)])."""
        if _splits(layer):
            return self._split_separable(layer, prefix)
        try:
            config = layer.get_config()
            config["name"] = prefix + layer.name
            with SafeModeScope(False):  # a Lambda holds the user's own code (see quantize_model)
                copy = type(layer).from_config(config)
        except (NotImplementedError, TypeError, ValueError) as e:
            raise UnsupportedModelError(
                f"Cannot flatten the layer `{prefix + layer.name}` ({type(layer).__name__}) out of its nested "
                f"model: it cannot be re-created from its config ({type(e).__name__}: {e}). Give the class a "
                "`get_config`, or build the model without nesting it."
            ) from e
        indices = list(range(len(layer.weights)))
        return layer, copy, [(copy, indices)]

    def _split_separable(self, layer, prefix: str):
        c = layer.get_config()
        name = prefix + layer.name
        depthwise = keras.layers.DepthwiseConv2D(
            c["kernel_size"], strides=c["strides"], padding=c["padding"], depth_multiplier=c["depth_multiplier"],
            dilation_rate=c["dilation_rate"], use_bias=False, depthwise_regularizer=c.get("depthwise_regularizer"),
            depthwise_constraint=c.get("depthwise_constraint"), trainable=c.get("trainable", True),
            dtype=c.get("dtype"), name=name + SEPARATOR + "depthwise",
        )
        pointwise = keras.layers.Conv2D(
            c["filters"], 1, activation=c["activation"], use_bias=c["use_bias"],
            kernel_regularizer=c.get("pointwise_regularizer"), kernel_constraint=c.get("pointwise_constraint"),
            bias_regularizer=c.get("bias_regularizer"), bias_constraint=c.get("bias_constraint"),
            activity_regularizer=c.get("activity_regularizer"), trainable=c.get("trainable", True),
            dtype=c.get("dtype"), name=name + SEPARATOR + "pointwise",
        )
        # SeparableConv2D's weights: depthwise kernel, pointwise kernel[, bias]
        bias = [2] if c["use_bias"] else []
        return layer, lambda x, **kwargs: pointwise(depthwise(x)), [(depthwise, [0]), (pointwise, [1] + bias)]


def _structure(model) -> tuple:
    """What a cached flat twin depends on: every layer object, nested ones included, and the inputs."""
    parts = []
    for layer in model.layers:
        parts.append((layer.name, type(layer).__name__, id(layer)))
        if _is_model(layer):
            parts.append(_structure(layer))
    return tuple(parts) + (tuple(tuple(t.shape) for t in getattr(model, "inputs", None) or ()),)


# original model -> its _Flat twin
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def flatten_model(model):
    """The flat functional tf_keras model equivalent to `model` (itself when there is nothing to do).

    Nested Sequential and functional models, at any depth, are inlined (their layers named
    ``<nested model>/<layer>``) and every SeparableConv2D (channels last) is split into
    ``<name>/depthwise`` and ``<name>/pointwise``; see the module docstring. The same model object
    always gives the same flat model object, its weights and ``trainable`` flags copied again from
    `model` on every call.

    Args:
        model: a built tf_keras Sequential or functional model.

    Returns:
        `model` itself when it holds no nested model and no SeparableConv2D, else the flat twin.

    Raises:
        UnsupportedModelError: a nested layer that cannot be re-created from its config.

    Example:
    >>> backbone = keras.applications.MobileNetV2((96, 96, 3), alpha=0.35, include_top=False, weights=None)
    >>> model = keras.Sequential([backbone, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    >>> [l.name for l in flatten_model(model).layers][:3]  # doctest: +SKIP
    ['input_1', 'mobilenetv2_0.35_96/Conv1', 'mobilenetv2_0.35_96/bn_Conv1']
    """
    if not needs_flattening(model) or not getattr(model, "inputs", None):
        return model
    key = _structure(model)
    cached = _CACHE.get(model)
    if cached is None or cached.key != key:
        flat, copies = _Flattener().run(model)
        cached = _CACHE[model] = _Flat(flat, copies, key)
    cached.sync()
    return cached.model
