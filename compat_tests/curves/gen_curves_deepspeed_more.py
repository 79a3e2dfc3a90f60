#!/usr/bin/env python3
"""Two more loss curves from real DeepSpeed 0.19.6 (CPU accelerator, gloo), beside the five of
gen_curves_deepspeed.py:

  zero2_2ranks      zero2_2ranks.json (fp32, ZeRO stage 2, reduce_bucket_size 50000,
                    overlap_comm, gas 2, micro batch 2, clipping 1.0, AdamW + WarmupDecayLR)
                    given to deepspeed.initialize() unchanged on 2 ranks (two processes started
                    with torch.multiprocessing, gloo). Rank r's micro-batches are dsrt-train's on
                    2 ranks: its micro-batch number `micro` (from 0) is global window
                    c = (micro // gas) * gas * world + (micro % gas) * world + r.
  trainer_defaults  trainer_defaults.json (no optimizer / scheduler block, ZeRO stage 1, fp32,
                    micro batch 4) run by transformers' real Trainer on 1 rank with
                    TrainingArguments(deepspeed=<the config>, learning_rate=5e-4,
                    weight_decay=0.1, warmup_steps=20, max_steps=200,
                    per_device_train_batch_size=4, lr_scheduler_type="linear",
                    max_grad_norm=1.0). The Trainer builds its own optimizer (its default optim,
                    adamw_torch_fused = torch.optim.AdamW(fused=True), with its two parameter
                    groups: no weight decay on biases and LayerNorm weights) and its linear
                    schedule, and hands them to DeepSpeed through accelerate. The config has no
                    gradient_clipping key, so DeepSpeed's default applies (GRADIENT_CLIPPING_DEFAULT
                    1.0 in 0.19.6; the Trainer only fills "auto"), the same as the Trainer's
                    max_grad_norm 1.0 and dsrt's default (were the key present, the Trainer would
                    require it to equal max_grad_norm). Only the loss is the script's own:
                    compute_loss is overridden to dsrt's loss (mean cross entropy of the float
                    logits against the next tokens of the window, all B*T positions; GPT-2's own
                    labels loss would drop each row's last position), and the Trainer's sampler
                    is a SequentialSampler over a dataset whose k-th group of 4 rows is
                    dsrt-train's k-th window (checked against dsrt's formula at every step).

usage: gen_curves_deepspeed_more.py (--weights W.h5 | --dump-init PATH/gpt2_dump_init)
                                    [--data FILE] [--steps N] [--seq-len T] [--case NAME]...
                                    [--out-dir DIR] [--threads N]

Exact command used for compat_tests/curves/deepspeed/{zero2_2ranks,trainer_defaults}.csv (run
from the repository root; accelerate 1.15.0 was pip-installed into the venv for the Trainer):

  DS_ACCELERATOR=cpu OMP_NUM_THREADS=1 /tmp/hfvenv/bin/python \
      compat_tests/curves/gen_curves_deepspeed_more.py --dump-init build/tests/gpt2_dump_init \
      --data /work/shared/data/tinyshakespeare.txt --out-dir /tmp/ds_curves

and then the two CSVs were copied from /tmp/ds_curves to compat_tests/curves/deepspeed/.
It took 1 min 19 s on 2 cores (zero2_2ranks 56 s, trainer_defaults 12 s).

Versions: Python 3.11.7, deepspeed 0.19.6 (pip, DS_BUILD_OPS=0; FusedAdam is the CPU
accelerator's fused_adam op), torch 2.15.0 (PyPI wheel, run on CPU), transformers 5.25.0,
accelerate 1.15.0, h5py 3.16.0, numpy 2.4.6. Each rank runs --threads torch threads (1).

dsrt commands these curves are compared with (from the repository root):

  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpiexec -n 2 \
      --oversubscribe build/dsrt-train --deepspeed_config compat_tests/curves/zero2_2ranks.json \
      --model gpt2-tiny --data /work/shared/data/tinyshakespeare.txt --steps 200 --seq_len 64 \
      --loss_csv /tmp/dsrt_zero2.csv
  OMP_NUM_THREADS=1 build/dsrt-train --deepspeed_config compat_tests/curves/trainer_defaults.json \
      --model gpt2-tiny --data /work/shared/data/tinyshakespeare.txt --steps 200 --seq_len 64 \
      --learning_rate 5e-4 --weight_decay 0.1 --warmup_steps 20 --loss_csv /tmp/dsrt_trainer.csv

CSV columns (as gen_curves_deepspeed.py, 17 significant digits):
  loss        mean over the step's micro-batches of all ranks (float64 sum of each micro-batch's
              mean cross entropy, all-reduced, divided by gas * world), as dsrt-train reports it
  lr          the lr the step's update used: engine.get_lr()[0] read before the boundary
              engine.step() (for the Trainer: in compute_loss, before its engine.step())
  loss_scale  1 (fp32)
  grad_norm   engine.get_global_grad_norm() after the step (DeepSpeed's own at stages 1 and 2:
              the norm before clipping); -1 on a skipped step or when not finite
  skipped     1 when engine.skipped_steps increased during the step
"""
import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_curves as gc  # noqa: E402  (also puts ../reference on sys.path)
import gen_curves_deepspeed as gcd  # noqa: E402
from torch_gpt2_model import transformers_version  # noqa: E402
from gen_gpt2_reference import load_weights  # noqa: E402

CASES = {"zero2_2ranks": 2, "trainer_defaults": 1}  # case: world size


def read_tokens(path):
    with open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8).astype(np.int64)


def window_of(micro, gas, world, rank):
    """dsrt-train's global window number of rank `rank`'s micro-batch `micro` (from 0)."""
    return (micro // gas) * gas * world + (micro % gas) * world + rank


def window_tokens(tokens, c, b, t):
    w = b * t
    n_windows = (len(tokens) - 1) // w
    cur = (c % n_windows) * w
    buf = tokens[cur:cur + w + 1]
    return (torch.from_numpy(buf[:-1].copy()).view(b, t), torch.from_numpy(buf[1:].copy()).view(b, t))


def load_model(weights_path):
    model, impl, cfg = gcd.model_from_weights(load_weights(weights_path))
    return model, impl, cfg["vocab_size"]


def finite_or(v, dflt=-1.0):
    if torch.is_tensor(v):
        v = float(v)
    return dflt if v is None or not math.isfinite(v) else float(v)


def set_dist_env(rank, world, port):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


# ------------------------------------------------------------------ zero2_2ranks
def run_engine(rank, world, name, weights_path, data_path, steps, seq_len):
    import deepspeed
    import torch.distributed as dist
    ds = json.load(open(os.path.join(HERE, name + ".json")))
    micro_b = int(ds["train_micro_batch_size_per_gpu"])
    gas = int(ds.get("gradient_accumulation_steps", 1))
    model, impl, V = load_model(weights_path)
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=dict(ds))
    assert engine.gradient_accumulation_steps() == gas and engine.world_size == world
    info = dict(optimizer=type(engine.optimizer).__name__,
                basic_optimizer=type(getattr(engine, "basic_optimizer", None)).__name__,
                model_dtype=str(next(engine.module.parameters()).dtype), impl=impl,
                gradient_clipping=engine.gradient_clipping(), zero_stage=engine.zero_optimization_stage(),
                overlap_comm=bool(engine.zero_overlap_comm()), reduce_bucket_size=engine.zero_reduce_bucket_size())
    tokens = read_tokens(data_path)
    rows, micro = [], 0
    for step in range(1, steps + 1):
        loss_sum = 0.0
        for g in range(gas):
            x, y = window_tokens(tokens, window_of(micro, gas, world, rank), micro_b, seq_len)
            micro += 1
            logits = engine(x).logits
            loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
            loss_sum += float(loss.item())
            engine.backward(loss)
            if g == gas - 1:
                assert engine.is_gradient_accumulation_boundary()
                lr = float(engine.get_lr()[0])
                skipped_before = engine.skipped_steps
            engine.step()
        v = torch.tensor([loss_sum, float(gas)], dtype=torch.float64)
        dist.all_reduce(v)
        skipped = int(engine.skipped_steps > skipped_before)
        gn = -1.0 if skipped else finite_or(engine.get_global_grad_norm())
        rows.append((step, float(v[0] / v[1]), lr, gcd.current_scale(engine), gn, skipped))
        if rank == 0 and (step == 1 or step % 50 == 0):
            r = rows[-1]
            print("  %s step %d loss %.6f lr %.4g grad_norm %.5g%s" % (name, step, r[1], r[2], r[4],
                                                                    " (skipped)" if r[5] else ""),
                  file=sys.stderr, flush=True)
    return rows, info


# ------------------------------------------------------------------ trainer_defaults
def run_trainer(name, weights_path, data_path, steps, seq_len, tmpdir):
    from torch.utils.data import Dataset, SequentialSampler
    from transformers import Trainer, TrainerCallback, TrainingArguments
    ds = json.load(open(os.path.join(HERE, name + ".json")))
    assert "optimizer" not in ds and "scheduler" not in ds
    B = int(ds["train_micro_batch_size_per_gpu"])
    gas = int(ds.get("gradient_accumulation_steps", 1))
    T = seq_len
    tokens = read_tokens(data_path)
    n_windows = (len(tokens) - 1) // (B * T)

    class Rows(Dataset):
        """Row j = b of window w (j = w*B + b): tokens[w*B*T + b*T : ... + T + 1], so batches of B
        in order are dsrt-train's windows on one rank."""

        def __len__(self):
            return n_windows * B

        def __getitem__(self, j):
            s = (j // B) * B * T + (j % B) * T
            return {"input_ids": torch.from_numpy(tokens[s:s + T].copy()),
                    "labels": torch.from_numpy(tokens[s + 1:s + T + 1].copy())}

    model, impl, V = load_model(weights_path)
    rec = dict(loss=[], lr=[], micro=0, rows=[], logs=[])

    class DsrtLossTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            x, y = inputs["input_ids"], inputs["labels"]
            ex, ey = window_tokens(tokens, window_of(rec["micro"], gas, 1, 0), B, T)
            assert torch.equal(x.cpu(), ex) and torch.equal(y.cpu(), ey), "batch %d is not dsrt's" % rec["micro"]
            rec["micro"] += 1
            outputs = model(input_ids=x)
            loss = F.cross_entropy(outputs.logits.float().reshape(-1, V), y.reshape(-1))
            rec["loss"].append(float(loss.item()))
            rec["lr"].append(float(model.get_lr()[0]) if hasattr(model, "get_lr") else
                             float(self.lr_scheduler.get_last_lr()[0]))
            return (loss, outputs) if return_outputs else loss

    class Recorder(TrainerCallback):
        def __init__(self):
            self.skipped = 0

        def on_step_end(self, args, state, control, **kw):
            eng = trainer.model_wrapped
            sk = int(eng.skipped_steps > self.skipped)
            self.skipped = eng.skipped_steps
            losses, lrs = rec["loss"][-gas:], rec["lr"]
            gn = -1.0 if sk else finite_or(eng.get_global_grad_norm())
            rec["rows"].append((state.global_step, sum(losses) / len(losses), lrs[-1], gcd.current_scale(eng), gn, sk))
            r = rec["rows"][-1]
            if r[0] == 1 or r[0] % 50 == 0:
                print("  %s step %d loss %.6f lr %.4g grad_norm %.5g%s" % (name, r[0], r[1], r[2], r[4],
                                                                        " (skipped)" if r[5] else ""),
                      file=sys.stderr, flush=True)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "learning_rate" in logs:
                rec["logs"].append(dict(logs, step=state.global_step))

    targs = TrainingArguments(output_dir=os.path.join(tmpdir, "trainer_out"), deepspeed=dict(ds),
                              learning_rate=5e-4, weight_decay=0.1, warmup_steps=20, max_steps=steps,
                              per_device_train_batch_size=B, gradient_accumulation_steps=gas,
                              lr_scheduler_type="linear", max_grad_norm=1.0, logging_steps=1,
                              save_strategy="no", report_to="none", disable_tqdm=True,
                              dataloader_num_workers=0, seed=gc.INIT_SEED)
    trainer = DsrtLossTrainer(model=model, args=targs, train_dataset=Rows(), callbacks=[Recorder()])
    trainer.train()
    eng = trainer.model_wrapped
    inner = getattr(eng.optimizer, "optimizer", None)
    groups = [(len(g["params"]), g["weight_decay"]) for g in eng.optimizer.param_groups]
    decay = set(trainer.get_decay_parameter_names(trainer.model))
    no_decay = sorted(n for n, _ in trainer.model.named_parameters() if n not in decay)
    info = dict(optimizer=type(eng.optimizer).__name__, basic_optimizer=type(inner).__name__,
                fused=getattr(inner, "defaults", {}).get("fused"), optim=str(targs.optim),
                groups_nparams_wd=groups, no_decay=no_decay,
                model_dtype=str(next(eng.module.parameters()).dtype), impl=impl,
                gradient_clipping=eng.gradient_clipping(), zero_stage=eng.zero_optimization_stage(),
                scheduler=type(trainer.lr_scheduler).__name__, engine_scheduler=type(eng.lr_scheduler).__name__)
    # the Trainer's own log agrees on lr (it reads it after the update, before its scheduler step)
    for lg in rec["logs"]:
        r = rec["rows"][lg["step"] - 1]
        assert abs(lg["learning_rate"] - r[2]) <= 1e-12 * max(1.0, r[2]), (lg, r)
    info["trainer_logged_lr_checked"] = len(rec["logs"])
    return rec["rows"], info


# ------------------------------------------------------------------ processes
def worker(rank, world, port, name, weights_path, data_path, steps, seq_len, threads, out_json, tmpdir):
    torch.set_num_threads(threads)
    set_dist_env(rank, world, port)
    import deepspeed
    deepspeed.init_distributed(dist_backend="gloo")
    if name == "trainer_defaults":
        rows, info = run_trainer(name, weights_path, data_path, steps, seq_len, tmpdir)
    else:
        rows, info = run_engine(rank, world, name, weights_path, data_path, steps, seq_len)
    if rank == 0:
        with open(out_json, "w") as f:
            json.dump(dict(rows=rows, info=info), f)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="weights file written by gpt2_dump_init (gpt2-tiny, seed 1234)")
    src.add_argument("--dump-init", help="path of dsrt's gpt2_dump_init, run here for gpt2-tiny seed 1234")
    ap.add_argument("--data", default=os.path.join(gc.ROOT, "..", "shared", "data", "tinyshakespeare.txt"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--case", action="append", choices=list(CASES), help="default: all")
    ap.add_argument("--out-dir", default="/tmp/ds_curves")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    a = ap.parse_args(argv)
    os.makedirs(a.out_dir, exist_ok=True)
    import deepspeed
    import torch.multiprocessing as mp
    print("command: %s" % shlex.join([os.path.relpath(sys.argv[0], gc.ROOT)] + sys.argv[1:]))
    print("deepspeed %s, torch %s, transformers %s, %d thread(s) per rank; data %s"
          % (deepspeed.__version__, torch.__version__, transformers_version(), a.threads, a.data))
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        wpath = a.weights
        if a.dump_init:
            wpath = os.path.join(tmp, "gpt2-tiny.weights.h5")
            subprocess.run([a.dump_init, gc.MODEL_CONFIG, str(gc.INIT_SEED), wpath], check=True,
                           stdout=subprocess.DEVNULL)
        for name in a.case or list(CASES):
            t0 = time.time()
            world = CASES[name]
            out_json = os.path.join(tmp, name + ".json")
            try:
                mp.spawn(worker, nprocs=world, join=True,
                         args=(world, gcd.free_port(), name, wpath, a.data, a.steps, a.seq_len, a.threads,
                               out_json, tmp))
                res = json.load(open(out_json))
            except Exception as e:  # noqa: BLE001 - report and go on with the next case
                print("%s: FAILED in DeepSpeed: %s: %s" % (name, type(e).__name__, e))
                failed.append(name)
                continue
            rows = [tuple(r) for r in res["rows"]]
            assert [r[0] for r in rows] == list(range(1, a.steps + 1)), "missing steps"
            gc.write_csv(os.path.join(a.out_dir, name + ".csv"), rows)
            skipped = [r[0] for r in rows if r[5]]
            print("%s: %d rank(s), loss %.6f -> %.6f; %d skipped %s; %.1f s"
                  % (name, world, rows[0][1], rows[-1][1], len(skipped), skipped, time.time() - t0))
            print("  " + json.dumps(res["info"], sort_keys=True))
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
