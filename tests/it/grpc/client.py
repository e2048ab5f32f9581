"""A gRPC client for the integration tests: calls test.Echo on TARGET (an insecure
channel: h2c) and prints one JSON object with the outcome of each call.

Any proxy comes from the environment, as for any grpcio app (`grpc_proxy`,
`https_proxy`, `http_proxy`: grpcio then sends CONNECT and speaks h2c inside).

usage: client.py TARGET
"""

import json
import sys

import grpc

TIMEOUT = 20


def call(fn):
    try:
        return {"ok": True, "value": fn()}
    except grpc.RpcError as e:
        return {"ok": False, "code": e.code().name, "details": e.details()}


def main(target):
    with grpc.insecure_channel(target) as ch:
        unary = ch.unary_unary("/test.Echo/Unary")
        stream = ch.unary_stream("/test.Echo/Stream")
        deny = ch.unary_unary("/test.Echo/Deny")
        count = ch.unary_unary("/test.Echo/Count")
        out = {
            "unary": call(lambda: json.loads(unary(b"hello", timeout=TIMEOUT))),
            "stream": call(lambda: [json.loads(m) for m in stream(b"3", timeout=TIMEOUT)]),
            "deny": call(lambda: deny(b"", timeout=TIMEOUT).decode()),
            "denied": call(lambda: int(count(b"", timeout=TIMEOUT))),
        }
    print(json.dumps(out), flush=True)


main(sys.argv[1])
