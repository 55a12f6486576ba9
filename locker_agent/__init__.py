"""locker-agent: the controller that runs inside a parcel locker."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("locker-agent")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
