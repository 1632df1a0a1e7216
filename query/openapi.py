"""The OpenAPI 3 document of the HTTP API, served at /api/v1/openapi.json.

Built from the same constants the handlers check against (limits, names,
severities), so the two cannot drift apart on those; tests/test_openapi.py
runs schemathesis against a real server to hold the rest to it.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from query import filters

_TEXT = {"type": "string", "maxLength": filters.MAX_TEXT}
_TIME = {"type": "string", "format": "date-time"}
_ERROR = {"$ref": "#/components/schemas/Error"}


def document() -> dict[str, Any]:
    """Return the OpenAPI document as a dict."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "logd",
            "version": "1",
            "description": (
                "Search, count and tail the lines logd stores. With a tokens "
                "file, send `Authorization: Bearer TOKEN`; a token reads only "
                "its apps. Filters also take `label.NAME=VALUE` (repeatable) "
                "for any label; OpenAPI cannot name such parameters."
            ),
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }


@functools.cache
def document_bytes() -> bytes:
    """The document as JSON, built once."""
    return orjson.dumps(document())


def _paths() -> dict[str, Any]:
    return {
        "/api/v1/logs": {"get": _logs()},
        "/api/v1/histogram": {"get": _histogram()},
        "/api/v1/apps": {"get": _apps()},
        "/api/v1/labels": {"get": _labels()},
        "/api/v1/labels/{name}/values": {"get": _values()},
        "/api/v1/tail": {"get": _tail()},
        "/api/v1/openapi.json": {"get": _self()},
        "/healthz": {"get": _healthz()},
    }


def _logs() -> dict[str, Any]:
    return {
        "summary": "Lines matching the filters, a page at a time",
        "description": (
            "Newest first unless direction=forward. A response with `next` has "
            "more lines: pass it as `cursor` with the same filters. Paging "
            "returns every line stored when the first page was read exactly "
            "once, however many lines arrive meanwhile. With `Accept: "
            "application/x-ndjson` the lines stream one JSON object a line, "
            'then `{"next": CURSOR}` when more remain, and `limit` goes up to '
            f"{filters.MAX_EXPORT}."
        ),
        "parameters": [*_filter_params(), *_page_params()],
        "responses": {
            "200": {
                "description": "One page of lines",
                "content": {
                    "application/json": {"schema": _ref("LogsPage")},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            },
            **_errors(),
        },
    }


def _histogram() -> dict[str, Any]:
    step = {
        "type": "string",
        "pattern": r"^([0-9]{1,12}|[0-9]{1,12}[smhdw])$",
        "description": "seconds or a duration (30s, 1m); about 120 intervals if "
        "left out",
    }
    return {
        "summary": "Line counts per interval and severity",
        "description": "The range defaults to the hour before until (or now).",
        "parameters": [*_filter_params(), _param("step", step)],
        "responses": {"200": _json("Counts", "Histogram"), **_errors()},
    }


def _apps() -> dict[str, Any]:
    return {
        "summary": "Apps with their line counts and newest line's time",
        "parameters": _filter_params(),
        "responses": {"200": _json("Apps", "Apps"), **_errors()},
    }


def _labels() -> dict[str, Any]:
    return {
        "summary": "Names to filter by: fixed fields, then label.NAME",
        "parameters": _filter_params(),
        "responses": {"200": _json("Names", "Labels"), **_errors()},
    }


def _values() -> dict[str, Any]:
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "app, service, container, host or label.NAME",
        "schema": {"type": "string", "minLength": 1},
    }
    limit = {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 1000}
    return {
        "summary": "Distinct non-empty values of one name, sorted",
        "parameters": [name, *_filter_params(), _param("limit", limit)],
        "responses": {"200": _json("Values", "Values"), **_errors()},
    }


def _tail() -> dict[str, Any]:
    cursor = _param("cursor", _ref("Cursor"))
    cursor["description"] = "resume after this line"
    return {
        "summary": "Live lines over a websocket (upgrade required)",
        "description": (
            'Messages are JSON objects with a "type": "line", "gap" (with '
            '"skipped" and "cursor"), "heartbeat" or "error".'
        ),
        "parameters": [*_filter_params(), cursor],
        "responses": {
            "101": {"description": "Switching to the websocket"},
            **_errors(),
            "400": {
                "description": "A bad parameter (JSON), or no websocket upgrade "
                "(plain text)",
                "content": {
                    "application/json": {"schema": _ERROR},
                    "text/plain": {"schema": {"type": "string"}},
                },
            },
        },
    }


def _self() -> dict[str, Any]:
    return {
        "summary": "This document",
        "security": [{}],
        "responses": {
            "200": {
                "description": "OpenAPI 3",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    }


def _healthz() -> dict[str, Any]:
    status = {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["ok", "starting"]}},
        "required": ["status"],
    }
    content = {"application/json": {"schema": status}}
    return {
        "summary": "200 once logd accepts lines and storage is open",
        "security": [{}],
        "responses": {
            "200": {"description": "Ready", "content": content},
            "503": {"description": "Starting", "content": content},
        },
    }


def _filter_params() -> list[dict[str, Any]]:
    names = {**_TEXT, "description": "one or more names, comma separated (or repeat)"}
    severity = {
        "type": "string",
        "description": "the least severe level: 0-7 or a name",
        "enum": [*filters.SEVERITIES, *"01234567"],
    }
    when = "RFC 3339 or a duration before now (15m)"
    return [
        _param("app", names),
        *(_param(name, names) for name in filters.FIELDS),
        _param("since", {**_TEXT, "description": when + "; inclusive"}),
        _param("until", {**_TEXT, "description": when + "; exclusive"}),
        _param("severity", severity),
        _param(
            "q",
            {**_TEXT, "description": 'words (whole) and "phrases" (anywhere)'},
        ),
        _param("regex", {**_TEXT, "description": "an RE2 pattern"}),
    ]


def _page_params() -> list[dict[str, Any]]:
    limit = {
        "type": "integer",
        "minimum": 1,
        "maximum": filters.MAX_LIMIT,
        "default": filters.DEFAULT_LIMIT,
    }
    direction = {
        "type": "string",
        "enum": ["backward", "forward"],
        "default": "backward",
    }
    return [
        _param("limit", limit),
        _param("direction", direction),
        _param("cursor", _ref("Cursor")),
    ]


def _param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }


def _errors() -> dict[str, Any]:
    def error(description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/json": {"schema": _ERROR}},
        }

    return {
        "400": error("A parameter the API cannot use; the error names it"),
        "401": error("A tokens file is loaded and no known token was sent"),
        "403": error("The token may not read an app asked for"),
        "503": error("Storage is unavailable"),
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> Any:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def _schemas() -> dict[str, Any]:
    integer = {"type": "integer"}
    text = {"type": "string"}
    return {
        "Cursor": {"type": "string", "pattern": "^[0-9a-f]{32}([0-9a-f]{16})?$"},
        "Error": _object({"error": text, "parameter": text}, optional=("parameter",)),
        "Line": _object(
            {
                "ts": _TIME,
                "received": _TIME,
                "seq": integer,
                "app": text,
                "service": text,
                "container": text,
                "host": text,
                "facility": {"type": "integer", "minimum": 0, "maximum": 23},
                "severity": {"type": "integer", "minimum": 0, "maximum": 7},
                "app_name": text,
                "procid": text,
                "msgid": text,
                "message": text,
                "structured_data": text,
                "labels": {"type": "object", "additionalProperties": text},
                "source": text,
                "parse_error": text,
                "invalid_utf8": {"type": "boolean"},
                "truncated": {"type": "boolean"},
                "raw": {"type": "string", "format": "byte"},
                "cursor": _ref("Cursor"),
            }
        ),
        "LogsPage": _object(
            {"lines": {"type": "array", "items": _ref("Line")}, "next": _ref("Cursor")},
            optional=("next",),
        ),
        "Histogram": _object(
            {
                "since": _TIME,
                "until": _TIME,
                "step": integer,
                "total": integer,
                "buckets": {"type": "array", "items": _ref("Bucket")},
            }
        ),
        "Bucket": _object(
            {
                "ts": _TIME,
                "total": integer,
                "severity": {
                    "type": "object",
                    "properties": {name: integer for name in filters.SEVERITIES},
                    "additionalProperties": False,
                },
            }
        ),
        "Apps": _object({"apps": {"type": "array", "items": _ref("App")}}),
        "App": _object({"app": text, "lines": integer, "last": _TIME}),
        "Labels": _object({"labels": {"type": "array", "items": text}}),
        "Values": _object({"name": text, "values": {"type": "array", "items": text}}),
    }
