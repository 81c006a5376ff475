#!/usr/bin/env bash
# Scores `prescale detect` on the Numenta Anomaly Benchmark with the shared scorer.
# usage: bench/nab.sh PYTHON [PRESCALE]
#   PYTHON: a python with numpy and pandas (e.g. the venv from ../shared/bench/setup-peers.sh)
#   PRESCALE: the binary (default target/release/prescale)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:?usage: bench/nab.sh PYTHON [PRESCALE]}
bin=${2:-target/release/prescale}
nab=../shared/data/nab
if [ ! -d "$nab/data" ]; then
  echo "no $nab/data: the NAB corpus comes with ../shared" >&2
  exit 2
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$(date +%s%N)
"$bin" detect --input "$nab/data" --output "$out"
end=$(date +%s%N)
echo "detect: $(( (end - start) / 1000000 )) ms for the corpus"
"$py" ../shared/bench/nab_score.py --data "$nab/data" \
  --labels "$nab/labels/combined_windows.json" --results "$out"
