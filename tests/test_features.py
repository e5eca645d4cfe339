"""Feature extractors on tiny transformers models saved in tmp folders, hand-made tokens and toy labels."""

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

from trajbench.features import extract_features
from trajbench.models.base import FeatureError, even_indices
from trajbench.models.magvit import token_histogram, unpack_bits
from trajbench.io import write_json

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
    return pd.DataFrame(table)


def _edit_checkpoint(src, dst, drop=(), add=None):
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    for key in drop:
        del tensors[key]
    tensors.update(add or {})
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


# --- VideoMAE ------------------------------------------------------------------------------------------------------


def test_videomae_matches_manual_pipeline_and_records_meta(videos, labels, videomae_dir, tmp_path):
    features, meta = extract_features("videomae", "pretrained", videos, labels, {}, weights_dir=videomae_dir,
                                      batch_size=4)  # fmt: skip
    assert features.shape == (N, 32) and features.dtype == np.float32
    frames = [0, 1, 3, 4]  # 4 of 5 frames, evenly, rounding half up
    assert meta["frames"] == frames
    pre = meta["preprocessing"]
    assert (pre["image_mean"], pre["image_std"]) == (VIDEOMAE_MEAN, VIDEOMAE_STD)
    assert pre["crop_size"] == {"height": 32, "width": 32} and pre["pixel_values_shape_per_clip"] == [4, 3, 32, 32]
    assert meta["attn_implementation"] == "sdpa" and meta["dim"] == 32 and meta["dtype"] == "float32"
    write_json(tmp_path / "meta.json", meta)  # meta must be JSON-serialisable as it stands
    assert json.loads((tmp_path / "meta.json").read_text())["preprocessing"] == pre

    # The same numbers by hand: the folder's processor on the sampled frames, the encoder, the mean of all tokens.
    processor = VideoMAEImageProcessor.from_pretrained(videomae_dir)
    model = VideoMAEModel.from_pretrained(videomae_dir).eval()
    with torch.inference_mode():
        pixel_values = processor([list(clip) for clip in videos[:, frames]], return_tensors="pt")["pixel_values"]
        expected = model(pixel_values=pixel_values).last_hidden_state.mean(dim=1).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


def test_videomae_deterministic_and_random_differs(videos, labels, videomae_dir):
    run = lambda init, seed=0: extract_features("videomae", init, videos, labels, {}, weights_dir=videomae_dir,
                                                seed=seed)[0]  # fmt: skip
    pretrained, random_a, random_b = run("pretrained"), run("random"), run("random")
    assert pretrained.tobytes() == run("pretrained").tobytes()
    assert random_a.tobytes() == random_b.tobytes()
    assert not np.allclose(pretrained, random_a, atol=1e-3)
    assert not np.allclose(random_a, run("random", seed=1), atol=1e-3)


def test_videomae_batch_size_does_not_change_features(videos, labels, videomae_dir):
    a = extract_features("videomae", "pretrained", videos, labels, {}, weights_dir=videomae_dir, batch_size=1)[0]
    b = extract_features("videomae", "pretrained", videos, labels, {}, weights_dir=videomae_dir, batch_size=6)[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_name", ["videomae", "oracle"])
def test_shards_give_the_same_bytes_as_one_job(model_name, videos, labels, videomae_dir):
    run = lambda **kw: extract_features(model_name, "pretrained" if model_name == "videomae" else "none", videos,
                                        labels, {}, weights_dir=videomae_dir, batch_size=2, **kw)  # fmt: skip
    whole, meta = run()
    parts = [run(clips=range(0, 2)), run(clips=range(2, 6))]
    assert np.concatenate([p[0] for p in parts]).tobytes() == whole.tobytes()
    assert [p[1]["clips"] for p in parts] == [[0, 2], [2, 6]] and meta["clips"] == [0, N]
    with pytest.raises(FeatureError, match="not a consecutive range within the 6 videos"):
        run(clips=range(4, 8))


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


def test_videomae_frames_option_must_match_model(videos, labels, videomae_dir):
    with pytest.raises(FeatureError, match="num_frames=4"):
        extract_features("videomae", "pretrained", videos, labels, {"frames": 16}, weights_dir=videomae_dir)


# --- CLIP ----------------------------------------------------------------------------------------------------------


def test_clip_concat_mean_matches_per_frame_embeddings(videos, labels, clip_dir):
    features, meta = extract_features("clip", "pretrained", videos, labels, {"frames": 3}, weights_dir=clip_dir)
    assert features.shape == (N, 4 * 16) and features.dtype == np.float32
    assert meta["frames"] == [0, 2, 4] and meta["preprocessing"]["pixel_values_shape_per_clip"] == [3, 3, 32, 32]

    # By hand through the full CLIPModel: projection of the pooled vision output, frame by frame.
    processor = CLIPImageProcessor.from_pretrained(clip_dir)
    model = CLIPModel.from_pretrained(clip_dir).eval()
    frames = videos[:, [0, 2, 4]].reshape(-1, H, W, 3)
    with torch.inference_mode():
        pixel_values = processor(list(frames), return_tensors="pt")["pixel_values"]
        embeds = model.visual_projection(model.vision_model(pixel_values=pixel_values).pooler_output)
    embeds = embeds.reshape(N, 3, 16).numpy()
    expected = np.concatenate([embeds.reshape(N, -1), embeds.mean(axis=1)], axis=1)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)


def test_clip_pooling_keeps_order(videos, labels, clip_dir):
    def run(clips, pooling):
        options = {"frames": 3, "pooling": pooling}
        return extract_features("clip", "pretrained", clips, labels, options, weights_dir=clip_dir)[0]

    reversed_videos = np.ascontiguousarray(videos[:, ::-1])
    forward, backward = run(videos, "concat_mean"), run(reversed_videos, "concat_mean")
    assert not np.allclose(forward, backward, atol=1e-3)
    # Reversal permutes the frame blocks and leaves their mean alone.
    np.testing.assert_allclose(forward[:, :16], backward[:, 32:48], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(forward[:, 48:], backward[:, 48:], rtol=1e-5, atol=1e-6)
    mean_forward, mean_backward = run(videos, "mean"), run(reversed_videos, "mean")
    assert mean_forward.shape == (N, 16)
    np.testing.assert_allclose(mean_forward, mean_backward, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_forward, forward[:, 48:], rtol=1e-5, atol=1e-6)


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
    run = lambda init: extract_features("clip", init, videos, labels, {"pooling": "mean"}, weights_dir=clip_dir)[0]
    random_a = run("random")
    assert random_a.tobytes() == run("random").tobytes()
    assert not np.allclose(random_a, run("pretrained"), atol=1e-3)


# --- MagVit tokens -------------------------------------------------------------------------------------------------

# Two clips, grid (T'=2, H'=1, W'=2), z_channels=3; index bits -> ±1 with channel 0 least significant.
TOKENS = np.array([[[[5, 0]], [[7, 2]]], [[[1, 6]], [[3, 4]]]], dtype=np.int32)
BITS = {0: [-1, -1, -1], 1: [1, -1, -1], 2: [-1, 1, -1], 3: [1, 1, -1], 4: [-1, -1, 1], 5: [1, -1, 1],
        6: [-1, 1, 1], 7: [1, 1, 1]}  # fmt: skip


def _magvit(pooling, **options):
    videos = np.zeros((2, 5, 4, 4, 3), np.uint8)
    options = {"z_channels": 3, "pooling": pooling, **options}
    return extract_features("magvit", "pretrained", videos, _labels(2, 5), options, tokens=TOKENS, batch_size=1)


def test_magvit_bits_exact():
    assert unpack_bits(np.arange(8), 3).tolist() == [BITS[i] for i in range(8)]
    features, meta = _magvit("flatten")
    expected = [sum((BITS[int(i)] for i in clip.ravel()), []) for clip in TOKENS]
    assert features.dtype == np.float32 and features.tolist() == expected
    assert meta["token_grid"] == [2, 1, 2] and meta["dim"] == 12


def test_magvit_poolings_exact():
    mean_time, _ = _magvit("mean_time")  # per (h, w): mean over t
    assert mean_time.tolist() == [[1, 0, 1, -1, 0, -1], [1, 0, -1, -1, 0, 1]]
    mean_space, _ = _magvit("mean_space")  # per t: mean over (h, w)
    assert mean_space.tolist() == [[0, -1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0]]


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
    with pytest.raises(FeatureError, match=r"outside 0\.\.3 for z_channels=2"):
        extract_features("magvit", "random", videos, _labels(2, 5), {"z_channels": 2}, tokens=TOKENS)
    with pytest.raises(FeatureError, match="z_channels must be"):
        extract_features("magvit", "random", videos, _labels(2, 5), {}, tokens=TOKENS)


# --- pixels, oracle, validation ------------------------------------------------------------------------------------


def test_pixels_area_downsampling_exact():
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (2, 3, 2, 2, 3), dtype=np.uint8)
    videos = small.repeat(2, axis=2).repeat(2, axis=3)  # 4x4 frames made of constant 2x2 blocks
    features, meta = extract_features("pixels", "none", videos, _labels(2, 3), {"size": 2}, batch_size=1)
    assert features.shape == (2, 3 * 2 * 2 * 3) and meta["size"] == [2, 2]
    np.testing.assert_allclose(features, small.reshape(2, -1) / 255.0, rtol=1e-6)
    again, _ = extract_features("pixels", "none", videos, _labels(2, 3), {"size": 2}, batch_size=2)
    assert again.tobytes() == features.tobytes()


def test_oracle_exact_values_and_trivially_separable():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n, t = 120, 5
    labels = _labels(n, t, seed=4)
    videos = np.zeros((n, t, 32, 16, 3), np.uint8)  # frame H=32, W=16
    features, meta = extract_features("oracle", "none", videos, labels, None)
    kinematic = 2 * t + 2 * (t - 1) + 2 * (t - 2)
    assert features.shape == (n, kinematic + (t - 1) + 3 * (t - 2) + 4 * 4 + 1)
    x = labels[[f"x_{i}" for i in range(t)]].to_numpy()[0] / 16
    y = labels[[f"y_{i}" for i in range(t)]].to_numpy()[0] / 32
    expected = np.concatenate([x, y, np.diff(x), np.diff(y), np.diff(x, 2), np.diff(y, 2)])
    np.testing.assert_allclose(features[0, :kinematic], expected, rtol=1e-6, atol=1e-7)
    assert not features[:, kinematic - 2 * (t - 2) : kinematic].any()  # linear tracks: exact zeros, not noise
    train = np.arange(n) < n // 2
    probe = make_pipeline(StandardScaler(), LogisticRegression()).fit(features[train], labels["label"][train])
    assert probe.score(features[~train], labels["label"][~train]) == 1.0
    assert meta["frame_size"] == [32, 16]


def test_oracle_separates_the_rendered_motion_classes():
    """On the real renderer's videos the oracle must show the task is learnable by a linear probe."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from trajbench import render

    cfg = render.DatasetConfig.from_dict(dict(classes=list(render.TRAJECTORIES), videos_per_class=40, frames=17,
                                              size=64, seed=3))
    rendered = [render.render_video(cfg, i) for i in range(cfg.num_videos)]
    labels = pd.DataFrame([render._table_row(v) for v in rendered])
    videos = np.zeros((cfg.num_videos, cfg.frames, cfg.size, cfg.size, 3), np.uint8)  # the oracle reads labels only
    features, _ = extract_features("oracle", "none", videos, labels, None)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    accuracy = cross_val_score(probe, features, labels["label"], cv=4).mean()
    assert accuracy > 0.8, accuracy  # chance is 1/9; measured 0.89 when written


def test_input_validation(videos, labels):
    with pytest.raises(FeatureError, match="init 'pretrained' is not valid for pixels"):
        extract_features("pixels", "pretrained", videos, labels, {})
    with pytest.raises(FeatureError, match=r"unknown option\(s\) \['sise'\] for family pixels"):
        extract_features("pixels", "none", videos, labels, {"sise": 8})
    with pytest.raises(FeatureError, match="labels has 5 rows but there are 6 videos"):
        extract_features("oracle", "none", videos, labels[:5], {})
    with pytest.raises(FeatureError, match="no config.json"):
        extract_features("clip", "random", videos, labels, {}, weights_dir=None)
    assert even_indices(17, 16).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16]
    assert even_indices(2, 3).tolist() == [0, 1, 1]


# --- the families added through the registry: DINOv2, V-JEPA 2, a fine-tuned VideoMAE --------------------------------


def test_dinov2_concat_mean_matches_per_frame_cls_embeddings(videos, labels, tmp_path):
    from transformers import BitImageProcessor, Dinov2Model

    from trajbench.models import dinov2

    folder = dinov2.write_standin(tmp_path / "dinov2", {}, seed=5)
    features, meta = extract_features("dinov2", "pretrained", videos, labels, {"frames": 3}, weights_dir=folder)
    assert features.shape == (N, 4 * 32) and meta["frames"] == [0, 2, 4] and meta["family"] == "dinov2"
    assert meta["checkpoint_kind"] == "Dinov2Model"
    processor = BitImageProcessor.from_pretrained(folder)
    model = Dinov2Model.from_pretrained(folder).eval()
    with torch.inference_mode():
        pixel_values = processor(list(videos[:, [0, 2, 4]].reshape(-1, H, W, 3)), return_tensors="pt")["pixel_values"]
        embeds = model(pixel_values=pixel_values).pooler_output.reshape(N, 3, 32).numpy()
    expected = np.concatenate([embeds.reshape(N, -1), embeds.mean(axis=1)], axis=1)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)


def test_vjepa2_preprocessing_numbers():
    from trajbench.models import vjepa2

    rng = np.random.default_rng(0)
    clips = torch.from_numpy(rng.integers(0, 256, (2, 4, 8, 12, 3), dtype=np.uint8))
    settings = {"resize_px": 8, "crop_px": 8, "rescale_factor": 1 / 255, "image_mean": [0.1, 0.2, 0.3],
                "image_std": [0.5, 0.25, 0.2]}
    out = vjepa2.preprocess(clips, settings).numpy()
    assert out.shape == (2, 4, 3, 8, 8)
    # the shorter side already has 8 pixels: no resize, the centre 8 of 12 columns, rescaled and normalised
    expected = (clips.numpy()[:, :, :, 2:10].transpose(0, 1, 4, 2, 3) / 255 - np.array([0.1, 0.2, 0.3])[:, None, None]
                ) / np.array([0.5, 0.25, 0.2])[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # halving: the antialiased bilinear resize of a constant frame is that constant
    flat = torch.full((1, 2, 16, 16, 3), 51, dtype=torch.uint8)
    half = vjepa2.preprocess(flat, {**settings, "resize_px": 8, "crop_px": 6}).numpy()
    np.testing.assert_allclose(half[0, :, 0], (0.2 - 0.1) / 0.5, rtol=1e-5)
    assert half.shape == (1, 2, 3, 6, 6)


def test_vjepa2_features_are_the_encoder_mean_over_every_even_frame(videos, labels, tmp_path):
    from transformers import VJEPA2Model

    from trajbench.models import vjepa2

    folder = vjepa2.write_standin(tmp_path / "vjepa2", {"crop_size": 24}, seed=5)
    features, meta = extract_features("vjepa2", "pretrained", videos, labels, {}, weights_dir=folder, batch_size=4)
    assert meta["frames"] == [0, 1, 2, 3] and meta["checkpoint_kind"] == "VJEPA2Model"  # T=5: the even 4, contiguous
    settings = vjepa2.preprocessing(type("R", (), {"weights_dir": folder, "model_name": "vjepa2"}))
    model = VJEPA2Model.from_pretrained(folder).eval()
    with torch.inference_mode():
        pixel_values = vjepa2.preprocess(torch.from_numpy(videos[:, :4].copy()), settings)
        hidden = model(pixel_values_videos=pixel_values, skip_predictor=True).last_hidden_state
    np.testing.assert_allclose(features, hidden.mean(dim=1).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(FeatureError, match="multiple of its tubelet size 2"):
        extract_features("vjepa2", "random", videos, labels, {"frames": 3}, weights_dir=folder)


def test_a_finetuned_videomae_checkpoint_loads_its_encoder_and_says_what_it_is(videos, labels, tmp_path, caplog):
    from trajbench.models import videomae

    folder = videomae.write_standin(
        tmp_path / "k400", {"architectures": ["VideoMAEForVideoClassification"], "num_labels": 9}, seed=5)
    with caplog.at_level(logging.INFO):
        features, meta = extract_features("videomae", "pretrained", videos[:2], labels[:2], {}, weights_dir=folder,
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
