#!/usr/bin/env python3
"""The folder dsrt-train --export_hf wrote, loaded by transformers'
from_pretrained: no missing, unexpected or mismatched keys, every weight
bit-equal to the exported file, the config read as the original model's
(architecture, heads, rope, tied head), and a forward that gives a finite
loss. Exit 0 when all hold.
    from_pretrained.py EXPORT_DIR ORIGINAL_MODEL_DIR"""
import json, math, sys

import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM


def main():
    export, original = sys.argv[1], sys.argv[2]
    model, info = AutoModelForCausalLM.from_pretrained(export, output_loading_info=True,
                                                       torch_dtype=torch.float32)
    bad = [k for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs") if info[k]]
    if bad:
        sys.exit("from_pretrained(%s): %s" % (export, {k: info[k] for k in bad}))
    saved = load_file(export + "/model.safetensors")
    state = model.state_dict()
    for name, t in saved.items():
        if not torch.equal(state[name].to(t.dtype), t):
            sys.exit("%s: %s differs from the exported file" % (export, name))
    a, b = AutoConfig.from_pretrained(export), AutoConfig.from_pretrained(original)
    keys = ["model_type", "architectures", "vocab_size", "hidden_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "intermediate_size", "tie_word_embeddings",
            "n_embd", "n_layer", "n_head"]
    for k in keys:
        if getattr(a, k, None) != getattr(b, k, None):
            sys.exit("config %s: exported %r, original %r" % (k, getattr(a, k, None), getattr(b, k, None)))
    # the rope settings as the original file writes them (transformers 5's
    # rope_parameters, which transformers 4 does not read, or 4's rope_scaling)
    # against what this transformers read from the export
    raw = json.load(open(original + "/config.json"))
    rb = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    ra = getattr(a, "rope_scaling", None) or getattr(a, "rope_parameters", None) or {}
    tb, ta = rb.get("rope_type", rb.get("type", "default")), ra.get("rope_type", ra.get("type", "default"))
    if ta != tb or ra.get("factor") != rb.get("factor"):
        sys.exit("config rope: exported %r, original %r" % (ra, rb))
    ids = torch.arange(1, 17).reshape(1, 16) % a.vocab_size
    loss = model(input_ids=ids, labels=ids).loss.item()
    if not math.isfinite(loss):
        sys.exit("forward of the exported model: loss %r" % loss)
    print("from_pretrained(%s): transformers %s, torch %s: %d tensors equal, no missing or unexpected "
          "keys, loss %.4f" % (export, transformers.__version__, torch.__version__, len(saved), loss))


if __name__ == "__main__":
    main()
