"""Checks of the workflow config that a JSON schema cannot express (relations between keys).

The schema (workflow/schemas/config.schema.yaml) checks types, ranges and unknown keys and fills defaults; this
module then checks that the values fit together, so an impossible run stops before any job with a message that
names the key.
"""

from __future__ import annotations

INIT_MODELS = ("magvit", "videomae", "clip")  # models with weights: pretrained and random inits
BASELINES = ("pixels", "oracle")  # no weights: a single init, "none"


# Stand-in weights play the part of "pretrained": drawn with the random inits' seed they would be the same network
# as "random", and every pretrained-vs-random difference would be exactly zero.
STANDIN_SEED = 1_000_003


class ConfigError(ValueError):
    pass


# These two mirror trajbench.modeling_magvit.MagvitConfig (a test checks they agree): the Snakefile runs this module
# while building the DAG, and importing torch there would slow every dry run by seconds.
def magvit_temporal_compression(architecture: dict) -> int:
    """Frames per latent frame: every level but the last downsamples time by 2 where its ch_mult is not 1."""
    ch_mult = list(architecture.get("ch_mult", (1, 2, 2, 4)))
    return 2 ** sum(1 for m in ch_mult[:-1] if m != 1)


def magvit_spatial_compression(architecture: dict) -> int:
    return 2 ** (len(architecture.get("ch_mult", (1, 2, 2, 4))) - 1)


_SOURCE_KEYS = {
    "hub": {"repo_id", "revision", "filename", "allow_patterns"},
    "local": {"path"},
    "none": set(),
}
_COMMON_KEYS = {"source", "standin", "architecture", "inits"}


def normalize(config: dict) -> None:
    """Drop model keys that do not apply to the model's source, in place.

    Snakemake merges a ``--configfile`` over config/config.yaml key by key, so a demo model with ``source: local``
    would otherwise inherit the real config's ``repo_id`` and ``filename`` and carry them into manifests.
    """
    for name, model in config.get("models", {}).items():
        keep = _COMMON_KEYS | _SOURCE_KEYS[model["source"]]
        config["models"][name] = {k: v for k, v in model.items() if k in keep}


def check(config: dict) -> None:
    """Raise ConfigError naming the first key whose value cannot work with the others."""
    ds = config["dataset"]
    for key in ("object_radius", "speed"):
        lo, hi = ds[key]
        if not 0 < lo <= hi:
            raise ConfigError(f"dataset.{key} must be [min, max] with 0 < min <= max, got {ds[key]}")
    if ds["object_radius"][1] * 2 + 2 * ds["camera_jitter"] + 4 > ds["size"]:
        raise ConfigError(
            f"dataset.object_radius max {ds['object_radius'][1]} does not fit a {ds['size']}-pixel frame "
            "with room to move; lower it or raise dataset.size"
        )
    n_videos = len(ds["classes"]) * ds["videos_per_class"]
    if ds["shards"] > n_videos:
        raise ConfigError(f"dataset.shards ({ds['shards']}) exceeds the number of videos ({n_videos})")
    for stage in ("tokenize", "features"):
        batch_size, shards = config[stage]["batch_size"], config[stage]["shards"]
        batches = -(-n_videos // batch_size)
        if shards > batches:
            raise ConfigError(
                f"{stage}.shards ({shards}) exceeds the {batches} batches of {stage}.batch_size={batch_size} in "
                f"{n_videos} videos: a shard is whole batches, so some would be empty; lower {stage}.shards"
            )

    models = config["models"]
    for name, model in models.items():
        where = f"models.{name}"
        source = model["source"]
        if name in BASELINES and source != "none":
            raise ConfigError(f"{where}.source must be 'none': the {name} baseline has no weights")
        if name in INIT_MODELS and source == "none":
            raise ConfigError(f"{where}.source is 'none' but {name} needs weights; use 'hub' or 'local'")
        if source == "hub":
            if "repo_id" not in model:
                raise ConfigError(f"{where}: source 'hub' needs repo_id")
            if ("filename" in model) == ("allow_patterns" in model):
                raise ConfigError(f"{where}: source 'hub' needs exactly one of filename or allow_patterns")
        if model.get("standin"):
            if source != "local" or "path" in model:
                raise ConfigError(f"{where}.standin needs source 'local' and no path: the workflow writes the "
                                  f"stand-in under resources/standins/{name}")
        elif source == "local" and "path" not in model:
            raise ConfigError(f"{where}: source 'local' needs path")

    if any(m.get("standin") for m in models.values()):
        for key in ("tokenize", "features"):
            if config[key]["random_seed"] == STANDIN_SEED:
                raise ConfigError(f"{key}.random_seed={STANDIN_SEED} is the stand-in weights' seed: 'random' would "
                                  "equal 'pretrained'; choose another seed")

    if "magvit" in models:
        arch = models["magvit"].get("architecture", {})
        tc, sc = magvit_temporal_compression(arch), magvit_spatial_compression(arch)
        window = config["tokenize"].get("window") or ds["frames"]
        if (window - 1) % tc:
            raise ConfigError(
                f"dataset.frames={ds['frames']} (window {window}) does not fit MagVit: its temporal compression "
                f"is {tc}, so a window must have 1 + {tc}·k frames (e.g. {1 + tc * max(1, (window - 1) // tc)})"
            )
        if ds["frames"] % window and window != ds["frames"]:
            raise ConfigError(f"tokenize.window={window} does not divide dataset.frames={ds['frames']}")
        if ds["size"] % sc:
            raise ConfigError(f"dataset.size={ds['size']} must be a multiple of MagVit's spatial compression {sc}")

    finetune = config["finetune"]
    if finetune["enabled"]:
        if finetune["data"]["seed"] == ds["seed"]:
            raise ConfigError(
                f"finetune.data.seed={ds['seed']} equals dataset.seed: the fine-tuning clips would be the evaluation "
                "clips; choose another seed"
            )
        if "magvit" not in models:
            raise ConfigError("finetune.enabled needs models.magvit: it fine-tunes the MagVit tokenizer")

    probe = config["probe"]
    if probe["folds"] > ds["videos_per_class"]:
        raise ConfigError(
            f"probe.folds={probe['folds']} exceeds dataset.videos_per_class={ds['videos_per_class']}: "
            "stratified folds need at least one video of each class per fold"
        )
    train_per_class = ds["videos_per_class"] * (probe["folds"] - 1) // probe["folds"]
    if probe["inner_folds"] > train_per_class:
        raise ConfigError(
            f"probe.inner_folds={probe['inner_folds']} exceeds the {train_per_class} training videos per class "
            f"left by probe.folds={probe['folds']}; lower it or raise dataset.videos_per_class"
        )
