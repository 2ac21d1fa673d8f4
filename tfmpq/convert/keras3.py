"""Keras 3 -> tf_keras: the same layer graph, configurations and weights, layer by layer.

A Keras 3 functional model is rebuilt by walking the nodes of its ``get_config()`` (the description
Keras 3 itself saves and reloads) and calling, for each node, the tf_keras twin of the node's layer on
the tf_keras tensors of the node's inputs; a Sequential model becomes a tf_keras Sequential. Layer
names are kept, so groups, policies and reports name the same layers. Each layer's configuration is
translated where Keras 3 and Keras 2 spell it differently (dtype policies, serialized arrays,
``LeakyReLU(negative_slope)`` vs ``alpha``); an option tf_keras has no equivalent for, set to anything
but its default, is refused rather than dropped. Weights are copied in the order both Kerases create
them, checked shape by shape.

Only layers whose computation is the same in both Kerases are converted (:data:`SUPPORTED_LAYERS`);
``tests/test_keras3.py`` checks each against Keras 3's output. Anything else (custom layers, Lambda,
``keras.ops`` calls in the graph, preprocessing with state tf_keras lays out differently) is refused
with an error naming the layer and its class.
"""
from __future__ import annotations

import inspect
import weakref

import numpy as np

import keras as keras3  # Keras 3: this module is only imported once a Keras 3 model or file is at hand

from tfmpq._keras import keras
from tfmpq.errors import ModelLoadError, UnsupportedModelError

# Keras 3 layer class -> tf_keras class name, and the config keys whose names differ (Keras 3 -> tf_keras).
SUPPORTED_LAYERS = {
    # weighted layers
    "Conv1D": ("Conv1D", {}),
    "Conv2D": ("Conv2D", {}),
    "DepthwiseConv2D": ("DepthwiseConv2D", {}),
    "SeparableConv2D": ("SeparableConv2D", {}),
    "Conv2DTranspose": ("Conv2DTranspose", {}),
    "Dense": ("Dense", {}),
    "BatchNormalization": ("BatchNormalization", {}),
    # activations
    "ReLU": ("ReLU", {}),
    "Activation": ("Activation", {}),
    "Softmax": ("Softmax", {}),
    "LeakyReLU": ("LeakyReLU", {"negative_slope": "alpha"}),
    # pooling
    "MaxPooling1D": ("MaxPooling1D", {}),
    "MaxPooling2D": ("MaxPooling2D", {}),
    "AveragePooling1D": ("AveragePooling1D", {}),
    "AveragePooling2D": ("AveragePooling2D", {}),
    "GlobalAveragePooling1D": ("GlobalAveragePooling1D", {}),
    "GlobalAveragePooling2D": ("GlobalAveragePooling2D", {}),
    "GlobalMaxPooling1D": ("GlobalMaxPooling1D", {}),
    "GlobalMaxPooling2D": ("GlobalMaxPooling2D", {}),
    # merging
    "Add": ("Add", {}),
    "Subtract": ("Subtract", {}),
    "Multiply": ("Multiply", {}),
    "Average": ("Average", {}),
    "Maximum": ("Maximum", {}),
    "Minimum": ("Minimum", {}),
    "Concatenate": ("Concatenate", {}),
    # reshaping, regularization, preprocessing
    "Flatten": ("Flatten", {}),
    "Reshape": ("Reshape", {}),
    "ZeroPadding1D": ("ZeroPadding1D", {}),
    "ZeroPadding2D": ("ZeroPadding2D", {}),
    "Cropping2D": ("Cropping2D", {}),
    "Dropout": ("Dropout", {}),
    "SpatialDropout2D": ("SpatialDropout2D", {}),
    "GaussianNoise": ("GaussianNoise", {}),
    "Rescaling": ("Rescaling", {}),
    "Normalization": ("Normalization", {}),
}
# Activation names whose functions compute the same values in Keras 3 and tf_keras (checked by
# tests/test_keras3.py). Not here: "hard_sigmoid" (Keras 3: relu6(x + 3) / 6; tf_keras: 0.2 x + 0.5).
SUPPORTED_ACTIVATIONS = (
    "linear", "relu", "relu6", "sigmoid", "softmax", "tanh", "elu", "selu", "softplus", "softsign", "swish",
    "silu", "exponential", "gelu", "leaky_relu", "mish", "log_softmax",
)
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64", "mixed_float16", "mixed_bfloat16")
_LAYER_KWARGS = ("name", "trainable", "dtype")
# Keras 3 options tf_keras lacks, at the values that mean what tf_keras does without them.
_NEUTRAL = {"optional": False, "sparse": False, "ragged": False, "data_format": "channels_last"}


def _supported_text() -> str:
    return ", ".join(["Input"] + list(SUPPORTED_LAYERS)) + ", and nested Sequential/functional models"


def _refuse(layer, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"Cannot convert the Keras 3 layer `{layer.name}` ({type(layer).__name__}) to tf_keras: {why}. "
        f"tfmpq converts these Keras 3 layers: {_supported_text()}. Rebuild the model with them, or build it "
        f"with `import tf_keras as keras`."
    )


# --------------------------------------------------------------------------------------------------
# Configurations.


def _plain(value):
    """Serialized Keras 3 values (numpy arrays, tuples) -> plain Python values."""
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        return np.asarray(value["config"]["value"], dtype=value["config"].get("dtype")).tolist()
    if isinstance(value, dict) and value.get("class_name") == "__tuple__":
        return tuple(_plain(v) for v in value["config"]["value"])
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _dtype(layer, value) -> str:
    name = value
    if isinstance(value, dict):
        name = value.get("config", {}).get("name")
    elif value is not None and not isinstance(value, str):
        name = getattr(value, "name", None)
    name = name or "float32"
    if name not in _FLOAT_DTYPES:
        raise _refuse(layer, f"its dtype policy `{name}` (a quantized or non-float policy) has no tf_keras equivalent")
    return name


def _serialized_object(layer, key: str, value, module):
    """An initializer / regularizer / constraint of Keras 3 -> the same one of tf_keras.

    Initializers only matter for re-initialising (the weights are copied), so an initializer tf_keras
    does not know falls back to tf_keras's default; a regularizer or constraint changes training and
    is refused instead.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = {"class_name": value, "config": {}}
    cls_name = value.get("class_name")
    cls = getattr(module, str(cls_name), None)
    if inspect.isclass(cls):
        params = inspect.signature(cls.__init__).parameters
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        config = {k: _plain(v) for k, v in (value.get("config") or {}).items()}
        unknown = {k: v for k, v in config.items() if k not in params and v is not None}
        if not unknown or accepts_any:
            kept = {k: v for k, v in config.items() if k in params or accepts_any}
            try:
                return cls(**kept)
            except (TypeError, ValueError):
                pass
    if key.endswith("_initializer"):
        return None  # tf_keras's default; the weights are copied anyway
    raise _refuse(layer, f"its `{key}` ({cls_name} {value.get('config')}) has no tf_keras equivalent")


def _activation(layer, value):
    if value is None:
        return "linear"
    if isinstance(value, dict):  # a serialized built-in: {"class_name": "function", "config": "relu", ...}
        value = value.get("config") if isinstance(value.get("config"), str) else value.get("class_name")
    if not isinstance(value, str) or value not in SUPPORTED_ACTIVATIONS:
        raise _refuse(layer, f"its activation {value!r} is not one tfmpq converts "
                             f"(supported: {', '.join(SUPPORTED_ACTIVATIONS)})")
    return value


def _defaults(cls) -> dict:
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def layer_config(layer) -> tuple[type, dict]:
    """The tf_keras class and constructor arguments equivalent to a Keras 3 layer.

    Args:
        layer: a Keras 3 layer of a class in :data:`SUPPORTED_LAYERS`.

    Returns:
        ``(tf_keras layer class, config)``; ``cls.from_config(config)`` is the twin layer.

    Raises:
        UnsupportedModelError: a layer class not in :data:`SUPPORTED_LAYERS` (subclasses included),
            or an option tf_keras cannot express.
    """
    cls_name = type(layer).__name__
    if cls_name not in SUPPORTED_LAYERS or type(layer) is not getattr(keras3.layers, cls_name, None):
        kind = "a custom layer" if not type(layer).__module__.startswith("keras.") else "not a layer tfmpq converts"
        raise _refuse(layer, kind)
    target_name, renames = SUPPORTED_LAYERS[cls_name]
    target = getattr(keras.layers, target_name)
    config = dict(layer.get_config())
    out = {}
    for key, value in config.items():
        if key == "dtype":
            value = _dtype(layer, value)
        elif key.endswith("_initializer"):
            value = _serialized_object(layer, key, value, keras.initializers)
            if value is None:
                continue
        elif key.endswith("_regularizer"):
            value = _serialized_object(layer, key, value, keras.regularizers)
        elif key.endswith("_constraint"):
            value = _serialized_object(layer, key, value, keras.constraints)
        elif key == "activation":
            value = _activation(layer, value)
        else:
            value = _plain(value)
        out[renames.get(key, key)] = value
    if cls_name == "Rescaling":  # arrays serialize as {"class_name": "__numpy__"}; read the layer's own
        out["scale"], out["offset"] = _plain(layer.scale), _plain(layer.offset)
    accepted = set(inspect.signature(target.__init__).parameters) | set(_LAYER_KWARGS)
    k3_defaults = _defaults(type(layer))
    for key in [k for k in out if k not in accepted]:
        value = out.pop(key)
        original = {v: k for k, v in renames.items()}.get(key, key)
        at_default = original in k3_defaults and _plain(k3_defaults[original]) == value
        if at_default or _NEUTRAL.get(key, object()) == value:
            continue  # an option tf_keras lacks, left at the value that means "off"
        raise _refuse(layer, f"its option `{original}={value!r}` has no tf_keras equivalent")
    return target, out


# --------------------------------------------------------------------------------------------------
# Graphs.


class _Converter:
    """Builds the tf_keras twin of one Keras 3 model and remembers which layer got whose weights."""

    def __init__(self):
        self.pairs = []  # (Keras 3 layer, tf_keras layer): weights and trainable flags to copy
        self.containers = []  # (Keras 3 model, tf_keras model), outermost first: trainable flags to copy

    def layer(self, k3_layer):
        if isinstance(k3_layer, keras3.Model):
            return self.model(k3_layer)
        cls, config = layer_config(k3_layer)
        try:
            new = cls.from_config(config)
        except (TypeError, ValueError) as e:
            raise _refuse(k3_layer, f"tf_keras rejects its configuration ({e})") from e
        self.pairs.append((k3_layer, new))
        return new

    def model(self, model):
        _check(model)
        if isinstance(model, keras3.Sequential):
            new = self._sequential(model)
        else:
            new = self._functional(model)
        self.containers.insert(0, (model, new))  # an inner model is finished first: outermost ends up first
        return new

    def _input(self, config: dict):
        if config.get("sparse") or config.get("ragged"):
            raise UnsupportedModelError(
                f"Cannot convert the Keras 3 input `{config.get('name')}` to tf_keras: sparse and ragged inputs "
                f"are not supported. Expected a dense input."
            )
        return keras.Input(batch_shape=tuple(config["batch_shape"]), dtype=config.get("dtype") or "float32",
                           name=config.get("name"))

    def _sequential(self, model):
        entries = model.get_config()["layers"]
        if entries and entries[0]["class_name"] == "InputLayer":
            first = self._input(entries[0]["config"])
        else:
            first = keras.Input(batch_shape=tuple(model.inputs[0].shape), dtype=model.inputs[0].dtype)
        layers = [self.layer(layer) for layer in model.layers]
        return keras.Sequential([first] + layers, name=model.name)

    def _functional(self, model):
        config = model.get_config()
        operations = {op.name: op for op in model.operations}
        tensors = {}  # (layer name, node index, tensor index) -> tf_keras tensor
        built = {}  # layer name -> tf_keras layer
        pending = []
        for entry in config["layers"]:
            name = entry["name"] if "name" in entry else entry["config"]["name"]
            op = operations.get(name)
            if entry["class_name"] == "InputLayer" and not entry.get("inbound_nodes"):
                tensors[(name, 0, 0)] = self._input(entry["config"])
                continue
            if not isinstance(op, keras3.layers.Layer):
                raise UnsupportedModelError(
                    f"Cannot convert the operation `{name}` ({entry['class_name']}, from `{entry.get('module')}`) "
                    f"of Keras 3 model `{model.name}` to tf_keras: it is a `keras.ops` call, not a layer. Use the "
                    f"equivalent layer (e.g. keras.layers.Add for `+`). tfmpq converts: {_supported_text()}."
                )
            for index, node in enumerate(entry.get("inbound_nodes", [])):
                pending.append((name, index, node))
        # Nodes are listed per layer; a shared layer's later node may need tensors made after its first.
        while pending:
            ready = [(n, i, node) for n, i, node in pending if _inputs_known(node, tensors)]
            if not ready:
                missing = sorted({h[0] for _, _, node in pending for h in _histories(node)
                                  if tuple(h) not in tensors})
                raise UnsupportedModelError(f"Cannot convert Keras 3 model `{model.name}`: the inputs of "
                                            f"{[n for n, _, _ in pending][:5]} (from {missing[:5]}) are never made.")
            for name, index, node in ready:
                pending.remove((name, index, node))
                layer = built.get(name)
                if layer is None:
                    layer = built[name] = self.layer(operations[name])
                args = _rebuild(node.get("args", []), tensors)
                # `training` is dropped: Keras 3 records the default it resolved (training=False for a
                # Dropout) and overrides it with the outer call's value, while tf_keras would keep a
                # recorded value over the outer one (a Dropout would never drop while training).
                kwargs = {k: v for k, v in _rebuild(node.get("kwargs", {}), tensors).items()
                          if v is not None and k != "training"}
                try:
                    outputs = layer(*args, **kwargs)
                except (TypeError, ValueError) as e:
                    raise _refuse(operations[name], f"tf_keras cannot call it as the model does ({e})") from e
                flat = outputs if isinstance(outputs, (list, tuple)) else [outputs]
                for t_index, tensor in enumerate(flat):
                    tensors[(name, index, t_index)] = tensor
        inputs = [tensors[tuple(h)] for h in _triples(config["input_layers"], model, "inputs")]
        outputs = [tensors[tuple(h)] for h in _triples(config["output_layers"], model, "outputs")]
        return keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                           outputs[0] if len(outputs) == 1 else outputs, name=model.name)


def _is_functional(model) -> bool:
    return any(c.__name__ == "Functional" and c.__module__.startswith("keras.src.models.")
               for c in type(model).__mro__)


def _check(model) -> None:
    if not isinstance(model, keras3.Sequential) and not _is_functional(model):
        raise UnsupportedModelError(
            f"tfmpq converts Sequential and functional Keras 3 models; `{model.name}` is a subclassed "
            f"`{type(model).__name__}`, whose layer graph cannot be read. Rebuild it with the functional API."
        )
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not model.built or not inputs:
        raise UnsupportedModelError(
            f"Keras 3 model `{model.name}` is not built: give it a `keras.Input` or call "
            f"`model.build(input_shape)` first."
        )


def _histories(obj):
    """The ``keras_history`` ([layer, node, tensor]) of every Keras 3 tensor in a serialized node."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return [obj["config"]["keras_history"]]
        return [h for v in obj.values() for h in _histories(v)]
    if isinstance(obj, (list, tuple)):
        return [h for v in obj for h in _histories(v)]
    return []


def _inputs_known(node, tensors) -> bool:
    return all(tuple(h) in tensors for h in _histories(node))


def _rebuild(obj, tensors):
    """A serialized node argument with its Keras 3 tensors replaced by the tf_keras ones."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return tensors[tuple(obj["config"]["keras_history"])]
        if obj.get("class_name") in ("__tuple__", "__numpy__"):
            return _plain(obj)
        return {k: _rebuild(v, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_rebuild(v, tensors) for v in obj)
    return obj


def _triples(spec, model, what: str) -> list:
    """[[layer, node, tensor], ...] from a Keras 3 config's ``input_layers`` / ``output_layers``."""
    if isinstance(spec, (list, tuple)) and len(spec) == 3 and isinstance(spec[0], str):
        return [spec]
    if isinstance(spec, (list, tuple)) and all(
            isinstance(s, (list, tuple)) and len(s) == 3 and isinstance(s[0], str) for s in spec):
        return list(spec)
    raise UnsupportedModelError(
        f"Cannot convert Keras 3 model `{model.name}`: its {what} are a {type(spec).__name__} structure. "
        f"Expected one tensor or a list of tensors."
    )


# --------------------------------------------------------------------------------------------------
# The public functions (through tfmpq.convert).

# Keras 3 model -> (structure key, tf_keras model, [(Keras 3 layer, tf_keras layer)]).
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _structure(model) -> tuple:
    return tuple((layer.name, type(layer).__name__, id(layer)) for layer in model.layers) + (
        tuple(tuple(t.shape) for t in model.inputs),)


def sync(containers, pairs) -> None:
    """Copies every Keras 3 layer's weights and ``trainable`` flag onto its tf_keras twin.

    Models first, outermost first (setting a model's flag sets its layers'), then each layer's own.
    """
    for source, target in containers:
        target.trainable = source.trainable
    for source, target in pairs:
        target.trainable = source.trainable
        values = source.get_weights()
        shapes = [tuple(w.shape) for w in target.weights]
        if [tuple(v.shape) for v in values] != shapes:
            raise _refuse(source, f"its weights {[tuple(v.shape) for v in values]} do not fit the tf_keras "
                                  f"layer's {shapes}")
        target.set_weights(values)


def to_tf_keras(model):
    """The tf_keras twin of a Keras 3 model (see :func:`tfmpq.convert.as_tf_keras`)."""
    key = None
    try:
        key = _structure(model)
    except (AttributeError, TypeError, ValueError):
        pass
    cached = _CACHE.get(model)
    if cached is None or cached[0] != key:
        converter = _Converter()
        new = converter.model(model)
        cached = (key, new, converter.containers, converter.pairs)
        _CACHE[model] = cached
    sync(cached[2], cached[3])
    return cached[1]


def loss(value):
    """The tf_keras twin of a Keras 3 loss object or function, or None if tf_keras has none."""
    if not hasattr(value, "get_config"):  # a function: keras.losses.sparse_categorical_crossentropy
        name = getattr(value, "__name__", None)
        return name if name and callable(getattr(keras.losses, name, None)) else None
    cls = getattr(keras.losses, type(value).__name__, None)
    if not inspect.isclass(cls):
        return None
    params = inspect.signature(cls.__init__).parameters
    config = {k: _plain(v) for k, v in value.get_config().items() if k in params}
    if config.get("reduction") not in ("sum", "none", "sum_over_batch_size"):
        config.pop("reduction", None)  # Keras 3's other reductions: tf_keras's default
    try:
        return cls(**config)
    except (TypeError, ValueError):
        return None


def load(path: str, custom_objects: dict | None = None):
    """Loads a Keras 3 model file with Keras 3 (``compile=False``) and converts it to tf_keras."""
    try:
        model = keras3.saving.load_model(path, compile=False, custom_objects=custom_objects)
    except Exception as e:  # corrupt file, unknown custom layer: one clear error
        raise ModelLoadError(
            f"Cannot load {path} with Keras {keras3.__version__}, which saved it: {type(e).__name__}: {e}. "
            f"Models with custom layers need `custom_objects`."
        ) from e
    if not isinstance(model, keras3.Model):
        raise ModelLoadError(f"Cannot load a Keras model from {path}: it holds a {type(model).__name__}.")
    return to_tf_keras(model)
