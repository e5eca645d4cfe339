import os
import sys
from pathlib import Path

# Scripts import the library from this checkout, whether or not (or whichever version) it is pip-installed, so
# the code that runs is the code hashed into each rule's params below. Jobs inherit the variable, also in conda
# environments and on cluster nodes (where the Snakefile runs again); it is set here, never required from the user.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [SRC, *filter(None, os.getenv("PYTHONPATH", "").split(os.pathsep))]
    )
)

from trajbench import codehash  # noqa: E402
from trajbench import config as tb_config  # noqa: E402
from trajbench.controls import CONTROLS  # noqa: E402
from trajbench import shards as tb_shards  # noqa: E402
from trajbench.models import registry  # noqa: E402

try:
    tb_config.normalize(config)
    tb_config.check(config)
except tb_config.ConfigError as err:
    raise ValueError(f"invalid config: {err}") from None


MODELS = list(config["models"])
FAMILY = {m: registry.of(config, m) for m in MODELS}
WEIGHT_MODELS = [m for m in MODELS if FAMILY[m].weights]
# The one tokenizer of the run (tb_config.check requires exactly one).
TOKENIZER = tb_config.tokenizers(config)[0]
SHARDS = list(range(config["dataset"]["shards"]))
N_CLIPS = len(config["dataset"]["classes"]) * config["dataset"]["videos_per_class"]
TRAIN_CLIPS = (
    len(config["dataset"]["classes"]) * config["finetune"]["data"]["videos_per_class"]
)
STANDIN = any(config["models"][m].get("standin") for m in MODELS)
VIDEOS = "results/data/videos.npy"
LABELS = "results/data/labels.csv"
ENV_JSON = "results/env/environment.json"
FINETUNE = {
    key: f"results/finetune/{TOKENIZER}/{name}"
    for key, name in (
        ("checkpoint", "model.ckpt"),
        ("history", "history.csv"),
        ("curves", "curves.png"),
        ("meta", "finetune.json"),
        ("state", "resume.pt"),
    )
}
FINETUNING = config["finetune"]["enabled"]


wildcard_constraints:
    model="|".join(MODELS),
    init="pretrained|random|finetuned|none",
    shard=r"\d+",


def inits(model):
    """The family's inits that the config asks for: pretrained/random (models.<name>.inits) for models with
    weights, finetuned where fine-tuning is enabled; the baselines have a single init, "none".
    """
    family = FAMILY[model]
    if not family.weights:
        return ["none"]
    chosen = config["models"][model].get("inits", ["pretrained", "random"])
    if family.finetunable and FINETUNING:
        chosen = [*chosen, "finetuned"]
    return chosen


def tokenize_inputs(wildcards):
    """The dataset and environment; the weights that the init loads: the hub's, the fine-tuned, or none."""
    inputs = {"videos": VIDEOS, "table": LABELS, "env": ENV_JSON}
    if wildcards.init == "pretrained":
        inputs["manifest"] = manifest(TOKENIZER)
    elif wildcards.init == "finetuned":
        inputs["checkpoint"] = FINETUNE["checkpoint"]
    return inputs


def training_dataset():
    """The fine-tuning set's dataset settings: the evaluation set's, with finetune.data's size and seed."""
    data = config["finetune"]["data"]
    return dict(
        config["dataset"],
        videos_per_class=data["videos_per_class"],
        seed=data["seed"],
        shards=1,
    )


def finetune_inputs(wildcards):
    inputs = {
        "videos": "results/finetune/data/videos.npy",
        "table": "results/finetune/data/labels.csv",
        "env": ENV_JSON,
    }
    if config["finetune"]["init_from"] == "pretrained":
        inputs["manifest"] = manifest(TOKENIZER)
    return inputs


def finetune_minutes():
    """Runtime request: a training step costs ~3 encode+decode passes per clip, plus 30 minutes to start, load and
    save."""
    ft = config["finetune"]
    return magvit_minutes(ft["steps"] * ft["batch_size"] * 3, overhead=30)


def model_inits():
    return [(m, i) for m in MODELS for i in inits(m)]


def code_version(script):
    """Hash of the library modules that ``workflow/scripts/<script>.py`` imports, directly or through each other,
    passed as a param so that editing any of them reruns exactly the jobs that run it.
    """
    return codehash.script_hash(
        Path(workflow.basedir) / "workflow" / "scripts" / f"{script}.py", SRC
    )


def standin_path(model):
    folder = f"resources/standins/{model}"
    standin_file = FAMILY[model].standin_file
    return f"{folder}/{standin_file}" if standin_file else folder


def weights_input(wildcards):
    """What download_weights reads locally: a stand-in written by the workflow, a user's file, or nothing (hub)."""
    cfg = config["models"][wildcards.model]
    if cfg.get("standin"):
        return f"resources/standins/{wildcards.model}"
    if cfg["source"] == "local":
        return cfg["path"]
    return []


def weights_config(model):
    """The model's config as trajbench.weights reads it; a stand-in is a local file the workflow writes."""
    cfg = dict(config["models"][model])
    if cfg.get("standin"):
        cfg["path"] = standin_path(model)
    return cfg


def manifest(model):
    return f"resources/weights/{model}/manifest.json"


def uses_gpu():
    return 0 if config["runtime"]["device"] == "cpu" else 1


def probe_results():
    """(model, init, control) of every probe result: each model at each init, on ordered and on shuffled clips."""
    return [(m, i, c) for m, i in model_inits() for c in CONTROLS]


def probe_result(model, init, control):
    return f"results/probes/{model}/{init}/{control}.json"


def summary_inputs(wildcards):
    """What the summary reads: the run's facts, the comparison tables, every probe result (for its notes) and
    feature record (frames, pooling, checkpoint), and the fine-tuning record when enabled.
    """
    inputs = {
        "env": ENV_JSON,
        "table": LABELS,
        "manifests": [manifest(m) for m in WEIGHT_MODELS],
        "init_differences": "results/comparisons/init_differences.csv",
        "models": "results/comparisons/models.csv",
        "representations": "results/comparisons/representations.csv",
        "reconstruction": "results/comparisons/reconstruction.md",
        "probes": [probe_result(*key) for key in probe_results()],
        "features": [
            f"results/features/{m}/{i}/features.json" for m, i in model_inits()
        ],
    }
    if FINETUNING:
        inputs["finetune"] = FINETUNE["meta"]
    return inputs


def final_outputs():
    return [
        "results/summary.md",
        "results/env/environment.md",
        "results/data/preview.png",
    ]


def stage_shards(stage, model=TOKENIZER):
    """Jobs a data-parallel stage is split into: tokenize.shards, features.shards for the networks (the other
    extractors take seconds, so they stay one job)."""
    if stage == "features" and not FAMILY[model].network:
        return 1
    return config[stage]["shards"]


def network_gpu(model):
    """1 where the model's feature job runs a network on a GPU (the gpu resource), else 0."""
    return uses_gpu() if FAMILY[model].network else 0


def shard_clips(stage, shard, model=TOKENIZER):
    """[start, stop) of the clips of one shard job: whole batches, so any shard count gives the same bytes."""
    clips = tb_shards.clip_range(
        N_CLIPS, stage_shards(stage, model), config[stage]["batch_size"], int(shard)
    )
    return [clips.start, clips.stop]


def clips_mb(clips):
    """Memory of ``clips`` videos in MB (uint8), for honest resource requests."""
    ds = config["dataset"]
    return int(clips * ds["frames"] * ds["size"] ** 2 * 3 / 1e6) + 1


def shard_mb():
    return clips_mb(N_CLIPS / config["dataset"]["shards"])


def dataset_mb():
    return clips_mb(N_CLIPS)


def job_clips(stage, wildcards):
    """[start, stop) of a job's clips: its shard's, or all clips for a job of an unsplit stage (no shard)."""
    return shard_clips(
        stage,
        getattr(wildcards, "shard", 0),
        getattr(wildcards, "model", TOKENIZER),
    )


def shard_size(stage, wildcards):
    start, stop = job_clips(stage, wildcards)
    return stop - start


def paired(model):
    """True where one feature job extracts both of the model's inits (PAIRED_INITS): a network with both in the
    config. Its networks then share each batch's preprocessing (trajbench.features.extract_inits).
    """
    return FAMILY[model].network and inits(model) == PAIRED_INITS


def feature_models(split, pairs=None):
    """A regex of the models whose feature extraction is (split=True) or is not split into shards; with ``pairs``
    True or False, only the models whose inits are (or are not) extracted together (`paired`).
    """
    names = [
        m
        for m in MODELS
        if (stage_shards("features", m) > 1) == split and pairs in (None, paired(m))
    ]
    return "|".join(names) or "(?!)"  # (?!) matches nothing


def feature_inits(wildcards):
    """The inits one feature job extracts: its init wildcard's, or PAIRED_INITS (jobs of `paired` models)."""
    return [wildcards.init] if "init" in wildcards.keys() else PAIRED_INITS


def magvit_minutes(passes, overhead=20):
    """Runtime request for ``passes`` MagVit encode+decode passes of one clip: ~10.7 TFLOP per 17x128x128 clip at a
    pessimistic 20 TFLOP/s (an H200 ran 132-393 TFLOP/s, benchmarks/README.md), plus ``overhead`` minutes to start,
    load and hash the weights.
    """
    ds = config["dataset"]
    scale = ds["frames"] / 17 * (ds["size"] / 128) ** 2
    return int(overhead + passes * scale * 10.7 / 20 / 60)


def feature_minutes(clips):
    """Runtime request for a feature job: the CPU image processors take ~60 ms a clip (benchmarks/README.md); a
    pessimistic 0.5 s a clip plus 15 minutes to start and load."""
    return int(15 + clips * 0.5 / 60)


def feature_inputs(wildcards):
    """Videos and labels always; the weights manifest and environment for networks; a tokenizer's tokens of the
    ordered and of the frame-shuffled clips."""
    inputs = {"videos": VIDEOS, "table": LABELS}
    if FAMILY[wildcards.model].network:
        inputs.update(env=ENV_JSON, manifest=manifest(wildcards.model))
    if wildcards.model == TOKENIZER:
        folder = f"results/{wildcards.model}/{wildcards.init}"
        inputs.update(
            tokens=f"{folder}/tokens.npy",
            tokens_shuffled=f"{folder}/tokens_shuffled.npy",
        )
    return inputs


def feature_options(model):
    """models.<name>.options over the family's defaults, and what follows from the model's config entry."""
    cfg = config["models"][model]
    derived = FAMILY[model].derived_options
    return {**cfg.get("options", {}), **(derived(cfg) if derived else {})}


# A token for gated repositories comes from the environment only. Declared when set, so that Snakemake passes it
# to jobs on other machines; not required, since the default repositories are public.
if os.getenv("HF_TOKEN"):

    envvars:
        "HF_TOKEN",


FEATURE_ARRAYS = ["ordered", "shuffled", "ordered_grid", "shuffled_grid"]
# The inits a paired model's feature job extracts together, in the order its outputs list them.
PAIRED_INITS = ["pretrained", "random"]


def feature_outputs(folder, temporary=False, inits=None):
    """The feature files of one job in ``folder``: the four arrays and the meta; with ``inits``, each name lists
    its file for every init (``{init}`` in ``folder`` filled in), in that order."""
    mark = temp if temporary else str

    def files(name):
        path = f"{folder}/{name}"
        if inits is None:
            return mark(path)
        return [mark(path.replace("{init}", init)) for init in inits]

    return {name: files(f"{name}.npy") for name in FEATURE_ARRAYS} | {
        "meta": files("features.json")
    }


def feature_shards(name):
    """An input function: the shard files of ``name`` (an array or "meta") of one (model, init), in shard order."""
    path = feature_outputs("results/features/{model}/{init}/shards/{shard}")[name]
    return lambda wc: expand(
        path,
        shard=range(stage_shards("features", wc.model)),
        model=wc.model,
        init=wc.init,
    )
