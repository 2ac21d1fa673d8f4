"""The one place tfmpq imports TensorFlow and Keras 2.

tfmot 0.8.1 needs Keras 2, so ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first
imported; every tfmpq module imports ``tf``, ``keras`` and ``tfmot`` from here.

TensorFlow's native start-up lines on machines without a GPU ("Could not find cuda drivers ...")
are written to file descriptor 2 before any logging setting applies; they are held back during the
import, and shown if the import fails or ``TFMPQ_DEBUG=1``.
"""
import os
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_quietly():
    if os.environ.get("TFMPQ_DEBUG") == "1" or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_import_quietly()

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

__all__ = ["tf", "keras", "tfmot"]
