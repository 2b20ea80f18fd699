"""Recipe: batch LLM inference for the LLM systems, on one process or many
(:func:`urllm.infer.batch.run_inference`).

    urllm infer --config configs/art_office.yaml --split valid --systems urllm,urllm-no-grounding
    (= accelerate launch -m urllm.recipes.infer ...; torchrun for several CPU processes)

Prompts are split across the processes; rows are gathered and appended to
``<run_dir>/infer/<split>/<run>.jsonl`` as they finish. A rerun after a kill resumes.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from urllm.recipes.common import parse, recipe_parser, run

logger = logging.getLogger("urllm")


def build_parser():
    parser = recipe_parser("urllm infer", "batch LLM inference for the LLM systems (resumable)")
    parser.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    parser.add_argument(
        "--systems",
        default="urllm",
        help="comma-separated LLM systems (registry kind llm: urllm, urllm-no-retrieval, urllm-rerank ...)",
    )
    return parser


def main(argv: list[str] | None = None, data_loader: Callable | None = None) -> int:
    args = parse(build_parser(), argv)

    def body(cfg) -> int:
        import torch
        from accelerate import PartialState

        from urllm.configuration import ConfigError
        from urllm.data.load import load_data_from_config
        from urllm.infer.batch import run_inference
        from urllm.infer.variants import variant_for
        from urllm.recommender import check_system, is_llm_system

        # cpu=True when there is no GPU: several CPU processes (torchrun) then form a gloo group
        state = PartialState(cpu=not torch.cuda.is_available())
        if cfg.infer.threads:
            torch.set_num_threads(cfg.infer.threads)
        names = [s.strip() for s in args.systems.split(",") if s.strip()]
        for name in names:
            check_system(name, "--systems")
            if not is_llm_system(name):
                raise ConfigError(f"--systems: {name!r} is not an LLM system (nothing to infer)")
        variants = list(dict.fromkeys(variant_for(n, cfg.grounding.mode) for n in names))
        data = (data_loader or load_data_from_config)(cfg.data)
        data.records(args.split)  # fail early on a missing split
        runs = {(v.mode, v.retrieval): v for v in variants}  # no-grounding shares the free run
        from urllm.systems import infer_setup

        setup = infer_setup(cfg)
        for v in runs.values():
            path = run_inference(setup, data, args.split, v, state=state)
            if state.is_main_process:
                logger.info("wrote %s", path)
        return 0

    rank = os.environ.get("RANK", "0")
    return run(args, body, log_format=f"%(asctime)s %(levelname)s [{rank}] %(name)s: %(message)s")


if __name__ == "__main__":
    sys.exit(main())
