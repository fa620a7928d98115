"""A stand-in for huggingface_hub's HfApi that records the calls and sends nothing."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from huggingface_hub import RepoUrl
from huggingface_hub.utils import filter_repo_objects


class FakeHubApi:
    """Records create_repo / create_branch / upload_folder; `uploaded` is what upload_folder would send,
    chosen from the folder by huggingface_hub's own pattern filter, as the real upload does."""

    instances: ClassVar[list[FakeHubApi]] = []

    def __init__(self, *_: Any, **__: Any) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.uploaded: list[str] = []
        FakeHubApi.instances.append(self)

    def create_repo(self, repo_id: str, **options: Any) -> RepoUrl:
        """As the Hub does, a bare name is created in the token owner's namespace ("someone")."""
        self.calls.append(("create_repo", repo_id, options))
        return RepoUrl(f"https://huggingface.co/{repo_id if '/' in repo_id else 'someone/' + repo_id}")

    def create_branch(self, repo_id: str, **options: Any) -> None:
        self.calls.append(("create_branch", repo_id, options))

    def upload_folder(self, *, repo_id: str, folder_path: Path, **options: Any) -> SimpleNamespace:
        self.calls.append(("upload_folder", repo_id, {"folder_path": folder_path, **options}))
        files = sorted(path.relative_to(folder_path).as_posix() for path in folder_path.rglob("*") if path.is_file())
        allowed = filter_repo_objects(
            files, allow_patterns=options["allow_patterns"], ignore_patterns=options["ignore_patterns"]
        )
        self.uploaded = list(allowed)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0123abc")
