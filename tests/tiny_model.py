"""The smallest Mask R-CNN the tests train: MobileNetV2-FPN from random weights, heads a few channels wide,
64-96 px inputs. A training step takes a fraction of a second on one thread."""

TINY = dict(
    fpn_channels=16,
    hidden_dim=32,
    mask_hidden_channels=16,
    min_size=64,
    max_size=96,
    backbone_weights=None,
    trainable_backbone_layers=2,
)

# The same model as `maskrcnn_core train` flags, for the tests that run the command line.
TINY_CLI_FLAGS = [
    "--backbone",
    "mobilenet_v2",
    "--no-pretrained-backbone",
    "--fpn-channels",
    str(TINY["fpn_channels"]),
    "--hidden-dim",
    str(TINY["hidden_dim"]),
    "--mask-hidden-channels",
    str(TINY["mask_hidden_channels"]),
    "--min-size",
    str(TINY["min_size"]),
    "--max-size",
    str(TINY["max_size"]),
]
