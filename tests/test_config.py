import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from trajbench import config as tb_config
from trajbench.models import magvit as magvit_family

SCHEMA = "workflow/schemas/config.schema.yaml"


def load(root, name):
    """A config as Snakemake builds it: config.yaml, a --configfile merged over it key by key, then the schema."""
    base = yaml.safe_load((root / "config/config.yaml").read_text())
    if name != "config.yaml":
        _merge(base, yaml.safe_load((root / "config" / name).read_text()))
    validate(base, str(root / SCHEMA))
    tb_config.normalize(base)
    return base


def _merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml"])
def test_shipped_configs_are_valid(root, name):
    cfg = load(root, name)
    tb_config.check(cfg)
    assert cfg["dataset"]["frames"] % 4 == 1


def test_demo_models_do_not_inherit_hub_keys(root):
    cfg = load(root, "demo.yaml")
    assert cfg["models"]["magvit"] == {
        "family": "magvit",
        "options": {},
        "source": "local",
        "standin": True,
        "architecture": cfg["models"]["magvit"]["architecture"],
        "inits": ["pretrained", "random"],
    }


def test_schema_fills_defaults(root):
    cfg = {"models": {}}
    validate(cfg, str(root / SCHEMA))
    assert cfg["dataset"]["frames"] == 17
    assert cfg["probe"]["folds"] == 5
    assert cfg["runtime"]["device"] == "auto"


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("dataset", "frmes"), 17, "frmes"),  # unknown key (a typo)
        (("dataset", "frames"), "17", "'17' is not of type 'integer'"),
        (("dataset", "videos_per_class"), 0, "minimum"),
        (("runtime", "device"), "tpu", "'tpu' is not one of"),
    ],
)
def test_schema_errors_name_the_problem(root, path, value, message):
    cfg = load(root, "config.yaml")
    cfg[path[0]][path[1]] = value
    with pytest.raises(WorkflowError, match=message):
        validate(cfg, str(root / SCHEMA))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["dataset"].update(frames=16), r"dataset.frames=16 .* 1 \+ 4·k frames"),
        (lambda c: c["dataset"].update(size=100),
         r"dataset.size=100 must be a multiple of models.magvit \(MagVit\)'s spatial"),
        (lambda c: c["dataset"].update(object_radius=[5, 2]), "dataset.object_radius must be"),
        (lambda c: c["dataset"].update(path_ratio=[0.9, 1.5]), r"dataset.path_ratio must be \[min, max\] with 1 <"),
        (lambda c: c["dataset"].update(extent=[0.5, 0.9]), r"dataset.extent max 0.9 \(115.2 pixels\) does not fit"),
        (lambda c: c["dataset"].update(shards=10_000), r"dataset.shards \(10000\) exceeds"),
        (lambda c: c["probe"].update(folds=100), "probe.folds=100 exceeds dataset.videos_per_class"),
        (lambda c: c["models"]["pixels"].update(source="hub"), "models.pixels.source must be 'none'"),
        (lambda c: c["models"]["clip"].pop("allow_patterns"), "models.clip: source 'hub' needs exactly one"),
        (lambda c: c["models"]["clip"].update(source="local", standin=True) or c["features"].update(
            random_seed=tb_config.standin_seed("clip")), r"features.random_seed=\d+ is a stand-in's seed"),
        (lambda c: c["models"]["clip"].update(family="clipp"), r"models.clip.family: unknown model family 'clipp'"),
        (lambda c: c["models"]["clip"].update(options={"frame": 4}),
         r"models.clip.options: unknown option\(s\) \['frame'\] for family clip"),
        (lambda c: c["models"].update(features={"family": "pixels", "source": "none"}),
         "models.features: the name 'features' is a results/ folder"),
        (lambda c: c["models"].update(magvit2=dict(c["models"]["magvit"])),
         r"models: \['magvit', 'magvit2'\] of a tokenizer family \['magvit'\]; the workflow runs exactly one"),
        (lambda c: c["models"].pop("magvit"), r"models: no model of a tokenizer family"),
        (lambda c: c["models"]["videomae_k400"].update(source="none"), "models.videomae_k400.source is 'none' but "
                                                                       "family videomae needs weights"),
    ],
)
def test_semantic_errors_name_the_key(root, change, message):
    cfg = copy.deepcopy(load(root, "config.yaml"))
    change(cfg)
    with pytest.raises(tb_config.ConfigError, match=message):
        tb_config.check(cfg)


@pytest.mark.parametrize("ch_mult", [(1, 2, 2, 4), (1, 1, 2, 2), (1, 2), (2, 2, 2), (1,)])
def test_compression_matches_the_model_config(ch_mult):
    from trajbench.modeling_magvit import MagvitConfig

    model = MagvitConfig(ch=32, ch_mult=ch_mult, resolution=32)
    architecture = {"ch_mult": list(ch_mult)}
    assert magvit_family.temporal_compression(architecture) == model.temporal_compression
    assert magvit_family.spatial_compression(architecture) == model.spatial_compression


def test_a_family_newer_than_the_installed_transformers_is_refused_by_name(root, monkeypatch):
    """V-JEPA 2 came with transformers 4.53: on 4.48 the config check names the entry, the version it needs and
    the way out, before any job (never an ImportError deep in a job)."""
    monkeypatch.setattr(tb_config, "version", lambda name: "4.48.0" if name == "transformers" else "0")
    cfg = load(root, "config.yaml")
    with pytest.raises(tb_config.ConfigError, match=r"models.vjepa2: family vjepa2 needs transformers>=4.53.0, "
                                                    r"installed: 4.48.0.*remove models.vjepa2.*vjepa2: null"):
        tb_config.check(cfg)
    monkeypatch.setattr(tb_config, "version", lambda name: "4.53.0" if name == "transformers" else "0")
    tb_config.check(cfg)


def test_a_null_entry_in_a_later_config_file_drops_the_model(root, monkeypatch):
    """What the minimum-versions CI leg runs the demo with (.ci/min-override.yaml): transformers 4.48, no vjepa2."""
    monkeypatch.setattr(tb_config, "version", lambda name: "4.48.0" if name == "transformers" else "0")
    base = yaml.safe_load((root / "config/config.yaml").read_text())
    for extra in ("config/demo.yaml", ".ci/min-override.yaml"):
        _merge(base, yaml.safe_load((root / extra).read_text()))
    validate(base, str(root / SCHEMA))
    tb_config.normalize(base)
    assert "vjepa2" not in base["models"] and base["models"]["videomae"]["source"] == "local"
    assert base["models"]["videomae"]["inits"] == ["pretrained", "random"]  # the schema's defaults still apply
    tb_config.check(base)


def test_the_config_s_own_mistakes_come_before_the_transformers_requirement(root, monkeypatch):
    monkeypatch.setattr(tb_config, "version", lambda name: "4.48.0" if name == "transformers" else "0")
    cfg = load(root, "config.yaml")
    cfg["probe"]["folds"] = 100
    with pytest.raises(tb_config.ConfigError, match="probe.folds=100 exceeds"):
        tb_config.check(cfg)


def test_two_checkpoints_of_one_family_under_two_names(root):
    cfg = load(root, "config.yaml")
    assert cfg["models"]["videomae"]["family"] == cfg["models"]["videomae_k400"]["family"] == "videomae"
    assert cfg["models"]["videomae_k400"]["repo_id"] == "MCG-NJU/videomae-base-finetuned-kinetics"


def test_normalize_sorts_every_mapping_but_keeps_list_order():
    cfg = {"probe": {"seed": 0, "folds": 3}, "dataset": {"classes": ["zigzag", "linear"]},
           "models": {"pixels": {"source": "none"}}}
    tb_config.normalize(cfg)
    assert list(cfg) == ["dataset", "models", "probe"] and list(cfg["probe"]) == ["folds", "seed"]
    assert cfg["dataset"]["classes"] == ["zigzag", "linear"]
    assert cfg["models"]["pixels"] == {"family": "pixels", "source": "none"}
