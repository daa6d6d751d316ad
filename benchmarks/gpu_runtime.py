"""GPU throughput of CenterNet-ResNet18 at 512x512 (decode included), as JSON: torch eager fp32 and AMP
(bf16, fp16 autocast) vs onnxruntime's CUDA execution provider (fp32 file, and the fp16 file from
`toolkit.export.precision.convert_fp16`) with IO binding vs its TensorRT execution provider in fp16.

Batches 1, 8 and 32; per engine and batch: median latency (ms) over `--runs` runs after `--warmup`, and
images/s. Goal: `tensorrt_fp16_b32_vs_eager_fp32_b32` (images/s) >= 3. Needs an NVIDIA GPU, a CUDA
build of torch and, for the onnxruntime engines, `onnxruntime-gpu` (`pip install 'toolkit[gpu]'`,
after uninstalling `onnxruntime`) with the CUDA/cuDNN (and TensorRT) libraries it was built for.
Without CUDA it prints a `skipped` report and exits with status 2. An engine that cannot run is
reported under `errors`; the providers each onnxruntime session really got are reported too (so a
TensorRT session that fell back to CUDA is never mistaken for TensorRT). Sized for ~5 minutes on one
GPU, most of it the TensorRT engine build (cached in `--trt-cache`).

    python benchmarks/gpu_runtime.py [--batches 1,8,32] [--runs 30] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
GOAL = {"tensorrt_fp16_b32_vs_eager_fp32_b32": 3.0}


def skipped(reason: str) -> None:
    print(f"gpu_runtime: {reason}; nothing measured", file=sys.stderr)
    print(json.dumps({"benchmark": "gpu_runtime", "skipped": reason}, indent=2))
    raise SystemExit(2)


def median_ms(fn: Callable[[], object], sync: Callable[[], None], runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


# -- torch -----------------------------------------------------------------------------------------
def eager_engine(model: torch.nn.Module, dtype: torch.dtype | None) -> Callable[[torch.Tensor], Any]:
    def run(x: torch.Tensor) -> Any:
        with torch.inference_mode():
            if dtype is None:
                return model.decode(model(x))
            with torch.autocast("cuda", dtype=dtype):
                return model.decode(model(x))

    return run


# -- onnxruntime -----------------------------------------------------------------------------------
def ort_session(path: Path, providers: list[Any]):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=providers)


def bound_engine(session) -> Callable[[torch.Tensor], Any]:  # type: ignore[no-untyped-def]
    """Run `session` on a CUDA torch tensor through IO binding: input and outputs stay on the GPU."""
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]

    def run(x: torch.Tensor) -> Any:
        binding = session.io_binding()
        binding.bind_input(input_name, "cuda", 0, np.float32, tuple(x.shape), x.data_ptr())
        for name in output_names:
            binding.bind_output(name, "cuda", 0)
        session.run_with_iobinding(binding)
        return binding

    return run


def top_scores(result: Any, names: list[str] | None = None) -> np.ndarray:
    """The first detection's score per image from a torch dict or an IO binding."""
    if isinstance(result, dict):
        return result["scores"][:, 0].float().cpu().numpy()
    outputs = dict(zip(names or [], result.copy_outputs_to_cpu(), strict=True))
    return np.asarray(outputs["scores"][:, 0], dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(REPO / "configs/centernet_resnet18.yaml"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", default=None, help="keep the ONNX files here (default: a temporary folder)")
    parser.add_argument(
        "--trt-cache", default=None, help="TensorRT engine cache folder (default: under --out)"
    )
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    if not torch.cuda.is_available():
        skipped(f"no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda})")

    from toolkit.build import build_model
    from toolkit.export.onnx_export import export_onnx
    from toolkit.export.precision import convert_fp16
    from toolkit.spec import load_spec

    started = time.perf_counter()
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    spec = load_spec(args.config, [f"model.input_size={args.size}"])
    model = build_model(spec).eval()
    errors: dict[str, str] = {}
    providers_used: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="toolkit-gpu-bench-") as temp:
        folder = Path(args.out or temp)
        folder.mkdir(parents=True, exist_ok=True)
        exported = export_onnx(model, folder / "centernet_fp32.onnx", spec=spec.model_dump(mode="json"))
        fp16_path = convert_fp16(exported.path, folder / "centernet_fp16.onnx")
        model = model.cuda()
        engines: dict[str, Callable[[torch.Tensor], Any]] = {
            "eager_fp32": eager_engine(model, None),
            "eager_amp_bf16": eager_engine(model, torch.bfloat16),
            "eager_amp_fp16": eager_engine(model, torch.float16),
        }
        output_names = exported.outputs
        try:
            import onnxruntime as ort

            available = ort.get_available_providers()
        except ImportError as exc:  # pragma: no cover - onnxruntime is a dependency
            available, errors["onnxruntime"] = [], str(exc)
        cuda = ("CUDAExecutionProvider", {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE"})
        cache = Path(args.trt_cache or folder / "trt_cache")
        cache.mkdir(parents=True, exist_ok=True)
        low, high = min(batches), max(batches)
        shape = f"3x{args.size}x{args.size}"
        tensorrt = (
            "TensorrtExecutionProvider",
            {
                "device_id": 0,
                "trt_fp16_enable": True,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(cache),
                "trt_max_workspace_size": 8 * 2**30,
                "trt_profile_min_shapes": f"images:{low}x{shape}",
                "trt_profile_opt_shapes": f"images:{high}x{shape}",
                "trt_profile_max_shapes": f"images:{high}x{shape}",
            },
        )
        sessions = {
            "ort_cuda_fp32": (exported.path, [cuda, "CPUExecutionProvider"], "CUDAExecutionProvider"),
            "ort_cuda_fp16": (fp16_path, [cuda, "CPUExecutionProvider"], "CUDAExecutionProvider"),
            "tensorrt_fp16": (
                exported.path,
                [tensorrt, cuda, "CPUExecutionProvider"],
                "TensorrtExecutionProvider",
            ),
        }
        build_seconds: dict[str, float] = {}
        for name, (path, providers, wanted) in sessions.items():
            if wanted not in available:
                errors[name] = (
                    f"{wanted} not available (onnxruntime providers: {available}); install onnxruntime-gpu "
                    "(pip install 'toolkit[gpu]' after uninstalling onnxruntime)"
                )
                continue
            try:
                begin = time.perf_counter()
                session = ort_session(path, providers)
                providers_used[name] = session.get_providers()
                if wanted not in providers_used[name]:
                    errors[name] = f"{wanted} requested, session fell back to {providers_used[name]}"
                    continue
                engine = bound_engine(session)
                for batch in sorted(batches):  # TensorRT builds its engine on the first run
                    engine(torch.rand(batch, 3, args.size, args.size, device="cuda"))
                torch.cuda.synchronize()
                build_seconds[name] = round(time.perf_counter() - begin, 1)
                engines[name] = engine
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()

        generator = torch.Generator(device="cuda").manual_seed(0)
        results: dict[str, dict[str, dict[str, float]]] = {}
        agreement: dict[str, float] = {}
        reference = None
        for batch in batches:
            x = torch.rand(batch, 3, args.size, args.size, device="cuda", generator=generator)
            torch.cuda.synchronize()  # onnxruntime reads x on its own stream
            for name, engine in engines.items():
                try:
                    ms = median_ms(
                        lambda engine=engine, x=x: engine(x), torch.cuda.synchronize, args.runs, args.warmup
                    )
                except Exception as exc:
                    errors[f"{name}_b{batch}"] = f"{type(exc).__name__}: {exc}"
                    continue
                results.setdefault(name, {})[f"b{batch}"] = {
                    "latency_ms": round(ms, 3),
                    "images_per_s": round(batch * 1000 / ms, 1),
                }
                if batch == max(batches):
                    scores = top_scores(engine(x), output_names)
                    if name == "eager_fp32":
                        reference = scores
                    elif reference is not None:
                        agreement[f"{name}_top_score_max_abs_diff"] = float(
                            f"{np.abs(scores - reference).max():.3g}"
                        )

    def images_per_s(name: str, batch: int) -> float | None:
        return results.get(name, {}).get(f"b{batch}", {}).get("images_per_s")

    ratios: dict[str, float | None] = {}
    for name in engines:
        if name == "eager_fp32":
            continue
        for batch in batches:
            value, base = images_per_s(name, batch), images_per_s("eager_fp32", batch)
            ratios[f"{name}_b{batch}_vs_eager_fp32_b{batch}"] = (
                round(value / base, 3) if value and base else None
            )
    goal_key = "tensorrt_fp16_b32_vs_eager_fp32_b32"
    import onnxruntime as ort

    report = {
        "benchmark": "gpu_runtime",
        "model": Path(args.config).name,
        "input": [args.size, args.size],
        "batches": batches,
        "runs": args.runs,
        "warmup": args.warmup,
        "decode_included": True,
        "device": torch.cuda.get_device_name(0),
        "results": results,
        "ratios": ratios,
        "goal": GOAL,
        "goal_met": (ratios.get(goal_key) or 0) >= GOAL[goal_key] if goal_key in ratios else None,
        "agreement_vs_eager_fp32": agreement,
        "session_setup_seconds": build_seconds,
        "export_seconds": round(exported.seconds, 2),
        "providers_used": providers_used,
        "errors": errors,
        "settings": {
            "cudnn_benchmark": True,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "io_binding": True,
            "tensorrt_profile": f"images:{min(batches)}..{max(batches)}x{shape}, opt {max(batches)}",
        },
        "versions": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "onnxruntime": ort.__version__,
        },
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
