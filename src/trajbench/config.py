"""Checks of the workflow config that a JSON schema cannot express (relations between keys).

The schema (workflow/schemas/config.schema.yaml) checks types, ranges and unknown keys and fills defaults; this
module then checks that the values fit together, so an impossible run stops before any job with a message that
names the key.
"""

from __future__ import annotations

import zlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from packaging.version import Version

from trajbench.models import registry
from trajbench.models.base import TOKENIZER, Family, FeatureError

# Stand-in weights play the part of "pretrained": drawn with the random inits' seed they would be the same network
# as "random", and every pretrained-vs-random difference would be exactly zero.
STANDIN_SEED = 1_000_003


def standin_seed(model: str) -> int:
    """The seed of model ``model``'s stand-in: two entries of one family (two checkpoints) get different weights."""
    return STANDIN_SEED + zlib.crc32(model.encode()) % 1_000_000


class ConfigError(ValueError):
    pass


_SOURCE_KEYS = {
    "hub": {"repo_id", "revision", "filename", "allow_patterns"},
    "local": {"path"},
    "none": set(),
}
_COMMON_KEYS = {"family", "source", "standin", "architecture", "inits", "options"}
# Folders of results/ that a model's own outputs (a tokenizer's results/<name>/) must not take over.
RESERVED_NAMES = {"benchmarks", "comparisons", "data", "env", "features", "figures", "finetune", "probes"}


def normalize(config: dict) -> None:
    """Drop model entries set to null and model keys that do not apply to the model's source, and name each model's
    family, in place; then put every mapping in canonical (sorted) key order.

    Snakemake merges a ``--configfile`` over config/config.yaml key by key, so a demo model with ``source: local``
    would otherwise inherit the real config's ``repo_id`` and ``filename`` and carry them into manifests. Snakemake
    compares a rule's params with their earlier values as text, so sorted keys make a reordered config file rerun
    nothing.
    """
    models = config.get("models", {})
    # `models: {<name>: null}` in a later --configfile drops an entry that an earlier file (config/config.yaml) made.
    for name in [name for name, model in models.items() if model is None]:
        del models[name]
    for name, model in models.items():
        keep = _COMMON_KEYS | _SOURCE_KEYS[model["source"]]
        config["models"][name] = {"family": name, **{k: v for k, v in model.items() if k in keep}}
    ordered = canonical(dict(config))
    config.clear()
    config.update(ordered)


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys sorted, recursively; lists keep their order (it means something)."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def tokenizers(config: dict) -> list[str]:
    return [name for name in config["models"] if registry.of(config, name).role == TOKENIZER]


def check(config: dict) -> None:
    """Raise ConfigError naming the first key whose value cannot work with the others."""
    ds = config["dataset"]
    for key, low in (("object_radius", 0), ("extent", 0), ("path_ratio", 1)):
        lo, hi = ds[key]
        if not low < lo <= hi:
            raise ConfigError(f"dataset.{key} must be [min, max] with {low} < min <= max, got {ds[key]}")
    # The largest path plus the object's margin on both sides (`trajbench.render.sample_track`) must fit the frame.
    room = ds["size"] - 1 - 2 * (ds["object_radius"][1] + 1 + ds["camera_jitter"])
    if ds["extent"][1] * ds["size"] > room:
        raise ConfigError(
            f"dataset.extent max {ds['extent'][1]} ({ds['extent'][1] * ds['size']:.1f} pixels) does not fit a "
            f"{ds['size']}-pixel frame with dataset.object_radius max {ds['object_radius'][1]} and camera_jitter "
            f"{ds['camera_jitter']} (room {room:.1f} pixels); lower them or raise dataset.size"
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
        _check_model(name, model, config)
    if len(tokenizers(config)) != 1:
        tokenizer_families = [f.name for f in registry.FAMILIES.values() if f.role == TOKENIZER]
        raise ConfigError(f"models: {tokenizers(config) or 'no model'} of a tokenizer family {tokenizer_families}; "
                          "the workflow runs exactly one tokenizer (question 1: its reconstruction and tokens)")
    if any(m.get("standin") for m in models.values()):
        for key in ("tokenize", "features"):
            if config[key]["random_seed"] in {standin_seed(m) for m in models if models[m].get("standin")}:
                raise ConfigError(f"{key}.random_seed={config[key]['random_seed']} is a stand-in's seed: 'random' "
                                  "would equal 'pretrained'; choose another seed")

    finetune = config["finetune"]
    if finetune["enabled"]:
        if finetune["data"]["seed"] == ds["seed"]:
            raise ConfigError(
                f"finetune.data.seed={ds['seed']} equals dataset.seed: the fine-tuning clips would be the evaluation "
                "clips; choose another seed"
            )
        if not any(registry.of(config, name).finetunable for name in models):
            finetunable = [f.name for f in registry.FAMILIES.values() if f.finetunable]
            raise ConfigError(f"finetune.enabled needs a model of a family that can be fine-tuned ({finetunable})")

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
    # Last, so a config's own mistakes are named first even where the installed transformers is old.
    for name in models:
        _check_transformers(name, registry.of(config, name))


def _check_model(name: str, model: dict, config: dict) -> None:
    where = f"models.{name}"
    try:
        family = registry.get(model["family"])
    except KeyError as error:
        raise ConfigError(f"{where}.family: {error.args[0]}") from None
    if name in RESERVED_NAMES:
        raise ConfigError(f"{where}: the name {name!r} is a results/ folder of the workflow; choose another name")
    source = model["source"]
    if not family.weights and source != "none":
        raise ConfigError(f"{where}.source must be 'none': the {family.name} baseline has no weights")
    if family.weights and source == "none":
        raise ConfigError(f"{where}.source is 'none' but family {family.name} needs weights; use 'hub' or 'local'")
    if source == "hub":
        if "repo_id" not in model:
            raise ConfigError(f"{where}: source 'hub' needs repo_id")
        if ("filename" in model) == ("allow_patterns" in model):
            raise ConfigError(f"{where}: source 'hub' needs exactly one of filename or allow_patterns")
    if model.get("standin"):
        if source != "local" or "path" in model:
            raise ConfigError(f"{where}.standin needs source 'local' and no path: the workflow writes the "
                              f"stand-in under resources/standins/{name}")
        if family.write_standin is None:
            raise ConfigError(f"{where}.standin: family {family.name} has no stand-in writer")
    elif source == "local" and "path" not in model:
        raise ConfigError(f"{where}: source 'local' needs path")
    try:
        family.resolve_options(model.get("options"))
    except FeatureError as error:
        raise ConfigError(f"{where}.options: {error}") from None
    if family.check_config:
        problem = family.check_config(name, model, config)
        if problem:
            raise ConfigError(problem)


def _check_transformers(name: str, family: Family) -> None:
    """A family newer than the installed transformers stops the run here, not with an ImportError in a job."""
    if not family.min_transformers:
        return
    try:
        installed = version("transformers")
    except PackageNotFoundError:
        installed = "none"
    if installed == "none" or Version(installed) < Version(family.min_transformers):
        raise ConfigError(
            f"models.{name}: family {family.name} needs transformers>={family.min_transformers}, installed: "
            f"{installed}. Upgrade it (pip install 'transformers>={family.min_transformers}'; your torch stays) "
            f"or drop the entry: remove models.{name} from your config file, or set `models: {{{name}: null}}` in "
            "a config file given after it (--configfile)"
        )
