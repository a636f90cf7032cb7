"""The QThread job runner: results, progress, cancellation and errors never crash the GUI."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QMessageBox, QWidget

from crystal_studio.core.errors import CrystalStudioError
from crystal_studio.core.progress import ProgressEvent
from crystal_studio.gui.jobs import Job, JobManager, JobsStatusWidget


def test_job_returns_result_and_reports_progress(qtbot):
    def work(progress, cancel):
        for i in range(1, 6):
            progress(ProgressEvent(i, 5, "counting"))
        return "done"

    job = Job("Counting", work)
    events = []
    job.progress.connect(events.append)
    with qtbot.waitSignal(job.done, timeout=5000):
        job.start()
    assert job.state == "succeeded" and job.result == "done"
    assert events and events[-1].step == 5  # throttled, but the final event always arrives


def test_cancel_is_cooperative_and_prompt(qtbot):
    def work(progress, cancel):
        while True:
            cancel.check()
            time.sleep(0.01)

    job = Job("Spinning", work)
    job.start()
    start = time.monotonic()
    with qtbot.waitSignal(job.cancelled, timeout=2000):
        job.cancel()
    assert time.monotonic() - start < 1.0
    assert job.state == "cancelled"


def test_user_error_becomes_dialog_with_details(qtbot):
    parent = QWidget()
    qtbot.addWidget(parent)
    manager = JobManager(parent)

    def work(progress, cancel):
        raise CrystalStudioError("data.cif: no atoms")

    job = manager.start("Importing", work)
    qtbot.waitUntil(lambda: manager.last_error_dialog is not None, timeout=5000)
    dialog = manager.last_error_dialog
    assert job.state == "failed"
    assert dialog.text() == "data.cif: no atoms"
    assert "CrystalStudioError" in dialog.detailedText()
    assert dialog.icon() == QMessageBox.Icon.Critical
    dialog.close()
    assert manager.jobs == []


def test_unexpected_exception_is_reported_not_raised(qtbot):
    manager = JobManager(None)
    job = manager.start("Exploding", lambda progress, cancel: 1 / 0, show_errors=False)
    with qtbot.waitSignal(job.done, timeout=5000):
        pass
    assert job.state == "failed"
    message, details = job.error
    assert "ZeroDivisionError" in message and "Traceback" in details


def test_status_widget_shows_and_cancels_running_job(qtbot):
    manager = JobManager(None)
    status = JobsStatusWidget(manager)
    qtbot.addWidget(status)

    def work(progress, cancel):
        for i in range(1000):
            progress(ProgressEvent(i, 1000, "working"))
            cancel.check()
            time.sleep(0.005)

    job = manager.start("Long job", work)
    row = status.rows[job]
    assert not status.isHidden()
    qtbot.waitUntil(lambda: row.bar.maximum() == 1000, timeout=3000)
    with qtbot.waitSignal(job.done, timeout=2000):
        row.cancel_button.click()
    assert job.state == "cancelled"
    assert job not in status.rows and status.isHidden()


def test_full_garbage_collections_pause_while_jobs_run_and_resume_after(qtbot):
    import gc
    import threading

    manager = JobManager()
    before = gc.get_threshold()
    seen, release = {}, threading.Event()

    def work(progress, cancel):
        seen["threshold"] = gc.get_threshold()
        release.wait(5)
        return gc.get_freeze_count()

    first = manager.start("Holding", work, show_errors=False)
    second = manager.start("Quick", lambda progress, cancel: None, show_errors=False)
    with qtbot.waitSignal(second.done, timeout=5000):
        pass
    assert gc.get_threshold()[2] > 10**9  # one job still runs: still paused
    with qtbot.waitSignal(first.done, timeout=5000):
        release.set()
    assert seen["threshold"][:2] == before[:2] and seen["threshold"][2] > 10**9
    assert first.result > 0  # what was alive at the start is out of the collector's reach
    assert gc.get_threshold() == before
    gc.unfreeze()
