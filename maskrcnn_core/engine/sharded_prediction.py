"""A folder of images predicted into one list of COCO results, by one process or shared out over the
processes of a ``torchrun`` launch.

Under torchrun each process predicts every ``world_size``-th image (from its rank on), writes its part to
a temporary folder beside the output file (atomically: a part is whole or absent), and the leader (rank 0)
merges the parts in the original image order and removes the folder. Across machines that folder must be
on storage every machine sees, as the output file is. A process whose share fails (its model does not load,
its GPU runs out of memory) says so instead of stopping the others: the leader names its images as not
predicted, and the results of the other shares are still written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from maskrcnn_core.data.coco import predictions_to_coco_results, write_json_atomic
from maskrcnn_core.engine.distributed import ProcessPlace
from maskrcnn_core.engine.predictor import Predictor, ProgressCallback
from maskrcnn_core.paths import one_line_error

# How long a process that finished its share waits for the slowest one (the shares differ by at most one
# image, but one process may start late or run on a slower machine); torch's default is 30 minutes.
SHARE_WAIT = timedelta(hours=24)


@dataclass(frozen=True)
class NotPredicted:
    """An image without results, and why: it could not be read, or its process's share failed."""

    source: str
    reason: str


@dataclass
class PredictionOutcome:
    """The merged results, in image order, and every image that has none for a reason other than that
    nothing was found in it."""

    results: list[dict] = field(default_factory=list)
    unreadable: list[NotPredicted] = field(default_factory=list)
    share_failures: list[NotPredicted] = field(default_factory=list)
    failed_ranks: list[int] = field(default_factory=list)


def share(num_images: int, rank: int, world_size: int) -> range:
    """The indices of the images process ``rank`` predicts: every ``world_size``-th from ``rank`` on, so
    the shares differ by at most one image however the images are ordered."""
    return range(rank, num_images, world_size)


def predict_images(
    make_predictor: Callable[[], Predictor],
    paths: Sequence[str | Path],
    image_ids: Sequence[int],
    place: ProcessPlace,
    *,
    out: Path,
    score_thresh: float,
    progress: ProgressCallback | None = None,
) -> PredictionOutcome | None:
    """Predict ``paths`` (this process's share of them under torchrun) into COCO results for
    ``image_ids``. The leader gets the merged outcome, the other processes ``None``.

    ``out`` is the results file the caller writes: the parts go to a temporary folder beside it.
    ``progress`` hears this process's share only. Alone, a predictor that cannot load raises; under
    torchrun the failure is the leader's to report.
    """
    if place.world_size == 1:
        predictions = make_predictor().predict(list(paths), score_thresh=score_thresh, progress=progress)
        outcome = PredictionOutcome()
        for prediction, image_id in zip(predictions, image_ids, strict=True):
            outcome.results += predictions_to_coco_results([prediction], [image_id])
            if not prediction.ok:
                outcome.unreadable.append(NotPredicted(str(prediction.source), str(prediction.error)))
        return outcome

    parts = _agree_on_parts_folder(place, out)
    error: str | None = None
    try:
        mine = share(len(paths), place.rank, place.world_size)
        predictions = make_predictor().predict(
            [paths[i] for i in mine], score_thresh=score_thresh, progress=progress
        )
        part = [
            {
                "index": index,
                "results": predictions_to_coco_results([prediction], [image_ids[index]]),
                "error": prediction.error,
            }
            for index, prediction in zip(mine, predictions, strict=True)
        ]
        write_json_atomic(parts / f"rank{place.rank}.json", part)
    except Exception as exc:  # any failure of this share is reported by the leader; the others go on
        error = one_line_error(exc)
    errors: list[str | None] | None = [None] * place.world_size if place.leader else None
    dist.gather_object(error, errors, dst=0)  # also the point where the leader waits for every share
    if errors is None:
        return None
    try:
        return _merge(parts, paths, errors)
    finally:
        shutil.rmtree(parts, ignore_errors=True)


def _agree_on_parts_folder(place: ProcessPlace, out: Path) -> Path:
    """A new temporary folder beside ``out``, made by the leader, its name sent to every process."""
    name = [tempfile.mkdtemp(prefix=f".{out.name}.parts-", dir=out.parent) if place.leader else None]
    dist.broadcast_object_list(name, src=0)
    return Path(str(name[0]))


def _merge(parts: Path, paths: Sequence[str | Path], errors: Sequence[str | None]) -> PredictionOutcome:
    world_size = len(errors)
    by_index: dict[int, dict] = {}
    failed: dict[int, str] = {}
    for rank, error in enumerate(errors):
        if error is None:
            try:
                for image in json.loads((parts / f"rank{rank}.json").read_text(encoding="utf-8")):
                    by_index[image["index"]] = image
            except (OSError, ValueError) as exc:  # a part written where the leader cannot see it
                error = f"its results could not be read: {one_line_error(exc)}"
        if error is not None:
            failed[rank] = error
    lost = {
        index: f"process {rank} failed: {error}"
        for rank, error in failed.items()
        for index in share(len(paths), rank, world_size)
    }
    outcome = PredictionOutcome(failed_ranks=sorted(failed))
    for index, source in enumerate(paths):
        image = by_index.get(index)
        if image is None:
            reason = lost.get(index, "no process returned results for it")
            outcome.share_failures.append(NotPredicted(str(source), reason))
            continue
        outcome.results += image["results"]
        if image["error"] is not None:
            outcome.unreadable.append(NotPredicted(str(source), image["error"]))
    return outcome
