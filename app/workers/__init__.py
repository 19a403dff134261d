"""Background workers: inference (QThread) and image loading (thread pool)."""
