rule make_standin_weights:
    input:
        env=ENV_JSON,
    output:
        directory("resources/standins/{model}"),
    log:
        "logs/make_standin_weights/{model}.log",
    # Short jobs that the long ones (fine-tuning, tokenization) wait on.
    priority: 10
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        family=lambda wc: FAMILY[wc.model].name,
        architecture=lambda wc: config["models"][wc.model].get("architecture", {}),
        seed=lambda wc: tb_config.standin_seed(wc.model),
        code=code_version("make_standin_weights"),
    script:
        "../scripts/make_standin_weights.py"


# Runs where the network is (the submit host on clusters); cached across workflows by content.
rule download_weights:
    input:
        weights_input,
    output:
        manifest("{model}"),
    log:
        "logs/download_weights/{model}.log",
    cache: "omit-software"
    localrule: True
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=1000,
        runtime=120,
    params:
        model=lambda wc: wc.model,
        model_cfg=lambda wc: weights_config(wc.model),
        weights=config["weights"],
        code=code_version("download_weights"),
    script:
        "../scripts/download_weights.py"
