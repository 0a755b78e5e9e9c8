"""A stand-in for ``kafka-acls.sh`` (whose tool jar the embedded broker does not fetch): the
``--add`` subset that deploy/kafka/secure/acls.sh uses, sent through the admin API with the
admin client's properties file as given (``${secrets:DIR:KEY}`` resolved as Kafka's
DirectoryConfigProvider does). Run by tests/test_compose_secure.py in acls.sh's place."""

import re
import sys
from pathlib import Path

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)


def _properties(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def _resolve(value: str) -> str:
    return re.sub(
        r"\$\{secrets:([^:}]+):([^}]+)\}",
        lambda m: (Path(m.group(1)) / m.group(2)).read_text(),
        value,
    )


def main(argv: list[str]) -> int:
    args: dict[str, list[str]] = {}
    key = ""
    for word in argv:
        if word.startswith("--"):
            key = word[2:]
            args.setdefault(key, [])
        else:
            args[key].append(word)
    assert "add" in args, "only --add is stood in for"
    props = _properties(Path(args["command-config"][0]))
    jaas = _resolve(props["sasl.jaas.config"])
    user = re.search(r'username="([^"]*)"', jaas)
    password = re.search(r'password="([^"]*)"', jaas)
    assert user and password
    admin = AdminClient(
        {
            "bootstrap.servers": args["bootstrap-server"][0],
            "security.protocol": props["security.protocol"],
            "sasl.mechanism": props["sasl.mechanism"],
            "sasl.username": user.group(1),
            "sasl.password": password.group(1),
        }
    )
    kind, name = (
        (ResourceType.TOPIC, args["topic"][0]) if "topic" in args
        else (ResourceType.GROUP, args["group"][0])
    )  # fmt: skip
    pattern = ResourcePatternType[args.get("resource-pattern-type", ["literal"])[0].upper()]
    operations = [
        AclOperation[re.sub(r"(?<!^)([A-Z])", r"_\1", op).upper()] for op in args["operation"]
    ]
    bindings = [
        AclBinding(
            kind, name, pattern, args["allow-principal"][0], "*", op, AclPermissionType.ALLOW
        )
        for op in operations
    ]
    for future in admin.create_acls(bindings, request_timeout=30).values():
        future.result()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
