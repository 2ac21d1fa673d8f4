"""SearchSpace: the exact chromosome <-> QuantPolicy mapping, pins, overrides, enumeration."""
import json
import pathlib
import random

import pytest

from tfmpq.errors import PolicyError
from tfmpq.policy import QuantPolicy
from tfmpq.search import SearchSpace, SpaceConfig

GROUPS = ("conv", "dw", "fc")


def test_decode_encode_round_trip_over_whole_space():
    space = SearchSpace(GROUPS, bits=(2, 4, 8))
    seen = set()
    for genes in space.enumerate():
        policy = space.decode(genes)
        assert isinstance(policy, QuantPolicy)
        assert policy.weight_bits == genes and policy.activation_bits == (8, 8, 8)
        assert space.encode(policy) == genes
        seen.add(policy)
    assert len(seen) == space.size() == 27


def test_search_activations_doubles_the_genes():
    space = SearchSpace(GROUPS, bits=(4, 8), search_activations=True, activation_choices=(6, 8))
    assert space.num_genes == 6
    assert space.gene_names == ("conv/w", "dw/w", "fc/w", "conv/a", "dw/a", "fc/a")
    policy = space.decode((4, 8, 4, 6, 8, 8))
    assert policy.weight_bits == (4, 8, 4) and policy.activation_bits == (6, 8, 8)
    assert space.encode(policy) == (4, 8, 4, 6, 8, 8)
    assert space.uniform_chromosomes() == [(4, 4, 4, 6, 6, 6), (8, 8, 8, 8, 8, 8)]
    assert space.uniform_label((8, 8, 8, 8, 8, 8)) == "w8a8"


def test_pinned_groups_carry_no_gene():
    space = SearchSpace(GROUPS, pinned={"dw": (6, 4)})
    assert space.free_groups == ("conv", "fc")
    assert space.decode((2, 3)).weight_bits == (2, 6, 3) and space.decode((2, 3)).activation_bits == (8, 4, 8)
    space = SearchSpace(GROUPS, pin_first_last=True)
    assert space.free_groups == ("dw",) and space.num_genes == 1 and space.size() == 7
    policy = space.decode((3,))
    assert policy.weight_bits == (8, 3, 8) and policy.activation_bits == (8, 8, 8)
    assert space.encode(policy) == (3,)
    with pytest.raises(PolicyError, match="group `conv` is pinned to w8a8. Received: w4a8"):
        space.encode(QuantPolicy(GROUPS, (4, 3, 8), (8, 8, 8)))


def test_overrides_and_uniform_nearest():
    space = SearchSpace(GROUPS, bits=(2, 4, 8), overrides={"fc": (8,)})
    assert space.choices == ((2, 4, 8), (2, 4, 8), (8,))
    assert space.uniform_chromosomes() == [(2, 2, 8), (4, 4, 8), (8, 8, 8)]
    assert space.nearest(0, 5.9) == 4 and space.nearest(0, 6.0) == 8  # ties go to the wider width
    rng = random.Random(0)
    assert all(space.random(rng)[2] == 8 for _ in range(20))


def test_float_bits_allowed():
    space = SearchSpace(GROUPS, bits=(4, 8, 32))
    assert space.decode((32, 4, 8)).weight_bits == (32, 4, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"bits": (2, 9)}, r"Invalid value for `bits`: expected integers in 2..8 or 16/32. Received: bits=\(2, 9\)"),
        ({"bits": ()}, "expected a non-empty set"),
        ({"overrides": {"nope": (4,)}}, "Invalid key in `overrides`: no quantizable group named `nope`"),
        ({"pinned": {"nope": 8}}, "Invalid key in `pinned`: no quantizable group named `nope`"),
        ({"pinned": {"conv": 8, "dw": 8, "fc": 8}}, "every group is pinned"),
        ({"pinned": {"conv": (8, 8, 8)}}, "Invalid pin for group `conv`"),
    ],
)
def test_invalid_space_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SearchSpace(GROUPS, **kwargs)


def test_invalid_chromosomes():
    space = SearchSpace(GROUPS, bits=(4, 8))
    with pytest.raises(PolicyError, match=r"expected 3 genes \(conv/w, dw/w, fc/w\). Received: 2 genes"):
        space.decode((4, 8))
    with pytest.raises(PolicyError, match=r"gene `dw/w` must be one of \(4, 8\). Received: 5"):
        space.decode((4, 5, 8))
    with pytest.raises(PolicyError, match="activations are not searched"):
        space.encode(QuantPolicy(GROUPS, (4, 4, 4), (8, 4, 8)))


def test_signature_and_equality():
    a = SearchSpace(GROUPS, bits=(2, 4))
    assert a == SearchSpace(list(GROUPS), bits=[4, 2, 4])
    assert a != SearchSpace(GROUPS, bits=(2, 4), pin_first_last=True)


# -- SpaceConfig: the space's options, checked once ------------------------------------------------------
def test_space_config_json_round_trip_and_the_space_it_makes():
    config = SpaceConfig(bits=(8, 4, 2), search_activations=True, activation_choices=(8, 4), overrides={"b": (4, 8)},
                         pinned={"c": (8, 4)})
    assert SpaceConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    space = SearchSpace(("a", "b", "c"), config=config)
    assert space == SearchSpace(("a", "b", "c"), bits=(2, 4, 8), search_activations=True, activation_choices=(4, 8),
                                overrides={"b": (4, 8)}, pinned={"c": (8, 4)})
    assert space.config == config and SearchSpace.from_signature(space.signature()) == space
    with pytest.raises(ValueError, match="pass the space's options in `config` or as keywords, not both"):
        SearchSpace(("a", "b"), config=config, pin_first_last=True)


def test_space_options_are_checked_before_any_model_is_read():
    with pytest.raises(ValueError, match=r"Invalid value for `bits`: expected integers in 2..8 or 16/32"):
        SpaceConfig(bits=(4, 9))
    with pytest.raises(ValueError, match=r"Invalid pin for group `a`"):
        SpaceConfig(pinned={"a": (8, 8, 8)})
    with pytest.raises(ValueError, match=r"Invalid keys for SpaceConfig: \['bit'\]"):
        SpaceConfig.from_json({"bit": [4]})


def test_space_signatures_are_those_tfmpq_wrote_before_the_config():
    """``run.json``'s space of every kind of space is what the pre-config code (commit ae66179) wrote."""
    from tfmpq._keras import keras
    from tfmpq.search import make_space

    model = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu", name="hidden"),
                              keras.layers.Dense(10, activation="softmax", name="out")])
    golden = json.loads((pathlib.Path(__file__).parent / "data" / "pre_refactor" / "signatures.json").read_text())
    for name, case in golden["spaces"].items():
        assert make_space(model, **case["kwargs"]).signature() == case["signature"], name
