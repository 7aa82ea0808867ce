"""The Secrets Manager listing adapter (``drift --unmanaged``): the secrets of
a region carrying a tag, with their tags, in pages. The vault store that reads
and writes entries is stores/secretsmanager.py."""

from __future__ import annotations

from reconciler.aws import adapter


class SecretsManagerAdapter(adapter.Adapter):
    service = "secretsmanager"

    def tagged(self, tag: str, value: str) -> dict[str, dict[str, str]]:
        """ARN -> tags of every secret carrying ``tag: value``; a secret scheduled
        for deletion is left out (ListSecrets omits it: it is on its way out)."""
        found = self._pages("ListSecrets", "SecretList",
                            Filters=[{"Key": "tag-key", "Values": [tag]}, {"Key": "tag-value", "Values": [value]}])
        tagged = {str(s["ARN"]): {t["Key"]: t["Value"] for t in s.get("Tags") or []} for s in found}
        return {arn: tags for arn, tags in tagged.items() if tags.get(tag) == value}
