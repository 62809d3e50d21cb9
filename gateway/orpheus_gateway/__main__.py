"""`orpheus-tts gateway ...` / `python -m orpheus_gateway ...`."""

from __future__ import annotations

import gc
import logging
import sys

from .config import ConfigError, config_from_args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config = config_from_args(argv)
    except ConfigError as exc:
        print(f"orpheus-tts gateway: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from orpheus_tts import tracing

    from .app import create_app
    from .logs import install_log_redaction
    from .server import server_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # No line prints a thread or process: a record need not look them up (a syscall each).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    tracing.configure("orpheus-gateway")
    server_config = uvicorn.Config(
        # uvicorn's loggers go through the one handler above (`log_config=None`): one line
        # format for every logger, and no colouring formatter copying each access record.
        create_app(config), host=config.host, port=config.port, log_level="info", log_config=None,
        ws_ping_interval=config.ws_ping_interval_s, ws_ping_timeout=config.ws_ping_interval_s,
        **server_settings())
    install_log_redaction()  # after uvicorn configured its loggers
    if not config.auth_enabled:
        logging.getLogger("orpheus_gateway").warning("authentication is OFF (--no-auth)")
    # What startup imported lives as long as the process: kept out of full collections, which
    # otherwise walk all of it every few thousand requests. A stream's objects are freed by
    # reference counting (tests/gateway/test_streams.py checks), so young collections mostly
    # find the objects of streams still in flight: at 10,000 rather than 700 allocations they
    # run a fourteenth as often (a fifth of the collector's time at 64 streams).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    uvicorn.Server(server_config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
