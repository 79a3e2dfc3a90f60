#!/usr/bin/env python3
"""PyTorch reference loss curves for dsrt-train (see README.md in this folder).

usage: gen_curves.py (--weights W.h5 | --dump-init PATH/gpt2_dump_init)
                     [--data FILE] [--steps N] [--seq-len T] [--case NAME]...
                     [--out-dir DIR] [--threads N] [--fp32-check]

For each case it reads the DeepSpeed config <case>.json in this folder, trains Hugging Face
GPT2LMHeadModel (configs/model/gpt2-tiny.json, dsrt's initial weights for seed 1234) for N
optimizer steps on the byte tokens of the data file, following DeepSpeed 0.19's step
sequence (loss scaler, scheduler, FusedAdam, clipping), and writes <case>.csv with the
columns step,loss,lr,loss_scale,grad_norm,skipped. Only used to (re)generate the committed
curves; dsrt's tests never run it.
"""
import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "compat_tests", "reference"))
from torch_gpt2_model import build_model, transformers_version  # noqa: E402
from gen_gpt2_reference import load_weights  # noqa: E402

CASES = ["fp32_warmupdecay", "bf16", "fp16_overflow", "gas4", "clip"]
MODEL_CONFIG = os.path.join(ROOT, "configs", "model", "gpt2-tiny.json")
INIT_SEED = 1234
FP16_INF_AT = 65520.0  # the smallest magnitude that rounds to inf in IEEE fp16 (RNE)
f32 = np.float32


# ------------------------------------------------------------------ DeepSpeed pieces
class DynamicLossScaler:
    """deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler, >= 0.17.1 (spec 4.2)."""

    def __init__(self, init_scale, window, hysteresis, min_scale, consecutive_hysteresis=False):
        self.cur_scale = float(init_scale)
        self.cur_iter = 0
        self.last_overflow_iter = -1
        self.window = window
        self.delayed_shift = hysteresis
        self.cur_hysteresis = hysteresis
        self.min_scale = float(min_scale)
        self.consecutive_hysteresis = consecutive_hysteresis

    def update_scale(self, overflow):
        if overflow:
            if self.delayed_shift == 1 or self.cur_hysteresis == 1:
                if self.cur_scale == self.min_scale:
                    raise RuntimeError("Current loss scale already at minimum - cannot decrease "
                                       "scale anymore. Exiting run.")
                self.cur_scale = max(self.cur_scale / 2, self.min_scale)
            else:
                self.cur_hysteresis -= 1
            self.last_overflow_iter = self.cur_iter
        else:
            if self.consecutive_hysteresis:
                self.cur_hysteresis = self.delayed_shift
            stable = self.cur_iter - self.last_overflow_iter - 1
            if stable > 0 and stable % self.window == 0:
                self.cur_scale *= 2
                if not self.consecutive_hysteresis:
                    self.cur_hysteresis = self.delayed_shift
        self.cur_iter += 1


class NoScaler:
    cur_scale = 1.0

    def update_scale(self, overflow):
        pass


def _gamma_warmup(lbi, w, kind):
    if kind == "linear":
        return lbi / w
    return math.log(lbi + 1) / math.log(w)  # "log" (and unknown types)


class Scheduler:
    """WarmupLR / WarmupDecayLR (spec 5): lr for last_batch_iteration lbi; constructed at
    lbi = -1, stepped once after every applied optimizer step."""

    def __init__(self, sched, opt_lr):
        self.type = sched["type"]
        p = dict(sched.get("params", {}))
        if self.type not in ("WarmupLR", "WarmupDecayLR"):
            raise SystemExit("scheduler %s: only WarmupLR and WarmupDecayLR are emulated" % self.type)
        self.min = float(p.get("warmup_min_lr", 0.0))
        default_max = opt_lr if self.type == "WarmupLR" else 0.001  # >= 0.17.2 defaults
        self.max = float(p.get("warmup_max_lr", default_max))
        self.w = max(2, int(p.get("warmup_num_steps", 1000)))
        self.kind = p.get("warmup_type", "log")
        self.total = int(p["total_num_steps"]) if self.type == "WarmupDecayLR" else None
        self.lbi = int(p.get("last_batch_iteration", -1))

    def lr(self):
        lbi = self.lbi
        if lbi < 0:
            return self.min
        if lbi < self.w:
            return self.min + (self.max - self.min) * _gamma_warmup(lbi, self.w, self.kind)
        if self.total is None:
            return self.max
        g = max(0.0, (self.total - lbi) / max(1.0, self.total - self.w))
        return self.min + (self.max - self.min) * g

    def step(self):
        self.lbi += 1


class FusedAdamW:
    """FusedAdam (adam_w_mode, bias correction) per spec 6.2, in the dtype of the tensors
    it is given. Hyper-parameters reach the kernel as float32 (lr, betas, eps, wd, the
    bias corrections: beta as float32, pow in double, result stored float32), so the
    float64 reference uses those float32 values too."""

    def __init__(self, params, opt, dtype):
        self.p = params  # list of master tensors (updated in place)
        self.m = [torch.zeros_like(t) for t in params]
        self.v = [torch.zeros_like(t) for t in params]
        pr = opt.get("params", {})
        betas = pr.get("betas", [0.9, 0.999])
        self.b1, self.b2 = f32(betas[0]), f32(betas[1])
        self.eps = f32(pr.get("eps", 1e-8))
        self.wd = f32(pr.get("weight_decay", 0.0))
        self.dtype = dtype
        self.step_count = 0

    def _s(self, x):
        return torch.tensor(float(x), dtype=self.dtype)

    @torch.no_grad()
    def step(self, grads, lr, grad_mul):
        self.step_count += 1
        bc1 = f32(1.0 - math.pow(float(self.b1), float(self.step_count)))
        bc2 = f32(1.0 - math.pow(float(self.b2), float(self.step_count)))
        b1, b2 = self._s(self.b1), self._s(self.b2)
        omb1, omb2 = self._s(f32(1) - self.b1), self._s(f32(1) - self.b2)
        bc1, bc2, eps, wd = self._s(bc1), self._s(bc2), self._s(self.eps), self._s(self.wd)
        lr, gm = self._s(f32(lr)), self._s(grad_mul)
        for p, m, v, g in zip(self.p, self.m, self.v, grads):
            g = g.to(self.dtype) * gm
            m.mul_(b1).add_(omb1 * g)
            v.mul_(b2).add_(omb2 * g * g)
            denom = torch.sqrt(v / bc2) + eps
            update = (m / bc1) / denom + wd * p
            p.sub_(lr * update)


# ------------------------------------------------------------------ data
class Batches:
    """dsrt-train's loader: consecutive windows of B*T+1 tokens, cursor += B*T, wrap to 0
    when the next window would pass the end."""

    def __init__(self, path, b, t):
        with open(path, "rb") as f:
            self.tokens = np.frombuffer(f.read(), dtype=np.uint8).astype(np.int64)
        self.b, self.t, self.cursor = b, t, 0

    def next(self):
        w = self.b * self.t
        if self.cursor + w + 1 > len(self.tokens):
            self.cursor = 0
        buf = self.tokens[self.cursor:self.cursor + w + 1]
        self.cursor += w
        x = torch.from_numpy(buf[:-1].copy()).view(self.b, self.t)
        y = torch.from_numpy(buf[1:].copy()).view(self.b, self.t)
        return x, y


# ------------------------------------------------------------------ fp16 storage emulation
def _round16(t):
    # forward: the value rounded to fp16; backward (ToCopy twice): the incoming gradient
    # rounded to fp16 as well, overflowing to +-inf where |g| >= 65520
    return t.to(torch.float16).to(t.dtype)


class Fp16Storage:
    """Rounds every module output (embeddings, Conv1D/Linear outputs, LayerNorm, GELU,
    attention and MLP outputs, each block's residual output, the logits) to fp16 in the
    forward and its gradient to fp16 in the backward, as dsrt stores activations and
    activation gradients in fp16; the math inside a module stays fp32."""

    def __init__(self, model):
        self.handles = [m.register_forward_hook(self._fwd) for m in model.modules()]

    @staticmethod
    def _fwd(mod, inp, out):
        if torch.is_tensor(out) and out.is_floating_point():
            return _round16(out)
        if isinstance(out, tuple) and out and torch.is_tensor(out[0]) and out[0].is_floating_point():
            return (_round16(out[0]),) + tuple(out[1:])
        return None


# ------------------------------------------------------------------ activation-gradient probe
class GradProbe:
    """Records max |gradient| over every module output (and the logits) during backward:
    the activation gradients that dsrt stores in the 16-bit type."""

    def __init__(self, model):
        self.max = 0.0
        self.handles = [m.register_forward_hook(self._fwd) for m in model.modules()]

    def _rec(self, g):
        if g is not None and g.numel():
            self.max = max(self.max, float(g.detach().abs().max()))

    def _fwd(self, mod, inp, out):
        t = out[0] if isinstance(out, (tuple, list)) and out else out
        if torch.is_tensor(out) and out.requires_grad:
            out.register_hook(self._rec)
        elif torch.is_tensor(t) and t.requires_grad:
            t.register_hook(self._rec)


# ------------------------------------------------------------------ one case
def run_case(name, weights, data_path, steps, seq_len, log, fp32_check=False,
             fp16_compute=torch.float32, fp16_acts=True):
    ds = json.load(open(os.path.join(HERE, name + ".json")))
    micro = int(ds["train_micro_batch_size_per_gpu"])
    gas = int(ds.get("gradient_accumulation_steps", 1))
    if "train_batch_size" in ds and int(ds["train_batch_size"]) != micro * gas:
        raise SystemExit("%s: train_batch_size != micro * gas at world size 1" % name)
    clip = float(ds.get("gradient_clipping", 0.0))
    fp16 = bool(ds.get("fp16", {}).get("enabled", False))
    bf16 = bool(ds.get("bf16", {}).get("enabled", False))
    mode = "fp16" if fp16 else "bf16" if bf16 else "fp32" if fp32_check else "fp64"
    opt = ds["optimizer"]
    op = opt.get("params", {})
    if opt["type"].lower() not in ("adam", "adamw") or op.get("torch_adam", False) or \
            not (opt["type"].lower() == "adamw" or op.get("adam_w_mode", True)) or \
            not op.get("bias_correction", True):
        raise SystemExit("%s: only FusedAdam in AdamW mode with bias correction is emulated" % name)
    opt_lr = float(opt.get("params", {}).get("lr", 1e-3))
    sched = Scheduler(ds["scheduler"], opt_lr)
    if fp16:
        c = ds["fp16"]
        if float(c.get("loss_scale", 0)) != 0:
            raise SystemExit("%s: static loss scale not emulated" % name)
        if int(ds.get("zero_optimization", {}).get("stage", 0)) == 0:
            raise SystemExit("%s: fp16 stage 0 (FP16_Optimizer) not emulated" % name)
        scaler = DynamicLossScaler(2.0 ** int(c.get("initial_scale_power", 16)),
                                   int(c.get("loss_scale_window", 1000)), int(c.get("hysteresis", 2)),
                                   float(c.get("min_loss_scale", 1)),
                                   bool(c.get("consecutive_hysteresis", False)))
    else:
        scaler = NoScaler()
    check_overflow = fp16 or (bf16 and ds.get("bf16", {}).get("check_grad_overflow", True))

    cfg_text, seed, params = weights
    cfg = json.loads(cfg_text)
    model_dtype = {"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16,
                   "fp16": fp16_compute}[mode]
    torch.manual_seed(0)  # construction draws an init we overwrite
    model, impl = build_model(cfg, model_dtype)
    model.train()  # dropout is 0
    named = list(model.named_parameters())
    assert sorted(n for n, _ in named) == sorted(params), "weights file / model mismatch"
    V = cfg["vocab_size"]

    # masters: fp64 for the fp64 reference; fp32 from the 16-bit-rounded weights otherwise
    masters = []
    for n, p in named:
        w = torch.from_numpy(params[n].astype(np.float32))
        if mode == "fp64":
            masters.append(w.to(torch.float64))
        elif mode == "fp32":
            masters.append(w)
        elif mode == "bf16":
            masters.append(w.to(torch.bfloat16).to(torch.float32))
        else:
            masters.append(w.to(torch.float16).to(torch.float32))
    adam = FusedAdamW(masters, opt, torch.float64 if mode == "fp64" else torch.float32)

    def load_model_weights():
        with torch.no_grad():
            for (n, p), mw in zip(named, masters):
                if mode in ("fp64", "fp32"):
                    p.copy_(mw)
                elif mode == "bf16":
                    p.copy_(mw.to(torch.bfloat16))  # round to nearest even
                else:
                    p.copy_(mw.to(torch.float16).to(fp16_compute))

    load_model_weights()
    storage = Fp16Storage(model) if fp16 and fp16_acts else None  # before the probe
    probe = GradProbe(model) if fp16 else None
    del storage
    data = Batches(data_path, micro, seq_len)
    rows, events = [], []
    for step in range(1, steps + 1):
        s_prev = scaler.cur_scale
        dloss = s_prev / gas
        acc = None  # per-parameter accumulated gradient in the storage type
        losses = []
        act_max = 0.0
        for _ in range(gas):
            x, y = data.next()
            for _, p in named:
                p.grad = None
            if probe:
                probe.max = 0.0
            logits = model(x).logits
            if mode == "fp64":
                loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
                seed_g = torch.tensor(dloss, dtype=torch.float64)
            else:  # loss in fp32 from the (bf16 or fp32) logits
                loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
                seed_g = torch.tensor(f32(dloss), dtype=torch.float32)
            loss.backward(seed_g)
            losses.append(float(loss.item()))
            if probe:
                act_max = max(act_max, probe.max)
            g = [p.grad.detach().clone() for _, p in named]
            if mode == "fp16":
                g = [t.to(torch.float16) for t in g]  # the fp16 gradient buffer
            if acc is None:
                acc = g
            else:  # accumulate in the storage type (one rounding per add)
                acc = [(a.to(torch.float32) + b.to(torch.float32)).to(a.dtype) if mode != "fp64"
                       else a + b for a, b in zip(acc, g)]
        step_loss = sum(losses) / len(losses)

        # boundary (spec 4.3 / 6.3)
        nonfinite = any(not bool(torch.isfinite(t).all()) for t in acc)
        if fp16 and act_max * 1.0 >= FP16_INF_AT:
            nonfinite = True  # an activation gradient would have become inf in fp16
        overflow = bool(check_overflow and nonfinite)
        lr = sched.lr()
        gmax = max(float(t.to(torch.float64).abs().max()) for t in acc)
        scaler.update_scale(overflow)
        s_post = scaler.cur_scale
        if overflow:
            rows.append((step, step_loss, lr, s_post, -1.0, 1))
            events.append(dict(step=step, kind="skip", s_prev=s_prev, s_post=s_post, gmax=gmax,
                               act_max=act_max))
        else:
            sumsq = sum(float((t.to(torch.float64) ** 2).sum()) for t in acc)
            norm_s = math.sqrt(sumsq) if mode == "fp64" else float(f32(math.sqrt(sumsq)))
            combined = s_post
            clipped = False
            if clip > 0:
                k = (norm_s / s_post + 1e-6) / clip
                if k > 1:
                    combined = k * s_post
                    clipped = True
            grad_norm = norm_s / s_prev
            grad_mul = 1.0 / combined if mode == "fp64" else f32(1.0 / combined)
            adam.step([t.to(adam.dtype) for t in acc], lr, grad_mul)
            load_model_weights()
            sched.step()
            rows.append((step, step_loss, lr, s_post, grad_norm, 0))
            events.append(dict(step=step, kind="clip" if clipped else "ok", s_prev=s_prev,
                               s_post=s_post, gmax=gmax, act_max=act_max))
        if log and (step == 1 or step % 50 == 0):
            r = rows[-1]
            print("  %s step %d loss %.6f lr %.4g scale %g grad_norm %.5g%s"
                  % (name, step, r[1], r[2], r[3], r[4], " (skipped)" if r[5] else ""), file=sys.stderr)
    return rows, events, impl, mode


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write("step,loss,lr,loss_scale,grad_norm,skipped\n")
        for step, loss, lr, scale, gn, sk in rows:
            f.write("%d,%.17g,%.17g,%.17g,%.17g,%d\n" % (step, loss, lr, scale, gn, sk))


def summarize(name, rows, events, mode):
    skipped = [r[0] for r in rows if r[5]]
    clipped = [e["step"] for e in events if e["kind"] == "clip"]
    print("%s: loss %.6f -> %.6f; %d skipped %s; %d clipped" %
          (name, rows[0][1], rows[-1][1], len(skipped), skipped, len(clipped)))
    if mode == "fp16":
        changes = [(r[0], r[3]) for i, r in enumerate(rows) if i == 0 or r[3] != rows[i - 1][3]]
        print("  loss scale after step (where it changed): %s"
              % ", ".join("%d: 2^%d" % (st, round(math.log2(sc))) for st, sc in changes))
        # how close each overflow decision was: log2(max |scaled gradient| / 65520),
        # over the fp16 weight gradients and the activation gradients
        close = []
        for e in events:
            m = max(e["gmax"], e["act_max"])
            if math.isfinite(m) and m > 0 and abs(math.log2(m / FP16_INF_AT)) < 0.3:
                close.append("step %d %+.3f" % (e["step"], math.log2(m / FP16_INF_AT)))
        print("  decisions within 2^0.3 of the fp16 overflow threshold: %s"
              % (", ".join(close) or "none"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="weights file written by gpt2_dump_init (gpt2-tiny, seed 1234)")
    src.add_argument("--dump-init", help="path of dsrt's gpt2_dump_init, run here for gpt2-tiny seed 1234")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--case", action="append", choices=CASES, help="default: all")
    ap.add_argument("--out-dir", default=HERE)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fp32-check", action="store_true",
                    help="also train the fp32 cases in float32 (torch) and print how far that "
                         "run's losses stay from the float64 curve (nothing written)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out_dir, exist_ok=True)
    torch.use_deterministic_algorithms(True)

    with tempfile.TemporaryDirectory() as tmp:
        wpath = a.weights
        if a.dump_init:
            wpath = os.path.join(tmp, "gpt2-tiny.weights.h5")
            subprocess.run([a.dump_init, MODEL_CONFIG, str(INIT_SEED), wpath], check=True,
                           stdout=subprocess.DEVNULL)
        weights = load_weights(wpath)
    if weights[1] != INIT_SEED:
        print("warning: weights seed %d, expected %d" % (weights[1], INIT_SEED), file=sys.stderr)
    print("command: %s" % shlex.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]))
    print("torch %s, transformers %s, %d thread(s); data %s"
          % (torch.__version__, transformers_version(), a.threads, a.data))
    for name in a.case or CASES:
        rows, events, impl, mode = run_case(name, weights, a.data, a.steps, a.seq_len, True)
        write_csv(os.path.join(a.out_dir, name + ".csv"), rows)
        summarize(name, rows, events, mode)
        print("  model %s, mode %s" % (impl, mode))
        if a.fp32_check and mode == "fp64":
            rows32, _, _, _ = run_case(name, weights, a.data, a.steps, a.seq_len, False, True)
            rel = [abs(r32[1] - r[1]) / abs(r[1]) for r, r32 in zip(rows, rows32)]
            worst = max(range(len(rel)), key=lambda i: rel[i])
            over = [rows[i][0] for i in range(len(rel)) if rel[i] > 1e-4]
            print("  float32 torch run vs this float64 curve: max relative loss diff %.3g at step %d;"
                  " %d steps over 1e-4%s" % (rel[worst], rows[worst][0], len(over),
                                             (" (first %d)" % over[0]) if over else ""))


if __name__ == "__main__":
    main()
