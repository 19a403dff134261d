"""A built wheel installs and runs on its own: its entry points, the files it carries, ``--demo``.

The wheel is built from a copy of the packages (so the build writes nothing into the checkout) with the
test environment's setuptools, offline, and installed with ``--no-deps`` into a fresh virtual environment
whose only link to this one is a ``.pth`` line to its site-packages, for the heavy dependencies (torch,
PySide6, ...). This environment's editable install is a finder hook that such a line does not load, so the
``app`` and ``maskrcnn_core`` the commands import are the wheel's, as the test checks. Everything runs
from a folder outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from app.resources import APP_ICON, DEMO_MODEL

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="app/resources/models/demo.pt is not built yet"),
]

# Run inside the installed environment: open the --demo window and wait for its "Auto-segment all".
DEMO_DRIVER = textwrap.dedent("""\
    import sys
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import app.__main__ as studio
    from app.ui.main_window import MainWindow

    qapp = QApplication(sys.argv[:1])

    def watch():
        (window,) = [w for w in qapp.topLevelWidgets() if isinstance(w, MainWindow)]
        seg = window.segmentation

        def finished(job_id, cancelled):
            print("model:", seg.model.info.name, "cancelled:", cancelled, flush=True)
            print("icon:", "none" if qapp.windowIcon().isNull() else "set", flush=True)
            qapp.quit()

        seg.jobFinished.connect(finished)

    QTimer.singleShot(0, watch)
    QTimer.singleShot(240_000, lambda: (print("timed out", flush=True), qapp.exit(3)))
    sys.exit(studio.main(["--demo"]))
""")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed; returns its bin folder."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in ("app", "maskrcnn_core"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = root / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run([*build, "-w", str(wheels), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = wheels.glob("maskrcnn_studio-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index"]
    done = subprocess.run([*install, str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin"


def _run(command: list, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``command`` from ``cwd`` (outside the checkout), with its own user folders."""
    home = cwd / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CONFIG_HOME=str(home / "config"),
        MASKRCNN_CACHE_DIR=str(home / "cache" / "maskrcnn"),
        QT_QPA_PLATFORM="offscreen",
        OMP_NUM_THREADS="1",
    )
    return subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_installed_commands_run_and_find_the_shipped_demo_model(installed: Path, tmp_path: Path) -> None:
    venv = installed.parent
    for command, usage in (("maskrcnn-core", "COMMAND"), ("maskrcnn-studio", "--demo")):
        done = _run([installed / command, "--help"], tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.startswith(f"usage: {command}") and usage in done.stdout

    where = (
        "import app, maskrcnn_core\n"
        "from app.project.model_sources import bundled_demo_model\n"
        "from app.resources import APP_ICON\n"
        "print(app.__file__); print(maskrcnn_core.__file__); print(bundled_demo_model()); print(APP_ICON)\n"
    )
    done = _run([installed / "python", "-c", where], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    app_file, core_file, demo, icon = (Path(line) for line in done.stdout.splitlines())
    for path in (app_file, core_file, demo, icon):  # the wheel's own files, not the checkout's
        assert path.is_relative_to(venv), path
    assert demo.name == "demo.pt" and demo.read_bytes() == DEMO_MODEL.read_bytes()
    assert icon.read_bytes() == APP_ICON.read_bytes()


def test_the_installed_demo_segments_with_the_shipped_model(installed: Path, tmp_path: Path) -> None:
    done = _run([installed / "python", "-c", DEMO_DRIVER], tmp_path, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "model: demo-shapes cancelled: False" in done.stdout
    assert "icon: set" in done.stdout
