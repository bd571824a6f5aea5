"""The real servers of the integration tests, started on 127.0.0.1 with free ports.

`python -m tests.servers kafka|s3|docker|all` runs them in the foreground for debugging.
"""

from tests.servers._process import ServerError, ServerProcess, free_port, start_or_fail
from tests.servers.alertmanager import AlertmanagerServer, WebhookReceiver
from tests.servers.docker import DockerEngine
from tests.servers.kafka import KafkaBroker
from tests.servers.prometheus import PrometheusServer
from tests.servers.seaweedfs import SeaweedFS

__all__ = ["AlertmanagerServer", "DockerEngine", "KafkaBroker", "PrometheusServer", "SeaweedFS", "ServerError",
           "ServerProcess", "WebhookReceiver", "free_port", "start_or_fail"]
