rule compare:
    input:
        results=[probe_result(*key) for key in probe_results()],
    output:
        init_differences=report(
            "results/comparisons/init_differences.csv",
            caption="../report/init_differences.rst",
            category="3. Probes",
        ),
        init_differences_md="results/comparisons/init_differences.md",
        models=report(
            "results/comparisons/models.csv",
            caption="../report/models.rst",
            category="3. Probes",
        ),
        models_md="results/comparisons/models.md",
        representations=report(
            "results/comparisons/representations.csv",
            caption="../report/representations.rst",
            category="3. Probes",
        ),
        representations_md="results/comparisons/representations.md",
        accuracy=report(
            "results/figures/probe_accuracy.png",
            caption="../report/probe_accuracy.rst",
            category="3. Probes",
        ),
        order_sensitivity=report(
            "results/figures/order_sensitivity.png",
            caption="../report/order_sensitivity.rst",
            category="3. Probes",
        ),
        paired=report(
            "results/figures/init_differences.png",
            caption="../report/init_differences_figure.rst",
            category="3. Probes",
        ),
        representation_matrix=report(
            "results/figures/representation_matrix.png",
            caption="../report/representation_matrix.rst",
            category="3. Probes",
        ),
        confusion=report(
            "results/figures/confusion_matrices.png",
            caption="../report/confusion.rst",
            category="3. Probes",
        ),
    log:
        "logs/compare.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        result_keys=probe_results(),
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
        tokenizer=TOKENIZER,
        feature_keys=model_inits(),
        probe_keys=probe_results(),
        code=code_version("summary"),
    script:
        "../scripts/summary.py"
