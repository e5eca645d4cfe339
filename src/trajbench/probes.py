"""The environment check's probes: small programs that each prove one part of the stack works.

trajbench.environment runs each in a fresh interpreter (``run_probe``): ``python -X faulthandler`` runs this file by
path with ``NAME ARGS_JSON``. A probe fills ``details`` with what it measured; ``main`` prints them as JSON on one
MARKER line even when the probe raises, so partial facts (e.g. an error size) survive a failure. The exit status,
the traceback and the output tell the caller what failed.

Only the standard library is imported at module level and nothing from trajbench: heavy packages are imported
inside the probe that tests them (a torch that crashes on import must crash a probe, never the check), and the
probed interpreter need not have trajbench installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import platform
import sys
import warnings
from typing import Any, Callable

MARKER = "@@trajbench-probe@@"
Details = dict[str, Any]


def probe_python(args: dict, details: Details) -> None:
    """The interpreter and the installed versions of ``args["distributions"]`` (None: not installed)."""
    details["python"] = platform.python_version()
    details["executable"] = sys.executable
    versions = details["versions"] = {}
    for name in args["distributions"]:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None


def probe_torch(args: dict, details: Details) -> None:
    """torch's build and a matmul on the CPU; unless ``args["device"]`` is cpu, the GPUs and a matmul on the first."""
    import torch

    details["torch"] = torch.__version__
    details["cuda_build"] = torch.version.cuda
    details["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    value = float((a @ a.T).trace())  # sum of squares 0..11
    if value != 506.0:
        raise RuntimeError(f"torch matmul on cpu gave {value}, expected 506")
    if args["device"] == "cpu":  # never touch CUDA when the user chose cpu: a hung driver must not block it
        return
    with warnings.catch_warnings(record=True) as caught:  # torch explains an unusable CUDA only in a warning
        warnings.simplefilter("always")
        details["cuda_available"] = torch.cuda.is_available()
    details["cuda_warnings"] = [str(w.message) for w in caught]
    if not details["cuda_available"]:
        return
    gpus = details["gpus"] = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append({"index": index, "name": props.name, "memory_gb": props.total_memory / 2**30,
                     "compute_capability": [props.major, props.minor]})
    try:
        free, _ = torch.cuda.mem_get_info(0)
        gpus[0]["free_memory_gb"] = free / 2**30
        b = a.to("cuda")
        value = float((b @ b.T).trace())
        torch.cuda.synchronize()
        if value != 506.0:
            raise RuntimeError(f"torch matmul on cuda gave {value}, expected 506")
        details["cuda_ok"] = True
    except Exception as exc:  # recorded, not raised: CUDA is optional under runtime.device auto
        details["cuda_error"] = f"{type(exc).__name__}: {exc}"


def probe_compiled_deps(args: dict, details: Details) -> None:
    """Import each of ``args["modules"]``; details map each to its version (None: the import failed)."""
    failures = []
    for name in args["modules"]:
        print("probe: importing", name, file=sys.stderr, flush=True)  # names the culprit if the import crashes
        try:
            module = importlib.import_module(name)
            details[name] = getattr(module, "__version__", "unknown")
        except Exception as exc:
            details[name] = None
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    if failures:
        raise ImportError("; ".join(failures))


def probe_flash_attn(args: dict, details: Details) -> None:
    """Import flash_attn; on CUDA in half precision also compare its kernel with torch's attention."""
    if importlib.util.find_spec("flash_attn") is None:
        raise ModuleNotFoundError("flash_attn is not installed")
    import flash_attn

    details["flash_attn"] = getattr(flash_attn, "__version__", "unknown")
    details["kernel_checked"] = False
    if args["device"] != "cuda" or args["dtype"] not in ("float16", "bfloat16"):
        return  # the kernel exists only for CUDA half precision; importing it is all that can be checked here
    import torch
    from flash_attn import flash_attn_func

    dtype = getattr(torch, args["dtype"])
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 128, 4, 64, generator=generator).to("cuda", dtype) for _ in range(3))  # (B, S, H, D)
    out = flash_attn_func(q, k, v).float()
    ref = torch.nn.functional.scaled_dot_product_attention(*(t.float().transpose(1, 2) for t in (q, k, v)))
    ref = ref.transpose(1, 2)
    details["max_abs_error"] = float((out - ref).abs().max())
    details["reference_max_abs"] = float(ref.abs().max())
    details["kernel_checked"] = True
    if details["max_abs_error"] > args["tolerance"] * max(1.0, details["reference_max_abs"]):
        raise RuntimeError(f"flash_attn_func differs from scaled_dot_product_attention by "
                           f"{details['max_abs_error']:.3g} (tolerance {args['tolerance']:g})")


def probe_transformers(args: dict, details: Details) -> None:
    """A tiny CLIP vision model with each of ``args["attentions"]`` ("eager" first: the reference), compared."""
    # As model stages do (trajbench.runtime.hide_modules): a broken extension must not break every model.
    for name in args.get("hidden", ()):
        sys.modules[name] = None
    import torch
    import transformers
    from transformers import AutoModel, CLIPVisionConfig

    details["transformers"] = transformers.__version__
    device, dtype = args["device"], getattr(torch, args["dtype"])
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    results = details["attention"] = {}
    outputs = {}
    for name in args["attentions"]:
        try:
            torch.manual_seed(0)  # the same weights for every implementation
            model = AutoModel.from_config(config, attn_implementation=name).to(device=device, dtype=dtype).eval()
            with torch.no_grad():
                outputs[name] = model(pixel_values=pixels).last_hidden_state.float()
            results[name] = {"ok": True}
        except Exception as exc:
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    if "eager" not in outputs:
        raise RuntimeError("tiny CLIP vision model failed with eager attention: " + results["eager"]["error"])
    ref = outputs["eager"]
    scale = max(1.0, float(ref.abs().max()))
    for name, out in outputs.items():
        error = float((out - ref).abs().max())
        results[name]["max_abs_diff_vs_eager"] = error
        if error > args["tolerance"] * scale:
            results[name] = {"ok": False, "max_abs_diff_vs_eager": error,
                             "error": f"output differs from eager by {error:.3g} (tolerance {args['tolerance']:g})"}


PROBES: dict[str, Callable[[dict, Details], None]] = {
    "python": probe_python,
    "torch": probe_torch,
    "compiled_deps": probe_compiled_deps,
    "flash_attn": probe_flash_attn,
    "transformers": probe_transformers,
}


def main(argv: list[str]) -> None:
    """Run probe ``argv[0]`` with the JSON arguments ``argv[1]``; print its details on a MARKER line, always."""
    name, args = argv[0], json.loads(argv[1])
    details: Details = {}
    try:
        PROBES[name](args, details)
    finally:
        sys.stdout.write("\n" + MARKER + " " + json.dumps(details) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
