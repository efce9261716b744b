"""Creates the AWS resources the local stack needs, and keeps S3 across restarts.

Works against any endpoint speaking the AWS APIs on :4566 (moto server or LocalStack).
- Buckets. moto keeps everything in memory, so `stockpred down` snapshots the project's buckets
  into `.local/data/s3/` and `stockpred up` puts them back: models survive a restart.
- State machines: every `AWS::Serverless::StateMachine` of template.yaml, its definition file
  with `DefinitionSubstitutions` filled in (a function's `!GetAtt X.Arn` becomes the local ARN
  of X, which devstack's Lambda Invoke API serves), named by its logical id.
- Queues: every `AWS::SQS::Queue` of template.yaml, named by its logical id, with its visibility
  timeout, retention and redrive policy (the dead-letter queue's `!GetAtt X.Arn` becomes the
  local ARN of queue X). devstack/queues.py polls the ones a function's SQS event names.
- Secrets: the ones the functions read from Secrets Manager (their `*_SECRET_ARN` variables name
  them), with the local stack's values; created, or given the new value, at every start.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from devstack.template import LOCAL_ACCOUNT, LOCAL_REGION, Template

BUCKETS = ("stockpred-models", "stockpred-warehouse", "stockpred-market-data", "stockpred-log-dead-letters")
# The variable a function reads a secret's name from, and the secret's name locally.
SECRETS = {
    "JWT_SECRET_ARN": "stockpred/jwt-secret",
    "SERVICE_TOKEN_SECRET_ARN": "stockpred/service-token",
    "PSEUDONYM_KEY_SECRET_ARN": "stockpred/pseudonym-key",
    "DATABASE_SECRET_ARN": "stockpred/database",
    "MONGO_SECRET_ARN": "stockpred/mongo",
    "ALPHAVANTAGE_SECRET_ARN": "stockpred/alphavantage",
}
# The AUTH passwords of the stack's own Redis processes: only when it runs them.
REDIS_SECRETS = {
    "REDIS_AUTH_SECRET_ARN": "stockpred/redis-auth",
    "CACHE_AUTH_SECRET_ARN": "stockpred/cache-redis-auth",
}


def _s3(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def state_machine_definitions(template: Template) -> dict[str, str]:
    """Logical id -> definition JSON with its substitutions resolved to local ARNs."""
    out = {}
    for lid, res in template.raw.get("Resources", {}).items():
        if res.get("Type") != "AWS::Serverless::StateMachine":
            continue
        props = res["Properties"]
        text = (template.path.parent / props["DefinitionUri"]).read_text()
        for name, value in (props.get("DefinitionSubstitutions") or {}).items():
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                target, attr = value["Fn::GetAtt"]
                if attr != "Arn" or target not in template.functions:
                    raise ValueError(f"{lid}: cannot resolve substitution {name} locally")
                value = template.functions[target].arn
            elif isinstance(value, dict) and str(value.get("Ref", "")).endswith(".Alias"):
                target = value["Ref"].removesuffix(".Alias")
                if target not in template.functions:
                    raise ValueError(f"{lid}: cannot resolve substitution {name} locally")
                value = f"{template.functions[target].arn}:{template.alias or '$LATEST'}"
            text = text.replace("${" + name + "}", str(value))
        json.loads(text)
        out[lid] = text
    return out


def provision_state_machines(endpoint: str, template: Template) -> list[str]:
    sfn = boto3.client("stepfunctions", endpoint_url=endpoint, region_name=LOCAL_REGION,
                       aws_access_key_id="test", aws_secret_access_key="test")
    existing = {m["name"]: m["stateMachineArn"]
                for m in sfn.list_state_machines().get("stateMachines", [])}
    role = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/stockpred-local-states"
    arns = []
    for name, definition in state_machine_definitions(template).items():
        if name in existing:
            sfn.update_state_machine(stateMachineArn=existing[name], definition=definition)
            arns.append(existing[name])
        else:
            arns.append(sfn.create_state_machine(name=name, definition=definition, roleArn=role,
                                                 type="STANDARD")["stateMachineArn"])
    return arns


def queue_url(endpoint: str, logical_id: str) -> str:
    """The local URL of the template's queue `logical_id` (moto's form)."""
    return f"{endpoint.rstrip('/')}/{LOCAL_ACCOUNT}/{logical_id}"


def provision_queues(endpoint: str, template: Template) -> dict[str, str]:
    """Creates (or updates) the template's SQS queues, dead-letter queues first; logical id -> URL."""
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=LOCAL_REGION,
                       aws_access_key_id="test", aws_secret_access_key="test")
    queues = {lid: res.get("Properties") or {} for lid, res in template.raw.get("Resources", {}).items()
              if res.get("Type") == "AWS::SQS::Queue"}
    urls = {}
    for lid in sorted(queues, key=lambda q: "RedrivePolicy" in queues[q]):
        props = queues[lid]
        attributes = {name: str(props[name]) for name in
                      ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds") if name in props}
        if "RedrivePolicy" in props:
            redrive = dict(props["RedrivePolicy"])
            target = redrive["deadLetterTargetArn"]
            if isinstance(target, dict):
                dead_letter = target["Fn::GetAtt"][0]
                if dead_letter not in queues:
                    raise ValueError(f"{lid}: dead-letter queue {dead_letter} is not in the template")
                redrive["deadLetterTargetArn"] = f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{dead_letter}"
            attributes["RedrivePolicy"] = json.dumps(redrive)
        url = sqs.create_queue(QueueName=lid)["QueueUrl"]
        if attributes:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        urls[lid] = url
    return urls


def provision_secrets(endpoint: str, values: dict[str, str], region: str = LOCAL_REGION) -> dict[str, str]:
    """Creates each secret (name -> value), or puts the value as its new current version when it
    differs; idempotent. Returns name -> ARN."""
    sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=region,
                      aws_access_key_id="test", aws_secret_access_key="test")
    arns = {}
    for name, value in values.items():
        try:
            current = sm.get_secret_value(SecretId=name)
        except sm.exceptions.ResourceNotFoundException:
            arns[name] = sm.create_secret(Name=name, SecretString=value)["ARN"]
            continue
        if current.get("SecretString") != value:
            sm.put_secret_value(SecretId=name, SecretString=value)
        arns[name] = current["ARN"]
    return arns


def provision(endpoint: str, snapshot_dir: Path | None = None) -> dict[str, int]:
    """Creates the buckets; restores their snapshot if there is one. Returns objects restored."""
    s3 = _s3(endpoint)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    restored: dict[str, int] = {}
    for bucket in BUCKETS:
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
        restored[bucket] = 0
        folder = snapshot_dir / bucket if snapshot_dir else None
        if folder and folder.is_dir():
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                s3.put_object(Bucket=bucket, Key=path.relative_to(folder).as_posix(),
                              Body=path.read_bytes())
                restored[bucket] += 1
    return restored


def snapshot(endpoint: str, snapshot_dir: Path) -> dict[str, int]:
    """Writes every object of the project's buckets under snapshot_dir/<bucket>/<key>."""
    s3 = _s3(endpoint)
    saved: dict[str, int] = {}
    for bucket in BUCKETS:
        folder = snapshot_dir / bucket
        tmp = snapshot_dir / f".{bucket}.tmp"
        count = 0
        paginator = s3.get_paginator("list_objects_v2")
        try:
            pages = list(paginator.paginate(Bucket=bucket))
        except s3.exceptions.NoSuchBucket:
            continue
        for page in pages:
            for obj in page.get("Contents", []):
                target = tmp / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
                count += 1
        if folder.exists():
            _rmtree(folder)
        if tmp.exists():
            tmp.rename(folder)
        saved[bucket] = count
    return saved


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
