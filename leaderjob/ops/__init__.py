"""The operator's surface beside the command line: HTTP endpoints, metrics, health checks,
notifications, pings, the database quota and job fingerprints."""
