"""onnxruntime: an exported file -> `OnnxModel`, with the same pre- and post-processing as torch's predict.

`choose_providers` picks the execution providers (TensorRT, CUDA, CPU: those installed, in that
order, or one asked for); `OnnxModel(path, builder=...)` reads the file's toolkit metadata, builds
its task and opens an `onnxruntime.InferenceSession`; `run` executes the graph on [0, 1] images and
`predict` gives the task's per-image results in original image pixels, exactly as
`ToolkitModel.predict` does for the torch model (letterbox to the input size, then
`task.results`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from toolkit.build import Builder
from toolkit.errors import ToolkitError, first_line
from toolkit.export.metadata import read_file_info
from toolkit.inference import PredictionPlan, image_list
from toolkit.predict_options import check_batch_size, check_score_threshold
from toolkit.spec.models import TileSpec
from toolkit.tiling import as_tiling

if TYPE_CHECKING:
    from toolkit.build import Builder

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROVIDER_ORDER = (TENSORRT, CUDA, CPU)
#: `--provider` value -> the providers it allows (the first one is the one asked for; the others
#: run what it cannot: TensorRT hands unsupported nodes to CUDA, CUDA to the CPU)
PROVIDER_CHOICES: dict[str, tuple[str, ...]] = {
    "auto": PROVIDER_ORDER,
    "tensorrt": PROVIDER_ORDER,
    "cuda": (CUDA, CPU),
    "cpu": (CPU,),
}
#: where TensorRT keeps the engines it builds (building one takes minutes; the cache makes it once)
DEFAULT_TRT_CACHE = Path("~/.cache/toolkit/trt")
GPU_HINT = "install the GPU runtime with pip install -e \".[gpu]\" and check the setup with 'toolkit env'"
#: ONNX tensor types of a graph input -> numpy / torch dtypes
_INPUT_TYPES = {
    "tensor(float)": (np.float32, torch.float32),
    "tensor(float16)": (np.float16, torch.float16),
}


def provider_name(provider: Any) -> str:
    """The name of a providers-list entry (a name, or a `(name, options)` tuple)."""
    return provider[0] if isinstance(provider, tuple) else str(provider)


def tensorrt_options(cache: str | Path | None = None, device_id: int = 0) -> dict[str, Any]:
    """TensorRT provider options: fp16 kernels allowed, engines cached in `cache` (created)."""
    folder = Path(cache if cache is not None else DEFAULT_TRT_CACHE).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "device_id": device_id,
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(folder),
    }


def choose_providers(
    requested: str | None = None, *, trt_cache: str | Path | None = None, device_id: int = 0
) -> list[Any]:
    """The providers list for `onnxruntime.InferenceSession`: of TensorRT, CUDA and CPU those that
    `onnxruntime.get_available_providers()` offers, in that order (TensorRT as a `(name, options)`
    tuple: fp16 and an engine cache; CUDA with its device id). `requested` ("auto"/None,
    "tensorrt", "cuda", "cpu") restricts the list; a requested provider that is absent is a
    ToolkitError naming what is available."""
    import onnxruntime

    key = (requested or "auto").lower()
    if key not in PROVIDER_CHOICES:
        raise ToolkitError(f"provider must be one of {', '.join(PROVIDER_CHOICES)}, got {requested!r}")
    available = onnxruntime.get_available_providers()
    wanted = PROVIDER_CHOICES[key]
    if key != "auto" and wanted[0] not in available:
        hint = f"; {GPU_HINT}" if key in ("cuda", "tensorrt") else ""
        raise ToolkitError(
            f"provider {key!r} ({wanted[0]}) is not available in onnxruntime {onnxruntime.__version__}: "
            f"it offers {', '.join(available) or 'nothing'}{hint}"
        )
    providers: list[Any] = []
    for name in wanted:
        if name not in available:
            continue
        if name == TENSORRT:
            providers.append((name, tensorrt_options(trt_cache, device_id)))
        elif name == CUDA and device_id:
            providers.append((name, {"device_id": device_id}))
        else:
            providers.append(name)
    return providers


class OnnxModel:
    """An exported toolkit file run by onnxruntime, with the torch model's `predict` interface.

    Attributes: `path`, `info` (the file's `ModelInfo`), `task`, `class_names`, `input_size`,
    `category_ids` (the dataset's original ids per label, or None), `session` and `providers`
    (those the session actually uses, best first).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        builder: Builder | None = None,
        provider: str | None = None,
        threads: int | None = None,
        device_id: int = 0,
        trt_cache: str | Path | None = None,
    ) -> None:
        import onnxruntime

        self.path = Path(path)
        self.info = read_file_info(self.path)
        self.task = (builder or Builder()).task(self.info.task, named_by=f"ONNX file {self.path}")
        self.class_names = list(self.info.class_names)
        self.input_size = self.info.input_size
        self.category_ids = self.info.category_ids
        if threads is not None and threads < 1:
            raise ToolkitError(f"threads must be >= 1, got {threads}")
        providers = choose_providers(provider, trt_cache=trt_cache, device_id=device_id)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: no per-node placement chatter
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), sess_options=options, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            names = ", ".join(map(provider_name, providers))
            reason = first_line(exc)
            raise ToolkitError(
                f"onnxruntime cannot open {str(self.path)!r} with {names}: {type(exc).__name__}: {reason}"
            ) from None
        self.providers: list[str] = list(self.session.get_providers())
        key = (provider or "auto").lower()
        asked = PROVIDER_CHOICES[key][0]
        if key != "auto" and asked not in self.providers:
            raise ToolkitError(
                f"onnxruntime offers {asked} but could not start it for {str(self.path)!r} (it runs on "
                f"{', '.join(self.providers)}): its CUDA / cuDNN / TensorRT libraries are missing or do not "
                f"match; {GPU_HINT}"
            )
        self.device_id = device_id
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        if first.type not in _INPUT_TYPES:
            raise ToolkitError(f"{str(self.path)!r}: input {first.name!r} is {first.type}; expected float")
        self._numpy_dtype, self._torch_dtype = _INPUT_TYPES[first.type]
        self.output_names = [output.name for output in self.session.get_outputs()]

    def __repr__(self) -> str:
        return (
            f"OnnxModel({str(self.path)!r}, task={self.task.name}, classes={len(self.class_names)}, "
            f"input_size={self.input_size}, providers={self.providers})"
        )

    @property
    def on_gpu(self) -> bool:
        """Whether the session runs on CUDA (directly or through TensorRT)."""
        return self.providers[0] in (TENSORRT, CUDA)

    @property
    def device(self) -> torch.device:
        """Where `predict` puts its batches: the session's CUDA device when torch can reach it."""
        if self.on_gpu and torch.cuda.is_available():
            return torch.device("cuda", self.device_id)
        return torch.device("cpu")

    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The graph's outputs by name for `images` float [N,3,H,W] in [0, 1].

        A CUDA tensor on a CUDA session is bound in place (`io_binding`, no copy of the input) and the
        outputs stay on the GPU; otherwise the input goes through numpy and the outputs come back on
        the CPU.
        """
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ToolkitError(f"OnnxModel.run expects images [N,3,H,W], got {shape}")
        images = images.detach()
        if images.is_cuda and self.on_gpu:
            return self._run_bound(images)
        batch = images.to("cpu", self._torch_dtype).contiguous().numpy()
        values = self.session.run(self.output_names, {self.input_name: batch})
        return {
            name: torch.from_numpy(np.asarray(value))
            for name, value in zip(self.output_names, values, strict=True)
        }

    def _run_bound(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        images = images.to(dtype=self._torch_dtype).contiguous()
        device_id = images.device.index if images.device.index is not None else torch.cuda.current_device()
        binding = self.session.io_binding()
        binding.bind_input(
            self.input_name,
            device_type="cuda",
            device_id=device_id,
            element_type=self._numpy_dtype,
            shape=tuple(images.shape),
            buffer_ptr=images.data_ptr(),
        )
        for name in self.output_names:
            binding.bind_output(name, device_type="cuda", device_id=device_id)
        torch.cuda.current_stream(images.device).synchronize()  # torch's writes land before ORT reads
        binding.synchronize_inputs()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        values = binding.get_outputs()
        return {
            name: _to_torch(value, images.device)
            for name, value in zip(self.output_names, values, strict=True)
        }

    def predict(
        self,
        images: Any,
        *,
        score_threshold: float = 0.0,
        batch_size: int = 16,
        tile: TileSpec | Mapping[str, Any] | int | None = None,
    ) -> list[dict[str, Any]]:
        """Per-image results (the task's format, original image pixels) for any images `predict` of
        the torch model takes, whole or tiled (`tile`): the same batches (`toolkit.inference.PredictionPlan`)
        and `task.results`, with the graph in place of the module."""
        if not self.info.decoded:
            raise ToolkitError(
                f"{str(self.path)!r} was exported with --no-decode: raw head outputs; export with decoding "
                "to predict"
            )
        check_batch_size(batch_size)
        score_threshold = check_score_threshold(score_threshold)
        tiling = as_tiling(tile)
        plan = PredictionPlan(
            image_list(images), self.input_size, batch_size=batch_size, tiling=tiling, task=self.task
        )
        for batch, meta in plan.batches():
            outputs = self.run(batch.to(self.device))
            plan.add(self.task.results(outputs, meta, self.input_size, self.class_names, score_threshold))
        return plan.results


def _to_torch(value: Any, device: torch.device) -> torch.Tensor:
    """An OrtValue as a torch tensor: shared through DLPack where the build allows, else through the host."""
    for share in (lambda: torch.from_dlpack(value), lambda: torch.from_dlpack(value._ortvalue.to_dlpack())):
        try:
            return share()
        except Exception:  # builds differ in which DLPack entry points they offer
            continue
    return torch.from_numpy(value.numpy()).to(device)
