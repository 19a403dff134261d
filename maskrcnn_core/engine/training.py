"""The fine-tuning loop: SGD with warm-up and step decay, checkpoints that resume exactly, DDP.

The recipe is the paper's and torchvision's: SGD, momentum 0.9, weight decay 1e-4, learning rate
0.02 x (global batch / 16), linear warm-up, then x0.1 steps late in the run; mixed precision on CUDA;
gradient clipping. Progress, evaluation and checkpoint events go to callbacks as plain dicts (the CLI
prints them as a bar or as JSON lines for the app).

Exact resume: the data order is a pure function of (seed, iteration), augmentation and the model's
sampling draw from torch's RNG, whose state is checkpointed with model, optimizer, scheduler and
iteration — so on CPU a resumed run reproduces the loss curve of an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from maskrcnn_core.cancel import CancelToken
from maskrcnn_core.data.coco import CocoData
from maskrcnn_core.data.dataset import InstanceDataset, collate_detection
from maskrcnn_core.data.transforms import Compose, RandomHorizontalFlip, RandomScale
from maskrcnn_core.model.backbones import set_trainable_stages
from maskrcnn_core.model.mask_rcnn import LOSS_KEYS
from maskrcnn_core.model.weights import read_checkpoint, save_checkpoint

Event = dict[str, Any]
Callback = Callable[[Event], None]

LAST_CHECKPOINT = "checkpoint_last.pt"
FINAL_MODEL = "model_final.pt"


class TrainingError(RuntimeError):
    """Training cannot go on (out of memory, non-finite loss, bad resume state); the message says why."""


@dataclass
class TrainConfig:
    """How long and how to train. ``iterations`` wins over ``epochs``; one of them is required."""

    iterations: int | None = None
    epochs: float | None = None
    batch_size: int = 2  # images per process and step
    lr: float | None = None  # None: 0.02 * global batch / 16
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
    scale_jitter: tuple[float, float] | None = (0.8, 1.25)
    checkpoint_every: int = 500
    eval_every: int | None = None
    seed: int = 0

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
        if any(not 0 < s < 1 for s in self.lr_steps):
            raise ValueError(f"lr_steps are fractions of the run in (0, 1), got {self.lr_steps}")
        self.lr_steps = tuple(self.lr_steps)
        if self.scale_jitter is not None:
            self.scale_jitter = (float(self.scale_jitter[0]), float(self.scale_jitter[1]))


@dataclass
class TrainResult:
    status: str  # "finished" or "cancelled"
    iteration: int
    model_path: Path | None  # model_final.pt when finished
    checkpoint_path: Path | None
    last_losses: dict[str, float] = field(default_factory=dict)
    last_metrics: dict | None = None


class _LossModule(nn.Module):
    """``forward = model.get_loss``: DistributedDataParallel hooks into ``forward`` only."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
        return self.model.get_loss(images, targets)


def train(
    model: nn.Module,
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
    """Train ``model`` (already on its device) on ``train_data``; write checkpoints to ``out_dir``.

    Under ``torch.distributed`` (``torchrun``) each process passes the same arguments: the data is split
    by rank, gradients are averaged, and only rank 0 writes files and emits events.
    """
    out_dir = Path(out_dir)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    device = next(model.parameters()).device
    if train_data.num_classes != model.config.num_classes:
        raise ValueError(
            f"the model has {model.config.num_classes} classes but the training data "
            f"{train_data.num_classes}; "
            "build the model with the data's classes"
        )
    if config.trainable_backbone_layers is not None:
        set_trainable_stages(model.backbone, config.trainable_backbone_layers)

    transforms = []
    if config.hflip_prob > 0:
        transforms.append(RandomHorizontalFlip(config.hflip_prob))
    if config.scale_jitter is not None:
        transforms.append(RandomScale(*config.scale_jitter))
    dataset = InstanceDataset(train_data, transforms=Compose(transforms))
    if len(dataset) == 0:
        raise ValueError("the training data has no images")
    global_batch = config.batch_size * world
    total = config.iterations or max(1, math.ceil(config.epochs * len(dataset) / global_batch))
    base_lr = config.lr if config.lr is not None else 0.02 * global_batch / 16
    warmup = config.warmup_iterations if config.warmup_iterations is not None else min(1000, total // 10)
    steps = [int(f * total) for f in config.lr_steps]

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=base_lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: _lr_factor(i, warmup, config.warmup_factor, steps, config.lr_gamma)
    )
    amp_dtype = _amp_dtype(device, config.mixed_precision)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    start = 0
    torch.manual_seed(config.seed + rank)
    if resume:
        start = _restore(out_dir / LAST_CHECKPOINT, model, optimizer, scheduler, scaler, rank, world, total)

    loss_module: nn.Module = _LossModule(model)
    if world > 1:
        loss_module = nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    emit = _emitter(callbacks if rank == 0 else ())
    run_info = {
        "iterations": total,
        "global_batch": global_batch,
        "base_lr": base_lr,
        "world_size": world,
        "config": _plain(asdict(config)),
        "num_train_images": len(dataset),
    }
    emit({"event": "start", "start_iteration": start, **run_info})

    def write_checkpoint(iteration: int) -> Path:
        return _checkpoint(
            out_dir,
            model,
            optimizer,
            scheduler,
            scaler,
            iteration,
            config,
            run_info,
            metadata,
            rank,
            world,
            emit,
        )

    model.train()
    last_losses: dict[str, float] = {}
    last_metrics: dict | None = None
    checkpoint_path: Path | None = None
    started = time.monotonic()
    images_seen = 0
    iteration = start
    status = "finished"
    while iteration < total:
        if cancel is not None and _any_rank(cancel.cancelled, device):
            status = "cancelled"
            break
        indices = _batch_indices(iteration, len(dataset), config.batch_size, rank, world, config.seed)
        images, targets = collate_detection([dataset[i] for i in indices])
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
        try:
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext():
                losses = loss_module(images, targets)
            total_loss = losses["total_loss"]
            if not torch.isfinite(total_loss):
                raise TrainingError(
                    f"the loss became {total_loss.item()} at iteration {iteration + 1}; "
                    "lower the learning rate (--lr) or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total_loss).backward()
            if config.grad_clip_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
        except torch.cuda.OutOfMemoryError:
            raise TrainingError(
                f"CUDA out of memory with {config.batch_size} images per step at up to "
                f"{model.config.max_size} px: use a smaller --batch-size or --max-size"
            ) from None
        scheduler.step()
        iteration += 1
        images_seen += global_batch

        last_losses = {k: _mean_over_ranks(losses[k].detach(), world) for k in LOSS_KEYS}
        elapsed = time.monotonic() - started
        rate = images_seen / elapsed if elapsed > 0 else 0.0
        emit(
            {
                "event": "progress",
                "iteration": iteration,
                "iterations": total,
                "epoch": iteration * global_batch / len(dataset),
                "losses": last_losses,
                "lr": optimizer.param_groups[0]["lr"],
                "images_per_s": rate,
                "eta_s": (total - iteration) * global_batch / rate if rate > 0 else None,
                "elapsed_s": elapsed,
            }
        )
        if (
            val_data is not None
            and config.eval_every
            and iteration % config.eval_every == 0
            and iteration < total
        ):
            last_metrics = _validate(model, val_data, iteration, rank, emit)
        if iteration % config.checkpoint_every == 0 and iteration < total:
            checkpoint_path = write_checkpoint(iteration)

    if status == "cancelled":
        checkpoint_path = write_checkpoint(iteration)
        emit({"event": "cancelled", "iteration": iteration, "checkpoint": str(checkpoint_path)})
        return TrainResult("cancelled", iteration, None, checkpoint_path, last_losses, last_metrics)

    if val_data is not None:
        last_metrics = _validate(model, val_data, iteration, rank, emit)
    checkpoint_path = write_checkpoint(iteration)
    model_path = None
    if rank == 0:
        final_metadata = {
            **(metadata or {}),
            "training": run_info,
            "iteration": iteration,
            "final_losses": last_losses,
            "validation": last_metrics,
        }
        model_path = save_checkpoint(out_dir / FINAL_MODEL, model, metadata=final_metadata)
    emit(
        {
            "event": "done",
            "iteration": iteration,
            "model": str(out_dir / FINAL_MODEL),
            "losses": last_losses,
            "validation": last_metrics,
        }
    )
    return TrainResult("finished", iteration, model_path, checkpoint_path, last_losses, last_metrics)


# ---------------------------------------------------------------------------------------------


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


def _validate(model: nn.Module, val_data: CocoData, iteration: int, rank: int, emit: Callback) -> dict | None:
    if rank != 0:
        return None
    from maskrcnn_core.engine.validation import evaluate_model

    result = evaluate_model(model, val_data).to_dict()
    model.train()
    emit({"event": "evaluation", "iteration": iteration, "metrics": result})
    return result


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _checkpoint(
    out_dir, model, optimizer, scheduler, scaler, iteration, config, run_info, metadata, rank, world, emit
) -> Path:
    """Write ``checkpoint_last.pt`` atomically (rank 0) with every rank's RNG state."""
    rng = [_rng_state()]
    if world > 1:
        rng = [None] * world
        dist.all_gather_object(rng, _rng_state())
    path = out_dir / LAST_CHECKPOINT
    if rank == 0:
        training_state = {
            "iteration": iteration,
            "iterations": run_info["iterations"],
            "world_size": world,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "grad_scaler": scaler.state_dict(),
            "rng": rng,
            "train_config": _plain(asdict(config)),
        }
        save_checkpoint(
            path, model, metadata={**(metadata or {}), "iteration": iteration}, training_state=training_state
        )
        emit({"event": "checkpoint", "iteration": iteration, "path": str(path)})
    if world > 1:
        dist.barrier()
    return path


def _restore(path: Path, model, optimizer, scheduler, scaler, rank: int, world: int, total: int) -> int:
    if not path.is_file():
        raise TrainingError(f"--resume: no checkpoint at {path}")
    checkpoint = read_checkpoint(path)
    state = checkpoint.training_state
    if not state:
        raise TrainingError(f"{path} holds no training state to resume from")
    if state["world_size"] != world:
        raise TrainingError(f"{path} was written by {state['world_size']} processes; resume with as many")
    if state["iterations"] != total:
        raise TrainingError(
            f"{path} is from a run of {state['iterations']} iterations; "
            f"resume with the same length (now {total})"
        )
    model.load_state_dict(checkpoint.state_dict)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["grad_scaler"])
    rng = state["rng"][rank]
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return int(state["iteration"])


def _emitter(callbacks: Sequence[Callback]) -> Callback:
    def emit(event: Event) -> None:
        for callback in callbacks:
            callback(event)

    return emit


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
