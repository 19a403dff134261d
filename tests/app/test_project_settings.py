"""Project settings against a real project file: defaults, a round trip through closing and reopening,
bad stored values read as the default, bad new values refused before anything is written."""

from __future__ import annotations

import json
import sqlite3

import pytest

from app.project.settings import (
    DEFAULT_OVERLAY_OPACITY,
    DEFAULT_SCORE_THRESHOLD,
    ProjectSettings,
)
from app.project.store import ProjectStore


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    return folder


def _stored(store: ProjectStore) -> dict[str, object]:
    """The settings table as a second connection reads it from the file."""
    db = sqlite3.connect(store.db_path)
    try:
        return {key: json.loads(value) for key, value in db.execute("SELECT key, value_json FROM settings")}
    finally:
        db.close()


def test_a_new_project_reads_every_default(folder):
    with ProjectStore.open(folder) as store:
        settings = ProjectSettings(store)
        assert settings.score_threshold == DEFAULT_SCORE_THRESHOLD
        assert settings.overlay_opacity == DEFAULT_OVERLAY_OPACITY
        assert settings.last_image_id is None
        assert settings.active_version_id is None
        assert settings.active_model_path is None
        assert not {s.key for s in ProjectSettings.fields().values()} & set(_stored(store))


def test_values_survive_closing_and_reopening(folder):
    with ProjectStore.open(folder) as store:
        settings = ProjectSettings(store)
        settings.score_threshold = 0.3
        settings.overlay_opacity = 0.8
        settings.last_image_id = 7
        on_disk = _stored(store)
    assert on_disk["score_threshold"] == 0.3
    assert on_disk["overlay_opacity"] == 0.8
    assert on_disk["last_image_id"] == 7
    with ProjectStore.open(folder) as store:
        settings = ProjectSettings(store)
        assert (settings.score_threshold, settings.overlay_opacity, settings.last_image_id) == (0.3, 0.8, 7)
        settings.last_image_id = None
        assert settings.last_image_id is None


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("score_threshold", "high"),
        ("score_threshold", 7.5),
        ("score_threshold", True),
        ("overlay_opacity", [0.5]),
        ("last_image_id", "a.png"),
        ("last_image_id", 2.5),
        ("active_model", 3),
    ],
)
def test_a_bad_stored_value_reads_as_the_default(folder, key, bad):
    """A hand-edited or foreign value opens as the default; the project still opens and works."""
    with ProjectStore.open(folder) as store:
        store.set_setting(key, bad)
    with ProjectStore.open(folder) as store:
        settings = ProjectSettings(store)
        ((name, field),) = [(n, s) for n, s in ProjectSettings.fields().items() if s.key == key]
        assert getattr(settings, name) == field.default
        store.add_images(["x.png"])
        assert [image.file_name for image in store.images()] == ["x.png"]


def test_a_bad_new_value_is_refused_and_the_old_one_kept(folder):
    with ProjectStore.open(folder) as store:
        settings = ProjectSettings(store)
        settings.score_threshold = 0.25
        for bad in (1.5, -0.1, float("nan"), "0.3", None):
            with pytest.raises(ValueError, match="score_threshold"):
                settings.score_threshold = bad
        assert settings.score_threshold == 0.25
        assert _stored(store)["score_threshold"] == 0.25


def test_the_document_keeps_its_threshold_in_the_project_settings(qapp, folder):
    """A bad stored threshold opens as the default; the slider's new value is stored as a setting."""
    from app.session.document import Document

    with ProjectStore.open(folder) as store:
        store.set_setting("score_threshold", "not a number")
        document = Document(store)
        assert document.score_threshold == DEFAULT_SCORE_THRESHOLD
        document.set_score_threshold(0.6)
        assert ProjectSettings(store).score_threshold == 0.6
