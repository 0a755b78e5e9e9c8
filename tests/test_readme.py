"""The README's shell steps do what it says."""

import re
import stat
import subprocess
from pathlib import Path

import yaml

README = Path(__file__).resolve().parents[1] / "README.md"


def test_secret_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (snippet,) = [b for b in blocks if "secrets/" in b]
    steps = "\n".join(line for line in snippet.splitlines() if "docker compose" not in line)
    # Run as a shell with the common umask 022 would: it made them world-readable.
    subprocess.run(["bash", "-c", f"umask 022\n{steps}"], cwd=tmp_path, check=True, timeout=30)
    folder = tmp_path / "secrets"
    files = sorted(folder.iterdir())
    compose = yaml.safe_load((README.parent / "docker-compose.yml").read_text())
    needed = {Path(s["file"]).name for s in compose["secrets"].values()}
    assert {f.name for f in files} == needed  # every secret file the compose file reads
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
