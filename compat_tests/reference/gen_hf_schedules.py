#!/usr/bin/env python3
"""Reference vectors of Hugging Face transformers' learning-rate schedules.

Builds each schedule with transformers' own `get_scheduler` on a dummy AdamW
optimizer and records the lr the optimizer holds at scheduler step count k:
k = 0 right after construction (LambdaLR has already evaluated the lambda at
last_epoch = 0), then k = 1, 2, ... after each `scheduler.step()`, up to total + 5.

Usage: gen_hf_schedules.py [OUT.csv]        (stdout when no path is given)

CSV: `#` comment lines (versions, command, notes), then the header
`type,base_lr,warmup,total,k,lr`; lr is repr(float): the exact double.

Defaults used (nothing passed in scheduler_specific_kwargs):
  cosine                num_cycles = 0.5
  cosine_with_restarts  num_cycles = 1
  polynomial            lr_end = 1e-7, power = 1.0, lr_init = optimizer.defaults["lr"]
  inverse_sqrt          timescale = num_warmup_steps or 10_000
Arguments get_scheduler ignores:
  constant              num_warmup_steps and num_training_steps (only the optimizer is used)
  constant_with_warmup  num_training_steps
  inverse_sqrt          num_training_steps
A step whose lambda raises (polynomial with warmup == total divides by
decay_steps = 0 at k == total) gives no row but a `# ERROR ...` comment line;
stepping goes on, so that series' later k are still recorded.
"""
import platform
import os
import shlex
import sys
import warnings

import torch
import transformers

TYPES = ["linear", "cosine", "cosine_with_restarts", "polynomial",
         "constant", "constant_with_warmup", "inverse_sqrt"]
CASES = [(0, 10), (3, 10), (10, 10), (4, 25), (0, 1), (1, 1), (7, 100)]
EXTRA = 5  # steps recorded past num_training_steps


def base_lrs(name):
    # polynomial's lambda depends on the optimizer's initial lr (through lr_end),
    # so it is also recorded at a realistic lr; the others scale linearly with it.
    return [1.0, 3e-4] if name == "polynomial" else [1.0]


def main():
    out = open(sys.argv[1], "w") if len(sys.argv) > 1 else sys.stdout
    # lr_scheduler.step() before optimizer.step() warns; harmless here.
    warnings.filterwarnings("ignore", category=UserWarning)
    w = out.write
    w("# Hugging Face transformers LR schedules, made by transformers.get_scheduler\n")
    w(f"# python {platform.python_version()}, torch {torch.__version__}, "
      f"transformers {transformers.__version__}\n")
    # paths relative to the repository, so the committed header does not name this machine
    rel = [os.path.relpath(a) if os.path.exists(a) or a.endswith(".csv") else a for a in sys.argv]
    w("# command: python " + " ".join(shlex.quote(a) for a in rel) +
      " (a virtualenv with torch and transformers from PyPI)\n")
    w("# optimizer: torch.optim.AdamW([p], lr=base_lr); lr = optimizer.param_groups[0]['lr']\n")
    w("# k = scheduler step count: k=0 right after construction, k=n after n scheduler.step()\n")
    w("# defaults: cosine num_cycles=0.5; cosine_with_restarts num_cycles=1; polynomial "
      "lr_end=1e-7 power=1.0; inverse_sqrt timescale=warmup or 10000\n")
    w("type,base_lr,warmup,total,k,lr\n")
    for name in TYPES:
        for base in base_lrs(name):
            for warmup, total in CASES:
                p = torch.nn.Parameter(torch.zeros(1))
                opt = torch.optim.AdamW([p], lr=base)
                sched = transformers.get_scheduler(
                    name, opt, num_warmup_steps=warmup, num_training_steps=total)
                for k in range(total + EXTRA + 1):
                    if k > 0:
                        try:
                            sched.step()  # last_epoch -> k, lr = base * lambda(k)
                        except Exception as e:  # the lambda raised at this k
                            w(f"# ERROR {name},{base!r},{warmup},{total},{k}: "
                              f"{type(e).__name__}: {e}\n")
                            continue
                    lr = float(opt.param_groups[0]["lr"])
                    w(f"{name},{base!r},{warmup},{total},{k},{lr!r}\n")
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
