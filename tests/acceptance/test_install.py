"""`pip install .` puts one top-level package in site-packages: `syncjobs`, and nothing named `shared`."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_one_top_level_package_and_its_scripts(tmp_path: Path) -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    source = tmp_path / "source"
    for name in tracked.splitlines():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path / "dist"), "."],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("syncjobs-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"syncjobs", wheel.name.split("-py")[0] + ".dist-info"}
    for package in ("api", "worker", "executor", "shared", "shared/store", "executor/sources"):
        assert f"syncjobs/{package}/__init__.py" in names
    assert "syncjobs/api/dashboard/index.html" in names
    entry_points = configparser.ConfigParser()
    entry_points.read_string(
        zipfile.ZipFile(wheel).read(wheel.name.split("-py")[0] + ".dist-info/entry_points.txt").decode()
    )
    assert dict(entry_points["console_scripts"]) == {
        "syncjobs": "syncjobs.cli:main",
        "syncjobs-executor": "syncjobs.executor.cli:main",
    }
