#!/usr/bin/env bash
# A one-shot job: runs once on deploy, again on `prisn run hello-job`.
set -euo pipefail
echo "hello from job ${PRISN_RUN_ID:-?} of ${PRISN_DEPLOYMENT:-?} at $(date -u +%H:%M:%S)"
