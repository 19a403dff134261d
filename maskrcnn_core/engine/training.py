"""The fine-tuning loop: SGD with warm-up and step decay, checkpoints that resume exactly, DDP.

The recipe is the paper's and torchvision's: SGD, momentum 0.9, weight decay 1e-4, the protocol's
:func:`~maskrcnn_core.protocol.default_lr` for the global batch, linear warm-up, then x0.1 steps late in
the run; mixed precision on CUDA; gradient clipping.

:class:`Trainer` keeps the run's state in fields and runs the step; what happens around the steps is
hooks (in the spirit of detectron2's ``SimpleTrainer`` and ``HookBase``): :class:`ProgressHook` reports
each step, :class:`EvaluationHook` validates, :class:`CheckpointHook` writes the resumable checkpoint.
Everything a run reports goes to callbacks as the protocol's typed training events (the CLI prints them
as a bar or as JSON lines for the app, and logs them to the run's metrics file).

Exact resume: the data order is a pure function of (seed, iteration), augmentation and the model's
sampling draw from torch's RNG, whose state is checkpointed with model, optimizer, scheduler and
iteration — so on CPU a resumed run reproduces the loss curve of an uninterrupted one.

Tiers (:data:`~maskrcnn_core.protocol.TIERS`, ``auto`` resolved by
:func:`~maskrcnn_core.protocol.resolve_tier`): ``full`` trains the model's trainable backbone stages, the
FPN and the heads on augmented images; ``heads`` freezes the backbone + FPN, computes their features once
per training image and once for its mirror image before the first step (a
:class:`~maskrcnn_core.engine.feature_cache.FeatureCache`; no scale jitter), and trains the RPN, box and
mask heads on them — a step then costs the heads alone.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torchvision.models.detection.image_list import ImageList

from maskrcnn_core.cancel import CancelToken
from maskrcnn_core.data.coco import CocoData
from maskrcnn_core.data.dataset import InstanceDataset, collate_detection
from maskrcnn_core.data.transforms import Compose, RandomHorizontalFlip, RandomScale, hflip_target
from maskrcnn_core.engine.feature_cache import (
    FEATURE_CACHE_DIR,
    FeatureCache,
    FeatureCacheError,
    FrozenBackboneNetworks,
    batch_features,
)
from maskrcnn_core.inference_options import choose_backend
from maskrcnn_core.model.backbones import set_trainable_stages
from maskrcnn_core.model.mask_rcnn import MaskRCNN, MaskRCNNLoss
from maskrcnn_core.model.subnetworks import SubNetworks
from maskrcnn_core.model.weights import read_checkpoint, save_checkpoint
from maskrcnn_core.protocol import (
    BYTES_PER_MB,
    DEFAULT_SCALE_RANGE,
    FINAL_MODEL,
    HEADS_TIER_MAX_IMAGES,
    LAST_CHECKPOINT,
    LOSS_KEYS,
    TIERS,
    CachingEvent,
    CancelledEvent,
    CheckpointEvent,
    EvaluationEvent,
    FinishedEvent,
    ProgressEvent,
    RunStatus,
    StartEvent,
    TrainingEvent,
    TrainRequest,
    default_lr,
    heads_tier_ignores,
    iterations_of_run,
    resolve_tier,
)

log = logging.getLogger(__name__)

Callback = Callable[[TrainingEvent], None]

__all__ = [
    "FINAL_MODEL",
    "LAST_CHECKPOINT",
    "CheckpointHook",
    "EvaluationHook",
    "HookBase",
    "ProgressHook",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "train",
]


class TrainingError(RuntimeError):
    """Training cannot go on (out of memory, non-finite loss, bad resume state); the message says why."""


@dataclass
class TrainConfig:
    """How long and how to train. ``iterations`` wins over ``epochs``; one of them is required."""

    iterations: int | None = None
    epochs: float | None = None
    batch_size: int = 2  # images per process and step
    lr: float | None = None  # None: protocol.default_lr(global batch)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iterations: int | None = None  # None: a tenth of the run, at most 1000
    warmup_factor: float = 0.001
    lr_steps: tuple[float, ...] = (0.7, 0.9)  # fractions of the run where lr drops by lr_gamma
    lr_gamma: float = 0.1
    grad_clip_norm: float | None = 10.0
    trainable_backbone_layers: int | None = None  # None: keep the model's freeze policy
    mixed_precision: bool = True  # CUDA only
    hflip_prob: float = 0.5
    scale_jitter: tuple[float, float] | None = DEFAULT_SCALE_RANGE
    checkpoint_every: int = 500
    eval_every: int | None = None
    seed: int = 0
    tier: str = "full"  # a key of protocol.TIERS; "auto" is resolved by the trainer for its device and data
    feature_cache_bytes: int | None = None  # the heads tier's in-memory budget; None: half the free memory

    def __post_init__(self) -> None:
        if self.iterations is None and self.epochs is None:
            raise ValueError("give iterations or epochs")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.tier not in TIERS:
            raise ValueError(f"tier must be one of {', '.join(TIERS)}; got {self.tier!r}")
        if self.feature_cache_bytes is not None and self.feature_cache_bytes < 0:
            raise ValueError(f"feature_cache_bytes must be >= 0, got {self.feature_cache_bytes}")
        if self.tier == "heads":
            ignored = heads_tier_ignores(self.trainable_backbone_layers, self.scale_jitter)
            if ignored:
                raise ValueError(f"the heads tier does not apply {'; '.join(ignored)}")
        if any(not 0 < s < 1 for s in self.lr_steps):
            raise ValueError(f"lr_steps are fractions of the run in (0, 1), got {self.lr_steps}")
        self.lr_steps = tuple(self.lr_steps)
        if self.scale_jitter is not None:
            self.scale_jitter = (float(self.scale_jitter[0]), float(self.scale_jitter[1]))

    @classmethod
    def from_request(cls, request: TrainRequest) -> TrainConfig:
        """The recipe a ``train`` command asks for."""
        return cls(
            iterations=request.iterations,
            epochs=request.epochs,
            batch_size=request.batch_size,
            lr=request.lr,
            trainable_backbone_layers=request.trainable_backbone_layers,
            mixed_precision=request.mixed_precision,
            checkpoint_every=request.checkpoint_every,
            eval_every=request.eval_every,
            seed=request.seed,
            hflip_prob=request.hflip,
            scale_jitter=request.scale_range,
            tier=request.tier,
            feature_cache_bytes=None
            if request.feature_cache_memory_mb is None
            else int(request.feature_cache_memory_mb * BYTES_PER_MB),
        )


@dataclass
class TrainResult:
    status: RunStatus  # FINISHED or CANCELLED (a failure raises)
    iteration: int
    model_path: Path | None  # model_final.pt when finished
    checkpoint_path: Path | None
    last_losses: dict[str, float] = field(default_factory=dict)
    last_metrics: dict | None = None


# ------------------------------------------------------------------------------------------------ hooks


class HookBase:
    """Something done around the steps of a :class:`Trainer`; override the moments you need.

    Every rank calls every hook (checkpoints and evaluation synchronise the processes); only rank 0's
    events reach the callbacks.
    """

    def before_train(self, trainer: Trainer) -> None:
        """After the start event, before the first step of this process."""

    def after_step(self, trainer: Trainer) -> None:
        """After each optimizer step (``trainer.iteration`` counts it)."""

    def after_train(self, trainer: Trainer) -> None:
        """After the last step of a complete run, before the final model is written (not on cancel)."""


class ProgressHook(HookBase):
    """A progress event per step: losses, learning rate, epoch, speed and time left."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.images_seen = 0  # by this run of the process (a resumed run's speed counts from its start)

    def before_train(self, trainer: Trainer) -> None:
        self.started = time.monotonic()
        self.images_seen = 0

    def after_step(self, trainer: Trainer) -> None:
        self.images_seen += trainer.global_batch
        elapsed = time.monotonic() - self.started
        rate = self.images_seen / elapsed if elapsed > 0 else 0.0
        remaining = (trainer.total - trainer.iteration) * trainer.global_batch
        trainer.emit(
            ProgressEvent(
                iteration=trainer.iteration,
                iterations=trainer.total,
                epoch=trainer.iteration * trainer.global_batch / len(trainer.dataset),
                losses=trainer.last_losses,
                lr=trainer.optimizer.param_groups[0]["lr"],
                images_per_s=rate,
                eta_s=remaining / rate if rate > 0 else None,
                elapsed_s=elapsed,
            )
        )


class EvaluationHook(HookBase):
    """Validation every ``every`` iterations (``None``: none during the run) and at the end."""

    def __init__(self, every: int | None) -> None:
        self.every = every

    def after_step(self, trainer: Trainer) -> None:
        if self.every and trainer.iteration % self.every == 0 and trainer.iteration < trainer.total:
            trainer.validate()

    def after_train(self, trainer: Trainer) -> None:
        trainer.validate()


class CheckpointHook(HookBase):
    """The resumable checkpoint every ``every`` iterations and at the end (a cancel writes its own)."""

    def __init__(self, every: int) -> None:
        self.every = every

    def after_step(self, trainer: Trainer) -> None:
        if trainer.iteration % self.every == 0 and trainer.iteration < trainer.total:
            trainer.write_checkpoint()

    def after_train(self, trainer: Trainer) -> None:
        trainer.write_checkpoint()


# ---------------------------------------------------------------------------------------------- trainer


class _LossModule(nn.Module):
    """``forward = model.get_loss``: DistributedDataParallel hooks into ``forward`` only."""

    def __init__(self, model: MaskRCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: list[torch.Tensor], targets: list[dict]) -> MaskRCNNLoss:
        return self.model.get_loss(images, targets)


class _HeadsLossModule(_LossModule):
    """``forward = model.get_loss_from_features``: the ``heads`` tier's step on cached features."""

    def forward(  # type: ignore[override]
        self, image_list: ImageList, features: OrderedDict[str, torch.Tensor], targets: list[dict]
    ) -> MaskRCNNLoss:
        return self.model.get_loss_from_features(image_list, features, targets)


class _AnyRankCancel:
    """A cancel seen by any rank, asked collectively: every rank asks as often (once per cached image)."""

    def __init__(self, token: CancelToken, device: torch.device) -> None:
        self.token, self.device = token, device

    @property
    def cancelled(self) -> bool:
        return _any_rank(self.token.cancelled, self.device)


class Trainer:
    """One training run of ``model`` (already on its device) on ``train_data``, written to ``out_dir``.

    Under ``torch.distributed`` (``torchrun``) each process builds the same trainer: the data is split by
    rank, gradients are averaged, and only rank 0 writes files and emits events. Call :meth:`resume` to
    continue from the run's last checkpoint, then :meth:`train`.
    """

    def __init__(
        self,
        model: MaskRCNN,
        train_data: CocoData,
        out_dir: str | Path,
        config: TrainConfig,
        *,
        val_data: CocoData | None = None,
        callbacks: Sequence[Callback] = (),
        cancel: CancelToken | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if train_data.num_classes != model.config.num_classes:
            raise ValueError(
                f"the model has {model.config.num_classes} classes but the training data "
                f"{train_data.num_classes}; build the model with the data's classes"
            )
        self.model, self.config, self.out_dir = model, config, Path(out_dir)
        self.val_data, self.cancel, self.metadata = val_data, cancel, dict(metadata or {})
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.callbacks = list(callbacks) if self.rank == 0 else []
        self.device = next(model.parameters()).device
        self.tier = resolve_tier(
            config.tier, on_gpu=self.device.type == "cuda", num_train_images=len(train_data.images)
        )
        self.features: FeatureCache | None = None
        self.notice = ""  # what the run does not do of what it was asked (the start event says it)
        if self.tier == "heads":
            ignored = heads_tier_ignores(config.trainable_backbone_layers, config.scale_jitter)
            if ignored:  # only "auto" gets here with some (TrainConfig refuses them with "heads")
                why = "a CPU" if self.device.type != "cuda" else f"under {HEADS_TIER_MAX_IMAGES} images"
                self.notice = (
                    f"auto chose the heads tier (training on {why}), which does not apply "
                    f"{'; '.join(ignored)}; use --tier full for them"
                )
                if self.rank == 0:
                    log.warning("%s", self.notice)
            model.backbone.requires_grad_(False)  # backbone + FPN frozen: their features are cached
            self.dataset = InstanceDataset(train_data)  # each image as it is, and mirrored
            # every process caches the features of every image (its share changes with each epoch)
            folder = FEATURE_CACHE_DIR if self.rank == 0 else f"{FEATURE_CACHE_DIR}-rank{self.rank}"
            self.features = FeatureCache(self.out_dir / folder, config.feature_cache_bytes)
        else:
            if config.trainable_backbone_layers is not None:
                set_trainable_stages(model.backbone, config.trainable_backbone_layers)
            self.dataset = InstanceDataset(train_data, transforms=_augmentation(config))
        if len(self.dataset) == 0:
            raise ValueError("the training data has no images")

        self.global_batch = config.batch_size * self.world
        self.total = iterations_of_run(config.iterations, config.epochs, len(self.dataset), self.global_batch)
        self.base_lr = config.lr if config.lr is not None else default_lr(self.global_batch)
        warmup = config.warmup_iterations
        warmup = warmup if warmup is not None else min(1000, self.total // 10)
        steps = [int(f * self.total) for f in config.lr_steps]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(
            self.params, lr=self.base_lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda i: _lr_factor(i, warmup, config.warmup_factor, steps, config.lr_gamma)
        )
        self.amp_dtype = _amp_dtype(self.device, config.mixed_precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.start_iteration = 0
        self.iteration = 0
        self.last_losses: dict[str, float] = {}
        self.last_metrics: dict | None = None
        self.checkpoint_path: Path | None = None
        self._backbone: SubNetworks | None = None  # see _frozen_backbone
        self._backbone_made = False
        self._scoring_networks: FrozenBackboneNetworks | None = None  # the heads tier's validations
        self._loss_module: nn.Module = (
            _LossModule(model) if self.features is None else _HeadsLossModule(model)
        )
        self.hooks: list[HookBase] = [ProgressHook()]
        if val_data is not None:
            self.hooks.append(EvaluationHook(config.eval_every))
        self.hooks.append(CheckpointHook(config.checkpoint_every))
        torch.manual_seed(config.seed + self.rank)  # before resume(), which restores the RNG it left

    # -------------------------------------------------------------------------------------- the run
    @property
    def run_info(self) -> dict[str, Any]:
        """What the run is, as the start event and the final model's metadata record it."""
        return {
            "iterations": self.total,
            "global_batch": self.global_batch,
            "base_lr": self.base_lr,
            "world_size": self.world,
            "config": _plain(asdict(self.config)),
            "num_train_images": len(self.dataset),
            "tier": self.tier,
        }

    def resume(self) -> None:
        """Continue from ``out_dir``'s last checkpoint: model, optimizer, scheduler, RNG, iteration."""
        path = self.out_dir / LAST_CHECKPOINT
        if not path.is_file():
            raise TrainingError(f"--resume: no checkpoint at {path}")
        checkpoint = read_checkpoint(path)
        state = checkpoint.training_state
        if not state:
            raise TrainingError(f"{path} holds no training state to resume from")
        if state["world_size"] != self.world:
            raise TrainingError(f"{path} was written by {state['world_size']} processes; resume with as many")
        tier = state.get("tier", "full")
        if tier != self.tier:
            raise TrainingError(f"{path} is from a run of the {tier} tier; resume it with --tier {tier}")
        if state["iterations"] != self.total:
            raise TrainingError(
                f"{path} is from a run of {state['iterations']} iterations; "
                f"resume with the same length (now {self.total})"
            )
        self.model.load_state_dict(checkpoint.state_dict)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["grad_scaler"])
        rng = state["rng"][self.rank]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.start_iteration = self.iteration = int(state["iteration"])

    def train(self) -> TrainResult:
        """Run to the end (or to a cancel); every rank returns the same result."""
        if self.world > 1:  # after resume(): DDP starts every rank from rank 0's (restored) weights
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._loss_module = nn.parallel.DistributedDataParallel(self._loss_module, device_ids=device_ids)
        self.emit(StartEvent(start_iteration=self.start_iteration, notice=self.notice, **self.run_info))
        if self.features is not None and not self._cache_features():
            return self._cancelled()
        self._train_mode()
        for hook in self.hooks:
            hook.before_train(self)
        while self.iteration < self.total:
            if self.cancel is not None and _any_rank(self.cancel.cancelled, self.device):
                return self._cancelled()
            self.last_losses = self.run_step()
            self.iteration += 1
            for hook in self.hooks:
                hook.after_step(self)
        for hook in self.hooks:
            hook.after_train(self)
        return self._finished()

    def run_step(self) -> dict[str, float]:
        """One optimizer step on this rank's share of the next global batch; the losses over all ranks."""
        config = self.config
        indices = _batch_indices(
            self.iteration, len(self.dataset), config.batch_size, self.rank, self.world, config.seed
        )
        inputs: tuple[Any, ...]
        if self.features is None:
            images, targets = collate_detection([self.dataset[i] for i in indices])
            inputs = ([im.to(self.device, non_blocking=True) for im in images],)
        else:
            inputs, targets = self._cached_batch(indices)
        targets = [
            {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets
        ]
        try:
            autocast = (
                torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
            )
            with autocast:
                losses = self._loss_module(*inputs, targets)
            total_loss = losses["total_loss"]
            if not torch.isfinite(total_loss):
                raise TrainingError(
                    f"the loss became {total_loss.item()} at iteration {self.iteration + 1}; "
                    "lower the learning rate (--lr) or check the data"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total_loss).backward()
            if config.grad_clip_norm is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        except torch.cuda.OutOfMemoryError:
            raise TrainingError(
                f"CUDA out of memory with {config.batch_size} images per step at up to "
                f"{self.model.config.max_size} px: use a smaller --batch-size or --max-size"
            ) from None
        self.scheduler.step()
        return {k: _mean_over_ranks(losses[k].detach(), self.world) for k in LOSS_KEYS}

    def emit(self, event: TrainingEvent) -> None:
        """Hand ``event`` to the callbacks (rank 0's; the other ranks have none)."""
        for callback in self.callbacks:
            callback(event)

    def validate(self) -> None:
        """Score the model on the validation data (rank 0) into ``last_metrics``, with an event."""
        if self.rank != 0 or self.val_data is None:
            return
        from maskrcnn_core.engine.predictor import Predictor
        from maskrcnn_core.engine.validation import evaluate_model

        scored: MaskRCNN | Predictor = self.model
        if self.features is not None:  # frozen backbone: the validation images' features once, fast
            if self._scoring_networks is None:
                # the budget counts the host's memory: on a GPU, where the pass is cheap, nothing is kept
                room = self.features.memory_room if self.device.type == "cpu" else 0
                self._scoring_networks = FrozenBackboneNetworks(self.model, self._frozen_backbone(), room)
            scored = Predictor.from_model(self.model, subnetworks=self._scoring_networks)
        self.last_metrics = evaluate_model(scored, self.val_data).to_dict()
        self._train_mode()
        self.emit(EvaluationEvent(iteration=self.iteration, metrics=self.last_metrics))

    def write_checkpoint(self) -> Path:
        """Write ``checkpoint_last.pt`` atomically (rank 0) with every rank's RNG state."""
        rng: list[dict[str, Any] | None] = [_rng_state()]
        if self.world > 1:
            rng = [None] * self.world
            dist.all_gather_object(rng, _rng_state())
        path = self.out_dir / LAST_CHECKPOINT
        if self.rank == 0:
            training_state = {
                "iteration": self.iteration,
                "iterations": self.total,
                "world_size": self.world,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "grad_scaler": self.scaler.state_dict(),
                "rng": rng,
                "train_config": _plain(asdict(self.config)),
                "tier": self.tier,
            }
            metadata = {**self.metadata, "iteration": self.iteration}
            save_checkpoint(path, self.model, metadata=metadata, training_state=training_state)
            self.emit(CheckpointEvent(iteration=self.iteration, path=str(path)))
        if self.world > 1:
            dist.barrier()
        self.checkpoint_path = path
        return path

    # ------------------------------------------------------------------------------- the heads tier
    def _cache_features(self) -> bool:
        """Compute (or reuse) the features of every training image, with caching events; ``False`` when
        cancelled during it (what is written to the run folder so far stays for a resumed run)."""
        assert self.features is not None
        started = time.monotonic()

        def report(done: int, total: int, on_disk: bool) -> None:
            elapsed = time.monotonic() - started
            self.emit(CachingEvent(done=done, total=total, elapsed_s=elapsed, on_disk=on_disk))

        cancel = None if self.cancel is None else _AnyRankCancel(self.cancel, self.device)
        return self.features.build(
            self.model,
            self.dataset,
            mirrored=self.config.hflip_prob > 0,
            cancel=cancel,
            progress=report,
            backbone=self._frozen_backbone,
        )

    def _frozen_backbone(self) -> SubNetworks | None:
        """What runs the frozen backbone for the caching pass and the validations: made once, when first
        asked (a resumed run whose features are all on disk may never ask)."""
        if not self._backbone_made:
            self._backbone, self._backbone_made = self._fast_backbone(), True
        return self._backbone

    def _fast_backbone(self) -> SubNetworks | None:
        """On a CPU with OpenVINO, the frozen backbone compiled for the caching pass (float32, the same
        features to rounding); ``None``: the model's own torch modules."""
        if self.device.type != "cpu" or choose_backend().backend != "openvino":
            return None
        from maskrcnn_core.engine.openvino_backend import ConversionError, OpenVinoSubNetworks

        try:
            return OpenVinoSubNetworks(self.model, precision="fp32")
        except ConversionError as exc:
            log.warning("%s: the caching pass runs on torch", exc)
            return None

    def _cached_batch(self, indices: list[int]) -> tuple[tuple[Any, ...], list[dict]]:
        """The heads tier's inputs for ``indices``: cached features (each image mirrored with the flip
        probability, a draw from torch's RNG as the full tier's flip makes) and the targets to match."""
        assert self.features is not None
        items, targets = [], []
        for i in indices:
            mirrored = bool(torch.rand(()).item() < self.config.hflip_prob)
            try:
                items.append(self.features.get(i, mirrored))
            except FeatureCacheError as exc:
                raise TrainingError(str(exc)) from None
            info = self.dataset.images[i]
            target = self.dataset.target(i)
            if mirrored:
                target = hflip_target(target, info.width)
            targets.append(self.model.transform.resize_target(target, (info.height, info.width)))
        image_list, levels = batch_features(items, self.device)
        return (image_list, levels), targets

    def _train_mode(self) -> None:
        self.model.train()
        if self.features is not None:
            self.model.backbone.eval()  # frozen: its BatchNorm statistics stay what the features saw

    # ------------------------------------------------------------------------------------ the ends
    def _cancelled(self) -> TrainResult:
        checkpoint = self.write_checkpoint()
        self.emit(CancelledEvent(iteration=self.iteration, checkpoint=str(checkpoint)))
        return TrainResult(
            RunStatus.CANCELLED, self.iteration, None, checkpoint, self.last_losses, self.last_metrics
        )

    def _finished(self) -> TrainResult:
        final = self.out_dir / FINAL_MODEL
        model_path = None
        if self.rank == 0:
            final_metadata = {
                **self.metadata,
                "training": self.run_info,
                "iteration": self.iteration,
                "final_losses": self.last_losses,
                "validation": self.last_metrics,
            }
            model_path = save_checkpoint(final, self.model, metadata=final_metadata)
        self.emit(
            FinishedEvent(
                iteration=self.iteration,
                model=str(final),
                losses=self.last_losses,
                validation=self.last_metrics,
            )
        )
        return TrainResult(
            RunStatus.FINISHED,
            self.iteration,
            model_path,
            self.checkpoint_path,
            self.last_losses,
            self.last_metrics,
        )


def train(
    model: MaskRCNN,
    train_data: CocoData,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    val_data: CocoData | None = None,
    callbacks: Sequence[Callback] = (),
    cancel: CancelToken | None = None,
    resume: bool = False,
    metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_data`` with a :class:`Trainer`; ``resume`` continues ``out_dir``'s run."""
    trainer = Trainer(
        model,
        train_data,
        out_dir,
        config,
        val_data=val_data,
        callbacks=callbacks,
        cancel=cancel,
        metadata=metadata,
    )
    if resume:
        trainer.resume()
    return trainer.train()


# ---------------------------------------------------------------------------------------------------


def _augmentation(config: TrainConfig) -> Compose:
    transforms: list[RandomHorizontalFlip | RandomScale] = []
    if config.hflip_prob > 0:
        transforms.append(RandomHorizontalFlip(config.hflip_prob))
    if config.scale_jitter is not None:
        transforms.append(RandomScale(*config.scale_jitter))
    return Compose(transforms)


def _lr_factor(i: int, warmup: int, warmup_factor: float, steps: list[int], gamma: float) -> float:
    """The learning-rate multiplier for iteration ``i`` (0-based): linear warm-up, then step decay."""
    factor = gamma ** sum(1 for s in steps if i >= s)
    if i < warmup:
        alpha = i / warmup
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def _batch_indices(iteration: int, n: int, batch_size: int, rank: int, world: int, seed: int) -> list[int]:
    """The dataset indices this rank trains on at ``iteration``: a pure function, hence resumable.

    The global stream is one seeded permutation of the dataset per epoch, concatenated; step ``i`` takes
    the global batch at ``[i * B * world, (i + 1) * B * world)`` of it and rank ``r`` its ``r``-th slice,
    so a single process with the global batch sees exactly the images all ranks together see.
    """
    first = (iteration * world + rank) * batch_size
    out = []
    cached: dict[int, torch.Tensor] = {}
    for position in range(first, first + batch_size):
        epoch, offset = divmod(position, n)
        if epoch not in cached:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            cached[epoch] = torch.randperm(n, generator=generator)
        out.append(int(cached[epoch][offset]))
    return out


def _amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _mean_over_ranks(value: torch.Tensor, world: int) -> float:
    if world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return float(value)


def _any_rank(flag: bool, device: torch.device) -> bool:
    """Cancellation seen by any rank stops all of them at the same iteration."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
