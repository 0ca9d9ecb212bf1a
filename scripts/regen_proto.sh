#!/bin/sh
# Regenerates byrondbm/server/byrondbm_pb2.py, byrondbm_pb2.pyi and byrondbm_pb2_grpc.py from
# byrondbm/server/byrondbm.proto. Run from anywhere:
#
#     pip install grpcio-tools==1.75.1 && scripts/regen_proto.sh      (or PYTHON=/path/to/python scripts/...)
#
# The include root is the repository, so the proto is known as byrondbm/server/byrondbm.proto and the
# generated gRPC module imports `from byrondbm.server import byrondbm_pb2` (a package import, not a
# top-level one).
#
# Generated code refuses to load under a runtime older than the generator: grpcio-tools 1.75.1 (protoc 31.1)
# makes it need protobuf >= 6.31.1 and grpcio >= 1.75.1, the floors of the `server` extra in pyproject.toml.
# Another grpcio-tools moves those floors, so this script insists on that version unless ANY_GRPC_TOOLS=1.
set -eu
want=1.75.1
python=${PYTHON:-python}
root=$(cd "$(dirname "$0")/.." && pwd)
have=$("$python" -c 'import grpc_tools.grpc_version as v; print(v.VERSION)')
if [ "$have" != "$want" ] && [ "${ANY_GRPC_TOOLS:-0}" != 1 ]; then
    echo "regen_proto.sh: grpcio-tools $have found, $want wanted (see the comment at the top)" >&2
    exit 2
fi
cd "$root"
"$python" -m grpc_tools.protoc -I . \
    --python_out=. --pyi_out=. --grpc_python_out=. \
    byrondbm/server/byrondbm.proto
