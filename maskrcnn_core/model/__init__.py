"""The Mask R-CNN model: torchvision's detection parts composed behind the seed API."""

from maskrcnn_core.model.mask_rcnn import LOSS_KEYS, MaskRCNN

__all__ = ["LOSS_KEYS", "MaskRCNN"]
