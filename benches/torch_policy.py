"""PyTorch CPU baseline for `cargo bench --bench world`: the world's policy, its training step and
its sampling loop, timed the way the Rust bench times mprm's.

Model (as `mprm::world::policy`): token + learned position embeddings; per layer
x += proj(attn(LN1(x))), x += fc2(gelu(fc1(LN2(x)))) with exact GELU and causal multi-head
attention; a final layer norm; logits = LN(x) W + b. Weights are read from the safetensors files
the Rust bench writes (no `safetensors` package needed).

Training: the same token rows (right-padded, next-token cross-entropy over non-padding targets),
AdamW (weight decay 0.01), linear warm-up then cosine decay. Sampling: the same prompts, in
batches of 256 rows, left-padded, with a key/value cache; finished rows leave the batch; one
multinomial draw per token at temperature 1. Prints one JSON line with tokens per second.
"""

import argparse
import json
import math
import os
import struct
import time

import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, t in header.items():
        start, end = t["data_offsets"]
        assert t["dtype"] == "F32", name
        out[name] = torch.frombuffer(bytearray(data[base + start : base + end]), dtype=torch.float32).view(
            *t["shape"]
        )
    return out, meta


def read_rows(folder, stem):
    with open(os.path.join(folder, stem + ".u32"), "rb") as f:
        tokens = torch.frombuffer(bytearray(f.read()), dtype=torch.int32).long()
    with open(os.path.join(folder, stem + ".offsets.i64"), "rb") as f:
        offsets = torch.frombuffer(bytearray(f.read()), dtype=torch.int64).tolist()
    return [tokens[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


class Policy(torch.nn.Module):
    def __init__(self, weights, spec):
        super().__init__()
        self.spec = spec
        self.p = torch.nn.ParameterDict({k.replace(".", "_"): torch.nn.Parameter(v.clone()) for k, v in weights.items()})

    def w(self, name):
        return self.p[name.replace(".", "_")]

    def forward(self, ids, positions, mask, cache=None):
        """ids [B, t]; positions [B, t]; mask [B, 1, t, past + t] (True = may attend)."""
        width, heads = self.spec["width"], self.spec["heads"]
        dh = width // heads
        b, t = ids.shape
        x = self.w("tok")[ids] + self.w("pos")[positions]
        new_cache = []
        for layer in range(self.spec["layers"]):
            g = lambda n: self.w(f"blocks.{layer}.{n}")
            h = F.layer_norm(x, (width,), g("ln1_gain"), g("ln1_bias"), 1e-5)
            qkv = h @ g("qkv_w") + g("qkv_b")
            q, k, v = (z.view(b, t, heads, dh).transpose(1, 2) for z in qkv.split(width, dim=2))
            if cache is not None:
                k = torch.cat([cache[layer][0], k], dim=2)
                v = torch.cat([cache[layer][1], v], dim=2)
            new_cache.append((k, v))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            a = a.transpose(1, 2).reshape(b, t, width)
            x = x + a @ g("proj_w") + g("proj_b")
            h = F.layer_norm(x, (width,), g("ln2_gain"), g("ln2_bias"), 1e-5)
            x = x + F.gelu(h @ g("fc1_w") + g("fc1_b")) @ g("fc2_w") + g("fc2_b")
        hidden = F.layer_norm(x, (width,), self.w("lnf_gain"), self.w("lnf_bias"), 1e-5)
        return hidden @ self.w("out_w") + self.w("out_b"), new_cache


def train(policy, rows_by_step, lr, warmup, pad):
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.01)
    steps = len(rows_by_step)
    tokens = 0
    start = time.perf_counter()
    for s, rows in enumerate(rows_by_step):
        t = max(len(r) for r in rows)
        ids = torch.full((len(rows), t), pad, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        inputs, targets = ids[:, :-1], ids[:, 1:]
        b, tt = inputs.shape
        positions = torch.arange(tt).expand(b, tt)
        mask = torch.ones(tt, tt, dtype=torch.bool).tril().expand(b, 1, tt, tt)
        logits, _ = policy(inputs, positions, mask)
        keep = targets != pad
        loss = F.cross_entropy(logits[keep], targets[keep])
        tokens += int(keep.sum())
        w = warmup
        factor = (s + 1) / w if s < w else 0.5 * (1 + math.cos(math.pi * (s - w) / max(1, steps - w)))
        for group in opt.param_groups:
            group["lr"] = lr * factor
        opt.zero_grad()
        loss.backward()
        opt.step()
        float(loss)  # mprm reads each step's loss back to stop on a divergence
    return tokens / (time.perf_counter() - start)


@torch.no_grad()
def sample(policy, prompts, max_len, pad, eos, rows=256, seed=0):
    gen = torch.Generator().manual_seed(seed)
    new_tokens = 0
    start = time.perf_counter()
    for c in range(0, len(prompts), rows):
        batch = prompts[c : c + rows]
        longest = max(len(p) for p in batch)
        b = len(batch)
        pads = torch.tensor([longest - len(p) for p in batch])
        ids = torch.full((b, longest), pad, dtype=torch.long)
        for i, p in enumerate(batch):
            ids[i, longest - len(p) :] = torch.tensor(p)
        lengths = torch.tensor([len(p) for p in batch])
        cols = torch.arange(longest)
        positions = (cols[None, :] - pads[:, None]).clamp(min=0)
        mask = (cols[None, None, :] >= pads[:, None, None]) & (cols[None, None, :] <= cols[None, :, None])
        # a padding query sees itself, so no row of the softmax is empty (its output is unused)
        mask = mask | torch.eye(longest, dtype=torch.bool)[None]
        logits, cache = policy(ids, positions, mask[:, None])
        last = logits[:, -1]
        active = torch.arange(b)
        total = longest
        while True:
            probs = torch.softmax(last, dim=-1)
            tok = torch.multinomial(probs, 1, generator=gen)[:, 0]
            new_tokens += int(tok.numel())
            lengths = lengths + 1
            keep = (tok != eos) & (lengths < max_len)
            if not bool(keep.any()):
                break
            if not bool(keep.all()):
                idx = keep.nonzero()[:, 0]
                tok, lengths, pads = tok[idx], lengths[idx], pads[idx]
                cache = [(k[idx], v[idx]) for k, v in cache]
                active = active[idx]
            total += 1
            positions = (lengths - 1)[:, None]
            mask = (torch.arange(total)[None, :] >= pads[:, None])[:, None, None, :]
            logits, cache = policy(tok[:, None], positions, mask, cache)
            last = logits[:, -1]
    return new_tokens / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--part", choices=["train", "sample"], required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with open(os.path.join(args.data, "meta.json")) as f:
        meta = json.load(f)
    pad, eos = meta["pad"], meta["eos"]
    if args.part == "train":
        weights, m = read_safetensors(os.path.join(args.data, "init.safetensors"))
        policy = Policy(weights, json.loads(m["spec"]))
        rows = read_rows(args.data, "train")
        per = meta["batch"]
        by_step = [rows[i : i + per] for i in range(0, len(rows), per)]
        rate = train(policy, by_step, meta["lr"], meta["warmup_steps"], pad)
    else:
        weights, m = read_safetensors(os.path.join(args.data, "policy.safetensors"))
        spec = json.loads(m["spec"])
        policy = Policy(weights, spec)
        rate = sample(policy, read_rows(args.data, "prompts"), spec["max_len"], pad, eos)
    print(json.dumps({"part": args.part, "tokens_per_second": rate, "torch": torch.__version__, "threads": args.threads}))


if __name__ == "__main__":
    main()
