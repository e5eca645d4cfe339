"""Feature extractors on tiny transformers models saved in tmp folders, hand-made tokens and toy labels: features and
token grids of both controls (the clips as rendered and frame-shuffled)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/huggingface_hub read it: no test touches the network
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    VideoMAEConfig,
    VideoMAEForPreTraining,
    VideoMAEImageProcessor,
    VideoMAEModel,
)

from trajbench import controls
from trajbench.features import extract_features, extract_inits
from trajbench.io import write_json
from trajbench.models import processor_ops
from trajbench.models.base import FeatureError
from trajbench.models.magvit import token_histogram, unpack_bits

N, T, H, W = 6, 5, 24, 24
VIDEOMAE_MEAN, VIDEOMAE_STD = [0.4, 0.45, 0.5], [0.2, 0.25, 0.3]  # not the defaults: meta must show them


@pytest.fixture(scope="module")
def videos():
    return np.random.default_rng(0).integers(0, 256, (N, T, H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def labels():
    return _labels(N, T)


@pytest.fixture(scope="module")
def videomae_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videomae")
    config = VideoMAEConfig(
        image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=37, decoder_num_hidden_layers=1, decoder_hidden_size=16,
        decoder_num_attention_heads=2, decoder_intermediate_size=20, use_mean_pooling=False, norm_pix_loss=True,
    )  # fmt: skip
    torch.manual_seed(1)
    VideoMAEForPreTraining(config).save_pretrained(folder)
    VideoMAEImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=VIDEOMAE_MEAN,
        image_std=VIDEOMAE_STD,
    ).save_pretrained(folder)  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    config = CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(image_size=32, patch_size=16, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16,  # differs from the vision sub-config's default (512), as in a real full-CLIP config
    )  # fmt: skip
    torch.manual_seed(2)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _labels(n, t, seed=0):
    """Three classes (right, left, down) with random starts and speeds; centres in pixels."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 3
    direction = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])[label]
    start = rng.uniform(8, 16, (n, 2))
    speed = rng.uniform(0.5, 1.5, (n, 1))
    xy = start[:, None, :] + direction[:, None, :] * speed[:, None, :] * np.arange(t)[None, :, None]
    table = {"index": np.arange(n), "label": label, "class_name": np.array(["right", "left", "down"])[label]}
    table.update({f"x_{i}": xy[:, i, 0] for i in range(t)})
    table.update({f"y_{i}": xy[:, i, 1] for i in range(t)})
    table[controls.COLUMN] = [controls.format_order(controls.frame_permutation(seed, i, t)) for i in range(n)]
    return pd.DataFrame(table)


def _features(*args, control="ordered", **kwargs):
    """One control's features of `extract_features`."""
    return extract_features(*args, **kwargs)[0][control][0]


def _frames_permuted(ordered, orders):
    """Per-frame arrays (N, T, ...) with clip n's position p taken from frame ``orders[n, p]``."""
    return np.take_along_axis(ordered, orders.reshape(orders.shape + (1,) * (ordered.ndim - 2)), axis=1)


def _torch_op_pixels(processor, frames):
    """Pixel values of uint8 frames (N, H, W, 3) as the workflow makes them: the torch ops with ``processor``'s
    settings (tests/test_preprocess.py holds them to the processor's own output)."""
    settings = processor_ops.pipeline_settings(json.loads(processor.to_json_string()), "test")
    return processor_ops.preprocess(torch.from_numpy(np.ascontiguousarray(frames)), settings)


def _edit_checkpoint(src, dst, drop=(), add=None):
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    for key in drop:
        del tensors[key]
    tensors.update(add or {})
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


# --- VideoMAE ------------------------------------------------------------------------------------------------------


def _videomae_by_hand(folder, clips):
    """The folder's processor on the clips' first 4 frames (num_frames), the encoder: its last hidden state."""
    processor = VideoMAEImageProcessor.from_pretrained(folder)
    model = VideoMAEModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        pixel_values = processor([list(clip) for clip in clips[:, :4]], return_tensors="pt")["pixel_values"]
        return model(pixel_values=pixel_values).last_hidden_state.numpy()


def test_videomae_matches_manual_pipeline_and_records_meta(videos, labels, videomae_dir, tmp_path):
    outputs, meta = extract_features("videomae", "pretrained", videos, labels, {}, weights_dir=videomae_dir,
                                     batch_size=4)  # fmt: skip
    features, grid = outputs["ordered"]
    assert features.shape == (N, 32) and features.dtype == np.float32
    assert meta["frames"] == [0, 1, 2, 3]  # num_frames=4 of 5: the first four, contiguous
    pre = meta["preprocessing"]
    assert (pre["image_mean"], pre["image_std"]) == (VIDEOMAE_MEAN, VIDEOMAE_STD)
    assert pre["crop_size"] == {"height": 32, "width": 32} and pre["pixel_values_shape_per_clip"] == [4, 3, 32, 32]
    assert pre["ran_as"] == "torch ops (trajbench.models.processor_ops.preprocess) on cpu, float32"
    assert meta["attn_implementation"] == "sdpa" and meta["dim"] == 32 and meta["dtype"] == "float32"
    assert meta["grid"]["shape"] == [2, 4, 32] and meta["grid"]["tokens"] == [2, 2, 2, 32]
    assert meta["controls"] == {c: {"dim": 32, "grid_shape": [2, 4, 32]} for c in controls.CONTROLS}
    write_json(tmp_path / "meta.json", meta)  # meta must be JSON-serialisable as it stands
    assert json.loads((tmp_path / "meta.json").read_text())["preprocessing"] == pre

    # The same numbers by hand: the mean of all tokens; the grid is the tokens as (tubelet, patch row x column).
    hidden = _videomae_by_hand(videomae_dir, videos)
    np.testing.assert_allclose(features, hidden.mean(axis=1), rtol=1e-5, atol=1e-6)
    assert grid.dtype == np.float16
    np.testing.assert_allclose(grid, hidden.reshape(N, 2, 4, 32), rtol=1e-3, atol=1e-3)
    # The shuffled control: the same pipeline on the frame-shuffled clips, whose first four positions it sees.
    orders = controls.read_orders(labels, T)
    shuffled = _videomae_by_hand(videomae_dir, controls.shuffle_frames(videos, orders))
    np.testing.assert_allclose(outputs["shuffled"][0], shuffled.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["shuffled"][1], shuffled.reshape(N, 2, 4, 32), rtol=1e-3, atol=1e-3)
    # Pooled to one spatial token per tubelet: the mean of its 2 x 2 patches.
    _, pooled = extract_features("videomae", "pretrained", videos, labels, {}, weights_dir=videomae_dir,
                                 grid_side=1)[0]["ordered"]  # fmt: skip
    np.testing.assert_allclose(pooled, hidden.reshape(N, 2, 4, 32).mean(axis=2, keepdims=True), atol=1e-3)


def test_videomae_deterministic_and_random_differs(videos, labels, videomae_dir):
    run = lambda init, seed=0: _features("videomae", init, videos, labels, {}, weights_dir=videomae_dir, seed=seed)
    pretrained, random_a, random_b = run("pretrained"), run("random"), run("random")
    assert pretrained.tobytes() == run("pretrained").tobytes()
    assert random_a.tobytes() == random_b.tobytes()
    assert not np.allclose(pretrained, random_a, atol=1e-3)
    assert not np.allclose(random_a, run("random", seed=1), atol=1e-3)


def test_videomae_batch_size_does_not_change_features(videos, labels, videomae_dir):
    a = _features("videomae", "pretrained", videos, labels, {}, weights_dir=videomae_dir, batch_size=1)
    b = _features("videomae", "pretrained", videos, labels, {}, weights_dir=videomae_dir, batch_size=6)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_name", ["videomae", "pixels"])
def test_shards_give_the_same_bytes_as_one_job(model_name, videos, labels, videomae_dir):
    run = lambda **kw: extract_features(model_name, "pretrained" if model_name == "videomae" else "none", videos,
                                        labels, {}, weights_dir=videomae_dir, batch_size=2, **kw)  # fmt: skip
    whole, meta = run()
    parts = [run(clips=range(0, 2)), run(clips=range(2, 6))]
    for control in controls.CONTROLS:
        for array in (0, 1):  # features, grid
            joined = np.concatenate([part[0][control][array] for part in parts])
            assert joined.tobytes() == whole[control][array].tobytes()
    assert [p[1]["clips"] for p in parts] == [[0, 2], [2, 6]] and meta["clips"] == [0, N]
    with pytest.raises(FeatureError, match="not a consecutive range within the 6 videos"):
        run(clips=range(4, 8))


@pytest.mark.parametrize("family", ["videomae", "clip"])
def test_inits_extracted_together_equal_one_at_a_time_and_share_each_batch(family, videos, labels, videomae_dir,
                                                                          clip_dir, monkeypatch):  # fmt: skip
    """One job for both inits: the same bytes as one job per init, and each batch preprocessed once (not per init)."""
    folder = {"videomae": videomae_dir, "clip": clip_dir}[family]
    calls = []
    preprocess = processor_ops.preprocess
    monkeypatch.setattr(processor_ops, "preprocess", lambda frames, settings: calls.append(len(frames)) or
                        preprocess(frames, settings))  # fmt: skip
    together = extract_inits(family, ["pretrained", "random"], videos, labels, {}, weights_dir=folder, batch_size=4)
    assert len(calls) == 2 * 2  # two views of two batches (4 + 2 clips), whatever the number of inits
    for init in ("pretrained", "random"):
        alone, meta = extract_features(family, init, videos, labels, {}, weights_dir=folder, batch_size=4)
        for control in controls.CONTROLS:
            for array in (0, 1):  # features, grid
                assert together[init][0][control][array].tobytes() == alone[control][array].tobytes()
        assert together[init][1]["init"] == init and together[init][1]["extracted_with"] == ["pretrained", "random"]
        assert meta["extracted_with"] == [init]
    assert len(calls) == 2 * 2 * 3


def test_inits_together_only_for_networks_and_once_each(videos, labels, videomae_dir):
    with pytest.raises(FeatureError, match=r"magvit \(family magvit\) extracts one init at a time"):
        extract_inits("magvit", ["pretrained", "random"], videos, labels, {})
    with pytest.raises(FeatureError, match=r"inits must name each init once, got \['random', 'random'\]"):
        extract_inits("videomae", ["random", "random"], videos, labels, {}, weights_dir=videomae_dir)
    with pytest.raises(FeatureError, match=r"inits must name each init once, got \[\]"):
        extract_inits("videomae", [], videos, labels, {}, weights_dir=videomae_dir)


def test_inits_together_need_batched_encoders_of_one_preprocessing(videos, labels, monkeypatch):
    """A network family whose encoders cannot share batches, or whose inits preprocess differently, is refused."""
    import dataclasses

    from trajbench.models import base, registry

    def zeros(n):
        return np.zeros((n, 2)), np.zeros((n, 1, 1, 2))

    def plain(run):
        return (lambda view: zeros(len(view.videos))), {"preprocessing": "one"}

    def batched(run):
        return base.Batched(run, lambda clips: clips, lambda clips: zeros(len(clips))), {"preprocessing": run.init}

    family = base.Family(name="fake", role=base.ENCODER, description="a test family", extract=plain, network=True)
    monkeypatch.setattr(registry, "get", lambda name: family)
    with pytest.raises(FeatureError, match=r"family fake's extract must return a Batched encoder to share batches"):
        extract_inits("fake", ["pretrained", "random"], videos, labels, {})
    assert extract_inits("fake", ["random"], videos, labels, {})["random"][0]["ordered"][0].shape == (N, 2)
    monkeypatch.setattr(registry, "get", lambda name: dataclasses.replace(family, extract=batched))
    with pytest.raises(FeatureError, match=r"fake: the inits \['pretrained', 'random'\] preprocess differently"):
        extract_inits("fake", ["pretrained", "random"], videos, labels, {})


def test_videomae_decoder_groups_allowed_and_logged(videos, labels, videomae_dir, caplog):
    caplog.set_level(logging.INFO, logger="trajbench.features")
    _, meta = extract_features("videomae", "pretrained", videos[:2], labels[:2], {}, weights_dir=videomae_dir)
    ignored = meta["ignored_checkpoint_tensors"]
    assert set(ignored) == {"decoder", "encoder_to_decoder", "mask_token"}
    assert ignored["encoder_to_decoder"] == 1 and ignored["mask_token"] == 1 and ignored["decoder"] > 10
    assert "mask_token: 1" in caplog.text and f"decoder: {ignored['decoder']}" in caplog.text


def test_videomae_missing_tensor_is_an_error(videos, labels, videomae_dir, tmp_path):
    broken = _edit_checkpoint(videomae_dir, tmp_path / "broken",
                              drop=["videomae.embeddings.patch_embeddings.projection.weight"])  # fmt: skip
    with pytest.raises(FeatureError, match=r"1 missing tensor\(s\) \[embeddings\.patch_embeddings\.projection\.weight"):
        extract_features("videomae", "pretrained", videos[:1], labels[:1], {}, weights_dir=broken)


def test_videomae_needs_num_frames_frames(videos, labels, videomae_dir):
    with pytest.raises(FeatureError, match="num_frames=4 .* but the clips have 3 frames"):
        extract_features("videomae", "pretrained", np.ascontiguousarray(videos[:, :3]), _labels(N, 3), {},
                         weights_dir=videomae_dir)  # fmt: skip
    with pytest.raises(FeatureError, match=r"unknown option\(s\) \['frames'\] for family videomae"):
        extract_features("videomae", "pretrained", videos, labels, {"frames": 4}, weights_dir=videomae_dir)


# --- CLIP ----------------------------------------------------------------------------------------------------------


def _clip_by_hand(folder, frames):
    """Projection of the pooled vision output and the vision tower's patch tokens, through the full CLIPModel."""
    processor = CLIPImageProcessor.from_pretrained(folder)
    model = CLIPModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        pixel_values = _torch_op_pixels(processor, frames)
        hidden = model.vision_model(pixel_values=pixel_values)
        return model.visual_projection(hidden.pooler_output).numpy(), hidden.last_hidden_state[:, 1:].numpy()


def test_clip_concat_mean_matches_per_frame_embeddings(videos, labels, clip_dir):
    outputs, meta = extract_features("clip", "pretrained", videos, labels, {"frames": 3}, weights_dir=clip_dir)
    features, grid = outputs["ordered"]
    assert features.shape == (N, 4 * 16) and features.dtype == np.float32
    assert meta["frames"] == [0, 1, 2] and meta["preprocessing"]["pixel_values_shape_per_clip"] == [3, 3, 32, 32]
    assert meta["grid"]["shape"] == [3, 4, 32]

    # By hand, frame by frame: the first three frames, their embeddings in order, then their mean.
    embeds, patches = _clip_by_hand(clip_dir, videos[:, :3].reshape(-1, H, W, 3))
    embeds = embeds.reshape(N, 3, 16)
    expected = np.concatenate([embeds.reshape(N, -1), embeds.mean(axis=1)], axis=1)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    # The grid: each frame's 2 x 2 patch tokens (the CLS token dropped).
    np.testing.assert_allclose(grid, patches.reshape(N, 3, 4, 32), rtol=1e-3, atol=1e-3)
    every = _features("clip", "pretrained", videos, labels, {}, weights_dir=clip_dir)
    assert every.shape == (N, (T + 1) * 16)  # by default every frame
    np.testing.assert_allclose(every[:, : 3 * 16], features[:, : 3 * 16], rtol=1e-5, atol=1e-6)
    with pytest.raises(FeatureError, match=r"options.frames must be null \(every frame\) or an int in 1..5"):
        extract_features("clip", "pretrained", videos, labels, {"frames": 6}, weights_dir=clip_dir)


def test_clip_pooling_keeps_order(videos, labels, clip_dir):
    def run(clips, pooling):
        return _features("clip", "pretrained", clips, labels, {"pooling": pooling}, weights_dir=clip_dir)

    reversed_videos = np.ascontiguousarray(videos[:, ::-1])
    forward, backward = run(videos, "concat_mean"), run(reversed_videos, "concat_mean")
    assert not np.allclose(forward, backward, atol=1e-3)
    # Reversal permutes the frame blocks and leaves their mean alone.
    np.testing.assert_allclose(forward[:, :16], backward[:, 64:80], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(forward[:, 80:], backward[:, 80:], rtol=1e-5, atol=1e-6)
    mean_forward, mean_backward = run(videos, "mean"), run(reversed_videos, "mean")
    assert mean_forward.shape == (N, 16)
    np.testing.assert_allclose(mean_forward, mean_backward, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_forward, forward[:, 80:], rtol=1e-5, atol=1e-6)


def test_clip_text_tower_and_stale_buffers_allowed(videos, labels, clip_dir, tmp_path, caplog):
    # Older CLIP checkpoints also carry the position_ids buffer that the model now recomputes.
    stale = _edit_checkpoint(clip_dir, tmp_path / "stale",
                             add={"vision_model.embeddings.position_ids": torch.arange(5)[None]})  # fmt: skip
    caplog.set_level(logging.INFO, logger="trajbench.features")
    _, meta = extract_features("clip", "pretrained", videos[:2], labels[:2], {}, weights_dir=stale)
    ignored = meta["ignored_checkpoint_tensors"]
    assert ignored["text_projection"] == 1 and ignored["logit_scale"] == 1 and ignored["text_model"] > 10
    assert "logit_scale: 1" in caplog.text and "text_model:" in caplog.text


def test_clip_unknown_unexpected_tensor_is_an_error(videos, labels, clip_dir, tmp_path):
    odd = _edit_checkpoint(clip_dir, tmp_path / "odd", add={"image_head.weight": torch.zeros(3, 16)})
    with pytest.raises(FeatureError, match=r"not in the known groups .*\[image_head\.weight\]"):
        extract_features("clip", "pretrained", videos[:1], labels[:1], {}, weights_dir=odd)


def test_clip_random_init_deterministic_and_differs(videos, labels, clip_dir):
    run = lambda init: _features("clip", init, videos, labels, {"pooling": "mean"}, weights_dir=clip_dir)
    random_a = run("random")
    assert random_a.tobytes() == run("random").tobytes()
    assert not np.allclose(random_a, run("pretrained"), atol=1e-3)


# --- MagVit tokens -------------------------------------------------------------------------------------------------

# Two clips, grid (T'=2, H'=1, W'=2), z_channels=3; index bits -> ±1 with channel 0 least significant.
TOKENS = np.array([[[[5, 0]], [[7, 2]]], [[[1, 6]], [[3, 4]]]], dtype=np.int32)
BITS = {0: [-1, -1, -1], 1: [1, -1, -1], 2: [-1, 1, -1], 3: [1, 1, -1], 4: [-1, -1, 1], 5: [1, -1, 1],
        6: [-1, 1, 1], 7: [1, 1, 1]}  # fmt: skip


# The tokenizer's tokens of the shuffled clips (here: the latent frames swapped), as the tokenize stage writes them.
TOKENS_SHUFFLED = np.ascontiguousarray(TOKENS[:, ::-1])


def _magvit(pooling, control="ordered", grid_side=4, **options):
    """One control's features, and the meta."""
    videos = np.zeros((2, 5, 4, 4, 3), np.uint8)
    options = {"z_channels": 3, "pooling": pooling, **options}
    outputs, meta = extract_features("magvit", "pretrained", videos, _labels(2, 5), options, tokens=TOKENS,
                                     tokens_shuffled=TOKENS_SHUFFLED, batch_size=1, grid_side=grid_side)  # fmt: skip
    return outputs[control][0], meta


def test_magvit_bits_exact():
    assert unpack_bits(np.arange(8), 3).tolist() == [BITS[i] for i in range(8)]
    features, meta = _magvit("flatten")
    expected = [sum((BITS[int(i)] for i in clip.ravel()), []) for clip in TOKENS]
    assert features.dtype == np.float32 and features.tolist() == expected
    assert meta["token_grid"] == [2, 1, 2] and meta["dim"] == 12 and meta["frames"] == [0, 1, 2, 3, 4]
    shuffled, _ = _magvit("flatten", control="shuffled")  # from the shuffled clips' own tokens
    assert shuffled.tolist() == [sum((BITS[int(i)] for i in clip.ravel()), []) for clip in TOKENS_SHUFFLED]


def test_magvit_poolings_exact():
    mean_time, _ = _magvit("mean_time")  # per (h, w): mean over t
    assert mean_time.tolist() == [[1, 0, 1, -1, 0, -1], [1, 0, -1, -1, 0, 1]]
    mean_space, _ = _magvit("mean_space")  # per t: mean over (h, w)
    assert mean_space.tolist() == [[0, -1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0]]


def test_magvit_grid_is_the_pooled_bits():
    videos = np.zeros((2, 5, 4, 4, 3), np.uint8)
    run = lambda side: extract_features("magvit", "random", videos, _labels(2, 5), {"z_channels": 3}, tokens=TOKENS,
                                        tokens_shuffled=TOKENS_SHUFFLED, grid_side=side)  # fmt: skip
    outputs, meta = run(4)
    # H' x W' = 1 x 2 fits the grid: one token per latent position, its bits as they are.
    bits = [[[BITS[int(i)] for i in frame.ravel()] for frame in clip] for clip in TOKENS]
    assert outputs["ordered"][1].dtype == np.float16 and outputs["ordered"][1].tolist() == bits
    assert meta["grid"]["shape"] == [2, 2, 3]
    bits_shuffled = [[[BITS[int(i)] for i in frame.ravel()] for frame in clip] for clip in TOKENS_SHUFFLED]
    assert outputs["shuffled"][1].tolist() == bits_shuffled
    # Pooled to 1 x 1: the mean of the two tokens' bits per latent frame (= the mean_space features).
    outputs, meta = run(1)
    assert outputs["ordered"][1].tolist() == [[[[0, -1, 0]], [[0, 1, 0]]], [[[0, 0, 0]], [[0, 0, 0]]]]
    assert meta["grid"] == {"shape": [2, 1, 3], "tokens": [2, 1, 2, 3], "pooled_to": [1, 1],
                            "holds": "each token's ±1 bits, pooled in space"}  # fmt: skip


def test_magvit_needs_the_shuffled_clips_tokens():
    videos = np.zeros((2, 5, 4, 4, 3), np.uint8)
    with pytest.raises(FeatureError, match="got only tokens; rerun rule tokenize"):
        extract_features("magvit", "random", videos, _labels(2, 5), {"z_channels": 3}, tokens=TOKENS)
    with pytest.raises(FeatureError, match=r"tokens_shuffled \(2, 1, 1, 1\) differ in shape from tokens \(2, 2,"):
        extract_features("magvit", "random", videos, _labels(2, 5), {"z_channels": 3}, tokens=TOKENS,
                         tokens_shuffled=TOKENS[:, :1, :, :1])  # fmt: skip


def test_magvit_histogram():
    features, meta = _magvit("mean_space", histogram=True, histogram_bins=64)
    assert features.shape == (2, 6 + 64) and meta["histogram_bins"] == 64
    hist = features[:, 6:]
    np.testing.assert_allclose(hist.sum(axis=1), 1.0)
    assert (hist * 4).round(6).tolist() == np.round(hist * 4).tolist()  # four tokens per clip: multiples of 1/4
    # Position-free and deterministic: a permutation of the same tokens hashes to the same histogram.
    shuffled = TOKENS.reshape(2, -1)[:, ::-1].reshape(TOKENS.shape)
    np.testing.assert_array_equal(token_histogram(shuffled, 64), hist)
    single = token_histogram(np.full((1, 2, 2, 2), 9), 64)
    assert single.max() == 1.0 and np.count_nonzero(single) == 1
    assert not np.array_equal(hist[0], hist[1])


def test_magvit_rejects_indices_beyond_z_channels():
    videos = np.zeros((2, 5, 4, 4, 3), np.uint8)
    tokens = {"tokens": TOKENS, "tokens_shuffled": TOKENS_SHUFFLED}
    with pytest.raises(FeatureError, match=r"ordered tokens of clips 0\.\.1 span 0\.\.7, outside 0\.\.3 for z_chann"):
        extract_features("magvit", "random", videos, _labels(2, 5), {"z_channels": 2}, **tokens)
    with pytest.raises(FeatureError, match="z_channels must be"):
        extract_features("magvit", "random", videos, _labels(2, 5), {}, **tokens)


# --- pixels, the shuffled control, grids, validation ---------------------------------------------------------------


def test_pixels_area_downsampling_and_grid_exact():
    rng = np.random.default_rng(3)
    videos = rng.integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8)
    outputs, meta = extract_features("pixels", "none", videos, _labels(2, 3), {"size": 4}, batch_size=1,
                                     grid_side=2)  # fmt: skip
    features, grid = outputs["ordered"]
    # By hand: each downsampled pixel is the average of its 2 x 2 block of the 8 x 8 frame.
    small = videos.reshape(2, 3, 4, 2, 4, 2, 3).mean(axis=(3, 5)) / 255.0
    assert features.shape == (2, 3 * 4 * 4 * 3) and meta["size"] == [4, 4]
    np.testing.assert_allclose(features, small.reshape(2, -1), rtol=1e-6)
    # The grid: 2 x 2 patches of 2 x 2 downsampled pixels; a token is its patch's pixels in (y, x, rgb) order.
    patches = [[[small[n, t, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].ravel() for r in range(2) for c in range(2)]
                for t in range(3)] for n in range(2)]  # fmt: skip
    assert grid.dtype == np.float16 and meta["grid"]["shape"] == [3, 4, 12]
    np.testing.assert_allclose(grid, np.array(patches), rtol=1e-3)
    again = extract_features("pixels", "none", videos, _labels(2, 3), {"size": 4}, batch_size=2, grid_side=2)[0]
    assert again["ordered"][0].tobytes() == features.tobytes() and again["ordered"][1].tobytes() == grid.tobytes()
    with pytest.raises(FeatureError, match=r"size=\[6, 6\] does not split into a 4 x 4 grid of equal patches"):
        extract_features("pixels", "none", videos, _labels(2, 3), {"size": 6})


def _per_frame_family(family, tmp_path, clip_dir):
    """(name, init, options, weights_dir, frame width D) of a model whose features are per-frame, concat_mean."""
    if family == "pixels":
        return "none", {"size": 8}, None, 8 * 8 * 3
    if family == "clip":
        return "pretrained", {}, clip_dir, 16
    from trajbench.models import dinov2

    return "pretrained", {}, dinov2.write_standin(tmp_path / "dinov2", {}, seed=5), 32


@pytest.mark.parametrize("family", ["pixels", "clip", "dinov2"])
def test_per_frame_shuffled_control_is_the_ordered_frames_permuted(family, videos, labels, clip_dir, tmp_path):
    init, options, folder, width = _per_frame_family(family, tmp_path, clip_dir)
    outputs, meta = extract_features(family, init, videos, labels, options, weights_dir=folder, batch_size=4)
    assert meta["frames"] == list(range(T)) and meta["controls"]["shuffled"] == meta["controls"]["ordered"]
    orders = controls.read_orders(labels, T)
    (ordered, ordered_grid), (shuffled, shuffled_grid) = outputs["ordered"], outputs["shuffled"]
    # Clip n's frame embedding at position p is that of frame orders[n, p]; pixels: the same bytes.
    per_frame = lambda features: features[:, : T * width].reshape(N, T, width)
    expected = _frames_permuted(per_frame(ordered), orders)
    tolerance = {"rtol": 0, "atol": 0} if family == "pixels" else {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(per_frame(shuffled), expected, **tolerance)
    if family != "pixels":  # concat_mean: the mean of the frames, which shuffling leaves alone
        assert ordered.shape == (N, (T + 1) * width)
        np.testing.assert_allclose(shuffled[:, T * width :], ordered[:, T * width :], rtol=1e-5, atol=1e-6)
        assert not np.allclose(shuffled, ordered, atol=1e-3)
    np.testing.assert_allclose(shuffled_grid, _frames_permuted(ordered_grid, orders), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("family", ["pixels", "clip", "dinov2", "videomae", "vjepa2", "magvit"])
def test_grids_are_float16_with_at_most_grid_side_squared_tokens(family, videos, labels, tmp_path):
    from trajbench.models import registry

    kwargs = {}
    if family == "magvit":
        tokens = np.random.default_rng(0).integers(0, 2**18, (N, 2, 6, 6), dtype=np.int32)
        kwargs = dict(options={"z_channels": 18}, tokens=tokens, tokens_shuffled=tokens[:, ::-1])
    elif family != "pixels":
        kwargs["weights_dir"] = registry.get(family).write_standin(tmp_path / family, {}, seed=0)
    init = "none" if family == "pixels" else "random"
    outputs, meta = extract_features(family, init, videos, labels, kwargs.pop("options", {}), grid_side=2, **kwargs)
    for control, (features, grid) in outputs.items():
        assert grid.dtype == np.float16 and features.dtype == np.float32
        assert grid.shape[2] <= 4 and list(grid.shape[1:]) == meta["grid"]["shape"]
        assert meta["controls"][control] == {"dim": features.shape[1], "grid_shape": list(grid.shape[1:])}
    assert meta["grid_side"] == 2


def test_input_validation(videos, labels):
    with pytest.raises(FeatureError, match="init 'pretrained' is not valid for pixels"):
        extract_features("pixels", "pretrained", videos, labels, {})
    with pytest.raises(FeatureError, match=r"unknown option\(s\) \['sise'\] for family pixels"):
        extract_features("pixels", "none", videos, labels, {"sise": 8})
    with pytest.raises(FeatureError, match="labels has 5 rows but there are 6 videos"):
        extract_features("pixels", "none", videos, labels[:5], {})
    with pytest.raises(FeatureError, match="no config.json"):
        extract_features("clip", "random", videos, labels, {}, weights_dir=None)
    with pytest.raises(FeatureError, match="labels lack column 'shuffled_frames'.*rerun rule render_videos"):
        extract_features("pixels", "none", videos, labels.drop(columns=controls.COLUMN), {})
    with pytest.raises(FeatureError, match=r"grid_side \(features.grid\) must be >= 1, got 0"):
        extract_features("pixels", "none", videos, labels, {}, grid_side=0)


# --- the families added through the registry: DINOv2, V-JEPA 2, a fine-tuned VideoMAE --------------------------------


def test_dinov2_concat_mean_matches_per_frame_cls_embeddings(videos, labels, tmp_path):
    from transformers import BitImageProcessor, Dinov2Model

    from trajbench.models import dinov2

    folder = dinov2.write_standin(tmp_path / "dinov2", {}, seed=5)
    outputs, meta = extract_features("dinov2", "pretrained", videos, labels, {"frames": 3}, weights_dir=folder,
                                     grid_side=2)  # fmt: skip
    features, grid = outputs["ordered"]
    assert features.shape == (N, 4 * 32) and meta["frames"] == [0, 1, 2] and meta["family"] == "dinov2"
    assert meta["checkpoint_kind"] == "Dinov2Model"
    processor = BitImageProcessor.from_pretrained(folder)
    model = Dinov2Model.from_pretrained(folder).eval()
    with torch.inference_mode():
        pixel_values = _torch_op_pixels(processor, videos[:, :3].reshape(-1, H, W, 3))
        output = model(pixel_values=pixel_values)
    embeds = output.pooler_output.reshape(N, 3, 32).numpy()
    expected = np.concatenate([embeds.reshape(N, -1), embeds.mean(axis=1)], axis=1)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    # The grid: each frame's 4 x 4 patch tokens (CLS dropped) averaged over 2 x 2 blocks to 2 x 2.
    patches = output.last_hidden_state[:, 1:].numpy().reshape(N, 3, 2, 2, 2, 2, 32).mean(axis=(3, 5))
    assert meta["grid"] == {"shape": [3, 4, 32], "tokens": [3, 4, 4, 32], "pooled_to": [2, 2],
                            "holds": "each frame's patch tokens of last_hidden_state (after the final layernorm) "
                                     "(CLS and register tokens dropped), pooled in space"}  # fmt: skip
    np.testing.assert_allclose(grid, patches.reshape(N, 3, 4, 32), rtol=1e-3, atol=1e-3)


def test_vjepa2_features_are_the_encoder_mean_over_every_even_frame(videos, labels, tmp_path):
    from transformers import VJEPA2Model

    from trajbench.models import vjepa2

    folder = vjepa2.write_standin(tmp_path / "vjepa2", {"crop_size": 24}, seed=5)
    outputs, meta = extract_features("vjepa2", "pretrained", videos, labels, {}, weights_dir=folder, batch_size=4)
    features, grid = outputs["ordered"]
    assert meta["frames"] == [0, 1, 2, 3] and meta["checkpoint_kind"] == "VJEPA2Model"  # T=5: the even 4, contiguous
    name, settings = vjepa2.preprocessing(type("R", (), {"weights_dir": folder, "model_name": "vjepa2"}))
    assert name == "VJEPA2VideoProcessor" and meta["preprocessing"]["processor"] == name
    assert settings["size"] == {"shortest_edge": 24} and settings["resample"] == 2
    model = VJEPA2Model.from_pretrained(folder).eval()
    with torch.inference_mode():
        pixel_values = processor_ops.preprocess(torch.from_numpy(videos[:, :4].copy()), settings)
        hidden = model(pixel_values_videos=pixel_values, skip_predictor=True).last_hidden_state.numpy()
    np.testing.assert_allclose(features, hidden.mean(axis=1), rtol=1e-5, atol=1e-5)
    # The grid: 2 tubelets x 3 x 3 patches (24 / 8), which fit the 4 x 4 grid unpooled.
    assert meta["grid"]["shape"] == [2, 9, 32]
    np.testing.assert_allclose(grid, hidden.reshape(N, 2, 9, 32), rtol=1e-3, atol=1e-3)
    with pytest.raises(FeatureError, match="multiple of its tubelet size 2"):
        extract_features("vjepa2", "random", videos, labels, {"frames": 3}, weights_dir=folder)


def test_a_finetuned_videomae_checkpoint_loads_its_encoder_and_says_what_it_is(videos, labels, tmp_path, caplog):
    from trajbench.models import videomae

    folder = videomae.write_standin(
        tmp_path / "k400", {"architectures": ["VideoMAEForVideoClassification"], "num_labels": 9}, seed=5)
    with caplog.at_level(logging.INFO):
        _, meta = extract_features("videomae", "pretrained", videos[:2], labels[:2], {}, weights_dir=folder,
                                   model_name="videomae_k400")
    assert meta["model"] == "videomae_k400" and meta["family"] == "videomae"
    assert meta["checkpoint_kind"] == "VideoMAEForVideoClassification"
    assert meta["ignored_checkpoint_tensors"] == {"classifier": 2, "fc_norm": 2}
    pretraining = videomae.write_standin(tmp_path / "pt", {}, seed=5)
    _, meta = extract_features("videomae", "pretrained", videos[:2], labels[:2], {}, weights_dir=pretraining)
    assert meta["checkpoint_kind"] == "VideoMAEForPreTraining"


@pytest.mark.parametrize("family", ["videomae", "clip"])
def test_random_init_is_one_network_whatever_the_attention(family, tmp_path):
    """The seeded random init gives the same weights in eager and sdpa attention (before transformers 4.50 the two
    drew their weights in different orders)."""
    from transformers import CLIPVisionModelWithProjection, VideoMAEModel

    from trajbench.models import hf, registry

    folder = registry.get(family).write_standin(tmp_path / family, {}, seed=0)
    config = hf.config(type("R", (), {"weights_dir": folder, "model_name": family})())
    model_cls = VideoMAEModel
    if family == "clip":
        config, model_cls = config.vision_config, CLIPVisionModelWithProjection
    eager = hf.random_init(model_cls, config, 7, "eager").state_dict()
    sdpa = hf.random_init(model_cls, config, 7, "sdpa")
    assert sdpa.config._attn_implementation == "sdpa"
    assert eager.keys() == sdpa.state_dict().keys()
    for key, value in sdpa.state_dict().items():
        assert torch.equal(value, eager[key]), key
    other = hf.random_init(model_cls, config, 8, "sdpa").state_dict()
    assert any(not torch.equal(value, other[key]) for key, value in eager.items() if value.is_floating_point())
