#!/usr/bin/env python3
"""Vision-tower speed and memory: `vlad bench encode-image` against open_clip (PyTorch, CPU) on the
same machine with the same number of threads. Random weights on both sides (speed does not depend
on the values). Each measurement runs in its own process so that peak memory is per case.

    cargo build --release
    python tools/bench/clip_vs_open_clip.py --threads 2 [--vlad target/release/vlad] [--backend flex]

Prints a markdown table with median times (batch 1, 5 runs after a warm-up), the ratio
vlad / open_clip (below 1 means vlad is faster) and peak resident memory.
"""
import argparse
import json
import os
import subprocess
import sys

CASES = [("ViT-B-16", 224), ("ViT-L-14-336", 518)]

TORCH_CASE = r"""
import json, resource, statistics, sys, time
import torch, torch.nn.functional as F, open_clip
name, size, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
model = open_clip.create_model(name, pretrained=None).eval()
v = model.visual
g0 = v.grid_size[0]
g = size // v.patch_size[0]
if g != g0:  # the methods' positional resize (bicubic, antialias) to the new grid
    pe = v.positional_embedding.data
    grid = pe[1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(g, g), mode="bicubic", antialias=True, align_corners=False)
    v.positional_embedding = torch.nn.Parameter(torch.cat([pe[:1], grid.permute(0, 2, 3, 1).reshape(g * g, -1)]))
    v.grid_size = (g, g)
x = torch.randn(1, 3, size, size)
times = []
with torch.no_grad():
    model.encode_image(x)
    for _ in range(runs):
        t = time.perf_counter(); model.encode_image(x); times.append(time.perf_counter() - t)
print(json.dumps({"median_s": statistics.median(times), "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vlad", default="target/release/vlad")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--backend", default="flex")
    args = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    rows = []
    for arch, size in CASES:
        torch_out = json.loads(subprocess.check_output(
            [sys.executable, "-c", TORCH_CASE, arch, str(size), str(args.threads), str(args.runs)], env=env).decode().strip().splitlines()[-1])
        vlad_out = json.loads(subprocess.check_output(
            [args.vlad, "bench", "encode-image", "--arch", arch, "--image-size", str(size), "--runs", str(args.runs),
             "--backend", args.backend, "--json"], env=env).decode().strip().splitlines()[-1])
        rows.append((arch, size, torch_out, vlad_out))
        print(f"{arch} @ {size}: open_clip {torch_out['median_s'] * 1e3:.0f} ms, vlad {vlad_out['median_s'] * 1e3:.0f} ms", file=sys.stderr)
    print(f"| model | input | open_clip (torch {args.threads} threads) | vlad ({args.backend}) | ratio vlad/open_clip | peak RSS open_clip | peak RSS vlad |")
    print("|---|---|---|---|---|---|---|")
    for arch, size, t, v in rows:
        print(f"| {arch} | {size}² | {t['median_s'] * 1e3:.0f} ms | {v['median_s'] * 1e3:.0f} ms | {v['median_s'] / t['median_s']:.2f} | "
              f"{t['peak_rss_bytes'] / 1e6:.0f} MB | {v['peak_rss_bytes'] / 1e6:.0f} MB |")


if __name__ == "__main__":
    main()
