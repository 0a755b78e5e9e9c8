"""The README and docs/: the shell steps do what they say, every setting is documented once,
the first screen gives the two commands, and every link resolves inside the project."""

import re
import stat
import subprocess
from pathlib import Path

import yaml

README = Path(__file__).resolve().parents[1] / "README.md"
DOCS = README.parent / "docs"


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


def _settings_rows(text: str) -> list[str]:
    return re.findall(r"^\| `(SHELFCAST_[A-Z0-9_]+)` \|", text, re.M)


def test_the_settings_table_documents_every_setting_once() -> None:
    from shelfcast.settings import Settings

    rows = _settings_rows(README.read_text(encoding="utf-8"))
    fields = {f"SHELFCAST_{name.upper()}" for name in Settings.model_fields}
    assert len(rows) == len(set(rows)), sorted({r for r in rows if rows.count(r) > 1})
    missing = fields - set(rows)
    assert not missing, f"add these settings to the README's settings table: {sorted(missing)}"
    # Besides the fields: where the config file and the secret files are.
    assert set(rows) - fields == {"SHELFCAST_CONFIG", "SHELFCAST_SECRETS_DIR"}
    for doc in sorted(DOCS.glob("*.md")):  # documented once: the docs link to the table
        assert not _settings_rows(doc.read_text(encoding="utf-8")), doc.name


def test_the_first_screen_gives_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    first = text[: text.index("## CLI")]
    (block,) = re.findall(r"```bash\n(.*?)```", first, re.S)
    assert [line.split()[0] for line in block.splitlines()] == ["./scripts/demo", "./scripts/test"]
    assert "http://127.0.0.1:8470/" in first and "shelfcast forecasts --follow" in first


def test_the_docs_cite_no_paths_outside_the_project_and_their_links_resolve() -> None:
    for doc in [README, *sorted(DOCS.glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        assert "../shared" not in text and "/work/shared" not in text, doc.name
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.name} links to {target}"
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", text):
            linked = (doc.parent / target) if target else doc
            if linked.suffix == ".md":
                assert anchor in _anchors(linked.read_text(encoding="utf-8")), (
                    doc.name,
                    target,
                    anchor,
                )


def _anchors(text: str) -> set[str]:
    """The anchors GitHub makes of a Markdown file's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found
