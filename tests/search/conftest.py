"""Fixtures of the search tests: a real tiny problem (an MLP on scikit-learn's digits, 2 groups)."""
import pytest


@pytest.fixture(scope="session")
def digits_mlp(digits):
    """Flatten -> Dense(32, relu) -> Dense(10, softmax), trained 15 epochs: 2 quantizable groups."""
    from tfmpq._keras import keras

    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ], name="digits_mlp")
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    return model


class MemoEvaluator:
    """Shares scores between runs of one test (evaluation is a pure, seeded function of the policy);
    ``calls`` counts what the wrapped evaluator really computed for *this* wrapper's run."""

    def __init__(self, evaluator, memo=None, interrupt_after=None):
        self.evaluator = evaluator
        self.model = evaluator.model
        self.memo = {} if memo is None else memo
        self.calls = 0
        self.interrupt_after = interrupt_after
        self.evaluated = []

    def evaluate(self, policy):
        self.calls += 1
        if self.interrupt_after is not None and self.calls == self.interrupt_after:
            raise KeyboardInterrupt("simulated kill")
        self.evaluated.append(policy.weight_bits)
        if policy not in self.memo:
            self.memo[policy] = self.evaluator.evaluate(policy)
        c = self.memo[policy]
        return type(c)(c.policy, c.accuracy, dict(c.metrics), c.seconds, c.status, c.error, None, dict(c.info))

    def metrics(self, policy):
        return self.evaluator.metrics(policy)

    def signature(self):
        return self.evaluator.signature()

    def finetune(self, policy, epochs):
        return self.evaluator.finetune(policy, epochs)

    def build(self, policy, epochs=None):
        return self.evaluator.build(policy, epochs)

    def representative_data(self):
        return self.evaluator.representative_data()


@pytest.fixture
def memo_evaluator():
    return MemoEvaluator
