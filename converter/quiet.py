"""Silence converters while they run. torch.onnx, onnx2tf, tensorflowjs, ... print progress,
warnings and IR dumps on stdout/stderr (some from C++, below Python's sys.stdout); convertkit's
report says what matters. With ``--debug`` (DEBUG logging) nothing is silenced."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

log = logging.getLogger("converter")


@contextlib.contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    saved_levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), _fds_to_sink(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _fds_to_sink() -> Iterator[None]:
    """Point file descriptors 1 and 2 at a temp file, for output written from C/C++."""
    try:
        fds = [sys.__stdout__.fileno(), sys.__stderr__.fileno()]  # type: ignore[union-attr]
    except (AttributeError, ValueError, io.UnsupportedOperation):
        yield
        return
    saved = [os.dup(fd) for fd in fds]
    with tempfile.TemporaryFile() as sink:
        for stream in (sys.__stdout__, sys.__stderr__):
            stream.flush()  # type: ignore[union-attr]
        for fd in fds:
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            for fd, keep in zip(fds, saved):
                os.dup2(keep, fd)
                os.close(keep)
