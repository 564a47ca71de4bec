#!/usr/bin/env bash
# GPU check of selfmis training (run where a CUDA GPU is available; ~5 min):
#  1. a synthetic PTB-XL (2,000 records, 100 Hz) in a temp folder;
#  2. one process on cuda:0 with bf16 autocast: records/s of every method's main stage, beside the
#     same runs on this machine's CPU (the target: >= 20x the CPU records/s for SelfMIS' stage);
#  3. where 2+ GPUs exist: 2-process NCCL DistributedDataParallel (SelfMIS, 1 epoch), checking that
#     the ranks' parameters agree (rank_param_spread == 0) and recording its records/s.
# Figures go to benchmarks/results/training/gpu/ (scale.json/.md/.png, ddp_nccl.json, nvidia-smi.txt).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${1:-benchmarks/results/training/gpu}
WORK=$(mktemp -d /tmp/selfmis-gpu-check.XXXXXX)
mkdir -p "$OUT"
export SELFMIS_CACHE="$WORK/cache"

$PY - <<'EOF'
import torch, sys
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: no CUDA device visible to torch {torch.__version__}")
print("CUDA devices:", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
EOF
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")

echo "== synthetic PTB-XL (2000 records, 100 Hz)"
$PY -m selfmis.cli data synth --records 2000 --rates 100 --out "$WORK/synth" > "$WORK/synth.json"

echo "== single process: cuda (bf16 autocast) and cpu, every method"
$PY -m selfmis.benchmarks.training_scale --synth "$WORK/synth" \
    --synth-command "selfmis data synth --records 2000 --rates 100 --out DIR" \
    --parts throughput --devices cuda cpu --train-records 1536 --out "$OUT" --work "$WORK/bench"

if [ "$NGPU" -ge 2 ]; then
  echo "== 2-process NCCL DDP (SelfMIS, 1 epoch)"
  T="$WORK/bench/runs/cuda/twelve_lead/model.pt"
  $PY -m torch.distributed.run --standalone --nproc_per_node 2 -m selfmis.train.cli --method selfmis \
      --device cuda --data "$WORK/synth" --max-records 1536 --epochs 1 --teacher "$T" --align-weight 3.0 \
      --progress false --n-boot 10 --out "$WORK/ddp"
  $PY - "$WORK/ddp" "$OUT/ddp_nccl.json" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
r = next(x for x in rows if x["stage"] == "joint")
assert r["world"] == 2 and r["rank_param_spread"] < 1e-5, r
json.dump(r, open(sys.argv[2], "w"), indent=1)
print(f"NCCL DDP x2: {r['records_per_s']:.0f} records/s, rank spread {r['rank_param_spread']:.2g}")
EOF
else
  echo "== only $NGPU GPU: 2-process NCCL DDP skipped" | tee "$OUT/ddp_nccl.skipped"
fi
$PY - "$OUT/scale.json" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))["throughput"]
rate = {(r["device"], r["method"]): r["records_per_s"] for r in rows}
for m in ("twelve_lead", "scratch", "selfmis", "simclr", "generative"):
    print(f"{m:12s} cuda {rate[('cuda', m)]:8.0f} rec/s  cpu {rate[('cpu', m)]:6.0f} rec/s  "
          f"x{rate[('cuda', m)] / rate[('cpu', m)]:.1f}")
EOF
rm -rf "$WORK"
