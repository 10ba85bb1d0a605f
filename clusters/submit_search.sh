#!/usr/bin/env bash
# Submit a geodistill search to a running Ray cluster as a Ray job, from a checkout of this repo.
# The dashboard/job port is never public: reach it through `ray dashboard clusters/<cloud>.yaml`
# (SSH forwarding to localhost:8265) or `kubectl port-forward svc/<head-svc> 8265:8265`.
#
#   DATA_ROOT=/mnt/shared/data/UniV TEACHER=/mnt/shared/teachers/vit_small \
#   STORAGE=s3://your-bucket/geodistill/tune LEADERBOARD=s3://your-bucket/geodistill/leaderboard \
#   clusters/submit_search.sh [ADDRESS] [more geodistill search arguments...]
#
# DATA_ROOT and TEACHER are paths every node sees (the shared volume the cluster files mount at
# /mnt/shared); STORAGE and LEADERBOARD are URIs or shared paths (a job's directory is temporary).
# Optional: SPACE (distill), EXPERIMENT (distill-cluster), NUM_SAMPLES (64), MAX_CONCURRENT (8).
# Token auth (Ray 2.60): export RAY_AUTH_MODE=token with the cluster's token in ~/.ray/auth_token
# (or RAY_AUTH_TOKEN_PATH / RAY_AUTH_TOKEN); the job's driver and trials use the head's token.
set -euo pipefail
cd "$(dirname "$0")/.."
ADDRESS="${1:-http://127.0.0.1:8265}"
shift || true
: "${DATA_ROOT:?}" "${TEACHER:?}" "${STORAGE:?}" "${LEADERBOARD:?}"
# --working-dir uploads this checkout (the search spaces); py_modules puts src/geodistill on the
# import path of the driver and every trial, shadowing the copy baked into the image.
exec ray job submit --address "$ADDRESS" --working-dir . \
  --runtime-env-json '{"py_modules": ["src/geodistill"], "env_vars": {"OMP_NUM_THREADS": "4"}}' -- \
  python -m geodistill search search_space="${SPACE:-distill}" data=univ data.root="$DATA_ROOT" scaling=gpu1 \
  --experiment "${EXPERIMENT:-distill-cluster}" --num-samples "${NUM_SAMPLES:-64}" --sampler nsga2 \
  --max-concurrent "${MAX_CONCURRENT:-8}" --teacher "$TEACHER" --storage "$STORAGE" --leaderboard "$LEADERBOARD" "$@"
