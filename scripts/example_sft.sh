#!/usr/bin/env bash
# Instruction fine-tuning end to end on a model folder that transformers
# writes here (no download): a small LLaMA with a byte-level BPE tokenizer
# trained on ../shared/data, alpaca examples turned into token sequences
# with scripts/prepare_sft.py, dsrt-train under a ZeRO-2 config the HF
# Trainer would take as it is, the result exported and run by transformers.
# Needs a Python with torch, transformers and tokenizers: PYTHON (default
# python3). Optional: not part of the build or the tests.
#   scripts/example_sft.sh [WORK_DIR]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${1:-$here/build/example_sft}
py=${PYTHON:-python3}
build=${BUILD_DIR:-$here/build}
corpus=${DSRT_SHARED_DIR:-$here/../shared}/data/tinyshakespeare.txt
mkdir -p "$work"

echo "== 1. a base model folder: LLaMA (GQA), tokenizer trained on $(basename "$corpus")"
"$py" - "$work/base" "$corpus" <<'PY'
import sys, torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
out, corpus = sys.argv[1], sys.argv[2]
tk = Tokenizer(models.BPE())
tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tk.decoder = decoders.ByteLevel()
tk.train([corpus], trainers.BpeTrainer(vocab_size=512, special_tokens=["<s>", "</s>", "<pad>"],
                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
LlamaForCausalLM(cfg).save_pretrained(out)
tok.save_pretrained(out)
PY

echo "== 2. alpaca examples -> $work/sft.jsonl"
"$py" - "$work/alpaca.json" <<'PY'
import json, sys
pairs = [("Name a colour of the sky.", "", "Blue."), ("Add two and three.", "", "Five."),
         ("Repeat the word.", "moon", "moon moon."), ("What do bees make?", "", "Honey."),
         ("Say hello.", "", "Hello!"), ("Give the opposite.", "hot", "Cold.")]
json.dump([{"instruction": i, "input": x, "output": o} for i, x, o in pairs * 8], open(sys.argv[1], "w"), indent=1)
PY
"$py" "$here/scripts/prepare_sft.py" "$work/base" "$work/alpaca.json" "$work/sft.jsonl" --cutoff_len 128

echo "== 3. dsrt-train: 60 steps, ZeRO-2, bf16, the Trainer's AdamW and schedule (auto values)"
cat > "$work/ds_config.json" <<'JSON'
{"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
 "gradient_clipping": "auto", "bf16": {"enabled": "auto"},
 "zero_optimization": {"stage": 2, "overlap_comm": true, "reduce_bucket_size": "auto"}}
JSON
"$build/dsrt-train" --deepspeed "$work/ds_config.json" --model "$work/base" --data "$work/sft.jsonl" \
    --seq_len 128 --steps 60 --per_device_train_batch_size 8 --gradient_accumulation_steps 1 \
    --learning_rate 3e-3 --bf16 true --max_grad_norm 1.0 --warmup_steps 5 \
    --export_hf "$work/tuned" --plot "$work/loss.svg"

echo "== 4. transformers runs the fine-tuned folder"
"$py" - "$work/tuned" <<'PY'
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
d = sys.argv[1]
tok, model = AutoTokenizer.from_pretrained(d), AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
prompt = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
          "request.\n\n### Instruction:\nWhat do bees make?\n\n### Response:\n")
ids = tok(prompt, return_tensors="pt").input_ids
out = model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=tok.eos_token_id)
print("prompt: What do bees make?  ->", repr(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)))
PY
