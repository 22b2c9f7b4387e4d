"""Run ``cschat run`` under cProfile, threads included, and write the statistics.

    python scripts/profile_server.py OUT_PREFIX --config cschat.ini

``cschat run`` stops cleanly on SIGINT or SIGTERM; then this writes
``OUT_PREFIX.main.prof`` (the event-loop thread: Tornado, the chat service,
JSON) and ``OUT_PREFIX.threads.prof`` (the aiosqlite threads: SQL and
commits), both loadable with :mod:`pstats`. A plain ``python -m cProfile``
would only see the main thread and miss every SQLite call.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading

from cschat.cli import main as cschat_main

_thread_profiles: list[cProfile.Profile] = []
_original_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    profile = cProfile.Profile()
    try:
        profile.enable()
    except ValueError:   # Python 3.12+: one profiler at a time; the thread goes unprofiled
        _original_run(self)
        return
    _thread_profiles.append(profile)
    try:
        _original_run(self)
    finally:
        profile.disable()


def main() -> int:
    prefix, args = sys.argv[1], sys.argv[2:]
    threading.Thread.run = _profiled_run
    profile = cProfile.Profile()
    profile.enable()
    try:
        code = cschat_main(["run", *args])
    finally:
        profile.disable()
        profile.dump_stats(prefix + ".main.prof")
        # The aiosqlite threads have ended with the store; idle executor threads add nothing.
        if _thread_profiles:
            stats = pstats.Stats(_thread_profiles[0])
            for thread_profile in _thread_profiles[1:]:
                stats.add(thread_profile)
            stats.dump_stats(prefix + ".threads.prof")
    return code


if __name__ == "__main__":
    sys.exit(main())
