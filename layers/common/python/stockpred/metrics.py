"""CloudWatch metrics as Embedded Metric Format lines on stdout: no API call, no IAM permission.

Lambda sends each stdout line to the function's log group, and CloudWatch Logs turns a JSON line
carrying `_aws.CloudWatchMetrics` into a metric point. Namespace: METRICS_NAMESPACE
(`stockpred/<stack name>` on AWS, so two stacks in one account never mix); locally the line is
just a log line.
"""

from __future__ import annotations

import json
import os
import sys
import time


def namespace() -> str:
    return os.environ.get("METRICS_NAMESPACE") or "stockpred"


def emit(name: str, value: float, unit: str = "Count") -> str:
    """Writes one metric point and returns the line written."""
    line = json.dumps({
        "_aws": {"Timestamp": int(time.time() * 1000),
                 "CloudWatchMetrics": [{"Namespace": namespace(), "Dimensions": [[]],
                                        "Metrics": [{"Name": name, "Unit": unit}]}]},
        name: value,
    }, separators=(",", ":"))
    print(line, file=sys.stdout, flush=True)
    return line
