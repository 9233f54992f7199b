"""The code location makes its process skip the shutdown garbage-collector passes
(embed_dagster/lib/process_exit.py)."""

import subprocess
import sys

import pytest

# An atexit handler registered before the code location loads runs after the code location's own
# handler (atexit is last-in, first-out), so it sees what that handler left behind.
_CHILD = """
import atexit, gc
atexit.register(lambda: print("frozen", gc.get_freeze_count()))
import embed_dagster.definitions
print("loaded", gc.get_freeze_count())
"""


@pytest.mark.integration
def test_loading_the_code_location_freezes_the_heap_at_exit():
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    loaded, frozen = int(out[out.index("loaded") + 1]), int(out[out.index("frozen") + 1])
    assert loaded == 0  # nothing is frozen while the process works
    assert frozen > 10_000  # at exit: the definitions' objects, at least
