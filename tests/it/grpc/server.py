"""A gRPC server for the integration tests (grpcio, no generated code).

Service `test.Echo`, messages are raw bytes (identity serializers):
  Unary(text)      -> JSON {"auth": <authorization metadata seen>, "req": text}
  Stream(n)        -> n JSON messages {"auth": ..., "i": i}
  Deny(_)          -> status UNAUTHENTICATED "token rejected"
  Count(_)         -> how many Deny calls arrived so far (to show there was no replay)

Listens on 127.0.0.1, an ephemeral port, printed on the first line of stdout; serves
until killed.
"""

import json
import threading
from concurrent import futures

import grpc

denied = 0
lock = threading.Lock()


def auth(ctx):
    return dict(ctx.invocation_metadata()).get("authorization", "")


def unary(req, ctx):
    return json.dumps({"auth": auth(ctx), "req": req.decode()}).encode()


def stream(req, ctx):
    for i in range(int(req.decode())):
        yield json.dumps({"auth": auth(ctx), "i": i}).encode()


def deny(req, ctx):
    global denied
    with lock:
        denied += 1
    ctx.abort(grpc.StatusCode.UNAUTHENTICATED, "token rejected")


def count(req, ctx):
    with lock:
        return str(denied).encode()


handlers = {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "Stream": grpc.unary_stream_rpc_method_handler(stream),
    "Deny": grpc.unary_unary_rpc_method_handler(deny),
    "Count": grpc.unary_unary_rpc_method_handler(count),
}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
