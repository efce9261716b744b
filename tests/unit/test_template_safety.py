"""A stack a careful operator would deploy: what AWS's documented rules, checkov and SAM's own
transform say of template.yaml. Each test names the property a reviewer can point at.

The first deploy: cluster mode where the cache is sharded, a version for a layer-only change,
the service-linked role, a major engine version, a WebSocket redeploy on a route change, API
functions inside API Gateway's 29 s, the saga retrying what AWS calls retryable. Safe by default:
one front door, limits, authenticated and encrypted stores, data that outlives the stack. Watched:
alarms, traces, access logs, no silent asynchronous failure. And checkov, with every skip argued.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from devstack.services import REPO_ROOT
from tests.unit.test_infrastructure import (
    SAM_PYTHON,
    TEMPLATE,
    env,
    functions,
    getatt,
    props,
    ref,
    resources,
    run_tool,
    sub_text,
    template,
    translated,
)

CHECKOV = REPO_ROOT / ".tools/checkov/bin/checkov"
API_GATEWAY_LIMIT_S = 29
# Functions that must not run twice or must not starve the rest, and how many may run at once.
RESERVED = {"RecoveryFunction": 1, "RetrainFunction": 5, "LogShipperFunction": 10, "FanoutFunction": 20}
# Where nobody waits on a cold start: SnapStart's snapshot cache would be paid for nothing.
NO_SNAPSTART = {"RetrainFunction", "EtlRunFunction", "RecoveryFunction", "LogShipperFunction",
                "LogsFunction", "FanoutFunction"}
LAMBDA_RETRYABLE = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException"}


def api_functions() -> set[str]:
    return {fn for fn, p in functions().items()
            if any(ev.get("Type") == "Api" for ev in (p.get("Events") or {}).values())}


def condition_if(value: Any) -> list[Any]:
    return value.get("Fn::If") if isinstance(value, dict) else None


# ---- 1. the first deploy -------------------------------------------------------------------------
def test_the_sharded_cache_is_a_cluster_mode_group_with_its_configuration_endpoint():
    cache = props("CacheReplicationGroup")
    assert cache["ClusterMode"] == "enabled"
    assert cache["CacheParameterGroupName"].endswith(".cluster.on"), \
        "more than one node group needs a cluster-mode parameter group"
    groups = template()["Parameters"][ref(cache["NumNodeGroups"])]
    assert groups["MinValue"] == 1, "a trial may lower the shards to one and stay in cluster mode"
    url = sub_text(env("StocksFunction")["CACHE_CLUSTER_URL"])
    assert "CacheReplicationGroup.ConfigurationEndPoint.Address" in url
    assert env("StocksFunction")["CACHE_MODE"] == "cluster"


TRANSLATE_WITH_LAYER = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:
    def load(self):
        return {}

tpl = yaml_parse(open(sys.argv[1]).read())
for lid, res in tpl["Resources"].items():
    for key in ("CodeUri", "ContentUri", "DefinitionUri"):
        if key in res.get("Properties", {}):
            res["Properties"][key] = sys.argv[2] if lid == "CommonLayer" else "s3://bucket/key"
json.dump(transform(tpl, {}, NoManagedPolicies()), sys.stdout)
"""


def versions_with_common_layer(tmp_path: Path, uri: str) -> dict[str, set[str]]:
    script = tmp_path / "translate.py"
    script.write_text(TRANSLATE_WITH_LAYER)
    result = run_tool(SAM_PYTHON, "The SAM CLI's Python", [str(script), str(TEMPLATE), uri])
    assert result.returncode == 0, result.stderr
    cfn = json.loads(result.stdout)["Resources"]
    return {"versions": {lid for lid, r in cfn.items() if r["Type"] == "AWS::Lambda::Version"},
            "layers": {lid for lid, r in cfn.items() if r["Type"] == "AWS::Lambda::LayerVersion"}}


def test_a_layer_only_change_publishes_a_new_version_of_every_function_using_it(tmp_path):
    """Almost all behaviour lives in the layers and every caller uses `live`: a fix in a layer
    must give each function a new AWS::Lambda::Version, or it never ships."""
    before = versions_with_common_layer(tmp_path, "s3://bucket/common-1.zip")
    after = versions_with_common_layer(tmp_path, "s3://bucket/common-2.zip")
    assert before["layers"] != after["layers"]
    unchanged = before["versions"] & after["versions"]
    assert not unchanged, f"versions that a CommonLayer change does not replace: {sorted(unchanged)}"
    assert len(before["versions"]) == len(functions())


def test_every_caller_invokes_the_live_alias():
    assert ref(env("PredictFunction")["TRAIN_FUNCTION_NAME"]) == "RetrainFunction.Alias"
    for fn, p in functions().items():
        assert p.get("AutoPublishAliasAllProperties") is True, fn


def test_the_opensearch_service_linked_role_is_created_unless_the_operator_says_it_exists():
    role = template()["Resources"]["OpenSearchServiceLinkedRole"]
    assert role["Type"] == "AWS::IAM::ServiceLinkedRole" and role["Condition"] == "CreateSearchRole"
    assert role["Properties"]["AWSServiceName"] == "opensearchservice.amazonaws.com"
    assert template()["Conditions"]["CreateSearchRole"] == \
        {"Fn::Equals": [{"Ref": "CreateOpenSearchServiceLinkedRole"}, "true"]}
    # The domain names the role (a DependsOn may not name a resource whose condition is false).
    tags = {t["Key"]: t["Value"] for t in props("LogDomain")["Tags"]}
    condition, created, existing = condition_if(tags["stockpred:service-linked-role"])
    assert (condition, ref(created), existing) == \
        ("CreateSearchRole", "OpenSearchServiceLinkedRole", "existing")


def test_postgres_pins_the_major_version_only():
    version = props("Database")["EngineVersion"]
    assert re.fullmatch(r"\d+", version), f"{version}: a minor pin turns a later update into a downgrade"
    family = props("DatabaseParameterGroup")["Family"]
    assert family == f"postgres{version}"
    assert props("Database")["AllowMajorVersionUpgrade"] is False


def websocket_deployment_digest() -> str:
    kinds = ("AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::Integration", "AWS::ApiGatewayV2::RouteResponse")
    deployed = {lid: r for lid, r in template()["Resources"].items() if r["Type"] in kinds}
    return hashlib.sha256(json.dumps(deployed, sort_keys=True).encode()).hexdigest()[:8]


def test_a_websocket_route_change_makes_a_new_deployment():
    (deployment,) = resources("AWS::ApiGatewayV2::Deployment")
    expected = f"WebSocketDeployment{websocket_deployment_digest()}"
    assert deployment == expected, \
        f"the WebSocket routes changed: rename {deployment} to {expected} (and the stage's DeploymentId)"
    assert ref(props("WebSocketStage")["DeploymentId"]) == deployment
    routes = set(resources("AWS::ApiGatewayV2::Route")) | set(resources("AWS::ApiGatewayV2::RouteResponse"))
    assert routes <= set(template()["Resources"][deployment]["DependsOn"])


def test_every_api_function_answers_inside_api_gateways_integration_limit():
    assert api_functions() >= {"StocksFunction", "UsersFunction", "PredictFunction", "EtlFunction"}
    for fn in api_functions():
        assert functions()[fn]["Timeout"] < API_GATEWAY_LIMIT_S, \
            f"{fn}: API Gateway answers 504 at {API_GATEWAY_LIMIT_S} s while the function runs on"


def tasks(states: dict[str, Any]):
    for name, state in states.items():
        if state.get("Type") == "Task":
            yield name, state
        for branch in state.get("Branches", []):
            yield from tasks(branch["States"])


def test_every_saga_task_retries_the_errors_aws_documents_as_retryable():
    definition = json.loads((REPO_ROOT / "statemachines/trade.asl.json").read_text())
    found = list(tasks(definition["States"]))
    assert len(found) >= 6
    for name, state in found:
        retried = {e for r in state.get("Retry", []) for e in r["ErrorEquals"]}
        assert "States.ALL" in retried or retried >= LAMBDA_RETRYABLE, \
            f"{name} does not retry {sorted(LAMBDA_RETRYABLE - retried)}"


# ---- 2. safe by default --------------------------------------------------------------------------
def test_one_front_door_a_regional_api_behind_cloudfront_with_a_secret_header():
    api = template()["Globals"]["Api"]
    assert api["EndpointConfiguration"]["Type"] == "REGIONAL", "an EDGE API is a second CloudFront"
    config = props("DashboardDistribution")["DistributionConfig"]
    (origin,) = [o for o in config["Origins"] if o["Id"] == "rest-api"]
    (header,) = origin["OriginCustomHeaders"]
    assert header["HeaderName"] == "X-Origin-Verify"
    assert sub_text(header["HeaderValue"]) == "{{resolve:secretsmanager:${OriginVerifySecret}}}"
    assert ref(env("StocksFunction")["ORIGIN_VERIFY_SECRET_ARN"]) == "OriginVerifySecret"


def test_the_dashboard_on_its_own_domain_needs_tls_1_2_and_may_have_a_web_acl():
    config = props("DashboardDistribution")["DistributionConfig"]
    condition, own, default = condition_if(config["ViewerCertificate"])
    assert condition == "HasDashboardDomain"
    assert own["MinimumProtocolVersion"] == "TLSv1.2_2021" and own["SslSupportMethod"] == "sni-only"
    assert ref(own["AcmCertificateArn"]) == "DashboardCertificateArn"
    assert default == {"CloudFrontDefaultCertificate": True}
    assert condition_if(config["Aliases"])[0] == "HasDashboardDomain"
    condition, acl, _ = condition_if(config["WebACLId"])
    assert (condition, ref(acl)) == ("HasDashboardWebAcl", "DashboardWebAclArn")
    certificate = template()["Parameters"]["DashboardCertificateArn"]["AllowedPattern"]
    assert re.fullmatch(certificate, "arn:aws:acm:us-east-1:123456789012:certificate/0a1b-2c3d")
    assert not re.fullmatch(certificate, "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b"), \
        "CloudFront takes certificates from us-east-1 only"


def test_the_stage_is_throttled_and_the_functions_that_must_not_run_wild_are_reserved():
    (settings,) = template()["Globals"]["Api"]["MethodSettings"]
    assert settings["ResourcePath"] == "/*" and settings["HttpMethod"] == "*"
    assert 0 < settings["ThrottlingRateLimit"] <= settings["ThrottlingBurstLimit"]
    assert props("WebSocketStage")["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0
    for fn, count in RESERVED.items():
        condition, reserved, _ = condition_if(functions()[fn]["ReservedConcurrentExecutions"])
        assert (condition, reserved) == ("Reserve", count), fn
    assert sum(RESERVED.values()) + 100 <= 136 + 100, "the parameter's description names the total"
    assert f"{sum(RESERVED.values())} in all" in template()["Parameters"]["ReserveConcurrency"]["Description"]
    fanout_source = functions()["FanoutFunction"]["Events"]["Pushes"]["Properties"]
    assert fanout_source["ScalingConfig"]["MaximumConcurrency"] <= RESERVED["FanoutFunction"]


def test_both_redis_groups_require_tls_and_the_auth_token_the_functions_read():
    for group in ("StateRedis", "CacheReplicationGroup"):
        p = props(group)
        assert p["TransitEncryptionEnabled"] is True and p["AtRestEncryptionEnabled"] is True
        assert sub_text(p["AuthToken"]) == "{{resolve:secretsmanager:${RedisAuthSecret}}}", group
    assert ref(env("StocksFunction")["CACHE_AUTH_SECRET_ARN"]) == "RedisAuthSecret"
    condition, arn, _ = condition_if(env("StocksFunction")["REDIS_AUTH_SECRET_ARN"])
    assert (condition, ref(arn)) == ("CreateStateRedis", "RedisAuthSecret")


def test_databases_take_tls_only_keep_snapshots_and_refuse_deletion():
    assert props("DatabaseParameterGroup")["Parameters"]["rds.force_ssl"] == "1"
    assert props("MongoParameterGroup")["Parameters"]["tls"] == "enabled"
    for db in ("Database", "MongoCluster"):
        res = template()["Resources"][db]
        assert res["DeletionPolicy"] == res["UpdateReplacePolicy"] == "Snapshot", db
        assert res["Properties"]["DeletionProtection"] is True, db


def test_documentdb_account_reads_go_to_the_primary():
    """A replica (the obvious HA step) would let the saga read a stale balance."""
    from stockpred.cloud import secrets

    url = secrets.mongo_url_from({"username": "u", "password": "p", "host": "h"}, ca_file="/ca.pem")
    assert "readPreference=primary" in url and "secondaryPreferred" not in url


DATA_BUCKETS = ("ModelBucket", "MarketDataBucket", "WarehouseBucket")


def bucket_policy(bucket: str) -> dict[str, Any]:
    (policy,) = [p for p in map(props, resources("AWS::S3::BucketPolicy")) if ref(p["Bucket"]) == bucket]
    return policy["PolicyDocument"]


def test_every_bucket_refuses_plain_http_and_the_data_buckets_outlive_the_stack():
    for bucket in resources("AWS::S3::Bucket"):
        deny = [s for s in bucket_policy(bucket)["Statement"] if s["Effect"] == "Deny"]
        assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and s["Action"] == "s3:*"
                   for s in deny), f"{bucket} takes requests over plain HTTP"
    for bucket in DATA_BUCKETS:
        res = template()["Resources"][bucket]
        assert res["DeletionPolicy"] == res["UpdateReplacePolicy"] == "Retain", bucket


def rules(bucket: str) -> dict[str, dict[str, Any]]:
    return {r["Id"]: r for r in props(bucket)["LifecycleConfiguration"]["Rules"]}


def test_lifecycle_rules_expire_old_model_versions_and_athena_results():
    models = rules("ModelBucket")["ExpireOldModelVersions"]
    assert models["Prefix"] == "models/" and models["NoncurrentVersionExpiration"]["NoncurrentDays"] > 0
    athena = rules("WarehouseBucket")["ExpireAthenaResults"]
    work = props("AnalyticsWorkGroup")["WorkGroupConfiguration"]
    output = sub_text(work["ResultConfiguration"]["OutputLocation"])
    assert output.endswith("/" + athena["Prefix"]) and athena["ExpirationInDays"] <= 30
    assert work["EnforceWorkGroupConfiguration"] is True
    assert 0 < work["BytesScannedCutoffPerQuery"] <= 10 * 2**30


# ---- 3. watched when it runs ---------------------------------------------------------------------
def alarms() -> dict[str, dict[str, Any]]:
    return {lid: props(lid) for lid in resources("AWS::CloudWatch::Alarm")}


def alarmed(namespace: str, metric: str) -> list[dict[str, Any]]:
    return [a for a in alarms().values()
            if sub_text(a.get("Namespace")) == namespace and a.get("MetricName") == metric]


def test_every_alarm_notifies_the_topic_an_email_can_subscribe_to():
    assert alarms()
    for lid, alarm in alarms().items():
        assert [ref(a) for a in alarm["AlarmActions"]] == ["AlarmTopic"], lid
    subscription = template()["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert ref(subscription["Properties"]["Endpoint"]) == "AlarmEmail"


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_has_an_alarm_on_its_errors_and_throttles(metric):
    watched = {ref(a["Dimensions"][0]["Value"]) for a in alarmed("AWS/Lambda", metric)}
    assert watched == set(functions()), f"no {metric} alarm for {set(functions()) - watched}"


def test_the_failures_no_caller_sees_are_alarmed():
    queues = {getatt(a["Dimensions"][0]["Value"])[0]
              for a in alarmed("AWS/SQS", "ApproximateNumberOfMessagesVisible")}
    assert queues == {"PushDeadLetterQueue", "AsyncFailureQueue"}
    for metric in ("ExecutionsFailed", "ExecutionsTimedOut"):
        (alarm,) = alarmed("AWS/States", metric)
        assert ref(alarm["Dimensions"][0]["Value"]) == "TradeStateMachine"
    (doubt,) = alarmed("stockpred/${AWS::StackName}", "TradesInDoubt")
    assert sub_text(env("RecoveryFunction")["METRICS_NAMESPACE"]) == "stockpred/${AWS::StackName}"
    assert doubt["TreatMissingData"] == "breaching", "a recovery that stopped running is news too"


def test_the_stores_and_the_nat_are_alarmed():
    expected = {("AWS/RDS", "CPUUtilization"), ("AWS/RDS", "FreeStorageSpace"),
                ("AWS/RDS", "DatabaseConnections"),
                ("AWS/ElastiCache", "DatabaseMemoryUsagePercentage"), ("AWS/ElastiCache", "Evictions"),
                ("AWS/ES", "ClusterStatus.red"), ("AWS/NATGateway", "ErrorPortAllocation")}
    for namespace, metric in expected:
        assert alarmed(namespace, metric), f"no alarm on {namespace} {metric}"


def test_traces_and_access_logs_follow_every_request():
    assert template()["Globals"]["Function"]["Tracing"] == "Active"
    assert template()["Globals"]["Api"]["TracingEnabled"] is True
    assert props("TradeStateMachine")["Tracing"]["Enabled"] is True
    assert props("TradeStateMachine")["Logging"]["Level"] in ("ERROR", "ALL")
    rest = json.loads(template()["Globals"]["Api"]["AccessLogSetting"]["Format"])
    ws = json.loads(props("WebSocketStage")["AccessLogSettings"]["Format"])
    assert rest["requestId"] == ws["requestId"] == "$context.requestId"
    assert rest["xrayTraceId"] == "$context.xrayTraceId" and ws["connectionId"] == "$context.connectionId"


def test_what_sam_makes_may_deliver_the_logs_and_traces_the_template_asks_for(tmp_path):
    """Read in SAM's output, where a missing permission fails the deploy: the state machine's role
    may deliver its execution log (vended-log delivery takes `*`) and write traces, and the REST
    stage that logs waits for API Gateway's account CloudWatch role."""
    cfn = translated(tmp_path)
    role = cfn["TradeStateMachineRole"]["Properties"]
    actions = {a for p in role["Policies"] for st in p["PolicyDocument"]["Statement"]
               for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
               if st.get("Resource") == "*"}
    assert {"logs:CreateLogDelivery", "logs:PutResourcePolicy", "logs:DescribeLogGroups"} <= actions
    assert any(a.endswith("/AWSXrayWriteOnlyAccess") for a in role["ManagedPolicyArns"])
    (stage,) = [r["Properties"] for r in cfn.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert stage["AccessLogSetting"] and stage["TracingEnabled"] is True
    assert "ApiGatewayAccount" in json.dumps(stage["Variables"]), "the stage may log before the role is set"
    for lid, r in cfn.items():
        if r["Type"] == "AWS::Lambda::Function":
            assert r["Properties"]["TracingConfig"] == {"Mode": "Active"}, lid
            assert getatt(r["Properties"]["DeadLetterConfig"]["TargetArn"])[0] == "AsyncFailureQueue", lid


def test_no_asynchronous_failure_is_silent():
    dlq = template()["Globals"]["Function"]["DeadLetterQueue"]
    assert dlq["Type"] == "SQS" and getatt(dlq["TargetArn"]) == ("AsyncFailureQueue", "Arn")
    on_failure = functions()["RetrainFunction"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert getatt(on_failure["Destination"]) == ("AsyncFailureQueue", "Arn")
    schedules = [(fn, ev["Properties"]) for fn, p in functions().items()
                 for ev in (p.get("Events") or {}).values() if ev["Type"] == "Schedule"]
    assert len(schedules) >= 4
    for fn, schedule in schedules:
        assert getatt(schedule["DeadLetterConfig"]["Arn"]) == ("AsyncFailureQueue", "Arn"), fn
        assert "MaximumRetryAttempts" in schedule["RetryPolicy"], fn
    (statement,) = props("AsyncFailureQueuePolicy")["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}


def test_the_operations_dashboard_is_valid_json_with_the_first_graphs():
    body, variables = props("OperationsDashboard")["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([A-Za-z0-9:.]+)\}", body))
    text = body
    for name in names:
        text = text.replace("${" + name + "}", "x")
    widgets = json.loads(text)["widgets"]
    titles = " ".join(w["properties"]["title"] for w in widgets)
    for word in ("REST API", "errors", "Trades", "dead letters", "Cache", "NAT"):
        assert word in titles
    assert {n.split(".")[0] for n in names} - set(variables) - {"AWS::Region", "AWS::StackName"} \
        <= set(template()["Resources"])


# ---- 4. the outside checker ----------------------------------------------------------------------
def test_checkov_finds_no_failure_and_every_skip_gives_its_reason():
    result = run_tool(CHECKOV, "checkov", ["-f", str(TEMPLATE), "--framework", "cloudformation",
                                           "-o", "json"])
    report = json.loads(result.stdout)
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert not failed, failed
    assert report["summary"]["passed"] > 150
    for skipped in report["results"]["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason.split()) >= 8, \
            f"{skipped['check_id']} on {skipped['resource']}: skipped without a reason ({reason!r})"


# ---- 5. cost -------------------------------------------------------------------------------------
def test_snapstart_only_where_a_person_waits_on_a_cold_start():
    assert "SnapStart" not in template()["Globals"]["Function"]
    for fn, p in functions().items():
        has = p.get("SnapStart", {}).get("ApplyOn") == "PublishedVersions"
        assert has == (fn not in NO_SNAPSTART), fn
    assert api_functions() - {"LogsFunction"} <= {fn for fn in functions() if fn not in NO_SNAPSTART}


def test_the_small_parameter_set_names_real_parameters_with_allowed_values():
    path = REPO_ROOT / "deploy/small.parameters"
    overrides = dict(line.split("=", 1) for line in path.read_text().split() if "=" in line)
    parameters = template()["Parameters"]
    assert overrides and set(overrides) <= set(parameters)
    for name, value in overrides.items():
        spec = parameters[name]
        if "AllowedValues" in spec:
            assert value in map(str, spec["AllowedValues"]), name
        if spec["Type"] == "Number":
            low, high = spec.get("MinValue", float("-inf")), spec.get("MaxValue", float("inf"))
            assert low <= float(value) <= high, name
    assert overrides["CacheNodeGroups"] == "1" and overrides["DatabaseMultiAz"] == "false"
