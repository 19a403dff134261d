"""Lock soak of the project file: the window keeps working while other programs hold and fight for it.

For ``--seconds`` (default 60) three things run at once on one project:

- the window (offscreen), editing: every ``--edit-ms`` an undo command adds an instance to a random image;
- a second process that holds SQLite's write lock (``BEGIN IMMEDIATE``) on and off, mostly for a few
  seconds, now and then (``--long-hold-p``) for longer than the store's retries last;
- a third that starts ``maskrcnn-studio import FOLDER COCO.json`` at random and, half the time, kills it
  (``SIGKILL``) at a random moment if it still runs (the window holds the project's lock, so an import
  is refused, "already open by process ...": it must say so and change nothing).

Afterwards the project is reopened and checked: ``PRAGMA integrity_check`` is ``ok`` and every edit the
window committed (its undo command was not dropped) is in the file; every edit not committed was reported.

    .venv/bin/python bench/soak_lock.py                 # the soak, 60 s
    .venv/bin/python bench/soak_lock.py --seconds 10    # a short one

Prints a summary; exits 1 if a committed edit is missing, an edit was neither committed nor reported,
the window closed, or the file is damaged.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402
from scratch import scratch_folder  # noqa: E402  (bench/scratch.py, beside this script)

from app.project.store import ProjectStore  # noqa: E402
from app.session import commands  # noqa: E402
from app.ui.main_window import MainWindow  # noqa: E402
from maskrcnn_core.types import CroppedMask  # noqa: E402

SIZE = (48, 64)

_HOLDER = """
import random, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
end, long_p = time.monotonic() + float(sys.argv[2]), float(sys.argv[3])
rng = random.Random(int(sys.argv[4]))
while time.monotonic() < end:
    hold = rng.uniform(17, 19) if rng.random() < long_p else rng.uniform(0.2, 6)
    db.execute("BEGIN IMMEDIATE")
    print(f"hold {hold:.1f}", flush=True)
    time.sleep(min(hold, max(0.0, end - time.monotonic())))
    db.execute("COMMIT")
    time.sleep(rng.uniform(0.2, 2))
"""


def _folder(root: Path, images: int) -> tuple[Path, Path]:
    folder = root / "images"
    folder.mkdir()
    coco: dict = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "imported"}]}
    for i in range(images):
        name = f"img{i:03d}.png"
        Image.new("RGB", (SIZE[1], SIZE[0]), (i * 9 % 255, 80, 120)).save(folder / name)
        coco["images"].append({"id": i + 1, "file_name": name, "height": SIZE[0], "width": SIZE[1]})
        coco["annotations"].append(
            {"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 10, 10], "area": 100,
             "segmentation": [[4, 4, 14, 4, 14, 14, 4, 14]], "iscrowd": 0}
        )  # fmt: skip
    coco_path = root / "annotations.json"
    coco_path.write_text(json.dumps(coco))
    return folder, coco_path


def _no_model(_source: str):  # noqa: ANN202 - the window's predictor factory: the soak needs no model
    def fail():  # noqa: ANN202
        raise ValueError("no model in the lock soak")

    return fail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--edit-ms", type=int, default=150)
    parser.add_argument("--long-hold-p", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = scratch_folder("soak_lock_")
    folder, coco_path = _folder(root, args.images)

    app = QApplication.instance() or QApplication([])
    for box in ("warning", "critical", "information"):  # a dialog would wait for a click
        setattr(QMessageBox, box, staticmethod(lambda *a, **k: QMessageBox.StandardButton.Ok))
    window = MainWindow(predictor_factory=_no_model)
    window.show()
    assert window.open_folder(folder)
    document, editor = window.document, window.editor
    assert document is not None and editor is not None
    db_path = document.store.db_path
    category = document.ensure_categories(["soak"])["soak"]
    image_ids = [image.id for image in document.images()]
    busy: list[str] = []
    told: list[str] = []
    document.storeBusy.connect(busy.append)
    editor.message.connect(told.append)

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _HOLDER,
            str(db_path),
            str(args.seconds),
            str(args.long_hold_p),
            str(args.seed),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    imports: Counter[str] = Counter()
    importer: dict[str, subprocess.Popen | float | None] = {"proc": None, "kill_at": None}
    committed: list[tuple[int, list[int]]] = []
    dropped = 0
    pushed = 0
    waits: list[float] = []
    end = time.monotonic() + args.seconds

    def edit() -> None:
        nonlocal pushed, dropped
        image_id = rng.choice(image_ids)
        full = np.zeros(SIZE, dtype=bool)
        y, x = rng.randrange(0, SIZE[0] - 8), rng.randrange(0, SIZE[1] - 8)
        full[y : y + 8, x : x + 8] = True
        command = commands.add_instance(
            editor.context, image_id, CroppedMask.from_full(full), category, "Soak"
        )
        reported_before = len(told)
        started = time.monotonic()
        window.undo_stack.push(command)
        waits.append(time.monotonic() - started)
        pushed += 1
        # A command that failed is dropped (and deleted) by the undo stack, after the editor said why.
        if any(text.startswith("Could not") for text in told[reported_before:]):
            dropped += 1
        else:
            committed.append((image_id, list(command.added_ids)))

    def churn_imports() -> None:
        proc = importer["proc"]
        if isinstance(proc, subprocess.Popen):
            kill_at = importer["kill_at"]
            if proc.poll() is None and isinstance(kill_at, float) and time.monotonic() >= kill_at:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                imports["killed"] += 1
            elif proc.poll() is not None:
                err = (proc.stderr.read() if proc.stderr else "").strip()
                last_line = err.splitlines()[-1][:90] if err else ""
                imports["finished" if proc.returncode == 0 else f"exit {proc.returncode}: {last_line}"] += 1
            else:
                return
            importer["proc"] = None
        if rng.random() < 0.5:
            importer["proc"] = subprocess.Popen(
                [sys.executable, "-m", "app", "import", str(folder), str(coco_path)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            importer["kill_at"] = time.monotonic() + rng.uniform(0.1, 3) if rng.random() < 0.5 else None

    def tick() -> None:
        visible.append(window.isVisible())
        if time.monotonic() >= end:
            app.quit()
            return
        edit()
        churn_imports()

    visible: list[bool] = []
    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(args.edit_ms)
    app.exec()
    timer.stop()
    window_up = bool(visible) and all(visible)  # checked at every tick (quitting closes it in Qt 6)
    window.close_project()
    window.close()
    proc = importer["proc"]
    if isinstance(proc, subprocess.Popen):
        proc.kill()
        proc.wait()
    holder.wait(timeout=60)
    holds = (holder.stdout.read() if holder.stdout else "").count("hold ")

    with ProjectStore.open(folder) as store:
        verdict = store.integrity_check()
        stored = {(r.image_id, r.id) for r in store.instances()}
    missing = [(i, ids) for i, ids in committed if not all((i, n) in stored for n in ids)]
    print(
        f"{args.seconds:.0f} s: {pushed} edits pushed, {len(committed)} committed, {dropped} reported not "
        f"saved; {holds} write locks held by the other process, {len(busy)} 'retrying' messages; "
        f"longest wait in the GUI thread {max(waits, default=0):.1f} s; "
        f"imports {dict(imports)}; integrity_check {verdict!r}; committed edits missing: {len(missing)}; "
        f"window up: {window_up}"
    )
    return 0 if verdict == "ok" and not missing and window_up else 1


if __name__ == "__main__":
    sys.exit(main())
