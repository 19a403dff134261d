"""The model registry: the one owner of which model version is active, and of the versions and runs.

Everyone else follows it. The segmentation controller loads whatever :attr:`ModelRegistry.activeChanged`
announces and reports back what the inference worker built; the fine-tune controller *proposes* its new
version with the comparison and the registry decides; the versions panel and Model ▸ Load weights ask it
to activate a version id or a checkpoint file. The choice is kept in the project's settings as a version
id (``ProjectSettings.active_version_id``), written once the model has loaded, so a file that fails to
load never becomes the project's model. Projects written before the registry kept a checkpoint *path*
(``ProjectSettings.active_model_path``); it is migrated to the id when the project opens. Only this
module writes those two settings.

A checkpoint file becomes a version the first time it is loaded: the worker builds it (torch never loads
on the GUI thread) and hashes it, and the store registers it by path, hash and name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from app.project import model_sources
from app.project.comparison import Comparison
from app.project.records import ModelVersionRecord, TrainingRunRecord
from app.project.settings import ProjectSettings
from app.project.store import ProjectStore
from maskrcnn_core.protocol import RunStatus
from maskrcnn_core.types import ModelInfo

# A better fine-tuned version is announced this long after the registry decides on it, because its
# comparison goes on screen at that moment. Building a model in the worker holds the GIL in 5-30 ms pieces,
# and the comparison's relayout and paint make hundreds of calls into Python that each wait for it: the
# switch stalled the window 25-67 ms when both ran at once, 11-22 ms with the load started once the
# comparison was on screen.
ACTIVATE_AFTER_COMPARISON_MS = 300


@dataclass(frozen=True)
class ActiveModel:
    """The model to load: a version of the project, or a checkpoint file that becomes one once loaded."""

    path: str
    version: ModelVersionRecord | None = None

    @property
    def name(self) -> str:
        return self.version.name if self.version is not None else Path(self.path).name


class ModelRegistry(QObject):
    """The project's model versions, its training runs and the active version (a child of its document)."""

    activeChanged = Signal(object)  # ActiveModel: load this one
    versionsChanged = Signal()  # a version or a run was added or changed, or the active one is settled
    message = Signal(str)  # one line for the status bar

    def __init__(self, store: ProjectStore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.settings = ProjectSettings(store)
        self._choice: ActiveModel | None = None  # what was last announced; settled once it loads
        self._loaded: ActiveModel | None = None  # what the inference worker holds
        self._legacy_file: str | None = None  # an old project's active checkpoint that is no version yet
        self._migrate_legacy_setting()

    # ------------------------------------------------------------------------------------------ queries
    def versions(self) -> list[ModelVersionRecord]:
        """Every model version of the project, oldest first."""
        return self.store.model_versions()

    def version(self, version_id: int | None) -> ModelVersionRecord | None:
        return next((v for v in self.versions() if v.id == version_id), None)

    @property
    def active_id(self) -> int | None:
        """The version the project uses: the one announced last, else the one kept in the store."""
        if self._choice is not None:
            return self._choice.version.id if self._choice.version is not None else None
        return self.settings.active_version_id

    def active(self) -> ModelVersionRecord | None:
        return self.version(self.active_id)

    def runs(self) -> list[TrainingRunRecord]:
        """Every training run of the project, oldest first."""
        return self.store.training_runs()

    def run(self, run_id: int) -> TrainingRunRecord | None:
        return next((r for r in self.runs() if r.id == run_id), None)

    def last_run(self) -> TrainingRunRecord | None:
        runs = self.runs()
        return runs[-1] if runs else None

    # ------------------------------------------------------------------------------------- activation
    def restore(self, *, weights: str | None = None, fallback: str | None = None) -> None:
        """Load the project's model when it opens: ``weights`` when given (the command line's), else the
        active version, else ``fallback`` (the bundled model). A missing file is a message, not an error."""
        try:
            requested_file = weights or self._legacy_file
            if requested_file:
                self.activate_file(requested_file)
                return
            active = self.active()
            if active is not None:
                self.activate(active.id)
            elif fallback:
                self.activate_file(fallback)
        except model_sources.NotDownloaded as exc:  # its message already says how to get the file
            self.message.emit(str(exc))
        except ValueError as exc:
            self.message.emit(f"{exc} — Model ▸ Load weights…")

    def activate(self, version_id: int) -> None:
        """Make a version of the project the active model. ``ValueError`` when it has no checkpoint file."""
        version = self.version(version_id)
        if version is None:
            raise ValueError(f"this project has no model version {version_id}")
        if not version.path or not Path(version.path).is_file():
            raise ValueError(f"Model file not found: {version.path or version.name}")
        self._announce(ActiveModel(version.path, version))

    def activate_file(self, path: str) -> None:
        """Make a checkpoint file the active model (Model ▸ Load weights, ``--weights``): a known file is
        its version; a new one becomes a version once it has loaded. A download catalogue alias (``coco``,
        ``coco-v2``) names its file in the cache. ``ValueError`` for a missing file or an alias not yet
        downloaded (``model_sources.NotDownloaded``)."""
        path = str(model_sources.resolve(path))
        if not Path(path).is_file():
            raise ValueError(f"Model file not found: {path}")
        target = Path(path).resolve()
        known = [v for v in self.versions() if v.path and Path(v.path).resolve() == target]
        self._announce(ActiveModel(path, known[-1] if known else None))

    def propose(self, version_id: int, comparison: Comparison) -> bool:
        """A fine-tuning run offers its new version with the comparison against its base on the same
        validation images: it becomes active when the comparison's verdict says so (it scores better and
        keeps what its base knew, :attr:`Comparison.activates`). Returns the decision."""
        version = self.version(version_id)
        if version is None or not comparison.activates:
            return False
        if not version.path or not Path(version.path).is_file():
            return False
        choice = ActiveModel(version.path, version)
        self._choice = choice
        # announced once the comparison is on screen; dropped if the project closes first
        QTimer.singleShot(ACTIVATE_AFTER_COMPARISON_MS, self, lambda: self._announce_if_chosen(choice))
        return True

    def loaded(self, requested: ActiveModel, info: ModelInfo, sha256: str | None) -> int:
        """The inference worker built ``requested``: register its file as a version (by path, hash and name,
        so a changed file is a new version) and, if it is still the choice, keep it as the project's active
        model. Returns the version id."""
        version_id, added = self._register(
            name=requested.version.name if requested.version is not None else info.name,
            arch=info.arch,
            path=requested.path,
            sha256=sha256,
            categories=[(c.id, c.name) for c in info.categories],
            training_run_id=requested.version.training_run_id if requested.version is not None else None,
        )
        self._loaded = ActiveModel(requested.path, self.version(version_id))
        if requested == self._choice:
            self._settle(self._loaded)
        self.versionsChanged.emit()
        return version_id

    def load_failed(self, requested: ActiveModel) -> None:
        """The worker could not build ``requested``: it keeps the model it had, and so does the project."""
        if requested == self._choice:
            self._choice = None  # back to the one kept in the store
            if self._loaded is not None:
                self._settle(self._loaded)
            self.versionsChanged.emit()

    # ---------------------------------------------------------------------------------------- versions
    def register(
        self,
        *,
        name: str,
        arch: str,
        path: str | None,
        sha256: str | None,
        categories: Sequence[tuple[int, str]],
        training_run_id: int | None = None,
    ) -> int:
        """The id of this checkpoint in the project, registering it on first use (same path, hash, name)."""
        version_id, added = self._register(
            name=name,
            arch=arch,
            path=path,
            sha256=sha256,
            categories=categories,
            training_run_id=training_run_id,
        )
        if added:
            self.versionsChanged.emit()
        return version_id

    # ------------------------------------------------------------------------------------ training runs
    def start_run(self, *, base_version_id: int | None, config: dict) -> int:
        """Record a fine-tuning run that starts now (``running``); returns its id."""
        run_id = self.store.start_training_run(base_model_version_id=base_version_id, config=config)
        self.versionsChanged.emit()
        return run_id

    def finish_run(self, run_id: int, status: RunStatus, metrics: dict) -> None:
        """Record how a run ended (``finished``, ``failed`` or ``cancelled``) and its figures."""
        self.store.finish_training_run(run_id, status=RunStatus(status), metrics=metrics)
        self.versionsChanged.emit()

    def resume_run(self, run_id: int) -> None:
        """A cancelled or failed run continues from its last checkpoint: ``running`` again."""
        self.store.resume_training_run(run_id)
        self.versionsChanged.emit()

    # --------------------------------------------------------------------------------------- internals
    def _announce(self, choice: ActiveModel) -> None:
        self._choice = choice
        self.activeChanged.emit(choice)
        self.versionsChanged.emit()

    def _announce_if_chosen(self, choice: ActiveModel) -> None:
        if self._choice is choice:  # nobody chose another model meanwhile
            self._announce(choice)

    def _settle(self, model: ActiveModel) -> None:
        """Keep ``model`` (loaded, so a registered version) as the project's active model."""
        assert model.version is not None
        self._choice = model
        self._legacy_file = None
        with self.store.transaction():
            self.settings.active_version_id = model.version.id
            self.settings.active_model_path = None

    def _register(self, **fields) -> tuple[int, bool]:  # noqa: ANN003 - ProjectStore.add_model_version's
        before = {v.id for v in self.versions()}
        version_id = self.store.add_model_version(**fields)
        return version_id, version_id not in before

    def _migrate_legacy_setting(self) -> None:
        """A project that kept its active model as a path keeps it as that path's version id instead; a
        path that is no version yet stays until its file loads (then :meth:`loaded` replaces it)."""
        legacy = self.settings.active_model_path
        if legacy is None:
            return
        if self.settings.active_version_id is None:
            known = [v for v in self.versions() if v.path == legacy]
            if not known:
                self._legacy_file = legacy
                return
            with self.store.transaction():
                self.settings.active_version_id = known[-1].id
                self.settings.active_model_path = None
            return
        self.settings.active_model_path = None
