rule check_environment:
    input:
        rebuilt=(
            "results/env/flash_attn_rebuild.json"
            if config["environment"]["rebuild_flash_attn"]
            else []
        ),
    output:
        json=ENV_JSON,
        md=report(
            "results/env/environment.md",
            caption="../report/environment.rst",
            category="0. Environment",
        ),
    log:
        "logs/check_environment.log",
    # Every job that loads a model waits on it: run it before anything else.
    priority: 20
    conda:
        "../../envs/torch.yaml"
    # Its second probe process mostly waits on imports: one thread leaves a core to render the clips meanwhile.
    threads: 1
    resources:
        gpu=uses_gpu(),
        mem_mb=4000,
        runtime=15,
    params:
        runtime=config["runtime"],
        environment=config["environment"],
        code=code_version("check_environment"),
    script:
        "../scripts/check_environment.py"


# Opt-in (environment.rebuild_flash_attn): rebuilds flash-attn against the installed torch. Never runs otherwise.
# No code_version param: editing trajbench must not trigger another build of hours; the environment is changed once.
rule rebuild_flash_attn:
    output:
        json="results/env/flash_attn_rebuild.json",
    log:
        main="logs/rebuild_flash_attn.log",
        build="logs/flash_attn_build.log",
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=uses_gpu(),
        mem_mb=32000,
        runtime=120,
    params:
        runtime=config["runtime"],
        environment=config["environment"],
    script:
        "../scripts/rebuild_flash_attn.py"
