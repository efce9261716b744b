"""What operators see: structured log lines (logs), their shipper into OpenSearch (logship,
opensearch), metrics as Embedded Metric Format lines (metrics), the dependencies' health (health)
and the template's alarms (alarms).
"""
