"""The Resource Groups Tagging API adapter: which objects of a region carry
given tags, in pages (one call per 100 objects, not one per object). What
finds the objects a stack made when its state lost them (SPEC 3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.aws import adapter


RESOURCES_PAGE = 100  # GetResources returns at most 100 objects a page


class TaggingAdapter(adapter.Adapter):
    service = "tag"  # as IAM names its actions (tag:GetResources), in errors and the policy

    def tagged(self, tags: Mapping[str, str], types: Sequence[str]) -> dict[str, dict[str, str]]:
        """ARN -> tags of every object of ``types`` (``kms:key``,
        ``secretsmanager:secret``...) in this region carrying every one of ``tags``."""
        found = self._pages("GetResources", "ResourceTagMappingList",
                            TagFilters=[{"Key": k, "Values": [v]} for k, v in sorted(tags.items())],
                            ResourceTypeFilters=list(types), largest_page=RESOURCES_PAGE)
        return {str(item["ResourceARN"]): {t["Key"]: t["Value"] for t in item.get("Tags", [])} for item in found}
