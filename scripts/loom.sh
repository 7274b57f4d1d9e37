#!/usr/bin/env bash
# Model-checks the CPU limit's accounting (graflow-core/src/run/cpu.rs, `loom_tests`) with loom:
# at most `limit` bodies at once, every queued body runs once, every runner leaves, in every
# interleaving of up to 3 preemptions (LOOM_MAX_PREEMPTIONS overrides). Builds graflow-core with
# `--cfg graflow_loom` (not `--cfg loom`, which strips Tokio of its process module), in the
# release profile (the debug builds of the other checks stay as they are).
#
#   bash scripts/loom.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="${RUSTFLAGS:-} --cfg graflow_loom"
exec cargo test -p graflow-core --release --lib loom_tests "$@"
