"""What bfloat16 costs in accuracy: mask and box AP (pycocotools' COCOeval) in torch fp32, OpenVINO fp32 and
OpenVINO bf16, for the bundled demo model and for a model fine-tuned from it.

    .venv/bin/python bench/bench_bf16_accuracy.py [--images 100] [--finetune-iterations 60]

Held-out set: the demo model's own (``maskrcnn-core synthetic``, seed 2, 192x256, as
scripts/train_demo_model.sh makes it). The fine-tuned model: the demo model trained further by the
project's training command on other synthetic images (seed 5) with the heads tier. On a CPU without native
bfloat16 OpenVINO emulates it (the Predictor itself would run fp32 there): the numbers are the same, only
slower.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.resources import DEMO_MODEL  # noqa: E402


def scores(weights: Path, data, precision: str | None) -> tuple[float, float]:
    from maskrcnn_core import Predictor
    from maskrcnn_core.engine.openvino_backend import OpenVinoSubNetworks
    from maskrcnn_core.engine.validation import evaluate_model

    predictor = Predictor(weights, device="cpu", backend="torch")
    if precision is not None:
        predictor._subnetworks = OpenVinoSubNetworks(predictor.model, precision=precision, use_cache=False)
    result = evaluate_model(predictor, data)
    return result["segm"].ap, result["bbox"].ap


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--finetune-iterations", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from maskrcnn_core.data.coco import load_coco
    from maskrcnn_core.data.synthetic import generate_synthetic_dataset
    from maskrcnn_core.inference_options import cpu_has_native_bf16

    torch.set_num_threads(args.threads)
    demo = DEMO_MODEL
    with tempfile.TemporaryDirectory(prefix="bf16-accuracy-") as tmp:
        tmp_path = Path(tmp)
        gt = generate_synthetic_dataset(tmp_path / "val", num_images=args.images, seed=2, split_name="val")
        data, _ = load_coco(gt, tmp_path / "val" / "images")
        train = generate_synthetic_dataset(tmp_path / "train", num_images=60, seed=5, split_name="train")
        run = tmp_path / "run"
        subprocess.run(
            [sys.executable, "-m", "maskrcnn_core", "train", "--train-json", str(train), "--images",
             str(tmp_path / "train" / "images"), "--out", str(run), "--weights", str(demo), "--tier", "heads",
             "--iterations", str(args.finetune_iterations), "--batch-size", "4", "--lr", "0.01",
             "--num-threads", str(args.threads), "--progress", "none"],
            check=True,
        )  # fmt: skip
        print(f"native bfloat16 on this CPU: {'yes' if cpu_has_native_bf16() else 'no (emulated)'}")
        print(
            f"{'model':>22} | {'torch fp32':>17} | {'OpenVINO fp32':>17} | {'OpenVINO bf16':>17} | bf16-fp32"
        )
        for name, weights in (("demo", demo), ("fine-tuned from demo", run / "model_final.pt")):
            rows = [scores(weights, data, precision) for precision in (None, "fp32", "bf16")]
            cells = " | ".join(f"mask {m:.3f} box {b:.3f}" for m, b in rows)
            print(f"{name:>22} | {cells} | mask {rows[2][0] - rows[1][0]:+.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
