#!/usr/bin/env python3
"""Instruction data -> dsrt-train's JSONL token file (optional: dsrt needs no
Python to build, run or test).

Reads alpaca JSON ([{"instruction", "input", "output"}, ...]) or sharegpt
JSON ([{"conversations": [{"from": "human"|"gpt"|"system", "value"}, ...]}])
and writes one line per example:
    {"input_ids": [...], "labels": [...]}
tokenized with the model folder's own tokenizer. Only the responses are
trained on: every prompt token's label is -100, as LLaMA-Factory's
supervised preprocessing writes it. The tokenizer's chat template is used
when it has one; otherwise alpaca's prompt ("### Instruction:" ...). Each
response ends with the tokenizer's eos token. Sequences are cut at
--cutoff_len tokens (dsrt-train cuts at --seq_len anyway).

usage: prepare_sft.py MODEL_DIR DATA.json OUT.jsonl [--format alpaca|sharegpt] [--cutoff_len N]
needs: pip install transformers tokenizers (torch is not needed)"""
import argparse, json, sys

from transformers import AutoTokenizer

ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately "
          "completes the request.\n\n### Instruction:\n{instruction}\n\n{input_block}### Response:\n")


def turns_of(example, fmt):
    """[(role, text)] with role user/assistant/system"""
    if fmt == "alpaca":
        inp = example.get("input") or ""
        return [("user", example["instruction"] + ("\n\n" + inp if inp else "")), ("assistant", example["output"])]
    roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
    return [(roles[t["from"]], t["value"]) for t in example["conversations"]]


def encode(tok, turns, fmt):
    ids, labels = [], []
    history = []
    for role, text in turns:
        if role != "assistant":
            history.append({"role": role, "content": text})
            continue
        if tok.chat_template:
            prompt = tok.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
        else:  # alpaca's prompt around the last user turn
            user = history[-1]["content"] if history else ""
            instruction, _, inp = user.partition("\n\n")
            prompt = ALPACA.format(instruction=instruction,
                                   input_block=("### Input:\n%s\n\n" % inp) if inp else "")
        p = tok(prompt, add_special_tokens=not ids)["input_ids"]
        r = tok(text, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if tok.eos_token_id is not None else [])
        ids += p + r
        labels += [-100] * len(p) + r
        history = []  # later turns are prompted on their own, the earlier ones trained once
    return ids, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--format", choices=["alpaca", "sharegpt"], default=None,
                    help="default: sharegpt when the examples have 'conversations', else alpaca")
    ap.add_argument("--cutoff_len", type=int, default=0)
    a = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(a.model_dir)
    data = json.load(open(a.data))
    fmt = a.format or ("sharegpt" if data and "conversations" in data[0] else "alpaca")
    n = kept = 0
    with open(a.out, "w") as f:
        for ex in data:
            ids, labels = encode(tok, turns_of(ex, fmt), fmt)
            if a.cutoff_len:
                ids, labels = ids[:a.cutoff_len], labels[:a.cutoff_len]
            n += 1
            if not any(l != -100 for l in labels):
                continue  # nothing to train on after the cut
            kept += 1
            f.write(json.dumps({"input_ids": ids, "labels": labels}) + "\n")
    print("%s: %d of %d %s examples written (%s's tokenizer)" % (a.out, kept, n, fmt, a.model_dir), file=sys.stderr)


if __name__ == "__main__":
    main()
