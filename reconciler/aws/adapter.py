"""The base of every service adapter: calls and paginators with botocore
errors translated at this one edge."""

from __future__ import annotations

import functools
import os
from typing import Any

from reconciler import errors
from reconciler.aws import errors as aws_errors

PAGE_SIZE_ENV = "RECONCILER_PAGE_SIZE"  # smaller pages for the refresh's list calls (tests, bench)


def page_size(largest: int) -> int:
    """The page size of a listing whose largest page AWS allows is ``largest``:
    that, or ``RECONCILER_PAGE_SIZE`` when smaller (read at every call)."""
    text = os.environ.get(PAGE_SIZE_ENV, "")
    if not text:
        return largest
    try:
        wanted = int(text)
    except ValueError:
        raise errors.ConfigError(f"{PAGE_SIZE_ENV} must be a whole number") from None
    if wanted < 1:
        raise errors.ConfigError(f"{PAGE_SIZE_ENV} must be at least 1")
    return min(wanted, largest)


class Adapter:
    service = ""

    def __init__(self, client: Any, region: str) -> None:
        self.client = client
        self.region = region

    def _call(self, operation: str, **params: Any) -> Any:
        try:
            return getattr(self.client, _xform(operation))(**params)
        except aws_errors.boto_errors() as exc:
            raise aws_errors.translate(exc, self.service, operation) from exc

    def _pages(self, operation: str, result_key: str, *, largest_page: int | None = None,
               **params: Any) -> list[Any]:
        """Every item of a paginated listing. ``largest_page``: ask for pages that
        large (the most AWS returns at once: fewer calls than its default), or as
        ``RECONCILER_PAGE_SIZE`` says."""
        if largest_page is not None:
            params["PaginationConfig"] = {"PageSize": page_size(largest_page)}
        try:
            paginator = self.client.get_paginator(_xform(operation))
            return [item for page in paginator.paginate(**params) for item in page.get(result_key, [])]
        except aws_errors.boto_errors() as exc:
            raise aws_errors.translate(exc, self.service, operation) from exc


@functools.cache
def _xform(operation: str) -> str:
    """``CreateKey`` -> ``create_key``: botocore's own naming, imported when first called."""
    import botocore

    return str(botocore.xform_name(operation))
