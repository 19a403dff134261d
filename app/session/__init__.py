"""The open project as the window sees it, QtCore and QtGui only (no widgets, no torch): the document (the
only gate to the store), undo commands, the editor state, segmentation jobs, fine-tuning and the presenter."""
