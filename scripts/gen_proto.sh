#!/usr/bin/env bash
# Generates Python messages, gRPC stubs and typed stubs from protos/ into the given folder.
set -euo pipefail
py="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
mkdir -p "$2"
out="$(realpath "$2")"
bin="$(dirname "$py")"
rm -rf "$out/transcribe"
cd "$(dirname "$0")/../protos"
mapfile -t protos < <(find transcribe -name '*.proto' | sed 's|^\./||' | sort)
PATH="$bin:$PATH" "$py" -m grpc_tools.protoc -I . \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  "${protos[@]}"
# Make every generated folder a typed package.
find "$out/transcribe" -type d | while read -r d; do
  printf '"""Generated from protos/ by scripts/gen_proto.sh (make proto). Do not edit."""\n' > "$d/__init__.py"
  touch "$d/py.typed"
done
