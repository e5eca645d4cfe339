import dataclasses

import numpy as np
import pytest
import torch
import yaml
from snakemake.utils import validate

from trajbench import attentive, probe
from trajbench.attentive import AttentiveConfig, AttentivePooler

SCHEMA = "workflow/schemas/config.schema.yaml"


def order_grids(n=90, frames=4, positions=16, channels=8, noise=0.1, seed=0):
    """The issue's order task: two fixed channel signatures A and B light up at two random spatial positions, one at
    t=1 and the other at t=2; class 0 = A first, class 1 = B first. Every clip holds the same two signatures, so only
    the order of the two frames tells the classes apart: the mean over time and space is the same for both."""
    rng = np.random.default_rng(seed)
    signatures = rng.standard_normal((2, channels))
    y = np.arange(n) % 2
    grids = noise * rng.standard_normal((n, frames, positions, channels))
    for i in range(n):
        first, second = rng.choice(positions, size=2, replace=False)
        grids[i, 1, first] += signatures[y[i]]
        grids[i, 2, second] += signatures[1 - y[i]]
    return grids.astype(np.float16), y


def score_all(grids, y, config, splits):
    return [attentive.score_split(grids, y, s.train_idx, s.test_idx, 2, config, probe._seed_for(0, s.repeat, s.fold))
            for s in splits]


@pytest.fixture(scope="module")
def order_task():
    grids, y = order_grids()
    return grids, y, probe.make_splits(y, folds=3, repeats=1, seed=0)


def test_the_attentive_probe_sees_order_where_the_linear_probe_on_pooled_grids_cannot(order_task):
    grids, y, splits = order_task
    results = score_all(grids, y, AttentiveConfig(), splits)
    accuracy = [r["accuracy"] for r in results]
    assert np.mean(accuracy) >= 0.9, accuracy
    for split, result in zip(splits, results):
        predictions = np.asarray(result["predictions"])
        assert result["accuracy"] == pytest.approx(np.mean(predictions == y[split.test_idx]))
        assert 0.9 <= result["macro_f1"] <= 1.0
        assert result["params"]["weight_decay"] in AttentiveConfig().weight_decay
    pooled = grids.astype(np.float32).mean(axis=(1, 2))
    linear = probe.run_probe(pooled, y, splits, Cs=[0.01, 0.1, 1.0, 10.0], inner_folds=3, pca_dim=8, knn_k=5, seed=0)
    assert abs(linear.summary["logreg"]["accuracy"]["mean"] - 0.5) <= 0.1


def test_without_the_time_embedding_it_is_blind_to_order(order_task):
    """Attention pooling is a weighted mean: with space embeddings only, both classes are the same set of tokens."""
    grids, y, splits = order_task
    results = score_all(grids, y, AttentiveConfig(time_embedding=False), splits)
    assert abs(np.mean([r["accuracy"] for r in results]) - 0.5) <= 0.1


@pytest.mark.parametrize("heads, time_embedding", [(1, True), (4, True), (4, False)])
def test_the_fast_forward_is_cross_attention_over_the_embedded_tokens(heads, time_embedding):
    """forward() never builds the tokens; it must equal nn.MultiheadAttention run on them, as written in the paper."""
    torch.manual_seed(0)
    config = AttentiveConfig(width=16, heads=heads, time_embedding=time_embedding)
    model = AttentivePooler(channels=6, frames=3, positions=5, num_classes=4, config=config)
    with torch.no_grad():  # non-zero biases, so that every term of the rewrite is exercised
        for bias in (model.project.bias, model.attention.in_proj_bias, model.attention.out_proj.bias):
            bias.normal_()
    grid = torch.randn(2, 3, 5, 6)
    tokens = model.project(grid) + model.space + (model.time if time_embedding else 0)
    tokens = tokens.reshape(2, 15, 16)
    pooled, _ = model.attention(model.query.expand(2, -1, -1), tokens, tokens, need_weights=False)
    expected = model.classify(model.norm(pooled[:, 0]))
    torch.testing.assert_close(model(grid), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_size", [None, 16])
def test_same_bytes_twice_and_the_callers_random_state_untouched(order_task, batch_size):
    grids, y, splits = order_task
    config = AttentiveConfig(epochs=3, batch_size=batch_size)
    split = splits[0]
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = attentive.score_split(grids, y, split.train_idx, split.test_idx, 2, config, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    assert not torch.are_deterministic_algorithms_enabled()
    assert attentive.score_split(grids, y, split.train_idx, split.test_idx, 2, config, seed=7) == first

    x = torch.from_numpy(grids[:40].astype(np.float32))
    labels = torch.from_numpy(y[:40])
    models = [attentive._train(x, labels, 2, config, weight_decay=0.1, seed=3) for _ in range(2)]
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert a.numpy().tobytes() == b.numpy().tobytes(), name
    other = attentive._train(x, labels, 2, config, weight_decay=0.1, seed=4)
    assert not torch.equal(other.query, models[0].query)


def test_ties_keep_the_most_regularised_candidate(order_task, monkeypatch):
    grids, y, splits = order_task
    config = AttentiveConfig(epochs=1, weight_decay=[0.001, 0.1, 0.01])
    assert config.candidates == [0.1, 0.01, 0.001]
    trained = []
    monkeypatch.setattr(attentive, "_predict", lambda model, x: np.zeros(len(x), dtype=np.int64))
    real_train = attentive._train
    monkeypatch.setattr(attentive, "_train", lambda *a, **k: trained.append(a[4]) or real_train(*a, **k))
    split = splits[0]
    result = attentive.score_split(grids, y, split.train_idx, split.test_idx, 2, config, seed=0)
    assert trained == [0.1, 0.01, 0.001, 0.1]  # each candidate on the inner fit set, then the winner on all
    assert result["params"]["weight_decay"] == 0.1
    assert len(set(result["params"]["inner_accuracy"])) == 1


def test_preprocessing_is_fitted_on_the_training_clips_only():
    rng = np.random.default_rng(0)
    grids = rng.standard_normal((30, 2, 3, 20)).astype(np.float16)
    train, test = np.arange(20), np.arange(20, 30)
    z_train, z_test = attentive._preprocess(grids, train, test, dim=4)
    assert z_train.shape == (20, 2, 3, 4) and z_test.shape == (10, 2, 3, 4)
    np.testing.assert_allclose(z_train.reshape(-1, 4).mean(axis=0), 0, atol=1e-5)
    changed = grids.copy()
    changed[test] *= 10
    again, _ = attentive._preprocess(changed, train, test, dim=4)
    np.testing.assert_array_equal(again, z_train)
    # C <= dim: standardisation only, every channel kept.
    z_small, _ = attentive._preprocess(grids, train, test, dim=20)
    np.testing.assert_allclose(z_small.reshape(-1, 20).std(axis=0), 1, rtol=1e-4)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epoch": 3}, r"unknown keys \['epoch'\]; known keys are \['dim'"),
        ({"heads": 3, "width": 32}, "heads=3 must divide width=32"),
        ({"dim": 0}, "dim=0 must be an integer >= 1"),
        ({"learning_rate": "1e-2"}, "learning_rate='1e-2' must be a number > 0 .*write 1.0e-2"),
        ({"weight_decay": []}, r"weight_decay=\(\) must be a non-empty list"),
        ({"weight_decay": [0.1, -1.0]}, "weight_decay=.* must be a non-empty list of numbers >= 0"),
        ({"weight_decay": [0.1, 0.1]}, r"weight_decay=\[0.1, 0.1\] lists a value twice"),
        ({"batch_size": 0}, "batch_size=0 must be an integer >= 1 or null"),
        ({"time_embedding": "yes"}, "time_embedding='yes' must be true or false"),
    ],
)
def test_config_errors_name_the_key(values, message):
    with pytest.raises(ValueError, match="invalid probe.attentive config: " + message):
        AttentiveConfig.from_dict(values)


def test_input_errors_say_what_is_wrong(order_task):
    grids, y, splits = order_task
    split = splits[0]
    with pytest.raises(ValueError, match=r"4-D \(N, T, S, C\) array, got shape \(90, 64, 8\)"):
        attentive.score_split(grids.reshape(90, 64, 8), y, split.train_idx, split.test_idx, 2, AttentiveConfig(), 0)
    bad = grids.copy()
    bad[split.train_idx[0], 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN/inf in 1 training tokens"):
        attentive.score_split(bad, y, split.train_idx, split.test_idx, 2, AttentiveConfig(), 0)
    with pytest.raises(ValueError, match=r"needs >= inner_folds=3 training clips per class, got counts \[2, 2\]"):
        attentive.score_split(grids, y, np.arange(4), np.arange(4, 10), 2, AttentiveConfig(), 0)


def test_the_schema_defaults_are_the_config_defaults(root):
    config = {"models": {}}
    validate(config, str(root / SCHEMA))
    assert config["probe"]["attentive"] == AttentiveConfig().to_dict()
    assert AttentiveConfig.from_dict(config["probe"]["attentive"]) == AttentiveConfig()
    block = yaml.safe_load((root / SCHEMA).read_text())["properties"]["probe"]["properties"]["attentive"]
    assert set(block["properties"]) == {f.name for f in dataclasses.fields(AttentiveConfig)}
