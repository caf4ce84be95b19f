#!/usr/bin/env bash
# Run curation on Dataflow with GPU workers, straight from the CLI (no template needed).
# Usage: PROJECT=... REGION=... BUCKET=... IMAGE=... deploy/dataflow/run.sh [extra learnsieve flags]
set -euo pipefail
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}" "${IMAGE:?set IMAGE (worker image)}"
GPU=${GPU:-nvidia-l4}
MACHINE=${MACHINE:-g2-standard-8}
exec learnsieve curate \
  --input "${INPUT:-gs://${BUCKET}/pool/*.tar}" \
  --output "${OUTPUT:-gs://${BUCKET}/curated}" \
  --reference "${REFERENCE:-gs://${BUCKET}/ckpt/reference}" \
  --proxy "${PROXY:-gs://${BUCKET}/ckpt/proxy-latest}" \
  --set score.batch_size=512 --set score.device=auto \
  --runner DataflowRunner --project "$PROJECT" --region "$REGION" \
  --temp_location "gs://${BUCKET}/tmp" \
  --sdk_container_image "$IMAGE" --experiments=use_runner_v2 \
  --machine_type "$MACHINE" \
  --dataflow_service_options "worker_accelerator=type:${GPU};count:1;install-nvidia-driver" \
  "$@"
