#!/usr/bin/env python3
"""Writes a float64 PyTorch GPT-2 reference (logits, loss, gradients) for dsrt's tests.

usage: gen_gpt2_reference.py --weights W.h5 --case NAME --batch B --seq T
                             --input-seed S [--mask] --out OUT.h5

W.h5 is written by dsrt's build/tests/gpt2_dump_init: root attributes "config" (HF
config.json text) and "seed"; datasets params/<HF parameter name> (float32, HF shapes;
lm_head.weight absent, tied to transformer.wte.weight). See README.md for OUT.h5.
Only used to (re)generate the committed references; never run by dsrt's tests.
"""
import argparse
import json
import os
import shlex
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt2_model import build_model, transformers_version  # noqa: E402

IGNORE = -100
KEEP_MANTISSA_BITS = 15  # of float32's 23 explicit bits
NOTE = ("float64 PyTorch reference; gradients stored as float32 rounded to "
        "%d explicit mantissa bits" % KEEP_MANTISSA_BITS)


def _attr_str(v):
    if isinstance(v, bytes):
        return v.decode("utf-8").rstrip("\x00")
    if isinstance(v, np.ndarray):  # a 1-element array of bytes/str
        return _attr_str(v.reshape(-1)[0])
    if isinstance(v, np.bytes_):
        return bytes(v).decode("utf-8").rstrip("\x00")
    return str(v).rstrip("\x00")


def round_mantissa(a, keep=KEEP_MANTISSA_BITS):
    """float64 (or float32) array -> float32 keeping `keep` explicit mantissa bits: rounds
    to nearest (ties to even) once, on the float64 bit pattern, then converts to float32,
    which is exact for normal float32 values, so the low (23 - keep) bits of the float32
    are zero and the relative error is <= 2^-(keep+1). Inf/NaN pass through."""
    d = np.ascontiguousarray(a, dtype=np.float64)
    drop = np.uint64(52 - keep)
    u = d.view(np.uint64)
    lsb = (u >> drop) & np.uint64(1)
    r = (u + ((np.uint64(1) << (drop - np.uint64(1))) - np.uint64(1)) + lsb) & ~((np.uint64(1) << drop) - np.uint64(1))
    r = np.where(np.isfinite(d), r, u).view(np.float64)
    out = r.astype(np.float32)  # float32 subnormals (|x| < 1.2e-38) would round again
    return out.reshape(d.shape)


def set_str_attr(obj, name, text):
    """Fixed-length (null-padded) UTF-8 string attribute: simple to read from C."""
    raw = str(text).encode("utf-8")
    obj.attrs.create(name, np.array(raw, dtype="S%d" % max(1, len(raw))),
                     dtype=h5py.string_dtype("utf-8", max(1, len(raw))))


def make_inputs(rng, b, t, v, mask):
    tokens = rng.integers(0, v, size=(b, t), dtype=np.int64).astype(np.int32)
    targets = rng.integers(0, v, size=(b, t), dtype=np.int64).astype(np.int32)
    if mask:
        prefix = rng.integers(1, max(1, t // 2) + 1, size=b)  # prompt length in [1, T/2]
        drop = rng.random((b, t)) < 0.10  # ~10% of the remaining positions
        for i in range(b):
            targets[i, :prefix[i]] = IGNORE
            targets[i, prefix[i]:][drop[i, prefix[i]:]] = IGNORE
        if not (targets != IGNORE).any():  # guarantee a counted target
            targets[0, t - 1] = rng.integers(0, v)
    return tokens, targets


def load_weights(path):
    with h5py.File(path, "r") as f:
        cfg_text = _attr_str(f.attrs["config"])
        seed = int(np.asarray(f.attrs["seed"]).reshape(-1)[0])
        params = {k: np.asarray(ds[()]) for k, ds in f["params"].items()}
    return cfg_text, seed, params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--case", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--input-seed", type=int, required=True)
    ap.add_argument("--mask", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)

    cfg_text, init_seed, params = load_weights(a.weights)
    cfg = json.loads(cfg_text)
    b, t, v = a.batch, a.seq, cfg["vocab_size"]
    if t > cfg["n_positions"]:
        sys.exit("--seq %d exceeds n_positions %d" % (t, cfg["n_positions"]))

    torch.manual_seed(0)  # model construction draws random init we overwrite anyway
    model, impl = build_model(cfg, torch.float64)
    model.eval()  # dropout is 0 anyway
    named = list(model.named_parameters())  # tied lm_head/wte appears once, as transformer.wte.weight
    names = [n for n, _ in named]
    extra = sorted(set(params) - set(names))
    if extra:
        sys.exit("weights file has tensors the model lacks: %s" % ", ".join(extra))
    with torch.no_grad():
        for n, p in named:
            if n not in params:
                sys.exit("weights file lacks %s" % n)
            w = params[n]
            if tuple(w.shape) != tuple(p.shape):
                sys.exit("%s: shape %s in file, %s in model" % (n, w.shape, tuple(p.shape)))
            p.copy_(torch.from_numpy(w.astype(np.float64)))

    rng = np.random.default_rng(a.input_seed)
    tokens, targets = make_inputs(rng, b, t, v, a.mask)

    with torch.enable_grad():
        model.zero_grad(set_to_none=True)
        logits = model(torch.from_numpy(tokens.astype(np.int64))).logits  # (B,T,V) float64
        assert logits.dtype == torch.float64 and tuple(logits.shape) == (b, t, v)
        loss = F.cross_entropy(logits.view(-1, v), torch.from_numpy(targets.astype(np.int64)).view(-1),
                               ignore_index=IGNORE)
        loss.backward()

    comp = dict(compression="gzip", compression_opts=9, shuffle=True)
    with h5py.File(a.out, "w") as f:
        set_str_attr(f, "case", a.case)
        set_str_attr(f, "config", cfg_text)
        f.attrs["init_seed"] = np.int64(init_seed)
        f.attrs["input_seed"] = np.int64(a.input_seed)
        f.attrs["B"] = np.int64(b)
        f.attrs["T"] = np.int64(t)
        set_str_attr(f, "command", shlex.join(sys.argv))
        set_str_attr(f, "torch_version", torch.__version__)
        set_str_attr(f, "transformers_version", transformers_version() if impl != "builtin" else "none")
        set_str_attr(f, "model_impl", impl)
        set_str_attr(f, "note", NOTE)
        width = max(len(n.encode("utf-8")) for n in names)
        f.attrs.create("param_order", np.array([n.encode("utf-8") for n in names], dtype="S%d" % width),
                       dtype=h5py.string_dtype("utf-8", width))
        f.create_dataset("tokens", data=tokens, dtype="<i4")
        f.create_dataset("targets", data=targets, dtype="<i4")
        f.create_dataset("logits", data=round_mantissa(logits.detach().numpy()), dtype="<f4", **comp)
        f.create_dataset("loss", data=np.float64(loss.item()), dtype="<f8")
        g = f.create_group("grads")
        s = f.create_group("param_sums")
        for n, p in named:
            g.create_dataset(n, data=round_mantissa(p.grad.numpy()), dtype="<f4", **comp)
            s.create_dataset(n, data=np.float64(params[n].astype(np.float64).sum()), dtype="<f8")
    print("%s: case %s, %s, B=%d T=%d, loss %.17g, %d counted targets"
          % (a.out, a.case, impl, b, t, loss.item(), int((targets != IGNORE).sum())))


if __name__ == "__main__":
    main()
