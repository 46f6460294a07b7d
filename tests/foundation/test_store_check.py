"""`mailnet config check` finds every [store] problem `mailnet run` would
meet, each as one line with exit status 2; `run` refuses the same way."""

import os
import subprocess
import sys

import pytest

from mailnet import config
from tests.harness import ROOT

GOOD = '''
from mailnet.store.memory import MemoryStore


def makeStore(config):
    return MemoryStore()
'''

CASES = {
    "no module": ("nosuchbackend:makeStore", None, "",
                  "mailnet.toml: [store] backend: cannot import nosuchbackend: No module named 'nosuchbackend'"),
    "no factory": ("mystore:makeStor", GOOD, "",
                   "mailnet.toml: [store] backend: mystore has no makeStor"),
    "no colon": ("mystore", GOOD, "",
                 'mailnet.toml: [store] backend: expected "maildir", "memory", "postgres" or "package.module:factory", got "mystore"'),
    "not callable": ("mystore:NAME", GOOD + "NAME = 'x'\n", "",
                     "mailnet.toml: [store] backend: mystore:NAME is not callable"),
    "not a store": ("mystore:makeStore", "def makeStore(config):\n    return object()\n", "",
                    "mailnet.toml: [store] backend: mystore:makeStore did not return an IMailStore (got object)"),
    "broken module": ("mystore:makeStore", "import nosuchdependency\n", "",
                      "mailnet.toml: [store] backend: cannot import mystore: No module named 'nosuchdependency'"),
    "module crashes": ("mystore:makeStore", "1 / 0\n", "",
                       "mailnet.toml: [store] backend: importing mystore failed: ZeroDivisionError: division by zero"),
    "factory crashes": ("mystore:makeStore", "def makeStore(config):\n    raise OSError('database unreachable')\n", "",
                        "mailnet.toml: [store] backend mystore:makeStore: making the store failed: OSError: database unreachable"),
    "bad option": ("mystore:makeStore",
                   "def makeStore(config):\n    raise ValueError(f'[store.options] {sorted(config.store.options)[0]}: unknown option')\n",
                   '[store.options]\nurl = "db://"\n',
                   "mailnet.toml: [store] backend mystore:makeStore: [store.options] url: unknown option"),
    "built-in with options": ("maildir", None, "[store.options]\npath = \"x\"\n",
                              "mailnet.toml: [store.options] path: the maildir backend takes no options"),
    "options not a table": ("memory", None, "options = 3\n",
                            "mailnet.toml: [store] options: expected a table ([store.options]), got 3"),
}


def setUp(directory, backend, module, extra):
    if module is not None:
        (directory / "mystore.py").write_text(module)
    if extra.startswith("["):
        text = f'[store]\nbackend = "{backend}"\n\n{extra}'
    else:
        text = f'[store]\nbackend = "{backend}"\n{extra}'
    (directory / "mailnet.toml").write_text(text)


def mailnet(directory, *args):
    # The console script, as a reader runs it: the config's directory is not
    # on the import path unless mailnet puts it there.
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("MAILNET_CONFIG", None)
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "mailnet"), *args], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_check_reports_one_line(tmp_path, case):
    backend, module, extra, expected = CASES[case]
    setUp(tmp_path, backend, module, extra)
    done = mailnet(tmp_path, "config", "check", "mailnet.toml")
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"mailnet: {expected}\n")
    assert not (tmp_path / "var").exists()


def test_config_check_accepts_a_good_backend_beside_the_config(tmp_path):
    setUp(tmp_path, "mystore:makeStore", GOOD, '[store.options]\nanything = "goes"\n')
    other = tmp_path / "elsewhere"
    other.mkdir()
    done = mailnet(other, "config", "check", "../mailnet.toml")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "../mailnet.toml: ok\n"


@pytest.mark.parametrize("case", ["not a store", "bad option"])
def test_run_refuses_with_the_same_line(tmp_path, case):
    backend, module, extra, expected = CASES[case]
    setUp(tmp_path, backend, module, extra)
    done = mailnet(tmp_path, "--config", "mailnet.toml", "run")
    assert done.returncode == 2
    assert f"mailnet: {expected}\n" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout


def test_store_options_table():
    conf = config.fromDict({"store": {"backend": "x:y", "options": {"url": "db://", "pool": {"size": 3}}}})
    assert conf.store.options == {"url": "db://", "pool": {"size": 3}}
    assert config.fromDict({}).store.options == {}
    with pytest.raises(config.ConfigError, match=r"^<dict>: \[store\] options: expected a table"):
        config.fromDict({"store": {"options": "url=db://"}})
