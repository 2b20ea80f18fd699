"""What a terminal or a log file shows: log format and levels, and progress bars on a terminal only.

A log file gets the library's one-line-per-epoch / per-N-steps records, not progress-bar redraws.

:func:`configure` is called once by each entry point (``urllm``, the recipes): with ``show=None`` bars
are drawn only when stderr is a terminal, ``--progress`` forces them. When they are off, every tqdm bar
of the process (ours, and those of ``datasets``/``transformers``) is disabled, so a log piped to a file
holds log lines, not carriage-return redraws.
"""

from __future__ import annotations

import logging
import os
import sys

ENV = "URLLM_PROGRESS"  # "1" / "0": what configure decided (inherited by `accelerate launch` workers)
_state = {"patched": False}


# third-party loggers that are chatty at INFO (faiss's optional-import ModuleNotFoundError lines,
# accelerate's "Loading states from ..." per checkpoint): WARNING unless -v
QUIET_LOGGERS = ("faiss", "faiss.loader", "accelerate", "datasets", "urllib3", "matplotlib", "PIL")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Formatter(logging.Formatter):
    """A message that starts with a newline (a table) starts on the header's line: no empty lines."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if msg.startswith("\n"):
            record.msg, record.args = msg.lstrip("\n"), None
        return super().format(record)


def setup_logging(verbose: bool = False, fmt: str = FORMAT, level: int | None = None) -> None:
    """Root logging for an entry point (replaces handlers set before, e.g. by an earlier main())."""
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter(fmt, datefmt="%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_urllm", False):
            root.removeHandler(old)
    handler._urllm = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level if level is not None else logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)


def enabled() -> bool:
    """Whether bars are shown (as configured; a terminal on stderr when nothing was configured)."""
    value = os.environ.get(ENV)
    if value in ("0", "1"):
        return value == "1"
    return sys.stderr.isatty()


def configure(show: bool | None = None) -> bool:
    """Decide once for the process (and its children); returns whether bars are shown."""
    if show is None:
        value = os.environ.get(ENV)
        show = value == "1" if value in ("0", "1") else sys.stderr.isatty()
    os.environ[ENV] = "1" if show else "0"
    if not show:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
        _silence_tqdm()
    return show


def _silence_tqdm() -> None:
    """Disable every tqdm bar, also those created with an explicit ``disable=False``."""
    if _state["patched"]:
        return
    import tqdm.std

    original = tqdm.std.tqdm.__init__

    def init(self, *args, **kwargs):
        if os.environ.get(ENV) == "0":
            kwargs["disable"] = True
        original(self, *args, **kwargs)

    tqdm.std.tqdm.__init__ = init
    _state["patched"] = True
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
