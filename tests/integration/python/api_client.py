"""An independent gRPC client (Python grpcio, stubs generated from crates/vigil-proto/proto)
for vigil's API. Usage: api_client.py STUBS_DIR SOCKET_PATH. Prints one result per line."""
import subprocess, sys, threading, time

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
from tetragon import events_pb2, sensors_pb2, sensors_pb2_grpc, tetragon_pb2  # noqa: E402

ch = grpc.insecure_channel("unix://" + sys.argv[2])
stub = sensors_pb2_grpc.FineGuidanceSensorsStub(ch)

h = stub.GetHealth(tetragon_pb2.GetHealthStatusRequest(), timeout=10)
print("health", tetragon_pb2.HealthStatusResult.Name(h.health_status[0].status), h.health_status[0].details)

req = events_pb2.GetEventsRequest(
    allow_list=[events_pb2.Filter(binary_regex=["^/usr/bin/true$"], event_set=[events_pb2.PROCESS_EXEC])],
)
stream = stub.GetEvents(req, timeout=20)
stop = threading.Event()

def run():
    while not stop.is_set():
        subprocess.run(["/usr/bin/true"])
        time.sleep(0.1)

threading.Thread(target=run, daemon=True).start()
ev = next(iter(stream))
stop.set()
print("event", ev.WhichOneof("event"), ev.process_exec.process.binary, ev.process_exec.process.pid.value > 0)
stream.cancel()

try:
    stub.AddTracingPolicy(sensors_pb2.AddTracingPolicyRequest(yaml="kind: [", domain=""), timeout=10)
    print("add-bad accepted")
except grpc.RpcError as e:
    print("add-bad", e.code().name)
