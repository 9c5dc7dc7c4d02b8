"""settle_heap: what `callcenter serve` does to the collector once the engine is up."""

from __future__ import annotations

import subprocess
import sys


def test_start_up_objects_are_frozen_and_young_collections_rarer() -> None:
    # In a process of its own: a frozen heap is for the life of the process.
    code = (
        "import gc\n"
        "from callcenter.runtime import GC_YOUNG_THRESHOLD, settle_heap\n"
        "before = gc.get_threshold()\n"
        "settle_heap()\n"
        "after = gc.get_threshold()\n"
        "assert gc.get_freeze_count() > 10000, gc.get_freeze_count()\n"
        "assert after == (GC_YOUNG_THRESHOLD, *before[1:]), (before, after)\n"
        "assert GC_YOUNG_THRESHOLD > before[0]\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
