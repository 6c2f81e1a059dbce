#!/usr/bin/env python3
"""PyTorch's side of Bench/gpu/run-gpu.sh: the K workloads of shared/BENCHMARKS.md on a CUDA GPU.

Same shapes, same operation counts and the same timing method as DiffusionCore.GpuBench (Bench/gpu/Program.cs):
float32 with TF32 off (the issue's target is "PyTorch FP32 (non-TF32)"), one call to warm up and compile, three
more, then 7 batches each lasting about 50 ms, each ended by torch.cuda.synchronize(); the median batch's time per
call is reported. cuDNN may pick its fastest algorithms (benchmark mode), as a tuned user would let it.

Usage: python3 Bench/gpu/peer.py [K1 K3 ...] [--out peer.json]
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

B = 32
BATCHES = 7
BATCH_TARGET_MS = 50.0


def timed(fn):
    """Median milliseconds per call of fn over BATCHES batches (after warm-up), GPU work included."""
    fn()
    torch.cuda.synchronize()
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    one = (time.perf_counter() - start) * 1e3
    per_batch = max(1, min(1000, math.ceil(BATCH_TARGET_MS / max(one, 1e-3))))
    samples = []
    for _ in range(BATCHES):
        start = time.perf_counter()
        for _ in range(per_batch):
            fn()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1e3 / per_batch)
    return statistics.median(samples)


def uniform(*shape, grad=False):
    t = torch.rand(*shape, device="cuda") * 2 - 1
    return t.requires_grad_(grad)


def gemm(m, n, k):
    a, b = uniform(m, k), uniform(k, n)
    c = torch.empty(m, n, device="cuda")
    return lambda: torch.matmul(a, b, out=c)


def conv(cin, cout, size, stride, backward):
    x, w, bias = uniform(B, cin, size, size, grad=backward), uniform(cout, cin, 3, 3, grad=backward), uniform(cout, grad=backward)
    out = (size + 2 - 3) // stride + 1
    dy = uniform(B, cout, out, out)

    def run():
        if not backward:
            with torch.no_grad():
                F.conv2d(x, w, bias, stride=stride, padding=1)
            return
        y = F.conv2d(x, w, bias, stride=stride, padding=1)
        torch.autograd.grad(y, [x, w, bias], dy)
    return run


def attention_core(backward):
    q, k, v = (uniform(B, 256, 128, grad=backward) for _ in range(3))
    do = uniform(B, 256, 128)

    def run():
        if not backward:
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v)
            return
        o = F.scaled_dot_product_attention(q, k, v)
        torch.autograd.grad(o, [q, k, v], do)
    return run


def self_attention(backward):
    channels, size = 128, 16
    tokens = size * size
    x = torch.randn(B, channels, size, size, device="cuda").requires_grad_(backward)
    params = []
    for _ in range(4):
        params.append((torch.randn(channels, channels, device="cuda") / math.sqrt(channels)).requires_grad_(backward))
        params.append((torch.randn(channels, device="cuda") * 0.1).requires_grad_(backward))
    dy = torch.randn(B, channels, size, size, device="cuda")

    def forward():
        h = x.reshape(B, channels, tokens).transpose(1, 2)
        q, k, v = (F.linear(h, params[2 * i], params[2 * i + 1]) for i in range(3))
        a = F.scaled_dot_product_attention(q, k, v)
        return F.linear(a, params[6], params[7]).transpose(1, 2).reshape(B, channels, size, size)

    def run():
        if not backward:
            with torch.no_grad():
                forward()
            return
        torch.autograd.grad(forward(), [x, *params], dy)
    return run


def group_norm_silu(backward):
    channels, size, groups = 128, 16, 32
    x = (uniform(B, channels, size, size) * 2 + 0.5).requires_grad_(backward)
    gamma = (1 + 0.5 * uniform(channels)).requires_grad_(backward)
    beta = (0.5 * uniform(channels)).requires_grad_(backward)
    dy = uniform(B, channels, size, size)

    def run():
        if not backward:
            with torch.no_grad():
                F.silu(F.group_norm(x, groups, gamma, beta, 1e-5))
            return
        y = F.silu(F.group_norm(x, groups, gamma, beta, 1e-5))
        torch.autograd.grad(y, [x, gamma, beta], dy)
    return run


# id -> (operation count, factory); ids, shapes and counts as in Bench/gpu/Workloads.cs.
K3, K4 = 2.0 * B * 64 * 32 * 32 * 64 * 9, 2.0 * B * 128 * 8 * 8 * 128 * 9
CORE, PROJECTIONS = 4.0 * B * 256 * 256 * 128, 4 * 2.0 * B * 256 * 128 * 128
WORKLOADS = {
    "K1": (2.0 * 1024 ** 3, lambda: gemm(1024, 1024, 1024)),
    "K2": (2.0 * 4096 * 256 * 1024, lambda: gemm(4096, 256, 1024)),
    "K3-fwd": (K3, lambda: conv(64, 64, 32, 1, False)),
    "K3-fwdbwd": (3 * K3, lambda: conv(64, 64, 32, 1, True)),
    "K4-fwd": (K4, lambda: conv(128, 128, 16, 2, False)),
    "K4-fwdbwd": (3 * K4, lambda: conv(128, 128, 16, 2, True)),
    "K5-fwd": (CORE + PROJECTIONS, lambda: self_attention(False)),
    "K5-fwdbwd": (3 * (CORE + PROJECTIONS), lambda: self_attention(True)),
    "K5core-fwd": (CORE, lambda: attention_core(False)),
    "K5core-fwdbwd": (3 * CORE, lambda: attention_core(True)),
    "K6-fwd": (0, lambda: group_norm_silu(False)),
    "K6-fwdbwd": (0, lambda: group_norm_silu(True)),
}


def select(names):
    if not names:
        return list(WORKLOADS)
    chosen = []
    for name in names:
        hits = [w for w in WORKLOADS if w.lower() == name.lower() or w.lower().startswith(name.lower() + "-")]
        if not hits:
            raise SystemExit(f"no workload '{name}'; known: {' '.join(WORKLOADS)}")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*")
    parser.add_argument("--out", help="write the results as JSON here (read by DiffusionCore.GpuBench bench --peer)")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    device = torch.cuda.get_device_name()
    print(f"PyTorch {torch.__version__} on {device}, float32, TF32 off")
    print(f"{'workload':<15} {'ms':>9} {'GFLOP/s':>9}")
    results = {}
    for name in select(args.workloads):
        flops, factory = WORKLOADS[name]
        ms = timed(factory())
        results[name] = {"ms": ms}
        rate = f"{flops / (ms * 1e6):.0f}" if flops else "-"
        print(f"{name:<15} {ms:9.3f} {rate:>9}")
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": device, "torch": torch.__version__, "tf32": False, "workloads": results}, f, indent=2)


if __name__ == "__main__":
    main()
