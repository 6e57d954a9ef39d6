"""A minimal OTLP/gRPC logs receiver for vigil's export tests.

Usage: otlp_receiver.py OUT_JSONL [--stall-first SECONDS] [--port PORT] [--reject N]
                        [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]

Listens on 127.0.0.1 (a free port, or --port), prints "listening PORT" on stdout, and appends
one JSON line per received log record to OUT_JSONL: the body, the record's and the
resource's attributes, severity and times. With --stall-first, the first Export call sleeps
that long before it answers (a stalled collector); if the client has given up on the call by
then, its records are not written (the client did not get an answer, so it did not deliver
them). With --reject N, every Export call rejects its last N records (fewer if the call has
fewer): they are not written, the answer's partial_success.rejected_log_records says how
many, and the number is appended as a line to OUT_JSONL.rejected. With --tls-cert/--tls-key
it serves TLS; with --tls-client-ca as well, it requires a client certificate from that CA.
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
    def __init__(self, out, stall, reject, rejected_out):
        self.out = out
        self.stall = stall
        self.reject = reject
        self.rejected_out = rejected_out
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
        rejected = min(self.reject, len(lines))
        with self.lock:
            self.out.write("".join(line + "\n" for line in lines[:len(lines) - rejected]))
            self.out.flush()
            if rejected:
                self.rejected_out.write(f"{rejected}\n")
                self.rejected_out.flush()
        if rejected:
            return logs_service_pb2.ExportLogsServiceResponse(
                partial_success=logs_service_pb2.ExportLogsPartialSuccess(
                    rejected_log_records=rejected,
                    error_message=f"test receiver rejects {self.reject} per call",
                ))
        return logs_service_pb2.ExportLogsServiceResponse()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--stall-first", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--reject", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-client-ca")
    args = ap.parse_args()
    out = open(args.out, "a", encoding="utf-8")
    rejected_out = open(args.out + ".rejected", "a", encoding="utf-8")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    logs = Logs(out, args.stall_first, args.reject, rejected_out)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(logs, server)
    address = f"127.0.0.1:{args.port}"
    if args.tls_cert:
        def read(path):
            with open(path, "rb") as f:
                return f.read()
        client_ca = read(args.tls_client_ca) if args.tls_client_ca else None
        creds = grpc.ssl_server_credentials(
            [(read(args.tls_key), read(args.tls_cert))],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        print(f"cannot bind {address}", flush=True)
        return 1
    server.start()
    print(f"listening {port}", flush=True)
    # Runs until the test kills it.
    server.wait_for_termination()


if __name__ == "__main__":
    sys.exit(main())
