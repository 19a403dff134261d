"""Pretrained weights one can download: torchvision's COCO Mask R-CNN files, and the downloader.

Torch-free (stdlib ``urllib`` only): the app lists, checks and downloads these files outside its inference
worker. Files land in torch hub's cache folder, where torchvision itself would put them, so a file
downloaded by either is found by both. A download is written to a temporary file next to its final name,
checked against the sha256 prefix that torchvision's file names carry, and renamed into place: a failed,
corrupted or cancelled download leaves nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from maskrcnn_core.cancel import CancelToken

#: torchvision's download folder; the environment variable replaces it (a mirror, an air-gapped site, tests)
DEFAULT_BASE_URL = "https://download.pytorch.org/models/"
BASE_URL_ENV = "MASKRCNN_WEIGHTS_URL"

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0
MB = 1024 * 1024


@dataclass(frozen=True)
class PretrainedWeights:
    """One downloadable checkpoint: its alias (what ``weights=`` accepts), file name and what it scores."""

    name: str
    filename: str
    arch: str
    size_bytes: int
    box_ap: float  # COCO val2017 box AP, as torchvision reports it
    mask_ap: float
    description: str

    @property
    def sha256_prefix(self) -> str:
        return sha256_prefix_of(self.filename)

    @property
    def size_mb(self) -> float:
        return self.size_bytes / MB

    @property
    def metrics(self) -> str:
        return f"box AP {self.box_ap:.1f} / mask AP {self.mask_ap:.1f}"


#: torchvision's COCO Mask R-CNN checkpoints, by alias (sizes and COCO val2017 AP from torchvision's docs)
CATALOGUE: dict[str, PretrainedWeights] = {
    "coco": PretrainedWeights(
        name="coco",
        filename="maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
        arch="resnet50_fpn",
        size_bytes=178_090_079,
        box_ap=37.9,
        mask_ap=34.6,
        description="ResNet-50 FPN trained on COCO (80 object categories), torchvision v1",
    ),
    "coco-v2": PretrainedWeights(
        name="coco-v2",
        filename="maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
        arch="resnet50_fpn_v2",
        size_bytes=185_828_591,
        box_ap=47.4,
        mask_ap=41.8,
        description="ResNet-50 FPN v2 trained on COCO (80 object categories), more accurate, a bit slower",
    ),
}

Progress = Callable[[int, int], None]  # (bytes so far, total bytes; 0 when the server does not say)


class DownloadError(OSError):
    """A download that could not be completed; the message says why and what to do, in one line."""


class DownloadCancelled(DownloadError):
    """The cancel token was set; the partial file is gone."""


def sha256_prefix_of(filename: str) -> str:
    """The hash prefix a torchvision file name carries: the hex after the last ``-`` of its stem."""
    stem = Path(filename).name.split(".", 1)[0]
    prefix = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    if len(prefix) < 6 or any(c not in "0123456789abcdef" for c in prefix):
        raise ValueError(f"{filename} carries no sha256 prefix (expected name-<hex>.pth)")
    return prefix


def hub_checkpoints_dir() -> Path:
    """torch hub's download cache, found as ``torch.hub.get_dir()`` finds it but without torch:
    ``$TORCH_HOME/hub/checkpoints``, else ``$XDG_CACHE_HOME/torch/hub/checkpoints`` (``~/.cache``)."""
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        return Path(torch_home).expanduser() / "hub" / "checkpoints"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "torch" / "hub" / "checkpoints"


def base_url() -> str:
    """Where the files are fetched from: ``$MASKRCNN_WEIGHTS_URL`` (a mirror) or torchvision's site.
    ``DownloadError`` for a value that is no http(s) or file URL."""
    url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https", "file") or (parsed.scheme != "file" and not parsed.netloc):
        raise DownloadError(
            f"{BASE_URL_ENV}={url!r} is not a download address; give an http(s):// or file:// URL of a folder"
        )
    return url if url.endswith("/") else url + "/"


def entry(name: str) -> PretrainedWeights:
    """The catalogue entry for an alias; ``KeyError`` with the known names otherwise."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown weights '{name}'; known: {', '.join(CATALOGUE)}") from None


def url_of(weights: PretrainedWeights) -> str:
    return base_url() + weights.filename


def cached_path(weights: PretrainedWeights, folder: Path | None = None) -> Path:
    """Where the file is (or would be) in the cache."""
    return (folder or hub_checkpoints_dir()) / weights.filename


def is_cached(weights: PretrainedWeights, folder: Path | None = None) -> bool:
    return cached_path(weights, folder).is_file()


def download(
    weights: PretrainedWeights,
    *,
    folder: Path | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download ``weights`` into the cache folder and return its path (at once when already there).

    Raises :class:`DownloadError` (one-line message) for no network, an HTTP error, a file whose hash does
    not match its name, a cache folder that cannot be written or a full disk; :class:`DownloadCancelled`
    when ``cancel`` is set. In every one of these cases nothing is left in the cache.
    """
    folder = folder or hub_checkpoints_dir()
    target = folder / weights.filename
    if target.is_file():
        return target
    url = url_of(weights)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{weights.filename}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise DownloadError(
            f"cannot write to the weights folder {folder}: {exc.strerror or exc}; "
            f"set TORCH_HOME to a writable folder"
        ) from None
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            digest = _fetch(url, out, weights, folder, progress, cancel, timeout)
        expected = weights.sha256_prefix
        if not digest.startswith(expected):
            raise DownloadError(
                f"{url} did not match its checksum (sha256 {digest[:8]}…, expected {expected}…): "
                "the download was corrupted or the file is not the one named; nothing was kept"
            )
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


def _fetch(
    url: str,
    out,  # noqa: ANN001 - a binary file
    weights: PretrainedWeights,
    folder: Path,
    progress: Progress | None,
    cancel: CancelToken | None,
    timeout: float,
) -> str:
    """Stream ``url`` into ``out``; return the sha256 hex digest of what was written."""
    digest = hashlib.sha256()

    def unreachable(reason: object) -> DownloadError:
        return DownloadError(f"cannot download {url} ({reason}); download it by hand and put it in {folder}")

    try:
        response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - http(s) from our catalogue
    except urllib.error.HTTPError as exc:
        raise unreachable(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise unreachable(exc.reason) from None
    except (TimeoutError, ConnectionError, HTTPException, OSError) as exc:
        raise unreachable(exc) from None
    with response:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        if progress is not None:
            progress(0, total)
        while True:
            if cancel is not None and cancel.cancelled:
                raise DownloadCancelled(f"download of {weights.filename} cancelled")
            try:
                chunk = response.read(CHUNK_BYTES)
            except (TimeoutError, ConnectionError, HTTPException, OSError) as exc:
                raise unreachable(f"connection lost after {done / MB:.1f} MB: {exc}") from None
            if not chunk:
                break
            try:
                out.write(chunk)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DownloadError(
                        f"not enough disk space in {folder} for {weights.filename} "
                        f"({weights.size_mb:.0f} MB); free some space or set TORCH_HOME elsewhere"
                    ) from None
                raise DownloadError(
                    f"cannot write {weights.filename} in {folder}: {exc.strerror or exc}"
                ) from None
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if total and done != total:
        raise unreachable(f"the connection closed after {done} of {total} bytes")
    return digest.hexdigest()
