"""The shared store a setting names: ``DICOMWEB_GW_SHARED_STORE`` to a ``BlobStore``.

Apart from blobs.py so that the BlobStore protocol and its two backends do not
import each other: the backends import blobs.py, this factory imports them.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dicomweb_gw.cache.blobs import BUCKET_NAME, BlobStore, check_prefix
from dicomweb_gw.cache.blobs_folder import FolderBlobStore
from dicomweb_gw.cache.blobs_s3 import S3BlobStore

__all__ = ["blob_store_from_url"]


def blob_store_from_url(url: str, *, s3_endpoint: str | None = None,
                        s3_region: str | None = None) -> BlobStore:
    """The store a URL names: ``file:///path`` or ``/path`` (a folder every replica
    mounts) or ``s3://bucket/prefix``.

    S3 credentials come from the standard ``AWS_*`` environment variables (or an
    instance/pod role), which obstore reads; ``s3_endpoint`` points at
    MinIO, Ceph or an emulator instead of AWS. Nothing is contacted here: an
    outage at start-up must not stop the gateway. A malformed URL raises
    ValueError with a one-line message.
    """
    if url.startswith("/"):
        return _folder(url)
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{url!r}: a file URL names no host (file:///path)")
        if parts.query or parts.fragment:
            raise ValueError(f"{url!r}: a file URL takes no query or fragment")
        return _folder(unquote(parts.path))
    if parts.scheme == "s3":
        return _s3(url, s3_endpoint, s3_region)
    raise ValueError(f"{url!r} is not file:///path, an absolute path or s3://bucket/prefix")


def _folder(path: str) -> BlobStore:
    if not path.startswith("/"):
        raise ValueError(f"{path!r}: the shared folder must be an absolute path")
    return FolderBlobStore(Path(path))


def _s3(url: str, endpoint: str | None, region: str | None) -> BlobStore:
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # Not echoed: the URL holds a secret.
        raise ValueError("an s3:// URL must not hold credentials; set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY instead")
    bucket = parts.netloc
    if not BUCKET_NAME.fullmatch(bucket):
        raise ValueError(f"{url!r}: {bucket!r} is not a valid S3 bucket name "
                         "(3-63 characters: a-z, 0-9, '.', '-')")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: an s3 URL takes no query or fragment")
    prefix = unquote(parts.path).strip("/")
    try:
        check_prefix(prefix)
    except ValueError:
        raise ValueError(f"{url!r}: invalid key prefix {prefix!r}") from None
    if endpoint is not None:
        target = urlsplit(endpoint)
        if target.scheme not in ("http", "https") or not target.netloc:
            raise ValueError(f"S3 endpoint {endpoint!r} is not an http:// or https:// URL")
    if region is not None and not re.fullmatch(r"[a-z0-9-]+", region):
        raise ValueError(f"S3 region {region!r} is not a region name like eu-west-1")

    return S3BlobStore(bucket, prefix, endpoint=endpoint, region=region)
