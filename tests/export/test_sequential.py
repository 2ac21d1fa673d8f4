"""Export of a Sequential QAT model with a layer kept in float."""
import tfmpq
from tfmpq._keras import keras
from tfmpq.export import evaluate_tflite, export_tflite


def test_sequential_model_with_a_float_lambda(digits, tmp_path):
    """A Sequential QAT model (its InputLayer lives only in its config) with a Lambda kept in float."""
    (x, y), (xt, yt) = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, name="c"), keras.layers.BatchNormalization(),
        keras.layers.ReLU(), keras.layers.Lambda(lambda t: t * 0.5, name="half"), keras.layers.Flatten(),
        keras.layers.Dense(10, name="out"),
    ])
    assert tfmpq.float_layers(model) == {"half": "Lambda layers are opaque to tfmpq and stay in float"}
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss, ["accuracy"])
    model.fit(x, y, epochs=3, verbose=0)
    qat = tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 4, 8))
    qat.compile("adam", loss, ["accuracy"])
    qat.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "seq.tflite")
    report = export_tflite(qat, path, x[:128])
    assert report.bits == {"c": 4, "out": 4}
    keras_acc = qat.evaluate(xt, yt, verbose=0)[1]
    assert abs(evaluate_tflite(path, xt, yt, runtime="tflm") - keras_acc) <= 0.01
