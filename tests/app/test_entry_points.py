"""``maskrcnn-studio`` arguments and the ``--demo`` folder."""

from __future__ import annotations

import pytest

from app.__main__ import build_parser, main
from app.project.demo import DEMO_IMAGES, demo_folder
from app.project.locations import user_cache_dir


def test_demo_folder_is_generated_once_in_the_user_cache():
    folder = demo_folder()
    assert folder.is_relative_to(user_cache_dir())
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == DEMO_IMAGES
    stamp = [p.stat().st_mtime_ns for p in pngs]
    assert demo_folder() == folder
    assert [p.stat().st_mtime_ns for p in pngs] == stamp  # reused, not redrawn


def test_gui_arguments():
    args = build_parser().parse_args(["photos", "--weights", "m.pt"])
    assert (str(args.folder), str(args.weights), args.demo) == ("photos", "m.pt", False)
    with pytest.raises(SystemExit) as usage:
        main(["--demo", "photos"])
    assert usage.value.code == 2
