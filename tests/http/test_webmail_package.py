"""
The webmail's files are installed with the package (pyproject.toml
package data): a regular `pip install .` into a fresh venv (as
tests/foundation/test_install.py does it, without network) has them,
nested directories included.
"""

import os
import subprocess
import sys

import pytest

from tests.foundation.test_install import copySource, makeVenv

pytestmark = pytest.mark.slow


def test_pip_install_includes_the_static_files(tmp_path):
    source = tmp_path / "src"
    copySource(source)
    static = source / "mailnet" / "http" / "static" / "webmail"
    (static / "js" / "deep").mkdir(parents=True, exist_ok=True)
    (static / "js" / "deep" / "probe-module.js").write_text("export const probe = 1;\n")
    python = makeVenv(str(tmp_path / "venv"))
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile",
                          "--no-deps", "--no-build-isolation", "--no-index", str(source)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    where = subprocess.run([python, "-c", "import mailnet.http.webmail as w; print(w.STATIC_ROOT)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(tmp_path / "venv"))
    assert os.path.isfile(os.path.join(where, "index.html"))
    assert os.path.isfile(os.path.join(where, "js", "deep", "probe-module.js"))
