"""Time from "Fine-tune" to an active new model version, through the real window and child processes.

A synthetic folder (``--images`` images of ``--size``), its truth imported and verified for ``--verified``
of them; the window loads ``--base`` (default: the bundled demo model) in its worker; then the
fine-tuning run starts as the dialog would start it. Printed: the time to each stage (training set
written, training process up, training finished, new version registered and compared, new model active),
the training throughput, old vs new mask AP, and the worst GUI-thread stall (10 ms timer probe) as a
ratio of the 100 ms budget. ``--screenshot PNG`` saves the window at the end.

    xvfb-run -a -s "-screen 0 1500x900x24" .venv/bin/python bench/bench_finetune.py --screenshot ft.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
# The stall probe is test instrumentation: it lives with the tests, not in the shipped package.
ROOT = Path(__file__).resolve().parents[1]
# The packages first: tests/app (no __init__) would otherwise be taken for the app package.
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from PySide6.QtWidgets import QApplication  # noqa: E402
from scratch import scratch_folder  # noqa: E402  (bench/scratch.py, beside this script)
from stall_probe import StallProbe  # noqa: E402

from app.project.model_sources import DEMO_MODEL  # noqa: E402
from app.project.records import ImageStatus  # noqa: E402
from app.session.finetune import FinetuneSettings  # noqa: E402
from app.ui.main_window import MainWindow  # noqa: E402
from maskrcnn_core.protocol import FinishedEvent, ProgressEvent, RunStatus, TrainingEvent  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=str(DEMO_MODEL), help="checkpoint to fine-tune from")
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--verified", type=int, default=24)
    parser.add_argument("--size", default="192x256", help="HxW of the synthetic images")
    parser.add_argument("--classes", default="circle,square,triangle,ring,star")
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--screenshot", help="save the window as this PNG at the end")
    args = parser.parse_args()
    if not Path(args.base).is_file():
        print(f"no base model at {args.base}", file=sys.stderr)
        return 2
    from maskrcnn_core.data.synthetic import generate_synthetic_dataset

    height, width = (int(v) for v in args.size.split("x"))
    work = scratch_folder("bench-finetune-")
    os.environ["XDG_DATA_HOME"] = str(work / "xdg")  # keep the recent-folders list of the user clean
    truth_path = generate_synthetic_dataset(
        work / "data",
        num_images=args.images,
        seed=21,
        image_size=(height, width),
        class_names=tuple(args.classes.split(",")),
    )
    truth = json.loads(truth_path.read_text())
    keep = {im["id"] for im in truth["images"][: args.verified]}
    part = dict(
        truth,
        images=[im for im in truth["images"] if im["id"] in keep],
        annotations=[a for a in truth["annotations"] if a["image_id"] in keep],
    )
    (work / "verified.json").write_text(json.dumps(part))

    app = QApplication.instance() or QApplication([])
    window = MainWindow()
    window.resize(1480, 880)
    window.show()
    window.open_folder(work / "data" / "images", weights=args.base)
    _wait(app, lambda: window.segmentation.model is not None, 300)
    doc = window.document
    window.import_annotation_file(work / "verified.json")
    for image in doc.images():
        if image.status is ImageStatus.CORRECTED:
            doc.set_verified(image.id, True)

    marks: dict[str, float] = {}
    finetune = window.finetune

    def on_event(event: TrainingEvent) -> None:
        if isinstance(event, ProgressEvent):
            marks.setdefault("first progress", time.monotonic())
            marks["images_per_s"] = event.images_per_s
        if isinstance(event, FinishedEvent):
            marks["training finished"] = time.monotonic()

    finetune.trainingEvent.connect(on_event)
    finetune.comparisonReady.connect(lambda _c: marks.setdefault("compared", time.monotonic()))
    window.segmentation.modelChanged.connect(
        lambda _m: (
            finetune.is_new_version(window.segmentation.model_version_id)
            and marks.setdefault("new model active", time.monotonic())
        )
    )
    settings = FinetuneSettings(
        base_version_id=window.segmentation.model_version_id,
        iterations=args.iterations,
        lr=args.lr,
        batch_size=args.batch_size,
        device=args.device,
    )
    start = time.monotonic()
    finetune.start(settings)
    marks["training set written, process started"] = time.monotonic()
    probe = StallProbe()

    def finished() -> bool:
        if "new model active" in marks:
            return True
        if "compared" in marks and not finetune.comparison.new_is_better:
            return True  # stays on the base model: nothing more will happen
        return finetune.run.outcome is not None and finetune.run.outcome.status is not RunStatus.FINISHED

    _wait(app, finished, 3600)
    probe.stop()
    _wait(app, lambda: False, 1.0)  # let the panels paint
    rate = marks.pop("images_per_s", 0.0)
    print(
        f"base {Path(args.base).name}; {args.verified} verified of {args.images} images {args.size}; "
        f"{args.iterations} iterations, batch {args.batch_size}"
    )
    for name, t in sorted(marks.items(), key=lambda kv: kv[1]):
        print(f"  {name:40s} {t - start:7.1f} s")
    print(f"  training throughput                      {rate:7.2f} images/s")
    comparison = finetune.comparison
    if comparison is not None:
        overall = comparison.overall
        print(
            f"  mask AP on {comparison.num_images} validation images: {overall.base_ap:.3f} (base) -> "
            f"{overall.new_ap:.3f} (new)"
        )
    worst, unstolen = probe.worst, probe.worst_unstolen
    print(
        f"  worst GUI stall {worst * 1000:.0f} ms = {worst / 0.1:.2f} x the 100 ms budget; "
        f"{unstolen * 1000:.0f} ms less the time the hypervisor took; the worst:"
    )
    print("\n".join("    " + line for line in probe.report().splitlines() if " ms at t=" in line))
    if args.screenshot:
        window.grab().save(args.screenshot)
        print(f"  screenshot: {args.screenshot}")
    window.close()
    return 0


def _wait(app: QApplication, done, timeout_s: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.005)


if __name__ == "__main__":
    sys.exit(main())
