"""eercf: coarse-to-fine text-to-video retrieval (EERCF, AAAI 2024) as an offline batch system."""
from setuptools import find_packages, setup

# Beam's DaskRunner (`--runner DaskRunner`): the versions apache-beam[dask] asks for.
DASK = ["dask>=2024.4.2", "distributed>=2024.4.2"]
# s3:// URLs (fsspec's S3 filesystem); gs:// needs gcsfs, az:// adlfs (not pinned here).
S3 = ["s3fs>=2024.12"]
# The object-storage tests run a real S3 server in-process (moto's ThreadedMotoServer).
S3_TEST = ["moto[server]>=5.1,<6", *S3]

setup(
    name="eercf",
    version="0.1.0",
    description="Index video corpora for text-to-video retrieval with EERCF: Beam extraction, "
    "FAISS recall, text-gated rerank, training and evaluation.",
    python_requires=">=3.10",
    packages=find_packages(include=["eercf_core", "eercf_core.*", "pipelines", "pipelines.*",
                                    "schemas", "schemas.*"]),
    package_data={"eercf_core": ["model/configs/*.json", "report/assets/*"]},
    install_requires=[
        # torch is installed first by the Makefile (pinned local build); any recent one works.
        "torch>=2.1",
        "torchvision>=0.16",
        "open_clip_torch>=3.0,<4",
        "apache-beam>=2.60",
        "pyarrow>=14,<26",
        "numpy>=1.24,<2.5",
        "fsspec>=2023.1",
        "faiss-cpu>=1.8",
        "decord2>=3.0",
        "av>=12",
        "matplotlib>=3.7",
        "ftfy",
        "regex",
    ],
    # The test extra (`make install`): the test runner, the linters `make lint` runs (pinned to a
    # minor release: a new one may add checks, which is a deliberate update), websocket-client
    # (the report's browser test drives headless Chromium over DevTools), Dask, and moto + s3fs
    # (the object-storage tests' S3 server).
    extras_require={"dask": DASK, "s3": S3,
                    "test": ["pytest>=8", "pytest-timeout>=2.3", "ruff>=0.17,<0.18",
                             "mypy>=2.4,<2.5", "websocket-client>=1.6",
                             "pandas>=2", "duckdb>=1",  # tests of the README's v3 shard reads
                             *DASK, *S3_TEST]},
    entry_points={"console_scripts": ["eercf=pipelines.cli:main"]},
)
