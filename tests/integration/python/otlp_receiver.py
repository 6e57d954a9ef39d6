"""A minimal OTLP/gRPC logs receiver for vigil's export tests.

Usage: otlp_receiver.py OUT_JSONL [--stall-first SECONDS]

Listens on 127.0.0.1 (a free port), prints "listening PORT" on stdout, and appends one JSON
line per received log record to OUT_JSONL: the body, the record's and the resource's
attributes, severity and times. With --stall-first, the first Export call sleeps that long
before it answers (a stalled collector); if the client has given up on the call by then, its
records are not written (the client did not get an answer, so it did not deliver them).
"""

import argparse
import json
import sys
import threading
import time
from concurrent import futures

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


class Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, out, stall):
        self.out = out
        self.stall = stall
        self.lock = threading.Lock()
        self.calls = 0

    def Export(self, request, context):
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first and self.stall > 0:
            time.sleep(self.stall)
            if not context.is_active():
                return logs_service_pb2.ExportLogsServiceResponse()
        lines = []
        for rl in request.resource_logs:
            resource = {kv.key: value(kv.value) for kv in rl.resource.attributes}
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    lines.append(json.dumps({
                        "resource": resource,
                        "attributes": {kv.key: value(kv.value) for kv in r.attributes},
                        "body": value(r.body),
                        "severity_number": r.severity_number,
                        "severity_text": r.severity_text,
                        "time_unix_nano": r.time_unix_nano,
                        "observed_time_unix_nano": r.observed_time_unix_nano,
                    }))
        with self.lock:
            self.out.write("".join(line + "\n" for line in lines))
            self.out.flush()
        return logs_service_pb2.ExportLogsServiceResponse()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--stall-first", type=float, default=0.0)
    args = ap.parse_args()
    out = open(args.out, "a", encoding="utf-8")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(out, args.stall_first), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening {port}", flush=True)
    # Runs until the test kills it.
    server.wait_for_termination()


if __name__ == "__main__":
    sys.exit(main())
