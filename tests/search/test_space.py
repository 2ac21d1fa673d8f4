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


# -- channel-wise spaces (issue 25): one gene per cluster of a group's output channels ---------------------
CHANNEL_ORDER = {"conv": (3, 1, 0, 2, 5, 4), "dw": (1, 0), "fc": (2, 0, 1)}


def _channel_space(**kwargs):
    kwargs = {"bits": (2, 4, 8), "granularity": "channel", "channel_clusters": 3, "channel_order": CHANNEL_ORDER,
              **kwargs}
    return SearchSpace(GROUPS, **kwargs)


def test_cluster_channels_cuts_the_order_into_nearly_equal_contiguous_parts():
    from tfmpq.search.space import cluster_channels

    assert cluster_channels(tuple(range(10)), 4) == ((0, 1, 2), (3, 4, 5), (6, 7), (8, 9))
    assert cluster_channels((4, 0, 3, 1, 2), 2) == ((4, 0, 3), (1, 2))
    assert cluster_channels((1, 0), 4) == ((1,), (0,))  # fewer channels than clusters: one cluster per channel
    assert cluster_channels((2, 0, 1), "all") == ((2,), (0,), (1,))


def test_channel_space_decodes_each_cluster_gene_onto_its_channels_in_their_own_order():
    space = _channel_space()
    assert space.clusters == {"conv": ((3, 1), (0, 2), (5, 4)), "dw": ((1,), (0,)), "fc": ((2,), (0,), (1,))}
    assert space.gene_names == ("conv/w0", "conv/w1", "conv/w2", "dw/w0", "dw/w1", "fc/w0", "fc/w1", "fc/w2")
    assert space.gene_groups == ("conv",) * 3 + ("dw",) * 2 + ("fc",) * 3 and space.num_weight_genes == 8
    policy = space.decode((2, 4, 8, 8, 2, 4, 4, 8))
    assert policy.weight_bits == ((4, 2, 4, 2, 8, 8), (2, 8), (4, 8, 4))
    assert space.encode(policy) == (2, 4, 8, 8, 2, 4, 4, 8)
    for genes in space.uniform_chromosomes():  # uniform chromosomes stay uniform (per-layer) policies
        assert space.decode(genes).weight_bits == (genes[0],) * 3
        assert space.encode(space.decode(genes)) == genes
    assert space.encode(QuantPolicy(GROUPS, (4, 8, 2), (8, 8, 8))) == (4, 4, 4, 8, 8, 2, 2, 2)
    with pytest.raises(PolicyError, match=r"the channel bits of group `conv` differ inside its cluster 0 "
                                          r"\(channels \[3, 1\]\). Received widths \[2, 4\]"):
        space.encode(QuantPolicy(GROUPS, ((4, 2, 4, 4, 8, 8), 8, 8), (8, 8, 8)))


def test_channel_space_with_activations_pins_and_overrides():
    space = _channel_space(search_activations=True, pinned={"dw": 8}, overrides={"fc": (4, 8)})
    assert space.gene_names == ("conv/w0", "conv/w1", "conv/w2", "fc/w0", "fc/w1", "fc/w2", "conv/a", "fc/a")
    assert space.choices[3:6] == ((4, 8),) * 3 and set(space.clusters) == {"conv", "fc"}
    assert "dw" not in space.config.channel_order  # the recorded order is the free groups'
    policy = space.decode((2, 2, 4, 8, 4, 4, 4, 8))
    assert policy.weight_bits == ((2, 2, 2, 2, 4, 4), 8, (4, 4, 8)) and policy.activation_bits == (4, 8, 8)
    assert space.encode(policy) == (2, 2, 4, 8, 4, 4, 4, 8)
    assert space.layer_space().gene_names == ("conv/w", "fc/w", "conv/a", "fc/a")
    assert space.weight_labels == space.gene_names[:6] and space.layer_space().weight_labels == ("conv", "fc")


def test_channel_space_config_and_signature_round_trip_through_json():
    space = _channel_space(channel_clusters=2)
    record = json.loads(json.dumps(space.signature()))
    assert record["granularity"] == "channel" and record["channel_clusters"] == 2
    assert record["channel_order"] == {k: list(v) for k, v in CHANNEL_ORDER.items()}
    again = SearchSpace.from_signature(record)
    assert again == space and again.clusters == space.clusters
    genes = (2, 8, 4, 8, 8, 2)
    assert again.decode(genes) == space.decode(genes)
    assert SpaceConfig.from_json(json.loads(json.dumps(space.config.to_json()))) == space.config
    layer = SearchSpace(GROUPS, bits=(2, 4, 8)).signature()  # a layer-wise space records none of it
    assert not {"granularity", "channel_clusters", "channel_ranking", "channel_order"} & set(layer)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"granularity": "neuron"}, r"Invalid value for `granularity`: expected one of \('layer', 'channel'\). "
                                    r"Received: granularity='neuron'"),
        ({"granularity": "channel", "channel_clusters": 0}, r"Invalid value for `channel_clusters`: expected an "
                                                            r"integer >= 1 .* Received: channel_clusters=0"),
        ({"granularity": "channel", "channel_clusters": True}, r"Invalid value for `channel_clusters`"),
        ({"granularity": "channel", "channel_clusters": "some"}, r"Invalid value for `channel_clusters`"),
        ({"granularity": "layer", "channel_clusters": 4}, r"Invalid value for `channel_clusters`: expected None with "
                                                          r"granularity='layer' .* Received: channel_clusters=4"),
        ({"channel_ranking": "hessian"}, r"Invalid value for `channel_ranking`: expected None with granularity='layer'"),
        ({"granularity": "channel", "channel_ranking": "norm"}, r"Invalid value for `channel_ranking`: expected one "
                                                                r"of \('weight', 'hessian'\)"),
        ({"granularity": "channel", "bits": (4, 8, 16)}, r"Invalid value for `bits`: a channel-wise space takes widths "
                                                         r"2..8 .* Received: \[16\]"),
        ({"granularity": "channel", "channel_order": {"conv": (0, 0, 1)}}, r"Invalid value for `channel_order`: "
                                                                          r"expected, per group, a permutation"),
    ],
)
def test_invalid_channel_options_name_the_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpaceConfig(**kwargs)


def test_channel_space_needs_an_order_of_every_free_group():
    with pytest.raises(ValueError, match=r"needs the channel order of every free group; none for \['fc'\]"):
        SearchSpace(GROUPS, granularity="channel", channel_order={"conv": (0, 1), "dw": (0,)})
    with pytest.raises(ValueError, match=r"Invalid key in `channel_order`: no quantizable group named \['x'\]"):
        SearchSpace(GROUPS, granularity="channel", channel_order={**CHANNEL_ORDER, "x": (0,)})
    assert SpaceConfig(granularity="channel", channel_clusters="3").channel_clusters == 3  # the command line's text
