"""The base of every service adapter: calls and paginators with botocore
errors translated at this one edge."""

from __future__ import annotations

from typing import Any

import botocore

from reconciler.aws import errors as aws_errors


class Adapter:
    service = ""

    def __init__(self, client: Any, region: str) -> None:
        self.client = client
        self.region = region

    def _call(self, operation: str, **params: Any) -> Any:
        try:
            return getattr(self.client, botocore.xform_name(operation))(**params)
        except aws_errors.BOTO_ERRORS as exc:
            raise aws_errors.translate(exc, self.service, operation) from exc

    def _pages(self, operation: str, result_key: str, **params: Any) -> list[Any]:
        try:
            paginator = self.client.get_paginator(botocore.xform_name(operation))
            return [item for page in paginator.paginate(**params) for item in page.get(result_key, [])]
        except aws_errors.BOTO_ERRORS as exc:
            raise aws_errors.translate(exc, self.service, operation) from exc
