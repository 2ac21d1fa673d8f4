"""A notebook's order: TensorFlow and Keras 3 first, a model built and trained in Keras 3, then tfmpq.

Run by tests/test_keras3.py in a fresh process (the import order is the point); also runnable by hand:
``python tests/keras3_notebook_order.py OUT_DIR [--tf-keras-first]``. Prints one JSON line with the
Keras 3 model's test accuracy and the exported 8-bit model's accuracy on LiteRT.

``--tf-keras-first`` also touches ``tf.keras`` before tfmpq is imported, as notebooks written for
``tf.keras`` do: TensorFlow then binds ``tf.keras`` to Keras 3 for the rest of the process.
"""
import json
import os
import sys

import tensorflow as tf
import keras  # Keras 3, the default Keras of TensorFlow >= 2.16

if "--tf-keras-first" in sys.argv:
    tf_keras_version = tf.keras.__version__ if hasattr(tf.keras, "__version__") else tf.keras.version()
    assert tf_keras_version.startswith("3."), tf_keras_version
assert keras.__version__.startswith("3."), keras.__version__
assert "tfmpq" not in sys.modules and "tf_keras" not in sys.modules

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

digits = load_digits()
x = (digits.images / 16.0).astype("float32")[..., None]
y = digits.target.astype("int64")
order = np.random.default_rng(0).permutation(len(x))
x, y = x[order], y[order]
x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]

keras.utils.set_random_seed(0)
L = keras.layers
inputs = keras.Input((8, 8, 1), name="image")
h = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv")(inputs)
h = L.BatchNormalization(momentum=0.9, name="conv_bn")(h)
h = L.ReLU(name="conv_relu")(h)
h = L.MaxPooling2D(2, name="pool")(h)
h = L.Flatten(name="flatten")(h)
h = L.Dense(32, activation="relu", name="fc")(h)
outputs = L.Dense(10, activation="softmax", name="head")(h)
model = keras.Model(inputs, outputs, name="digits_cnn")
model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=8, batch_size=32, verbose=0)
keras3_accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])

import tfmpq  # noqa: E402  (after Keras 3, as in the notebook)
from tfmpq.export import evaluate_tflite, export_tflite  # noqa: E402

policy = tfmpq.QuantPolicy.uniform(model, 8)
qat = tfmpq.quantize_model(model, policy)
tfmpq.calibrate(qat, x_train[:512])
path = os.path.join(sys.argv[1], "digits_cnn.tflite")
export_tflite(qat, path, representative_data=x_train[:256])
litert_accuracy = evaluate_tflite(path, x_test, y_test, runtime="litert")
print(json.dumps({"keras3_accuracy": keras3_accuracy, "litert_accuracy": litert_accuracy,
                  "groups": [g.name for g in tfmpq.quantizable_groups(model)], "num_test": int(len(y_test))}))
