"""Running the model: the Predictor (load once, predict many), mask post-processing, the CPU allocator
setting, the training loop, COCO evaluation and scoring a checkpoint on a dataset."""
