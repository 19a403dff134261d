"""The contract between the engine's training and scoring processes and whoever starts them (the app).

Torch-free and Qt-free: the window imports it without loading torch, and the engine's command line
imports it too, so every name, number and word that crosses the process boundary is written once, here:
exit codes, the files of a run folder, the training events and their JSON form, the loss keys, the run
status, the default learning rate, the iterations rule and the tier rules (which tier ``auto`` trains, what
the ``heads`` tier does not apply).
"""

from __future__ import annotations

import argparse
import json
import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from enum import IntEnum, StrEnum
from typing import Any, ClassVar


class ExitCode(IntEnum):
    """How ``python -m maskrcnn_core …`` ends."""

    OK = 0
    FAILED = 1  # the work itself failed (a crash, out of memory, a diverging loss)
    BAD_INPUT = 2  # a flag, file or dataset the user gave is wrong; the message says which
    CANCELLED = 3  # stopped on request (SIGTERM / SIGINT); the last checkpoint is written


# The files of a run folder (``--out RUN``).
LAST_CHECKPOINT = "checkpoint_last.pt"  # resumable: model, optimizer, scheduler, iteration
FINAL_MODEL = "model_final.pt"  # the trained model, a plain checkpoint
METRICS_LOG = "metrics.jsonl"  # every training event, one JSON object a line


class RunStatus(StrEnum):
    """Where a training run stands. One word per state, on both sides of the process boundary."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The training losses, as ``MaskRCNN.get_loss`` returns them and as progress events carry them.
LOSS_KEYS: tuple[str, ...] = (
    "rpn_cls_loss",
    "rpn_reg_loss",
    "roi_cls_loss",
    "roi_reg_loss",
    "mask_loss",
    "total_loss",
)

REFERENCE_BATCH = 16  # the batch that the reference learning rate is for
REFERENCE_LR = 0.02  # torchvision's and Detectron's Mask R-CNN recipe at batch 16


def default_lr(global_batch: int) -> float:
    """The learning rate for a global batch (all processes together): the linear scaling rule."""
    if global_batch < 1:
        raise ValueError(f"the global batch must be at least 1, got {global_batch}")
    return REFERENCE_LR * global_batch / REFERENCE_BATCH


def iterations_for_epochs(epochs: float, num_images: int, global_batch: int) -> int:
    """Optimizer steps that pass over ``num_images`` ``epochs`` times (at least one)."""
    if global_batch < 1:
        raise ValueError(f"the global batch must be at least 1, got {global_batch}")
    return max(1, math.ceil(epochs * num_images / global_batch))


def iterations_of_run(
    iterations: int | None, epochs: float | None, num_images: int, global_batch: int
) -> int:
    """The length of a run given as ``iterations`` (which wins) or as ``epochs``."""
    if iterations is not None:
        return iterations
    if epochs is None:
        raise ValueError("give iterations or epochs")
    return iterations_for_epochs(epochs, num_images, global_batch)


# --------------------------------------------------------------------------------- training events


class ProtocolError(ValueError):
    """A line from the training process that is not a training event; the message says what is wrong."""


class EventType(StrEnum):
    """The ``"event"`` word of each training event's JSON line."""

    START = "start"
    CACHING = "caching"
    PROGRESS = "progress"
    EVALUATION = "evaluation"
    CHECKPOINT = "checkpoint"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    ERROR = "error"


class _Event:
    """The JSON form every training event shares: ``{"event": <type>, <fields>...}`` on one line."""

    type: ClassVar[EventType]

    def to_dict(self) -> dict[str, Any]:
        return {"event": str(self.type), **asdict(self)}  # type: ignore[call-overload]

    def to_json(self) -> str:
        """One line of JSON (no newline inside, none at the end)."""
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class StartEvent(_Event):
    """The run begins (or resumes at ``start_iteration``)."""

    type: ClassVar[EventType] = EventType.START
    start_iteration: int
    iterations: int
    global_batch: int
    base_lr: float
    world_size: int
    num_train_images: int
    config: dict[str, Any] = field(default_factory=dict)  # the trainer's full recipe, for the record
    tier: str = "full"  # the tier this run trains (a key of TIERS other than "auto")
    notice: str = ""  # one line on what the run does not do of what it was asked, and why ("": nothing)


@dataclass(frozen=True)
class CachingEvent(_Event):
    """The ``heads`` tier computed the frozen backbone + FPN features of ``done`` of ``total`` training
    images (flipped copies included), before its first step; ``on_disk`` when they did not fit in memory."""

    type: ClassVar[EventType] = EventType.CACHING
    done: int
    total: int
    elapsed_s: float
    on_disk: bool = False


@dataclass(frozen=True)
class ProgressEvent(_Event):
    """One optimizer step done; ``losses`` are keyed by :data:`LOSS_KEYS`, averaged over the processes."""

    type: ClassVar[EventType] = EventType.PROGRESS
    iteration: int
    iterations: int
    epoch: float
    losses: dict[str, float]
    lr: float
    images_per_s: float
    eta_s: float | None
    elapsed_s: float


@dataclass(frozen=True)
class EvaluationEvent(_Event):
    """Validation scores at ``iteration`` (the evaluator's dict: ``{"segm": {"ap": …}, "bbox": …}``)."""

    type: ClassVar[EventType] = EventType.EVALUATION
    iteration: int
    metrics: dict[str, Any]


@dataclass(frozen=True)
class CheckpointEvent(_Event):
    """``path`` (the run's :data:`LAST_CHECKPOINT`) now holds the state at ``iteration``."""

    type: ClassVar[EventType] = EventType.CHECKPOINT
    iteration: int
    path: str


@dataclass(frozen=True)
class FinishedEvent(_Event):
    """The run is complete: ``model`` is its :data:`FINAL_MODEL`."""

    type: ClassVar[EventType] = EventType.FINISHED
    iteration: int
    model: str
    losses: dict[str, float]
    validation: dict[str, Any] | None = None


@dataclass(frozen=True)
class CancelledEvent(_Event):
    """Stopped on request at ``iteration``; ``checkpoint`` resumes it."""

    type: ClassVar[EventType] = EventType.CANCELLED
    iteration: int
    checkpoint: str


@dataclass(frozen=True)
class ErrorEvent(_Event):
    """The run failed; ``message`` says why in one line (the process then exits with ``FAILED``)."""

    type: ClassVar[EventType] = EventType.ERROR
    message: str


TrainingEvent = (
    StartEvent
    | CachingEvent
    | ProgressEvent
    | EvaluationEvent
    | CheckpointEvent
    | FinishedEvent
    | CancelledEvent
    | ErrorEvent
)
_EVENT_CLASSES: dict[EventType, type] = {
    cls.type: cls
    for cls in (
        StartEvent,
        CachingEvent,
        ProgressEvent,
        EvaluationEvent,
        CheckpointEvent,
        FinishedEvent,
        CancelledEvent,
        ErrorEvent,
    )
}


def parse_event(line: str | bytes) -> TrainingEvent:
    """The training event on one JSON line; :class:`ProtocolError` (one line, no traceback needed) when
    the line is not one: not JSON, not an object, an unknown ``event``, a missing or mistyped field.
    Fields the event does not know are ignored, so a newer engine may add some."""
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    text = text.strip()
    shown = text if len(text) <= 80 else text[:77] + "..."
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError(f"not a JSON line: {shown!r}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"not a JSON object: {shown!r}")
    kind = obj.get("event")
    if kind not in _EVENT_VALUES:
        raise ProtocolError(f"unknown training event {kind!r} in {shown!r}")
    cls = _EVENT_CLASSES[EventType(kind)]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in obj:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ProtocolError(f"a {kind} event without {f.name!r}: {shown!r}")
            continue
        value = obj[f.name]
        if not _is_a(value, hints[f.name]):
            raise ProtocolError(f"a {kind} event whose {f.name!r} is {value!r}: {shown!r}")
        values[f.name] = value
    return cls(**values)


_EVENT_VALUES = frozenset(str(t) for t in EventType)


def _is_a(value: Any, hint: Any) -> bool:
    """Whether a decoded JSON value fits a field's annotation (ints count as floats, bools as neither)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is dict or hint is dict:
        args = typing.get_args(hint)
        return isinstance(value, dict) and (not args or all(_is_a(v, args[1]) for v in value.values()))
    raise TypeError(f"no JSON check for {hint!r}")


# ----------------------------------------------------------------------------------- the train command

ENGINE_MODULE = "maskrcnn_core"  # python -m ENGINE_MODULE ...
# Architectures of a new model (``--backbone``), each the name of a factory in maskrcnn_core.model.factories.
BACKBONES: dict[str, str] = {
    "resnet18": "resnet18_fpn",
    "resnet34": "resnet34_fpn",
    "resnet50": "resnet50_fpn",
    "resnet50-v2": "resnet50_fpn_v2",
    "resnet101": "resnet101_fpn",
    "mobilenet_v2": "mobilenet_v2_fpn",
}
DEVICES = ("auto", "cpu", "cuda")
TIERS = ("auto", "heads", "full")  # what a fine-tune trains; see :func:`resolve_tier`
#: below this many training images ``auto`` picks the ``heads`` tier even on a GPU: with few examples,
#: training only the heads on a frozen backbone learns new classes better and keeps the old ones
#: (Wang et al. 2020, "Frustratingly Simple Few-Shot Object Detection")
HEADS_TIER_MAX_IMAGES = 100
#: the scale-jitter range of the ``full`` tier when a run does not give one (``--scale-min``/``--scale-max``)
DEFAULT_SCALE_RANGE = (0.8, 1.25)
BYTES_PER_MB = 1 << 20  # ``--feature-cache-memory-mb`` counts mebibytes
PROGRESS_MODES = ("bar", "jsonl", "none")  # a bar on stderr, JSON lines on stdout (the app), nothing


@dataclass(frozen=True)
class TrainRequest:
    """The options of ``python -m maskrcnn_core train``: what the app asks for and what the CLI parses.

    Paths are strings (the request is also kept in the project's run record as JSON). Exactly one of
    ``iterations`` and ``epochs`` gives the length; ``None`` elsewhere means the engine's default
    (``lr``: :func:`default_lr`; sizes and head widths: the model's).
    """

    train_json: str
    images: str
    out: str
    iterations: int | None = None
    epochs: float | None = None
    val_json: str | None = None
    val_images: str | None = None  # None: ``images``
    weights: str | None = None  # start from this checkpoint, or "coco" / "coco-v2"
    backbone: str = "resnet50"  # a key of BACKBONES, for a new model (without ``weights``)
    batch_size: int = 2  # images per step and process
    lr: float | None = None
    min_size: int | None = None
    max_size: int | None = None
    trainable_backbone_layers: int | None = None
    fpn_channels: int | None = None
    hidden_dim: int | None = None
    mask_hidden_channels: int | None = None
    anchor_sizes: tuple[int, ...] | None = None
    pretrained_backbone: bool = True
    checkpoint_every: int = 500
    eval_every: int | None = None
    seed: int = 0
    hflip: float = 0.5
    scale_min: float = DEFAULT_SCALE_RANGE[0]
    scale_max: float = DEFAULT_SCALE_RANGE[1]
    scale_jitter: bool = True
    mixed_precision: bool = True
    device: str = "auto"
    num_threads: int | None = None
    progress: str = "bar"
    resume: bool = False
    name: str | None = None  # the model's name in its checkpoint (None: the run folder's name)
    tier: str = "auto"  # a key of TIERS: "heads" (frozen backbone + FPN, cached features), "full" or "auto"
    #: the heads tier's features kept in memory up to this many MiB, then in the run folder (0: always in
    #: the run folder; None: half the memory the system has available)
    feature_cache_memory_mb: float | None = None

    def __post_init__(self) -> None:
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError("give either iterations or epochs")
        for name, allowed in (
            ("backbone", BACKBONES),
            ("device", DEVICES),
            ("progress", PROGRESS_MODES),
            ("tier", TIERS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if self.anchor_sizes is not None:
            object.__setattr__(self, "anchor_sizes", tuple(int(s) for s in self.anchor_sizes))
        budget = self.feature_cache_memory_mb
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 <= budget < math.inf
        ):
            raise ValueError(
                f"--feature-cache-memory-mb takes a number of megabytes, 0 or more (0: always on disk), "
                f"got {budget!r}"
            )
        if self.tier == "heads":
            ignored = heads_tier_ignores(self.trainable_backbone_layers, self.scale_range)
            if ignored:
                raise ValueError(
                    f"--tier heads does not apply {'; '.join(ignored)}: leave it out, or use --tier full"
                )

    @property
    def scale_range(self) -> tuple[float, float] | None:
        """The scale-jitter range the request asks for (``None``: none, ``--no-scale-jitter``)."""
        return (self.scale_min, self.scale_max) if self.scale_jitter else None

    def total_iterations(self, num_train_images: int, world_size: int = 1) -> int:
        """Optimizer steps of the run on ``num_train_images`` images with ``world_size`` processes."""
        global_batch = self.batch_size * world_size
        return iterations_of_run(self.iterations, self.epochs, num_train_images, global_batch)

    def resumed(self) -> TrainRequest:
        """The same run, continued from its last checkpoint."""
        return replace(self, resume=True)

    def to_argv(self) -> list[str]:
        """``train`` and its flags (the options that differ from the defaults, and the required ones)."""
        argv = ["train"]
        for f in fields(self):
            value, flag = getattr(self, f.name), _flag(f.name)
            if f.name in _SWITCHES:
                if value is not f.default:  # a "--no-..." flag when off by default is on, and vice versa
                    argv.append(_SWITCHES[f.name])
            elif value is not None and (f.default is MISSING or value != f.default):
                text = ",".join(str(s) for s in value) if f.name == "anchor_sizes" else str(value)
                argv += [flag, text]
        return argv

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (for the run record); :meth:`from_dict` reads it back."""
        plain = asdict(self)
        if self.anchor_sizes is not None:
            plain["anchor_sizes"] = list(self.anchor_sizes)
        return plain

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainRequest:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown train options: {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainRequest:
        """The request in the CLI's parsed ``train`` arguments (the parser in maskrcnn_core.cli)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in _SWITCHES:
                on = bool(getattr(args, _SWITCHES[f.name].removeprefix("--").replace("-", "_")))
                values[f.name] = (not on) if f.default is True else on
            elif f.name == "feature_cache_memory_mb" and args.feature_cache_memory_mb is not None:
                values[f.name] = _megabytes(args.feature_cache_memory_mb)
            elif f.name == "anchor_sizes" and args.anchor_sizes:
                try:
                    values[f.name] = tuple(int(s) for s in str(args.anchor_sizes).split(","))
                except ValueError:
                    raise ValueError(
                        f"--anchor-sizes takes whole numbers separated by commas, got {args.anchor_sizes!r}"
                    ) from None
            else:
                values[f.name] = getattr(args, f.name)
        return cls(**values)


def resolve_tier(tier: str, *, on_gpu: bool, num_train_images: int) -> str:
    """The tier a run trains: ``tier`` itself unless it is ``"auto"``, which picks ``"heads"`` on a CPU or for
    fewer than :data:`HEADS_TIER_MAX_IMAGES` images and ``"full"`` on a GPU with a larger set."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {', '.join(TIERS)}; got {tier!r}")
    if tier != "auto":
        return tier
    return "full" if on_gpu and num_train_images >= HEADS_TIER_MAX_IMAGES else "heads"


def heads_tier_ignores(
    trainable_backbone_layers: int | None, scale_range: tuple[float, float] | None
) -> tuple[str, ...]:
    """What a run's options ask that the ``heads`` tier does not do, each as ``"option (why)"``; empty when
    nothing. Trainable backbone stages (other than 0): its backbone + FPN are frozen. A scale-jitter range
    other than :data:`DEFAULT_SCALE_RANGE`: its features are computed once, at the model's one inference
    size. The default range is not counted — nobody asked for it, it is the ``full`` tier's augmentation."""
    ignored = []
    if trainable_backbone_layers:
        ignored.append(
            f"--trainable-backbone-layers {trainable_backbone_layers} "
            "(its backbone + FPN are frozen, their features computed once)"
        )
    if scale_range is not None and tuple(float(s) for s in scale_range) != DEFAULT_SCALE_RANGE:
        ignored.append(
            f"the scale jitter {scale_range[0]:g}-{scale_range[1]:g} "
            "(its features are computed once, at the model's inference size)"
        )
    return tuple(ignored)


def _megabytes(text: object) -> float:
    """``--feature-cache-memory-mb``'s value as a number (the range is the request's to check)."""
    try:
        value = float(str(text))
    except ValueError:
        raise ValueError(
            f"--feature-cache-memory-mb takes a number of megabytes (0: always on disk), got {text!r}"
        ) from None
    return int(value) if value.is_integer() else value


# Boolean options: the flag that flips each from its default.
_SWITCHES = {
    "pretrained_backbone": "--no-pretrained-backbone",
    "scale_jitter": "--no-scale-jitter",
    "mixed_precision": "--no-mixed-precision",
    "resume": "--resume",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def engine_argv(command: list[str], *, nice: int = 0) -> list[str]:
    """``python`` arguments that run an engine command (``TrainRequest.to_argv()`` and the like) at a
    CPU priority ``nice`` lower than the caller's."""
    return ["-m", ENGINE_MODULE, "--nice", str(nice), *command]


@dataclass(frozen=True)
class EvaluateRequest:
    """``python -m maskrcnn_core evaluate --weights``: score a checkpoint on ground truth, as JSON."""

    gt: str
    weights: str
    images: str
    device: str | None = None  # None: cuda if available
    num_threads: int | None = None

    def to_argv(self) -> list[str]:
        argv = ["evaluate", "--gt", self.gt, "--weights", self.weights, "--images", self.images, "--json"]
        if self.device not in (None, "auto"):
            argv += ["--device", str(self.device)]
        if self.num_threads:
            argv += ["--num-threads", str(self.num_threads)]
        return argv
