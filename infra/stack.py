"""One stack per stage: composes the constructs and grants what crosses between them."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aspects, CfnOutput, Stack, Tags
from constructs import Construct

from infra.batch_events import BatchEvents
from infra.batch_fanout import BatchFanout
from infra.config import StageConfig
from infra.consumers import Consumers
from infra.foundation import Foundation
from infra.gpu_batch import GpuBatch
from infra.key_conditions import ServicePrincipalConditions
from infra.model_store import ModelStore
from infra.monitoring import Monitoring
from infra.observability import Observability
from infra.prediction_api import PredictionApi


class MaasStack(Stack):
    """Model store, prediction API, batch events, GPU batch and observability for one stage."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, description=f"maas {config.stage}: serverless model serving", **kwargs)
        Tags.of(self).add("maas:stage", config.stage)
        foundation = Foundation(self, "Foundation", config=config)
        self.store = ModelStore(self, "ModelStore", foundation=foundation)
        # API keys, limits and usage per consumer (auth type apiKey only; other stages have no table).
        self.consumers = Consumers(self, "Consumers", foundation=foundation) if config.auth.type == "apiKey" else None
        self.api = PredictionApi(self, "PredictionApi", foundation=foundation, store=self.store,
                                 consumers=self.consumers)
        self.batch_events = BatchEvents(self, "BatchEvents", foundation=foundation, store=self.store)
        self.api.enable_jobs(self.batch_events.bucket, foundation.key)
        # Jobs submitted with an API key count their rows to the consumer wherever the batch finishes them.
        worker_env = {"MAAS_STORE": self.store.uri, **self.consumers.environment()} if self.consumers else \
            {"MAAS_STORE": self.store.uri}
        self.gpu_batch = GpuBatch(self, "GpuBatch", foundation=foundation, environment=worker_env)
        self.store.grant_read(self.gpu_batch.job_role)
        self.batch_events.grant_batch_io(self.gpu_batch.job_role)
        self.batch_events.enable_dispatch(self.gpu_batch.queue.job_queue_arn,
                                          self.gpu_batch.job_definition.job_definition_arn)
        self.fanout = BatchFanout(self, "BatchFanout", foundation=foundation, store=self.store,
                                  batch_events=self.batch_events, gpu_batch=self.gpu_batch)
        self.fanout.enable_for(self.batch_events.function, config.batch_timeout_seconds, config.fanout_rows_per_part)
        self.observability = Observability(self, "Observability", foundation=foundation, api=self.api,
                                           batch_events=self.batch_events, gpu_batch=self.gpu_batch,
                                           fanout=self.fanout)
        self.monitoring = Monitoring(self, "Monitoring", foundation=foundation, api=self.api,
                                     data_bucket=self.batch_events.bucket, store=self.store)
        self.monitoring.add_to(self.observability)
        if self.consumers is not None:
            self.consumers.enable_metering(self.api.function, authorize=True)
            for function in (self.batch_events.function, self.fanout.function):
                self.consumers.enable_metering(function)
            self.consumers.grant_metering(self.gpu_batch.job_role)
            self.consumers.grant_operators(self.store.publisher)
            self.observability.dashboard.add_widgets(*self.consumers.widgets(self.api.function.log_group.log_group_name))

        Aspects.of(self).add(ServicePrincipalConditions({
            (self.batch_events.queue_key.node.path, "s3.amazonaws.com"): self.batch_events.bucket.bucket_arn}))

        CfnOutput(self, "ApiUrl", value=self.api.url, description="Base URL of the prediction API")
        CfnOutput(self, "ModelStoreUri", value=self.store.uri, description="MAAS_STORE for `maas build/promote`")
        CfnOutput(self, "PublisherRoleArn", value=self.store.publisher.role_arn,
                  description="Assume this role to publish, promote or roll back models")
        CfnOutput(self, "DataBucket", value=self.batch_events.bucket.bucket_name,
                  description="Drop inputs under inputs/NAME/; predictions appear under outputs/")
        CfnOutput(self, "DashboardName", value=self.observability.dashboard.dashboard_name,
                  description="CloudWatch dashboard")
        CfnOutput(self, "AlarmTopicArn", value=self.observability.topic.topic_arn, description="Alarm notifications")
        if self.consumers is not None:
            CfnOutput(self, "ConsumerTable", value=self.consumers.table.table_name,
                      description="API keys, limits and usage: MAAS_KEYS=dynamodb://NAME for `maas keys` and "
                                  "`maas usage`")
