#!/usr/bin/env bash
# Generates the code of every language proto/buf.gen.yaml lists from proto/ with buf: the service's Python gRPC
# code (service/userservice/v1/), the Python client's messages (clients/python/src/userservice_client/_generated/),
# the Go module's (clients/go/userservice/v1/) and the TypeScript package's (clients/ts/src/gen/).
# Usage: hack/proto-generate.sh [BASE_DIR]   (BASE_DIR defaults to the repository; tests pass a temp dir)
# Needs `make tools` (buf, protoc-gen-go, protoc-gen-go-grpc) and clients/ts/node_modules (`make ts-deps`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.cache/tools/bin:$root/.venv/bin:$PATH"
for tool in buf protoc-gen-go protoc-gen-go-grpc; do
	command -v "$tool" >/dev/null || { echo "$tool not found: run 'make tools'" >&2; exit 1; }
done
[[ -x clients/ts/node_modules/.bin/protoc-gen-es ]] || { echo "protoc-gen-es not found: run 'make ts-deps'" >&2; exit 1; }
base=${1:-$root}
python_client=$base/clients/python/src/userservice_client/_generated
rm -f "$base"/service/userservice/v1/*_pb2*.py "$base"/service/userservice/v1/*_pb2*.pyi
rm -rf "$python_client" "$base"/clients/go/userservice "$base"/clients/ts/src/gen
buf generate proto --template proto/buf.gen.yaml -o "$base"
# Generated Python folders are packages, so setuptools puts them in the client's wheel.
touch "$base/service/userservice/v1/__init__.py"
for dir in "$python_client" "$python_client"/userservice "$python_client"/userservice/v1; do touch "$dir/__init__.py"; done
