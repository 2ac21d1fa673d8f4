"""Writes pre_refactor/signatures.json (see pre_refactor/README.md): python data/make_signatures.py > pre_refactor/signatures.json"""
import json, sys
import numpy as np
sys.path.insert(0, "tests")
from tfmpq._keras import keras
from tfmpq.evaluate import Evaluator
from tfmpq.search import make_space, SearchSpace
keras.utils.set_random_seed(0)
m = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
    keras.layers.Dense(32, activation="relu", name="hidden"), keras.layers.Dense(10, activation="softmax", name="out")], name="digits_mlp")
m.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
rng = np.random.default_rng(0)
x = rng.random((200, 8, 8, 1)).astype("float32"); y = rng.integers(0, 10, 200)
cases = {
 "ptq": dict(evaluation="ptq"),
 "qat": dict(evaluation="qat"),
 "qat_options": dict(evaluation="qat", epochs=2, batch_size=32, seed=5, per_channel=False, learning_rate=1e-3,
                     calibration_batches=2, bn_fold="two_conv", optimizer="sgd", bn_freeze_step=10, reuse_model=False),
 "oneshot": dict(evaluation="oneshot"),
 "oneshot_options": dict(evaluation="oneshot", epochs=3, distill=True, num_random_policies=1, oneshot_bits=(8, 4),
                         oneshot_activation_bits=(4, 8), oneshot_learning_rate=3e-4, symmetric=False),
}
out = {"evaluators": {}, "spaces": {}}
for name, kw in cases.items():
    ev = Evaluator(m, (x[:150], y[:150]), (x[150:], y[150:]), **kw)
    sig = ev.signature()
    for k in ("weights_sha1", "model_config_sha1", "data_sha1"):
        sig.pop(k)
    out["evaluators"][name] = {"kwargs": kw, "signature": sig, "spec_options": {k: list(v) if isinstance(v, tuple) else v for k, v in ev._options.items()}}
spaces = {
 "default": dict(),
 "activations": dict(bits=(2, 4, 8), search_activations=True, activation_choices=(4, 8)),
 "pins": dict(bits=(3, 8), activation_bits=6, overrides={"out": (4, 8)}, pinned={"hidden": (8, 4)}),
 "first_last": dict(bits=(4, 8), pin_first_last=False, pinned={"out": 8}),
}
for name, kw in spaces.items():
    out["spaces"][name] = {"kwargs": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()},
                           "signature": make_space(m, **kw).signature()}
print(json.dumps(out, indent=1, default=list))
