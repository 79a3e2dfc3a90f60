#!/usr/bin/env python3
"""Loss curves from real DeepSpeed (CPU accelerator, gloo, world size 1) for the cases in
this folder. Companion of gen_curves.py, which emulates DeepSpeed's step in plain PyTorch;
this script instead hands the same model, weights and batches to deepspeed.initialize()
and lets the DeepSpeed engine do the loss scaling, overflow checks, clipping, FusedAdam
and scheduler steps.

usage: gen_curves_deepspeed.py (--weights W.h5 | --dump-init PATH/gpt2_dump_init)
                               [--data FILE] [--steps N] [--seq-len T] [--case NAME]...
                               [--out-dir DIR] [--threads N]

Exact command used for compat_tests/curves/deepspeed/*.csv (run from the repository root):

  DS_ACCELERATOR=cpu OMP_NUM_THREADS=1 /tmp/hfvenv/bin/python \
      compat_tests/curves/gen_curves_deepspeed.py --dump-init build/tests/gpt2_dump_init \
      --data /work/shared/data/tinyshakespeare.txt --out-dir /tmp/ds_curves

and then the five CSVs were copied from /tmp/ds_curves to compat_tests/curves/deepspeed/.
All five cases run on the CPU accelerator (fp16 included: torch 2.15 computes fp16 on CPU).
The whole run took about 1 minute on 2 cores (about 80 s more on the very first run, which
JIT-builds DeepSpeed's CPU ops into ~/.cache/torch_extensions).

Versions: Python 3.11.7, deepspeed 0.19.6 (pip, DS_BUILD_OPS=0; FusedAdam is the CPU
accelerator's fused_adam op, JIT-built with g++ on first use), torch 2.15.0 (PyPI wheel,
run on CPU), transformers 5.25.0, h5py 3.16.0, numpy 2.4.6.

Per case: <case>.json is loaded as a dict and given to deepspeed.initialize() unchanged.
The model is Hugging Face GPT2LMHeadModel built by ../reference/torch_gpt2_model.py in
float32 with dsrt's initial weights (gpt2-tiny, seed 1234); DeepSpeed itself casts it to
fp16/bf16 when the config asks for it. Batches come from gen_curves.Batches (dsrt-train's
data order). Each micro-batch: loss = mean cross entropy of logits.float(), then
engine.backward(loss) and engine.step() (the engine decides the gas boundary).

CSV columns (same format as gen_curves.py, 17 significant digits):
  loss        mean of the step's micro-batch losses
  lr          engine.get_lr()[0] read just before the boundary engine.step() (the value
              that update uses; DeepSpeed does not step the scheduler on a skipped step)
  loss_scale  engine.optimizer.loss_scale (cur_scale) after the step; 1 when the optimizer
              has no loss scaler (fp32 stage 0)
  grad_norm   engine.get_global_grad_norm() after the step; -1 on a skipped step or when
              it is inf/NaN. For fp32 ZeRO-0 DeepSpeed does not record a norm (None); then
              the L2 norm of the parameters' .grad just before engine.step() is written
              instead (squares summed in float64), and the summary says so.
  skipped     1 when engine.skipped_steps increased during the step
"""
import argparse
import json
import math
import os
import shlex
import socket
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
from torch_gpt2_model import build_model, transformers_version  # noqa: E402
from gen_gpt2_reference import load_weights  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_dist():
    import deepspeed
    for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1"),
                 ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(k, v)
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    deepspeed.init_distributed(dist_backend="gloo")


def param_grad_norm(model):
    s = 0.0
    for p in model.parameters():
        if p.grad is not None:
            s += float((p.grad.detach().to(torch.float64) ** 2).sum())
    return math.sqrt(s)


def current_scale(engine):
    opt = engine.optimizer
    for attr in ("loss_scale", "cur_scale"):
        v = getattr(opt, attr, None)
        if v is not None and not callable(v):
            return float(v)
    scaler = getattr(opt, "loss_scaler", None)
    if scaler is not None and getattr(scaler, "cur_scale", None) is not None:
        return float(scaler.cur_scale)
    return 1.0


def model_from_weights(weights):
    """The GPT-2 of gpt2_dump_init's weights (cfg_text, seed, params), fp32, in train mode
    (dropouts are 0): (model, impl, cfg)."""
    cfg_text, _seed, params = weights
    cfg = json.loads(cfg_text)
    torch.manual_seed(0)  # construction draws an init we overwrite
    model, impl = build_model(cfg, torch.float32)
    named = list(model.named_parameters())
    assert sorted(n for n, _ in named) == sorted(params), "weights file / model mismatch"
    with torch.no_grad():
        for n, p in named:
            p.copy_(torch.from_numpy(params[n].astype(np.float32)))
    model.train()
    return model, impl, cfg


def run_case(name, weights, data_path, steps, seq_len):
    import deepspeed
    ds = json.load(open(os.path.join(HERE, name + ".json")))
    micro = int(ds["train_micro_batch_size_per_gpu"])
    gas = int(ds.get("gradient_accumulation_steps", 1))

    model, impl, cfg = model_from_weights(weights)
    V = cfg["vocab_size"]

    engine, optimizer, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                                   config=dict(ds))
    assert engine.gradient_accumulation_steps() == gas
    info = dict(optimizer=type(engine.optimizer).__name__,
                basic_optimizer=type(getattr(engine, "basic_optimizer", None)).__name__,
                model_dtype=str(next(engine.module.parameters()).dtype), norm_source=set())

    data = gc.Batches(data_path, micro, seq_len)
    rows = []
    for step in range(1, steps + 1):
        losses = []
        for micro_i in range(gas):
            x, y = data.next()
            logits = engine(x).logits
            loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
            losses.append(float(loss.item()))
            engine.backward(loss)
            if micro_i == gas - 1:
                assert engine.is_gradient_accumulation_boundary()
                lr = float(engine.get_lr()[0])
                skipped_before = engine.skipped_steps
                own_norm = param_grad_norm(engine.module) if info["optimizer"] != "DeepSpeedZeroOptimizer" \
                    else None
            engine.step()
        skipped = int(engine.skipped_steps > skipped_before)
        scale = current_scale(engine)
        gn = engine.get_global_grad_norm()
        if torch.is_tensor(gn):
            gn = float(gn)
        if skipped:
            gn = -1.0
        elif gn is None:
            gn = own_norm
            info["norm_source"].add("param.grad before step")
        else:
            info["norm_source"].add("engine.get_global_grad_norm()")
        if gn is None or not math.isfinite(gn):
            gn = -1.0
        rows.append((step, sum(losses) / len(losses), lr, scale, gn, skipped))
        if step == 1 or step % 50 == 0:
            r = rows[-1]
            print("  %s step %d loss %.6f lr %.4g scale %g grad_norm %.5g%s"
                  % (name, step, r[1], r[2], r[3], r[4], " (skipped)" if r[5] else ""),
                  file=sys.stderr, flush=True)
    info["impl"] = impl
    info["norm_source"] = ", ".join(sorted(info["norm_source"])) or "-"
    del engine, optimizer
    return rows, info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="weights file written by gpt2_dump_init (gpt2-tiny, seed 1234)")
    src.add_argument("--dump-init", help="path of dsrt's gpt2_dump_init, run here for gpt2-tiny seed 1234")
    ap.add_argument("--data", default=os.path.join(gc.ROOT, "..", "shared", "data", "tinyshakespeare.txt"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--case", action="append", choices=gc.CASES, help="default: all")
    ap.add_argument("--out-dir", default="/tmp/ds_curves")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out_dir, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        wpath = a.weights
        if a.dump_init:
            wpath = os.path.join(tmp, "gpt2-tiny.weights.h5")
            subprocess.run([a.dump_init, gc.MODEL_CONFIG, str(gc.INIT_SEED), wpath], check=True,
                           stdout=subprocess.DEVNULL)
        weights = load_weights(wpath)
    if weights[1] != gc.INIT_SEED:
        print("warning: weights seed %d, expected %d" % (weights[1], gc.INIT_SEED), file=sys.stderr)

    import deepspeed
    init_dist()
    print("command: %s" % shlex.join([os.path.relpath(sys.argv[0], gc.ROOT)] + sys.argv[1:]))
    print("deepspeed %s, torch %s, transformers %s, %d thread(s); data %s"
          % (deepspeed.__version__, torch.__version__, transformers_version(), a.threads, a.data))
    failed = []
    for name in a.case or gc.CASES:
        t0 = time.time()
        try:
            rows, info = run_case(name, weights, a.data, a.steps, a.seq_len)
        except Exception as e:  # noqa: BLE001 - report and go on with the next case
            import traceback
            traceback.print_exc()
            print("%s: FAILED in DeepSpeed: %s: %s" % (name, type(e).__name__, e))
            failed.append(name)
            continue
        gc.write_csv(os.path.join(a.out_dir, name + ".csv"), rows)
        skipped = [r[0] for r in rows if r[5]]
        print("%s: loss %.6f -> %.6f; %d skipped %s; %.1f s" % (name, rows[0][1], rows[-1][1], len(skipped),
                                                               skipped, time.time() - t0))
        print("  optimizer %s (basic %s), model dtype %s, grad_norm from %s, model %s"
              % (info["optimizer"], info["basic_optimizer"], info["model_dtype"], info["norm_source"],
                 info["impl"]))
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
