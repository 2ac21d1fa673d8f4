"""EvaluatorConfig: every evaluator option checked once, JSON, and the source of the evaluator's signature."""
import dataclasses
import json
import pathlib

import numpy as np
import pytest

from tfmpq.evaluate.config import BN_FOLDS, EvaluatorConfig
from tfmpq.options import Flag, option

SIGNATURES = pathlib.Path(__file__).parents[1] / "search" / "data" / "pre_refactor" / "signatures.json"


def test_json_round_trip_and_normalised_values():
    config = EvaluatorConfig(evaluation="oneshot", epochs=3, oneshot_bits=(8, 4, 4), oneshot_activation_bits=[8, 4],
                             learning_rate=np.float32(1e-3), distill=1)
    data = json.loads(json.dumps(config.to_json()))
    assert EvaluatorConfig.from_json(data) == config
    assert (config.oneshot_bits, config.oneshot_activation_bits, config.distill) == ((4, 8), (4, 8), True)
    assert type(config.learning_rate) is float and config.shared_learning_rate == config.learning_rate
    with pytest.raises(ValueError, match=r"Invalid keys for EvaluatorConfig: \['lr'\]"):
        EvaluatorConfig.from_json({"lr": 1e-3})


@pytest.mark.parametrize("options, message", [
    ({"evaluation": "int8"}, r"Invalid value for `evaluation`: expected one of \('qat', 'ptq', 'oneshot'\)"),
    ({"epochs": 0}, r"Invalid value for `epochs`: expected an integer >= 1 for QAT"),
    ({"evaluation": "oneshot", "epochs": 0}, r"epochs of the shared one-shot training"),
    ({"optimizer": "lion"}, r"expected 'adam', 'sgd' or 'rmsprop'. Received: optimizer='lion'"),
    ({"bn_fold": "fused"}, r"Invalid value for `bn_fold`: expected one of \('one_conv', 'two_conv'\)"),
    ({"calibration_batches": 0}, r"Invalid value for `calibration_batches`: expected >= 1"),
    ({"learning_rate": -1e-3}, r"Invalid value for `learning_rate`: expected a positive finite number"),
    ({"oneshot_learning_rate": float("nan")}, r"Invalid value for `oneshot_learning_rate`"),
    ({"oneshot_bits": (4, 9)}, r"Invalid value for `oneshot_bits`: expected a non-empty sequence of bit-widths"),
    ({"num_random_policies": -1}, r"Invalid value for `num_random_policies`: expected an integer >= 0"),
])
def test_each_option_is_checked_once_with_a_message_naming_it(options, message):
    with pytest.raises(ValueError, match=message):
        EvaluatorConfig(**options)
    with pytest.raises(ValueError, match=message):  # the same check, whichever way the evaluator is configured
        EvaluatorConfig().replace(**options)


def test_bn_folds_are_the_quantizers():
    from tfmpq.quantize.layers import BN_FOLDS as QUANTIZE_BN_FOLDS

    assert BN_FOLDS == QUANTIZE_BN_FOLDS


def _mlp():
    from tfmpq._keras import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu", name="hidden"),
                              keras.layers.Dense(10, activation="softmax", name="out")], name="digits_mlp")
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    rng = np.random.default_rng(0)
    return model, rng.random((200, 8, 8, 1)).astype("float32"), rng.integers(0, 10, 200)


def test_evaluator_signatures_are_those_tfmpq_wrote_before_the_config():
    """What run.json records of an evaluator (here without the model and data fingerprints) is what the
    pre-config Evaluator (commit ae66179) recorded, for every evaluation mode and non-default options."""
    from tfmpq.evaluate import Evaluator

    model, x, y = _mlp()
    for name, case in json.loads(SIGNATURES.read_text())["evaluators"].items():
        options = dict(case["kwargs"])
        ev = Evaluator(model, (x[:150], y[:150]), (x[150:], y[150:]), seed=options.pop("seed", 0), **options)
        sig = json.loads(json.dumps(ev.signature()))
        for key in ("weights_sha1", "model_config_sha1", "data_sha1"):
            assert len(sig.pop(key)) == 40
        assert sig == case["signature"], name


@dataclasses.dataclass(frozen=True)
class _WithSchedule(EvaluatorConfig):
    """An evaluator option added after the run-directory format was fixed (as issue 24's will be)."""

    lr_schedule: str = option("constant", Flag("the fine-tunes' learning-rate schedule", choices=("constant", "cosine")))


def test_an_added_option_enters_the_signature_only_where_it_is_set():
    """Old run directories keep their signature; a run that sets the new option is told apart on resume."""
    assert _WithSchedule().signature() == EvaluatorConfig().signature()
    assert _WithSchedule(lr_schedule="cosine").signature() == {**EvaluatorConfig().signature(), "lr_schedule": "cosine"}
    assert _WithSchedule.from_json(_WithSchedule(lr_schedule="cosine").to_json()).lr_schedule == "cosine"
