"""Benchmark vlad-metrics against the reference implementations on the same arrays.

Builds one synthetic class (smooth float32 maps with elliptic anomaly masks, about 10.7 M pixels by
default: 40 images of 518x518), writes it as .npy, times

* sklearn `roc_auc_score` + `average_precision_score` on the flattened pixels (what the research
  repositories run per class),
* anomalib 2.7 `AUPRO` (and, with --legacy, anomalib 2.2's per-region AUPRO; with --clip-ad, VAND's
  `cal_pro_score`, both slow),

then runs the Rust side (`cargo run --release -p vlad-metrics --example bench_pixels`) on the same files
and prints the times and the ratio Rust / reference (smaller is faster), plus the value differences.

Run: /work/pyenv/bin/python tools/bench/metrics_vs_sklearn.py [--images 40 --size 518] [--legacy] [--clip-ad]
Both sides get the whole machine; the Rust side uses every core through rayon, numpy/sklearn one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "fixtures"))
import metrics as fixtures  # noqa: E402  (anomalib loader and the transcribed references)


def make_class(images: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    maps = np.empty((images, size, size), np.float32)
    masks = np.zeros((images, size, size), np.uint8)
    for i in range(images):
        if i % 3:  # two thirds of the images are anomalous, with 1-3 regions
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.integers(0, size, 2)
                ry, rx = rng.integers(size // 40, size // 8, 2)
                masks[i] |= (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
        noise = scipy.ndimage.gaussian_filter(rng.normal(size=(size, size)).astype(np.float32), 4)
        signal = scipy.ndimage.gaussian_filter(masks[i].astype(np.float32), 4)
        maps[i] = noise / noise.std() * 0.5 + 2.0 * signal
    maps = (maps - maps.min()) / (maps.max() - maps.min())  # anomalib's legacy ROC wants [0, 1]
    return maps.astype(np.float32), masks


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--legacy", action="store_true", help="also time anomalib 2.2's AUPRO (slow)")
    parser.add_argument("--clip-ad", action="store_true", help="also time VAND's cal_pro_score (slow)")
    args = parser.parse_args()

    maps, masks = make_class(args.images, args.size, args.seed)
    flat_maps, flat_masks = maps.reshape(-1), masks.reshape(-1)
    print(f"{maps.size / 1e6:.1f} M pixels, {flat_masks.mean() * 100:.1f} % anomalous", flush=True)

    results = {}
    auroc, t_auroc = timed(lambda: roc_auc_score(flat_masks, flat_maps))
    ap, t_ap = timed(lambda: average_precision_score(flat_masks, flat_maps))
    results["sklearn"] = {"auroc": auroc, "ap": ap, "seconds": t_auroc + t_ap}
    print(f"sklearn AUROC+AP: {t_auroc + t_ap:.2f} s", flush=True)

    mods = {"new": fixtures.load_anomalib(fixtures.anomalib_site_dir())}
    if args.legacy:
        mods["legacy"] = fixtures.load_anomalib(fixtures.LEGACY_ANOMALIB / "anomalib")
    preds, target = torch.from_numpy(maps), torch.from_numpy(masks.astype(np.int64))

    def anomalib_aupro(version):
        metric = mods[version]["aupro"]._AUPRO()
        metric.update(preds, target)
        return float(metric.compute())

    value, seconds = timed(lambda: anomalib_aupro("new"))
    results["anomalib"] = {"value": value, "seconds": seconds}
    print(f"anomalib 2.7 AUPRO: {seconds:.2f} s", flush=True)
    conventions = ["anomalib"]
    if args.legacy:
        value, seconds = timed(lambda: anomalib_aupro("legacy"))
        results["anomalib-legacy"] = {"value": value, "seconds": seconds}
        print(f"anomalib 2.2 AUPRO: {seconds:.2f} s", flush=True)
        conventions.append("anomalib-legacy")
    if args.clip_ad:
        value, seconds = timed(lambda: fixtures.vand_cal_pro_score(masks, maps))
        results["clip-ad"] = {"value": value, "seconds": seconds}
        print(f"VAND cal_pro_score: {seconds:.2f} s", flush=True)
        conventions.append("clip-ad")

    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "maps.npy", maps)
        np.save(Path(tmp) / "masks.npy", masks)
        env = dict(os.environ, CARGO_TARGET_DIR=os.environ.get("CARGO_TARGET_DIR", "/work/target"))
        cmd = ["cargo", "run", "--quiet", "--release", "-p", "vlad-metrics", "--example", "bench_pixels", "--",
               str(Path(tmp) / "maps.npy"), str(Path(tmp) / "masks.npy"), ",".join(conventions)]
        rust = json.loads(subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout)

    rust_binary = rust["sort_seconds"] + rust["binary_seconds"]
    sk = results["sklearn"]
    print()
    print(f"pixels: {rust['pixels']}, Rust threads: {rust['threads']}")
    print(f"pixel AUROC+AP   sklearn {sk['seconds']:7.2f} s   Rust {rust_binary:7.3f} s   "
          f"ratio Rust/sklearn {rust_binary / sk['seconds']:.4f}   "
          f"|dAUROC| {abs(rust['pixel_auroc'] - sk['auroc']):.1e}  |dAP| {abs(rust['pixel_ap'] - sk['ap']):.1e}")
    for name in conventions:
        ref, ours = results[name], rust["aupro"][name]
        # The sorted conventions reuse the evaluator's sort: count it, as a one-metric run would pay it.
        seconds = ours["seconds"] + (rust["sort_seconds"] if name != "clip-ad" else 0.0)
        print(f"AUPRO {name:15s} ref {ref['seconds']:7.2f} s   Rust {seconds:7.3f} s   "
              f"ratio {seconds / ref['seconds']:.4f}   |dAUPRO| {abs(ours['value'] - ref['value']):.1e}   "
              f"({ours['regions']} regions)")
    print(json.dumps({"reference": results, "rust": rust}))


if __name__ == "__main__":
    main()
