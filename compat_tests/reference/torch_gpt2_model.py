"""GPT-2 model construction shared by gen_gpt2_reference.py and bench/torch_gpt2.py.

build_model(config_dict, dtype) returns (model, impl) where impl is
"transformers-<version>" when Hugging Face transformers' GPT2LMHeadModel could be
used, else "builtin": a small module below that mirrors Hugging Face's GPT-2 (same
parameter names, shapes and order; Conv1D weights stored (in, out); pre-LN blocks;
tanh-approximated GELU ("gelu_new"); causal mask filled with finfo.min; lm_head tied
to wte). Dropouts are forced to 0 in both cases. Set DSRT_REF_IMPL=builtin to force
the built-in module (used to cross-check the two).
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

DROPOUT_KEYS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout")


def transformers_version():
    try:
        import transformers
        return transformers.__version__
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return None


def _build_transformers(cfg):
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    d = dict(cfg)
    for k in DROPOUT_KEYS:
        d[k] = 0.0
    try:
        config = GPT2Config(**d, attn_implementation="eager")
    except TypeError:
        config = GPT2Config(**d)
    if hasattr(config, "_attn_implementation"):
        try:
            config._attn_implementation = "eager"
        except Exception:  # noqa: BLE001 - older versions: read-only or absent
            pass
    model = GPT2LMHeadModel(config)
    return model, "transformers-" + transformers.__version__


# ---------------------------------------------------------------- built-in mirror
class Conv1D(nn.Module):
    """HF's Conv1D: y = x @ W + b with W stored (in, out)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf).normal_(std=0.02))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Attention(nn.Module):
    def __init__(self, c, n_head, n_pos, layer_idx, scale_by_layer):
        super().__init__()
        self.n_head = n_head
        self.c = c
        self.layer_idx = layer_idx
        self.scale_by_layer = scale_by_layer
        self.register_buffer("bias", torch.tril(torch.ones((n_pos, n_pos), dtype=torch.bool))
                             .view(1, 1, n_pos, n_pos), persistent=False)
        self.c_attn = Conv1D(3 * c, c)
        self.c_proj = Conv1D(c, c)

    def forward(self, x):
        b, t, c = x.shape
        hd = c // self.n_head
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, hd).permute(0, 2, 1, 3) for z in (q, k, v))
        w = torch.matmul(q, k.transpose(-1, -2))
        w = w / torch.full([], hd ** 0.5, dtype=w.dtype)
        if self.scale_by_layer:
            w = w / float(self.layer_idx + 1)
        mask = self.bias[:, :, :t, :t]
        w = torch.where(mask, w, torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype))
        w = F.softmax(w, dim=-1)
        y = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous().view(b, t, c)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, c, inner):
        super().__init__()
        self.c_fc = Conv1D(inner, c)
        self.c_proj = Conv1D(c, inner)

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg, layer_idx):
        super().__init__()
        c = cfg["n_embd"]
        eps = cfg.get("layer_norm_epsilon", 1e-5)
        inner = cfg.get("n_inner") or 4 * c
        self.ln_1 = nn.LayerNorm(c, eps=eps)
        self.attn = Attention(c, cfg["n_head"], cfg["n_positions"], layer_idx,
                              bool(cfg.get("scale_attn_by_inverse_layer_idx", False)))
        self.ln_2 = nn.LayerNorm(c, eps=eps)
        self.mlp = MLP(c, inner)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["n_embd"]
        self.wte = nn.Embedding(cfg["vocab_size"], c)
        self.wpe = nn.Embedding(cfg["n_positions"], c)
        self.h = nn.ModuleList([Block(cfg, i) for i in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(c, eps=cfg.get("layer_norm_epsilon", 1e-5))

    def forward(self, ids):
        pos = torch.arange(ids.shape[1], dtype=torch.long).unsqueeze(0)
        x = self.wte(ids) + self.wpe(pos)
        for blk in self.h:
            x = blk(x)
        return self.ln_f(x)


class _Out:
    def __init__(self, logits):
        self.logits = logits


class BuiltinGPT2LMHeadModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        act = cfg.get("activation_function", "gelu_new")
        if act != "gelu_new":
            raise ValueError("built-in GPT-2 supports activation_function gelu_new only, got %r" % act)
        if cfg.get("reorder_and_upcast_attn", False):
            raise ValueError("built-in GPT-2 does not support reorder_and_upcast_attn")
        if not cfg.get("scale_attn_weights", True):
            raise ValueError("built-in GPT-2 requires scale_attn_weights true")
        if not cfg.get("tie_word_embeddings", True):
            raise ValueError("built-in GPT-2 requires tie_word_embeddings true")
        self.transformer = Transformer(cfg)
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied

    def forward(self, input_ids):
        return _Out(self.lm_head(self.transformer(input_ids)))


def build_model(cfg, dtype=torch.float32):
    """cfg: the parsed HF config.json dict. Returns (model, impl string)."""
    want = os.environ.get("DSRT_REF_IMPL", "auto")
    model = impl = None
    if want != "builtin":
        try:
            model, impl = _build_transformers(cfg)
        except Exception as e:  # noqa: BLE001
            if want == "transformers":
                raise
            import sys
            print("note: transformers GPT2LMHeadModel unavailable (%s: %s); using built-in mirror"
                  % (type(e).__name__, e), file=sys.stderr)
    if model is None:
        model, impl = BuiltinGPT2LMHeadModel(cfg), "builtin"
    model.to(dtype)
    # tied head: lm_head.weight must be the very same Parameter as wte.weight
    assert model.lm_head.weight is model.transformer.wte.weight, "lm_head not tied to wte"
    return model, impl
