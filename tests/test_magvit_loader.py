"""trajbench.checkpoint_magvit.load_checkpoint: accepted layouts and the error for each kind of bad file."""

from __future__ import annotations

import argparse

import pytest
import torch

from trajbench import checkpoint_magvit
from trajbench.checkpoint_magvit import (
    CheckpointError,
    ema_name,
    load_checkpoint,
    save_checkpoint,
)
from trajbench.modeling_magvit import MagvitConfig, build_model

CONFIG = MagvitConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, resolution=16)


@pytest.fixture(scope="module")
def weights():
    """Raw weights and EMA weights that differ from them, so a test sees which set was loaded."""
    raw = build_model(CONFIG, seed=0).state_dict()
    ema = {key: value + 0.5 for key, value in raw.items()}
    return raw, ema


def assert_loaded(model, expected):
    assert not model.training
    state = model.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == torch.float32 and torch.equal(state[key], value.float()), key


def lightning_file(path, state_dict, **top_level):
    torch.save({"state_dict": state_dict, "epoch": 3, "global_step": 100, **top_level}, path)
    return path


def test_flat_layout_loads_raw_and_ema(weights, tmp_path):
    raw, ema = weights
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, raw, ema)
    assert_loaded(load_checkpoint(path, CONFIG), ema)  # EMA by default
    assert_loaded(load_checkpoint(path, CONFIG, weights="raw"), raw)


def test_ema_keys_must_match_the_weights(weights, tmp_path):
    raw, ema = weights
    first = min(raw)
    ema = {("extra.weight" if key == first else key): value for key, value in ema.items()}
    with pytest.raises(ValueError, match=rf"EMA keys differ from the weights' keys: only in weights \['{first}'\], "
                                         r"only in EMA \['extra\.weight'\]"):
        save_checkpoint(tmp_path / "model.ckpt", raw, ema)
    assert not list(tmp_path.iterdir())


def test_model_without_ema_state_saves_a_copy_as_ema(tmp_path):
    model = build_model(CONFIG, seed=1)
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, model)
    state = torch.load(path, weights_only=True)["state_dict"]
    key = "decoder.conv_out.conv_1.weight"
    assert state[key].untyped_storage().data_ptr() != state[ema_name(key)].untyped_storage().data_ptr()
    assert_loaded(load_checkpoint(path, CONFIG), model.state_dict())
    # The authors' EMA bookkeeping: decay as float32, num_updates as int32 (0 unless given).
    decay, updates = state["model_ema.decay"], state["model_ema.num_updates"]
    assert (decay.dtype, updates.dtype, updates.item()) == (torch.float32, torch.int32, 0)
    assert decay.item() == pytest.approx(0.999)


def test_saved_bytes_depend_only_on_the_weights(weights, tmp_path):
    raw, ema = weights
    save_checkpoint(tmp_path / "a.ckpt", raw, ema)
    save_checkpoint(tmp_path / "b.ckpt", raw, ema)
    save_checkpoint(tmp_path / "c.ckpt", raw)
    assert (tmp_path / "a.ckpt").read_bytes() == (tmp_path / "b.ckpt").read_bytes()
    assert (tmp_path / "a.ckpt").read_bytes() != (tmp_path / "c.ckpt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt", "b.ckpt", "c.ckpt"]  # no temporary files left


def test_nested_ema_layout_is_accepted(weights, tmp_path):
    raw, ema = weights
    nested = {ema_name(key)[len("model_ema.") :]: value for key, value in ema.items()}
    nested.update(decay=torch.tensor(0.999), num_updates=torch.tensor(7, dtype=torch.int32))
    path = lightning_file(tmp_path / "nested.ckpt", {**raw, "model_ema": nested})
    assert_loaded(load_checkpoint(path, CONFIG), ema)
    assert_loaded(load_checkpoint(path, CONFIG, weights="raw"), raw)


def test_half_precision_weights_are_loaded_as_float32(weights, tmp_path):
    raw, _ = weights
    half = {key: value.to(torch.bfloat16) for key, value in raw.items()}
    path = tmp_path / "bf16.ckpt"
    save_checkpoint(path, half)
    assert_loaded(load_checkpoint(path, CONFIG, weights="raw"), half)


def test_truncated_file(weights, tmp_path):
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, weights[0])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as err:
        load_checkpoint(path, CONFIG)
    assert str(path) in str(err.value) and "rerun the download" in str(err.value)


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "video_128_262144.ckpt"
    path.write_text("<html>404 Not Found</html>")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint") as err:
        load_checkpoint(path, CONFIG)
    assert f"{path} (26 bytes)" in str(err.value) and "b'<htm'" in str(err.value)


def test_zip_without_a_state_dict(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match=r"expected a dict with a 'state_dict' dict, found \['model'\]") as err:
        load_checkpoint(path, CONFIG)
    assert str(path) in str(err.value)
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match=r"a 'state_dict' dict, found list\. Point the config"):
        load_checkpoint(path, CONFIG)
    torch.save({f"key{i:02d}": 0 for i in range(25)}, path)  # the first 20 keys are named
    with pytest.raises(CheckpointError, match=r"found \['key00', .*'key19'\]\. Point") as err:
        load_checkpoint(path, CONFIG)
    assert "key20" not in str(err.value)


def test_long_listings_are_cut_at_twelve():
    names = [f"k{i:02d}" for i in range(14)]
    assert checkpoint_magvit._listing(names) == ", ".join(names[:12]) + ", ... (2 more)"
    assert checkpoint_magvit._listing(names[:12]) == ", ".join(names[:12])


def test_checkpoint_of_another_architecture(weights, tmp_path):
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, weights[0])
    wider = MagvitConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=6, resolution=16)
    with pytest.raises(CheckpointError, match="mis-shaped") as err:
        load_checkpoint(path, wider)
    message = str(err.value)
    assert str(path) in message and "'z_channels': 6" in message and "missing" not in message
    assert "model_ema.encoderconv_outconv_1weight: file (4, 64, 1, 1, 1), model (6, 64, 1, 1, 1)" in message
    deeper = MagvitConfig(ch=32, ch_mult=(1, 2), num_res_blocks=2, z_channels=4, resolution=16)
    with pytest.raises(CheckpointError, match=r"missing: .*encoder\.down\.0\.block\.1\.norm1\.weight") as err:
        load_checkpoint(path, deeper, weights="raw")
    with pytest.raises(CheckpointError, match="ema weights do not match the MagVit architecture {.ch.: 128"):
        load_checkpoint(path)  # the default is the full-size config


def test_missing_and_unexpected_ema_entries_are_named(weights, tmp_path):
    raw, _ = weights
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, raw)
    state = torch.load(path, weights_only=True)["state_dict"]
    del state["model_ema.decoderadaptive0gammaweight"], state["model_ema.encoderconv_inconv_1weight"]
    state["model_ema.lossdiscriminatorweight"] = torch.zeros(1)
    lightning_file(path, state)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, CONFIG)
    message = str(err.value)
    assert "2 missing: model_ema.encoderconv_inconv_1weight, model_ema.decoderadaptive0gammaweight" in message
    assert "1 unexpected: model_ema.lossdiscriminatorweight" in message
    assert_loaded(load_checkpoint(path, CONFIG, weights="raw"), raw)  # the raw set is intact


def test_unexpected_raw_key_and_non_tensor_value(weights, tmp_path):
    raw, _ = weights
    path = lightning_file(tmp_path / "model.ckpt", {**raw, "encoder.extra.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match=r"1 unexpected: encoder\.extra\.weight"):
        load_checkpoint(path, CONFIG, weights="raw")
    path = lightning_file(tmp_path / "model.ckpt", {**raw, "decoder.norm_out.bias": [0.0] * 32})
    with pytest.raises(CheckpointError, match=r"decoder\.norm_out\.bias: file a list, not a tensor"):
        load_checkpoint(path, CONFIG, weights="raw")
    path = lightning_file(tmp_path / "model.ckpt", {**raw, "decoder.norm_out.bias": torch.zeros(32, dtype=torch.int64)})
    with pytest.raises(CheckpointError, match=r"1 mis-shaped: decoder\.norm_out\.bias: file \(32,\) of torch\.int64, "
                                              r"not floating point, model \(32,\)\. Pass the config"):
        load_checkpoint(path, CONFIG, weights="raw")


def test_checkpoint_without_ema_weights(weights, tmp_path):
    path = lightning_file(tmp_path / "raw-only.ckpt", dict(weights[0]))
    with pytest.raises(CheckpointError, match="holds no EMA weights.*weights='raw'") as err:
        load_checkpoint(path, CONFIG)
    assert str(path) in str(err.value)
    assert_loaded(load_checkpoint(path, CONFIG, weights="raw"), weights[0])


def test_pickled_non_tensor_object_needs_an_explicit_allowlist(weights, tmp_path):
    raw, ema = weights
    path = tmp_path / "lightning.ckpt"
    save_checkpoint(path, raw, ema)
    state = torch.load(path, weights_only=True)["state_dict"]
    lightning_file(path, state, hyper_parameters=argparse.Namespace(lr=1e-4))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, CONFIG)
    message = str(err.value)
    assert str(path) in message and "argparse.Namespace" in message
    assert "safe_globals=[argparse.Namespace]" in message and "arbitrary code" in message
    assert_loaded(load_checkpoint(path, CONFIG, safe_globals=[argparse.Namespace]), ema)
    with pytest.raises(CheckpointError, match="argparse.Namespace"):  # allowed for that one load only
        load_checkpoint(path, CONFIG)


def test_invalid_weights_choice(weights, tmp_path):
    with pytest.raises(ValueError, match="'ema' or 'raw', got 'best'"):
        load_checkpoint(tmp_path / "unused.ckpt", CONFIG, weights="best")
