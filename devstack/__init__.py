"""devstack: the local runtime. Starts the data services, serves template.yaml's functions with
Lambda semantics, and fires their schedules, with no Docker."""
