"""trajbench: do pretrained video models represent object motion? A Snakemake workflow on synthetic trajectories."""

__version__ = "0.1.0"
