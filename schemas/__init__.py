"""Arrow/Parquet schemas of every file the eercf jobs exchange, versioned."""
from schemas.video_features import (
    FEATURE_COLUMNS,
    SCHEMA_VERSION,
    STATUS_ERROR,
    SUPPORTED_SCHEMA_VERSIONS,
    STATUS_OK,
    FeatureDims,
    dims_from_schema,
    video_features_schema,
)

__all__ = [
    "FEATURE_COLUMNS",
    "SCHEMA_VERSION",
    "STATUS_ERROR",
    "SUPPORTED_SCHEMA_VERSIONS",
    "STATUS_OK",
    "FeatureDims",
    "dims_from_schema",
    "video_features_schema",
]
