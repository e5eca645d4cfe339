rule probe:
    input:
        features="results/features/{model}/{init}.npy",
        table=LABELS,
    output:
        result="results/probes/{model}/{init}.json",
        folds="results/probes/{model}/{init}_folds.csv",
    log:
        "logs/probe/{model}/{init}.log",
    benchmark:
        "results/benchmarks/probe/{model}/{init}.tsv"
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        probe=config["probe"],
        code=code_version("probe"),
    script:
        "../scripts/probe.py"
