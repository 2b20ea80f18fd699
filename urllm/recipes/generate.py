"""Recipe: greedy generations of the (fine-tuned) LLM on a seeded sample of prompts, with the rates of
exact catalogue titles (:mod:`urllm.llm.generate`).

    urllm generate --config configs/art_office.yaml --adapter runs/art-office/finetune/adapter --n 100
"""

from __future__ import annotations

import json
import logging
import sys

from urllm.recipes.common import parse, recipe_parser, run

logger = logging.getLogger("urllm")


def build_parser():
    parser = recipe_parser("urllm generate", "greedy generations on prompts and their title-match rates")
    parser.add_argument("--adapter", help="LoRA adapter folder; omitted = the base model")
    parser.add_argument("--split", default="valid", choices=["train", "valid"])
    parser.add_argument("--n", type=int, default=100, help="a seeded sample of N prompts")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = default")
    parser.add_argument("--out", help="write rates and the generations as JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv)

    def body(cfg) -> int:
        import torch

        from urllm.data.load import load_data_from_config
        from urllm.llm.generate import greedy_generate, load_finetuned, title_match_rates
        from urllm.llm.train_state import load_prompts
        from urllm.run_layout import RunLayout, check_output_file

        if args.out:
            check_output_file(args.out)
        if args.threads:
            torch.set_num_threads(args.threads)
        rows = load_prompts(
            RunLayout.of(cfg).finetune_prompts / f"{args.split}.parquet", args.n, cfg.seed, ("target_domain",)
        )
        prompts, completions = rows["prompt"], rows["completion"]
        catalogue = load_data_from_config(cfg.data).catalogue
        titles = {
            name: {catalogue.titles[i].strip() for i in catalogue.domain_range(d)}
            for d, name in enumerate(catalogue.domains)
        }
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model, tokenizer = load_finetuned(cfg.llm, args.adapter, device)
        model.to(device)
        gens = greedy_generate(model, tokenizer, prompts, args.max_new_tokens, args.batch_size)
        rates = title_match_rates(gens, completions, [titles[d] for d in rows["target_domain"]])
        result = {
            **rates,
            "adapter": args.adapter,
            "split": args.split,
            "torch_threads": torch.get_num_threads(),
            "samples": [{"target": c, "generation": g} for c, g in zip(completions, gens, strict=True)],
        }
        logger.info("%s", json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
        if args.out:
            from urllm.atomic import atomic_write_json

            atomic_write_json(args.out, result, indent=2)
        return 0

    return run(args, body, lock=False)  # reads the run folder only


if __name__ == "__main__":
    sys.exit(main())
