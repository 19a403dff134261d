"""Mask R-CNN Studio, the desktop app (PySide6). Never imports torch outside its inference worker thread."""
