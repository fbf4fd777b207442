"""GPU batch: a VPC with private subnets and flow logs, an AWS Batch EC2 compute environment of GPU instances
that scales from zero, a job queue, and a job definition running the worker image built from
``functions/batch/Dockerfile`` (by ``cdk deploy``; synth only fingerprints it)."""

from __future__ import annotations

from aws_cdk import Duration, Size
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.foundation import Foundation
from infra.project import PROJECT_ROOT

RETRY_ATTEMPTS = 3
ARRAY_COMMAND = ["python", "-m", "functions.batch.array_worker"]  # functions/batch/array_worker.py
WORKER_TRANSIENT_EXIT = "1"  # functions.batch.worker: 1 = transient, 2 = permanent (a report was written)


class GpuBatch(Construct):
    """Compute environment (min 0 vCPUs), queue and a 1-GPU, non-privileged, read-only-root job definition."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation,
                 environment: dict[str, str]) -> None:
        super().__init__(scope, construct_id)
        config = foundation.config
        self.vpc = ec2.Vpc(
            self, "Vpc", max_azs=2, nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="workers", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20)],
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
            flow_logs={"All": ec2.FlowLogOptions(
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(foundation.log_group(self, "FlowLogs")),
                traffic_type=ec2.FlowLogTrafficType.ALL)})
        self.compute = batch.ManagedEc2EcsComputeEnvironment(
            self, "Compute", vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            instance_types=[ec2.InstanceType(name) for name in config.gpu_instance_types],
            use_optimal_instance_classes=False, minv_cpus=0, maxv_cpus=config.gpu_max_vcpus,
            images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023_NVIDIA)],
            launch_template=ec2.LaunchTemplate(self, "Hosts", require_imdsv2=True, http_put_response_hop_limit=1),
            allocation_strategy=batch.AllocationStrategy.BEST_FIT_PROGRESSIVE)
        self.queue = batch.JobQueue(self, "Queue", priority=1, compute_environments=[
            batch.OrderedComputeEnvironment(compute_environment=self.compute, order=1)])

        self.job_role = iam.Role(self, "JobRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                                 description=f"maas {config.stage}: GPU batch worker")
        image = ecs.ContainerImage.from_asset(
            str(PROJECT_ROOT), file="functions/batch/Dockerfile", platform=ecr_assets.Platform.LINUX_AMD64)
        self.job_definition = batch.EcsJobDefinition(
            self, "Worker", timeout=Duration.minutes(config.gpu_job_timeout_minutes),
            retry_attempts=RETRY_ATTEMPTS,
            retry_strategies=[
                # The host went away (Spot reclaim, instance failure): run the job again elsewhere.
                batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom(on_status_reason="Host EC2*")),
                batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom(on_exit_code=WORKER_TRANSIENT_EXIT)),
                # Anything else is the application's verdict (bad input, unknown model): do not retry.
                batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom(on_exit_code="*"))],
            container=batch.EcsEc2ContainerDefinition(
                self, "Container", image=image, cpu=config.gpu_job_vcpus, gpu=1,
                memory=Size.mebibytes(config.gpu_job_memory_mib), privileged=False, readonly_root_filesystem=True,
                job_role=self.job_role, environment={"MAAS_CACHE_DIR": "/tmp/maas-cache", **environment},
                volumes=[batch.EcsVolume.host(name="scratch", container_path="/tmp")],
                logging=ecs.LogDriver.aws_logs(stream_prefix="worker", log_group=foundation.log_group(self, "Logs")),
                command=["python", "-m", "functions.batch.worker", "--help"]))
        self.failures = events.Rule(
            self, "Failures", description="A maas GPU batch job failed",
            event_pattern=events.EventPattern(source=["aws.batch"], detail_type=["Batch Job State Change"],
                                              detail={"status": ["FAILED"], "jobQueue": [self.queue.job_queue_arn]}))


    def array_job(self, scope: Construct, construct_id: str, *, size: float,
                  environment: dict[str, str]) -> tasks.BatchSubmitJob:
        """A state machine step that submits an array job of ``size`` children on this queue and definition
        and waits for it (``.sync``); each child reads its range by AWS_BATCH_JOB_ARRAY_INDEX."""
        return tasks.BatchSubmitJob(
            scope, construct_id, job_name="maas-fanout", job_queue_arn=self.queue.job_queue_arn,
            job_definition_arn=self.job_definition.job_definition_arn, array_size=size,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB, result_path=sfn.JsonPath.DISCARD,
            container_overrides=tasks.BatchContainerOverrides(command=ARRAY_COMMAND, environment=environment))
