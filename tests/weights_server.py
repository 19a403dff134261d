"""A real HTTP server on 127.0.0.1 serving checkpoint files, for download tests without the internet.

``WeightsServer(folder)`` serves ``folder`` on a free port (optionally slowly, a chunk at a time);
``named_by_hash`` gives a file the torchvision-style name ``stem-<sha256 prefix>.pth``; ``closed_port``
is a port nothing listens on (connection refused).
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from functools import partial
from pathlib import Path

from maskrcnn_core.downloads import PretrainedWeights


class _Handler(http.server.SimpleHTTPRequestHandler):
    delay_per_chunk = 0.0
    chunk = 64 * 1024

    def copyfile(self, source, outputfile) -> None:  # noqa: ANN001 - the base class's signature
        while data := source.read(self.chunk):
            outputfile.write(data)
            if self.delay_per_chunk:
                time.sleep(self.delay_per_chunk)

    def log_message(self, *args) -> None:  # noqa: ANN002 - keep test output quiet
        pass


class WeightsServer:
    """Serves ``folder`` at ``self.url`` until ``close()``; ``delay_per_chunk`` seconds per 64 KiB."""

    def __init__(self, folder: Path, *, delay_per_chunk: float = 0.0) -> None:
        handler = type("Handler", (_Handler,), {"delay_per_chunk": delay_per_chunk})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=folder))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def named_by_hash(data: bytes, folder: Path, stem: str = "tiny_maskrcnn") -> Path:
    """Write ``data`` to ``folder/stem-<first 8 hex of its sha256>.pth``."""
    path = folder / f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    path.write_bytes(data)
    return path


def catalogue_entry(path: Path, name: str = "tiny") -> PretrainedWeights:
    """A catalogue entry for a served file, shaped like torchvision's."""
    return PretrainedWeights(
        name=name,
        filename=path.name,
        arch="resnet18_fpn",
        size_bytes=path.stat().st_size,
        box_ap=1.0,
        mask_ap=0.5,
        description="a tiny test model",
    )


def closed_port() -> int:
    """A local port with no listener: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
