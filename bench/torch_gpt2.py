#!/usr/bin/env python3
"""PyTorch forward+backward throughput on CPU, the baseline for dsrt's CPU figures.

usage: torch_gpt2.py --config MODEL.json --batch B --seq T --threads N --steps S --warmup W

GPT-2: builds the model as compat_tests/reference/gen_gpt2_reference.py does (Hugging Face
GPT2LMHeadModel when transformers imports, else the built-in mirror). LLaMA, Mistral,
Qwen2: transformers' AutoModelForCausalLM from the config (sdpa attention). float32,
dropout 0, HF's random init. Times S steps of (zero_grad, forward, mean cross-entropy over B*T
random targets, backward) after W untimed warm-up steps; no optimizer step. Prints one
line of JSON. Exit status 3 when torch cannot be imported, 2 on bad arguments.
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="HF GPT-2 config.json")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--optimizer", action="store_true",
                    help="a whole training step: also clip_grad_norm_(1.0) and torch.optim.AdamW")
    a = ap.parse_args()
    if min(a.batch, a.seq, a.threads, a.steps) < 1 or a.warmup < 0:
        ap.error("batch, seq, threads and steps must be >= 1, warmup >= 0")

    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001
        print("torch_gpt2.py: cannot import torch: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 3
    sys.dont_write_bytecode = True  # keep the source tree clean
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compat_tests",
                                    "reference"))
    from torch_gpt2_model import build_model

    with open(a.config) as f:
        cfg = json.load(f)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if cfg.get("model_type") in ("llama", "mistral", "qwen2"):
        import transformers
        hf_cfg = transformers.AutoConfig.for_model(**cfg)
        if a.seq > hf_cfg.max_position_embeddings:
            ap.error("--seq %d exceeds max_position_embeddings %d" % (a.seq, hf_cfg.max_position_embeddings))
        model = transformers.AutoModelForCausalLM.from_config(hf_cfg, torch_dtype=torch.float32)
        impl = "transformers %s %s" % (transformers.__version__, type(model).__name__)
    else:
        if a.seq > cfg["n_positions"]:
            ap.error("--seq %d exceeds n_positions %d" % (a.seq, cfg["n_positions"]))
        model, impl = build_model(cfg, torch.float32)
    model.train()  # dropouts are 0; train mode as in training
    v = cfg["vocab_size"]
    g = torch.Generator().manual_seed(a.seed)
    ids = torch.randint(0, v, (a.batch, a.seq), generator=g)
    tgt = torch.randint(0, v, (a.batch, a.seq), generator=g)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01) if a.optimizer else None

    def step():
        model.zero_grad(set_to_none=True)
        logits = model(ids).logits
        loss = F.cross_entropy(logits.view(-1, v), tgt.view(-1), ignore_index=-100)
        loss.backward()
        if opt is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": a.threads,
                      "B": a.batch, "T": a.seq, "tokens_per_s": a.batch * a.seq * a.steps / dt,
                      "step_s": dt / a.steps, "steps": a.steps, "model": impl,
                      "optimizer": bool(a.optimizer)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
