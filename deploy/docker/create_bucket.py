"""Create the bucket of `AIFLOW_BLOB_URI` (s3://<bucket>/<prefix>) if it does not exist yet.

The compose stack's init service runs it against its S3 server, with the endpoint, region and
credentials every aiflow service uses (AIFLOW_BLOB_S3_ENDPOINT_URL, AIFLOW_BLOB_S3_REGION, the AWS
chain). aiflow itself never creates buckets: against a real S3 that is the operators' job.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError


def main() -> int:
    uri = urlparse(os.environ["AIFLOW_BLOB_URI"])
    if uri.scheme != "s3":
        print(f"blob.uri is {uri.scheme}://, not s3://: no bucket to create")
        return 0
    region = os.environ.get("AIFLOW_BLOB_S3_REGION") or None
    client = boto3.session.Session().client("s3", endpoint_url=os.environ.get("AIFLOW_BLOB_S3_ENDPOINT_URL") or None,
                                            region_name=region)
    try:
        client.head_bucket(Bucket=uri.netloc)
        print(f"bucket {uri.netloc} exists")
        return 0
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    where = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    client.create_bucket(Bucket=uri.netloc, **where)
    print(f"bucket {uri.netloc} created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
