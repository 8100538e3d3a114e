#!/usr/bin/env bash
# Copies the googleapis protos the contract imports (google.longrunning and what it needs) from the installed
# googleapis-common-protos package into protos/google, unmodified, so protoc, buf and the Node client find them
# offline. The package ships operations.proto as operations_proto.proto; it is copied back under its real name.
#
# usage: scripts/vendor_googleapis.sh PYTHON
set -euo pipefail
py="$1"
cd "$(dirname "$0")/.."
site="$("$py" -c 'import google.longrunning.operations_proto_pb2 as m, os; print(os.path.dirname(os.path.dirname(m.__file__)))')"
out=protos/google
rm -rf "$out"
mkdir -p "$out/api" "$out/longrunning" "$out/rpc"
for f in api/annotations api/client api/field_behavior api/http api/launch_stage rpc/status; do
  cp "$site/$f.proto" "$out/$f.proto"
done
cp "$site/longrunning/operations_proto.proto" "$out/longrunning/operations.proto"
version="$("$py" -c 'from importlib.metadata import version; print(version("googleapis-common-protos"))')"
cat > "$out/README.md" <<TXT
# Vendored googleapis protos

Unmodified copies (Apache License 2.0, headers kept) from the \`googleapis-common-protos\` $version package, made by
\`scripts/vendor_googleapis.sh\` (\`make vendor-protos\`). The contract imports \`google/longrunning/operations.proto\`;
the rest is what that file imports. Python code uses the package's own generated modules, so \`make proto\` generates
only \`transcribe/\`. Not linted and not checked for breaking changes (buf.yaml).
TXT
