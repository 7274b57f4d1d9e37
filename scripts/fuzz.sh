#!/usr/bin/env bash
# Fuzzes every decoder of outside bytes (the targets of fuzz/, see fuzz/README.md) for SECONDS
# each (default 60), seeded from the committed corpora fuzz/seeds/<target>/. New inputs go to a
# temporary corpus, so the seeds are never changed. Exits non-zero when a target crashed (a
# panic, an allocation over the limit, a leak or a timeout) and prints the input that did it.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 600  (10 minutes a target)
#
# Needs a nightly toolchain (cargo-fuzz builds with sanitizers); installs cargo-fuzz if missing.
set -euo pipefail
seconds=${1:-60}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cargo +nightly fuzz build

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# The longest input each target is given: a frame or a checkpoint needs room, a flag line not.
max_len() {
  case "$1" in
    outcome | invocation | checkpoint | warm) echo 16384 ;;
    codec | logs | redis_entries) echo 8192 ;;
    *) echo 2048 ;;
  esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
logs="$root/fuzz/target/fuzz-logs"
mkdir -p "$logs"
failed=()
for target in "${targets[@]}"; do
  mkdir -p "$work/$target" "seeds/$target"
  echo "== $target: ${seconds}s, seeds fuzz/seeds/$target ($(ls "seeds/$target" | wc -l) files)"
  # -malloc_limit_mb: one allocation of more than 256 MiB is a finding (every decoder bounds
  # its allocations by its Limits, and these inputs are at most 16 KiB);
  # -rss_limit_mb: so is a process that grows past 2 GiB.
  if cargo +nightly fuzz run "$target" "$work/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1 \
    >"$logs/$target.log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$logs/$target.log" | tail -n 1 || true
  else
    echo "!! $target FAILED (log: $logs/$target.log)"
    grep -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|==ERROR' "$logs/$target.log" | head -n 3 || true
    grep -E 'Test unit written to|artifact_prefix' "$logs/$target.log" | sed 's/^/   /' || true
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs under fuzz/artifacts/<target>/; reproduce with"
  echo "  cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/<file>)"
  exit 1
fi
echo "all ${#targets[@]} target(s) ran ${seconds}s without a finding"
