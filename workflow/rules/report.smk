rule compare:
    input:
        results=[f"results/probes/{m}/{i}.json" for m, i in model_inits()],
    output:
        init_differences=report(
            "results/comparisons/init_differences.csv",
            caption="../report/init_differences.rst",
            category="3. Linear probes",
        ),
        init_differences_md="results/comparisons/init_differences.md",
        models=report(
            "results/comparisons/models.csv",
            caption="../report/models.rst",
            category="3. Linear probes",
        ),
        models_md="results/comparisons/models.md",
        accuracy=report(
            "results/figures/probe_accuracy.png",
            caption="../report/probe_accuracy.rst",
            category="3. Linear probes",
        ),
        paired=report(
            "results/figures/init_differences.png",
            caption="../report/init_differences_figure.rst",
            category="3. Linear probes",
        ),
        confusion=report(
            "results/figures/confusion_matrices.png",
            caption="../report/confusion.rst",
            category="3. Linear probes",
        ),
    log:
        "logs/compare.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        model_inits=model_inits(),
        standin=STANDIN,
        code=code_version("compare"),
    script:
        "../scripts/compare.py"


rule summary:
    input:
        unpack(summary_inputs),
    output:
        report(
            "results/summary.md",
            caption="../report/summary.rst",
            category="0. Summary",
        ),
    log:
        "logs/summary.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        config=config,
        standin=STANDIN,
        code=code_version("summary"),
    script:
        "../scripts/summary.py"
