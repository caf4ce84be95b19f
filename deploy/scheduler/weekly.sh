#!/usr/bin/env bash
# A Cloud Scheduler job that re-runs curation every Monday 03:00 with the latest proxy
# checkpoint and --incremental (only new shards are scored unless the proxy changed).
# Usage: PROJECT=... REGION=... BUCKET=... TEMPLATE=gs://.../learnsieve-TAG.json SA=sa@PROJECT.iam.gserviceaccount.com deploy/scheduler/weekly.sh
set -euo pipefail
: "${PROJECT:?}" "${REGION:?}" "${BUCKET:?}" "${TEMPLATE:?}" "${SA:?service account email}"
BODY=$(cat <<JSON
{
  "launchParameter": {
    "jobName": "learnsieve-weekly",
    "containerSpecGcsPath": "${TEMPLATE}",
    "parameters": {
      "input": "gs://${BUCKET}/pool/*.tar",
      "output": "gs://${BUCKET}/curated",
      "reference": "gs://${BUCKET}/ckpt/reference",
      "proxy": "gs://${BUCKET}/ckpt/proxy-latest",
      "incremental": "true"
    },
    "environment": {"tempLocation": "gs://${BUCKET}/tmp"}
  }
}
JSON
)
gcloud scheduler jobs create http learnsieve-weekly \
  --project "$PROJECT" --location "$REGION" \
  --schedule "0 3 * * 1" --time-zone "Etc/UTC" \
  --uri "https://dataflow.googleapis.com/v1b3/projects/${PROJECT}/locations/${REGION}/flexTemplates:launch" \
  --http-method POST --oauth-service-account-email "$SA" \
  --headers "Content-Type=application/json" --message-body "$BODY"
