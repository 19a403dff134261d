"""Review next: the image a person should correct next, from the document's stored uncertainties.

The order is :mod:`app.project.review_queue`'s (most uncertain first, near-duplicates of the images just
looked at pushed down); this keeps the images the person just went to and the scores and features the
order is computed from, gathered again only after a model result, so a "Review next" over 10,000 images
costs milliseconds on the GUI thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from contextlib import suppress

import numpy as np
from PySide6.QtCore import QObject

from app.project.review_queue import RECENT, next_to_review, reviewable, scored_arrays
from app.session.document import Document


class ReviewQueue(QObject):
    """The document's images in review order; :meth:`next_image` is what "Review next" goes to."""

    def __init__(self, document: Document) -> None:
        super().__init__(document)
        self._doc = document
        self._recent: deque[int] = deque(maxlen=RECENT)
        self._arrays: tuple[np.ndarray, np.ndarray | None] | None = None
        document.currentImageChanged.connect(self._visited)
        # rebuilt when next asked for: a model result brings new scores (the statuses are read each time)
        document.imagesReset.connect(self._forget_arrays)
        document.instancesChanged.connect(self._forget_arrays)

    def next_image(self) -> int | None:
        """The id of the most uncertain image not yet corrected or verified (and not the one shown), after
        the diversity rule against the images just looked at; ``None`` when none is left."""
        images = self._doc.images()
        if not images:
            return None
        scores, features = self._scored_arrays()
        eligible = reviewable(images)
        eligible[self._rows([self._doc.current_image_id])] = False
        reviewed = self._rows(self._recent)
        while (row := next_to_review(scores, features, eligible, reviewed)) is not None:
            if not self._doc.image_error(images[row].id):  # a file found unreadable just now
                return images[row].id
            eligible[row] = False
        return None

    def _rows(self, image_ids: Iterable[int]) -> list[int]:
        """The browser rows of those of ``image_ids`` still in the folder."""
        rows = []
        for image_id in image_ids:
            with suppress(KeyError):
                rows.append(self._doc.row_of(image_id))
        return rows

    def _scored_arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._arrays is None:
            self._arrays = scored_arrays(self._doc.images(), self._doc.image_uncertainties())
        return self._arrays

    def _visited(self, image_id: int) -> None:
        if image_id >= 0:
            self._recent.append(image_id)

    def _forget_arrays(self, *_args: object) -> None:
        self._arrays = None
