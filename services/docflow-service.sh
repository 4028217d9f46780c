#!/bin/sh
# What a docflow image runs, by the service it was built for (DOCFLOW_SERVICE, set from
# services/Dockerfile's SERVICE build argument):
#   docflow-service run           the service (the image's CMD: `docker run docflow-indexer`)
#   docflow-service healthcheck   the image's HEALTHCHECK
# The chart gives each container its command as args, never `run`: the two agree, and
# the queue lists agree with docflow.shared.names (tests/deploy checks both).
set -eu
service="${DOCFLOW_SERVICE:?DOCFLOW_SERVICE is unset: build the image with --build-arg SERVICE=...}"

# A stage's document worker: its queues (the query queue first, the bulk lane last:
# docs/architecture.md, Fair sharing), its pool and concurrency (one process; the
# indexer's runs 8 threads, whose documents share LanceDB commits: "Group commits").
worker() {
    exec celery -A "docflow.$service.worker" worker -Q "$1" -n "$service@%h" \
        --pool "${2:-prefork}" --concurrency "${3:-1}" --loglevel INFO --without-gossip --without-mingle
}

case "${1:-run}" in
    run)
        case "$service" in
            gateway) exec python -m docflow.gateway ;;
            extractor)
                # Tesseract spawns threads per page; one per pool process is several times
                # faster on small CPUs (docs/architecture.md). Scale with --concurrency instead.
                OMP_THREAD_LIMIT="${OMP_THREAD_LIMIT:-1}"
                export OMP_THREAD_LIMIT
                worker docflow.extract,docflow.bulk.extract ;;
            embedder) worker docflow.query.embed,docflow.embed,docflow.bulk.embed ;;
            indexer) worker docflow.query.index,docflow.index,docflow.bulk.index threads 8 ;;
        esac ;;
    healthcheck)
        # The gateway's liveness endpoint; a worker's main process serves /metrics.
        case "$service" in
            gateway) url="http://127.0.0.1:${DOCFLOW_GATEWAY_PORT:-8000}/healthz" ;;
            *) url="http://127.0.0.1:${DOCFLOW_METRICS_PORT:-9100}/metrics" ;;
        esac
        exec python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=4)' "$url" ;;
esac
echo "docflow-service: unknown service '$service' or command '${1:-run}' (run, healthcheck)" >&2
exit 2
