"""Packaging: `handlers/` and `pipeline/` install as `mediasvc.handlers` and `mediasvc.pipeline`."""

from setuptools import setup

setup(
    name="mediasvc",
    version="0.1.0",
    description="Media management service: streaming uploads, records, derived files.",
    python_requires=">=3.11",
    packages=[
        "mediasvc",
        "mediasvc.models",
        "mediasvc.services",
        "mediasvc.storage",
        "mediasvc.uploader",
        "mediasvc.console",
        "mediasvc.handlers",
        "mediasvc.pipeline",
    ],
    package_dir={
        "mediasvc": "mediasvc",
        "mediasvc.handlers": "handlers",
        "mediasvc.pipeline": "pipeline",
    },
    # the web console's page and files (served by the service; nothing is built or fetched)
    package_data={
        "mediasvc.console": ["index.html", "static/*.*", "static/js/*.js", "static/vendor/*"]
    },
    install_requires=[
        "tornado>=6.5",
        "pymongo>=4.13",
        "multipart>=2.0",
        "pyjwt[crypto]>=2.10",
        "python-magic>=0.4.27",
        "nx-27017>=0.8",
        "pyvips>=2.2",
        "ffmpeg-python>=0.2",
        "boto3>=1.34",
        "prometheus-client>=0.20",
        "rich>=13",
        "msgspec>=0.23",
    ],
    entry_points={"console_scripts": ["mediasvc=mediasvc.cli:main"]},
)
