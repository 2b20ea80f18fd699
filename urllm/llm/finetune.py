"""LoRA fine-tuning of the causal LM on the prompt datasets, with the loss on the completion only.

The same code runs on CPU, one GPU or many (DDP) through ``accelerate``; the entry point is the recipe
:mod:`urllm.recipes.finetune`::

    urllm finetune --config configs/art_office.yaml [key=value ...]

Reads ``<prompts_dir>/{train,valid}.parquet`` and writes into ``<output_dir>``: ``train_log.jsonl``,
``checkpoint/`` (resumable), ``adapter/`` (PEFT adapter + tokenizer + resolved ``config.yaml``) and
``summary.json`` (valid loss before/after, throughput). A finished run is not trained again.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from urllm.data.schema import DataError
from urllm.llm.collate import Collator, Example, completion_loss_sum, encode_all
from urllm.llm.config import LLMConfig
from urllm.llm.finetune_config import FinetuneConfig
from urllm.llm.train_state import (
    LOG,
    EpochOrder,
    JsonlLog,
    Progress,
    find_checkpoint,
    load_checkpoint,
    load_prompts,
    save_checkpoint,
)

logger = logging.getLogger(__name__)

ADAPTER = "adapter"
SUMMARY = "summary.json"


def mixed_precision(setting: str) -> str:
    """``auto`` -> bf16 on a GPU that supports it, else full precision."""
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def build_lora_model(ft: FinetuneConfig, llm: LLMConfig, device_type: str):
    """The base model (``llm``) wrapped with fresh LoRA adapters (``ft``); only the adapters train."""
    from peft import LoraConfig, get_peft_model

    from urllm.llm.model import load_model

    model = load_model(llm, device_type)
    if ft.gradient_checkpointing:
        # non-reentrant checkpointing back-propagates into LoRA weights without input gradients
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    lora = LoraConfig(
        r=ft.lora_r,
        lora_alpha=ft.lora_alpha,
        lora_dropout=ft.lora_dropout,
        target_modules=list(ft.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


@torch.no_grad()
def valid_loss(model, examples: list[Example], collate: Collator, accelerator, batch_size: int) -> float:
    """Token-weighted mean completion loss over ``examples``, each process scoring its own share."""
    was_training = model.training
    model.eval()
    mine = examples[accelerator.process_index :: accelerator.num_processes]
    totals = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for i in range(0, len(mine), batch_size):
        batch = {k: v.to(accelerator.device) for k, v in collate(mine[i : i + batch_size]).items()}
        with accelerator.autocast():
            loss_sum, count = completion_loss_sum(model, batch)
        totals += torch.stack([loss_sum.double(), count.double()])
    totals = accelerator.reduce(totals, reduction="sum")
    model.train(was_training)
    return float(totals[0] / totals[1].clamp(min=1))


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def finetune(
    ft: FinetuneConfig,
    llm: LLMConfig,
    seed: int,
    prompts: Path,
    out: Path,
    *,
    save_config: Callable[[Path], None],
    rank_data: Callable[[Any], Any] | None = None,
) -> dict:
    """Train (or resume) the LoRA adapter; returns the summary written to ``summary.json``.

    Args:
        ft, llm, seed: the fine-tune settings, the base model, the seed.
        prompts: the folder of ``{train,valid}.parquet``; out: where it writes (checkpoint, adapter).
        save_config: writes the resolved config beside the adapter (``save_config(path)``).
        rank_data: ``rank_data(tokenizer)`` makes ``prompts`` first (the listwise task, on the main
            process; :func:`urllm.systems.ensure_rank_data`).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    from urllm.cache import check_signature, lora_signature
    from urllm.llm.model import load_tokenizer

    out = Path(out)

    # a checkpoint or adapter made with another rank, lr, model or prompts is never resumed or reused
    check_signature(out, lora_signature(ft, llm, seed, prompts), "finetune")
    if (out / SUMMARY).is_file() and (out / ADAPTER / "adapter_config.json").is_file():
        logger.info("%s: fine-tuning already finished; delete it to train again", out)
        return json.loads((out / SUMMARY).read_text())
    accelerator = Accelerator(
        mixed_precision=mixed_precision(ft.mixed_precision), gradient_accumulation_steps=ft.grad_accum
    )
    device = accelerator.device
    if device.type == "cpu" and ft.cpu_threads:
        torch.set_num_threads(ft.cpu_threads)
    set_seed(seed)

    if rank_data is not None:
        with accelerator.main_process_first():
            rank_data(load_tokenizer(llm))
    src = Path(prompts)
    train = load_prompts(src / "train.parquet", ft.max_train_prompts, seed)
    valid = load_prompts(src / "valid.parquet", ft.max_valid_prompts, seed)
    with accelerator.main_process_first():  # the first load may convert the GGUF: do it once
        tokenizer = load_tokenizer(llm)
        model = build_lora_model(ft, llm, device.type)
    eos = ft.task == "title"  # a listwise completion is one label token
    train_ex = encode_all(tokenizer, train["prompt"], train["completion"], ft.max_length, ft.overflow, eos)
    valid_ex = encode_all(tokenizer, valid["prompt"], valid["completion"], ft.max_length, ft.overflow, eos)
    if not train_ex:
        raise DataError(
            f"{src / 'train.parquet'}: no training example fits finetune.max_length={ft.max_length}"
        )
    collate = Collator(pad_id=tokenizer.pad_token_id)
    order = EpochOrder(len(train_ex), seed)
    # a private generator: creating a loader iterator must not draw from the global RNG, whose state
    # (LoRA dropout) a checkpoint restores
    loader = DataLoader(
        train_ex,
        batch_size=ft.batch_size,
        sampler=order,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
    )

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=ft.lr, weight_decay=ft.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = math.ceil(len(loader) / ft.grad_accum)
    total_steps = steps_per_epoch * ft.epochs
    if ft.max_steps:
        total_steps = min(total_steps, ft.max_steps)
    # the scheduler is stepped by hand once per optimizer step (accelerate's wrapper would step it
    # once per process)
    scheduler = get_scheduler(
        ft.scheduler if ft.scheduler != "constant" else "constant_with_warmup",
        optimizer=optimizer,
        num_warmup_steps=int(ft.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )

    progress = Progress()
    ckpt = find_checkpoint(out)
    if ckpt is not None:
        from peft import set_peft_model_state_dict

        state, progress = load_checkpoint(ckpt)
        set_peft_model_state_dict(accelerator.unwrap_model(model), state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        logger.info("resuming from %s at step %d/%d", ckpt, progress.step, total_steps)
    log = JsonlLog(out / LOG, progress.step if ckpt else None, accelerator.is_main_process)
    if accelerator.is_main_process:
        save_config(out / "config.yaml")
    logger.info(
        "fine-tuning on %d prompts (%d valid) for %d steps on %s x %d",
        len(train_ex),
        len(valid_ex),
        total_steps,
        device,
        accelerator.num_processes,
    )

    def evaluate() -> float:
        loss = valid_loss(model, valid_ex, collate, accelerator, ft.eval_batch_size)
        log.write(step=progress.step, epoch=progress.epoch, valid_loss=loss)
        logger.info("step %d: valid loss %.4f", progress.step, loss)
        progress.last_valid_loss = loss
        return loss

    def checkpoint() -> None:
        if accelerator.is_main_process:
            from peft import get_peft_model_state_dict

            lora = get_peft_model_state_dict(accelerator.unwrap_model(model))
            save_checkpoint(out, lora, optimizer, scheduler, progress)
        accelerator.wait_for_everyone()

    if progress.valid_loss_before is None and valid_ex:
        progress.valid_loss_before = evaluate()
    model.train()
    bar = tqdm(
        total=total_steps,
        initial=progress.step,
        desc="finetune",
        disable=not accelerator.is_local_main_process,
    )
    # throughput counts training only: the clock restarts after each evaluation and checkpoint
    window = {"loss": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0}
    micro_losses: list[torch.Tensor] = []
    tick = time.perf_counter()
    while progress.step < total_steps and progress.epoch < ft.epochs:
        order.set_epoch(progress.epoch)
        for batch in accelerator.skip_first_batches(loader, progress.batches_in_epoch):
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss_sum, count = completion_loss_sum(model, batch)
                loss = loss_sum / count.clamp(min=1)
                accelerator.backward(loss)  # divides by grad_accum while accumulating
                if accelerator.sync_gradients and ft.max_grad_norm:
                    accelerator.clip_grad_norm_(params, ft.max_grad_norm)
                optimizer.step()  # no-op until the last micro-batch of the step (accelerate)
                optimizer.zero_grad()
            progress.batches_in_epoch += 1
            micro_losses.append(loss.detach())
            window["tokens"] += int(batch["attention_mask"].sum())
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            progress.step += 1
            step_loss = float(accelerator.reduce(torch.stack(micro_losses).mean(), reduction="mean"))
            micro_losses = []
            window["loss"] += step_loss
            window["steps"] += 1
            window["seconds"] += time.perf_counter() - tick
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}")
            end_of_epoch = progress.batches_in_epoch == len(loader)
            done = progress.step >= total_steps
            if progress.step % ft.log_every == 0 or end_of_epoch or done:
                tokens = int(
                    accelerator.reduce(torch.tensor(window["tokens"], device=device), reduction="sum")
                )
                progress.tokens += tokens
                progress.seconds += window["seconds"]
                log.write(
                    step=progress.step,
                    epoch=progress.epoch,
                    loss=window["loss"] / window["steps"],
                    lr=scheduler.get_last_lr()[0],
                    tokens=progress.tokens,
                    tokens_per_s=round(tokens / max(window["seconds"], 1e-9), 1),
                )
                if bar.disable and accelerator.is_main_process:  # no bar (a log file): one line per log_every
                    logger.info(
                        "step %d/%d: loss %.4f, %.0f tokens/s", progress.step, total_steps,
                        window["loss"] / window["steps"], tokens / max(window["seconds"], 1e-9),
                    )  # fmt: skip
                window = {"loss": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0}
            if end_of_epoch:
                progress.epoch += 1
                progress.batches_in_epoch = 0
            if valid_ex and ((ft.eval_every and progress.step % ft.eval_every == 0) or end_of_epoch or done):
                evaluate()
            if (ft.save_every and progress.step % ft.save_every == 0) or end_of_epoch or done:
                checkpoint()
            tick = time.perf_counter()
            if done:
                break
    bar.close()
    return _finish(out, save_config, accelerator, model, tokenizer, progress, len(train_ex), len(valid_ex))


def _finish(
    out: Path,
    save_config: Callable[[Path], None],
    accelerator,
    model,
    tokenizer,
    progress: Progress,
    n_train: int,
    n_valid: int,
) -> dict:
    """Save the adapter, tokenizer and resolved config (atomically) and the run summary."""
    summary = {
        "steps": progress.step,
        "epochs_completed": progress.epoch,
        "train_prompts": n_train,
        "valid_prompts": n_valid,
        "valid_loss_before": progress.valid_loss_before,
        "valid_loss_after": progress.last_valid_loss,
        "train_tokens": progress.tokens,
        "train_seconds": round(progress.seconds, 1),
        "tokens_per_s": round(progress.tokens / max(progress.seconds, 1e-9), 1),
        "device": str(accelerator.device),
        "processes": accelerator.num_processes,
        "torch_threads": torch.get_num_threads(),
        "mixed_precision": accelerator.mixed_precision,
        "peak_memory_mb": round(peak_memory_mb(accelerator.device), 1),
    }
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp = out / (ADAPTER + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.unwrap_model(model).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_config(tmp / "config.yaml")
        shutil.rmtree(out / ADAPTER, ignore_errors=True)
        tmp.rename(out / ADAPTER)
        (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
        logger.info("adapter saved to %s: %s", out / ADAPTER, summary)
    accelerator.wait_for_everyone()
    return summary
