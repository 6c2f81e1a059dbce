#!/usr/bin/env bash
# DiffusionCore vs libtorch (TorchSharp-cpu) on this machine's CPU: the BenchmarkDotNet suites of
# shared/BENCHMARKS.md's K1-K7 and end-to-end E1, E2, E3, E5, each workload timed for ours and for
# libtorch in the same run.
#
# Usage: Bench/run-peer.sh [--check] [K1 E2 ...] [BenchmarkDotNet options ...]
#   (no workload)  every workload: K1 K2 K3 K4 K5 (whole block and attention core) K6 K7 E1 E2 E3 E5
#   K3 E2 ...      only those (BenchmarkDotNet filter '*.K3*'; K5 selects both K5 classes)
#   --check        one untimed call per benchmark in one process (the shell's environment): every
#                  workload's validation against libtorch and the summary table (K1-K6 in about a
#                  minute; the end-to-end workloads take one or a few seconds per call on a quiet machine);
#                  the times it prints mean nothing
#   other options  passed to BenchmarkDotNet, e.g. --iterationCount 15
#
# Runs the suite twice, each in a fresh process, because both settings below are read by glibc and
# libgomp at process start (setting them from inside the process would be too late):
#   tuned      GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
#                (no mmap'd blocks and no trimming: freed tensor memory stays in the heap instead of going
#                 back to the kernel each call, which otherwise costs libtorch page faults on every call)
#              OMP_WAIT_POLICY=ACTIVE GOMP_SPINCOUNT=100000
#                (libgomp workers spin instead of sleeping between parallel regions; bounded to 100000
#                 spins, about 2 ms here, because with ACTIVE alone they spin without end after the last
#                 libtorch call and take a core from DiffusionCore's benchmarks that follow in the process)
#   as-shipped none of them set.
# BENCHMARKS.md asks for both: the tuned peer is the fair comparison, the as-shipped one is what a user gets.
# Each run writes its table to BenchmarkDotNet.Artifacts/<run>/results/peer-summary.md (and prints it);
# both tables are printed again at the end. Exit status 1 if a workload failed validation or a benchmark
# failed in either run.
set -uo pipefail
cd "$(dirname "$0")/.."

check=0
bdn=()
filters=()
for arg in "$@"; do
    case "$arg" in
        --check) check=1 ;;
        [KE][0-9]*) filters+=("*.${arg}*") ;;
        *) bdn+=("$arg") ;;
    esac
done
[ ${#filters[@]} -eq 0 ] && filters=("*")

dotnet build Bench/Bench.csproj -c Release --nologo -v quiet || exit 1

artifacts="$PWD/BenchmarkDotNet.Artifacts"
run() { # run NAME [env arguments...]: one BenchmarkDotNet process, its environment changed by env(1)
    local name="$1"; shift
    rm -f "$artifacts/$name/results/peer-summary.md" # so that a run that fails to write it shows no stale table
    env "$@" dotnet run -c Release --no-build --project Bench -- \
        --filter "${filters[@]}" --artifacts "$artifacts/$name" "${bdn[@]}"
}

if [ "$check" -eq 1 ]; then
    bdn+=(--strategy ColdStart --warmupCount 0 --iterationCount 1)
    run check
    exit $?
fi

status=0
echo "=== libtorch tuned (GLIBC_TUNABLES, OMP_WAIT_POLICY=ACTIVE, GOMP_SPINCOUNT=100000) ==="
run tuned GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 \
    OMP_WAIT_POLICY=ACTIVE GOMP_SPINCOUNT=100000 || status=1
echo
echo "=== libtorch as shipped (no environment settings) ==="
run as-shipped -u GLIBC_TUNABLES -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT || status=1
echo
for name in tuned as-shipped; do
    echo "=== $name: $artifacts/$name/results/peer-summary.md ==="
    cat "$artifacts/$name/results/peer-summary.md" 2>/dev/null || echo "(not written)"
    echo
done
exit $status
