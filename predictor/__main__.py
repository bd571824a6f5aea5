"""`python -m predictor`: the movierec model server (the entry point of the serving image).

    python -m predictor --store s3://models/prod --http_port 8080 --workers 2 \\
        --request_log kafka://kafka-bootstrap.kafka:9092/movie-events

The parser extends `kserve.model_server.parser` (KServe's own flags keep their meaning:
`--http_port`, `--workers`, ...); the predictor's flags have names KServe does not use. Without
`--listen_fd` this process is the supervisor (it never imports kserve); with it, a worker.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def own_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--store", default=os.environ.get("MOVIEREC_STORE"),
                        help="Artifact store URI holding the model versions and rollout.json "
                             "(a path, file:PATH or s3://BUCKET/PREFIX; default $MOVIEREC_STORE or .movierec/store)")
    parser.add_argument("--request_log", default=os.environ.get("MOVIEREC_REQUEST_LOG"),
                        help="Event log for the request lines: file:PATH or kafka://HOST:PORT/TOPIC (default: none)")
    parser.add_argument("--poll_seconds", type=float, default=2.0,
                        help="How often each worker re-reads the rollout state")
    parser.add_argument("--bind_host", default="0.0.0.0", help="Address to listen on")
    parser.add_argument("--drain_seconds", type=float, default=1.0,
                        help="On SIGTERM, answer with 'Connection: close' this long before stopping")
    parser.add_argument("--grace_seconds", type=int, default=20,
                        help="On SIGTERM, how long in-flight requests may take to finish")
    parser.add_argument("--ready_file", default=None,
                        help="Written (pid and port) once every worker accepts; removed on exit")
    parser.add_argument("--model_dir", default=None,
                        help="A folder holding one version's files (KServe's storage initializer downloads "
                             "storageUri to /mnt/models): that version is loaded from there, not from the store")
    parser.add_argument("--no_mmap", action="store_true",
                        help="Read model arrays into memory instead of mapping them from a local store")
    parser.add_argument("--listen_fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ready_fd", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def full_parser() -> argparse.ArgumentParser:
    from kserve import model_server

    return own_flags(argparse.ArgumentParser(parents=[model_server.parser], description=__doc__,
                                             formatter_class=argparse.RawDescriptionHelpFormatter))


def supervisor_parser() -> argparse.ArgumentParser:
    """The few KServe flags the supervisor needs, without importing kserve."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--http_port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    return own_flags(parser)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=os.environ.get("MOVIEREC_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    if "-h" in argv or "--help" in argv:
        full_parser().parse_args(argv)
        return 0
    if "--listen_fd" in argv:
        from predictor.server import run_worker

        args, _ = full_parser().parse_known_args(argv)
        run_worker(args)  # returns after a graceful stop: requests answered, request log flushed
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # skip tearing down ~2,000 imported modules (seconds under load)
    from predictor.supervisor import run_supervisor

    args, _ = supervisor_parser().parse_known_args(argv)
    return run_supervisor(args, argv)  # the workers get the same arguments, plus their socket


if __name__ == "__main__":
    sys.exit(main())
