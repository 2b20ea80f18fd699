"""What every recipe does around its work: arguments, logging, progress bars, the lock, one-line errors."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

logger = logging.getLogger("urllm")


def recipe_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--progress", action="store_true", help="progress bars even without a terminal")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None):
    """Options and ``key=value`` overrides in any order."""
    args, extra = parser.parse_known_args(argv)
    bad = [x for x in extra if x.startswith("-") or "=" not in x]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = [*args.overrides, *extra]
    return args


def run(args, body: Callable, *, lock: bool = True, log_format: str | None = None) -> int:
    """Load the config, lock its run folder (main process), run ``body(cfg)``; expected failures are one
    line and exit code 2."""
    from urllm.config import load_config
    from urllm.configuration import ConfigError
    from urllm.console import FORMAT, configure, setup_logging
    from urllm.data.schema import DataError
    from urllm.lock import LockError, RunLock, is_main_process

    setup_logging(
        args.verbose, log_format or FORMAT, None if is_main_process() or args.verbose else logging.WARNING
    )
    configure(True if args.progress else None)
    held = None
    try:
        cfg = load_config(args.config, args.overrides)
        if lock:
            from urllm.run_layout import RunLayout

            held = RunLock(RunLayout.of(cfg).ensure_writable())
            held.acquire()
        return int(body(cfg) or 0)
    except (ConfigError, DataError, LockError) as exc:
        logger.error("%s", exc)
        return 2
    except OSError as exc:
        if exc.filename is None:
            raise
        logger.error("%s: %s", exc.filename, exc.strerror or exc)
        return 2
    finally:
        if held is not None:
            held.release()
