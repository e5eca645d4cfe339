import numpy as np
import pandas as pd

from trajbench import attentive, controls, logs, probe, runtime

logger = logs.setup(snakemake.log[0])
cfg = snakemake.params.probe
table = pd.read_csv(snakemake.input.table)
labels = table["label"].to_numpy()
class_names = table.drop_duplicates("label").sort_values("label")["class_name"].tolist()
device = runtime.load_choice(snakemake.input.env).device
# The splits depend only on the labels and probe.folds/repeats/seed: every model and control is scored on the same
# folds.
splits = probe.make_splits(labels, cfg["folds"], cfg["repeats"], cfg["seed"])
with runtime.cpu_threads(device):
    for control in controls.CONTROLS:
        result = probe.run_probe(
            np.load(snakemake.input[control]),
            labels,
            splits,
            Cs=cfg["Cs"],
            inner_folds=cfg["inner_folds"],
            pca_dim=cfg["pca_dim"],
            knn_k=cfg["knn_k"],
            seed=cfg["seed"],
            class_names=class_names,
            control=control,
            grids=np.load(snakemake.input[f"{control}_grid"]),
            attentive_config=attentive.AttentiveConfig.from_dict(cfg["attentive"]),
            device=device,
        )
        result.to_json(snakemake.output[control])
        result.folds_to_csv(snakemake.output[f"{control}_folds"])
        for name in ("logreg", "attentive"):
            acc = result.summary[name]["accuracy"]
            logger.info("%s %s accuracy %.3f [%.3f, %.3f]", control, name, acc["mean"], acc["ci_low"], acc["ci_high"])
