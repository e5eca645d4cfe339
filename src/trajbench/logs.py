"""Logging for rule scripts: everything goes to the rule's ``log:`` file and to stderr."""

from __future__ import annotations

import logging
import sys
import time


def setup(log_path: str | None = None, level: int = logging.INFO) -> logging.Logger:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    logger = logging.getLogger("trajbench")

    def log_uncaught(kind, error, traceback):
        # An error that stops a job belongs in the job's log, where Snakemake points the user, not only on stderr.
        logger.critical("%s: %s", kind.__name__, error, exc_info=(kind, error, traceback))

    sys.excepthook = log_uncaught
    return logger


class Progress:
    """Logs done/total and throughput for long loops, at most every ``every_s`` seconds and at the end."""

    def __init__(self, total: int, what: str, logger: logging.Logger, unit: str = "clips", every_s: float = 10.0):
        self.total, self.what, self.logger, self.unit, self.every_s = total, what, logger, unit, every_s
        self.done = 0
        self.start = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done >= self.total:
            rate = self.done / max(now - self.start, 1e-9)
            self.logger.info("%s: %d/%d %s (%.2f %s/s)", self.what, self.done, self.total, self.unit, rate, self.unit)
            self.last = now

    @property
    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.start, 1e-9)
