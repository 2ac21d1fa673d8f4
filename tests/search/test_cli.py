"""``python -m tfmpq.search``: the command that reproduces reported runs."""
import json

import pytest

from tfmpq.search.__main__ import main


@pytest.mark.slow
def test_cli_exhaustive_then_resume(tmp_path, capsys):
    from tfmpq import data
    from tfmpq._keras import keras

    ds = data.load("digits")
    keras.utils.set_random_seed(0)
    i = keras.Input(ds.input_shape)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(keras.layers.Flatten()(i))
    model = keras.Model(i, keras.layers.Dense(10, activation="softmax", name="out")(x))
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(ds.x_train, ds.y_train, epochs=5, verbose=0)
    path = tmp_path / "mlp.keras"
    model.save(path)
    args = ["exhaustive", "--model", str(path), "--data", "digits", "--val", "test", "--evaluation", "ptq",
            "--bits", "2", "8", "--run-dir", str(tmp_path / "run"), "--verbose", "0"]
    main(args)
    assert "search wall time" in capsys.readouterr().out
    front = json.loads((tmp_path / "run" / "front.json").read_text())
    assert front and all(len(c["genes"]) == 2 for c in front)
    main(args + ["--resume"])
    assert "(0 evaluated here, 0 cache hits)" in capsys.readouterr().out
