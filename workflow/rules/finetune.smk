# The fine-tuning set: the evaluation dataset's settings with its own size and seed, so no clip is shared.
rule render_training_videos:
    output:
        videos="results/finetune/data/videos.npy",
        table="results/finetune/data/labels.csv",
    log:
        "logs/render_training_videos.log",
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc: 500 + clips_mb(TRAIN_CLIPS),
        runtime=lambda wc: 10 + TRAIN_CLIPS // 100,
    params:
        dataset=training_dataset(),
        shard=0,
        code=code_version("render_videos"),
    script:
        "../scripts/render_videos.py"


rule finetune_tokenizer:
    input:
        unpack(finetune_inputs),
    output:
        checkpoint=FINETUNE["checkpoint"],
        history=FINETUNE["history"],
        curves=report(
            FINETUNE["curves"],
            caption="../report/finetune_curves.rst",
            category="2. MagVit reconstruction",
        ),
        meta=FINETUNE["meta"],
    log:
        "logs/finetune_tokenizer.log",
    benchmark:
        "results/benchmarks/finetune_tokenizer.tsv"
    # The longest single job, with the finetuned init's tokenize, features and probe behind it: start it first.
    priority: 10
    conda:
        "../../envs/torch.yaml"
    threads: 1 + uses_gpu()
    resources:
        gpu=uses_gpu(),
        mem_mb=lambda wc: 8000 + 2 * clips_mb(TRAIN_CLIPS),
        runtime=finetune_minutes(),
    params:
        model_cfg=config["models"][TOKENIZER],
        finetune=config["finetune"],
        tokenize=config["tokenize"],
        allow_slow_cpu=config["runtime"]["allow_slow_cpu"],
        # Outside the outputs on purpose: Snakemake deletes an interrupted job's outputs, and the resume state must
        # survive to be resumed from (it is checked against the run's settings and removed when training ends).
        state=FINETUNE["state"],
        code=code_version("finetune_tokenizer"),
    script:
        "../scripts/finetune_tokenizer.py"
