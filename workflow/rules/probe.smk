# Both probes on both controls of one (model, init): the ordered clips and the same clips frame-shuffled.
rule probe:
    input:
        ordered="results/features/{model}/{init}/ordered.npy",
        shuffled="results/features/{model}/{init}/shuffled.npy",
        ordered_grid="results/features/{model}/{init}/ordered_grid.npy",
        shuffled_grid="results/features/{model}/{init}/shuffled_grid.npy",
        table=LABELS,
        env=ENV_JSON,
    output:
        ordered="results/probes/{model}/{init}/ordered.json",
        shuffled="results/probes/{model}/{init}/shuffled.json",
        ordered_folds="results/probes/{model}/{init}/ordered_folds.csv",
        shuffled_folds="results/probes/{model}/{init}/shuffled_folds.csv",
    log:
        "logs/probe/{model}/{init}.log",
    benchmark:
        "results/benchmarks/probe/{model}/{init}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    # The attentive probe trains on the GPU where there is one.
    resources:
        gpu=uses_gpu(),
        mem_mb=4000,
        runtime=60,
    params:
        probe=config["probe"],
        code=code_version("probe"),
    script:
        "../scripts/probe.py"
