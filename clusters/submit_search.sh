#!/usr/bin/env bash
# Submit a geodistill search to a running Ray cluster as a Ray job, from a checkout of this repo.
# The dashboard/job port is never public: reach it through `ray dashboard clusters/<cloud>.yaml`
# (SSH forwarding to localhost:8265) or `kubectl port-forward svc/<head-svc> 8265:8265`.
#   clusters/submit_search.sh [ADDRESS] [geodistill search arguments...]
set -euo pipefail
ADDRESS="${1:-http://127.0.0.1:8265}"
shift || true
# --working-dir uploads this checkout; `pip: ["-e ."]` installs it on every node that runs the
# job's driver or its trials, so workers without geodistill installed still import it.
exec ray job submit --address "$ADDRESS" --working-dir . \
  --runtime-env-json '{"pip": ["-e ."], "env_vars": {"OMP_NUM_THREADS": "1"}}' \
  -- geodistill search search_space=smoke --experiment smoke-job --num-samples 4 --smoke-test "$@"
