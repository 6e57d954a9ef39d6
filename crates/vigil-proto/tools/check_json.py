#!/usr/bin/env python3
"""Validate Tetragon-style JSON export lines against vigil's protos.

Reads JSON lines on stdin and parses each one with Google's reference
protojson implementation:

    google.protobuf.json_format.Parse(line, tetragon.GetEventsResponse(),
                                      ignore_unknown_fields=False)

The protos under ../proto are compiled with grpcio-tools into a temporary
directory first. Blank lines are skipped. Exits 0 when every line parses;
on the first failure prints "line N: <error>" to stderr and exits 1
(2 on setup errors).

Needs grpcio-tools and protobuf: run tools/setup-venv.sh once. If they are
not importable by the current interpreter, the script re-executes itself
with ${VIGIL_VENV:-/var/cache/vigil/venv}/bin/python.
"""

import importlib
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent / "proto"


def ensure_deps():
    try:
        import grpc_tools.protoc  # noqa: F401
        import google.protobuf.json_format  # noqa: F401
        return
    except ImportError:
        pass
    venv_py = Path(os.environ.get("VIGIL_VENV", "/var/cache/vigil/venv")) / "bin" / "python"
    if venv_py.exists() and os.environ.get("_VIGIL_CHECK_JSON_REEXEC") != "1":
        os.environ["_VIGIL_CHECK_JSON_REEXEC"] = "1"
        os.execv(str(venv_py), [str(venv_py), str(Path(__file__).resolve()), *sys.argv[1:]])
    sys.stderr.write(
        "check_json: grpcio-tools/protobuf not available; run tools/setup-venv.sh\n"
    )
    sys.exit(2)


def compile_protos(out_dir: Path):
    from grpc_tools import protoc

    try:
        from importlib.resources import files

        wkt_include = str(files("grpc_tools") / "_proto")
    except Exception:  # pragma: no cover - very old Pythons
        import pkg_resources

        wkt_include = pkg_resources.resource_filename("grpc_tools", "_proto")

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "tetragon").glob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{wkt_include}",
        f"--python_out={out_dir}",
        *protos,
    ]
    rc = protoc.main(args)
    if rc != 0:
        sys.stderr.write(f"check_json: protoc failed ({rc})\n")
        sys.exit(2)


def main():
    ensure_deps()
    from google.protobuf import json_format

    with tempfile.TemporaryDirectory(prefix="vigil-check-json-") as tmp:
        compile_protos(Path(tmp))
        sys.path.insert(0, tmp)
        events_pb2 = importlib.import_module("tetragon.events_pb2")

        count = 0
        for lineno, raw in enumerate(sys.stdin, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                json_format.Parse(line, events_pb2.GetEventsResponse(), ignore_unknown_fields=False)
            except Exception as e:  # ParseError, DecodeError, ...
                sys.stderr.write(f"line {lineno}: {type(e).__name__}: {e}\n")
                sys.exit(1)
            count += 1
        sys.stderr.write(f"check_json: {count} line(s) OK\n")


if __name__ == "__main__":
    main()
