#!/usr/bin/env bash
# DiffusionCore vs libtorch (TorchSharp-cpu) on this machine's CPU, BENCHMARKS.md workloads K1-K6.
#
# Usage: Bench/run-peer.sh [workload ...]     e.g. Bench/run-peer.sh K1 K3 K6   (none: all)
#
# Runs the peer table twice, each in a fresh process, because both settings below are read by glibc and
# libgomp at process start:
#   tuned      GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
#                (no mmap'd blocks and no trimming: freed tensor memory stays in the heap instead of going
#                 back to the kernel each call, which otherwise costs libtorch page faults on every call)
#              OMP_WAIT_POLICY=ACTIVE GOMP_SPINCOUNT=100000
#                (libgomp workers spin instead of sleeping between parallel regions; bounded to 100000
#                 spins, about 2 ms here, because with ACTIVE alone they spin without end after every
#                 libtorch call and take a core from DiffusionCore's calls in the same process; the table
#                 idles 5 ms before each timed call so that neither side starts on a spinning core)
#   as-shipped none set.
# BENCHMARKS.md asks for both: the tuned peer is the fair comparison, the as-shipped one is what a user gets.
set -euo pipefail
cd "$(dirname "$0")/.."

dotnet build Bench/Bench.csproj -c Release --nologo -v quiet

run() { dotnet run -c Release --no-build --project Bench -- peer "$@"; }

echo "=== libtorch tuned (GLIBC_TUNABLES, OMP_WAIT_POLICY=ACTIVE, GOMP_SPINCOUNT=100000) ==="
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 \
    OMP_WAIT_POLICY=ACTIVE GOMP_SPINCOUNT=100000 run "$@"
echo
echo "=== libtorch as shipped (no environment settings) ==="
(unset GLIBC_TUNABLES OMP_WAIT_POLICY GOMP_SPINCOUNT; run "$@")
