#!/usr/bin/env bash
# Every benchmark on a GPU in one call, into one results file (about 8 minutes on an H200).
#
#   benchmarks/gpu.sh [--tiny] [--wheels DIR] [--only NAME,...] [RESULTS]
#
# RESULTS: default $OUT/results.txt when $OUT is set (the device machine's output folder), else
#          benchmarks/out/results.txt. Each benchmark's stderr goes next to it as <name>.stderr.log.
# --wheels DIR (default .whl, carried to the machine): when lm_eval/datasets/pydantic are not importable,
#          python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl
#          export PYTHONPATH=/tmp/site:$PWD
#          (the wheels come from /work/shared/gpu/wheels.sh DIR core).
# --tiny   CPU, tiny sizes: proves the script end to end where no GPU is available.
# --only   run only these of scoring, generation, memory, accuracy, vllm (default: all five, in that order).
#          vllm needs an interpreter with vLLM (e.g. PYTHON=.venv-vllm/bin/python); without it, it prints
#          "skipped: vLLM not installed (...)" and exits 0.
# Timeouts per benchmark (seconds) can be overridden: T_SCORING, T_GENERATION, T_MEMORY, T_ACCURACY, T_VLLM.
# PYTHON (default python3) is the interpreter. A benchmark that fails or times out does not stop the others;
# the script exits 1 if any did.
set -uo pipefail
cd "$(dirname "$0")/.."

tiny=0
wheels=.whl
only=scoring,generation,memory,accuracy,vllm
results=""
while [ $# -gt 0 ]; do
  case $1 in
    --tiny) tiny=1 ;;
    --wheels) wheels=$2; shift ;;
    --only) only=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) results=$1 ;;
  esac
  shift
done
if [ -z "$results" ]; then
  if [ -n "${OUT:-}" ]; then results=$OUT/results.txt; else results=benchmarks/out/results.txt; fi
fi
mkdir -p "$(dirname "$results")"
logs=$(cd "$(dirname "$results")" && pwd)
: > "$results"
PY=${PYTHON:-python3}
t_start=$(date +%s)

say() { echo "$*" | tee -a "$results"; }
load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a; }

# ------------------------------------------------------------------ missing packages from carried wheels
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ! "$PY" -c "import lm_eval, datasets, pydantic" 2>/dev/null; then
  if compgen -G "$wheels/*.whl" > /dev/null; then
    say "installing $(ls "$wheels"/*.whl | wc -l) wheels from $wheels into /tmp/site"
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/site "$wheels"/*.whl 2>&1 | tail -5 | tee -a "$results"
    export PYTHONPATH=/tmp/site:$PWD
  else
    say "WARNING: lm_eval/datasets/pydantic missing and no wheels in $wheels (make them with /work/shared/gpu/wheels.sh)"
  fi
fi

# ------------------------------------------------------------------ sizes
if [ "$tiny" = 1 ]; then
  mode="tiny (CPU end-to-end proof, not a measurement)"
  scoring=(--size cpu --device cpu --n-texts 8 --tokens-per-text 32 --adapters 2 --repeats 1)
  generation=(--size cpu --device cpu --prompts 4 --prompt-tokens 16 --new-tokens 8 --check 4 --repeats 1 --adapter)
  memory=(--size cpu --device cpu --texts 4 --tokens-per-text 32)
  accuracy=(--size cpu --device cpu --adapters 1 --limit 4 --repeats 1)
  vllm=(--size cpu --device cpu --adapters 2 --prompts 8 --prompt-tokens 16 --new-tokens 8 --n-texts 8
        --tokens-per-text 32 --check 4 --repeats 1 --demo-limit 2)
  : "${T_SCORING:=300}" "${T_GENERATION:=300}" "${T_MEMORY:=300}" "${T_ACCURACY:=400}" "${T_VLLM:=1200}"
else
  mode="gpu (PERF.md 1.1B Llama)"
  scoring=(--size gpu --device cuda --repeats 2)
  generation=(--size gpu --device cuda --repeats 2 --adapter --check 4)
  memory=(--size gpu --device cuda)
  accuracy=(--size gpu --device cuda --repeats 1)
  vllm=(--size gpu --device cuda --adapters 8 --repeats 2 --check 8 --demo-limit 16)
  # estimates for an H200 host (not yet run there): 460 s of benchmarks + install and start-up, about 8 minutes;
  # vllm (engine start-up and CUDA graph capture twice, HF baselines, the demo suites hf vs vllm) is a guess:
  # run it on its own (--only vllm) so the others fit in one 10-minute device call
  : "${T_SCORING:=100}" "${T_GENERATION:=110}" "${T_MEMORY:=60}" "${T_ACCURACY:=190}" "${T_VLLM:=420}"
fi

say "ppeval benchmarks, mode $mode"
say "date $(date -u +%Y-%m-%dT%H:%M:%SZ); host $(hostname); cpus $(nproc); load average $(load)"
if commit=$(git rev-parse --short HEAD 2>/dev/null); then
  git diff --quiet HEAD 2>/dev/null || commit="$commit + uncommitted changes"
else
  commit="n/a (no git checkout)"
fi
say "commit $commit"
if command -v nvidia-smi > /dev/null; then
  say "gpu $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
fi
"$PY" - <<'EOF' 2>&1 | tee -a "$results"
import importlib
for name in ("torch", "transformers", "peft", "lm_eval", "datasets", "vllm"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as exc:
        print(f"{name} MISSING ({type(exc).__name__}: {exc})")
EOF

# ------------------------------------------------------------------ the benchmarks
failed=()
bench() {
  local name=$1 limit=$2 script=$3
  shift 3
  case ",$only," in *",$name,"*) ;; *) return 0 ;; esac
  say ""
  say "=== $name: $PY benchmarks/$script $* (timeout ${limit} s; start $(date -u +%H:%M:%SZ), load average $(load))"
  local t0
  t0=$(date +%s)
  timeout --kill-after=15 "$limit" "$PY" -u "benchmarks/$script" "$@" 2> "$logs/$name.stderr.log" | tee -a "$results"
  local rc=${PIPESTATUS[0]}
  say "=== $name: exit $rc after $(( $(date +%s) - t0 )) s; load average $(load)"
  if [ "$rc" != 0 ]; then
    failed+=("$name")
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && say "=== $name: TIMED OUT after $limit s"
    say "--- last lines of $name.stderr.log:"
    tail -n 15 "$logs/$name.stderr.log" | tee -a "$results"
  fi
}

bench scoring "$T_SCORING" scoring.py "${scoring[@]}"
bench generation "$T_GENERATION" generation.py "${generation[@]}"
bench memory "$T_MEMORY" memory.py "${memory[@]}"
bench accuracy "$T_ACCURACY" accuracy_vs_lm_eval.py "${accuracy[@]}"
bench vllm "$T_VLLM" vllm_backend.py "${vllm[@]}"

# ------------------------------------------------------------------ summary
say ""
say "=== summary ($(( $(date +%s) - t_start )) s in all; load average $(load))"
summary=$(grep -E "ratio|^check|^growth from|^  = |^skipped|TIMED OUT" "$results" | grep -v -E "^(===|measurement)")
say "$summary"
if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "all benchmarks finished"
