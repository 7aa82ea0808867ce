"""The only place that creates boto3 clients. One adapter per service."""
