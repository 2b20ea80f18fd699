"""Recipe: LoRA fine-tuning of the LLM on the prompt datasets (:func:`urllm.systems.finetune_lora`).

    urllm finetune --config configs/art_office.yaml [key=value ...]
    (= accelerate launch --config_file configs/accelerate/cpu.yaml -m urllm.recipes.finetune --config ...)

Reads ``<run_dir>/prompts-rank`` (built first from the backbone's lists; ``finetune.task: title``:
``<run_dir>/prompts``; ``finetune.prompts_dir`` replaces either), writes ``<run_dir>/finetune``
(``finetune.output_dir``); a rerun after a kill resumes from the last checkpoint.
"""

from __future__ import annotations

import sys

from urllm.recipes.common import parse, recipe_parser, run


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser("urllm finetune", "LoRA fine-tuning of the LLM (resumable)")
    args = parse(parser, argv)

    def body(cfg) -> int:
        from urllm.systems import finetune_lora

        finetune_lora(cfg)  # logs its summary with the adapter path
        return 0

    return run(args, body)


if __name__ == "__main__":
    sys.exit(main())
