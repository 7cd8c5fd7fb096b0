"""Run one command and report its wall time and peak RSS (of the command's process tree's
largest process: ru_maxrss of the waited-for children) as JSON on stdout."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    cmd = sys.argv[1:]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"rc": proc.returncode, "seconds": wall, "peak_mib": peak_kib / 1024,
                      "stderr_tail": proc.stderr[-500:] if proc.returncode else ""}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
