#!/usr/bin/env bash
# One short check of the causal_lm task on a GPU machine (about 6 minutes, at most 8), for the README's figures.
#
# benchmarks/trainer_throughput.py --gpu builds a 335.6M-parameter Qwen3 from a config (nothing is downloaded)
# and trains it at batch 8 x 2048 in bf16, by the task and by a bare loop with the same settings. It runs here
# three times: the defaults (torch.compile, bf16 autocast, flash-attention where installed, else sdpa), pure
# bf16 weights with fp32 masters, and eager (no compile: the mode measured at 15.4% MFU on an H100 before).
# Installs nothing if the interpreter has torch (CUDA), transformers and peft; else the package's `lm` extra.
#
# Usage:  benchmarks/gpu_check.sh            (PYTHON=/path/to/python picks the interpreter)
# Prints one JSON object on its last line: {"variants": {name: the benchmark's JSON}, "failed": {name: log tail}}.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PYTHON" -c "import torch, transformers, peft, click, yaml, jsonschema, filelock, psutil" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet -e ".[lm]"
fi
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'"

out=$(mktemp -d)
deadline=$((SECONDS + 470))
run() {  # a variant's name, then the benchmark's options
    local name=$1 left=$((deadline - SECONDS))
    shift
    if ((left < 90)); then
        echo "not enough time left for $name ($left s)" > "$out/$name.log"
        return
    fi
    echo "$name: $*" >&2
    timeout "$left" "$PYTHON" benchmarks/trainer_throughput.py --gpu "$@" > "$out/$name.json" 2> "$out/$name.log" || true
}
run default
run bf16_pure --precision bf16_pure
run eager --compile false

"$PYTHON" - "$out" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
variants, failed = {}, {}
for log in sorted(out.glob("*.log")):
    lines = (out / f"{log.stem}.json").read_text().strip().splitlines() if (out / f"{log.stem}.json").exists() else []
    try:
        variants[log.stem] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        failed[log.stem] = log.read_text()[-2000:]
print(json.dumps({"variants": variants, "failed": failed}))
EOF
