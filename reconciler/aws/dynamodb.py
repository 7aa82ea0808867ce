"""DynamoDB: the lock table of the S3 state backend, in the layout Terraform's
S3 backend uses (hash key ``LockID``, a string; the holder in ``Info``), so a
team can point reconciler at the lock table it already has. Items are taken
with a conditional put (``attribute_not_exists(LockID)``) and deleted only
while they still hold what their taker saw (``Info = :seen``; the
name through ExpressionAttributeNames, whatever DynamoDB reserves)."""

from __future__ import annotations

from reconciler import errors
from reconciler.aws import adapter

CONDITION_FAILED = "ConditionalCheckFailedException"


class LockTable(adapter.Adapter):
    """One lock table: items keyed ``LockID`` holding an ``Info`` string."""

    service = "dynamodb"

    def __init__(self, client: object, region: str, table: str) -> None:
        super().__init__(client, region)
        self.table = table

    def put_if_absent(self, lock_id: str, info: str) -> bool:
        """Create item ``lock_id``; False when it exists already (someone holds it)."""
        try:
            self._call("PutItem", TableName=self.table,
                       Item={"LockID": {"S": lock_id}, "Info": {"S": info}},
                       ConditionExpression="attribute_not_exists(LockID)")
        except errors.AwsNotFound as exc:
            raise self._missing(exc) from exc
        except errors.AwsError as exc:
            if exc.code == CONDITION_FAILED:
                return False
            raise
        return True

    def get(self, lock_id: str) -> str | None:
        """The ``Info`` of item ``lock_id`` (strongly consistent), None when there is no item
        ("" for an item without one)."""
        try:
            out = self._call("GetItem", TableName=self.table, Key={"LockID": {"S": lock_id}},
                             ConsistentRead=True)
        except errors.AwsNotFound as exc:
            raise self._missing(exc) from exc
        item = out.get("Item")
        if item is None:
            return None
        return str(item.get("Info", {}).get("S", ""))

    def delete_if(self, lock_id: str, info: str) -> bool:
        """Delete item ``lock_id`` only while its ``Info`` is ``info``; False when it
        changed or is gone (another run released it, or broke it and took it)."""
        try:
            self._call("DeleteItem", TableName=self.table, Key={"LockID": {"S": lock_id}},
                       ConditionExpression="#info = :seen", ExpressionAttributeNames={"#info": "Info"},
                       ExpressionAttributeValues={":seen": {"S": info}})
        except errors.AwsNotFound as exc:
            raise self._missing(exc) from exc
        except errors.AwsError as exc:
            if exc.code == CONDITION_FAILED:
                return False
            raise
        return True

    def _missing(self, exc: errors.AwsNotFound) -> errors.AwsNotFound:
        """A missing table says how to make one, not only 'not found'."""
        return errors.AwsNotFound(
            f"lock table {self.table} does not exist in {self.region} (dynamodb: {exc.code}); create it "
            "with a string hash key LockID, e.g. `aws dynamodb create-table --table-name "
            f"{self.table} --attribute-definitions AttributeName=LockID,AttributeType=S "
            "--key-schema AttributeName=LockID,KeyType=HASH --billing-mode PAY_PER_REQUEST "
            f"--region {self.region}`", exc.code)
