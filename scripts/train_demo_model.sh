#!/usr/bin/env bash
# Rebuilds the bundled demo model, app/resources/models/demo.pt, with the project's own training command:
# a MobileNetV2-FPN (ImageNet backbone, slim heads) trained on 400 synthetic shape images and validated on
# 100 held-out ones, in two runs of the training command (500 + 1000 iterations): about 45 minutes on one
# CPU core. Usage: bash scripts/train_demo_model.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work="${1:-runs/demo-model}"
py=.venv/bin/python

$py -m maskrcnn_core synthetic "$work/data" --num-images 400 --seed 1 --split train
$py -m maskrcnn_core synthetic "$work/data" --num-images 100 --seed 2 --split val
$py -m maskrcnn_core train \
    --train-json "$work/data/train.json" --images "$work/data/images" \
    --val-json "$work/data/val.json" --out "$work/run" \
    --backbone mobilenet_v2 --fpn-channels 64 --hidden-dim 256 --mask-hidden-channels 64 \
    --anchor-sizes 16,32,64,128 --min-size 192 --max-size 256 \
    --iterations 500 --batch-size 4 --lr 0.02 --checkpoint-every 100 \
    --num-threads 1 --name demo-shapes
# Stage 2: continue from stage 1 with a fresh schedule (warm-up, lr 0.02, steps at 70 % and 90 %)
$py -m maskrcnn_core train \
    --train-json "$work/data/train.json" --images "$work/data/images" \
    --val-json "$work/data/val.json" --out "$work/run2" \
    --weights "$work/run/model_final.pt" \
    --iterations 1000 --batch-size 4 --lr 0.02 --checkpoint-every 100 \
    --num-threads 1 --name demo-shapes
mkdir -p app/resources/models
cp "$work/run2/model_final.pt" app/resources/models/demo.pt
$py -m maskrcnn_core evaluate --gt "$work/data/val.json" --images "$work/data/images" \
    --weights app/resources/models/demo.pt
