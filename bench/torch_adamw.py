#!/usr/bin/env python3
"""torch.optim.AdamW on CPU, the baseline for dsrt's adamw_step figures.

usage: torch_adamw.py --n N --threads T [--steps S] [--warmup W]

One flat float32 parameter of N elements with a random gradient; times S calls of
opt.step() after W untimed ones, for every implementation this torch offers
(the default, foreach=True, fused=True; the ones it rejects are reported as
such). lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01. Prints one line
of JSON: seconds per step for each variant and the best. Exit status 3 when
torch cannot be imported, 2 on bad arguments.
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    if min(a.n, a.threads, a.steps) < 1 or a.warmup < 0:
        ap.error("n, threads and steps must be >= 1, warmup >= 0")
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        print("torch_adamw.py: cannot import torch: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 3
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.rand(a.n, dtype=torch.float32) * 2 - 1)
    p.grad = (torch.rand(a.n, dtype=torch.float32) * 2 - 1) * 1e-3

    variants = {}
    for name, kw in (("default", {}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        try:
            opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, **kw)
            for _ in range(a.warmup):
                opt.step()
            t0 = time.perf_counter()
            for _ in range(a.steps):
                opt.step()
            variants[name] = (time.perf_counter() - t0) / a.steps
        except Exception as e:  # noqa: BLE001 (a variant this torch does not offer)
            variants[name] = "unavailable: %s: %s" % (type(e).__name__, str(e).splitlines()[0][:120])
        finally:
            opt = None  # drop the state (2 n floats) before the next variant
    timed = {k: v for k, v in variants.items() if isinstance(v, float)}
    best = min(timed, key=timed.get) if timed else None
    print(json.dumps({"impl": "torch.optim.AdamW", "torch": torch.__version__, "threads": a.threads,
                      "n": a.n, "steps": a.steps, "variants": variants, "best": best,
                      "best_s": timed[best] if best else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
