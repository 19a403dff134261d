"""`MaskRCNNConfig`: the model's published configuration, plus what a real model needs.

The first thirteen fields are the model's original public API, kept as they are for its callers; the rest
carry what a product needs around them: the class names and dataset category ids, the input resize range,
the RPN and RoI-head sampling settings (torchvision's defaults), and the layout switches that the
ResNet-50-FPN v2 variant uses. Every check raises ``ValueError`` naming the offending field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from maskrcnn_core.types import ClassMap

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class MaskRCNNConfig:
    """How to build a :class:`maskrcnn_core.MaskRCNN`.

    ``backbone`` maps a normalised ``(B, 3, H, W)`` batch to either one feature map
    ``(B, feat_channels, H / s, W / s)`` (``use_fpn=False``) or an ordered dict of FPN levels with
    ``feat_channels`` channels each (``use_fpn=True``; the names in ``fpn_levels`` are pooled by RoIAlign).

    With ``use_fpn=False`` every anchor size is used on the one feature map; with ``use_fpn=True``
    ``anchor_sizes`` has one size per pyramid level (torchvision's ``(32, 64, 128, 256, 512)``).
    ``anchor_stride`` is the backbone's nominal output stride; the anchor grid itself uses the stride
    measured from the feature map, as torchvision's ``AnchorGenerator`` does, so a backbone whose real
    stride differs still gets correctly placed anchors.
    """

    backbone: nn.Module
    feat_channels: int
    num_classes: int
    use_fpn: bool = False
    anchor_sizes: tuple[int, ...] = (128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_stride: int = 16
    pool_size: tuple[int, int] = (7, 7)
    hidden_dim: int = 4096
    dropout: float = 0.5
    mask_pool_size: tuple[int, int] = (14, 14)
    mask_hidden_channels: int = 256
    mask_out_size: int = 28

    # --- beyond the original thirteen fields --------------------------------------------------------
    #: one name per foreground class, unique; defaults to ``class_1 .. class_K`` (see ``class_map``)
    class_names: tuple[str, ...] | None = None
    #: the dataset's category id of each class (COCO ``category_id``), unique; defaults to ``1 .. K``
    category_ids: tuple[int, ...] | None = None
    #: one mask per RoI instead of one per class (lighter when there are many classes)
    class_agnostic_masks: bool = False
    #: shorter-side target size; several values mean scale jitter, drawn per image by ``get_loss``
    min_size: int | tuple[int, ...] = 800
    max_size: int = 1333
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    #: the FPN levels that RoIAlign pools from (torchvision pools "0".."3", not "pool")
    fpn_levels: tuple[str, ...] = ("0", "1", "2", "3")
    # RPN (torchvision's defaults)
    rpn_conv_depth: int = 1
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    # RoI heads
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    #: 0: the original two-layer MLP box head; N > 0: N 3x3 convs then one FC layer (the v2 layout)
    box_head_conv_layers: int = 0
    mask_head_layers: int = 4
    #: BatchNorm inside the box-conv and mask heads (the v2 layout)
    head_batch_norm: bool = False
    #: free-form description of the architecture, written into checkpoints (see ``model.factories``)
    arch: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, nn.Module):
            raise ValueError(f"backbone must be an nn.Module, got {type(self.backbone).__name__}")
        _positive_int("feat_channels", self.feat_channels)
        _positive_int("num_classes", self.num_classes)
        if not self.anchor_sizes or any(s <= 0 for s in self.anchor_sizes):
            raise ValueError(f"anchor_sizes must be non-empty and positive, got {self.anchor_sizes}")
        if not self.aspect_ratios or any(r <= 0 for r in self.aspect_ratios):
            raise ValueError(f"aspect_ratios must be non-empty and positive, got {self.aspect_ratios}")
        _positive_int("anchor_stride", self.anchor_stride)
        _pair("pool_size", self.pool_size)
        _pair("mask_pool_size", self.mask_pool_size)
        if self.mask_pool_size[0] != self.mask_pool_size[1]:
            raise ValueError(f"mask_pool_size must be square, got {self.mask_pool_size}")
        _positive_int("hidden_dim", self.hidden_dim)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        _positive_int("mask_hidden_channels", self.mask_hidden_channels)
        if self.mask_out_size != 2 * self.mask_pool_size[0]:
            raise ValueError(
                f"mask_out_size must equal 2 * mask_pool_size[0] = {2 * self.mask_pool_size[0]} "
                f"(the mask head upsamples once by 2), got {self.mask_out_size}"
            )
        numbered = ClassMap.numbered(self.num_classes)
        names = numbered.names if self.class_names is None else tuple(str(n) for n in self.class_names)
        if len(names) != self.num_classes:
            raise ValueError(f"class_names has {len(names)} names but num_classes is {self.num_classes}")
        ids = numbered.category_ids if self.category_ids is None else tuple(int(i) for i in self.category_ids)
        if len(ids) != self.num_classes:
            raise ValueError(f"category_ids has {len(ids)} ids but num_classes is {self.num_classes}")
        try:
            ClassMap.from_lists(names, ids)
        except ValueError as exc:
            raise ValueError(f"class_names / category_ids: {exc}") from None
        self.class_names, self.category_ids = names, ids
        sizes = (self.min_size,) if isinstance(self.min_size, int) else tuple(self.min_size)
        if not sizes or any(int(s) <= 0 for s in sizes):
            raise ValueError(f"min_size must be positive, got {self.min_size}")
        _positive_int("max_size", self.max_size)
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or any(s <= 0 for s in self.image_std):
            raise ValueError("image_mean and image_std need 3 values each, std positive")
        if self.use_fpn and not self.fpn_levels:
            raise ValueError("fpn_levels must name at least one level when use_fpn is True")
        for name in (
            "rpn_nms_thresh",
            "rpn_fg_iou_thresh",
            "rpn_bg_iou_thresh",
            "rpn_positive_fraction",
            "box_fg_iou_thresh",
            "box_bg_iou_thresh",
            "box_positive_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name in (
            "rpn_conv_depth",
            "rpn_pre_nms_top_n_train",
            "rpn_pre_nms_top_n_test",
            "rpn_post_nms_top_n_train",
            "rpn_post_nms_top_n_test",
            "rpn_batch_size_per_image",
            "box_batch_size_per_image",
            "mask_head_layers",
        ):
            _positive_int(name, getattr(self, name))
        if self.box_head_conv_layers < 0:
            raise ValueError(f"box_head_conv_layers must be >= 0, got {self.box_head_conv_layers}")

    @property
    def class_map(self) -> ClassMap:
        """Which category id and name each label ``1..num_classes`` stands for."""
        assert self.class_names is not None and self.category_ids is not None  # __post_init__ sets both
        return ClassMap.from_lists(self.class_names, self.category_ids)

    @property
    def num_anchors_per_location(self) -> int:
        if self.use_fpn:
            return len(self.aspect_ratios)
        return len(self.anchor_sizes) * len(self.aspect_ratios)


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _pair(name: str, value: object) -> None:
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(isinstance(v, int) and v > 0 for v in value)
    ):
        raise ValueError(f"{name} must be a pair of positive integers, got {value!r}")
