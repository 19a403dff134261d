"""scripts/setup.sh, run for real on a copy of the project: what it does when the disk is too full."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fake_df(bin_dir: Path, free_kb: int) -> None:
    """A `df` on PATH that reports `free_kb` KiB available, in the POSIX format (`df -P`) the script reads."""
    bin_dir.mkdir()
    script = bin_dir / "df"
    script.write_text(
        "#!/bin/sh\n"
        'echo "Filesystem 1024-blocks Used Available Capacity Mounted on"\n'
        f'echo "/dev/fake 262144000 262000000 {free_kb} 99% /"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("python3.11") is None, reason="setup.sh needs python3.11 on PATH")
def test_a_first_install_on_a_nearly_full_disk_stops_at_once_with_one_line_saying_how_much_is_free(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "setup.sh", project / "scripts" / "setup.sh")
    shutil.copy2(ROOT / "pyproject.toml", project / "pyproject.toml")
    _fake_df(tmp_path / "bin", free_kb=2 * 1024 * 1024 + 300 * 1024)  # 2.3 GB

    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(project / "scripts" / "setup.sh")], env=env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 1, done.stdout + done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("setup: error: 2.3 GB free on the disk that holds "), errors[0]
    assert "need about 7 GB" in errors[0]
    # Nothing was installed, and no stamp says it was: the next run, with space freed, installs everything.
    site_packages = project / ".venv" / "lib" / "python3.11" / "site-packages"
    assert not (site_packages / "torch").exists()
    assert not list(site_packages.glob("__editable__*"))
    assert not (project / ".venv" / ".maskrcnn-studio-setup").exists()
