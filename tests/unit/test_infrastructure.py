"""What would break the stack on AWS, checked on template.yaml read as data, and by AWS's own tools.

Where the template must follow the code (who pushes over WebSockets, who reads which secret), the
answer is derived from the code: each function's handler is followed, call by call, through its
own modules and the layers' (see `reached`), so a new call to the ledger or a new push shows up
here without anyone updating a list.
"""

from __future__ import annotations

import ast
import datetime as dt
import fnmatch
import functools
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.services import REPO_ROOT
from devstack.template import load_yaml
from stockpred.observability.logship import _function_of

TEMPLATE = REPO_ROOT / "template.yaml"
SAM = REPO_ROOT / ".tools/sam/bin/sam"
SAM_PYTHON = REPO_ROOT / ".tools/sam/bin/python"
ASL_VALIDATOR = REPO_ROOT / ".tools/node_modules/.bin/asl-validator"

SECRET_ARN_VARS = ("JWT_SECRET_ARN", "SERVICE_TOKEN_SECRET_ARN", "PSEUDONYM_KEY_SECRET_ARN",
                   "ALPHAVANTAGE_SECRET_ARN", "DATABASE_SECRET_ARN", "MONGO_SECRET_ARN")
OLD_SECRET_VARS = ("DATABASE_URL", "MONGO_URL", "JWT_SECRET", "SERVICE_TOKEN", "PSEUDONYM_KEY",
                   "ALPHAVANTAGE_API_KEY")
LAYER = "layers/common/python/stockpred"
# Each secret's value is read by one function of stockpred.cloud.secrets, where it is used, never all
# at start-up: a function needs a secret exactly when its handler can reach that reader.
SECRETS = f"{LAYER}/cloud/secrets.py"
SECRET_USES: dict[str, list[tuple[str, str | None]]] = {
    "DatabaseSecret": [(SECRETS, "database_url")],
    "MongoSecret": [(SECRETS, "mongo_url")],
    "AlphaVantageSecret": [(SECRETS, "alphavantage_api_key")],
    "JwtSecret": [(SECRETS, "jwt_secret")],
    "PseudonymKeySecret": [(SECRETS, "pseudonym_key")],
    "ServiceTokenSecret": [(SECRETS, "service_token")],
    "RedisAuthSecret": [(SECRETS, "redis_auth_token"), (SECRETS, "cache_auth_token")],
    "OriginVerifySecret": [(SECRETS, "origin_verify_secret")],
}
# Every push and disconnect goes through the management API client.
PUSH_USES: list[tuple[str, str | None]] = [(f"{LAYER}/realtime/rooms.py", "management")]
# Every push event (and chunk, and retry) goes on the push queue through these.
QUEUE_USES: list[tuple[str, str | None]] = [(f"{LAYER}/realtime/rooms.py", "_enqueue"),
                                            (f"{LAYER}/realtime/rooms.py", "_enqueue_chunks")]


# ---- the template as data ----------------------------------------------------------------------
@functools.cache
def template() -> dict[str, Any]:
    return load_yaml(TEMPLATE)


def resources(kind: str | None = None) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in template()["Resources"].items()
            if kind is None or res["Type"] == kind}


def props(lid: str) -> dict[str, Any]:
    return template()["Resources"][lid].get("Properties", {})


@functools.cache
def functions() -> dict[str, dict[str, Any]]:
    """Each function's properties with Globals.Function applied, as SAM applies them."""
    glob = (template().get("Globals") or {}).get("Function") or {}
    out = {}
    for lid, res in resources("AWS::Serverless::Function").items():
        merged = {**glob, **res.get("Properties", {})}
        merged["Environment"] = {"Variables": {
            **((glob.get("Environment") or {}).get("Variables") or {}),
            **((res["Properties"].get("Environment") or {}).get("Variables") or {})}}
        out[lid] = merged
    return out


def env(fn: str) -> dict[str, Any]:
    return functions()[fn]["Environment"]["Variables"]


def refs(value: Any) -> set[str]:
    """Logical ids and parameters a value refers to (Ref, GetAtt, ${...} of Sub), recursively."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                out.add(inner)
            elif key == "Fn::GetAtt":
                out.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (inner[0], inner[1]) if isinstance(inner, list) else (inner, {})
                out |= {r for r in re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z.]+)?\}", text)
                        if r not in variables}
                out |= refs(variables)
            else:
                out |= refs(inner)
    elif isinstance(value, list):
        for inner in value:
            out |= refs(inner)
    return out


def var(name: str) -> str:
    """`${name}`, as !Sub writes it."""
    return "${" + name + "}"


def ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def sub_text(value: Any) -> str:
    if isinstance(value, dict) and "Fn::Sub" in value:
        inner = value["Fn::Sub"]
        return inner[0] if isinstance(inner, list) else inner
    return value if isinstance(value, str) else json.dumps(value)


def if_branches(value: Any, condition: str) -> tuple[Any, Any]:
    """(when true, when false) of `!If [condition, ...]`; fails if the value is not one."""
    assert isinstance(value, dict) and "Fn::If" in value, f"expected !If [{condition}, ...]: {value}"
    name, when_true, when_false = value["Fn::If"]
    assert name == condition, f"!If on {name}, expected {condition}"
    return when_true, when_false


def statements(fn: str) -> Iterator[dict[str, Any]]:
    """The function's policy statements (inline, and the SAM policy templates that name secrets)."""
    for policy in functions()[fn].get("Policies") or []:
        if isinstance(policy, dict) and "Statement" in policy:
            yield from policy["Statement"]
        elif isinstance(policy, dict) and "AWSSecretsManagerGetSecretValuePolicy" in policy:
            yield {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                   "Resource": policy["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]}
        elif isinstance(policy, dict) and "SQSSendMessagePolicy" in policy:
            yield {"Effect": "Allow", "Action": ["sqs:SendMessage*", "sqs:ChangeMessageVisibility*"],
                   "Resource": policy["SQSSendMessagePolicy"]["QueueName"]}
        elif isinstance(policy, str) and re.search(r"SecretsManager|Administrator|PowerUser", policy):
            yield {"Effect": "Allow", "Action": "*", "Resource": "*"}


def allowed(fn: str, action: str) -> list[Any]:
    """Resources of the Allow statements whose actions cover `action`."""
    out: list[Any] = []
    for st in statements(fn):
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if st.get("Effect") == "Allow" and any(fnmatch.fnmatch(action, a) for a in actions):
            out += st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
    return out


def websocket_api() -> str:
    (api,) = [lid for lid, r in resources("AWS::ApiGatewayV2::Api").items()
              if r["Properties"]["ProtocolType"] == "WEBSOCKET"]
    return api


def default_route_target(route_table: str) -> str | None:
    """What the route table sends 0.0.0.0/0 to: NatGatewayId or GatewayId, else None."""
    for r in resources("AWS::EC2::Route").values():
        p = r["Properties"]
        if ref(p["RouteTableId"]) == route_table and p.get("DestinationCidrBlock") == "0.0.0.0/0":
            return next((k for k in ("NatGatewayId", "GatewayId") if k in p), None)
    return None


def route_table_of(subnet: str) -> str:
    (table,) = [ref(a["Properties"]["RouteTableId"])
                for a in resources("AWS::EC2::SubnetRouteTableAssociation").values()
                if ref(a["Properties"]["SubnetId"]) == subnet]
    return table


def private_subnets() -> set[str]:
    """Subnets that reach the internet only through a NAT gateway."""
    return {s for s in resources("AWS::EC2::Subnet")
            if default_route_target(route_table_of(s)) == "NatGatewayId"}


def run_tool(path: Path, what: str, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    if not os.access(path, os.X_OK):
        pytest.fail(f"{what} is not installed at {path.relative_to(REPO_ROOT)}: the bootstrap "
                    "(make bootstrap) puts it there; this check never skips")
    environ = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=240,
                          env=environ, cwd=REPO_ROOT, **kwargs)


# ---- which code a handler can reach ------------------------------------------------------------
Node = tuple[Path, str]  # (file, top-level function or class); "" is the file's import-time code


@dataclass
class Module:
    name: str
    path: Path
    defs: dict[str, ast.AST]
    imports: dict[str, tuple[str, str | None]]  # local name -> (module, attribute; None: the module)
    init: list[ast.stmt]


def _imports(nodes: list[ast.AST], known: dict[str, Path]) -> dict[str, tuple[str, str | None]]:
    """The names `import` statements anywhere in `nodes` bind (a function may import lazily)."""
    out: dict[str, tuple[str, str | None]] = {}
    for top in nodes:
        for n in ast.walk(top):
            if isinstance(n, ast.ImportFrom) and n.module and not n.level:
                for alias in n.names:
                    dotted = f"{n.module}.{alias.name}"
                    out[alias.asname or alias.name] = ((dotted, None) if dotted in known
                                                       else (n.module, alias.name))
            elif isinstance(n, ast.Import):
                for alias in n.names:
                    top_name = alias.name.split(".")[0]
                    out[alias.asname or top_name] = (alias.name if alias.asname else top_name, None)
    return out


def _parse(name: str, path: Path, known: dict[str, Path]) -> Module:
    tree = ast.parse(path.read_text(), str(path))
    defs: dict[str, ast.AST] = {}
    init: list[ast.stmt] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defs[stmt.name] = stmt
        else:
            init.append(stmt)
    return Module(name, path, defs, _imports(init, known), init)


@functools.cache
def _library() -> dict[str, Path]:
    names: dict[str, Path] = {}
    for root in sorted(REPO_ROOT.glob("layers/*/python")):
        for path in root.rglob("*.py"):
            rel = path.relative_to(root).with_suffix("")
            names[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    return names


@functools.cache
def _modules(code_dir: Path) -> dict[str, Module]:
    """The layers' modules and, by their bare names, those of one function's code folder."""
    known = {**_library(), **{p.stem: p for p in code_dir.glob("*.py")}}
    return {name: _parse(name, path, known) for name, path in known.items()}


def _resolve(modules: dict[str, Module], module: str, name: str, depth: int = 0) -> set[Node]:
    m = modules.get(module)
    if m is None or depth > 10:
        return set()
    if name in m.defs:
        return {(m.path, name)}
    if name in m.imports:
        source, attr = m.imports[name]
        if attr is None:
            return {(modules[source].path, "")} if source in modules else set()
        return _resolve(modules, source, attr, depth + 1)
    return set()


def _references(m: Module, modules: dict[str, Module], nodes: list[ast.AST]) -> set[Node]:
    """What the code in `nodes` names: functions and classes, and modules it imports (their
    import-time code runs)."""
    local = _imports(nodes, {n: mod.path for n, mod in modules.items()})
    scope = {**m.imports, **local}
    out = {(modules[source].path, "") for source, _ in scope.values() if source in modules}
    for top in nodes:
        for n in ast.walk(top):
            if isinstance(n, ast.Name):
                if n.id in local:
                    source, attr = local[n.id]
                    out |= _resolve(modules, source, attr) if attr else set()
                else:
                    out |= _resolve(modules, m.name, n.id)
            elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
                source, attr = scope.get(n.value.id, ("", ""))
                if attr is None:
                    out |= _resolve(modules, source, n.attr)
    return out


def _decorated_by(node: ast.AST, app: str) -> bool:
    for d in getattr(node, "decorator_list", []):
        target = d.func if isinstance(d, ast.Call) else d
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                and target.value.id == app:
            return True
    return False


@functools.cache
def reached(fn: str) -> frozenset[Node]:
    """Every top-level function and class the handler can call, directly or not (a class counts
    whole), and the import-time code of every module loaded on the way. An over-approximation by
    names, which is the safe side for permissions."""
    p = functions()[fn]
    code_dir = (REPO_ROOT / p["CodeUri"]).resolve()
    modules = _modules(code_dir)
    module_name, attr = p["Handler"].rsplit(".", 1)
    handler = modules[module_name]
    init = handler.init
    assigned = {t.id for s in init if isinstance(s, ast.Assign) for t in s.targets if isinstance(t, ast.Name)}
    if attr in handler.defs:
        roots = {(handler.path, attr)}
        # A plain handler that hands requests to a Chalice app (`return app(event, context)`)
        # reaches the app's routes too.
        named = {n.id for n in ast.walk(handler.defs[attr]) if isinstance(n, ast.Name)} & assigned
        roots |= {(handler.path, name) for name, node in handler.defs.items()
                  if any(_decorated_by(node, app) for app in named)}
    else:  # a Chalice app: its routes (and middleware) are the entry points
        roots = {(handler.path, name) for name, node in handler.defs.items() if _decorated_by(node, attr)}
    if not roots and attr in assigned:
        # An entry point made at import (`quote = _step(trading.quote_step)`): the module's
        # import-time code below reaches it. The entry points the module makes alike for other
        # functions (`account = _step(...)`) are theirs, not this one's code path.
        siblings = {q["Handler"].rsplit(".", 1)[1] for other, q in functions().items()
                    if other != fn and q["CodeUri"] == p["CodeUri"]
                    and q["Handler"].rsplit(".", 1)[0] == module_name}
        init = [s for s in init if not (isinstance(s, ast.Assign) and all(
            isinstance(t, ast.Name) and t.id in siblings for t in s.targets))]
    else:
        assert roots, f"{fn}: {p['Handler']} is neither a function nor an app with routes"
    by_path = {m.path: m for m in modules.values()}
    seen: set[Node] = set()
    todo = [*roots, (handler.path, "")]
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        m = by_path[node[0]]
        body = [m.defs[node[1]]] if node[1] else init if m is handler else m.init
        todo += _references(m, modules, body)
        todo.append((m.path, ""))
    return frozenset(seen)


def uses(fn: str, markers: list[tuple[str, str | None]]) -> bool:
    for path, name in reached(fn):
        rel = path.relative_to(REPO_ROOT).as_posix()
        if any(rel == file and (name == want or (want is None and name)) for file, want in markers):
            return True
    return False


def secrets_needed(fn: str) -> set[str]:
    return {secret for secret, markers in SECRET_USES.items() if uses(fn, markers)}


def pushers() -> set[str]:
    return {fn for fn in functions() if uses(fn, PUSH_USES)}


# ---- AWS's own validators ----------------------------------------------------------------------
def test_sam_validate_and_lint_pass():
    for args in (["validate"], ["validate", "--lint"]):
        result = run_tool(SAM, "The SAM CLI", [*args, "--region", "us-east-1", "-t", str(TEMPLATE)])
        assert result.returncode == 0, f"sam {' '.join(args)}:\n{result.stdout}{result.stderr}"


def test_state_machine_definition_is_valid_asl(tmp_path):
    machines = resources("AWS::Serverless::StateMachine")
    assert machines
    for lid, res in machines.items():
        p = res["Properties"]
        text = (REPO_ROOT / p["DefinitionUri"]).read_text()
        subs = p.get("DefinitionSubstitutions", {})
        missing = set(re.findall(r"\$\{(\w+)\}", text)) - set(subs)
        assert not missing, f"{lid}: no DefinitionSubstitutions for {sorted(missing)}"
        invokable = {ref(pol["LambdaInvokePolicy"]["FunctionName"]) for pol in p.get("Policies", [])
                     if isinstance(pol, dict) and "LambdaInvokePolicy" in pol}
        for name, value in subs.items():
            # The tasks invoke each function's published alias (SnapStart), `!Ref Fn.Alias`.
            target, _, attr = str(value.get("Ref", "")).partition(".")
            assert attr == "Alias" and target in functions(), f"{lid}: {name} is not a function's alias"
            assert target in invokable, f"{lid} may not invoke {target}"
            text = text.replace(var(name), f"arn:aws:lambda:us-east-1:123456789012:function:{target}:live")
        definition = tmp_path / f"{lid}.asl.json"
        definition.write_text(text)
        result = run_tool(ASL_VALIDATOR, "asl-validator", ["--json-path", str(definition)])
        assert result.returncode == 0, result.stdout + result.stderr


TRANSLATE = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:  # the template names none by name
    def load(self):
        return {}

tpl = yaml_parse(open(sys.argv[1]).read())
for res in tpl["Resources"].values():  # as `sam validate` does: code is uploaded later
    for key in ("CodeUri", "ContentUri", "DefinitionUri"):
        if key in res.get("Properties", {}):
            res["Properties"][key] = "s3://bucket/key"
json.dump(transform(tpl, {}, NoManagedPolicies()), sys.stdout)
"""


def translated(tmp_path: Path) -> dict[str, Any]:
    """The resources of template.yaml as SAM's transform turns them into CloudFormation."""
    script = tmp_path / "translate.py"
    script.write_text(TRANSLATE)
    result = run_tool(SAM_PYTHON, "The SAM CLI's Python", [str(script), str(TEMPLATE)])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["Resources"]


def test_sam_gives_every_vpc_function_the_vpc_access_role(tmp_path):
    """SAM adds AWSLambdaVPCAccessExecutionRole to a role it creates when VpcConfig is set;
    without it Lambda cannot create the function's network interfaces and the deploy fails."""
    cfn = translated(tmp_path)
    lambdas = {lid: r for lid, r in cfn.items() if r["Type"] == "AWS::Lambda::Function"}
    assert set(functions()) <= set(lambdas)
    for lid, r in lambdas.items():
        assert r["Properties"].get("VpcConfig"), f"{lid} has no VpcConfig after the transform"
        role = cfn[r["Properties"]["Role"]["Fn::GetAtt"][0]]["Properties"]
        assert any(str(a).endswith("/AWSLambdaVPCAccessExecutionRole")
                   for a in role.get("ManagedPolicyArns", [])), f"{lid}: role lacks VPC access"


def test_every_function_may_write_to_the_log_group_its_logging_config_names(tmp_path):
    """LoggingConfig reaches the Lambda functions SAM makes, and their roles may write there:
    a role without logs:CreateLogStream/PutLogEvents on its group would lose every line."""
    cfn = translated(tmp_path)
    write = {"logs:CreateLogStream", "logs:PutLogEvents"}
    for fn, group in log_groups().items():
        p = cfn[fn]["Properties"]
        assert p.get("LoggingConfig", {}).get("LogGroup") == {"Ref": group}, f"{fn}: {p.get('LoggingConfig')}"
        role = cfn[p["Role"]["Fn::GetAtt"][0]]["Properties"]
        # AWS's managed roles allow both actions on every group ("Resource": "*").
        managed = any(str(a).endswith(("/AWSLambdaBasicExecutionRole", "/AWSLambdaVPCAccessExecutionRole"))
                      for a in role.get("ManagedPolicyArns", []))
        granted: set[str] = set()
        for policy in role.get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                targets = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                if st["Effect"] == "Allow" and any(t == "*" or group in refs(t) for t in targets):
                    granted |= {a for a in write for pattern in actions if fnmatch.fnmatchcase(a, pattern)}
        assert managed or granted == write, f"{fn}'s role may not write to {group}"


# ---- network -----------------------------------------------------------------------------------
def test_every_function_runs_in_the_private_subnets():
    private = private_subnets()
    azs = {json.dumps(props(s)["AvailabilityZone"]) for s in private}
    assert len(private) >= 2 and len(azs) >= 2, "functions need private subnets in two AZs"
    for fn, p in functions().items():
        vpc = p.get("VpcConfig")
        assert vpc, f"{fn} has no VpcConfig: it cannot reach the stores"
        subnets = {ref(s) for s in vpc["SubnetIds"]}
        assert subnets and subnets <= private, f"{fn} runs in {subnets}, not only in {private}"
        groups = [ref(g) for g in vpc["SecurityGroupIds"]]
        assert groups and all(g in resources("AWS::EC2::SecurityGroup") for g in groups), fn


def test_the_nat_reaches_the_internet_and_s3_skips_it():
    for nat, res in resources("AWS::EC2::NatGateway").items():
        subnet = ref(res["Properties"]["SubnetId"])
        assert default_route_target(route_table_of(subnet)) == "GatewayId", f"{nat} has no internet"
    endpoints = [r["Properties"] for r in resources("AWS::EC2::VPCEndpoint").values()
                 if r["Properties"].get("VpcEndpointType") == "Gateway"
                 and sub_text(r["Properties"]["ServiceName"]).endswith(".s3")]
    assert endpoints, "no S3 gateway endpoint"
    tables = {ref(t) for e in endpoints for t in e["RouteTableIds"]}
    assert {route_table_of(s) for s in private_subnets()} <= tables, "S3 traffic goes through the NAT"


STORE_PORTS = {"AWS::RDS::DBInstance": 5432, "AWS::DocDB::DBCluster": 27017,
               "AWS::ElastiCache::ReplicationGroup": 6379, "AWS::OpenSearchService::Domain": 443}


def store_subnets_and_groups(p: dict[str, Any]) -> tuple[set[str], list[str]]:
    """A store's subnets (its subnet group's, or an OpenSearch domain's VPCOptions) and groups."""
    if "VPCOptions" in p:
        vpc = p["VPCOptions"]
        return {ref(s) for s in vpc["SubnetIds"]}, [ref(g) for g in vpc["SecurityGroupIds"]]
    group_key = next(k for k in ("VPCSecurityGroups", "VpcSecurityGroupIds", "SecurityGroupIds") if k in p)
    subnet_group = ref(p.get("DBSubnetGroupName") or p.get("CacheSubnetGroupName"))
    return {ref(s) for s in props(subnet_group)["SubnetIds"]}, [ref(g) for g in p[group_key]]


def test_stores_are_private_and_open_only_to_the_functions():
    function_groups = {ref(g) for p in functions().values() for g in p["VpcConfig"]["SecurityGroupIds"]}
    private = private_subnets()
    stores = {lid: r for lid, r in resources().items() if r["Type"] in STORE_PORTS}
    assert set(STORE_PORTS) == {r["Type"] for r in stores.values()}
    for lid, res in stores.items():
        p = res["Properties"]
        port = int(p.get("Port", STORE_PORTS[res["Type"]]))
        subnets, groups = store_subnets_and_groups(p)
        assert subnets and subnets <= private, f"{lid} is not private"
        assert groups, f"{lid} has no security group"
        assert p.get("PubliclyAccessible", False) is False, f"{lid} is publicly accessible"
        open_ports = set()
        for group in groups:
            for rule in props(group).get("SecurityGroupIngress", []):
                assert "CidrIp" not in rule and "CidrIpv6" not in rule, f"{group} is open to addresses"
                assert ref(rule["SourceSecurityGroupId"]) in function_groups, f"{group}: {rule}"
                open_ports |= set(range(int(rule["FromPort"]), int(rule["ToPort"]) + 1))
        assert port in open_ports, f"the functions cannot reach {lid} on {port}"


# ---- stores ------------------------------------------------------------------------------------
def test_postgres_allows_prepared_transactions():
    """Every trade PREPAREs its ledger row: with RDS's default of 0 every trade fails."""
    for lid, res in resources("AWS::RDS::DBInstance").items():
        p = res["Properties"]
        group = props(ref(p["DBParameterGroupName"]))
        major = str(p["EngineVersion"]).split(".")[0]
        assert group["Family"] == f"postgres{major}", f"{lid}: parameter group of another engine"
        assert int(group["Parameters"]["max_prepared_transactions"]) > 0, f"{lid}: no 2PC"
        assert p["StorageEncrypted"] is True, f"{lid} is not encrypted"


def test_documentdb_requires_tls():
    for lid, res in resources("AWS::DocDB::DBCluster").items():
        p = res["Properties"]
        group = props(ref(p["DBClusterParameterGroupName"]))
        major_minor = ".".join(str(p["EngineVersion"]).split(".")[:2])
        assert group["Family"] == f"docdb{major_minor}", f"{lid}: parameter group of another engine"
        assert group["Parameters"]["tls"] == "enabled", f"{lid} accepts clients without TLS"
        instances = [r for r in resources("AWS::DocDB::DBInstance").values()
                     if ref(r["Properties"]["DBClusterIdentifier"]) == lid]
        assert instances, f"{lid} has no instance to serve it"


def test_redis_urls_use_tls_where_the_group_requires_it():
    groups = resources("AWS::ElastiCache::ReplicationGroup")
    for lid, res in groups.items():
        p = res["Properties"]
        if p.get("MultiAZEnabled"):
            assert p.get("AutomaticFailoverEnabled") is True, lid
            assert int(p.get("NumCacheClusters", 0)) >= 2 or int(p.get("ReplicasPerNodeGroup", 0)) >= 1, lid
    for fn in functions():
        urls = {name: v for name, v in env(fn).items() if refs(v) & set(groups)}
        assert {"REDIS_URL", "CACHE_CLUSTER_URL"} <= set(urls), fn
        for name, value in urls.items():
            texts = [sub_text(v) for v in value["Fn::If"][1:]] if "Fn::If" in value else [sub_text(value)]
            for text in texts:
                group = next((g for g in groups if var(g)[:-1] + "." in text), None)
                if group and groups[group]["Properties"].get("TransitEncryptionEnabled"):
                    assert text.startswith("rediss://"), f"{fn}.{name}: {group} only speaks TLS"


# ---- secrets -----------------------------------------------------------------------------------
def no_echo_parameters() -> set[str]:
    return {name for name, p in template()["Parameters"].items() if p.get("NoEcho")}


def test_store_credentials_are_generated_secrets_unless_a_url_is_given():
    """A store the stack creates logs in with a generated password (never one a URL cannot carry);
    the attachment adds its host and port. A store brought by URL keeps the URL in the secret."""
    attachments = [r["Properties"] for r in resources("AWS::SecretsManager::SecretTargetAttachment").values()]
    stores = {lid: r for lid, r in resources().items()
              if r["Type"] in ("AWS::RDS::DBInstance", "AWS::DocDB::DBCluster")}
    assert len(stores) == 2
    for lid, res in stores.items():
        p = res["Properties"]
        (secret,) = refs(p["MasterUserPassword"])
        expected = "{{resolve:secretsmanager:" + var(secret) + ":SecretString:password}}"
        assert sub_text(p["MasterUserPassword"]) == expected, f"{lid}: password not from {secret}"
        condition = res["Condition"]
        parameter = template()["Conditions"][condition]["Fn::Equals"][0]["Ref"]
        assert template()["Conditions"][condition] == {"Fn::Equals": [{"Ref": parameter}, ""]}
        s = props(secret)
        generated, _ = if_branches(s["GenerateSecretString"], condition)
        _, given = if_branches(s["SecretString"], condition)
        assert json.loads(sub_text(given).replace(var(parameter), "x")) == {"url": "x"}, secret
        assert generated["GenerateStringKey"] == "password"
        assert "username" in json.loads(generated["SecretStringTemplate"])
        assert set('"@/\\:?#[]% ') <= set(generated["ExcludeCharacters"]), f"{secret}: URL-breaking password"
        assert {"SecretId": {"Ref": secret}, "TargetId": {"Ref": lid}, "TargetType": res["Type"]} \
            in attachments, f"{secret} does not learn {lid}'s host and port"


def test_keys_are_generated_and_parameters_stay_in_secrets_manager():
    for key in ("JwtSecret", "ServiceTokenSecret", "PseudonymKeySecret"):
        generated = props(key)["GenerateSecretString"]
        assert generated["PasswordLength"] >= 32 and generated.get("ExcludePunctuation") is True, key
    hidden = no_echo_parameters()
    assert hidden
    for lid, res in resources().items():
        if res["Type"] != "AWS::SecretsManager::Secret":
            assert not refs(res) & hidden, f"{lid} sees {refs(res) & hidden}"
    assert not refs(template().get("Outputs", {})) & hidden, "an output shows a NoEcho parameter"
    assert not refs(template().get("Globals", {})) & hidden, "Globals pass a NoEcho parameter on"


CREDENTIAL = re.compile(r"://[^/\s:@]*:[^/\s@]+@|(?i:password|secret|token|api_?key)=")


def looks_like_credential(text: str) -> bool:
    random = re.fullmatch(r"[A-Za-z0-9+/=_\-]{20,}", text) and re.search(r"\d", text) \
        and re.search(r"[A-Za-z]", text)
    return bool(random or CREDENTIAL.search(text))


def test_no_secret_value_in_any_environment():
    hidden = no_echo_parameters()
    secrets = set(resources("AWS::SecretsManager::Secret"))
    for fn in functions():
        variables = env(fn)
        assert not set(OLD_SECRET_VARS) & set(variables), f"{fn}: {set(OLD_SECRET_VARS) & set(variables)}"
        for name, value in variables.items():
            assert not refs(value) & hidden, f"{fn}.{name} carries a NoEcho parameter"
            assert "{{resolve:" not in json.dumps(value), f"{fn}.{name} resolves a secret's value"
            if isinstance(value, str):
                assert not looks_like_credential(value), f"{fn}.{name} looks like a credential"
        for name in SECRET_ARN_VARS:
            assert ref(variables.get(name)) in secrets, f"{fn}.{name} is not a secret's ARN"


def test_each_function_reads_exactly_the_secrets_its_code_uses():
    for fn in functions():
        granted = allowed(fn, "secretsmanager:GetSecretValue")
        names = {ref(r) for r in granted}
        assert None not in names, f"{fn} may read secrets beyond its own: {granted}"
        assert names == secrets_needed(fn), f"{fn} may read {sorted(names)}, its code reads " \
                                            f"{sorted(secrets_needed(fn))}"


def test_only_the_etl_reads_the_pseudonym_key_and_only_verifiers_the_jwt_secret():
    def readers(secret: str) -> set[str]:
        return {fn for fn in functions() if {"Ref": secret} in allowed(fn, "secretsmanager:GetSecretValue")}

    assert readers("PseudonymKeySecret") == {"EtlRunFunction"}, readers("PseudonymKeySecret")
    assert readers("JwtSecret") == {"UsersFunction", "TransactionsFunction", "WsFunction",
                                    "LogsFunction"}, readers("JwtSecret")


def test_the_code_paths_the_permissions_follow_still_exist():
    """A renamed function would otherwise make its users look as if they needed nothing."""
    for what, markers in [*SECRET_USES.items(), ("WebSocket pushes", PUSH_USES),
                          ("the push queue", QUEUE_USES)]:
        for file, name in markers:
            path = REPO_ROOT / file
            assert path.is_file(), f"{what}: {file} is gone; update SECRET_USES/PUSH_USES"
            defs = {n.name for n in ast.parse(path.read_text()).body
                    if isinstance(n, ast.FunctionDef | ast.ClassDef)}
            assert name is None or name in defs, f"{what}: {file} has no {name}; update the markers"
        assert any(uses(fn, markers) for fn in functions()), f"no function reaches {what}"


# ---- WebSocket pushes and other permissions ---------------------------------------------------
def test_functions_that_push_may_manage_connections_and_no_other():
    api = websocket_api()
    found = pushers()
    assert found, "no function pushes over WebSockets: the code analysis is broken"
    for fn in functions():
        grants = [r for r in allowed(fn, "execute-api:ManageConnections")
                  if api in refs(r) and sub_text(r).endswith(f"${{{api}}}/*")]
        if fn in found:
            assert grants, f"{fn} pushes over WebSockets without execute-api:ManageConnections"
            assert api in refs(env(fn).get("WS_MANAGEMENT_URL")), f"{fn} does not know the API"
        else:
            assert not allowed(fn, "execute-api:ManageConnections"), f"{fn} does not push"


def test_functions_that_publish_pushes_may_send_to_the_push_queue_and_no_other():
    publishers = {fn for fn in functions() if uses(fn, QUEUE_USES)}
    assert {"PredictFunction", "StocksFunction", "UsersFunction", "FanoutFunction"} <= publishers, publishers
    for fn in functions():
        grants = allowed(fn, "sqs:SendMessage")
        if fn in publishers:
            assert grants == [{"Fn::GetAtt": ["PushQueue", "QueueName"]}], f"{fn}: {grants}"
            assert ref(env(fn).get("PUSH_QUEUE_URL")) == "PushQueue", f"{fn} does not know the queue"
        else:
            assert not grants, f"{fn} publishes no pushes"


def test_the_fanout_function_takes_pushes_one_at_a_time_reports_failures_and_dead_letters():
    fanout = functions()["FanoutFunction"]
    (event,) = fanout["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["PushQueue", "Arn"]}
    # One record an invocation: the chunks of a large room run in parallel invocations.
    assert event["Properties"]["BatchSize"] == 1
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = props("PushQueue")
    assert queue["VisibilityTimeout"] >= 6 * fanout["Timeout"], "Lambda asks for 6x the timeout"
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["PushDeadLetterQueue", "Arn"]}
    assert 1 < redrive["maxReceiveCount"] <= 10
    assert props("PushDeadLetterQueue")["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert all(props(q).get("SqsManagedSseEnabled") for q in ("PushQueue", "PushDeadLetterQueue"))


def test_predict_may_start_a_training():
    # The `live` alias, the version the schedule runs too: never $LATEST beside it.
    assert ref(env("PredictFunction").get("TRAIN_FUNCTION_NAME")) == "RetrainFunction.Alias"
    policies = functions()["PredictFunction"]["Policies"]
    assert {"LambdaInvokePolicy": {"FunctionName": {"Ref": "RetrainFunction"}}} in policies, \
        "PredictFunction may not invoke RetrainFunction"


# ---- centralised logs ---------------------------------------------------------------------------
SHIPPER = "LogShipperFunction"
LOG_READER = "LogsFunction"
ES_ACTIONS = ("es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete",
              "es:ESHttpPatch")
# What each function may do on the log domain; every other function may do nothing there.
ES_NEEDS = {SHIPPER: {"es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete"},
            LOG_READER: {"es:ESHttpGet", "es:ESHttpPost"}}


TLS_1_2_POLICIES = ("Policy-Min-TLS-1-2-2019-07", "Policy-Min-TLS-1-2-PFS-2023-10")


def log_domain() -> str:
    (domain,) = resources("AWS::OpenSearchService::Domain")
    return domain


def is_shipper(value: Any) -> bool:
    """`!Ref LogShipperFunction.Alias` (the `live` alias) or `!GetAtt LogShipperFunction.Arn`."""
    return value in ({"Ref": f"{SHIPPER}.Alias"}, {"Fn::GetAtt": [SHIPPER, "Arn"]})


# Stand-ins for the pseudo parameters, to read names and ARNs as AWS would build them.
PSEUDO = {"${AWS::Partition}": "aws", "${AWS::Region}": "us-east-1",
          "${AWS::AccountId}": "123456789012", "${AWS::StackName}": "stockpred-prod"}


def resolve(text: str) -> str:
    for name, value in PSEUDO.items():
        text = text.replace(name, value)
    return text


def log_groups() -> dict[str, str]:
    """Function -> the logical id of the log group its LoggingConfig has Lambda write to."""
    out: dict[str, str] = {}
    stack_groups = resources("AWS::Logs::LogGroup")
    for fn, p in functions().items():
        config = p.get("LoggingConfig") or {}
        group = ref(config.get("LogGroup"))
        assert group in stack_groups, \
            f"{fn}: LoggingConfig.LogGroup is not `!Ref` a log group of the stack ({config or 'none'})"
        assert group not in out.values(), f"{group} is the log group of two functions"
        out[fn] = group
    return out


def dependencies(lid: str) -> set[str]:
    """Resources `lid` waits for: those it refers to (Globals included) and its DependsOn."""
    res = template()["Resources"][lid]
    depends = res.get("DependsOn", [])
    found = refs(functions()[lid] if lid in functions() else res.get("Properties", {}))
    found |= {depends} if isinstance(depends, str) else set(depends)
    return {name.split(".")[0] for name in found} & set(template()["Resources"])


def waits_for(lid: str) -> set[str]:
    """Everything created before `lid`, transitively."""
    seen: set[str] = set()
    todo = [lid]
    while todo:
        for dep in dependencies(todo.pop()) - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def service_log_groups() -> set[str]:
    """Log groups a service writes to: the REST and WebSocket stages' access logs, the state
    machine's execution log, the log domain's own application log."""
    api = (template().get("Globals") or {}).get("Api") or {}
    named = [api.get("AccessLogSetting", {}).get("DestinationArn")]
    named += [p.get("AccessLogSettings", {}).get("DestinationArn")
              for p in map(props, resources("AWS::ApiGatewayV2::Stage"))]
    named += [d["CloudWatchLogsLogGroup"]["LogGroupArn"]
              for sm in resources("AWS::Serverless::StateMachine")
              for d in props(sm).get("Logging", {}).get("Destinations", [])]
    named += [o.get("CloudWatchLogsLogGroupArn") for d in resources("AWS::OpenSearchService::Domain")
              for o in props(d).get("LogPublishingOptions", {}).values()]
    return {getatt(v)[0] for v in named if v}


def test_every_function_logs_to_its_own_group_with_retention():
    groups = log_groups()
    assert set(groups.values()) | service_log_groups() == set(resources("AWS::Logs::LogGroup")), \
        f"log groups no one writes to: {set(resources('AWS::Logs::LogGroup')) - set(groups.values())}"
    assert not set(groups.values()) & service_log_groups(), "a function shares a service's log group"
    for lid in resources("AWS::Logs::LogGroup"):
        assert ref(props(lid).get("RetentionInDays")) == "LogRetentionDays", f"{lid} keeps logs forever"
        assert getatt(props(lid).get("KmsKeyId")) == ("LogKey", "Arn"), f"{lid} is not under LogKey"
    for fn, lid in groups.items():
        config = functions()[fn]["LoggingConfig"]
        assert config.get("LogFormat", "Text") == "Text", f"{fn}: the shipper parses the lines as written"
        days = props(lid).get("RetentionInDays")
        assert days is not None, f"{fn}'s logs never expire"
        assert ref(days) in template()["Parameters"] or isinstance(days, int), lid
        # Named after the stack and the logical id: unique per stack, the shipper and the log
        # search see which function wrote a line, and the name needs no function to exist.
        name = props(lid)["LogGroupName"]
        assert sub_text(name) == f"/aws/lambda/{var('AWS::StackName')}/{fn}", f"{lid}: {name}"
        assert _function_of(resolve(sub_text(name))) == fn
    assert ref(env(SHIPPER)["LOG_RETENTION_DAYS"]) == ref(props(groups[SHIPPER])["RetentionInDays"]), \
        "the shipper keeps indices for another period than CloudWatch keeps the logs"


def test_each_log_group_exists_before_its_function_runs():
    """SnapStart + AutoPublishAlias run a function's init while the stack is created. Were the
    group named after the function (`/aws/lambda/${Fn}`), it would wait for the function, and
    Lambda could create that group first: the stack would fail with AlreadyExists. So each
    function waits for its group, and no group waits for any function (nor a cycle forms)."""
    for fn, group in log_groups().items():
        assert group in dependencies(fn), f"{fn} does not wait for {group}"
        before = waits_for(group)
        assert not before & set(functions()), f"{group} waits for {sorted(before & set(functions()))}"
        assert fn not in waits_for(fn), f"{fn} depends on itself"
        for lid in resources("AWS::Logs::SubscriptionFilter"):
            if ref(props(lid)["LogGroupName"]) == group:
                assert lid not in waits_for(fn), f"{fn} waits for {lid}: a cycle through the shipper"
    for lid in template()["Resources"]:
        assert lid not in waits_for(lid), f"{lid} depends on itself"


def test_every_function_but_the_shipper_ships_its_logs_to_the_shipper():
    """A filter on the shipper's own group would invoke it for the lines it writes while shipping."""
    groups = log_groups()
    permissions = {lid for lid, r in resources("AWS::Lambda::Permission").items()
                   if r["Properties"]["Principal"] == "logs.amazonaws.com"
                   and is_shipper(r["Properties"]["FunctionName"])
                   and r["Properties"]["Action"] == "lambda:InvokeFunction"}
    assert permissions, "CloudWatch Logs may not invoke the shipper"
    subscribed: dict[str, list[str]] = {}
    for lid, res in resources("AWS::Logs::SubscriptionFilter").items():
        p = res["Properties"]
        group = ref(p["LogGroupName"])
        assert group in groups.values(), f"{lid} subscribes {p['LogGroupName']}, not a function's group"
        assert is_shipper(p["DestinationArn"]), f"{lid} ships to {p['DestinationArn']}"
        assert p["FilterPattern"] == "", f"{lid} ships only some lines"
        depends = res.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        assert set(depends) & permissions, f"{lid} may be created before the shipper may be invoked"
        subscribed.setdefault(group, []).append(lid)
    for fn, group in groups.items():
        if fn == SHIPPER:
            assert group not in subscribed, f"{SHIPPER} ships its own logs: a loop"
        else:
            assert len(subscribed.get(group, [])) == 1, f"{fn}'s logs are not shipped (exactly once)"
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:{}:*"  # a group's ARN, the invoke's source
    for lid in permissions:
        p = props(lid)
        source = sub_text(p["SourceArn"])
        assert source.startswith("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"), \
            f"{lid}: log groups of other accounts or regions may invoke the shipper"
        for fn, group in groups.items():
            if fn != SHIPPER:
                name = resolve(sub_text(props(group)["LogGroupName"]))
                assert fnmatch.fnmatchcase(arn.format(name), resolve(source)), f"{lid} does not cover {name}"
        for other in ("/aws/lambda/another-stack/UsersFunction",
                      "/aws/lambda/stockpred-prod-2/UsersFunction"):
            assert not fnmatch.fnmatchcase(arn.format(other), resolve(source)), \
                f"{lid}: another stack's {other} may invoke the shipper"


def test_the_shipper_retries_twice_runs_maintenance_and_dead_letters_to_its_bucket():
    p = functions()[SHIPPER]
    assert p["Handler"] == "shipper.handler"
    assert (p.get("EventInvokeConfig") or {}).get("MaximumRetryAttempts") == 2, \
        f"{SHIPPER}: a failed batch is retried as Lambda's default, not twice"
    schedules = [e["Properties"] for e in p["Events"].values() if e["Type"] == "Schedule"]
    assert [json.loads(s["Input"]) for s in schedules] == [{"action": "maintenance"}]
    assert not any(e["Type"] == "Api" for e in p["Events"].values()), "the shipper is not an endpoint"
    bucket = ref(env(SHIPPER)["LOG_DEAD_LETTER_BUCKET"])
    assert bucket in resources("AWS::S3::Bucket")
    objects = {sub_text(r) for a in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
               for r in allowed(SHIPPER, a)}
    assert objects == {f"{var(bucket + '.Arn')}/*"}, objects
    assert allowed(SHIPPER, "s3:ListBucket") == [{"Fn::GetAtt": [bucket, "Arn"]}]
    rules = (props(bucket).get("LifecycleConfiguration") or {}).get("Rules", [])
    assert any(r["Status"] == "Enabled" and int(r["ExpirationInDays"]) <= 30 for r in rules), \
        f"{bucket} keeps dead letters forever"
    for fn in functions():
        if fn != SHIPPER:
            assert not any(refs(r) & {bucket} for st in statements(fn) for r in
                           (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])), \
                f"{fn} may touch the dead letters"


def test_the_log_domain_is_in_the_vpc_encrypted_and_https_only():
    """Reachability (private subnet, port 443 from the functions only) is checked with the stores."""
    p = props(log_domain())
    assert p["EngineVersion"].startswith("OpenSearch_")
    assert (p.get("VPCOptions") or {}).get("SubnetIds"), "the domain has a public endpoint"
    assert (p.get("EncryptionAtRestOptions") or {}).get("Enabled") is True, "not encrypted at rest"
    assert (p.get("NodeToNodeEncryptionOptions") or {}).get("Enabled") is True, "nodes talk in clear"
    endpoint = p.get("DomainEndpointOptions") or {}
    assert endpoint.get("EnforceHTTPS") is True, "the domain answers plain HTTP"
    assert endpoint.get("TLSSecurityPolicy") in TLS_1_2_POLICIES, "the domain accepts TLS below 1.2"
    assert (p.get("EBSOptions") or {}).get("EBSEnabled") is True
    (statement,) = p["AccessPolicies"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert sub_text(statement["Principal"]["AWS"]) == "arn:${AWS::Partition}:iam::${AWS::AccountId}:root", \
        "the domain must leave access to this account's identity policies"
    assert statement["Action"] == "es:ESHttp*"
    for fn in (SHIPPER, LOG_READER):
        url = env(fn)["OPENSEARCH_URL"]
        assert sub_text(url) == f"https://{var(log_domain() + '.DomainEndpoint')}", f"{fn}: {url}"
    outputs = template()["Outputs"]
    assert outputs["LogDomainEndpoint"]["Value"] == {"Fn::GetAtt": [log_domain(), "DomainEndpoint"]}


def test_only_the_log_functions_reach_the_log_domain_and_with_exactly_the_actions_they_need():
    domain_paths = f"{var(log_domain() + '.Arn')}/*"
    for fn in functions():
        for action in ES_ACTIONS:
            granted = allowed(fn, action)
            if action in ES_NEEDS.get(fn, set()):
                assert [sub_text(r) for r in granted] == [domain_paths], f"{fn}: {action} on {granted}"
            else:
                assert not granted, f"{fn} may {action} on {granted}"
        assert not allowed(fn, "es:ESHttpSomethingNew"), f"{fn} may use es:ESHttp*: list the actions"
        assert not allowed(fn, "es:CreateDomain") and not allowed(fn, "es:UpdateDomainConfig"), fn


def test_the_log_search_is_an_api_route():
    """Its routes are checked against the Chalice app's by test_template; here: it has the search,
    and serves the operators' routes only (the logs, the metrics and the alarms, and the health
    check, whose deep mode is for operators)."""
    events = functions()[LOG_READER]["Events"].values()
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events if e["Type"] == "Api"}
    assert {("get", "/api/logs"), ("get", "/api/ops/metrics"), ("get", "/api/ops/alarms"),
            ("get", "/api/health")} <= routes
    assert all(path.startswith(("/api/logs", "/api/ops/")) or path == "/api/health"
               for _, path in routes), routes
    assert all("RestApiId" not in e["Properties"] for e in events), "not on the stack's one REST API"


# ---- warehouse ---------------------------------------------------------------------------------
def _glue_type(t: Any) -> str:
    import pyarrow as pa

    for check, name in ((pa.types.is_string, "string"), (pa.types.is_int64, "bigint"),
                        (pa.types.is_int32, "int"), (pa.types.is_int16, "smallint"),
                        (pa.types.is_int8, "tinyint"), (pa.types.is_float64, "double"),
                        (pa.types.is_boolean, "boolean"), (pa.types.is_timestamp, "timestamp"),
                        (pa.types.is_date32, "date")):
        if check(t):
            return name
    raise AssertionError(f"no Glue type for {t}")


def _java_date_format(fmt: str) -> str:
    return fmt.replace("yyyy", "%Y").replace("MM", "%m").replace("dd", "%d")


def test_fact_tables_project_the_partitions_the_etl_writes(monkeypatch):
    from stockpred.analytics import lake

    written: list[str] = []
    monkeypatch.setattr(lake, "put", lambda key, table: written.append(key))
    tables = {r["Properties"]["TableInput"]["Name"]: r["Properties"]["TableInput"]
              for r in resources("AWS::Glue::Table").values()}
    bucket = ref(env("EtlRunFunction")["WAREHOUSE_BUCKET"])
    for name, part in lake.PARTITION.items():
        table = tables[name]
        assert [k["Name"] for k in table["PartitionKeys"]] == [part], name
        params = table["Parameters"]
        assert params.get("projection.enabled") == "true", f"{name}: Athena would see no partitions"
        kind = params[f"projection.{part}.type"]
        if kind == "date":
            fmt = _java_date_format(params[f"projection.{part}.format"])
            value = dt.date(2024, 3, 5).strftime(fmt)
            assert dt.datetime.strptime(value, fmt).strftime(fmt) == value, name
            start = params[f"projection.{part}.range"].split(",")[0]
            assert dt.datetime.strptime(start, fmt).date() <= dt.date(2001, 1, 2), name
        else:
            assert kind == "integer", name
            value = "2024"
            low, high = map(int, params[f"projection.{part}.range"].split(","))
            assert low <= 1990 and high >= 2100, name
        written.clear()
        schema = lake.SCHEMAS[name]
        lake.write(name, [{**dict.fromkeys(schema.names), part: value}], "test-run")
        (key,) = written
        template_text = sub_text(params["storage.location.template"])
        location = template_text.replace(var(bucket), "BUCKET").replace(var("!" + part), value)
        assert location == f"s3://BUCKET/{key.rsplit('/', 1)[0]}/", f"{name}: {location} vs {key}"
        base = sub_text(table["StorageDescriptor"]["Location"]).replace(var(bucket), "BUCKET")
        assert location.startswith(base), f"{name}: partitions outside the table's location"
        columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
        expected = [(f.name, _glue_type(f.type)) for f in schema if f.name != part]
        assert columns == expected, f"{name}: Glue columns are not the Parquet files' columns"


# ---- the dashboard: S3 behind CloudFront, one origin with the REST API -------------------------
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"


def distribution() -> tuple[str, dict[str, Any]]:
    (lid,) = resources("AWS::CloudFront::Distribution")
    return lid, props(lid)["DistributionConfig"]


def origin(config: dict[str, Any], origin_id: str) -> dict[str, Any]:
    (found,) = [o for o in config["Origins"] if o["Id"] == origin_id]
    return found


def getatt(value: Any) -> tuple[str, str]:
    inner = value["Fn::GetAtt"]
    return tuple(inner) if isinstance(inner, list) else tuple(inner.split(".", 1))  # type: ignore[return-value]


def test_the_dashboard_bucket_is_private_and_only_the_distribution_reads_it():
    dist, config = distribution()
    bucket_origin = origin(config, config["DefaultCacheBehavior"]["TargetOriginId"])
    bucket, attr = getatt(bucket_origin["DomainName"])
    assert attr == "RegionalDomainName" and resources()[bucket]["Type"] == "AWS::S3::Bucket"
    p = props(bucket)
    assert set(p["PublicAccessBlockConfiguration"].values()) == {True} and \
        len(p["PublicAccessBlockConfiguration"]) == 4
    assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert p["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert "WebsiteConfiguration" not in p, "a website endpoint would be public"
    # CloudFront signs with an origin access control (not the legacy identity).
    oac, _ = getatt(bucket_origin["OriginAccessControlId"])
    assert bucket_origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    oac_config = props(oac)["OriginAccessControlConfig"]
    assert (oac_config["OriginAccessControlOriginType"], oac_config["SigningBehavior"],
            oac_config["SigningProtocol"]) == ("s3", "always", "sigv4")
    # Its one policy grants reading to CloudFront, for this distribution only.
    (policy,) = [lid for lid, r in resources("AWS::S3::BucketPolicy").items()
                 if ref(r["Properties"]["Bucket"]) == bucket]
    allows = [st for st in props(policy)["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"]
    assert len(allows) == 1
    (allow,) = allows
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] in ("s3:GetObject", ["s3:GetObject"])
    assert sub_text(allow["Resource"]) == var(f"{bucket}.Arn") + "/*"
    source = sub_text(allow["Condition"]["StringEquals"]["AWS:SourceArn"])
    partition, account = var("AWS::Partition"), var("AWS::AccountId")
    assert source == f"arn:{partition}:cloudfront::{account}:distribution/{var(dist)}"


def test_the_api_behavior_reaches_the_rest_api_uncached_over_https():
    _, config = distribution()
    (api,) = [b for b in config["CacheBehaviors"] if b["PathPattern"] == "/api/*"]
    api_origin = origin(config, api["TargetOriginId"])
    # The same API and stage as the ApiUrl output; every route of the template is under /api/.
    api_url = sub_text(template()["Outputs"]["ApiUrl"]["Value"])
    rest_api, stage = re.fullmatch(r"https://\$\{(\w+)\}\.execute-api\.[^/]+/(\w+)", api_url).groups()
    assert sub_text(api_origin["DomainName"]) == \
        f"{var(rest_api)}.execute-api.{var('AWS::Region')}.{var('AWS::URLSuffix')}"
    assert api_origin["OriginPath"] == f"/{stage}"
    assert api_origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    from devstack.template import Template

    assert all(r.path.startswith("/api/") for r in Template.load(TEMPLATE).routes)
    assert api["CachePolicyId"] == CACHING_DISABLED
    assert api["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    assert set(api["AllowedMethods"]) == {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}
    assert api["ViewerProtocolPolicy"] in ("https-only", "redirect-to-https")
    # Everything else is the bucket's files: cached, compressed, https.
    default = config["DefaultCacheBehavior"]
    assert config["DefaultRootObject"] == "index.html"
    assert default["CachePolicyId"] == CACHING_OPTIMIZED
    assert default["ViewerProtocolPolicy"] == "redirect-to-https" and default["Compress"] is True


def test_the_response_headers_policy_carries_the_dashboards_csp():
    from devstack.dashboard import CSP

    _, config = distribution()
    behaviors = [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]
    (policy,) = {ref(b["ResponseHeadersPolicyId"]) for b in behaviors}
    headers = props(policy)["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    # What devstack sends is what CloudFront sends: one CSP for both.
    assert headers["ContentSecurityPolicy"] == {"ContentSecurityPolicy": CSP, "Override": True}
    assert headers["ContentTypeOptions"]["Override"] is True
    assert headers["FrameOptions"]["FrameOption"] == "DENY"
    assert headers["ReferrerPolicy"]["ReferrerPolicy"] == "no-referrer"
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000


def test_outputs_give_the_publish_command_what_it_reads():
    outputs = template()["Outputs"]
    assert {"DashboardUrl", "DashboardBucketName", "DashboardDistributionId", "WebSocketUrl"} <= set(outputs)
    dist, _ = distribution()
    assert sub_text(outputs["DashboardUrl"]["Value"]) == f"https://{var(dist + '.DomainName')}/"
    assert ref(outputs["DashboardDistributionId"]["Value"]) == dist
    code = (REPO_ROOT / "devstack/cli.py").read_text()
    for name in ("DashboardBucketName", "DashboardDistributionId", "WebSocketUrl"):
        assert f'"{name}"' in code, f"stockpred dashboard publish does not read the {name} output"


# ---- outputs -----------------------------------------------------------------------------------
def test_outputs_name_the_secrets_buckets_and_workgroup_never_a_value():
    outputs = template()["Outputs"]
    values = [o["Value"] for o in outputs.values()]
    for lid in [*resources("AWS::SecretsManager::Secret"), *resources("AWS::S3::Bucket"),
                *resources("AWS::Athena::WorkGroup")]:
        assert {"Ref": lid} in values, f"no output for {lid}"
    assert "{{resolve:" not in json.dumps(outputs)
    assert {"ApiUrl", "WebSocketUrl"} <= set(outputs)
