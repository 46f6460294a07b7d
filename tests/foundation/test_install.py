"""
mailnet installed the ways a newcomer installs it (`pip install .` and the
default editable `pip install -e .`), each into a real virtual environment of
its own: both `mailnet run` and `twistd -n mailnet` must start the server.

No network: the new venv gets no pip and no dependencies of its own; a .pth
file makes the test interpreter's site-packages (Twisted, cryptography...)
importable there, and this interpreter's pip installs mailnet into it with
``--no-deps --no-build-isolation`` from a copy of the checkout.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import venv

import pytest

from tests.harness import LISTENERS, ROOT, writeConfig

pytestmark = pytest.mark.slow

# twistd's own entry point (the venv has no `twistd` script: Twisted is not
# installed into it, only made importable).
TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"


def copySource(dest):
    """The files a build needs, without caches or a development .venv."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache")
    for name in ("mailnet", "twisted"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(dest, name), ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), dest)


def makeVenv(path):
    venv.create(path, with_pip=False)
    python = os.path.join(path, "bin", "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(purelib, "_mailnet_test_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    return python


def startAndStop(argv, cwd, env, timeout=60):
    """Run a server command until it logs `mailnet ready` (or exits); its output."""
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    ready = threading.Event()

    def read():
        for line in process.stdout:
            lines.append(line)
            if "mailnet ready" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ready.wait(timeout)
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)
    return "".join(lines)


@pytest.mark.parametrize("mode", ["regular", "editable"])
def test_installed_mailnet_starts_both_ways(tmp_path, mode):
    source = tmp_path / "src"
    copySource(source)
    python = makeVenv(str(tmp_path / "venv"))
    spec = ["-e", str(source)] if mode == "editable" else [str(source)]
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile",
                          "--no-deps", "--no-build-isolation", "--no-index", *spec],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout + pip.stderr

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MAILNET_CONFIG")}
    env["PYTHONUNBUFFERED"] = "1"
    # mailnet comes from the install, not from the checkout the tests run in
    where = subprocess.run([python, "-c", "import mailnet; print(mailnet.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    expected = str(source) if mode == "editable" else str(tmp_path / "venv")
    assert where.startswith(expected + os.sep), where

    mailnet = os.path.join(os.path.dirname(python), "mailnet")
    for name in ("run", "twistd"):
        conf = str(work / f"{name}.toml")
        writeConfig(conf, {
            "server": {"hostname": "mx.example.test", "data_dir": str(work / f"data-{name}")},
            "domains": {"local": ["example.test"]},
            "listen": {listener: "tcp:0:interface=127.0.0.1" for listener in LISTENERS},
            "store": {"backend": "memory"},
            "dns": {"nameservers": ["127.0.0.1:9"], "timeout": 2},
        })
        if name == "run":
            argv = [mailnet, "--config", conf, "run"]
        else:
            argv = [python, "-c", TWISTD, "--nodaemon", "--pidfile=", "mailnet", "--config", conf]
        out = startAndStop(argv, cwd=work, env=env)
        assert "mailnet ready" in out, f"{mode}, {name}:\n{out}"
        assert "Unknown command" not in out and "Traceback" not in out, out
