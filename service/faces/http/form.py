"""Reads a multipart/form-data body as it arrives: small fields are kept, the one file part is passed on in chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import FieldViolation, InvalidConfig
from service.faces.http.errors import NotMultipart

FILE_FIELD = "file"
MAX_FIELDS = 64
"""Parts besides the file a form may have."""
MAX_FIELD_BYTES = 64 * 1024
"""The largest value of one field (a prompt of 4000 characters takes at most 16 KB)."""


def _malformed(why: str) -> InvalidConfig:
    return InvalidConfig(f"the request body is not a valid multipart form: {why}", violations=[_violation(why)])


def _violation(why: str) -> FieldViolation:
    return FieldViolation(FILE_FIELD, why)


class MultipartForm:
    """One multipart form read from `body` as it arrives, in whatever order its parts come.

    `until_file()` reads the fields that come before the file part. `file()` then yields the file's bytes as they
    arrive and, when the file part ends, reads the rest of the form, so `fields` is complete when it finishes and
    `ended` is set. Only field values are held in memory, each bounded; the file never is.
    """

    def __init__(self, body: AsyncIterator[bytes], content_type: str | None) -> None:
        kind, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise NotMultipart("the request body must be multipart/form-data, with the audio in the 'file' field")
        self._body = body
        try:
            self._parser = MultipartParser(
                boundary,
                callbacks={
                    "on_part_begin": self._on_part_begin,
                    "on_header_field": self._on_header_field,
                    "on_header_value": self._on_header_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": self._on_headers_finished,
                    "on_part_data": self._on_part_data,
                    "on_part_end": self._on_part_end,
                    "on_end": self._on_end,
                },
            )
        except FormParserError:
            raise _malformed("the boundary is too long") from None
        self.fields: dict[str, list[str]] = {}
        self.ended = asyncio.Event()
        """Set once the whole body is read, up to the closing boundary."""
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._part: str | None = None
        self._value = bytearray()
        self._in_file = False
        self._file_seen = False
        self._file_done = False
        self._pending: list[bytes] = []
        self._complete = False

    async def until_file(self) -> bool:
        """Read up to the start of the file part; False when the form ends without one."""
        while not self._file_seen:
            if not await self._read():
                return False
        return True

    async def file(self) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive, then (reading the rest of the form) nothing more."""
        while True:
            while self._pending:
                yield self._pending.pop(0)
            if self._file_done:
                break
            if not await self._read():
                break
        while await self._read():
            pass

    async def _read(self) -> bool:
        """Parse the next chunk of the body; False once the body has ended."""
        if self._complete:
            return False
        chunk = await anext(self._body, None)
        if chunk is None:
            raise _malformed("the body ended before the form's closing boundary")
        try:
            self._parser.write(chunk)
        except FormParserError:
            raise _malformed("a part is malformed") from None
        return True

    def _on_part_begin(self) -> None:
        self._disposition = b""
        self._value.clear()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._disposition)
        name = params.get(b"name")
        if name is None:
            raise _malformed("a part has no name")
        self._part = name.decode("utf-8", "replace")
        if self._part == FILE_FIELD:
            if self._file_seen:
                raise InvalidConfig("the form has more than one file", violations=[_violation("must be sent once")])
            self._file_seen = self._in_file = True
        elif sum(len(values) for values in self.fields.values()) >= MAX_FIELDS:
            raise _malformed(f"it has more than {MAX_FIELDS} fields")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pending.append(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise InvalidConfig(
                f"the field {self._part!r} is too long",
                violations=[FieldViolation(self._part or "", f"must be at most {MAX_FIELD_BYTES} bytes")],
            )

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._file_done = True
            return
        try:
            value = self._value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidConfig(
                f"the field {self._part!r} is not UTF-8 text",
                violations=[FieldViolation(self._part or "", "must be UTF-8 text")],
            ) from None
        self.fields.setdefault(self._part or "", []).append(value)

    def _on_end(self) -> None:
        self._complete = True
        self.ended.set()
