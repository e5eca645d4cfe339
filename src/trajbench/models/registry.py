"""Every model family the workflow can run, by name: the one place that lists them.

A config entry ``models.<name>`` runs family ``models.<name>.family`` (by default the entry's own name), so two
checkpoints of one family run side by side under two names. Importing this module imports no torch.
"""

from __future__ import annotations

from trajbench.models import clip, dinov2, kinematics, magvit, oracle, pixels, videomae, vjepa2
from trajbench.models.base import Family

FAMILIES: dict[str, Family] = {
    module.FAMILY.name: module.FAMILY
    for module in (magvit, videomae, clip, dinov2, vjepa2, pixels, kinematics, oracle)
}


def get(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; known families: {sorted(FAMILIES)}") from None


def of(config: dict, model: str) -> Family:
    """The family of config entry ``models.<model>``."""
    return get(config["models"][model].get("family", model))
