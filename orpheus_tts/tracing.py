"""OpenTelemetry traces across SDK → gateway → worker → engine: optional, off unless configured.

With the `otel` extra installed (`pip install 'orpheus-tts-cluster[otel]'`) and an OTLP endpoint in the
environment (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), the gateway
and the worker export their spans over OTLP/HTTP (`configure`). The SDK never installs an
exporter: its spans go to whatever provider the application configured. Without the packages
every helper here is a no-op; with them but no provider, OpenTelemetry's no-op tracer answers.

Context crosses processes in the W3C `traceparent` header (`inject` on the way out,
`TraceContextMiddleware` on the way in). Span names and attributes: docs/observability.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

try:  # the `otel` extra
    from opentelemetry import context as _context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised where the extra is absent
    trace = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

TRACER = "orpheus_tts"
REQUEST_ID = "orpheus.request_id"
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class _NoSpan:
    """What every helper hands out when OpenTelemetry is not installed."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        pass

    def end(self) -> None:
        pass


NO_SPAN = _NoSpan()


def available() -> bool:
    return trace is not None


def configure(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Export this process's spans over OTLP when the environment names an endpoint."""
    if trace is None or not any(environ.get(v) for v in ENDPOINT_VARS):
        return False
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning("OTLP endpoint set but the tracing SDK is missing (%s): pip install "
                    "'orpheus-tts-cluster[otel]'", exc)
        return False
    provider = TracerProvider(resource=Resource.create({
        "service.name": environ.get("OTEL_SERVICE_NAME") or service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("tracing: exporting spans over OTLP as %s", service_name)
    return True


_provider_installed = False


def recording() -> bool:
    """A tracer provider is installed (by `configure` or by the application): until one is,
    spans are `NO_SPAN`, which costs nothing per request. A caller's `traceparent` still
    passes through (`TraceContextMiddleware`, then `inject`)."""
    global _provider_installed
    if not _provider_installed and trace is not None:
        _provider_installed = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return _provider_installed


def start_span(name: str, *, parent: Any = None, kind: str = "internal",
               attributes: Mapping[str, Any] | None = None) -> Any:
    """A started span (end it yourself). `parent`: a span, or None for the current context."""
    if not recording():
        return NO_SPAN
    ctx = trace.set_span_in_context(parent) if parent is not None else None
    return trace.get_tracer(TRACER).start_span(
        name, context=ctx, kind=getattr(SpanKind, kind.upper()),
        attributes={k: v for k, v in (attributes or {}).items() if v is not None})


class _NoSpanBlock:
    """`span()` while nothing records: one shared object, no generator per block."""

    def __enter__(self) -> _NoSpan:
        return NO_SPAN

    def __exit__(self, *exc_info: Any) -> bool:
        return False


_NO_SPAN_BLOCK = _NoSpanBlock()
_NO_CONTEXT = nullcontext()


def span(name: str, *, parent: Any = None, kind: str = "internal",
         attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A span around a block (not current: pass it as `parent` to children)."""
    if not recording():
        return _NO_SPAN_BLOCK
    return _span(name, parent=parent, kind=kind, attributes=attributes)


@contextmanager
def _span(name: str, *, parent: Any, kind: str,
          attributes: Mapping[str, Any] | None) -> Iterator[Any]:
    s = start_span(name, parent=parent, kind=kind, attributes=attributes)
    try:
        yield s
    except BaseException as exc:
        fail(s, type(exc).__name__)
        raise
    finally:
        s.end()


def use(s: Any) -> AbstractContextManager[None]:
    """Make `s` the current span for a block without awaits across other tasks' turns:
    outgoing requests (`inject`) and tasks created inside it take it as their parent."""
    if trace is None or s is NO_SPAN:
        return _NO_CONTEXT
    return _use(s)


@contextmanager
def _use(s: Any) -> Iterator[None]:
    token = _context.attach(trace.set_span_in_context(s))
    try:
        yield
    finally:
        _context.detach(token)


def fail(s: Any, code: str) -> None:
    """Mark a span as ended by an error (`code`: the protocol's error code)."""
    if trace is None or s is NO_SPAN:
        return
    s.set_attribute("orpheus.error_code", code)
    s.set_status(Status(StatusCode.ERROR, code))


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current context's `traceparent` (and `tracestate`) to outgoing headers."""
    if trace is not None and _context.get_current():  # an empty context injects nothing
        propagate.inject(headers)
    return headers


class TraceContextMiddleware:
    """ASGI middleware: a request carrying `traceparent` runs in that remote context, so the
    spans the app starts for it join the caller's trace."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if trace is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in (b"traceparent", b"tracestate")}
        if not carrier:
            await self.app(scope, receive, send)
            return
        token = _context.attach(propagate.extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            _context.detach(token)
