"""An application declaring the tracepoint app/request and firing it once per request it serves."""

import pybpf

requests = pybpf.Tracepoint(
    "app", "request", fields=[("id", "u32"), ("status", "u16"), ("path", "char[32]"), ("bytes", "u64")]
)

for i in range(6):
    requests.fire(id=i, status=503 if i == 3 else 200, path=f"/page/{i}", bytes=100 * i)
print("served 6 requests")
