"""Training speed on CPU: our ``train()`` loop against torchvision's reference loop, same model and data.

The model is ResNet-18-FPN Mask R-CNN (FPN 256, a two-layer box head of ``HIDDEN_DIM``, a four-conv
mask head of ``MASK_CHANNELS``), FrozenBatchNorm and the last 3 backbone stages trainable, in both
loops. Ours is ``mask_rcnn_resnet_18_fpn``; the reference is torchvision's own ``MaskRCNN`` class on
``resnet_fpn_backbone("resnet18")`` — the builder ``maskrcnn_resnet50_fpn`` uses, with the ResNet-18
trunk — loaded with our initial weights (the state dicts match key for key).

The reference loop is torchvision's ``references/detection/engine.py`` ``train_one_epoch`` without its
logging: ``loss_dict = model(images, targets)``, sum, ``zero_grad``, ``backward``, SGD ``step``,
scheduler ``step``. Ours is ``maskrcnn_core.engine.training.train`` as the CLI runs it (warm-up, gradient
clipping, progress events), minus checkpoints inside the timed window. Both read the same synthetic
images in the same order (``_batch_indices``) in the main process, without augmentation (the reference's
flip would cost the same in both), and both use SGD with momentum 0.9, weight decay 1e-4 and the same lr.

Each measurement: ``--warmup`` steps, then ``--steps`` timed steps; the loops alternate for ``--rounds``
rounds (ours, reference, ours, reference, ...) so that load from other processes hits both alike, and
the best round of each is reported.

    .venv/bin/python bench/bench_train_cpu.py [--threads 1] [--steps 8] [--batch-size 2] [--size 240x320]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from machine import describe  # bench/machine.py, beside this script

# Head widths of both models: torchvision's defaults (1024 and 256) make the mask head alone take ~20 s a
# step on one CPU thread; these are the bundled demo model's widths, the size this app trains on a CPU.
HIDDEN_DIM = 256
MASK_CHANNELS = 64


def _reference_model(num_classes: int, min_size: int, max_size: int):
    """torchvision's ``MaskRCNN`` on ``resnet_fpn_backbone("resnet18")`` with heads as wide as ours."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=3)
    fpn = backbone.out_channels
    return MaskRCNN(
        backbone,
        min_size=min_size,
        max_size=max_size,
        box_head=TwoMLPHead(fpn * 7 * 7, HIDDEN_DIM),
        box_predictor=FastRCNNPredictor(HIDDEN_DIM, num_classes + 1),
        mask_head=MaskRCNNHeads(fpn, [MASK_CHANNELS] * 4, 1),
        mask_predictor=MaskRCNNPredictor(MASK_CHANNELS, MASK_CHANNELS, num_classes + 1),
    )


def _time_ours(model, data, config, steps: int, warmup: int, out_dir: Path) -> float:
    """Images/s of ``train()`` over its last ``steps`` iterations (timed between progress events)."""
    from maskrcnn_core.engine.training import train

    stamps: dict[int, float] = {}

    def on_event(event: dict) -> None:
        if event["event"] == "progress":
            stamps[event["iteration"]] = time.perf_counter()

    train(model, data, out_dir, config, callbacks=[on_event])
    return steps * config.batch_size / (stamps[warmup + steps] - stamps[warmup])


def _time_reference(model, dataset, batch_size: int, lr: float, steps: int, warmup: int, seed: int) -> float:
    import torch

    from maskrcnn_core.data.dataset import collate_detection
    from maskrcnn_core.engine.training import _batch_indices

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    # references/detection/train.py: MultiStepLR, plus a linear warm-up inside train_one_epoch
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[10_000], gamma=0.1)
    model.train()
    start = 0.0
    for iteration in range(warmup + steps):
        if iteration == warmup:
            start = time.perf_counter()
        indices = _batch_indices(iteration, len(dataset), batch_size, 0, 1, seed)
        images, targets = collate_detection([dataset[i] for i in indices])
        targets = [{k: v for k, v in t.items() if k != "image_id"} for t in targets]
        loss_dict = model(images, targets)
        losses = sum(loss for loss in loss_dict.values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        scheduler.step()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round (8)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (2)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both loops (2)")
    parser.add_argument("--batch-size", type=int, default=2, help="images per step (2)")
    parser.add_argument("--size", default="240x320", help="synthetic image size HxW (240x320)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from maskrcnn_core import mask_rcnn_resnet_18_fpn
    from maskrcnn_core.data import generate_synthetic_dataset, load_coco
    from maskrcnn_core.data.dataset import InstanceDataset
    from maskrcnn_core.engine.training import TrainConfig
    from maskrcnn_core.protocol import default_lr

    height, width = (int(v) for v in args.size.split("x"))
    lr = default_lr(args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        json_path = generate_synthetic_dataset(
            tmp / "data", num_images=16, seed=0, image_size=(height, width)
        )
        data, _ = load_coco(json_path, tmp / "data" / "images")
        dataset = InstanceDataset(data)  # no augmentation, as in our loop below
        sizes = dict(min_size=height, max_size=max(height, width))

        torch.manual_seed(0)
        initial = mask_rcnn_resnet_18_fpn(
            class_names=data.class_names,
            norm="frozen",
            trainable_backbone_layers=3,
            hidden_dim=HIDDEN_DIM,
            mask_hidden_channels=MASK_CHANNELS,
            **sizes,
        ).state_dict()
        total = args.warmup + args.steps
        config = TrainConfig(
            iterations=total,
            batch_size=args.batch_size,
            lr=lr,
            warmup_iterations=0,
            hflip_prob=0.0,
            scale_jitter=None,
            checkpoint_every=10_000,  # only the final write, after the timed window
        )
        ours_rates, reference_rates = [], []
        for round_ in range(args.rounds):
            ours = mask_rcnn_resnet_18_fpn(
                class_names=data.class_names,
                norm="frozen",
                trainable_backbone_layers=3,
                hidden_dim=HIDDEN_DIM,
                mask_hidden_channels=MASK_CHANNELS,
                **sizes,
            )
            ours.load_state_dict(initial)
            torch.manual_seed(round_)
            ours_rates.append(_time_ours(ours, data, config, args.steps, args.warmup, tmp / f"run{round_}"))
            reference = _reference_model(data.num_classes, **sizes)
            reference.load_state_dict(initial)  # strict: the same architecture, key for key
            torch.manual_seed(round_)
            reference_rates.append(
                _time_reference(reference, dataset, args.batch_size, lr, args.steps, args.warmup, 0)
            )
            print(
                f"round {round_ + 1}: ours {ours_rates[-1]:.2f} images/s, "
                f"torchvision {reference_rates[-1]:.2f} images/s",
                flush=True,
            )

    best_ours, best_reference = max(ours_rates), max(reference_rates)
    print(f"machine: {describe()}; torch {torch.__version__}, {args.threads} thread(s)")
    print(
        f"ResNet-18-FPN Mask R-CNN (box head {HIDDEN_DIM}, mask head {MASK_CHANNELS}), "
        f"{len(data.class_names)} classes, {height}x{width} images, "
        f"batch {args.batch_size}, {args.steps} timed steps after {args.warmup}, best of {args.rounds} rounds"
    )
    print(f"ours (maskrcnn_core.engine.training.train): {best_ours:.2f} images/s")
    print(f"torchvision reference loop:          {best_reference:.2f} images/s")
    print(f"ratio ours / torchvision: {best_ours / best_reference:.2f}x")


if __name__ == "__main__":
    main()
