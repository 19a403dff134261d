"""The contract between the engine's training and scoring processes and whoever starts them (the app).

Torch-free and Qt-free: the window imports it without loading torch, and the engine's command line
imports it too, so every name, number and word that crosses the process boundary is written once, here:
exit codes, the files of a run folder, the training events and their JSON form, the loss keys, the run
status, the default learning rate and the iterations rule.
"""

from __future__ import annotations

import math
from enum import IntEnum, StrEnum


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
