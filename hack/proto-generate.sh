#!/usr/bin/env bash
# Generates the Python gRPC code from proto/ with buf (proto/buf.gen.yaml) into service/userservice/v1/.
# Usage: hack/proto-generate.sh [BASE_DIR]   (BASE_DIR defaults to the repository; tests pass a temp dir)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.cache/tools/bin:$root/.venv/bin:$PATH"
command -v buf >/dev/null || { echo "buf not found: run 'make tools'" >&2; exit 1; }
base=${1:-$root}
rm -f "$base"/service/userservice/v1/*_pb2*.py "$base"/service/userservice/v1/*_pb2*.pyi
buf generate proto --template proto/buf.gen.yaml -o "$base"
touch "$base/service/userservice/v1/__init__.py"
