"""`pip install .` into a fresh virtualenv, then `dcnviz app` from a folder outside the checkout serves the Tour.

The wheel is built from a copy of the checkout's files (git's tracked and untracked-but-not-ignored
ones), so the test sees what a clone holds and leaves no build/ folder behind. Then:

* **full** (under ``CI=true``, or with ``DCNVIZ_INSTALL_TEST=full``): ``pip install dcnviz-*.whl`` into a
  new venv resolves every dependency the package declares (torch from the local wheel, the rest from
  pip's cache or index) — what a user gets; ``pip check`` passes. About 1–2 min on the 2-core machine when it is quiet.
* **fast** (otherwise): the wheel goes in with ``--no-deps`` and the venv sees this test run's
  site-packages through a ``.pth`` file; every dependency the wheel declares must be installed at a
  version it accepts (torch exactly 2.13.0). About 20 s; the package data, console script and app
  are exercised the same way.

Either way the installed ``dcnviz`` is the wheel's (not this checkout), it finds its bundled demo models and
sample, ``dcnviz inspect`` works on a bundled model, and ``dcnviz app`` started from a temporary folder
serves the Tour in Chromium with the app's settings applied (no usage statistics, no file watcher).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers.browser import assert_the_apps_settings, open_the_tour

# under `pytest -n auto --dist loadgroup` one worker runs both tests, so the wheel and venv are built once
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("install")]

MODE = "full" if os.environ.get("CI", "").lower() == "true" else os.environ.get("DCNVIZ_INSTALL_TEST", "fast")


DEPS_SATISFIED = """
from importlib.metadata import requires, version
from packaging.requirements import Requirement
reqs = [Requirement(r) for r in requires("dcnviz")]
assert any(r.name == "torch" and str(r.specifier) == "==2.13.0" for r in reqs), reqs
bad = [f"{r} (have {version(r.name)})" for r in reqs if not r.specifier.contains(version(r.name), prereleases=True)]
assert not bad, bad
"""


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def checkout_copy(dest: Path) -> Path:
    """The files git would hand a clone (plus untracked, not ignored ones) copied to ``dest``."""
    if shutil.which("git") and (ROOT / ".git").exists():
        out = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT).stdout
        files = [f for f in out.split("\0") if f and (ROOT / f).is_file()]
    else:  # not a git checkout: everything but virtualenvs and caches
        skip = {".venv", ".git", "build", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
        files = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.parts)]
    for f in files:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    return dest


@pytest.fixture(scope="session")  # session: built once even when other tests run between these two
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (see the module docstring for full / fast); returns its bin/."""
    tmp = tmp_path_factory.mktemp("install")
    src = checkout_copy(tmp / "src")
    wheels = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(src)])
    (wheel,) = wheels.glob("dcnviz-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
    if MODE == "full":
        _run([*pip, str(wheel)], timeout=1200)
    else:
        _run([*pip, "--no-deps", str(wheel)])
        purelib = _run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
        (Path(purelib.stdout.strip()) / "_dcnviz_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # every dependency dcnviz declares is installed at a version it accepts
    _run([str(venv / "bin" / "python"), "-c", DEPS_SATISFIED])
    if MODE == "full":
        _run([str(venv / "bin" / "python"), "-m", "pip", "check"])
    return venv / "bin"


def test_the_wheel_runs_with_no_checkout(installed: Path, tmp_path: Path) -> None:
    away = tmp_path / "elsewhere"
    away.mkdir()
    probe = (
        "import json, dcnviz, dcnviz.resources as r, dcnviz.data as d; "
        "print(json.dumps({'pkg': dcnviz.__file__,"
        " 'models': sorted(p.name for p in r.MODELS_DIR.glob('*.safetensors')), 'sample': str(d.SAMPLE_DIR),"
        " 'ok': r.STREAMLIT_CONFIG.is_file()}))"
    )
    info = json.loads(_run([str(installed / "python"), "-c", probe], cwd=away).stdout)
    assert not info["pkg"].startswith(str(ROOT)), "the installed package, not this checkout"
    assert info["models"] == sorted(p.name for p in (ROOT / "models").glob("*.safetensors")) and info["models"]
    assert "_bundled" in info["sample"] and info["ok"], info
    # the console script is `python -m dcnviz`: same commands, same JSON
    model = next(Path(info["sample"]).parent.joinpath("models").glob("*sample*.safetensors"))
    out = _run([str(installed / "dcnviz"), "inspect", str(model), "--json"], cwd=away).stdout
    assert json.loads(out.strip().splitlines()[-1])["format"] == "dcnviz"


def test_dcnviz_app_from_another_folder_serves_the_tour(installed: Path, chromium: str, tmp_path: Path) -> None:
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DCNVIZ_", "STREAMLIT_"))}
    cmd = [str(installed / "dcnviz"), "app"]
    seen = open_the_tour(chromium, cmd, cwd=away, env=env, log_path=tmp_path / "dcnviz-app.log")
    assert "movie_id" in seen["labels"], seen  # the bundled dcnv2_sample model is shown first
    assert_the_apps_settings(seen)
