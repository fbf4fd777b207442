"""Permission coverage: the AWS calls each function's code makes, derived statically, against the role that
function gets in the synthesized template.

Calls: the ``functions`` modules an entry module reaches through its imports; in them, the definitions reachable
by name from the module-level code and decorated (route) functions; in those, every ``x.method(...)`` whose
method is a botocore operation of a service the code creates a client for (``boto3.client("s3")``). Operation
-> IAM action through botocore's names, with ``IAM_ACTION`` for the few that differ. Name-based reachability
over-approximates (a method reachable by name counts), which errs towards requiring a permission.

Checks (``coverage_problems``): every action the code needs is allowed on every resource of its kind the
function declares (``Access.reads``/``writes``); nothing is allowed that no call needs (beyond ``Access.platform``,
what the runtime itself uses: logs, X-Ray, the SQS event source); no statement names ``*`` unless the action has
no resource-level permissions; object actions are only on declared prefixes.

Adding a function (drift, jobs, fan-out) is one ``Access`` row in ``FUNCTIONS``. DynamoDB calls (the consumer
table) count on stages that have the table (``STAGE_SERVICES``); the authorizer row applies only there.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from infra.project import PROJECT_ROOT

# botocore operation -> IAM action, where they differ (the rest are "service:Operation").
IAM_ACTION = {
    "stepfunctions:StartExecution": ("states:StartExecution",),  # the IAM prefix of Step Functions is states
    "s3:HeadObject": ("s3:GetObject",),
    "s3:ListObjectsV2": ("s3:ListBucket",),
    "s3:CreateMultipartUpload": ("s3:PutObject",),
    "s3:UploadPart": ("s3:PutObject",),
    "s3:CompleteMultipartUpload": ("s3:PutObject",),
}
# boto3's customizations on the client: method -> the operations it makes.
CLIENT_HELPERS = {
    "s3": {
        "upload_file": ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload",
                        "AbortMultipartUpload"),
        "download_file": ("HeadObject", "GetObject"),
        # A presigned request is made with the signer's permissions: jobs presign uploads and downloads.
        "generate_presigned_post": ("PutObject",),
        "generate_presigned_url": ("GetObject",),
    },
}
# Services called from one package only: elsewhere a method of the same name is something else (``call.query``
# reads a request's query string, not a table).
SERVICE_MODULES = {"dynamodb": "functions.consumers."}
# Helpers that call the client method named by their first argument (functions/consumers/dynamo_store.py:
# ``self._call("update_item", ...)``, ``self._pages("scan", ...)``).
CALL_THROUGH = ("_call", "_pages")
# Actions without resource-level permissions: "*" is the only resource they take.
RESOURCELESS = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords", "ecr:GetAuthorizationToken"})
OBJECT_ACTIONS_PREFIX = "s3:"
# The DynamoDB table is encrypted with the stage key too: DynamoDB decrypts the table key with the caller's
# kms:Decrypt permission, for reads and writes alike (it makes the table's data keys itself, with its own grant).
TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:Scan")
KMS_FOR = {"s3:GetObject": ("kms:Decrypt",), "s3:PutObject": ("kms:GenerateDataKey", "kms:Decrypt"),
           **{action: ("kms:Decrypt",) for action in TABLE_ACTIONS}}
BUCKET_ACTIONS = frozenset({"s3:ListBucket"})


@dataclass(frozen=True)
class Access:
    """One function: where its code starts, how to find its role, the data it may touch, and what the
    platform (not its code) calls with its role."""

    name: str
    entry: str  # module whose import graph is the function's code
    role: str  # "lambda:HANDLER" (the function with this handler) or "batch-job" (the job definition's role)
    reads: tuple[str, ...] = ()  # "BucketLogicalIdPrefix/prefix/*" object scopes the code reads
    writes: tuple[str, ...] = ()  # ... and writes
    platform: frozenset[str] = field(default_factory=frozenset)  # actions the runtime uses (logs, X-Ray, SQS)
    services: tuple[str, ...] = ("s3", "batch", "sqs")  # services whose operations count as calls
    # Other actions -> the resources (logical id prefixes) they must be allowed on, and only on.
    targets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    only_with: str = ""  # a logical id prefix: the function exists only on stages whose template has it


LAMBDA_PLATFORM = frozenset({"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments",
                             "xray:PutTelemetryRecords"})
SQS_EVENT_SOURCE = frozenset({"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                              "sqs:GetQueueAttributes", "sqs:GetQueueUrl"})
STORE = "ModelStoreBucket/models/*"
INPUTS = "BatchEventsDataBucket/inputs/*"
OUTPUTS = "BatchEventsDataBucket/outputs/*"
CAPTURE = "BatchEventsDataBucket/capture/*"
SHADOW = "BatchEventsDataBucket/shadow/*"
DRIFT_REPORTS = "ModelStoreBucket/models/*/versions/*/drift/*"
JOB_RECORDS = "BatchEventsDataBucket/jobs/*"
JOB_INPUTS = "BatchEventsDataBucket/inputs/*/jobs/*"
JOB_OUTPUTS = "BatchEventsDataBucket/outputs/*/jobs/*"

BUCKETS = ("ModelStoreBucket", "BatchEventsDataBucket")
KEY = "FoundationKey"
DATA_TARGETS = {"s3:ListBucket": BUCKETS, "kms:GenerateDataKey": (KEY,)}
CONSUMER_TABLE = "ConsumersTable"  # infra/consumers.py: stages with auth type apiKey only
TABLE_TARGETS = {action: (CONSUMER_TABLE,) for action in TABLE_ACTIONS}
STAGE_SERVICES = {"dynamodb": CONSUMER_TABLE}
"""Services whose only resource some stages lack: their calls count where the template has that resource
(the code that makes them is there on every stage, switched on by the stage's environment)."""

FUNCTIONS: tuple[Access, ...] = (
    Access("api", "functions.api.handler", "lambda:functions.api.handler.handler",
           reads=(STORE, JOB_OUTPUTS, SHADOW),
           writes=(JOB_RECORDS, JOB_INPUTS), platform=LAMBDA_PLATFORM,
           targets={**DATA_TARGETS, **TABLE_TARGETS, "kms:Decrypt": (KEY,)},
           services=("s3", "batch", "sqs", "dynamodb")),
    Access("batch", "functions.batch.handler", "lambda:functions.batch.handler.handler", reads=(STORE, INPUTS),
           writes=(OUTPUTS,), platform=LAMBDA_PLATFORM | SQS_EVENT_SOURCE | {"kms:Decrypt"},
           targets={**DATA_TARGETS, **TABLE_TARGETS, "kms:Decrypt": (KEY, "BatchEventsQueueKey"),
                    "batch:SubmitJob": ("GpuBatchQueue", "GpuBatchWorker"),
                    "states:StartExecution": ("BatchFanoutStateMachine",)},
           services=("s3", "batch", "sqs", "stepfunctions", "dynamodb")),
    Access("gpu-worker", "functions.batch.worker", "batch-job", reads=(STORE, INPUTS), writes=(OUTPUTS,),
           targets={**DATA_TARGETS, **TABLE_TARGETS, "kms:Decrypt": (KEY,)},
           services=("s3", "batch", "sqs", "dynamodb")),
    Access("fanout", "functions.batch.fanout_handler", "lambda:functions.batch.fanout_handler.handler",
           reads=(STORE, INPUTS), writes=(OUTPUTS,), platform=LAMBDA_PLATFORM,
           targets={**DATA_TARGETS, **TABLE_TARGETS, "kms:Decrypt": (KEY,)},
           services=("s3", "batch", "sqs", "dynamodb")),
    Access("drift", "functions.drift.handler", "lambda:functions.drift.handler.handler", reads=(STORE, CAPTURE),
           writes=(DRIFT_REPORTS,), platform=LAMBDA_PLATFORM, targets={**DATA_TARGETS, "kms:Decrypt": (KEY,)}),
    Access("authorizer", "functions.consumers.authorizer", "lambda:functions.consumers.authorizer.handler",
           platform=LAMBDA_PLATFORM, targets={**TABLE_TARGETS, "kms:Decrypt": (KEY,)}, services=("dynamodb",),
           only_with=CONSUMER_TABLE),
)


# ---- calls the code makes ---------------------------------------------------------------------------------


@cache
def _operations(service: str) -> dict[str, str]:
    """Python method name -> botocore operation name for one service."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def _parse(module: str, root: Path) -> ast.Module | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return ast.parse(candidate.read_text())
    return None


def reachable_modules(entry: str, root: Path = PROJECT_ROOT) -> dict[str, ast.Module]:
    """``functions`` modules the entry reaches through imports (lazy ones included)."""
    from infra.locking import module_imports

    found: dict[str, ast.Module] = {}
    pending = [entry]
    while pending:
        module = pending.pop()
        if module in found:
            continue
        tree = _parse(module, root)
        if tree is None:
            continue
        found[module] = tree
        for name in module_imports(tree, module):
            if name.split(".")[0] == "functions":
                parts = name.split(".")
                pending += [".".join(parts[:i]) for i in range(2, len(parts) + 1)]
    return found


def _referenced_names(nodes: Iterable[ast.AST]) -> set[str]:
    return {name for name, _ in _references(nodes)}


def _references(nodes: Iterable[ast.AST]) -> set[tuple[str, bool]]:
    """(name, referenced as an attribute) for every name and attribute in ``nodes``."""
    found: set[tuple[str, bool]] = set()
    for node in nodes:
        for child in _walk_code(node):
            if isinstance(child, ast.Name):
                found.add((child.id, False))
            elif isinstance(child, ast.Attribute):
                found.add((child.attr, True))
    return found


def _walk_code(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` without annotations: under ``from __future__ import annotations`` they never run, so a
    type named only in a signature (``keyring: Keyring | None``) is not in use."""
    pending = [node]
    while pending:
        current = pending.pop()
        yield current
        for name, value in ast.iter_fields(current):
            if name in ("annotation", "returns"):
                continue
            children = value if isinstance(value, list) else [value]
            pending += [child for child in children if isinstance(child, ast.AST)]


def code_calls(entry: str, services: Iterable[str] = ("s3", "batch", "sqs"),
               root: Path = PROJECT_ROOT) -> dict[str, set[str]]:
    """IAM action -> the "module:function" call sites that need it, for the code reachable from ``entry``."""
    modules = reachable_modules(entry, root)
    # name -> (module, owning class or "", definition)
    definitions: dict[str, list[tuple[str, str, ast.AST]]] = {}
    roots: list[ast.AST] = []
    for module, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                definitions.setdefault(node.name, []).append((module, "", node))
                for method in node.body:
                    if isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
                        definitions.setdefault(method.name, []).append((module, node.name, method))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                definitions.setdefault(node.name, [])
                if not any(node is d for _, _, d in definitions[node.name]):
                    definitions[node.name].append((module, "", node))
                if node.decorator_list:
                    roots.append(node)  # routes and registered hooks are called by a framework
        roots += [stmt for stmt in tree.body if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef
                                                                   | ast.ClassDef)]
    # A method runs only if its class is in use (named by reachable code) and its name is referenced as an
    # attribute (``x.usage(...)``; a local variable ``usage`` calls no method).
    references = _references(roots) | {("handler", False), ("main", False)}
    names = {name for name, _ in references}
    attributes = {name for name, attribute in references if attribute}
    reached: dict[int, tuple[str, ast.AST]] = {}
    changed = True
    while changed:
        changed = False
        for name in sorted(names):
            for module, owner, node in definitions.get(name, []):
                if id(node) in reached or (owner and (owner not in names or name not in attributes)):
                    continue
                reached[id(node)] = (f"{module}:{owner + '.' if owner else ''}{name}", node)
                body = [n for n in node.body if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)] \
                    if isinstance(node, ast.ClassDef) else node.body  # type: ignore[attr-defined]
                if isinstance(node, ast.ClassDef):
                    body += [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name.startswith("__")]
                new = _references(body) - references
                if new:
                    references |= new
                    names |= {n for n, _ in new}
                    attributes |= {n for n, attribute in new if attribute}
                    changed = True
    bodies = [(site, node) for site, node in reached.values() if not isinstance(node, ast.ClassDef)]
    created = {s for _, node in bodies for s in _clients_created(node)}
    created |= {s for tree in modules.values() for s in _clients_created(tree)}
    calls: dict[str, set[str]] = {}
    for site, node in bodies:
        for service in sorted(created & set(services)):
            if not site.startswith(SERVICE_MODULES.get(service, "")):
                continue
            for operation in _operations_called(node, service):
                for action in IAM_ACTION.get(f"{service}:{operation}", (f"{service}:{operation}",)):
                    calls.setdefault(action, set()).add(site)
                    # The buckets are KMS-encrypted: reading decrypts, writing asks for a data key.
                    for key_action in KMS_FOR.get(action, ()):
                        calls.setdefault(key_action, set()).add(site)
    return calls


def _clients_created(node: ast.AST) -> set[str]:
    services = set()
    for child in ast.walk(node):
        if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                and child.func.attr in ("client", "resource")
                and child.args and isinstance(child.args[0], ast.Constant) and isinstance(child.args[0].value, str)):
            services.add(child.args[0].value)
    return services


def _operations_called(node: ast.AST, service: str) -> set[str]:
    operations = _operations(service)
    helpers = CLIENT_HELPERS.get(service, {})
    found: set[str] = set()
    for child in ast.walk(node):
        if not (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)):
            continue
        method = child.func.attr
        if method in helpers:
            found |= set(helpers[method])
        elif method in ("get_paginator", *CALL_THROUGH) and child.args and isinstance(child.args[0], ast.Constant):
            found.add(operations.get(str(child.args[0].value), ""))
        elif method in operations and method not in ("get_paginator", "get_waiter", "can_paginate"):
            found.add(operations[method])
    return found - {""}


# ---- what the template grants -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One allowed (action, resource) pair; the resource as "LogicalId", "LogicalId/path" or "*"."""

    action: str
    resource: str
    policy: str


def resolve(value: Any) -> str:
    """A CloudFormation resource expression as text: GetAtt/Ref -> logical id, Join -> joined, else as is."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return str(separator).join(resolve(p) for p in parts)
        if "Fn::Sub" in value:
            return str(value["Fn::Sub"])
    return str(value)


def role_of(template: Mapping[str, Any], locator: str) -> str:
    """Logical id of the role a function runs as."""
    resources = template["Resources"]
    if locator.startswith("lambda:"):
        handler = locator.removeprefix("lambda:")
        roles = [resolve(r["Properties"]["Role"]) for r in resources.values()
                 if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler") == handler]
    else:
        roles = [resolve(r["Properties"]["ContainerProperties"]["JobRoleArn"]) for r in resources.values()
                 if r["Type"] == "AWS::Batch::JobDefinition"]
    if len(roles) != 1:
        raise LookupError(f"expected one role for {locator}, found {roles}")
    return roles[0]


def grants(template: Mapping[str, Any], role: str) -> list[Grant]:
    """Every allowed (action, resource) of the policies attached to ``role`` (inline and AWS::IAM::Policy)."""
    documents: list[tuple[str, Mapping[str, Any]]] = []
    for lid, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Policy" and role in [resolve(r) for r in properties.get("Roles", [])]:
            documents.append((lid, properties["PolicyDocument"]))
        if resource["Type"] == "AWS::IAM::Role" and lid == role:
            documents += [(f"{lid}.{p.get('PolicyName')}", p["PolicyDocument"]) for p in properties.get("Policies", [])]
    found = []
    for policy, document in documents:
        for statement in document["Statement"]:
            if statement.get("Effect") != "Allow":
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            found += [Grant(a, resolve(r), policy) for a in actions for r in resources]
    return found


def _matches(pattern: str, value: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(value, pattern)


def _scope_matches(grant_resource: str, scope: str) -> bool:
    """Does a granted object resource ("ModelStoreBucket9405F36E/models/*") lie within a declared scope
    ("ModelStoreBucket/models/*"), up to CDK's logical id hash? (Equal paths, or a narrower grant.)"""
    bucket, _, path = scope.partition("/")
    granted_bucket, _, granted_path = grant_resource.partition("/")
    return granted_bucket.startswith(bucket) and _matches(path, granted_path)


def _grant_covers(grant_resource: str, scope: str) -> bool:
    """Does a granted object resource cover every key of a declared scope (a drift report under models/*)?"""
    bucket, _, path = scope.partition("/")
    granted_bucket, _, granted_path = grant_resource.partition("/")
    return granted_bucket.startswith(bucket) and _matches(granted_path, path)


def coverage_problems(access: Access, template: Mapping[str, Any], calls: Mapping[str, set[str]]) -> list[str]:
    """What is missing from, or wider than, ``access``'s role given the calls its code makes."""
    role = role_of(template, access.role)
    allowed = grants(template, role)
    problems: list[str] = []
    for action, sites in sorted(calls.items()):
        scopes = _scopes_for(access, action)
        for scope in scopes:
            if not any(_matches(g.action, action) and (g.resource == "*" or _grant_covers(g.resource, scope))
                       for g in allowed):
                problems.append(f"{access.name}: {action} on {scope} is needed by {sorted(sites)[0]} "
                                f"but {role} does not allow it")
        for target in access.targets.get(action, ()):
            if not any(_matches(g.action, action) and g.resource.startswith(target) for g in allowed):
                problems.append(f"{access.name}: {action} on {target} is needed by {sorted(sites)[0]} "
                                f"but {role} does not allow it")
        if not scopes and not any(_matches(g.action, action) for g in allowed):
            problems.append(f"{access.name}: {action} is needed by {sorted(sites)[0]} but {role} does not allow it")
    for grant in allowed:
        needed = grant.action in calls or grant.action in access.platform
        if "*" in grant.action or not needed:
            problems.append(f"{access.name}: {grant.policy} allows {grant.action} on {grant.resource}, "
                            "which no call of its code needs")
        elif grant.resource == "*" and grant.action not in RESOURCELESS:
            problems.append(f"{access.name}: {grant.policy} allows {grant.action} on every resource")
        elif grant.action in access.targets and not grant.resource.startswith(access.targets[grant.action]):
            problems.append(f"{access.name}: {grant.policy} allows {grant.action} on {grant.resource}, "
                            f"not one of {', '.join(access.targets[grant.action])}")
        elif grant.action.startswith(OBJECT_ACTIONS_PREFIX) and grant.action not in BUCKET_ACTIONS:
            scopes = _scopes_for(access, grant.action)
            if not any(_scope_matches(grant.resource, s) for s in scopes):
                problems.append(f"{access.name}: {grant.policy} allows {grant.action} on {grant.resource}, "
                                f"outside what it {'writes' if grant.action in WRITE_ACTIONS else 'reads'}")
    return problems


WRITE_ACTIONS = frozenset({"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"})


def _scopes_for(access: Access, action: str) -> tuple[str, ...]:
    if not action.startswith(OBJECT_ACTIONS_PREFIX) or action in BUCKET_ACTIONS:
        return ()
    return access.writes if action in WRITE_ACTIONS else access.reads + access.writes


def check_all(template: Mapping[str, Any], functions: Iterable[Access] = FUNCTIONS) -> list[str]:
    """Every problem of every function's role in one template (functions and services the stage deploys)."""
    problems: list[str] = []
    for access in functions:
        if access.only_with and not _has_resource(template, access.only_with):
            continue
        services = [s for s in access.services
                    if s not in STAGE_SERVICES or _has_resource(template, STAGE_SERVICES[s])]
        problems += coverage_problems(access, template, code_calls(access.entry, services))
    return problems


def _has_resource(template: Mapping[str, Any], logical_id_prefix: str) -> bool:
    return any(lid.startswith(logical_id_prefix) for lid in template["Resources"])
