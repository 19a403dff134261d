"""The Training dock: live curves of a fine-tuning run, its figures, the before/after table, and actions.

A view only: it shows what :class:`~app.session.finetune.FinetuneController` reports (the training
process's events, typed by :mod:`maskrcnn_core.protocol`; the outcome; the comparison) and turns button
clicks into signals.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.project.comparison import ALL_CLASSES, KNOWN_CLASSES, NEW_CLASSES, Comparison
from app.session.finetune import TIER_NAMES
from app.session.run_history import PastRun
from app.ui.panels.curve_chart import CurveChart
from app.ui.panels.run_progress import format_duration
from app.workers.training_runner import RunOutcome
from maskrcnn_core.protocol import (
    LOSS_KEYS,
    CachingEvent,
    CheckpointEvent,
    EvaluationEvent,
    ProgressEvent,
    RunStatus,
    StartEvent,
    TrainingEvent,
)

#: a reopened project's last run that was stopped before its end
STOPPED_RUN_TEXT = "The last run was stopped before its end: cancelled, or the project closed while it ran."
#: a stopped run's bar: where it stopped (%v, %m: Qt's value and maximum), not a bare percentage
STOPPED_AT_ITERATION = "Stopped at iteration %v of %m"
STOPPED_WHILE_CACHING = "Stopped while caching features %v/%m"
#: the height the panel asks of its dock, which the charts and the comparison table fill
PREFERRED_HEIGHT = 560
#: the loss curves, the total first (it is drawn first and gets the first colour)
LOSS_TERMS = ("total_loss", *(key for key in LOSS_KEYS if key != "total_loss"))


def _ap(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _time_left(seconds: float | None) -> str:
    return "time left unknown" if seconds is None or seconds < 0 else f"{format_duration(seconds)} left"


class TrainingPanel(QWidget):
    """Empty until a run starts; the buttons are enabled when their action makes sense."""

    cancelRequested = Signal()
    resumeRequested = Signal()
    useNewRequested = Signal()
    resegmentRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("No fine-tuning run yet: Model ▸ Fine-tune…")
        self.title.setWordWrap(True)
        self.progress = QProgressBar()
        # whether the bar counts iterations (or, in the heads tier's feature pass, cached images)
        self._bar_counts_iterations = True
        self.figures = QLabel("")
        self.figures.setWordWrap(True)
        self.validation = QLabel("")
        self.validation.setWordWrap(True)
        self.loss_chart = CurveChart("Training losses (log scale)", log_y=True)
        self.ap_chart = CurveChart("Validation mask AP", y_range=(0.0, 1.0))
        self.ap_chart.setMinimumHeight(110)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Mask AP", "Before", "After", "Change"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(150)
        # Always shown (empty until a run ends): the comparison arriving does not re-lay out the panel,
        # which would redraw both charts while the new model is being loaded in a worker thread.
        self.table.setToolTip("Base and new model, scored on the same validation images when a run ends")
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFont("monospace", 8))
        self.log.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.resume_button = QPushButton("Resume")
        self.use_new_button = QPushButton("Use new version")
        self.resegment_button = QPushButton("Re-segment uncorrected images")
        self.resegment_button.setToolTip("Run the active model on every image nobody corrected or verified")
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.resume_button.clicked.connect(self.resumeRequested)
        self.use_new_button.clicked.connect(self.useNewRequested)
        self.resegment_button.clicked.connect(self.resegmentRequested)
        for button in (self.cancel_button, self.resume_button, self.use_new_button, self.resegment_button):
            button.setEnabled(False)

        # The figures scroll when the dock is shorter than they need (a squeezed layout would draw the
        # table over the verdict); the verdict and the buttons stay in view below them.
        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.title)
        column.addWidget(self.progress)
        column.addWidget(self.figures)
        column.addWidget(self.validation)
        column.addWidget(self.loss_chart, 3)
        column.addWidget(self.ap_chart, 1)
        column.addWidget(self.table, 2)
        column.addWidget(self.log, 2)
        self.figures_scroll = QScrollArea()
        self.figures_scroll.setWidget(content)
        self.figures_scroll.setWidgetResizable(True)
        self.figures_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.figures_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        layout.addWidget(self.figures_scroll)
        layout.addWidget(self.verdict)
        row = QHBoxLayout()
        for button in (self.cancel_button, self.resume_button):
            row.addWidget(button)
        layout.addLayout(row)
        row = QHBoxLayout()
        for button in (self.use_new_button, self.resegment_button):
            row.addWidget(button)
        layout.addLayout(row)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        # what the dock asks for first: room for the figures without scrolling (the lists above scroll)
        hint = super().sizeHint()
        return QSize(hint.width(), max(hint.height(), PREFERRED_HEIGHT))

    # ------------------------------------------------------------------------------------------- slots
    def show_run_started(self, info: dict) -> None:
        self.title.setText(
            f"<b>{info['name']}</b> from {info['base']}: {info['train_images']} training, "
            f"{info['val_images']} validation images"
        )
        self.progress.setMaximum(max(1, int(info["iterations"])))
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self._bar_counts_iterations = True
        self.figures.setText("Starting the training process…")
        self.validation.setText("")
        self.loss_chart.clear(info["iterations"])
        self.ap_chart.clear(info["iterations"])
        self.table.setRowCount(0)
        self.verdict.setText("")
        self.log.setVisible(False)
        self.figures_scroll.verticalScrollBar().setValue(0)  # the progress, not the last run's table
        self.cancel_button.setEnabled(True)
        self.resume_button.setEnabled(False)
        self.use_new_button.setEnabled(False)

    def show_event(self, event: TrainingEvent) -> None:
        """One event of the training process (the end is :meth:`show_run_ended`'s)."""
        if isinstance(event, StartEvent):
            self.progress.setMaximum(max(1, event.iterations))
            self.progress.setValue(event.start_iteration)
            self.progress.setFormat("%p%")
            self._bar_counts_iterations = True
            self.loss_chart.set_x_max(event.iterations)
            self.ap_chart.set_x_max(event.iterations)
            tier = TIER_NAMES.get(event.tier, event.tier)
            self.figures.setText(f"Training ({tier}) on {event.num_train_images} images…")
        elif isinstance(event, CachingEvent):
            # the heads tier's feature pass, before the first step: the bar counts images, not steps
            self.progress.setMaximum(max(1, event.total))
            self.progress.setValue(event.done)
            self.progress.setFormat(f"Caching features {event.done}/{event.total}")
            self._bar_counts_iterations = False
            left = event.elapsed_s / event.done * (event.total - event.done) if event.done else None
            where = " (on disk: they do not fit in memory)" if event.on_disk else ""
            self.figures.setText(
                f"Caching features {event.done}/{event.total}{where} · {_time_left(left)} of caching"
            )
        elif isinstance(event, ProgressEvent):
            self.progress.setMaximum(max(1, event.iterations))
            self.progress.setValue(event.iteration)
            self.progress.setFormat(f"%v/%m · {_time_left(event.eta_s)}")
            self._bar_counts_iterations = True
            for term in LOSS_TERMS:
                self.loss_chart.add_point(term, event.iteration, event.losses.get(term))
            self.figures.setText(
                f"iteration {event.iteration}/{event.iterations} · epoch {event.epoch:.2f} · "
                f"lr {event.lr:.2e} · {event.images_per_s:.2f} images/s · {_time_left(event.eta_s)}"
            )
        elif isinstance(event, EvaluationEvent):
            segm = event.metrics.get("segm") or {}
            self.ap_chart.add_point("mask AP", event.iteration, segm.get("ap"))
            self.validation.setText(
                f"Validation mask AP {_ap(segm.get('ap'))} (AP50 {_ap(segm.get('ap50'))}) "
                f"at iteration {event.iteration}"
            )
        elif isinstance(event, CheckpointEvent):
            self.figures.setText(self.figures.text() + " · checkpoint saved")

    def show_run_ended(self, outcome: RunOutcome) -> None:
        self.cancel_button.setEnabled(False)
        if outcome.status is RunStatus.FINISHED:
            self.progress.setFormat("%p%")
            self.figures.setText("Finished. Comparing with the base model on the same validation images…")
            return
        self._show_where_it_stopped()
        if outcome.status is RunStatus.CANCELLED:
            self.figures.setText("Cancelled. The last checkpoint is kept: Resume continues from it.")
        else:
            self.figures.setText(
                f"<b>Failed:</b> {outcome.message}. The project and the active model are unchanged."
            )
        if outcome.log_tail:
            self.log.setPlainText(outcome.log_tail)
            self.log.setVisible(True)

    def _show_where_it_stopped(self) -> None:
        """A run that ended before its last iteration: the bar says where ("iteration 44 of 200"), since a
        percentage alone does not tell what Resume continues from."""
        counts = self._bar_counts_iterations
        self.progress.setFormat(STOPPED_AT_ITERATION if counts else STOPPED_WHILE_CACHING)

    def set_resumable(self, resumable: bool) -> None:
        self.resume_button.setEnabled(resumable)

    def show_comparison(self, comparison: Comparison) -> None:
        # the model names go in the line above, not in the headers, where a narrow dock would cut them
        self.figures.setText(
            f"Finished. Mask AP on the same {comparison.num_images} validation images, before "
            f"(<b>{comparison.base_name}</b>) and after (<b>{comparison.new_name}</b>):"
        )
        for column, name in ((1, comparison.base_name), (2, comparison.new_name)):
            header = self.table.horizontalHeaderItem(column)
            if header is not None:  # the headers are set once in __init__; this only satisfies the Optional
                header.setToolTip(name)
        summaries = {
            ALL_CLASSES: "Every class the validation images show",
            KNOWN_CLASSES: "Classes the base model knew: " + (", ".join(comparison.known_classes) or "none"),
            NEW_CLASSES: "Classes new to the base model: " + (", ".join(comparison.new_classes) or "none"),
        }
        self.table.setRowCount(len(comparison.rows))
        for r, row in enumerate(comparison.rows):
            delta = row.delta
            cells = (row.name, _ap(row.base_ap), _ap(row.new_ap), "–" if delta is None else f"{delta:+.3f}")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if row.name in summaries:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                    item.setToolTip(summaries[row.name])
                self.table.setItem(r, c, item)
        if comparison.activates:
            self.verdict.setText(comparison.verdict)
        else:
            self.verdict.setText(f"{comparison.verdict} Use new version to switch anyway.")
        self.use_new_button.setEnabled(not comparison.activates)
        # bring the table into view once the layout has made room for its rows (the timer dies with self)
        QTimer.singleShot(0, self, lambda: self.figures_scroll.ensureWidgetVisible(self.table))

    def set_active_model(self, name: str, is_new_version: bool) -> None:
        """The worker loaded ``name``; re-segmenting makes sense once the run's new version is active."""
        self.resegment_button.setEnabled(is_new_version)
        if is_new_version:
            self.use_new_button.setEnabled(False)
            self.verdict.setText(f"{name} is the active model. Re-segment the images nobody corrected yet.")

    def show_past_run(self, past: PastRun) -> None:
        """The project's last run as it was left (the project was opened again): its curves replayed from
        its metrics log, its figures, and its before/after table once both versions were scored."""
        self.show_run_started(
            {
                "name": past.name,
                "base": past.base_name,
                "train_images": past.train_images,
                "val_images": past.val_images,
                "iterations": past.iterations,
            }
        )
        for event in past.events:
            self.show_event(event)
        self.progress.setFormat("%p%")  # no time left: the run is over
        self.cancel_button.setEnabled(False)
        if past.status is not RunStatus.FINISHED:
            self._show_where_it_stopped()
        if past.comparison is not None:
            self.show_comparison(past.comparison)
            return
        if past.status is RunStatus.CANCELLED:
            # Closing the project stops a run as Cancel does: "cancelled" alone puzzles whoever closed it.
            self.figures.setText(STOPPED_RUN_TEXT)
            return
        error = past.run.metrics.get("error")
        self.figures.setText(f"The last run {past.status}" + (f": {error}" if error else "."))

    def reset(self) -> None:
        """Back to the empty state (the project closed)."""
        self.title.setText("No fine-tuning run yet: Model ▸ Fine-tune…")
        self.progress.setValue(0)
        for label in (self.figures, self.validation, self.verdict):
            label.setText("")
        self.loss_chart.clear()
        self.ap_chart.clear()
        self.table.setRowCount(0)
        self.log.setVisible(False)
        for button in (self.cancel_button, self.resume_button, self.use_new_button, self.resegment_button):
            button.setEnabled(False)
