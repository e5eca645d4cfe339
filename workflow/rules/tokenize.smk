rule tokenize:
    input:
        unpack(tokenize_inputs),
    output:
        tokens=temp(f"results/{TOKENIZER}/{{init}}/shards/{{shard}}/tokens.npy"),
        tokens_shuffled=temp(
            f"results/{TOKENIZER}/{{init}}/shards/{{shard}}/tokens_shuffled.npy"
        ),
        reconstructions=temp(
            f"results/{TOKENIZER}/{{init}}/shards/{{shard}}/reconstructions.npy"
        ),
        meta=temp(f"results/{TOKENIZER}/{{init}}/shards/{{shard}}/tokenize.json"),
    log:
        "logs/tokenize/{init}/{shard}.log",
    benchmark:
        "results/benchmarks/tokenize/{init}/{shard}.tsv"
    # Long jobs first (after fine-tuning): short feature and probe jobs then fill the cores to the end.
    priority: 5
    conda:
        "../../envs/torch.yaml"
    # On CPU one thread each lets shards run side by side.
    threads: 2 if uses_gpu() else 1
    resources:
        gpu=uses_gpu(),
        mem_mb=lambda wc: 6000 + 3 * clips_mb(shard_size("tokenize", wc)),
        # Encoding the shuffled clips adds the encoder's share of a pass (4.47 of 10.66 TFLOP).
        runtime=lambda wc: magvit_minutes(1.42 * shard_size("tokenize", wc)),
    params:
        clips=lambda wc: shard_clips("tokenize", wc.shard),
        model_cfg=config["models"][TOKENIZER],
        tokenize=config["tokenize"],
        allow_slow_cpu=config["runtime"]["allow_slow_cpu"],
        code=code_version("tokenize"),
    script:
        "../scripts/tokenize.py"


rule merge_tokens:
    input:
        tokens=expand(
            f"results/{TOKENIZER}/{{{{init}}}}/shards/{{shard}}/tokens.npy",
            shard=range(stage_shards("tokenize")),
        ),
        tokens_shuffled=expand(
            f"results/{TOKENIZER}/{{{{init}}}}/shards/{{shard}}/tokens_shuffled.npy",
            shard=range(stage_shards("tokenize")),
        ),
        reconstructions=expand(
            f"results/{TOKENIZER}/{{{{init}}}}/shards/{{shard}}/reconstructions.npy",
            shard=range(stage_shards("tokenize")),
        ),
        meta=expand(
            f"results/{TOKENIZER}/{{{{init}}}}/shards/{{shard}}/tokenize.json",
            shard=range(stage_shards("tokenize")),
        ),
    output:
        tokens=f"results/{TOKENIZER}/{{init}}/tokens.npy",
        tokens_shuffled=f"results/{TOKENIZER}/{{init}}/tokens_shuffled.npy",
        reconstructions=f"results/{TOKENIZER}/{{init}}/reconstructions.npy",
        meta=f"results/{TOKENIZER}/{{init}}/tokenize.json",
    log:
        "logs/merge_tokens/{init}.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=1000,
        runtime=lambda wc: 10 + dataset_mb() // 1000,
    params:
        arrays=["tokens", "tokens_shuffled", "reconstructions"],
        what=lambda wc: f"tokenize ({wc.init})",
        clips=N_CLIPS,
        code=code_version("merge_shards"),
    script:
        "../scripts/merge_shards.py"


rule reconstruction_metrics:
    input:
        videos=VIDEOS,
        table=LABELS,
        tokens=f"results/{TOKENIZER}/{{init}}/tokens.npy",
        reconstructions=f"results/{TOKENIZER}/{{init}}/reconstructions.npy",
    output:
        per_video=f"results/{TOKENIZER}/{{init}}/metrics.csv",
        per_frame=f"results/{TOKENIZER}/{{init}}/per_frame.csv",
        codebook=f"results/{TOKENIZER}/{{init}}/codebook.json",
    log:
        "logs/reconstruction_metrics/{init}.log",
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc: 1000 + 2 * dataset_mb(),
        runtime=30,
    params:
        architecture=config["models"][TOKENIZER].get("architecture", {}),
        code=code_version("reconstruction_metrics"),
    script:
        "../scripts/reconstruction_metrics.py"


rule compare_reconstruction:
    input:
        videos=VIDEOS,
        table=LABELS,
        per_video=expand(
            f"results/{TOKENIZER}/{{init}}/metrics.csv", init=inits(TOKENIZER)
        ),
        per_frame=expand(
            f"results/{TOKENIZER}/{{init}}/per_frame.csv", init=inits(TOKENIZER)
        ),
        codebook=expand(
            f"results/{TOKENIZER}/{{init}}/codebook.json", init=inits(TOKENIZER)
        ),
        reconstructions=expand(
            f"results/{TOKENIZER}/{{init}}/reconstructions.npy", init=inits(TOKENIZER)
        ),
    output:
        table=report(
            "results/comparisons/reconstruction.csv",
            caption="../report/reconstruction_table.rst",
            category="2. MagVit reconstruction",
        ),
        markdown="results/comparisons/reconstruction.md",
        distributions=report(
            "results/figures/reconstruction_distributions.png",
            caption="../report/reconstruction_distributions.rst",
            category="2. MagVit reconstruction",
        ),
        panel=report(
            "results/figures/reconstruction_panel.png",
            caption="../report/reconstruction_panel.rst",
            category="2. MagVit reconstruction",
        ),
        psnr_per_frame="results/comparisons/psnr_per_frame.csv",
        psnr_per_frame_figure=report(
            "results/figures/psnr_per_frame.png",
            caption="../report/psnr_per_frame.rst",
            category="2. MagVit reconstruction",
        ),
    log:
        "logs/compare_reconstruction.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=lambda wc: 1000 + 3 * dataset_mb(),
        runtime=15,
    params:
        inits=inits(TOKENIZER),
        standin=STANDIN,
        panel_frames=config["report"]["panel_frames"],
        window=config["tokenize"]["window"],
        code=code_version("compare_reconstruction"),
    script:
        "../scripts/compare_reconstruction.py"
