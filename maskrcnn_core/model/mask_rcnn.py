"""`MaskRCNN`: torchvision's detection parts composed behind three verbs: forward, predict, get_loss.

The module tree (``transform``, ``backbone``, ``rpn``, ``roi_heads``) is torchvision's, so a state dict of
torchvision's ``maskrcnn_resnet50_fpn`` loads into the matching variant unchanged. What differs is the
surface: ``forward`` returns raw head outputs, ``predict`` returns detections, ``get_loss`` returns the loss
dictionary — each whatever the module mode — and no pixel post-processing happens inside ``forward``.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, TypedDict, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss, maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead, concat_box_prediction_layers
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

from maskrcnn_core.engine.uncertainty import pooled_features
from maskrcnn_core.model.config import MaskRCNNConfig
from maskrcnn_core.model.heads import ImageTransform, MLPBoxHead
from maskrcnn_core.model.inputs import ImagesLike, check_images, check_targets
from maskrcnn_core.model.pooling import ParallelMultiScaleRoIAlign
from maskrcnn_core.model.rpn_loss import sampled_rpn_loss, supports_sampled_loss
from maskrcnn_core.model.subnetworks import SubNetworks, TorchSubNetworks
from maskrcnn_core.protocol import LOSS_KEYS
from maskrcnn_core.types import ClassMap


class MaskRCNNLoss(TypedDict):
    """The losses of one step, keyed by :data:`~maskrcnn_core.protocol.LOSS_KEYS` (in that order)."""

    rpn_cls_loss: Tensor
    rpn_reg_loss: Tensor
    roi_cls_loss: Tensor
    roi_reg_loss: Tensor
    mask_loss: Tensor
    total_loss: Tensor


class MaskRCNN(nn.Module):
    """Mask R-CNN (He et al. 2017) with torchvision's parts.

    Images are ``(B, 3, H, W)`` float tensors in ``[0, 1]`` or lists of ``(3, H, W)`` tensors of different
    sizes; boxes are ``xyxy`` in input pixels. Labels are ``1..num_classes`` (0 is background).
    """

    def __init__(self, config: MaskRCNNConfig) -> None:
        super().__init__()
        self.config = config
        #: what the checkpoint this model was loaded from says about it (name, parent, training data,
        #: metrics); empty for a model built from scratch. ``load_model`` fills it.
        self.checkpoint_metadata: dict[str, Any] = {}
        c = config
        min_size = (c.min_size,) if isinstance(c.min_size, int) else tuple(c.min_size)
        self.transform = ImageTransform(min_size, c.max_size, list(c.image_mean), list(c.image_std))
        self.backbone = c.backbone

        anchor_sizes: tuple[tuple[int, ...], ...]
        if c.use_fpn:
            anchor_sizes = tuple((s,) for s in c.anchor_sizes)
            featmap_names = list(c.fpn_levels)
        else:
            anchor_sizes = (tuple(c.anchor_sizes),)
            featmap_names = ["0"]
        # its cell anchors are plain tensor attributes, not buffers: real ones even when the model is built
        # on the meta device to be loaded from a checkpoint (load_model)
        with torch.device("cpu"):
            anchor_generator = AnchorGenerator(anchor_sizes, (tuple(c.aspect_ratios),) * len(anchor_sizes))
        self.rpn = _PhasedRPN(
            anchor_generator,
            RPNHead(c.feat_channels, c.num_anchors_per_location, conv_depth=c.rpn_conv_depth),
            c.rpn_fg_iou_thresh,
            c.rpn_bg_iou_thresh,
            c.rpn_batch_size_per_image,
            c.rpn_positive_fraction,
            {"training": c.rpn_pre_nms_top_n_train, "testing": c.rpn_pre_nms_top_n_test},
            {"training": c.rpn_post_nms_top_n_train, "testing": c.rpn_post_nms_top_n_test},
            c.rpn_nms_thresh,
        )

        norm = nn.BatchNorm2d if c.head_batch_norm else None
        if c.box_head_conv_layers:
            box_head: nn.Module = FastRCNNConvFCHead(
                (c.feat_channels, *c.pool_size),
                [c.feat_channels] * c.box_head_conv_layers,
                [c.hidden_dim],
                norm_layer=norm,
            )
        else:
            box_head = MLPBoxHead(c.feat_channels * c.pool_size[0] * c.pool_size[1], c.hidden_dim, c.dropout)
        num_mask_channels = 1 if c.class_agnostic_masks else c.num_classes + 1
        self.roi_heads = RoIHeads(
            box_roi_pool=ParallelMultiScaleRoIAlign(featmap_names, list(c.pool_size), sampling_ratio=2),
            box_head=box_head,
            box_predictor=FastRCNNPredictor(c.hidden_dim, c.num_classes + 1),
            fg_iou_thresh=c.box_fg_iou_thresh,
            bg_iou_thresh=c.box_bg_iou_thresh,
            batch_size_per_image=c.box_batch_size_per_image,
            positive_fraction=c.box_positive_fraction,
            bbox_reg_weights=None,
            score_thresh=0.05,
            nms_thresh=0.5,
            detections_per_img=100,
            mask_roi_pool=ParallelMultiScaleRoIAlign(featmap_names, list(c.mask_pool_size), sampling_ratio=2),
            mask_head=MaskRCNNHeads(
                c.feat_channels, [c.mask_hidden_channels] * c.mask_head_layers, 1, norm_layer=norm
            ),
            mask_predictor=MaskRCNNPredictor(
                c.mask_hidden_channels, c.mask_hidden_channels, num_mask_channels
            ),
        )

    @property
    def class_map(self) -> ClassMap:
        """Which category id and name each predicted label stands for."""
        return self.config.class_map

    # ------------------------------------------------------------------ the three verbs

    def forward(
        self, images: ImagesLike, rois: Tensor | None = None, roi_idx: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Raw head outputs for RPN proposals, or for the given boxes.

        Args:
            images: ``(B, 3, H, W)`` or a list of ``(3, H, W)`` float tensors in ``[0, 1]``.
            rois: ``(R, 4)`` boxes ``xyxy`` in input pixels; when given, the RPN is skipped.
            roi_idx: ``(R,)`` int, the image (batch index) of each roi; may be omitted when ``B == 1``.

        Returns:
            ``cls_logits`` ``(R, K + 1)``, ``bbox_deltas`` ``(R, 4 (K + 1))`` (box-coder encoding relative to
            each roi in the resized frame), ``mask_logits`` ``(R, K + 1, M, M)`` (``(R, 1, M, M)`` with a
            class-agnostic mask head), in the order of ``rois`` (of the proposals, image by image, without).
        """
        return self._forward(images, rois, roi_idx, TorchSubNetworks(self))

    def _forward(
        self, images: ImagesLike, rois: Tensor | None, roi_idx: Tensor | None, nets: SubNetworks
    ) -> tuple[Tensor, Tensor, Tensor]:
        image_list, originals = self._prepare(images)
        features, objectness, deltas = nets.features_and_objectness(image_list.tensors)
        order = None
        if rois is None:
            proposals = self._proposals(image_list, features, objectness, deltas, training=False)[0]
        else:
            proposals, order = self._rois_to_resized(rois, roi_idx, originals, image_list.image_sizes)
        sizes = image_list.image_sizes
        cls_logits, bbox_deltas = nets.box_outputs(self.roi_heads.box_roi_pool(features, proposals, sizes))
        # zero rois run through the heads too: every parameter joins the graph, as DDP requires
        mask_logits = nets.mask_logits(self.roi_heads.mask_roi_pool(features, proposals, sizes))
        if order is not None:
            # the heads ran image by image; put the outputs back in the order of the given rois
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(len(order), device=order.device)
            cls_logits, bbox_deltas, mask_logits = (
                cls_logits[inverse],
                bbox_deltas[inverse],
                mask_logits[inverse],
            )
        return cls_logits, bbox_deltas, mask_logits

    @torch.no_grad()
    def predict(
        self,
        images: ImagesLike,
        *,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        top_k: int = 100,
        mask_thresh: float = 0.5,
    ) -> list[dict[str, Tensor]]:
        """Detections per image, in input pixels, with full-size masks (the public API's promise).

        Returns one dict per image: ``boxes`` ``(N, 4)`` float xyxy, ``scores`` ``(N,)`` sorted high to low,
        ``labels`` ``(N,)`` int64 in ``1..num_classes``, ``masks`` ``(N, H, W)`` bool at the input size.
        Runs in eval mode whatever the module's mode (and restores it). The application uses
        :class:`maskrcnn_core.Predictor`, which keeps masks cropped to their boxes instead.
        """
        from maskrcnn_core.engine.postprocess import paste_masks_full

        results = []
        for det in self._detect(images, score_thresh, nms_thresh, top_k, allow_uint8=False):
            masks = paste_masks_full(
                det["mask_probs"], det["boxes"], det["image_size"], threshold=mask_thresh
            )
            results.append(
                {"boxes": det["boxes"], "scores": det["scores"], "labels": det["labels"], "masks": masks}
            )
        return results

    def get_loss(self, images: ImagesLike, targets: Sequence[dict[str, Tensor]]) -> MaskRCNNLoss:
        """The training losses.

        ``targets`` has one dict per image: ``boxes`` ``(N, 4)`` float xyxy in input pixels,
        ``labels`` ``(N,)`` int64 in ``1..num_classes``, ``masks`` ``(N, H, W)`` uint8/bool at the image's
        size (``N`` may be 0). Returns ``rpn_cls_loss``, ``rpn_reg_loss``, ``roi_cls_loss``, ``roi_reg_loss``,
        ``mask_loss`` and their sum ``total_loss``, all scalar tensors. Dropout and BatchNorm follow the
        module mode as usual.
        """
        image_list_in = check_images(images)
        targets = check_targets(targets, image_list_in, self.config.num_classes)
        image_list, targets = self.transform(image_list_in, [dict(t) for t in targets])
        features = self._features(image_list.tensors)
        return self.get_loss_from_features(image_list, features, targets)

    def get_loss_from_features(
        self,
        image_list: ImageList,
        features: OrderedDict[str, Tensor],
        targets: Sequence[dict[str, Tensor]],
    ) -> MaskRCNNLoss:
        """The training losses of the RPN, box and mask heads on backbone + FPN ``features`` computed
        beforehand: the part of :meth:`get_loss` after the backbone, for a frozen backbone whose features
        are cached (the ``heads`` tier).

        ``image_list`` is the resized, padded batch the features are of (only the shape of its ``tensors``
        and its ``image_sizes`` are read, to place the anchors); ``features`` are the levels as the
        backbone returns them, ``(B, C, h, w)`` each; ``targets`` are in the resized frame, as the model's
        ``transform`` leaves them.
        """
        proposals, (rpn_cls, rpn_reg) = self._propose_for_loss(image_list, features, targets)

        heads = self.roi_heads
        proposals, matched_idxs, labels, regression_targets = heads.select_training_samples(
            proposals, targets
        )
        cls_logits, bbox_deltas = self._box_branch(features, proposals, image_list.image_sizes)
        roi_cls, roi_reg = fastrcnn_loss(cls_logits, bbox_deltas, labels, regression_targets)

        positive = [torch.where(lab > 0)[0] for lab in labels]
        mask_proposals = [p[i] for p, i in zip(proposals, positive, strict=False)]
        mask_matched = [m[i] for m, i in zip(matched_idxs, positive, strict=False)]
        mask_logits = self._mask_branch(features, mask_proposals, image_list.image_sizes)
        gt_labels = [t["labels"] for t in targets]
        if self.config.class_agnostic_masks:
            gt_labels = [torch.zeros_like(lab) for lab in gt_labels]
        gt_masks = [t["masks"] for t in targets]
        mask = maskrcnn_loss(mask_logits, mask_proposals, gt_masks, gt_labels, mask_matched)

        total = rpn_cls + rpn_reg + roi_cls + roi_reg + mask
        # named and ordered by the protocol's LOSS_KEYS, as the training events carry them
        values = (rpn_cls, rpn_reg, roi_cls, roi_reg, mask, total)
        return cast(MaskRCNNLoss, dict(zip(LOSS_KEYS, values, strict=True)))

    def _propose_for_loss(
        self, image_list: ImageList, features: OrderedDict[str, Tensor], targets: Sequence[dict[str, Tensor]]
    ) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        """Training proposals and the RPN's losses: the head's dense pass without gradients (proposals are
        detached anyway), the loss from the head at the sampled anchors alone (``rpn_loss``)."""
        if not supports_sampled_loss(self.rpn.head):
            return self._propose(image_list, features, training=True, targets=targets)
        feats = list(features.values())
        with torch.no_grad():
            objectness, deltas = self.rpn.head(feats)
        proposals, _ = self._proposals(image_list, features, objectness, deltas, training=True)
        anchors = self.rpn.anchor_generator(image_list, feats)
        labels, matched_gt_boxes = self.rpn.assign_targets_to_anchors(anchors, targets)
        regression_targets = self.rpn.box_coder.encode(matched_gt_boxes, anchors)
        return proposals, sampled_rpn_loss(self.rpn, feats, labels, regression_targets)

    # ------------------------------------------------------------------ inference building blocks

    @torch.no_grad()
    def detect(
        self,
        images: ImagesLike,
        *,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        top_k: int = 100,
        subnetworks: SubNetworks | None = None,
    ) -> list[dict]:
        """Detections with unpasted mask probabilities: what ``predict`` and the Predictor build on.

        ``images`` as for ``predict``, or uint8 ``(3, H, W)`` tensors in 0..255 (the Predictor's: normalised
        straight from uint8, with the same values as ``img.float() / 255`` would give).

        Returns per image: ``boxes`` ``(N, 4)`` float32 xyxy in input pixels, ``scores`` ``(N,)``,
        ``labels`` ``(N,)`` int64, ``mask_probs`` ``(N, M, M)`` float32 (the sigmoid of each detection's class
        channel, relative to its box), ``class_probs`` ``(N, K + 1)`` (the softmax row each detection was
        kept from, background first), ``pooled_features`` ``(C,)`` (the coarsest feature level averaged over
        the image, for telling near-duplicates apart), ``image_size`` ``(H, W)`` of the input.

        ``subnetworks`` runs the dense networks (an execution backend's compiled ones); default the
        model's own modules.
        """
        return self._detect(images, score_thresh, nms_thresh, top_k, allow_uint8=True, nets=subnetworks)

    def _detect(
        self,
        images: ImagesLike,
        score_thresh: float,
        nms_thresh: float,
        top_k: int,
        *,
        allow_uint8: bool,
        nets: SubNetworks | None = None,
    ) -> list[dict]:
        _check_thresholds(score_thresh, nms_thresh, top_k)
        nets = TorchSubNetworks(self) if nets is None else nets
        with eval_mode(self):
            image_list, originals = self._prepare(images, allow_uint8=allow_uint8)
            features, objectness, deltas = nets.features_and_objectness(image_list.tensors)
            proposals = self._proposals(image_list, features, objectness, deltas, training=False)[0]
            pooled = self.roi_heads.box_roi_pool(features, proposals, image_list.image_sizes)
            cls_logits, bbox_deltas = nets.box_outputs(pooled)
            boxes, scores, labels, class_probs = self._postprocess_boxes(
                cls_logits, bbox_deltas, proposals, image_list.image_sizes, score_thresh, nms_thresh, top_k
            )
            mask_probs = self._mask_probs(features, boxes, labels, image_list.image_sizes, nets)
            padded = (int(image_list.tensors.shape[-2]), int(image_list.tensors.shape[-1]))
            pooled = pooled_features(next(reversed(features.values())), image_list.image_sizes, padded)
        results = []
        for b, s, lab, m, p, f, resized, original in zip(
            boxes,
            scores,
            labels,
            mask_probs,
            class_probs,
            pooled,
            image_list.image_sizes,
            originals,
            strict=False,
        ):
            results.append(
                {
                    "boxes": resize_boxes(b, resized, original).float(),
                    "scores": s.float(),
                    "labels": lab,
                    "mask_probs": m.float(),
                    "class_probs": p.float(),
                    "pooled_features": f,
                    "image_size": (int(original[0]), int(original[1])),
                }
            )
        return results

    @torch.no_grad()
    def segment_boxes(
        self,
        image: Tensor,
        boxes: Tensor,
        labels: Tensor | None = None,
        subnetworks: SubNetworks | None = None,
    ) -> dict[str, Tensor]:
        """Masks for given boxes: how a box drawn by a user becomes a mask.

        ``image`` ``(3, H, W)``; ``boxes`` ``(N, 4)`` xyxy in input pixels; ``labels`` ``(N,)`` picks each
        mask's class channel, or ``None`` to take the classifier's best foreground class.
        Returns ``labels`` ``(N,)``, ``scores`` ``(N,)`` (the classifier's probability of that label) and
        ``mask_probs`` ``(N, M, M)`` relative to the given boxes. ``subnetworks`` as for :meth:`detect`.
        """
        nets = TorchSubNetworks(self) if subnetworks is None else subnetworks
        with eval_mode(self):
            roi_idx = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
            cls_logits, _, mask_logits = self._forward([image], boxes, roi_idx, nets)
        probs = F.softmax(cls_logits.float(), dim=-1)
        if labels is None:
            labels = probs[:, 1:].argmax(dim=1) + 1
        labels = labels.to(device=probs.device, dtype=torch.int64)
        if labels.numel() and (labels.min() < 1 or labels.max() > self.config.num_classes):
            raise ValueError(f"labels must be in 1..{self.config.num_classes}, got {labels.tolist()}")
        scores = probs.gather(1, labels[:, None])[:, 0]
        channel = torch.zeros_like(labels) if self.config.class_agnostic_masks else labels
        index = torch.arange(len(labels), device=labels.device)
        return {
            "labels": labels,
            "scores": scores,
            "mask_probs": mask_logits[index, channel].float().sigmoid(),
        }

    # ------------------------------------------------------------------ internals

    def _prepare(
        self, images: ImagesLike, *, allow_uint8: bool = False
    ) -> tuple[ImageList, list[tuple[int, int]]]:
        image_list = check_images(images, allow_uint8=allow_uint8)
        originals = [(int(img.shape[-2]), int(img.shape[-1])) for img in image_list]
        batched, _ = self.transform(image_list)
        return batched, originals

    def _features(self, tensors: Tensor) -> OrderedDict[str, Tensor]:
        features = self.backbone(tensors)
        if isinstance(features, Tensor):
            if self.config.use_fpn:
                raise ValueError("use_fpn=True needs a backbone that returns a dict of feature levels")
            return OrderedDict([("0", features)])
        if not self.config.use_fpn:
            raise ValueError("this backbone returns several feature levels: set use_fpn=True")
        levels = OrderedDict(features)
        expected = len(self.config.anchor_sizes)
        if len(levels) != expected:
            raise ValueError(
                f"the backbone returns {len(levels)} feature levels but anchor_sizes has {expected} sizes "
                "(one per level with FPN)"
            )
        return levels

    def _propose(
        self,
        image_list: ImageList,
        features: OrderedDict[str, Tensor],
        *,
        training: bool,
        targets: Sequence[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        """RPN proposals ``[(P_i, 4)]`` in resized pixels, and its two losses when ``targets`` are given."""
        objectness, deltas = self.rpn.head(list(features.values()))
        return self._proposals(image_list, features, objectness, deltas, training=training, targets=targets)

    def _proposals(
        self,
        image_list: ImageList,
        features: OrderedDict[str, Tensor],
        objectness: list[Tensor],
        deltas: list[Tensor],
        *,
        training: bool,
        targets: Sequence[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        """:meth:`_propose` from the RPN head's outputs."""
        rpn = self.rpn
        feats = list(features.values())
        anchors = rpn.anchor_generator(image_list, feats)
        num_anchors_per_level = [o[0].numel() for o in objectness]
        all_objectness, all_deltas = concat_box_prediction_layers(objectness, deltas)
        proposals = rpn.box_coder.decode(all_deltas.detach(), anchors).view(len(anchors), -1, 4)
        with rpn.phase(training):
            boxes, _ = rpn.filter_proposals(
                proposals, all_objectness, image_list.image_sizes, num_anchors_per_level
            )
        if targets is None:
            zero = all_objectness.sum() * 0
            return boxes, (zero, zero)
        labels, matched_gt_boxes = rpn.assign_targets_to_anchors(anchors, targets)
        regression_targets = rpn.box_coder.encode(matched_gt_boxes, anchors)
        return boxes, rpn.compute_loss(all_objectness, all_deltas, labels, regression_targets)

    def _box_branch(
        self, features: OrderedDict[str, Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor]:
        pooled = self.roi_heads.box_roi_pool(features, proposals, image_sizes)
        return TorchSubNetworks(self).box_outputs(pooled)

    def _mask_branch(
        self, features: OrderedDict[str, Tensor], boxes: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> Tensor:
        # zero rois run through the heads too: every parameter joins the graph, as DDP requires
        pooled = self.roi_heads.mask_roi_pool(features, boxes, image_sizes)
        return TorchSubNetworks(self).mask_logits(pooled)

    def _mask_probs(
        self,
        features: OrderedDict[str, Tensor],
        boxes: list[Tensor],
        labels: list[Tensor],
        image_sizes: list[tuple[int, int]],
        nets: SubNetworks,
    ) -> list[Tensor]:
        pooled = self.roi_heads.mask_roi_pool(features, boxes, image_sizes)
        mask_logits = nets.mask_logits(pooled)
        all_labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
        channel = torch.zeros_like(all_labels) if self.config.class_agnostic_masks else all_labels
        index = torch.arange(len(all_labels), device=mask_logits.device)
        probs = mask_logits[index, channel].sigmoid()
        return list(probs.split([len(b) for b in boxes]))

    def _postprocess_boxes(
        self,
        cls_logits: Tensor,
        bbox_deltas: Tensor,
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        score_thresh: float,
        nms_thresh: float,
        top_k: int,
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """torchvision's RoI post-processing with the thresholds as arguments instead of module state;
        also the softmax row each kept detection came from (its class ambiguity)."""
        num_classes = cls_logits.shape[-1]
        pred_boxes = self.roi_heads.box_coder.decode(bbox_deltas, proposals)
        pred_scores = F.softmax(cls_logits, -1)
        per_image = [len(p) for p in proposals]
        out_boxes, out_scores, out_labels, out_probs = [], [], [], []
        for boxes, scores, size in zip(
            pred_boxes.split(per_image), pred_scores.split(per_image), image_sizes, strict=False
        ):
            probs = scores
            boxes = box_ops.clip_boxes_to_image(boxes, size)
            labels = torch.arange(num_classes, device=boxes.device).view(1, -1).expand_as(scores)
            rows = torch.arange(len(scores), device=boxes.device).view(-1, 1).expand_as(scores)
            boxes, scores, labels, rows = (
                boxes[:, 1:].reshape(-1, 4),
                scores[:, 1:].reshape(-1),
                labels[:, 1:].reshape(-1),
                rows[:, 1:].reshape(-1),
            )
            keep = torch.where(scores > score_thresh)[0]
            boxes, scores, labels, rows = boxes[keep], scores[keep], labels[keep], rows[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels, rows = boxes[keep], scores[keep], labels[keep], rows[keep]
            keep = box_ops.batched_nms(boxes, scores, labels, nms_thresh)[:top_k]
            out_boxes.append(boxes[keep])
            out_scores.append(scores[keep])
            out_labels.append(labels[keep])
            out_probs.append(probs[rows[keep]])
        return out_boxes, out_scores, out_labels, out_probs

    def _rois_to_resized(
        self,
        rois: Tensor,
        roi_idx: Tensor | None,
        originals: list[tuple[int, int]],
        resized: list[tuple[int, int]],
    ) -> tuple[list[Tensor], Tensor]:
        """Per-image rois in resized pixels, and the permutation that grouped them by image."""
        if not isinstance(rois, Tensor) or rois.ndim != 2 or rois.shape[1] != 4:
            raise ValueError(
                f"rois must be an (R, 4) tensor of xyxy boxes, got {getattr(rois, 'shape', rois)}"
            )
        if not rois.is_floating_point() or not torch.isfinite(rois).all():
            raise ValueError("rois must be finite floating-point boxes")
        if roi_idx is None:
            if len(originals) != 1:
                raise ValueError("roi_idx is required when the batch has more than one image")
            roi_idx = torch.zeros(len(rois), dtype=torch.int64, device=rois.device)
        if not isinstance(roi_idx, Tensor) or roi_idx.shape != (len(rois),):
            raise ValueError(
                f"roi_idx must be a tensor of shape ({len(rois)},), got {getattr(roi_idx, 'shape', roi_idx)}"
            )
        roi_idx = roi_idx.to(device=rois.device, dtype=torch.int64)
        if len(roi_idx) and (roi_idx.min() < 0 or roi_idx.max() >= len(originals)):
            raise ValueError(f"roi_idx values must be in 0..{len(originals) - 1}")
        order = torch.argsort(roi_idx, stable=True)
        per_image = [
            resize_boxes(rois[roi_idx == i].float(), orig, new)
            for i, (orig, new) in enumerate(zip(originals, resized, strict=False))
        ]
        return per_image, order


class _PhasedRPN(RegionProposalNetwork):
    """torchvision's RPN with the train/test top-n choice made by the caller, not by the module mode."""

    _training_phase: bool = False

    def pre_nms_top_n(self) -> int:
        return self._pre_nms_top_n["training" if self._training_phase else "testing"]

    def post_nms_top_n(self) -> int:
        return self._post_nms_top_n["training" if self._training_phase else "testing"]

    @contextlib.contextmanager
    def phase(self, training: bool) -> Iterator[None]:
        previous, self._training_phase = self._training_phase, training
        try:
            yield
        finally:
            self._training_phase = previous


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for the duration (inference behaviour of dropout and batch norm), the mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _check_thresholds(score_thresh: float, nms_thresh: float, top_k: int) -> None:
    if not 0.0 <= score_thresh <= 1.0:
        raise ValueError(f"score_thresh must be in [0, 1], got {score_thresh}")
    if not 0.0 <= nms_thresh <= 1.0:
        raise ValueError(f"nms_thresh must be in [0, 1], got {nms_thresh}")
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
