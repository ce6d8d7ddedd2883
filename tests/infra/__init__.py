"""Real servers for tests: a local Apache Kafka broker (KRaft) and a local PostgreSQL, started with the
project's own scripts (deploy/kafka/kafka.sh, deploy/postgres/pg.sh), plus helpers for fault tests.

    broker = KafkaBroker.start()            # free port, temporary data dir, waits until ready
    broker.kill(); broker.restart()          # SIGKILL, then start again on the same port and data dir
    create_topic(broker.bootstrap)           # a unique topic, 6 partitions, replication factor 1

    pg = PostgresServer.start()
    url = pg.create_database()               # a new empty database, SQLAlchemy URL (psycopg 3)
    pg.kill(); pg.restart()
"""

from tests.infra.errors import InfraError
from tests.infra.kafka import KafkaBroker, create_topic, delete_topics, unique_topic_name
from tests.infra.ports import free_port, port_is_open, wait_for_port
from tests.infra.postgres import PostgresServer, sqlalchemy_url

__all__ = [
    "InfraError",
    "KafkaBroker",
    "PostgresServer",
    "create_topic",
    "delete_topics",
    "free_port",
    "port_is_open",
    "sqlalchemy_url",
    "unique_topic_name",
    "wait_for_port",
]
