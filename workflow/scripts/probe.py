import numpy as np
import pandas as pd

from trajbench import logs, probe

logger = logs.setup(snakemake.log[0])
cfg = snakemake.params.probe
table = pd.read_csv(snakemake.input.table)
features = np.load(snakemake.input.features)
class_names = table.drop_duplicates("label").sort_values("label")["class_name"].tolist()
# The splits depend only on the labels and probe.folds/repeats/seed: every model is scored on the same folds.
splits = probe.make_splits(table["label"].to_numpy(), cfg["folds"], cfg["repeats"], cfg["seed"])
result = probe.run_probe(
    features,
    table["label"].to_numpy(),
    splits,
    Cs=cfg["Cs"],
    inner_folds=cfg["inner_folds"],
    pca_dim=cfg["pca_dim"],
    knn_k=cfg["knn_k"],
    seed=cfg["seed"],
    class_names=class_names,
)
result.to_json(snakemake.output.result)
result.folds_to_csv(snakemake.output.folds)
acc = result.summary["logreg"]["accuracy"]
logger.info("accuracy %.3f [%.3f, %.3f]", acc["mean"], acc["ci_low"], acc["ci_high"])
