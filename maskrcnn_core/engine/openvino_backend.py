"""The CPU execution backend: a model's dense sub-networks compiled with OpenVINO.

Backbone + FPN with the RPN head, the box head with its predictor and the mask head with its predictor are
plain tensor-to-tensor convolution stacks: each is traced with torch at a small size, converted with
``openvino.convert_model`` with dynamic batch (and dynamic height and width for the backbone), and
compiled for the CPU: the heads as converted, the backbone for the input shape it runs, one at a time.
Everything between them — anchors, proposals, NMS, RoIAlign, post-processing, mask pasting — stays in
torch, in ``MaskRCNN.detect``. Converting the whole detector is what fails for everyone (fixed sizes,
missing masks); these parts convert cleanly.

Converted networks are kept as OpenVINO IR in the user's cache folder, one entry per network and
weights (a digest of the module's structure and parameters, and of the OpenVINO and torch versions),
so a second start pays neither the trace nor the conversion. An entry is written to a temporary folder
and renamed into place; its weights file carries a digest that is checked on load, and an entry that
fails the check or does not load is rebuilt. A cache folder that cannot be written is skipped with a
warning. See docs/adr/0011-openvino-cpu-backend.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from maskrcnn_core.engine.allocator import return_freed_memory
from maskrcnn_core.model.mask_rcnn import MaskRCNN, eval_mode
from maskrcnn_core.model.subnetworks import TorchSubNetworks
from maskrcnn_core.model.weights import CheckpointError, load_weights_into, read_checkpoint
from maskrcnn_core.paths import user_cache_dir
from maskrcnn_core.system_memory import drop_file_pages

log = logging.getLogger(__name__)

#: bumped when what an entry holds changes, so old entries are not read (2: feature levels channels-last)
CACHE_FORMAT = 2
# the precisions of inference_options, in OpenVINO's words
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}
# the size the backbone is traced at: small, and every level still at least one pixel
_TRACE_SIZE = 256
# RoIs per mask-head inference: OpenVINO keeps the buffers of the largest batch it ran with dynamic shapes,
# and the mask head's at 100 RoIs are a few hundred megabytes; batches of this size take the same time
_MASK_HEAD_BATCH = 25
# a conversion in a child process that takes longer than this has gone wrong
_CHILD_TIMEOUT_S = 600


class ConversionError(RuntimeError):
    """A sub-network could not be converted or compiled; the message says which and why."""


def _import_openvino() -> Any:
    """openvino, or :class:`ConversionError` where it is missing or cannot load (a CPU it does not support
    fails in its import)."""
    try:
        import openvino
    except Exception as exc:  # ImportError, or an OSError/RuntimeError from its native libraries
        raise ConversionError(f"OpenVINO cannot load here: {_first_line(exc)}") from exc
    return openvino


def default_cache_dir() -> Path:
    return user_cache_dir() / "openvino"


class OpenVinoSubNetworks:
    """:class:`~maskrcnn_core.model.subnetworks.SubNetworks` run by OpenVINO on the CPU.

    Args:
        model: the model whose sub-networks to compile (in eval mode; it is not changed).
        precision: ``"fp32"`` or ``"bf16"`` (OpenVINO's inference precision hint).
        cache_dir: where converted networks are kept (default :func:`default_cache_dir`).
        use_cache: ``False`` converts every time and writes nothing.
        source: the checkpoint file ``model`` was loaded from, unchanged. With it, networks missing from
            the cache are converted in a child process: the converter holds Python's global lock for
            long stretches, and a window whose worker thread converts would stop drawing meanwhile.
        num_threads: CPU threads for OpenVINO; default torch's current number.

    Raises:
        ConversionError: when a network cannot be traced, converted or compiled.
    """

    def __init__(
        self,
        model: MaskRCNN,
        *,
        precision: str = "fp32",
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        num_threads: int | None = None,
        source: str | os.PathLike | None = None,
    ) -> None:
        ov = _import_openvino()
        self._ov = ov

        if precision not in _OV_PRECISION:
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.model = model
        self.precision = precision
        self.source = source
        #: True while torch's copy of the weights these networks run is dropped (see drop_torch_weights)
        self.torch_weights_dropped = False
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._cache = _IRCache(folder if use_cache else None)
        self._core = ov.Core()
        if "CPU" not in self._core.available_devices:
            raise ConversionError("OpenVINO finds no CPU it can run on here")
        self._config = {
            "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
            "INFERENCE_NUM_THREADS": int(num_threads or torch.get_num_threads()),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self._lock = threading.Lock()
        with torch.no_grad(), eval_mode(model):  # tracing must see inference behaviour
            self.level_names = list(model._features(torch.zeros(1, 3, _TRACE_SIZE, _TRACE_SIZE)).keys())
            networks = _networks(model)
            keys = _cache_keys(model)
            self._keys = keys
            missing = [kind for kind, key in keys.items() if not self._cache.has(kind, key)]
            if missing and source is not None and self._cache.folder is not None:
                _convert_in_child_process(source, self._cache.folder)
            #: the cache's weights files the compiled networks map, read-only (see _prepare_weights)
            self._weight_files: list[Path] = []
            backbone, box, mask = (self._read(kind, keys[kind], *networks[kind]) for kind in networks)
            self._box, self._mask = self._compile("box_head", box), self._compile("mask_head", mask)
            #: the backbone's network, with dynamic height and width, compiled for one input shape at a time
            self._backbone_ir = backbone
            self._backbone: Any = None
            self._backbone_shape: tuple[int, ...] | None = None
            with self._lock:  # compiled at the tracing size first: what does not compile fails here
                self._backbone_for((1, 3, _TRACE_SIZE, _TRACE_SIZE))
            self._prepare_weights()

    # ------------------------------------------------------------------ SubNetworks

    def features_and_objectness(
        self, images: Tensor
    ) -> tuple[OrderedDict[str, Tensor], list[Tensor], list[Tensor]]:
        array = _as_input(images)
        with self._lock:
            shape_changed = array.shape != self._backbone_shape
            outputs = self._run(self._backbone_for(array.shape), array)
        if shape_changed:  # what compiling and the first inference at this shape freed goes back too
            return_freed_memory()
        # and the weights files' pages read since the last image go: the new shape's compile read the
        # backbone's, a head's new batch size (a new kernel) its own
        drop_file_pages(self._weight_files)
        n = len(self.level_names)
        # the network hands the levels over channels-last (see _BackboneAndRPNHead): (B, C, H, W) views
        levels = [level.permute(0, 3, 1, 2) for level in outputs[:n]]
        features = OrderedDict(zip(self.level_names, levels, strict=True))
        return features, outputs[n : 2 * n], outputs[2 * n :]

    def box_outputs(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        if len(pooled) == 0:  # OpenVINO does not take an empty batch
            cls_logits, deltas = _no_rows(self._box, pooled)
            return cls_logits, deltas
        cls_logits, deltas = self._infer(self._box, pooled)
        return cls_logits, deltas

    def mask_logits(self, pooled: Tensor) -> Tensor:
        if len(pooled) == 0:
            return _no_rows(self._mask, pooled)[0]
        parts = [self._infer(self._mask, part)[0] for part in pooled.split(_MASK_HEAD_BATCH)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    # ------------------------------------------------------------------ torch's copy of the weights

    def drop_torch_weights(self) -> None:
        """Free torch's copy of the weights these networks run: the model's :func:`compiled_modules` go to
        the meta device, and the model detects through these networks only until
        :meth:`restore_torch_weights`. Needs ``source``, the checkpoint they are read back from."""
        if self.source is None:
            raise ValueError("only a model loaded from a checkpoint file can drop its torch weights")
        for module in compiled_modules(self.model):
            module.to("meta")
        self.torch_weights_dropped = True
        return_freed_memory()

    def restore_torch_weights(self) -> None:
        """Read torch's copy of the weights back from ``source``, checked against the networks compiled
        from them; no-op unless dropped.

        Raises:
            CheckpointError: the checkpoint no longer holds those weights (changed on disk, unreadable);
                the weights stay dropped and these networks keep running.
        """
        if not self.torch_weights_dropped:
            return
        assert self.source is not None  # drop_torch_weights needs it
        modules = compiled_modules(self.model)
        try:
            checkpoint = read_checkpoint(self.source)
            for module in modules:
                module.to_empty(device="cpu")
            load_weights_into(self.model, checkpoint)
            changed = [kind for kind, key in _cache_keys(self.model).items() if key != self._keys[kind]]
            if changed:
                raise CheckpointError(
                    f"{self.source} no longer holds the weights this model was loaded with "
                    f"({', '.join(changed)} differ): load it again"
                )
        except Exception:
            for module in modules:
                module.to("meta")
            raise
        self.torch_weights_dropped = False

    # ------------------------------------------------------------------ internals

    def _prepare_weights(self) -> None:
        """Run each network once on a small input: OpenVINO lays each weight out for its kernels on the
        first inference and keeps that copy, after which the mapped weights file is no longer read."""
        config = self.model.config
        examples = (
            (self._backbone, (1, 3, _TRACE_SIZE, _TRACE_SIZE)),
            (self._box, (config.rpn_post_nms_top_n_test, config.feat_channels, *config.pool_size)),
            (self._mask, (_MASK_HEAD_BATCH, config.feat_channels, *config.mask_pool_size)),
        )
        for compiled, shape in examples:
            self._infer(compiled, torch.zeros(shape))
        # the warm-up's buffers and freed memory go back to the system, and the pages of the weights files
        # the networks map (read-only) too: OpenVINO computes from its own copy laid out for its kernels,
        # and reads a file page again only for a new kernel, when the page comes back from the file by itself
        with self._lock:
            for compiled, _ in examples:
                compiled.release_memory()
        return_freed_memory()
        drop_file_pages(self._weight_files)

    def _infer(self, compiled: Any, tensor: Tensor) -> list[Tensor]:
        """``compiled``'s outputs for ``tensor``, as tensors of our own."""
        array = _as_input(tensor)
        with self._lock:
            return self._run(compiled, array)

    def _run(self, compiled: Any, array: np.ndarray) -> list[Tensor]:
        """Infer under the lock: the request's own output tensors are read in place and copied before the
        lock is let go, since its next inference overwrites them.

        The input is read in place too, and a request holds the input it ran until it runs the next: a
        head would keep its last batch of pooled features (the box head's, 1,000 RoIs of 256x7x7) from one
        image to the next. A head's request gets a one-row input instead once done. (The input goes in as
        an ``ov.Tensor``: given an array, OpenVINO's Python request keeps one more reference to it.) The
        backbone's static input cannot be swapped for a smaller one; it holds the padded image batch."""
        request = compiled.infer_request
        tensor = self._ov.Tensor(array, shared_memory=True)
        result = request.infer(tensor, share_inputs=True, share_outputs=True)
        outputs = [torch.from_numpy(np.array(result[output], copy=True)) for output in compiled.outputs]
        if compiled.one_row is not None:
            request.set_input_tensor(compiled.one_row)
        return outputs

    def _backbone_for(self, shape: tuple[int, ...]) -> Any:
        """The backbone compiled for input ``shape``; called under the lock.

        Compiled for one static shape, OpenVINO plans the network's buffers for that shape alone and keeps
        them from image to image; with dynamic shapes it sized them for the largest input it had run, and
        had to give them back after each image to keep the process's peak down, paying page faults on the
        next (docs/adr/0011). A new shape replaces the previous one's network: the old one goes first, so
        the two never hold memory together."""
        if shape != self._backbone_shape:
            self._backbone = self._backbone_shape = None
            return_freed_memory()
            self._backbone = self._compile("backbone_rpn", self._backbone_ir, shape)
            self._backbone_shape = shape
        return self._backbone

    def _read(self, kind: str, key: str, module: nn.Module, example: Tensor, shape: list[int]) -> Any:
        """The network of ``kind`` as OpenVINO IR: from the cache, or converted (and cached) now."""
        ir = self._cache.load(kind, key, self._core)
        if ir is None:
            converted = _convert(module, example, shape)
            self._cache.store(kind, key, converted)
            # read back: a network read from its file maps its weights instead of holding a copy
            ir = self._cache.load(kind, key, self._core) or converted
        entry = self._cache.entry(kind, key)
        if entry is not None and entry.is_dir():
            self._weight_files.append(entry / "model.bin")
        return ir

    def _compile(self, kind: str, ir: Any, shape: tuple[int, ...] | None = None) -> Any:
        """``ir`` compiled for the CPU; with ``shape``, for that input shape only (``ir`` is reshaped)."""
        try:
            if shape is not None:
                ir.reshape(list(shape))
            compiled = self._core.compile_model(ir, "CPU", self._config)
        except Exception as exc:  # OpenVINO raises plain RuntimeErrors with long messages
            raise ConversionError(
                f"OpenVINO could not compile the {kind.replace('_', ' ')}: {_first_line(exc)}"
            ) from exc
        compiled.infer_request = compiled.create_infer_request()
        # a network with a dynamic batch (a head): the input its request holds between inferences (see _run)
        batch, *rest = compiled.inputs[0].get_partial_shape()
        compiled.one_row = None
        if batch.is_dynamic:
            compiled.one_row = self._ov.Tensor(np.zeros((1, *(dim.get_length() for dim in rest)), np.float32))
        return compiled


def _as_input(tensor: Tensor) -> np.ndarray:
    """A network's input as OpenVINO reads it in place: float32, contiguous, on the CPU."""
    return tensor.detach().float().contiguous().cpu().numpy()


def compiled_modules(model: MaskRCNN) -> list[nn.Module]:
    """The model's modules whose work the compiled networks do (:func:`_networks`): all of its weights."""
    return [module for modules in _weighted_modules(model).values() for module in modules]


def _weighted_modules(model: MaskRCNN) -> dict[str, list[nn.Module]]:
    """The model's modules whose weights each network of :func:`_networks` runs, by kind."""
    heads = model.roi_heads
    return {
        "backbone_rpn": [model.backbone, model.rpn.head],
        "box_head": [heads.box_head, heads.box_predictor],
        "mask_head": [heads.mask_head, heads.mask_predictor],
    }


def _no_rows(compiled: Any, pooled: Tensor) -> list[Tensor]:
    """A network's outputs for an empty batch: zero rows of each output's shape."""
    return [
        pooled.new_zeros((0, *(dim.get_length() for dim in output.get_partial_shape()[1:])))
        for output in compiled.outputs
    ]


def _networks(model: MaskRCNN) -> dict[str, tuple[nn.Module, Tensor, list[int]]]:
    """Each sub-network by kind: the module to convert, an input to trace it with, its input shape (-1:
    dynamic)."""
    channels = model.config.feat_channels
    box_pool, mask_pool = tuple(model.config.pool_size), tuple(model.config.mask_pool_size)
    return {
        "backbone_rpn": (
            _BackboneAndRPNHead(model),
            torch.zeros(1, 3, _TRACE_SIZE, _TRACE_SIZE),
            [-1, 3, -1, -1],
        ),
        "box_head": (_BoxHead(model), torch.zeros(2, channels, *box_pool), [-1, channels, *box_pool]),
        "mask_head": (_MaskHead(model), torch.zeros(2, channels, *mask_pool), [-1, channels, *mask_pool]),
    }


def _convert_in_child_process(source: str | os.PathLike, cache_dir: Path) -> None:
    """Convert the networks of the checkpoint ``source`` into ``cache_dir`` in another Python process.

    Failing is not an error here: the caller then converts in this process, and that says what is wrong.
    """
    command = [sys.executable, "-m", __name__, os.fspath(source), os.fspath(cache_dir)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("converting in a child process failed: %s", exc)
        return
    if done.returncode != 0:
        log.debug("converting in a child process failed: %s", done.stderr.strip()[-500:])


class _BackboneAndRPNHead(nn.Module):
    """Image batch → the feature levels, then the RPN head's objectness and deltas per level, flat.

    The levels leave channels-last, ``(B, H, W, C)``: RoI pooling on such maps gathers whole channel rows
    (maskrcnn_core.model.pooling), several times faster than torchvision's kernel, and OpenVINO lays its
    result out either way for the same cost."""

    def __init__(self, model: MaskRCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        features = list(self.model._features(images).values())
        objectness, deltas = self.model.rpn.head(features)
        return (*(level.permute(0, 2, 3, 1) for level in features), *objectness, *deltas)


class _BoxHead(nn.Module):
    def __init__(self, model: MaskRCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        return TorchSubNetworks(self.model).box_outputs(pooled)


class _MaskHead(nn.Module):
    def __init__(self, model: MaskRCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, pooled: Tensor) -> Tensor:
        return TorchSubNetworks(self.model).mask_logits(pooled)


def _convert(module: nn.Module, example: Tensor, shape: list[int]) -> Any:
    """Trace ``module`` at ``example``'s size and convert it with dynamic dimensions ``-1`` in ``shape``."""
    import openvino as ov

    # the converter sets the root logger to ERROR and restores it only when it succeeds
    root = logging.getLogger()
    logger_state = (root.level, list(root.filters), list(root.handlers))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shapes: the dims are dynamic below
            traced = torch.jit.trace(module, example, check_trace=False)
            # share_weights=False: the converted network must not change when the model trains on
            return ov.convert_model(traced, input=[ov.PartialShape(shape)], share_weights=False)
    except Exception as exc:
        raise ConversionError(f"cannot convert {type(module).__name__}: {_first_line(exc)}") from exc
    finally:
        root.setLevel(logger_state[0])
        root.filters, root.handlers = logger_state[1], logger_state[2]


def _cache_keys(model: MaskRCNN) -> dict[str, str]:
    """Each network's cache key by kind (:func:`_digest`)."""
    return {kind: _digest(kind, modules) for kind, modules in _weighted_modules(model).items()}


def _digest(kind: str, weighted: list[nn.Module]) -> str:
    """What makes a converted network the same: its kind, the versions, and the structure and weights of
    the modules it runs (``weighted``). Those alone: each start hashes the model's weights once, not once
    per network."""
    import openvino as ov

    digest = hashlib.blake2b(digest_size=16)
    for part in (str(CACHE_FORMAT), kind, ov.__version__, torch.__version__):
        digest.update(part.encode())
    for index, module in enumerate(weighted):
        digest.update(f"{index}:{_structure(module)!r}".encode())
        for name, tensor in module.state_dict().items():
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{index}.{name}:{data.dtype}:{tuple(data.shape)}".encode())
            if data.dtype == torch.bfloat16:
                data = data.view(torch.int16)
            digest.update(data.numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def _structure(module: nn.Module) -> list[str]:
    return [
        f"{name}:{type(m).__module__}.{type(m).__qualname__}:{m.extra_repr()}"
        for name, m in module.named_modules()
    ]


class _IRCache:
    """Converted networks as OpenVINO IR files, one folder per network and digest."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def entry(self, kind: str, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{kind}-{key}"

    def has(self, kind: str, key: str) -> bool:
        entry = self.entry(kind, key)
        return entry is not None and entry.is_dir()

    def load(self, kind: str, key: str, core: Any) -> Any | None:
        entry = self.entry(kind, key)
        if entry is None or not entry.is_dir():
            return None
        try:
            manifest = json.loads((entry / "manifest.json").read_text())
            weights = entry / "model.bin"
            if manifest.get("format") != CACHE_FORMAT or manifest.get("bin_digest") != _file_digest(weights):
                raise ValueError("its weights file does not match its manifest")
            return core.read_model(str(entry / "model.xml"), str(weights))
        except Exception as exc:
            log.warning("rebuilding a damaged OpenVINO cache entry %s: %s", entry, _first_line(exc))
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def store(self, kind: str, key: str, ir: Any) -> None:
        import openvino as ov

        entry = self.entry(kind, key)
        if entry is None or self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=self.folder))
        except OSError as exc:
            log.warning(
                "not caching converted models: cannot write %s (%s)", self.folder, exc.strerror or exc
            )
            self.folder = None
            return
        try:
            ov.save_model(ir, str(staging / "model.xml"), compress_to_fp16=False)
            manifest = {
                "format": CACHE_FORMAT,
                "kind": kind,
                "bin_digest": _file_digest(staging / "model.bin"),
            }
            (staging / "manifest.json").write_text(json.dumps(manifest))
            try:
                os.replace(staging, entry)
            except OSError:  # another process stored the same entry first
                if not entry.is_dir():
                    raise
        except Exception as exc:
            log.warning("not caching the converted %s: %s", kind.replace("_", " "), _first_line(exc))
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    """The line of an error that says what is wrong. OpenVINO's messages open with the source file of the
    check that failed and end with the reason ("No conversion rule found for operations: aten::histc")."""
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip(" -")]
    telling = [line for line in lines if not line.startswith(("Check '", "FrontEnd API", "Summary"))]
    return (telling[-1] if telling else lines[0] if lines else type(exc).__name__)[:300]


def _main(argv: list[str]) -> int:
    """``python -m maskrcnn_core.engine.openvino_backend CHECKPOINT CACHE_DIR``: convert into the cache."""
    from maskrcnn_core.model.weights import load_model

    checkpoint, cache_dir = argv
    torch.set_num_threads(1)
    _convert_into_cache(load_model(checkpoint, device="cpu"), Path(cache_dir))
    return 0


def _convert_into_cache(model: MaskRCNN, cache_dir: Path) -> None:
    """Convert the networks of ``model`` that ``cache_dir`` lacks, and store them there. Nothing is compiled:
    the parent process compiles what it reads back."""
    _import_openvino()
    cache = _IRCache(cache_dir)
    with torch.no_grad(), eval_mode(model):  # tracing must see inference behaviour, as in OpenVinoSubNetworks
        networks = _networks(model)
        for kind, key in _cache_keys(model).items():
            if not cache.has(kind, key):
                cache.store(kind, key, _convert(*networks[kind]))


if __name__ == "__main__":
    # through the module's own name: run as __main__, this file would be a second copy of the module, with
    # classes of its own
    from maskrcnn_core.engine.openvino_backend import _main as main_of_the_module

    status = main_of_the_module(sys.argv[1:])
    # Out without the interpreter's teardown, which unloads torch and OpenVINO for another second or more
    # while the parent waits: every file written is closed, and the streams are flushed here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
