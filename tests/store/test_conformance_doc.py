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

from tests.harness import ROOT


def section(title):
    with open(os.path.join(ROOT, "docs", "extending.md")) as f:
        text = f.read()
    start = text.index("## " + title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def pythonFiles(text):
    """The ```python blocks that start with '# <file name>': {name: content}."""
    files = {}
    for body in re.findall(r"```python\n(.*?)```", text, re.S):
        first = body.split("\n", 1)[0]
        if first.startswith("# "):
            files[first[2:].split()[0]] = body
    return files


def test_example_backend_passes_the_conformance_suite_as_documented(tmp_path):
    backend = pythonFiles(section("Writing a store backend"))["auditstore.py"]
    testing = section("Testing a store backend")
    files = pythonFiles(testing)
    assert set(files) == {"test_auditstore.py"}
    (tmp_path / "auditstore.py").write_text(backend)
    (tmp_path / "test_auditstore.py").write_text(files["test_auditstore.py"])
    commands = [line for body in re.findall(r"```sh\n(.*?)```", testing, re.S) for line in body.splitlines()]
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
