#!/usr/bin/env bash
# Copy the operator's single sources into the Helm chart: the CRDs (crds/, installed by Helm before the
# templates) and the RBAC rules (files/, read by templates/rbac.yaml). Helm can only read files inside the
# chart, hence copies; tests/chart/test_chart_sources.py fails when a copy differs from its source.
set -euo pipefail
cd "$(dirname "$0")/.."
src=operator/userservice_operator
chart=charts/userservice-operator
cp "$src/crd.yaml" "$chart/crds/userservices.userservice.io.yaml"
cp "$src/subscription_crd.yaml" "$chart/crds/usereventsubscriptions.userservice.io.yaml"
cp "$src/rbac.yaml" "$chart/files/rbac.yaml"
echo "chart-sync: copied $src/crd.yaml, $src/subscription_crd.yaml and $src/rbac.yaml into $chart"
