"""The project on disk, without Qt or torch: the SQLite store, its records, annotation IO (COCO, labelme),
mask operations, the training-set builder, model comparison, folder scan, locations and the project lock.

The command line (``maskrcnn-studio import`` / ``export`` / ``segment``) and the window share this layer."""
