"""A normal (non-editable) install works: the wheel carries everything the package reads.

Issue 11, item 1: ``pip install .`` then ``python -m week04_lib chat hello`` failed with
``FileNotFoundError: .../site-packages/data/pricing.csv``, because the pricing table lay
outside the package and was found relative to the source tree. Only an install from a
wheel shows that; an editable install, which every other test uses, cannot.

How the install is made, and why:

- The wheel is built by calling the build backend that ``pyproject.toml`` names
  (``setuptools.build_meta``) in a fresh interpreter, the one running the tests, as
  ``pip wheel --no-deps --no-build-isolation`` would call it, without pip's own two
  seconds of start-up and checks. That interpreter's setuptools
  (``requirements-dev.txt``) builds it offline in under a second; with build isolation
  pip would download setuptools every run. It is built from a copy of
  ``pyproject.toml``, ``README.md`` and ``week04_lib/`` in tmp_path, so the build sees no
  ``build/`` left over from another run and no file that version control might add, and
  writes nothing into the checkout.
- The fresh venv is made with ``venv --without-pip`` and the wheel installed into it with
  ``pip --python VENV install --no-deps --no-index --no-compile``: the package in it
  comes from the wheel and from nothing else (and no time goes on ``.pyc`` files, which
  the first import writes anyway). Not ``--system-site-packages``, which would expose the
  base interpreter's packages; not downloading the dependencies, which costs time and
  network on every run. Instead one ``.pth`` file names the site-packages directories
  that hold the test interpreter's ``requests``, ``urllib3`` and ``tenacity`` (so under
  ``make test-lowest`` the floors' versions). Python appends such a directory to
  ``sys.path`` after the venv's own site-packages and runs none of its ``.pth`` files
  (the checkout's editable-install hook among them), so the dependencies import while
  ``week04_lib`` resolves to the wheel's copy, which the test asserts.
- Everything runs from an empty working directory with no ``PYTHON*``, ``WEEK04_*`` or
  ``OPENAI_*`` variables, so neither the checkout nor a configured endpoint can leak in:
  ``chat`` then uses its embedded fake server.

About 4 s on the 2-core machine.
"""

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import requests
import tenacity
import urllib3

ROOT = Path(__file__).resolve().parent.parent
BACKEND = "setuptools.build_meta"  # pyproject.toml's [build-system] build-backend

PRICED_CALL = """
import json, sys
import week04_lib
from week04_lib import ClientConfig, LLMClient
from week04_lib.cost import PRICING_CSV
from week04_lib.fakeserver import FakeLLMServer

with FakeLLMServer(latency=0) as srv, LLMClient(
    ClientConfig(base_url=srv.url, api_key="sk-test", model="fake-mini")
) as client:
    result = client.chat([{"role": "user", "content": "hello"}], max_tokens=16)
json.dump(
    {"file": week04_lib.__file__, "pricing": str(PRICING_CSV), "model": result.model, "cost_usd": result.cost_usd},
    sys.stdout,
)
"""


def run(args, cwd, env=None, timeout=120):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args[:4]} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def build_wheel(tmp_path: Path) -> Path:
    src, dist = tmp_path / "src", tmp_path / "dist"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "week04_lib", src / "week04_lib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    assert f'build-backend = "{BACKEND}"' in (src / "pyproject.toml").read_text(), "build with the backend it names"
    # PEP 517's build_wheel hook, run as a frontend runs it: a fresh interpreter in the source tree
    run([sys.executable, "-c", f"import sys, {BACKEND} as backend; backend.build_wheel(sys.argv[1])", dist], cwd=src)
    (wheel,) = dist.glob("week04_lib-*.whl")
    return wheel


def fresh_venv(tmp_path: Path, wheel: Path) -> tuple[Path, Path]:
    """A venv holding the wheel only; its dependencies come from this interpreter's
    site-packages through one ``.pth`` file (see the module docstring)."""
    home = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(home)
    python = home / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(
        run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip()
    )
    pip_install = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index"]
    run([*pip_install, "--no-compile", wheel], cwd=tmp_path, env=clean_env())
    deps = sorted({str(Path(module.__file__).resolve().parent.parent) for module in (requests, urllib3, tenacity)})
    assert str(ROOT) not in deps
    (purelib / "_week04_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    return home, python


def clean_env() -> dict[str, str]:
    drop = ("PYTHON", "WEEK04_", "OPENAI_", "PIP_", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def test_a_wheel_installed_in_a_fresh_venv_chats_and_prices(tmp_path):
    wheel = build_wheel(tmp_path)
    home, python = fresh_venv(tmp_path, wheel)
    elsewhere = tmp_path / "cwd"  # not the checkout: `python -m` puts the working directory first on sys.path
    elsewhere.mkdir()
    env = clean_env()

    chat = run([python, "-m", "week04_lib", "chat", "hello"], cwd=elsewhere, env=env)
    assert chat.stdout.strip() and "Traceback" not in chat.stderr

    priced = json.loads(run([python, "-c", PRICED_CALL], cwd=elsewhere, env=env).stdout)
    installed = Path(priced["file"]).resolve()
    assert installed.is_relative_to(home.resolve()) and not installed.is_relative_to(ROOT)
    assert Path(priced["pricing"]).resolve().is_relative_to(home.resolve())
    assert priced["model"] == "fake-mini" and priced["cost_usd"] is not None and priced["cost_usd"] > 0
