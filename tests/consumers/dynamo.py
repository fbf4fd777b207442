"""A DynamoDB table of the deployed schema on moto's server, for the consumer tests and bench/consumers.py."""

from __future__ import annotations

import uuid

import boto3
from moto.server import ThreadedMotoServer

from functions.consumers.dynamo_store import KEY_INDEX


def make_table(endpoint: str, name: str | None = None) -> str:
    """A fresh table of the deployed schema on the moto server (partition pk, sort sk, the key_id index)."""
    name = name or f"maas-keys-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb", endpoint_url=endpoint)
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "key_id")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": KEY_INDEX, "KeySchema": [{"AttributeName": "key_id", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}])
    return name


class SerialMotoServer(ThreadedMotoServer):
    """moto's server answering one request at a time. DynamoDB applies the updates of one item one after another
    (``ADD`` is atomic); moto's threaded server does not (its ``update_item`` reads and writes without a lock), so
    counts from concurrent clients would be moto's race, not the code's. The clients still send from many
    threads over many connections."""

    def _server_entry(self) -> None:
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(self._ip_address, self._port, app, False, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()
