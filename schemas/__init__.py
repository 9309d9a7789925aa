"""Arrow/Parquet schemas of every file the eercf jobs exchange, versioned."""
from schemas.video_features import (
    COLUMN_OF_FEATURE,
    FEATURE_COLUMNS,
    FEATURE_OF_COLUMN,
    SCHEMA_VERSION,
    STATUS_ERROR,
    STATUS_OK,
    SUPPORTED_SCHEMA_VERSIONS,
    FeatureDims,
    video_features_schema,
)

__all__ = [
    "COLUMN_OF_FEATURE",
    "FEATURE_COLUMNS",
    "FEATURE_OF_COLUMN",
    "SCHEMA_VERSION",
    "STATUS_ERROR",
    "SUPPORTED_SCHEMA_VERSIONS",
    "STATUS_OK",
    "FeatureDims",
    "video_features_schema",
]
