"""Container health check over grpc.health.v1: exit 0 when the server answers SERVING, else 1.

    python healthcheck.py [--target HOST:PORT] [--service NAME] [--timeout SECONDS]

The Dockerfile's HEALTHCHECK runs it (Kubernetes ignores HEALTHCHECK and uses its native gRPC probes).
The target defaults to 127.0.0.1 on TRANSCRIBE_PORT (50051); the service defaults to "" (the whole server).
The server reports NOT_SERVING while it loads models and again from SIGTERM on, so both count as unhealthy.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=f"127.0.0.1:{os.environ.get('TRANSCRIBE_PORT', '50051')}")
    parser.add_argument("--service", default="", help='health service name; "" is the whole server')
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds for connecting and the call")
    args = parser.parse_args(argv)
    with grpc.insecure_channel(args.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout, wait_for_ready=True
            )
        except grpc.RpcError as error:
            print(f"unhealthy: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {status}", file=sys.stderr)
        return 1
    print(status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
