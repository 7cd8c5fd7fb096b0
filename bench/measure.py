"""Run one command and report its wall time and peak memory as JSON on stdout:

- ``peak_mib``: ru_maxrss of the waited-for children, i.e. the largest single process of the
  command's tree (exact, but blind to processes running side by side);
- ``peak_tree_mib``: the largest sum of RSS over the whole process tree (the command and every
  descendant alive at that moment, e.g. convertkit's Node runner beside Python), sampled every
  20 ms with psutil (a peak shorter than that can be missed). Memory targets use this one.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time


def _tree_rss(proc: object) -> int:
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]  # type: ignore[attr-defined]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass  # exited between listing and reading
    return total


def main() -> int:
    import psutil

    cmd = sys.argv[1:]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        ps = psutil.Process(proc.pid)
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(ps))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"rc": proc.returncode, "seconds": wall, "peak_mib": peak_kib / 1024,
                      "peak_tree_mib": max(peak[0] / 2**20, peak_kib / 1024),
                      "stderr_tail": stderr[-500:] if proc.returncode else ""}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
