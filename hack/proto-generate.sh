#!/usr/bin/env bash
# Generates the Python gRPC code from proto/ into service/userservice/v1/ (the protobuf package path).
# Uses grpc_tools.protoc pinned in pyproject.toml: the same output on every machine, no network needed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-service}
python=${PYTHON:-.venv/bin/python}
rm -f "$out"/userservice/v1/*_pb2*.py "$out"/userservice/v1/*_pb2*.pyi
mkdir -p "$out/userservice/v1"
"$python" -m grpc_tools.protoc -I proto \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  proto/userservice/v1/*.proto
touch "$out/userservice/v1/__init__.py"
