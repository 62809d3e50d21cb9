"""`orpheus-tts operator`: run the kopf operator that reconciles `OrpheusCluster` objects."""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from typing import Any

DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
DEFAULT_METRICS = "0.0.0.0:8081"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="orpheus-tts operator",
                                     description="Reconcile OrpheusCluster objects (kopf).")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch only this namespace (repeatable; globs allowed)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch every namespace (the default)")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument("--standalone", action="store_true",
                         help="no peering: the only replica (the chart's default)")
    peering.add_argument("--peering", metavar="NAME",
                         help="coordinate replicas through this KopfPeering/ClusterKopfPeering "
                              "(one active, the others stand by)")
    parser.add_argument("--priority", type=int,
                        help="peering priority: the live replica with the highest one is active "
                             "(default: random, so replicas never tie; kopf pauses every "
                             "replica on a tie)")
    parser.add_argument("--liveness", default=DEFAULT_LIVENESS,
                        help=f"liveness endpoint (default {DEFAULT_LIVENESS}; 'none' disables)")
    parser.add_argument("--metrics", default=DEFAULT_METRICS,
                        help=f"HOST:PORT serving Prometheus metrics (default {DEFAULT_METRICS}; "
                             "'none' disables)")
    parser.add_argument("--resync-seconds", type=float,
                        default=float(os.environ.get("ORPHEUS_OPERATOR_RESYNC_SECONDS", 30)),
                        help="seconds between re-checks of each cluster (status, drift)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster or "
                                             "$KUBECONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def peering_priority(requested: int | None) -> int:
    """The explicit priority, or a random one: kopf pauses all peers that share a priority."""
    if requested is not None:
        return requested
    return random.SystemRandom().randint(1, 2**31 - 1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig

    import kopf

    from . import handlers, kube, reconcile
    from .autoscaler import handlers as _autoscaler  # noqa: F401 - registers its daemon

    registry = kopf.get_default_registry()
    handlers.register(registry, args.resync_seconds)
    reconcile.configure(kube.load_config(args.kubeconfig))
    if args.metrics != "none":
        from .metrics import serve

        serve(args.metrics)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        prefix = "tts.orpheus.dev"
        # kopf keeps a finalizer on each cluster while its timers run, to stop them first.
        settings.persistence.finalizer = f"{prefix}/operator"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=prefix, key="last-handled-configuration")
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.networking.error_backoffs = [1, 2, 5, 10, 20]

    kopf.run(
        registry=registry,
        standalone=args.standalone or not args.peering,
        peering_name=args.peering,
        priority=peering_priority(args.priority),
        liveness_endpoint=None if args.liveness == "none" else args.liveness,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
