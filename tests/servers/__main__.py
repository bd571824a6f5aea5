"""Run the integration tests' servers in the foreground, for debugging: Ctrl-C stops them.

    python -m tests.servers kafka     # Apache Kafka (KRaft single node)
    python -m tests.servers s3        # SeaweedFS S3
    python -m tests.servers docker    # the container engine (dockerd on a private socket; root)
    python -m tests.servers all       # Kafka and SeaweedFS

It prints the environment variables to export in another shell (the same ones the test fixtures
set), so a command or a test can be pointed at these servers by hand.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from tests.servers._process import ServerError, ServerProcess, exit_on_sigterm
from tests.servers.docker import DockerEngine
from tests.servers.kafka import KafkaBroker
from tests.servers.seaweedfs import SeaweedFS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers", description=__doc__.split("\n")[0])
    parser.add_argument("which", choices=["kafka", "s3", "docker", "all"], help="which server(s) to run")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    servers: list[ServerProcess] = []
    try:
        if args.which in ("kafka", "all"):
            print("starting Kafka (the first run fetches its jars with Maven) ...", flush=True)
            servers.append(KafkaBroker())  # listed before starting: Ctrl-C while starting cleans up too
            servers[-1].start()
        if args.which in ("s3", "all"):
            print("starting SeaweedFS ...", flush=True)
            servers.append(SeaweedFS())
            servers[-1].start()
        if args.which == "docker":
            print("starting dockerd ...", flush=True)
            servers.append(DockerEngine())
            servers[-1].start()
        print("\n# ready; export these in another shell:")
        for server in servers:
            if isinstance(server, KafkaBroker):
                print(f"export KAFKA_BOOTSTRAP={server.bootstrap}")
            if isinstance(server, DockerEngine):
                print(f"export DOCKER_HOST={server.host}")
            if isinstance(server, SeaweedFS):
                for key, value in server.env().items():
                    print(f"export {key}={value}")
        for server in servers:
            print(f"# {server.name}: log {server.log_path}")
        print("# Ctrl-C stops the servers and deletes their data.", flush=True)
        while True:
            for server in servers:
                if not server.running:
                    print(f"{server.name} exited.\n{server.log_tail()}", file=sys.stderr)
                    return 1
            time.sleep(1)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        print("\nstopping ...", file=sys.stderr)
        return 0
    finally:
        for server in reversed(servers):
            server.close()


if __name__ == "__main__":
    sys.exit(main())
