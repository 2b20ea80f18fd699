"""The ``urllm`` command line: one entry point, one subcommand per job.

Heavy imports happen inside the handlers so ``urllm --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger("urllm")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config file (see configs/)")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. eval.ks=[1,10]"
    )


def _load(args):
    from urllm.config import load_config

    return load_config(args.config, args.overrides)


def cmd_data_stats(args) -> int:
    from urllm.data.load import load_data_from_config
    from urllm.data.stats import data_stats, format_stats

    cfg = _load(args)
    stats = data_stats(load_data_from_config(cfg.data))
    print(format_stats(stats))
    if args.out:
        _write_json(stats, args.out)
    return 0


def cmd_evaluate(args) -> int:
    from urllm.config import save_config
    from urllm.data.load import load_data_from_config
    from urllm.eval.evaluate import evaluate, format_table
    from urllm.recommender import make_system

    cfg = _load(args)
    system = make_system(args.system, cfg)  # an unknown name fails before any data is read
    data = load_data_from_config(cfg.data)
    data.records(args.split)  # fail early on a missing split
    run_dir = cfg.run_path / "systems" / args.system
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    system.fit(data, run_dir)
    result = evaluate(system, data, args.split, cfg.eval, args.system)
    print(format_table(result))
    if args.out:
        _write_json(result, args.out)
    return 0


def _write_json(obj, path: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(obj, indent=2) + "\n")
    logger.info("wrote %s", out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="urllm", description="LLM-based cross-domain sequential recommendation"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    stats = data_sub.add_parser("stats", help="users, items per domain, interactions, overlap, lengths")
    _add_config(stats)
    stats.add_argument("--out", help="also write the statistics as JSON")
    stats.set_defaults(func=cmd_data_stats)

    ev = sub.add_parser("evaluate", help="train (if needed) and score a system on a split")
    _add_config(ev)
    ev.add_argument("--system", required=True, help="popularity | transition | sasrec | graph | urllm ...")
    ev.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    ev.add_argument("--out", help="write the metrics JSON here")
    ev.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from urllm.configuration import ConfigError
    from urllm.data.schema import DataError

    try:
        return args.func(args)
    except (ConfigError, DataError) as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
