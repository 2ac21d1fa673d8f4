"""The one place tfmpq imports TensorFlow and Keras 2.

tfmot 0.8.1 needs Keras 2, so ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first
imported; every tfmpq module imports ``tf``, ``keras`` and ``tfmot`` from here.

TensorFlow's native start-up lines on machines without a GPU ("Could not find cuda drivers ...")
are written to file descriptor 2 before any logging setting applies; they are held back during the
import, and shown if the import fails or ``TFMPQ_DEBUG=1``.
"""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_quietly():
    if os.environ.get("TFMPQ_DEBUG") == "1" or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    from tfmpq._io import captured_stderr

    held: list = []
    try:
        with captured_stderr() as held:
            import tensorflow  # noqa: F401
    except BaseException:
        sys.stderr.write(held[0] if held else "")
        raise


_import_quietly()

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

__all__ = ["tf", "keras", "tfmot"]
