"""Snakemake script: probe the environment, choose device/dtype/attention, write the report (JSON + Markdown).

On a failed required probe or an impossible forced choice it writes nothing and exits non-zero; the log holds each
problem with its remedy and the failed probes' output tails.
"""

import sys

from trajbench import logs
from trajbench.environment import EnvironmentCheckError, run_checks, write_report

logger = logs.setup(snakemake.log[0])  # noqa: F821 (snakemake is injected by the script directive)
try:
    report = run_checks(dict(snakemake.params.runtime), dict(snakemake.params.environment))
except (EnvironmentCheckError, ValueError) as exc:
    logger.error("%s", exc)
    for name, entry in (getattr(exc, "report", None) or {}).get("probes", {}).items():
        if not entry["ok"] and entry["required"]:
            logger.error("%s probe output tail:\n%s", name, entry["output_tail"])
    sys.exit(1)
write_report(report, snakemake.output.json, snakemake.output.md)
