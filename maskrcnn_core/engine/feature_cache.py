"""The ``heads`` tier's features: what the frozen backbone + FPN make of each training image (and of its
mirror image), computed once before the first step and kept as float16.

They stay in memory while they fit a budget (by default half the memory the system has available); past
it every item goes to the run folder, one file per item, with a manifest that names what they are the
features of: the backbone + FPN weights and the input transform (:func:`weights_fingerprint`), and each
image's file, size and modification time. A resumed run reuses the files whose manifest entry still
matches and whose checksum is right; anything else (another model, a changed image, a damaged or missing
file, an unreadable manifest) is computed again, never trusted.

:func:`compute_features` is the one place features are computed, so a faster inference backend for that
single pass plugs in there.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor
from torchvision.models.detection.image_list import ImageList

from maskrcnn_core.atomic import atomic_write
from maskrcnn_core.data.dataset import InstanceDataset
from maskrcnn_core.model.mask_rcnn import MaskRCNN
from maskrcnn_core.model.subnetworks import SubNetworks, TorchSubNetworks
from maskrcnn_core.system_memory import available_memory

FEATURE_CACHE_DIR = "feature_cache"  # in the run folder, when the features do not fit in memory
MANIFEST = "manifest.json"
CACHE_DTYPE = torch.float16  # half the memory of float32; the heads train in float32 on the CPU
#: ``(done, total, on_disk)`` after each item of the caching pass
CachingProgress = Callable[[int, int, bool], None]


class Cancellation(Protocol):
    """What the caching pass asks between images (a :class:`~maskrcnn_core.cancel.CancelToken` will do)."""

    @property
    def cancelled(self) -> bool: ...


class FeatureCacheError(RuntimeError):
    """A cached item cannot be read back during the run (its file changed or vanished); says which."""


@dataclass(frozen=True)
class ImageFeatures:
    """The backbone + FPN features of one image, resized and padded alone as the model's transform does."""

    levels: OrderedDict[str, Tensor]  # (C, h, w) each, CACHE_DTYPE
    image_size: tuple[int, int]  # (H, W) after the resize: what the heads clip boxes to
    padded_size: tuple[int, int]  # (H, W) of the padded input the features are of

    @property
    def nbytes(self) -> int:
        return sum(level.numel() * level.element_size() for level in self.levels.values())

    def to_dict(self) -> dict[str, Any]:
        return {"levels": dict(self.levels), "image_size": self.image_size, "padded_size": self.padded_size}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ImageFeatures:
        levels = raw["levels"]
        if not isinstance(levels, dict) or not all(isinstance(v, Tensor) for v in levels.values()):
            raise ValueError("not a feature file")
        return cls(
            OrderedDict(levels),
            tuple(raw["image_size"]),
            tuple(raw["padded_size"]),
        )


def compute_features(
    model: MaskRCNN, images: Sequence[Tensor], subnetworks: SubNetworks | None = None
) -> list[ImageFeatures]:
    """The frozen backbone + FPN features of each ``(3, H, W)`` float image in ``[0, 1]``, each resized to
    the model's inference size (no scale jitter) and padded alone, on the model's device, as float16 on
    the CPU. ``subnetworks`` runs the backbone (a CPU backend's compiled one); default the model's own."""
    device = next(model.parameters()).device
    was_training = model.backbone.training
    model.backbone.eval()
    out = []
    try:
        with torch.no_grad():
            for image in images:
                image_list, _ = model.transform([image.to(device)])
                if subnetworks is None:
                    levels = model._features(image_list.tensors)
                else:
                    levels = subnetworks.features_and_objectness(image_list.tensors)[0]
                out.append(
                    ImageFeatures(
                        OrderedDict((k, v[0].to("cpu", CACHE_DTYPE)) for k, v in levels.items()),
                        (int(image_list.image_sizes[0][0]), int(image_list.image_sizes[0][1])),
                        (int(image_list.tensors.shape[-2]), int(image_list.tensors.shape[-1])),
                    )
                )
    finally:
        model.backbone.train(was_training)
    return out


def batch_features(
    items: Sequence[ImageFeatures], device: torch.device, dtype: torch.dtype = torch.float32
) -> tuple[ImageList, OrderedDict[str, Tensor]]:
    """Cached features of several images as one batch for :meth:`MaskRCNN.get_loss_from_features`: each
    level zero-padded bottom and right to the largest, as the padded images' features are laid out."""
    height = max(item.padded_size[0] for item in items)
    width = max(item.padded_size[1] for item in items)
    levels: OrderedDict[str, Tensor] = OrderedDict()
    for name in items[0].levels:
        maps = [item.levels[name] for item in items]
        h, w = max(m.shape[-2] for m in maps), max(m.shape[-1] for m in maps)
        # each map is converted straight into its slot; only the padding is zeroed (the maps of photos of
        # one size fill the batch, and zeroing all of it first was a second pass over the largest level)
        batch = torch.empty((len(maps), maps[0].shape[0], h, w), dtype=dtype, device=device)
        for i, m in enumerate(maps):
            mh, mw = m.shape[-2], m.shape[-1]
            batch[i, :, :mh, :mw].copy_(m)
            batch[i, :, mh:, :].zero_()
            batch[i, :, :mh, mw:].zero_()
        levels[name] = batch
    # the anchors read only the batch's shape: an expanded scalar holds it without any memory
    shape_only = torch.zeros((), dtype=dtype, device=device).expand(len(items), 3, height, width)
    return ImageList(shape_only, [item.image_size for item in items]), levels


class FrozenBackboneNetworks(TorchSubNetworks):
    """:class:`~maskrcnn_core.model.subnetworks.SubNetworks` for scoring a model whose backbone + FPN are
    frozen (the ``heads`` tier, during its run): the features of each input batch are computed once — by
    ``backbone`` (a CPU backend's compiled network) where given, else by the model's own modules — and
    kept, in float32, while they fit ``memory_budget`` bytes, so the validations of a run after the first
    cost the heads alone. The RPN head, box head and mask head, which train, always run in torch.

    A batch is known by a digest of its pixels, so a batch that differs in any value is computed anew."""

    def __init__(self, model: MaskRCNN, backbone: SubNetworks | None, memory_budget: int) -> None:
        super().__init__(model)
        self.backbone, self.memory_budget = backbone, memory_budget
        self._kept: dict[tuple[tuple[int, ...], bytes], OrderedDict[str, Tensor]] = {}
        self._kept_bytes = 0
        self.computed = 0  # input batches whose features were computed (not reused)

    def features_and_objectness(
        self, images: Tensor
    ) -> tuple[OrderedDict[str, Tensor], list[Tensor], list[Tensor]]:
        key = (tuple(images.shape), hashlib.blake2b(images.detach().cpu().numpy().tobytes()).digest())
        features = self._kept.get(key)
        if features is None:
            self.computed += 1
            if self.backbone is None:
                features = self.model._features(images)
            else:  # its objectness is of the RPN head before training: the torch head runs below
                features = self.backbone.features_and_objectness(images)[0]
            size = sum(level.numel() * level.element_size() for level in features.values())
            if self._kept_bytes + size <= self.memory_budget:
                self._kept[key] = features
                self._kept_bytes += size
        objectness, deltas = self.model.rpn.head(list(features.values()))
        return features, objectness, deltas


def weights_fingerprint(model: MaskRCNN) -> str:
    """What the features depend on, hashed: the backbone + FPN weights and the input transform."""
    digest = hashlib.sha256()
    t = model.transform
    settings = [list(t.min_size), t.max_size, list(t.image_mean), list(t.image_std), t.size_divisible]
    digest.update(json.dumps(settings).encode())
    for name, tensor in sorted(model.backbone.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def default_memory_budget() -> int:
    """Bytes of features kept in memory when the run does not say: half of what the system has available."""
    return available_memory() // 2


Key = tuple[int, bool]  # (dataset index, mirrored)


class FeatureCache:
    """The features of every training image of a run (and of its mirror image when ``mirrored``).

    :meth:`build` fills it (reusing a valid cache in ``folder``), :meth:`get` serves one item.
    """

    def __init__(self, folder: str | Path, memory_budget: int | None = None) -> None:
        self.folder = Path(folder)
        self.memory_budget = default_memory_budget() if memory_budget is None else int(memory_budget)
        self.on_disk = False
        self._memory: dict[Key, ImageFeatures] = {}
        self._memory_bytes = 0
        self._manifest: dict[str, Any] = {}
        self._checked: set[str] = set()  # files whose checksum was verified in this run
        self._backbone_factory: Callable[[], SubNetworks | None] | None = None
        self._subnetworks: SubNetworks | None = None  # what runs the backbone; None: the model's modules

    def build(
        self,
        model: MaskRCNN,
        dataset: InstanceDataset,
        *,
        mirrored: bool,
        cancel: Cancellation | None = None,
        progress: CachingProgress | None = None,
        backbone: Callable[[], SubNetworks | None] | None = None,
    ) -> bool:
        """Compute (or reuse) the features of every item; ``False`` when ``cancel`` stopped it first (the
        items written to the folder so far stay there for a resumed run). ``backbone`` gives what runs the
        backbone (see :func:`compute_features`); it is called once, and only when something is computed."""
        self._backbone_factory = backbone
        self._manifest = self._read_manifest(weights_fingerprint(model))
        flips = (False, True) if mirrored else (False,)
        total = len(dataset) * len(flips)
        for index in range(len(dataset)):
            if cancel is not None and cancel.cancelled:
                return False
            self._fill(model, dataset, index, flips)
            if progress is not None:
                progress((index + 1) * len(flips), total, self.on_disk)
        return True

    @property
    def memory_room(self) -> int:
        """Bytes of the memory budget the training features leave (none once they went to disk)."""
        return 0 if self.on_disk else max(0, self.memory_budget - self._memory_bytes)

    def get(self, index: int, mirrored: bool) -> ImageFeatures:
        key = (index, mirrored)
        if key in self._memory:
            return self._memory[key]
        entry = self._manifest.get("items", {}).get(_name(key))
        if entry is None:
            raise FeatureCacheError(f"no cached features for training image {index}")
        path = self.folder / entry["file"]
        try:
            return _load(path.read_bytes())
        except Exception as exc:  # a file removed or damaged during the run
            raise FeatureCacheError(f"cannot read the cached features {path}: {exc}") from exc

    # ----------------------------------------------------------------------------------- internals
    def _has(self, key: Key, dataset: InstanceDataset) -> bool:
        return key in self._memory or self._is_on_disk(key, dataset)

    def _fill(self, model: MaskRCNN, dataset: InstanceDataset, index: int, flips: tuple[bool, ...]) -> None:
        """The features of image ``index`` (and its mirror image): reused from the folder when valid."""
        missing = [flip for flip in flips if not self._has((index, flip), dataset)]
        for flip in [f for f in flips if f not in missing and (index, f) not in self._memory]:
            if not self.on_disk:  # valid on disk, wanted in memory
                self._keep((index, flip), self.get(index, flip), dataset)
        if not missing:
            return
        image, _ = _unaugmented(dataset, index)
        if self._backbone_factory is not None:
            self._subnetworks, self._backbone_factory = self._backbone_factory(), None
        images = [image.flip(-1) if flip else image for flip in missing]
        computed = compute_features(model, images, self._subnetworks)
        for flip, features in zip(missing, computed, strict=True):
            self._keep((index, flip), features, dataset)

    def _keep(self, key: Key, features: ImageFeatures, dataset: InstanceDataset) -> None:
        if not self.on_disk and self._memory_bytes + features.nbytes > self.memory_budget:
            self._spill(dataset)
        if self.on_disk:
            if not self._is_on_disk(key, dataset):
                self._write(key, features, dataset)
            return
        self._memory[key] = features
        self._memory_bytes += features.nbytes

    def _spill(self, dataset: InstanceDataset) -> None:
        """Past the memory budget: everything goes to the folder from now on."""
        self.on_disk = True
        for key, features in self._memory.items():
            if not self._is_on_disk(key, dataset):
                self._write(key, features, dataset)
        self._memory.clear()
        self._memory_bytes = 0

    def _write(self, key: Key, features: ImageFeatures, dataset: InstanceDataset) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(features.to_dict(), buffer)
        data = buffer.getvalue()
        name = _name(key)
        atomic_write(self.folder / f"{name}.pt", lambda f: f.write(data))
        entry = {**_image_identity(dataset, key[0]), "file": f"{name}.pt", "sha256": _sha256(data)}
        self._manifest.setdefault("items", {})[name] = entry
        text = json.dumps(self._manifest, indent=1).encode()
        atomic_write(self.folder / MANIFEST, lambda f: f.write(text))

    def _is_on_disk(self, key: Key, dataset: InstanceDataset) -> bool:
        """Whether the folder holds a trustworthy file for ``key``: same image, intact file."""
        name = _name(key)
        entry = self._manifest.get("items", {}).get(name)
        if not isinstance(entry, dict):
            return False
        identity = _image_identity(dataset, key[0])
        if any(entry.get(k) != v for k, v in identity.items()):
            return False
        if name in self._checked:
            return True
        try:
            data = (self.folder / str(entry["file"])).read_bytes()
            ok = _sha256(data) == entry.get("sha256")
            if ok:
                _load(data)
        except Exception:  # missing, unreadable or damaged: compute it again
            ok = False
        if ok:
            self._checked.add(name)
        else:
            del self._manifest["items"][name]
        return ok

    def _read_manifest(self, fingerprint: str) -> dict[str, Any]:
        """The folder's manifest when it is for these weights; otherwise the folder is cleared."""
        fresh: dict[str, Any] = {"fingerprint": fingerprint, "items": {}}
        path = self.folder / MANIFEST
        if not self.folder.exists():
            return fresh
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            valid = (
                isinstance(manifest, dict)
                and manifest.get("fingerprint") == fingerprint
                and isinstance(manifest.get("items"), dict)
            )
        except (OSError, ValueError):
            valid = False
        if valid:
            return manifest
        # another model's features, or a manifest that cannot be read: nothing in the folder is trusted
        shutil.rmtree(self.folder, ignore_errors=True)
        return fresh


def _name(key: Key) -> str:
    index, mirrored = key
    return f"{index:06d}{'-mirrored' if mirrored else ''}"


def _image_identity(dataset: InstanceDataset, index: int) -> dict[str, Any]:
    path = dataset.images[index].path
    stat = path.stat()
    return {"image": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _unaugmented(dataset: InstanceDataset, index: int) -> tuple[Tensor, dict]:
    transforms, dataset.transforms = dataset.transforms, None
    try:
        return dataset[index]
    finally:
        dataset.transforms = transforms


def _load(data: bytes) -> ImageFeatures:
    return ImageFeatures.from_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
