#!/usr/bin/env python3
"""PyTorch eager baseline for the engine's CPU training step: the same Llama (forward as in tests/fixtures/make_llama_fixture.py,
i.e. Hugging Face modeling_llama semantics), the same shapes, the same thread count; AdamW step included.

Usage: python3 bench/pytorch/llama_train_step.py --threads 2 --batch 16 --tokens 64 [--hidden 192 --layers 4 --heads 6 --kv-heads 2 --intermediate 512 --vocab 512]
Prints one JSON line: {"tokens_per_second": ..., "step_ms": ..., ...}.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures"))
from make_llama_fixture import forward, make_weights  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    for name, default in [("threads", 2), ("batch", 16), ("tokens", 64), ("hidden", 192), ("layers", 4), ("heads", 6), ("kv-heads", 2),
                          ("intermediate", 512), ("vocab", 512), ("steps", 20), ("warmup", 3)]:
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = {"vocab_size": args.vocab, "hidden_size": args.hidden, "intermediate_size": args.intermediate, "num_hidden_layers": args.layers,
              "num_attention_heads": args.heads, "num_key_value_heads": args.kv_heads, "rms_norm_eps": 1e-6, "rope_theta": 10000.0}
    generator = torch.Generator().manual_seed(0)
    weights = make_weights(generator, config, scale=0.02)
    for tensor in weights.values():
        tensor.requires_grad_(True)
    optimizer = torch.optim.AdamW(list(weights.values()), lr=1e-3)
    input_ids = torch.randint(0, args.vocab, (args.batch, args.tokens), generator=generator)
    targets = torch.roll(input_ids, -1, dims=1)

    def step():
        logits = forward(weights, input_ids, config)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, args.vocab), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(weights.values()), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    parameters = sum(t.numel() for t in weights.values())
    print(json.dumps({"framework": f"torch {torch.__version__} eager", "threads": args.threads, "parameters": parameters,
                      "batch": args.batch, "tokens": args.tokens, "step_ms": median * 1e3,
                      "tokens_per_second": args.batch * args.tokens / median}))


if __name__ == "__main__":
    main()
