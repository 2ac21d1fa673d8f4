"""tfmpq's exception family: each names what was wrong, what was received and what is expected."""


class TfmpqError(Exception):
    """Base class of every tfmpq error."""


class PolicyError(TfmpqError, ValueError):
    """A QuantPolicy that does not fit its model (length, bit-width, group names)."""


class UnsupportedModelError(TfmpqError, TypeError):
    """A model tfmpq cannot analyse (subclassed Model, Keras 3 model, ...)."""


class FloatLayerError(UnsupportedModelError):
    """Layers that would stay in float (not quantized) where `strict=True` asked for none."""


class ModelLoadError(TfmpqError, ValueError):
    """A model file that exists but cannot be loaded as a Keras model."""


class ExportError(TfmpqError, ValueError):
    """A model that cannot be exported to a TFLite file that runs."""


class CheckpointError(TfmpqError, ValueError):
    """A run directory that cannot be resumed (corrupt, or made by another problem)."""


class ExecutorError(TfmpqError, RuntimeError):
    """The workers evaluating a search's candidates cannot go on (they fail to start, no room on the cluster)."""
