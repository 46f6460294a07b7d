"""
docs/extending.md's "Testing a store backend", done as a reader would: the
example backend and its test module, saved into an empty directory, and the
doc's pytest command run there against the installed mailnet.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.foundation.test_extending import docCommands, docFiles, section
from tests.harness import ROOT


def test_example_backend_passes_the_conformance_suite_as_documented(tmp_path):
    backend = docFiles(section("Writing a store backend"))["auditstore.py"]
    testing = section("Testing a store backend")
    files = docFiles(testing)
    assert set(files) == {"test_auditstore.py"}
    (tmp_path / "auditstore.py").write_text(backend)
    (tmp_path / "test_auditstore.py").write_text(files["test_auditstore.py"])
    commands = docCommands(testing)
    assert commands == ["python -m pytest -q test_auditstore.py"]
    # PYTHONPATH names only the mailnet under test, as if it were installed.
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    argv = [sys.executable] + commands[0].split()[1:] + ["-p", "no:cacheprovider"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    passed = int(re.search(r"(\d+) passed", out).group(1))
    assert passed >= 60 and "failed" not in out, out
