"""The HTTP face: OpenAI-compatible routes, probes, the page; one error table; uvicorn beside the gRPC server."""

from service.faces.http.app import HttpServer, create_app, create_server_for
from service.faces.http.routes import Readiness

__all__ = ["HttpServer", "Readiness", "create_app", "create_server_for"]
