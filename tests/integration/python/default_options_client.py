"""A stock grpcio client with DEFAULT channel options (no grpc.default_authority: gRPC C-core
then sends the unix socket's path as :authority) against vigil's API.
Usage: default_options_client.py STUBS_DIR TARGET, TARGET being what a user passes to
grpc.insecure_channel ("unix:///path/vigil.sock", "localhost:PORT").
Prints one result per line; exits non-zero with the gRPC status on the first failed call."""
import subprocess, sys, threading, time

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
from tetragon import events_pb2, sensors_pb2, sensors_pb2_grpc, tetragon_pb2  # noqa: E402

channel = grpc.insecure_channel(sys.argv[2])
stub = sensors_pb2_grpc.FineGuidanceSensorsStub(channel)


def call(name, fn):
    try:
        return fn()
    except grpc.RpcError as e:
        print(f"{name} failed: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(1)


version = call("GetVersion", lambda: stub.GetVersion(sensors_pb2.GetVersionRequest(), timeout=10))
print("version", version.version)

policies = call(
    "ListTracingPolicies",
    lambda: stub.ListTracingPolicies(sensors_pb2.ListTracingPoliciesRequest(), timeout=10),
)
print("policies", " ".join(sorted(p.name for p in policies.policies)))

# A marker argument tells our own processes from any other /usr/bin/true on the host.
marker = f"authority-probe-{time.time_ns()}"
started = set()
stop = threading.Event()


def start_processes():
    while not stop.is_set():
        proc = subprocess.Popen(["/usr/bin/true", marker])
        started.add(proc.pid)
        proc.wait()
        time.sleep(0.1)


request = events_pb2.GetEventsRequest(
    allow_list=[events_pb2.Filter(binary_regex=["^/usr/bin/true$"], event_set=[events_pb2.PROCESS_EXEC])],
)
stream = stub.GetEvents(request, timeout=20)
starter = threading.Thread(target=start_processes, daemon=True)
starter.start()


def first_exec_of_ours():
    for event in stream:
        process = event.process_exec.process
        if marker in process.arguments:
            return process
    return None


process = call("GetEvents", first_exec_of_ours)
stop.set()
starter.join()  # the pid of the process whose exec we saw is in `started` by now
stream.cancel()
if process is None:
    print("GetEvents ended without an exec of ours", file=sys.stderr)
    sys.exit(1)
print("exec", process.binary, process.arguments, "started-by-this-client", process.pid.value in started)
