#!/usr/bin/env python3
"""References for dsrt's Hugging Face models (compat_tests/hf/), made with
transformers and torch from PyPI:

  models/tiny-llama, tiny-qwen2, tiny-gpt2   model folders written by
        transformers' save_pretrained (fp32): LLaMA with grouped-query
        attention, an untied head and llama3 rope scaling; Qwen2 with its
        q/k/v biases and a tied head; GPT-2.
  sft.jsonl              token sequences with -100 prompt masks, some longer
        than the run's 32 tokens (cut), most shorter (padded).
  ref/<case>_step.safetensors   one micro-batch in float64: input_ids,
        labels (transformers' own, shifted inside the model), loss, logits
        and every parameter's gradient.
  ref/<case>_train.csv   5 AdamW steps (torch.optim.AdamW, gradient clipping
        1.0, the Trainer's linear schedule, float64) on the batches dsrt-train
        makes from sft.jsonl (its per-epoch shuffle repeated here):
        step,loss,lr.
  ref/<case>_after.safetensors  the weights after those 5 steps (float32).
  ref/llama32-1b-layer_step.safetensors  one LLaMA-3.2-1B-wide layer
        (2048 wide, 32 heads, 8 key/value heads, 8192 MLP, llama3 rope,
        tied head) from dsrt's own initial weights (seed 7, written by
        model_export_init): loss, logits, each gradient's sum of squares and
        4096 of its elements at a fixed stride.

usage: gen_hf_reference.py BUILD_DIR   (needs BUILD_DIR/tests/model_export_init)
Versions used for the committed files: torch 2.15.0, transformers 5.25.0,
safetensors 0.7 (pip, CPU)."""
import json, os, random, subprocess, sys, tempfile

import torch
from safetensors.torch import save_file
import transformers
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, AutoModelForCausalLM)

HERE = os.path.dirname(os.path.abspath(__file__))
V, T, B, STEPS, SEED, LR = 96, 32, 4, 5, 1234, 3e-3
M64 = (1 << 64) - 1


def tiny_models():
    torch.manual_seed(0)
    common = dict(vocab_size=V, initializer_range=0.1)
    llama = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=56, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=64, rope_theta=500000.0,
                                         rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                       "original_max_position_embeddings": 16},
                                         tie_word_embeddings=False, **common))
    qwen2 = Qwen2ForCausalLM(Qwen2Config(hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=6, num_key_value_heads=2,
                                         max_position_embeddings=128, tie_word_embeddings=True, **common))
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common))
    # biases start at zero in transformers: give them values so their gradients and use are tested
    with torch.no_grad():
        for m in (llama, qwen2, gpt2):
            for n, p in m.named_parameters():
                if n.endswith(".bias"):
                    p.normal_(0.0, 0.1)
    return {"tiny-llama": llama, "tiny-qwen2": qwen2, "tiny-gpt2": gpt2}


def make_jsonl(path):
    rng = random.Random(5)
    lines = []
    for i in range(10):
        n = rng.choice([6, 9, 14, 20, 27, 31, 33, 40])
        ids = [rng.randrange(1, V) for _ in range(n)]
        prompt = rng.randrange(1, n // 2 + 1)
        labels = [-100] * prompt + ids[prompt:]
        extra = {"attention_mask": [1] * n} if i % 3 == 0 else {}
        lines.append(json.dumps({"input_ids": ids, "labels": labels, **extra}))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [json.loads(l) for l in lines]


def splitmix64(s):
    s = (s + 0x9e3779b97f4a7c15) & M64
    z = s
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return s, z ^ (z >> 31)


def epoch_order(n, seed, epoch):
    """launcher/dataset.c epoch_order"""
    p = list(range(n))
    s = seed ^ (((epoch + 1) * 0x9e3779b97f4a7c15) & M64)
    for i in range(n - 1, 0, -1):
        s, r = splitmix64(s)
        k = r % (i + 1)
        p[i], p[k] = p[k], p[i]
    return p


def batch(seqs, c):
    """dsrt-train's micro-batch c: B samples in this epoch's order, cut or
    padded to T; labels as transformers takes them (shifted inside)"""
    ids, labels = [], []
    n = len(seqs)
    for b in range(B):
        sample = c * B + b
        s = seqs[epoch_order(n, SEED, sample // n)[sample % n]]
        k = min(len(s["input_ids"]), T)
        ids.append(s["input_ids"][:k] + [0] * (T - k))
        labels.append(s["labels"][:k] + [-100] * (T - k))
    return torch.tensor(ids), torch.tensor(labels)


def one_step(model, ids, labels):
    model.zero_grad()
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    return out


def write_step(path, model, ids, labels, full=True):
    out = one_step(model, ids, labels)
    t = {"input_ids": ids.to(torch.int64), "labels": labels.to(torch.int64),
         "loss": out.loss.detach().reshape(1), "logits": out.logits.detach()}
    for n, p in model.named_parameters():
        g = p.grad.detach()
        if full:
            t["grad." + n] = g.contiguous()
        else:
            flat = g.reshape(-1)
            stride = max(1, flat.numel() // 4096)
            t["grad_sumsq." + n] = (flat * flat).sum().reshape(1)
            t["grad_sample." + n] = flat[::stride][:4096].contiguous()
            t["grad_stride." + n] = torch.tensor([stride], dtype=torch.int64)
    save_file(t, path)
    return out.loss.item()


def train(model, seqs, csv_path, after_path):
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    # the config has no scheduler block: the Trainer's own, linear from LR to 0 over max_steps
    sched = transformers.get_linear_schedule_with_warmup(opt, 0, STEPS)
    rows = ["step,loss,lr"]
    for step in range(1, STEPS + 1):
        ids, labels = batch(seqs, step - 1)
        out = one_step(model, ids, labels)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        rows.append("%d,%.17g,%.17g" % (step, out.loss.item(), lr))
    with open(csv_path, "w") as f:
        f.write("\n".join(rows) + "\n")
    save_file({n: p.detach().to(torch.float32).contiguous() for n, p in model.named_parameters()}, after_path)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build = sys.argv[1]
    os.makedirs(os.path.join(HERE, "ref"), exist_ok=True)
    seqs = make_jsonl(os.path.join(HERE, "sft.jsonl"))
    for name, model in tiny_models().items():
        d = os.path.join(HERE, "models", name)
        model.to(torch.float32).save_pretrained(d)
        for junk in ("generation_config.json",):
            if os.path.exists(os.path.join(d, junk)):
                os.remove(os.path.join(d, junk))
        # the references start from exactly the saved fp32 weights, in float64
        m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64)
        m.train()
        ids, labels = batch(seqs, 0)
        loss = write_step(os.path.join(HERE, "ref", name + "_step.safetensors"), m, ids, labels)
        train(m, seqs, os.path.join(HERE, "ref", name + "_train.csv"),
              os.path.join(HERE, "ref", name + "_after.safetensors"))
        print(name, "first-batch loss %.6f" % loss)
    # one LLaMA-3.2-1B-wide layer from dsrt's initial weights
    cfg_dir = os.path.join(HERE, "llama32-1b-layer")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([os.path.join(build, "tests", "model_export_init"),
                        os.path.join(cfg_dir, "config.json"), "7", tmp], check=True)
        m = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float64)
        m.train()
        g = torch.Generator().manual_seed(3)
        ids = torch.randint(0, 128, (1, 16), generator=g)
        labels = ids.clone()
        labels[0, :5] = -100
        loss = write_step(os.path.join(HERE, "ref", "llama32-1b-layer_step.safetensors"), m, ids, labels,
                          full=False)
        print("llama32-1b-layer loss %.6f" % loss)
    print("torch", torch.__version__, "transformers", transformers.__version__)


if __name__ == "__main__":
    main()
