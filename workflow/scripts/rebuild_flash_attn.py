"""Snakemake script: rebuild flash-attn against the installed torch (MAX_JOBS = the rule's threads), then probe it.

Writes pip's output to log.build (a log, so it is kept when the job fails) and the probe result to output.json; exits
non-zero, writing no JSON, when pip fails or flash-attn still does not work after the rebuild.
"""

import sys

from trajbench import logs
from trajbench.environment import EnvironmentCheckError, rebuild_flash_attn
from trajbench.io import write_json

logger = logs.setup(snakemake.log.main)  # noqa: F821 (injected by Snakemake)
try:
    result = rebuild_flash_attn(snakemake.threads, snakemake.log.build, dict(snakemake.params.runtime),
                                dict(snakemake.params.environment))
except EnvironmentCheckError as exc:
    logger.error("%s", exc)
    sys.exit(1)
probe = result["probe"]
if not probe["ok"]:
    # The generic remedy of a torch-ABI error is this very rebuild; after it, only building by hand can help.
    remedy = ("The new build does not fit this torch either: read the build log, build flash-attn by hand in this "
              "environment or install a release made for this torch."
              if probe["class"] == "flash_attn_abi" else f"Remedy: {probe['remedy']}.")
    logger.error("flash-attn still fails after the rebuild [%s]: %s. %s Or set environment.rebuild_flash_attn: false "
                 "to run with sdpa attention. Build log: %s; the probe's output:\n%s",
                 probe["class"], probe["message"], remedy, snakemake.log.build, probe["output_tail"])
    sys.exit(1)
logger.info("flash-attn works after the rebuild (%s, %s): %s", result["device"], result["dtype"], probe["details"])
write_json(snakemake.output.json, result)
