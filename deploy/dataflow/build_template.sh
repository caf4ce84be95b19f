#!/usr/bin/env bash
# Build the worker image from the project's Dockerfile and a Flex Template that uses it.
# Usage: PROJECT=my-project REGION=us-central1 BUCKET=my-bucket REPO=learnsieve deploy/dataflow/build_template.sh
set -euo pipefail
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
REPO=${REPO:-learnsieve}
TAG=${TAG:-$(git rev-parse --short HEAD)}
IMAGE="${REGION}-docker.pkg.dev/${PROJECT}/${REPO}/worker:${TAG}"
cd "$(dirname "$0")/../.."

gcloud builds submit --project "$PROJECT" --tag "$IMAGE" .
gcloud dataflow flex-template build "gs://${BUCKET}/templates/learnsieve-${TAG}.json" \
  --project "$PROJECT" \
  --image "$IMAGE" \
  --sdk-language PYTHON \
  --metadata-file deploy/dataflow/metadata.json \
  --env FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/learnsieve/deploy/dataflow/launcher.py
echo "template: gs://${BUCKET}/templates/learnsieve-${TAG}.json  image: ${IMAGE}"
