"""Fixtures of the search tests (the real tiny problem, `digits_mlp`, is in tests/conftest.py)."""
import pytest


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

    def metrics(self, policy, **options):
        return self.evaluator.metrics(policy, **options)

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
