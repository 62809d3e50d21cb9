"""The `orpheus-tts` command line: one entry point, one module per subcommand.

Server subcommands live with their packages and are imported only when asked for, so the
SDK-only install keeps working for `say`.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, help). Each module exposes `main(argv: list[str]) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "say": ("orpheus_tts.say", "speak text through a gateway or worker and write a WAV"),
    "worker": ("orpheus_worker.__main__", "run a worker (vLLM + SNAC) serving the v1 contract"),
    "gateway": ("orpheus_gateway.__main__", "run the gateway in front of workers"),
    "operator": ("orpheus_operator.__main__", "run the Kubernetes operator (kopf)"),
    "make-tiny-model": ("orpheus_worker.tiny_model", "write the random-weight stand-in checkpoint"),
    "up": ("orpheus_tts.up", "start a local gateway and two workers"),
}


def _usage() -> str:
    lines = ["usage: orpheus-tts COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<16} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"orpheus-tts: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = {"worker": "worker", "make-tiny-model": "worker", "gateway": "gateway",
                 "operator": "operator"}.get(name, "all")
        print(
            f"orpheus-tts {name}: missing dependency ({exc.name}); "
            f"install with: pip install 'orpheus-tts-cluster[{extra}]'",
            file=sys.stderr,
        )
        return 2
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
