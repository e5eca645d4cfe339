rule extract_features:
    input:
        unpack(feature_inputs),
    output:
        features="results/features/{model}/{init}.npy",
        meta="results/features/{model}/{init}.json",
    log:
        "logs/extract_features/{model}/{init}.log",
    benchmark:
        "results/benchmarks/extract_features/{model}/{init}.tsv"
    conda:
        "../../envs/torch.yaml"
    # On CPU one thread each lets two extractions run side by side, which beats two threads for one.
    threads: lambda wc: 2 if uses_gpu() and wc.model in ("videomae", "clip") else 1
    resources:
        gpu=lambda wc: uses_gpu() if wc.model in ("videomae", "clip") else 0,
        mem_mb=lambda wc: 4000 + 2 * dataset_mb(),
        runtime=60,
    params:
        model=lambda wc: wc.model,
        init=lambda wc: wc.init,
        options=lambda wc: feature_options(wc.model),
        batch_size=config["features"]["batch_size"],
        seed=config["features"]["random_seed"],
        code=code_version("features", "weights", "environment"),
    script:
        "../scripts/extract_features.py"
