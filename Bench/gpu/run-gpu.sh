#!/usr/bin/env bash
# DiffusionCore on a CUDA GPU: the backend-parity suite (every IlgpuBackend primitive against CpuBackend, the
# tolerance table of Tests/Ilgpu/BackendParityTests.cs), then shared/BENCHMARKS.md's K workloads on the GPU next to
# the same workloads in PyTorch (Bench/gpu/peer.py), with the ratio peer / ours (above 1: we are faster).
#
# The GPU machine has the CUDA driver and PyTorch but no .NET SDK, so this runs in two halves:
#   Bench/gpu/run-gpu.sh pack            here (with the SDK): publishes Bench/gpu self-contained for linux-x64
#                                        into .gpu/GpuBench.tar.xz (ignored by git; about 30 MiB)
#   Bench/gpu/run-gpu.sh run [K1 K3 ...] there, from the repository root with .gpu/ carried: unpacks the build,
#                                        runs the parity suite, peer.py, our workloads and the compile-time report
# With this workplace's device tool: `Bench/gpu/run-gpu.sh pack`, then run(command="Bench/gpu/run-gpu.sh run",
# carry=[".gpu"]). Results are printed and written to $OUT when it is set (the tool brings them back), else to
# .gpu/results/. The exit status is the parity suite's (0: every test passed).
set -euo pipefail
cd "$(dirname "$0")/../.."

case "${1:-}" in
  pack)
    stage=$(mktemp -d)
    dotnet publish Bench/gpu/GpuBench.csproj -c Release -r linux-x64 --self-contained -o "$stage/GpuBench" -p:DebugType=None --nologo -v quiet
    mkdir -p .gpu
    tar -C "$stage" -cJf .gpu/GpuBench.tar.xz GpuBench
    rm -rf "$stage"
    echo "packed .gpu/GpuBench.tar.xz ($(du -m .gpu/GpuBench.tar.xz | cut -f1) MiB)"
    ;;
  run)
    shift
    [ -f .gpu/GpuBench.tar.xz ] || { echo "no .gpu/GpuBench.tar.xz: run '$0 pack' on a machine with the .NET SDK first" >&2; exit 2; }
    rm -rf .gpu/app && mkdir -p .gpu/app && tar -C .gpu/app -xJf .gpu/GpuBench.tar.xz
    app=.gpu/app/GpuBench/DiffusionCore.GpuBench
    out=${OUT:-.gpu/results}
    mkdir -p "$out"
    { date -u +%Y-%m-%d; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } | tee "$out/gpu.txt"
    set +e
    "$app" parity 2>&1 | tee "$out/parity.txt"
    parity=${PIPESTATUS[0]}
    set -e
    # Peer first, then ours: each process has the GPU to itself; both use the same warm-up and batch timing.
    python3 Bench/gpu/peer.py "$@" --out "$out/peer.json" 2>&1 | tee "$out/peer.txt"
    "$app" bench "$@" --peer "$out/peer.json" --json "$out/ours.json" 2>&1 | tee "$out/bench.txt"
    "$app" compile 2>&1 | tee "$out/compile.txt"
    exit "$parity"
    ;;
  *)
    echo "usage: $0 pack | run [workload ...]" >&2
    exit 2
    ;;
esac
