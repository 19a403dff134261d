"""The Mask R-CNN model: torchvision's detection parts behind the verbs forward, predict, get_loss."""

from maskrcnn_core.model.mask_rcnn import LOSS_KEYS, MaskRCNN

__all__ = ["LOSS_KEYS", "MaskRCNN"]
