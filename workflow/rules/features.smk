# Each feature job writes both controls (the clips as rendered, and frame-shuffled) as features for the linear probe
# and token grids for the attentive probe, and one meta file (FEATURE_ARRAYS, feature_outputs in common.smk), for
# one init, or for both inits of a paired model (paired in common.smk), whose networks share each batch.


# A shard of a model's features, where features.shards splits them (the networks); merge_features joins them.
rule extract_features:
    input:
        unpack(feature_inputs),
    output:
        **feature_outputs(
            f"results/features/{{model,{feature_models(True, False)}}}/{{init}}/shards/{{shard}}",
            temporary=True,
        ),
    log:
        "logs/extract_features/{model}/{init}/{shard}.log",
    benchmark:
        "results/benchmarks/extract_features/{model}/{init}/{shard}.tsv"
    conda:
        "../../envs/torch.yaml"
    # On CPU one thread each lets two extractions run side by side, which beats two threads for one.
    threads: lambda wc: 1 + network_gpu(wc.model)
    resources:
        gpu=lambda wc: network_gpu(wc.model),
        # A paired job holds both networks (V-JEPA 2's ViT-L: 1.3 GB of float32 weights each).
        mem_mb=lambda wc: 4000 * len(feature_inits(wc))
        + 2 * clips_mb(shard_size("features", wc)),
        runtime=lambda wc: feature_minutes(
            shard_size("features", wc) * len(feature_inits(wc))
        ),
    params:
        family=lambda wc: FAMILY[wc.model].name,
        inits=feature_inits,
        clips=lambda wc: job_clips("features", wc),
        options=lambda wc: feature_options(wc.model),
        batch_size=config["features"]["batch_size"],
        seed=config["features"]["random_seed"],
        grid=config["features"]["grid"],
        code=code_version("extract_features"),
    script:
        "../scripts/extract_features.py"


# The whole of a model's features in one job where they are not split: no shards, nothing to merge.
use rule extract_features as extract_all_features with:
    output:
        **feature_outputs(
            f"results/features/{{model,{feature_models(False, False)}}}/{{init}}"
        ),
    log:
        "logs/extract_features/{model}/{init}.log",
    benchmark:
        "results/benchmarks/extract_features/{model}/{init}.tsv"


# A shard of both inits of a paired model: one job, each batch preprocessed once for the two networks.
use rule extract_features as extract_paired_features with:
    output:
        **feature_outputs(
            f"results/features/{{model,{feature_models(True, True)}}}/{{init}}/shards/{{shard}}",
            temporary=True,
            inits=PAIRED_INITS,
        ),
    log:
        "logs/extract_features/{model}/pretrained+random/{shard}.log",
    benchmark:
        "results/benchmarks/extract_features/{model}/pretrained+random/{shard}.tsv"


# Both inits of a paired model whose features are not split.
use rule extract_features as extract_all_paired_features with:
    output:
        **feature_outputs(
            f"results/features/{{model,{feature_models(False, True)}}}/{{init}}",
            inits=PAIRED_INITS,
        ),
    log:
        "logs/extract_features/{model}/pretrained+random.log",
    benchmark:
        "results/benchmarks/extract_features/{model}/pretrained+random.tsv"


rule merge_features:
    input:
        **{name: feature_shards(name) for name in [*FEATURE_ARRAYS, "meta"]},
    output:
        **feature_outputs(f"results/features/{{model,{feature_models(True)}}}/{{init}}"),
    log:
        "logs/merge_features/{model}/{init}.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        arrays=FEATURE_ARRAYS,
        what=lambda wc: f"features ({wc.model}/{wc.init})",
        clips=N_CLIPS,
        code=code_version("merge_shards"),
    script:
        "../scripts/merge_shards.py"
