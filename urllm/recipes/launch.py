"""``urllm finetune | infer | generate``: each is ``accelerate launch`` of a recipe module.

The config is loaded (and validated) here first, so a typo is one line before any process starts; then
the recipe runs under ``accelerate launch --config_file A [--num_processes N] -m urllm.recipes.<name>``
(CPU: ``configs/accelerate/cpu.yaml``; ``ACCELERATE_CONFIG`` or ``--accelerate-config`` picks another).
``infer`` with several processes and no GPU uses ``torchrun`` (accelerate starts several CPU processes
only through MPI). ``--in-process`` runs the recipe in this process (tests, debugging).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger("urllm")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ACCELERATE = REPO / "configs" / "accelerate" / "cpu.yaml"
RECIPES = {
    "finetune": "LoRA fine-tuning of the LLM on <run_dir>/prompts (resumable)",
    "infer": "batch LLM inference of the LLM systems into <run_dir>/infer/<split> (resumable)",
    "generate": "greedy generations on a sample of prompts, with exact-title rates",
}


def add_recipe_commands(sub) -> None:
    """The three subcommands, with the recipe's own options plus the launcher's."""
    from urllm.recipes import generate, infer

    extra = {"infer": infer.build_parser, "generate": generate.build_parser}
    for name, help_text in RECIPES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", required=True, help="YAML config file (see configs/)")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
        if name in extra:  # the recipe's own options, shown in --help and passed on
            for action in extra[name]()._actions:
                if action.option_strings and action.dest not in ("help", "config", "verbose", "progress"):
                    kwargs = {"help": action.help, "default": action.default}
                    if action.choices:
                        kwargs["choices"] = action.choices
                    if action.type:
                        kwargs["type"] = action.type
                    p.add_argument(*action.option_strings, dest=action.dest, **kwargs)
        p.add_argument(
            "--accelerate-config",
            default=os.environ.get("ACCELERATE_CONFIG", ""),
            help=f"accelerate config file (default $ACCELERATE_CONFIG or {DEFAULT_ACCELERATE.relative_to(REPO)})",
        )
        p.add_argument(
            "--num-processes", type=int, help="processes to launch (default: the accelerate config)"
        )
        p.add_argument("--in-process", action="store_true", help="run the recipe here, without a launcher")
        p.set_defaults(func=cmd_recipe, recipe=name)


def recipe_argv(args) -> list[str]:
    """The recipe's command line: --config, its own options, the overrides."""
    out = ["--config", args.config]
    for dest, flag in (("split", "--split"), ("systems", "--systems"), ("adapter", "--adapter"), ("n", "--n"),
                       ("max_new_tokens", "--max-new-tokens"), ("batch_size", "--batch-size"),
                       ("threads", "--threads"), ("out", "--out")):  # fmt: skip
        value = getattr(args, dest, None)
        if value is not None:
            out += [flag, str(value)]
    if args.verbose:
        out.append("-v")
    from urllm.console import enabled

    if enabled():
        out.append("--progress")
    return [*out, *args.overrides]


def launch_command(args) -> list[str]:
    """``accelerate launch ... -m urllm.recipes.<name> ...`` (or ``torchrun`` for CPU processes)."""
    module = f"urllm.recipes.{args.recipe}"
    bin_dir = Path(sys.executable).parent
    tool = lambda name: str(bin_dir / name) if (bin_dir / name).exists() else shutil.which(name) or name  # noqa: E731
    n = args.num_processes
    if args.recipe == "infer" and n and n > 1 and not _has_cuda():
        return [
            tool("torchrun"),
            "--standalone",
            "--nproc_per_node",
            str(n),
            "-m",
            module,
            *recipe_argv(args),
        ]
    cmd = [tool("accelerate"), "launch", "--config_file", args.accelerate_config or str(DEFAULT_ACCELERATE)]
    if n:
        cmd += ["--num_processes", str(n)]
    return [*cmd, "-m", module, *recipe_argv(args)]


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def cmd_recipe(args) -> int:
    from importlib import import_module

    from urllm.config import load_config
    from urllm.configuration import ConfigError

    load_config(args.config, args.overrides)  # one-line errors before any process starts
    if args.accelerate_config and not Path(args.accelerate_config).is_file():
        raise ConfigError(f"--accelerate-config {args.accelerate_config}: not a file")
    if args.in_process:
        return import_module(f"urllm.recipes.{args.recipe}").main(recipe_argv(args))
    cmd = launch_command(args)
    logger.info("launching: %s", " ".join(cmd))
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130
