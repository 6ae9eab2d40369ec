"""Progress and messages: the one place the library writes anything for a person to read.

Library code never prints. It calls this module's functions, which hand the text to the reporter in
use: messages (`info`: "resuming: ...", "nothing to do"; `note`; `warning`) and progress bars
(`progress`, tqdm). The default reporter writes to standard error, as the CLI does; a caller replaces
it for a block of code or one API call:

    from synthvlm_builder import reporter
    with reporter.use(reporter.Reporter.silent()):      # nothing written
        ...
    log = reporter.Recorder()                           # kept in log.messages, for tests and notebooks
    build(recipe, reporter=log)

The reporter in use is one per process, not per thread: a build's background threads (the upload
thread of release/stream.py) report to the reporter of the call that started them.
"""
from __future__ import annotations

import io
import sys
import threading
from contextlib import contextmanager
from typing import Iterable, Iterator, Optional, TextIO

from tqdm import tqdm

from .text import printable


class Reporter:
    """Writes messages and progress bars to `stream`; None means standard error as it is at each write
    (so `contextlib.redirect_stderr` and pytest's capture see it). `progress=False` draws no bar;
    `messages=False` writes no message."""

    def __init__(self, stream: Optional[TextIO] = None, progress: bool = True, messages: bool = True):
        self.stream = stream
        self.show_progress = progress
        self.show_messages = messages

    @classmethod
    def silent(cls) -> "Reporter":
        return cls(progress=False, messages=False)

    def writes_to(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def message(self, kind: str, text: str) -> None:
        """One message; `kind` is info, note or warning (the latter two are written with their prefix).
        Each line is made terminal-safe (text.printable): messages quote paths, ids and values."""
        if not self.show_messages:
            return
        line = text if kind == "info" else f"{kind}: {text}"
        out = self.writes_to()
        out.write("\n".join(printable(part) for part in line.split("\n")) + "\n")
        out.flush()

    def progress(self, iterable: Optional[Iterable] = None, total: Optional[int] = None, desc: str = "",
                 unit: str = "it", delay: float = 0):
        """A tqdm bar (a context manager; iterate it, or call `update(n)`); with `delay`, drawn only once that
        many seconds have passed (a phase that is usually quick, and whose errors should stand alone)."""
        from tqdm.auto import tqdm as auto_tqdm  # a notebook widget in Jupyter, text elsewhere
        return auto_tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, file=self.writes_to(),
                         disable=not self.show_progress, delay=delay)


class Recorder(Reporter):
    """Writes nothing and keeps everything: `messages`, the text of each message (note: and warning:
    prefixed), and `bars`, each progress bar's (desc, final count, total) once it is closed."""

    def __init__(self):
        super().__init__(stream=io.StringIO())
        self.messages: list[str] = []
        self.bars: list[tuple[str, int, Optional[int]]] = []
        self._lock = threading.Lock()

    def message(self, kind: str, text: str) -> None:
        with self._lock:
            self.messages.append(text if kind == "info" else f"{kind}: {text}")

    def progress(self, iterable=None, total=None, desc="", unit="it", delay=0):
        return _RecordedBar(self, iterable, total=total, desc=desc, unit=unit, file=io.StringIO(), mininterval=3600)

    def text(self) -> str:
        return "".join(m + "\n" for m in self.messages)


class _RecordedBar(tqdm):
    """A bar that counts as tqdm does (into a buffer nobody reads) and tells its Recorder its final count."""

    def __init__(self, recorder: Recorder, *args, **kwargs):
        self._recorder, self._recorded = recorder, False
        super().__init__(*args, **kwargs)

    def close(self):
        if not self._recorded:
            self._recorded = True
            with self._recorder._lock:
                self._recorder.bars.append((self.desc.rstrip(": "), self.n, self.total))
        super().close()


_current: Reporter = Reporter()
_switch = threading.Lock()


def current() -> Reporter:
    return _current


@contextmanager
def use(reporter: Optional[Reporter]) -> Iterator[Reporter]:
    """Report to `reporter` inside the block (None: keep the one in use)."""
    global _current
    if reporter is None:
        yield _current
        return
    with _switch:
        previous, _current = _current, reporter
    try:
        yield reporter
    finally:
        with _switch:
            _current = previous


def info(text: str) -> None:
    _current.message("info", text)


def note(text: str) -> None:
    _current.message("note", text)


def warning(text: str) -> None:
    _current.message("warning", text)


def progress(iterable: Optional[Iterable] = None, total: Optional[int] = None, desc: str = "", unit: str = "it",
             delay: float = 0):
    return _current.progress(iterable, total=total, desc=desc, unit=unit, delay=delay)


@contextmanager
def datasets_bars() -> Iterator[None]:
    """`datasets`' own progress bars ("Generating train split"), which always go to standard error, follow
    the reporter in use: hidden inside the block unless it draws its bars on standard error too."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    shown = _current.show_progress and _current.writes_to() is sys.stderr
    hide = not shown and not are_progress_bars_disabled()
    if hide:
        disable_progress_bars()
    try:
        yield
    finally:
        if hide:
            enable_progress_bars()
