"""Background workers: inference (QThread, the only place the app touches torch), image loading (thread
pool) and the engine's training and scoring processes (QProcess)."""
