#!/usr/bin/env python3
"""
``python -m mailnet ARGS`` under cProfile, for ``BENCH_PROFILE``: the
profile (main thread: the reactor) goes to the file named by
``BENCH_PROFILE_OUT``.  ``python -m cProfile`` writes nothing here:
after a SIGTERM, twistd ends the process by re-raising the signal
(``twisted.application.app._exitWithSignal``), so the profile is written
in its place.
"""

import cProfile
import os
import runpy
import sys

import twisted.application.app as app

OUT = os.environ["BENCH_PROFILE_OUT"]
profile = cProfile.Profile()


def _exitWithSignal(sig):
    profile.disable()
    profile.dump_stats(OUT)
    os._exit(0)


app._exitWithSignal = _exitWithSignal
sys.argv = ["mailnet"] + sys.argv[1:]
profile.enable()
try:
    runpy.run_module("mailnet", run_name="__main__", alter_sys=True)
finally:
    profile.disable()
    profile.dump_stats(OUT)
