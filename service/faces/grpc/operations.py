"""google.longrunning.Operations over the jobs: names, filters and page tokens to domain values and back."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from typing import Any, TypeAlias

import grpc
from google.longrunning import operations_proto_pb2 as lro
from google.protobuf import empty_pb2

from service.errors import InvalidJobQuery, JobNotFound
from service.faces.grpc.convert import OPERATIONS_PREFIX, job_state_from_name, job_to_operation
from service.jobs.model import JobState
from service.jobs.service import JobService
from service.jobs.store import Cursor

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

SERVICE_NAME = "google.longrunning.Operations"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_WAIT_SECONDS = 60.0
"""The longest one WaitOperation call waits; a caller waits longer by calling again."""

_NAME = re.compile(r"^operations/([0-9a-f]{32})$")
_TERM = re.compile(r"^\s*(state|done)\s*(=|!=)\s*([A-Za-z_]+)\s*$")


class OperationsServicer:
    """The google.longrunning.Operations RPCs, for transcription jobs (registered by name; the stubs are untyped)."""

    def __init__(self, jobs: JobService) -> None:
        self._jobs = jobs

    async def GetOperation(self, request: lro.GetOperationRequest, context: Context) -> lro.Operation:  # noqa: N802
        """The job's latest state."""
        return job_to_operation(await self._jobs.get(job_id(request.name)))

    async def ListOperations(  # noqa: N802
        self, request: lro.ListOperationsRequest, context: Context
    ) -> lro.ListOperationsResponse:
        """Jobs newest first, filtered by state, in pages."""
        if request.name not in ("", "operations"):
            raise InvalidJobQuery("list the collection named operations", metadata={"name": request.name[:64]})
        states = parse_filter(request.filter)
        size = page_size(request.page_size)
        jobs = await self._jobs.page(states, parse_page_token(request.page_token), size + 1)
        response = lro.ListOperationsResponse(operations=[job_to_operation(job) for job in jobs[:size]])
        if len(jobs) > size:
            last = jobs[size - 1]
            response.next_page_token = page_token((last.create_time, last.id))
        return response

    async def CancelOperation(  # noqa: N802
        self, request: lro.CancelOperationRequest, context: Context
    ) -> empty_pb2.Empty:
        """Cancel the job (a finished job stays as it is)."""
        await self._jobs.cancel(job_id(request.name))
        return empty_pb2.Empty()

    async def DeleteOperation(  # noqa: N802
        self, request: lro.DeleteOperationRequest, context: Context
    ) -> empty_pb2.Empty:
        """Delete the job and its audio (cancelling it first when it still runs)."""
        await self._jobs.delete(job_id(request.name))
        return empty_pb2.Empty()

    async def WaitOperation(self, request: lro.WaitOperationRequest, context: Context) -> lro.Operation:  # noqa: N802
        """The job once done, or as it is after the request's timeout (at most a minute, within the deadline)."""
        timeout = MAX_WAIT_SECONDS
        if request.HasField("timeout"):
            timeout = min(timeout, max(0.0, request.timeout.ToNanoseconds() / 1e9))
        if (remaining := context.time_remaining()) is not None:
            timeout = min(timeout, max(0.0, remaining - 0.5))
        return job_to_operation(await self._jobs.wait(job_id(request.name), timeout))


def job_id(name: str) -> str:
    """The job id of an operation name; JobNotFound for a name that cannot be one of ours."""
    match = _NAME.match(name)
    if match is None:
        raise JobNotFound(
            f"no such operation; names look like {OPERATIONS_PREFIX}<32 hex digits>", metadata={"name": name[:64]}
        )
    return match.group(1)


def parse_filter(text: str) -> frozenset[JobState] | None:
    """The states an AIP-160 filter selects: terms `state = X`, `state != X`, `done = true|false`, joined by OR."""
    if not text.strip():
        return None
    selected: set[JobState] = set()
    for term in re.split(r"\s+OR\s+", text.strip()):
        match = _TERM.match(term)
        if match is None:
            raise _bad_filter(text)
        field, operator, value = match.groups()
        if field == "done":
            if value.lower() not in ("true", "false"):
                raise _bad_filter(text)
            chosen = {s for s in JobState if s.done == (value.lower() == "true")}
        elif (state := job_state_from_name(value)) is not None:
            chosen = {state}
        else:
            raise _bad_filter(text)
        selected |= chosen if operator == "=" else set(JobState) - chosen
    return frozenset(selected)


def page_size(requested: int) -> int:
    """The page size to use: the default for 0, at most MAX_PAGE_SIZE."""
    if requested < 0:
        raise InvalidJobQuery("page_size must not be negative", metadata={"page_size": str(requested)})
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def page_token(cursor: Cursor) -> str:
    """An opaque token for the page after `cursor`."""
    return base64.urlsafe_b64encode(json.dumps([cursor[0], cursor[1]]).encode()).decode()


def parse_page_token(token: str) -> Cursor | None:
    """The cursor a token from page_token() holds; InvalidJobQuery for anything else."""
    if not token:
        return None
    try:
        created, last_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(created, float | int) and isinstance(last_id, str) and created <= time.time() + 86400:
            return float(created), last_id
    except (ValueError, TypeError, binascii.Error):
        pass
    raise InvalidJobQuery("page_token is not one this server returned")


def _bad_filter(text: str) -> InvalidJobQuery:
    return InvalidJobQuery(
        "filter must be terms like state = RUNNING or done = true, joined by OR",
        metadata={"filter": text[:128]},
    )
