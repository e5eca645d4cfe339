rule render_videos:
    output:
        videos=temp("results/data/shards/{shard}.npy"),
        table=temp("results/data/shards/{shard}.csv"),
    log:
        "logs/render_videos/{shard}.log",
    benchmark:
        "results/benchmarks/render_videos/{shard}.tsv"
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc: 500 + shard_mb(),
        runtime=30,
    params:
        dataset=config["dataset"],
        shard=lambda wc: int(wc.shard),
        code=code_version("render_videos"),
    script:
        "../scripts/render_videos.py"


rule merge_videos:
    input:
        videos=expand("results/data/shards/{shard}.npy", shard=SHARDS),
        tables=expand("results/data/shards/{shard}.csv", shard=SHARDS),
    output:
        videos=VIDEOS,
        table=LABELS,
    log:
        "logs/merge_videos.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=1000,
        runtime=15,
    params:
        code=code_version("merge_videos"),
    script:
        "../scripts/merge_videos.py"


rule preview_dataset:
    input:
        videos=VIDEOS,
        table=LABELS,
    output:
        sheet=report(
            "results/data/preview.png",
            caption="../report/preview.rst",
            category="1. Dataset",
        ),
        gifs=report(
            directory("results/data/gifs"),
            patterns=["{name}.gif"],
            caption="../report/gif.rst",
            category="1. Dataset",
            subcategory="Animations",
        ),
    log:
        "logs/preview_dataset.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_version("preview_dataset"),
    script:
        "../scripts/preview_dataset.py"
