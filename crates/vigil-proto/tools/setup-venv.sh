#!/usr/bin/env bash
# Creates (idempotently) the Python venv used by check_json.py:
# grpcio-tools (bundles protoc + well-known .protos) and protobuf; opentelemetry-proto for
# the OTLP receiver of the export tests (tests/integration/python/otlp_receiver.py).
# Location: ${VIGIL_VENV:-/var/cache/vigil/venv}. Prints the venv path.
set -euo pipefail

VENV="${VIGIL_VENV:-/var/cache/vigil/venv}"
PY="${PYTHON:-python3}"

have_deps() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import grpc_tools.protoc, google.protobuf.json_format, opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc' >/dev/null 2>&1
}

if ! have_deps; then
    if [ ! -x "$VENV/bin/python" ]; then
        mkdir -p "$(dirname "$VENV")"
        if ! "$PY" -m venv "$VENV" 2>/dev/null; then
            # Debian/Ubuntu ship venv/ensurepip separately.
            if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
                ver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
                apt-get install -y -q "python${ver}-venv" >/dev/null 2>&1 ||
                    { apt-get update -q >/dev/null && apt-get install -y -q "python${ver}-venv" >/dev/null; }
            fi
            rm -rf "$VENV"
            "$PY" -m venv "$VENV"
        fi
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check grpcio-tools protobuf opentelemetry-proto
    have_deps || { echo "setup-venv: grpcio-tools/protobuf/opentelemetry-proto not importable in $VENV" >&2; exit 1; }
fi

echo "$VENV"
