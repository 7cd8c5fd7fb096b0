"""How many model x target processes `convertkit run` starts at once by default: one per core,
as far as free memory holds about 1 GiB per process, and never more than there are jobs."""

from __future__ import annotations

import os
from pathlib import Path

from converter.ci.executor import GIB, default_jobs, mem_available


def test_default_jobs_is_bounded_by_cores_memory_and_the_jobs_themselves():
    cores = len(os.sched_getaffinity(0))
    memory = mem_available() // GIB
    assert default_jobs(1) == 1
    assert default_jobs(1000) == max(1, min(cores, memory))
    assert 1 <= default_jobs(3) <= 3


def test_mem_available_reads_meminfo():
    line = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemAvailable:"))
    kib = int(line.split()[1])
    assert abs(mem_available() - kib * 1024) < 512 * 1024 * 1024  # read a moment apart: within 0.5 GiB
