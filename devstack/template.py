"""Reads template.yaml into what devstack serves: functions, their HTTP routes, schedules, layers.

The SAM template is the single source of truth for wiring; devstack and the tests read it here
rather than keeping a second list of routes or function names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LOCAL_ACCOUNT = "123456789012"
LOCAL_REGION = "us-east-1"


class CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form intrinsics (!Ref, !GetAtt, !Sub, ...)."""


def _intrinsic(loader: CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def load_yaml(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return yaml.load(f, Loader=CfnLoader)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str


@dataclass(frozen=True)
class Schedule:
    name: str
    function: str
    expression: str
    input: str | None
    enabled: bool


@dataclass(frozen=True)
class QueueSource:
    """An SQS event source mapping: `function` is invoked with batches of `queue`'s messages."""

    name: str
    function: str
    queue: str  # the queue's logical id, which is its name locally
    batch_size: int
    report_failures: bool  # FunctionResponseTypes: [ReportBatchItemFailures]
    max_concurrency: int


@dataclass(frozen=True)
class Function:
    logical_id: str
    code_dir: Path
    handler: str
    layer_dirs: tuple[Path, ...]  # each layer's content: its Makefile's folder, or its built output
    timeout_s: int
    memory_mb: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{self.logical_id}"


@dataclass(frozen=True)
class WsRoute:
    route_key: str
    function: str
    two_way: bool


def _sub_refs(value: Any) -> list[str]:
    """The `${Name}` / `${Name.Attr}` references of a !Sub string (or of a plain string)."""
    text = value.get("Fn::Sub", "") if isinstance(value, dict) else str(value)
    if isinstance(text, list):
        text = text[0]
    return re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}", text)


def _websocket_routes(resources: dict[str, Any], functions: dict[str, Function]) -> list[WsRoute]:
    """Each AWS::ApiGatewayV2 route of a WEBSOCKET API, with the function its integration calls."""
    responses = {r["Properties"]["RouteId"].get("Ref") for r in resources.values()
                 if r.get("Type") == "AWS::ApiGatewayV2::RouteResponse"}
    out = []
    for lid, res in resources.items():
        if res.get("Type") != "AWS::ApiGatewayV2::Route":
            continue
        props = res["Properties"]
        integration = next((r for r in _sub_refs(props.get("Target", "")) if r in resources), None)
        uri = resources[integration]["Properties"].get("IntegrationUri", "") if integration else ""
        # `${Fn.Arn}`, or `${FnAliaslive}`: the alias SAM generates for AutoPublishAlias.
        refs = [re.sub(r"Alias\w+$", "", r) if r not in functions else r for r in _sub_refs(uri)]
        function = next((r for r in refs if r in functions), None)
        if function:
            out.append(WsRoute(props["RouteKey"], function, lid in responses))
    return out


@dataclass
class Template:
    path: Path
    functions: dict[str, Function]
    routes: list[Route]
    schedules: list[Schedule]
    raw: dict[str, Any]
    ws_routes: list[WsRoute] = field(default_factory=list)
    queue_sources: list[QueueSource] = field(default_factory=list)

    @property
    def alias(self) -> str | None:
        """The alias every function publishes (Globals.Function.AutoPublishAlias), if any."""
        return ((self.raw.get("Globals") or {}).get("Function") or {}).get("AutoPublishAlias")

    @property
    def built(self) -> bool:
        """Whether this is `sam build`'s output (.aws-sam/build/template.yaml beside build.toml)."""
        return (self.path.parent.parent / "build.toml").is_file()

    @classmethod
    def load(cls, path: Path | str) -> Template:
        path = Path(path).resolve()
        raw = load_yaml(path)
        base = path.parent
        resources: dict[str, Any] = raw.get("Resources", {})
        glob_fn: dict[str, Any] = (raw.get("Globals") or {}).get("Function", {}) or {}

        def layer_dir(ref: Any) -> Path | None:
            if isinstance(ref, dict) and "Ref" in ref:
                res = resources.get(ref["Ref"], {})
                if res.get("Type") == "AWS::Serverless::LayerVersion":
                    return base / res["Properties"]["ContentUri"]
            return None

        functions: dict[str, Function] = {}
        routes: list[Route] = []
        schedules: list[Schedule] = []
        queue_sources: list[QueueSource] = []
        for lid, res in resources.items():
            if res.get("Type") != "AWS::Serverless::Function":
                continue
            props = res.get("Properties", {})
            layers = [d for d in map(layer_dir, glob_fn.get("Layers", []) + props.get("Layers", []))
                      if d is not None]
            env = {
                **((glob_fn.get("Environment") or {}).get("Variables") or {}),
                **((props.get("Environment") or {}).get("Variables") or {}),
            }
            functions[lid] = Function(
                logical_id=lid,
                code_dir=base / props.get("CodeUri", glob_fn.get("CodeUri", ".")),
                handler=props.get("Handler", glob_fn.get("Handler", "app.app")),
                layer_dirs=tuple(layers),
                timeout_s=int(props.get("Timeout", glob_fn.get("Timeout", 3))),
                memory_mb=int(props.get("MemorySize", glob_fn.get("MemorySize", 128))),
                env={k: str(v) for k, v in env.items() if isinstance(v, str | int | float)},
            )
            for ev_name, ev in (props.get("Events") or {}).items():
                ev_props = ev.get("Properties", {})
                if ev.get("Type") == "Api":
                    routes.append(Route(ev_props["Method"].upper(), ev_props["Path"], lid))
                elif ev.get("Type") == "Schedule":
                    schedules.append(Schedule(
                        name=f"{lid}.{ev_name}", function=lid,
                        expression=ev_props["Schedule"], input=ev_props.get("Input"),
                        enabled=ev_props.get("Enabled", True) is not False,
                    ))
                elif ev.get("Type") == "SQS":
                    queue = ev_props["Queue"]
                    responses = ev_props.get("FunctionResponseTypes") or []
                    scaling = ev_props.get("ScalingConfig") or {}
                    queue_sources.append(QueueSource(
                        name=f"{lid}.{ev_name}", function=lid,
                        queue=queue["Fn::GetAtt"][0] if isinstance(queue, dict) else str(queue),
                        batch_size=int(ev_props.get("BatchSize", 10)),
                        report_failures="ReportBatchItemFailures" in responses,
                        max_concurrency=int(scaling.get("MaximumConcurrency", 2)),
                    ))
        return cls(path, functions, routes, schedules, raw, _websocket_routes(resources, functions),
                   queue_sources)

    def resolve(self, name_or_arn: str) -> Function | None:
        """A function by logical id, or by a Lambda ARN (optionally qualified) naming it."""
        name = name_or_arn
        if name.startswith("arn:"):
            parts = name.split(":")
            name = parts[6] if len(parts) >= 7 else ""
        else:
            name = name.split(":")[0]
        return self.functions.get(name)
