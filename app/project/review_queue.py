"""The review queue: which images a person should correct next, most uncertain first (no Qt, no torch).

Each image's uncertainty (``maskrcnn_core.engine.uncertainty``: stored with its predictions) ranks it; a
diversity rule keeps the next few from being near-duplicates: an image whose pooled features are close to
an image just reviewed (or just picked) loses up to :data:`DIVERSITY_WEIGHT` of its score. Everything is
vectorised numpy, so ordering 10,000 images takes milliseconds on the GUI thread.

Closeness is the cosine similarity of the features after the collection's mean is taken away (raw pooled
features of one folder all point much the same way); from :data:`CLOSE_FROM` up to 1 it costs linearly
more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from app.project.records import ImageRecord, ImageStatus, ImageUncertainty

DIVERSITY_WEIGHT = 1.0
# A predicted instance this uncertain (0..1) is marked on the canvas for a closer look.
UNSURE_INSTANCE = 0.5
CLOSE_FROM = 0.5
# How many of the images just reviewed (or picked) the diversity rule compares with.
RECENT = 10
# The images the queue offers: no person has corrected or verified them yet.
REVIEWABLE = (ImageStatus.NEW, ImageStatus.PREDICTED)
# The diversity rule orders this many picks one by one; the rest of a long queue follows by score alone
# (a person reviews a few hundred images between fine-tunes, and each pick costs a pass over the folder).
DIVERSE_PICKS = 500


def unit_features(features: np.ndarray) -> np.ndarray:
    """``(n, C)`` pooled features → centred on their mean, unit rows (rows of NaN, images without features,
    become zero rows: close to nothing)."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must be (n, C), got shape {features.shape}")
    known = ~np.isnan(features).any(axis=1)
    if known.all():  # the usual case, without the copies that picking rows makes
        centred = features - features.mean(axis=0)
        return centred / np.maximum(np.sqrt(np.einsum("ij,ij->i", centred, centred)), 1e-12)[:, None]
    out = np.zeros_like(features)
    if not known.any():
        return out
    centred = features[known] - features[known].mean(axis=0)
    out[known] = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    return out


def penalty_for(similarity: np.ndarray) -> np.ndarray:
    """What an image loses for its highest similarity to a recent image (0 below :data:`CLOSE_FROM`)."""
    return DIVERSITY_WEIGHT * np.clip((similarity - CLOSE_FROM) / (1.0 - CLOSE_FROM), 0.0, 1.0)


def review_order(
    scores: np.ndarray,
    features: np.ndarray | None,
    eligible: np.ndarray,
    *,
    top: int | None = None,
    reviewed: Sequence[int] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """The eligible images in review order (indices into ``scores``) and each one's penalty.

    ``scores`` ``(n,)`` image uncertainties (NaN: not scored, never queued); ``features`` ``(n, C)`` pooled
    features as :func:`unit_features` rows, or ``None`` (no diversity rule); ``eligible`` ``(n,)`` bool
    (not yet corrected or verified);
    ``reviewed`` the indices of the images just reviewed, most recent last. Greedy: each pick is the image
    with the highest score less its penalty against the last :data:`RECENT` reviewed or picked images.
    ``top`` stops after that many picks (default: all, the first :data:`DIVERSE_PICKS` of them greedy
    and the rest by score alone).
    """
    scores = np.asarray(scores, dtype=np.float64)
    candidates = np.flatnonzero(np.asarray(eligible, dtype=bool) & np.isfinite(scores))
    count = len(candidates) if top is None else min(int(top), len(candidates))
    if features is None or count == 0:
        order = candidates[np.argsort(-scores[candidates], kind="stable")][:count]
        return order, np.zeros(len(order))
    chosen = features[candidates]  # (k, C)
    base = scores[candidates]
    # similarity of every candidate to each of the last RECENT reviewed or picked images: a ring buffer
    similarity = np.full((RECENT, len(candidates)), -1.0, dtype=np.float32)
    recent = list(reviewed)[-RECENT:]
    for slot, index in enumerate(recent):
        similarity[slot] = chosen @ features[index]
    slot = len(recent) % RECENT
    alive = np.ones(len(candidates), dtype=bool)
    picks: list[int] = []
    penalties: list[float] = []
    for _ in range(min(count, DIVERSE_PICKS)):
        penalty = penalty_for(similarity.max(axis=0))
        best = int(np.argmax(np.where(alive, base - penalty, -np.inf)))
        picks.append(int(candidates[best]))
        penalties.append(float(penalty[best]))
        alive[best] = False
        similarity[slot] = chosen @ chosen[best]
        slot = (slot + 1) % RECENT
    remaining = candidates[alive]
    rest = remaining[np.argsort(-scores[remaining], kind="stable")][: count - len(picks)]
    order = np.concatenate([np.asarray(picks, dtype=np.int64), rest])
    return order, np.concatenate([np.asarray(penalties), np.zeros(len(rest))])


def next_to_review(
    scores: np.ndarray, features: np.ndarray | None, eligible: np.ndarray, reviewed: Sequence[int] = ()
) -> int | None:
    """The index of the image to review next, or ``None`` when no scored image is left to review."""
    order, _ = review_order(scores, features, eligible, top=1, reviewed=reviewed)
    return int(order[0]) if len(order) else None


def reviewable(images: Sequence[ImageRecord]) -> np.ndarray:
    """``(n,)`` bool: the images the queue may offer (new or predicted, no error)."""
    statuses = {status.value for status in REVIEWABLE}
    return np.array([i.status.value in statuses and not i.error for i in images], dtype=bool)


def scored_arrays(
    images: Sequence[ImageRecord], stored: Mapping[int, ImageUncertainty]
) -> tuple[np.ndarray, np.ndarray | None]:
    """For ``images`` (in their order): the scores (NaN: not scored) and the pooled features as
    :func:`unit_features` rows (``None`` when no two scored images share a feature width: the rule then
    only ranks)."""
    found = [stored.get(i.id) for i in images]
    scores = np.array([np.nan if u is None else u.score for u in found], dtype=np.float64)
    rows = [row for row, u in enumerate(found) if u is not None and u.features is not None]
    vectors = [np.asarray(found[row].features, dtype=np.float32) for row in rows]  # type: ignore[union-attr]
    widths = {len(v) for v in vectors}
    if len(widths) != 1:  # none, or several models' features (of different widths: not comparable)
        return scores, None
    width = widths.pop()
    features = np.full((len(images), width), np.nan, dtype=np.float32)
    # one buffer of every row's bytes: 3-5x faster than stacking 10,000 small arrays
    raw = b"".join(v.tobytes() for v in vectors)
    features[rows] = np.frombuffer(raw, dtype=np.float32).reshape(len(rows), width)
    return scores, unit_features(features)


def queue_arrays(
    images: Sequence[ImageRecord], stored: Mapping[int, ImageUncertainty]
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """What :func:`review_order` takes for ``images``: :func:`scored_arrays` and :func:`reviewable`."""
    scores, unit = scored_arrays(images, stored)
    return scores, unit, reviewable(images)
