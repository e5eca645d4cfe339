"""Peak memory and wall time of loading a full-size MagVit checkpoint on the CPU.

Writes a checkpoint in the real layout (568 entries: 283 weights, 283 EMA copies, decay, num_updates; float32,
~2.96 GB) with trajbench.checkpoint_magvit.save_checkpoint, then measures each loader in a fresh subprocess:

- ``load_checkpoint``: trajbench.checkpoint_magvit.load_checkpoint (memory-mapped, weights assigned to a
  meta-device model); then every EMA parameter is read once, as a forward pass or ``.to("cuda")`` would, which pages
  the weights in.
- ``naive``: torch.load without mmap, a model built on the CPU, load_state_dict copying the EMA weights in.

Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of that subprocess (VmHWM from /proc as a cross-check).
It counts mapped file pages that were touched; RssAnon/RssFile (Linux) split the RSS at the end into private memory
and page-cache-backed file pages. Linux carries the parent's peak into ru_maxrss across fork+exec, so this parent
process stays small: it does not import torch, and the checkpoint is written by a subprocess too.

    PYTHONPATH=src python benchmarks/load_checkpoint.py [--path /big/disk/bench.ckpt] [--keep] [--json out.json]

Needs ~3 GB of free disk and ~4.5 GB of RAM (the naive loader). Runs with a warm page cache (the file was just
written), so the times are not disk-read times.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trajbench import io  # numpy only: keeps this parent process small

MODES = ("load_checkpoint", "naive")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def proc_status_mb() -> dict[str, float]:
    status = Path("/proc/self/status")
    if not status.exists():
        return {}
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) / 1024 for name in ("VmHWM", "RssAnon", "RssFile") if name in fields}


def measure(mode: str, path: Path) -> dict:
    """Subprocess: load, then read every parameter once."""
    import torch

    from trajbench.checkpoint_magvit import ema_name, load_checkpoint
    from trajbench.modeling_magvit import MagvitConfig, MagvitTokenizer

    result = {"mode": mode, "baseline_peak_rss_mb": peak_rss_mb()}
    start = time.perf_counter()
    if mode == "load_checkpoint":
        model = load_checkpoint(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        model = MagvitTokenizer(MagvitConfig.full())
        model.load_state_dict({key: state[ema_name(key)] for key in model.state_dict()})
    result["load_s"] = time.perf_counter() - start
    result["peak_rss_after_load_mb"] = peak_rss_mb()
    start = time.perf_counter()
    with torch.inference_mode():
        checksum = sum(float(p.sum()) for p in model.parameters())  # a reduction: reads, allocates nothing big
    result["touch_s"] = time.perf_counter() - start
    result["peak_rss_after_touch_mb"] = peak_rss_mb()
    result.update({f"{name}_end_mb": value for name, value in proc_status_mb().items()})
    result["parameters"] = sum(p.numel() for p in model.parameters())
    result["checksum"] = checksum
    return result


def write_checkpoint(path: Path) -> dict:
    """Subprocess: a seeded full-size model saved in the authors' layout."""
    import torch

    from trajbench.checkpoint_magvit import save_checkpoint
    from trajbench.modeling_magvit import MagvitConfig, build_model

    start = time.perf_counter()
    save_checkpoint(path, build_model(MagvitConfig.full(), seed=0))  # EMA = a separate copy, as in the real file
    entries = len(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state_dict"])
    return {"entries": entries, "bytes": path.stat().st_size, "write_s": time.perf_counter() - start}


def run_in_subprocess(step: str, path: Path) -> dict:
    command = [sys.executable, __file__, "--step", step, "--path", str(path)]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)  # its stderr shows here
    return json.loads(done.stdout.strip().splitlines()[-1])


COLUMNS = (  # header, result key, format
    ("loader", "mode", "{}"),
    ("baseline MB", "baseline_peak_rss_mb", "{:.0f}"),
    ("peak after load MB", "peak_rss_after_load_mb", "{:.0f}"),
    ("peak after touch MB", "peak_rss_after_touch_mb", "{:.0f}"),
    ("VmHWM MB", "VmHWM_end_mb", "{:.0f}"),
    ("RssAnon MB", "RssAnon_end_mb", "{:.0f}"),
    ("RssFile MB", "RssFile_end_mb", "{:.0f}"),
    ("load s", "load_s", "{:.2f}"),
    ("touch s", "touch_s", "{:.2f}"),
)


def print_table(checkpoint: dict, rows: list[dict]) -> None:
    gigabytes = checkpoint["bytes"] / 1e9
    print(f"checkpoint: {checkpoint['entries']} entries, {gigabytes:.3f} GB, written in {checkpoint['write_s']:.1f} s")
    cells = [[fmt.format(row[key]) if key in row else "n/a" for _, key, fmt in COLUMNS] for row in rows]
    print(io.markdown_table([header for header, _, _ in COLUMNS], cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, help="where to write the checkpoint (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--step", choices=("write",) + MODES, help=argparse.SUPPRESS)  # the subprocess side
    args = parser.parse_args()
    if args.step:
        print(json.dumps(write_checkpoint(args.path) if args.step == "write" else measure(args.step, args.path)))
        return
    if args.keep and not args.path:
        parser.error("--keep needs --path (the default location is a temporary folder)")

    with tempfile.TemporaryDirectory() as tmp:
        path = args.path or Path(tmp) / "video_128_262144.ckpt"
        try:
            checkpoint = run_in_subprocess("write", path)
            rows = [run_in_subprocess(mode, path) for mode in MODES]
        finally:
            if not args.keep:
                path.unlink(missing_ok=True)
    if len({row["checksum"] for row in rows}) != 1:
        raise SystemExit(f"the loaders disagree on the weights: {[row['checksum'] for row in rows]}")
    print_table(checkpoint, rows)
    if args.json:
        io.write_json(args.json, {"checkpoint": checkpoint, "runs": rows})


if __name__ == "__main__":
    main()
