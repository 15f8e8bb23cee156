"""Results as a KCIDB document, the schema KernelCI's database takes from CI systems.

A pure function of what a run already wrote (summary.json's dict): one checkout
(the tree, its commit, a series' patchset), one build, one test per scenario
item (path ``lifetime.<scenario>``), one per boot whose kernel reported outside
every item (``lifetime.kernel_log``), and an issue per distinct kernel report
with an incident per test that hit it. Validated with kcidb-io, the schema's
own package, against the newest version it knows (v5.3 in kcidb-io 141).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
from kcidb_io.schema import LATEST

DEFAULT_ORIGIN = "lifetime_harness"
_ORIGIN = re.compile(r"^[a-z0-9_]+$")
# KCIDB's meaning: FAIL the code is faulty, ERROR the test could not finish (code status
# unknown), MISS it did not run for a harness failure, SKIP not applicable
_NOT_RUN = ("not run", "skipped")


class KcidbError(Exception):
    """The document would not be valid KCIDB (a bad origin name, or a harness bug)."""


@dataclass(frozen=True)
class Patchset:
    """The series a checkout carries on top of its commit."""

    files: tuple[Path, ...]
    message_id: str = ""  # the thread's cover letter, when the series came from a thread
    subject: str = ""
    version: int | None = None

    def digest(self) -> str:
        """KCIDB's patchset_hash: sha256 of the patches' sha256 sums, one per line."""
        sums = "".join(hashlib.sha256(f.read_bytes()).hexdigest() + "\n" for f in self.files)
        return hashlib.sha256(sums.encode()).hexdigest()


@dataclass
class Document:
    origin: str
    checkouts: list[dict] = field(default_factory=list)
    builds: list[dict] = field(default_factory=list)
    tests: list[dict] = field(default_factory=list)
    issues: dict[str, dict] = field(default_factory=dict)
    incidents: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        doc = {"version": {"major": LATEST.major, "minor": LATEST.minor}}
        for name in ("checkouts", "builds", "tests", "incidents"):
            if items := getattr(self, name):
                doc[name] = items
        if self.issues:
            doc["issues"] = list(self.issues.values())
        return doc


def check_origin(origin: str) -> str:
    if not _ORIGIN.match(origin):
        raise KcidbError(
            f"KCIDB origin {origin!r}: lower-case letters, digits and '_' only "
            f"(e.g. {DEFAULT_ORIGIN})"
        )
    return origin


def _uri(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def add_run(
    doc: Document, summary: dict, out: Path, patchset: Patchset | None = None, label: str = ""
) -> None:
    """One `harness run`'s results (``summary``: its summary.json, ``out`` its directory)."""
    origin = doc.origin
    build = summary.get("build") or {}
    props = summary.get("properties") or {}
    commit = build.get("git_commit") or props.get("tree_commit") or ""
    checkout_id = (
        f"{origin}:{_key(props.get('tree'), commit, patchset.digest() if patchset else '')}"
    )
    if not any(c["id"] == checkout_id for c in doc.checkouts):
        doc.checkouts.append(_checkout(checkout_id, origin, build, props, patchset))
    # a series' added runs boot the side's build again: one build, tested more
    build_id = f"{origin}:{_key(checkout_id, props.get('config_hash'))}"
    if not any(b["id"] == build_id for b in doc.builds):
        doc.builds.append(_build(build_id, checkout_id, origin, build, props, out))
    run = _key(summary.get("command"), str(out), summary.get("duration_s"), label)
    for item in summary.get("items", []):
        test_id = f"{origin}:{run}:{item['id']}"
        doc.tests.append(_test(test_id, build_id, origin, item, props))
        _incidents(doc, test_id, [s["title"] for s in item.get("splats", [])])
    for boot in summary.get("boots", []):
        if titles := [s["title"] for s in boot.get("splats_outside_scenarios") or []]:
            where = f"shard-{boot['shard']}-boot-" if "shard" in boot else "boot-"
            test_id = f"{origin}:{run}:{where}{boot['index']}"
            doc.tests.append(_outside_test(test_id, build_id, origin, boot, titles, props))
            _incidents(doc, test_id, titles)


def _incidents(doc: Document, test_id: str, titles: list[str]) -> None:
    """An issue per distinct report title, an incident of it in this test."""
    for n, title in enumerate(dict.fromkeys(titles)):
        issue_id = f"{doc.origin}:{_key(title)}"
        doc.issues.setdefault(
            issue_id,
            {
                "id": issue_id,
                "version": 0,
                "origin": doc.origin,
                "report_subject": title,
                "culprit": {"code": not title.startswith("timeout:"), "harness": False},
            },
        )
        doc.incidents.append(
            {
                "id": f"{test_id}:{n}",
                "origin": doc.origin,
                "issue_id": issue_id,
                "issue_version": 0,
                "test_id": test_id,
                "present": True,
            }
        )


def _checkout(cid: str, origin: str, build: dict, props: dict, patchset: Patchset | None) -> dict:
    tree = str(props.get("tree") or build.get("tree") or "")
    checkout = {
        "id": cid,
        "origin": origin,
        "tree_name": Path(tree).name or "unknown",
        "valid": True,
        "misc": {"tree": tree, "tree_version": props.get("tree_version") or ""},
    }
    commit = build.get("git_commit") or props.get("tree_commit") or ""
    if re.fullmatch(r"[0-9a-f]{40}", commit):
        checkout["git_commit_hash"] = commit
    if build.get("git_describe"):
        checkout["git_commit_name"] = build["git_describe"]
    if patchset is not None:
        checkout["patchset_hash"] = patchset.digest()
        checkout["patchset_files"] = [{"name": f.name, "url": _uri(f)} for f in patchset.files]
        if patchset.message_id:
            checkout["message_id"] = patchset.message_id
        if patchset.subject:
            checkout["comment"] = patchset.subject
        if patchset.version is not None:
            checkout["misc"]["series_version"] = patchset.version
    return checkout


def _build(bid: str, cid: str, origin: str, build: dict, props: dict, out: Path) -> dict:
    record = {
        "id": bid,
        "checkout_id": cid,
        "origin": origin,
        "architecture": "x86_64",
        "config_name": "lifetime-harness",
        "status": "FAIL" if build.get("failed") else "PASS",
        "misc": {
            "config_hash": props.get("config_hash") or build.get("config_hash") or "",
            "kernel_release": props.get("kernel_release") or build.get("kernel_release") or "",
            "fragments": build.get("fragments") or [],
            "objects_compiled": build.get("objects_compiled"),
        },
    }
    if build.get("duration_s") is not None:
        record["duration"] = float(build["duration_s"])
    if build.get("toolchain"):
        record["compiler"] = build["toolchain"]
    if (out / "build.log").is_file():
        record["log_url"] = _uri(out / "build.log")
    return record


def _status(item: dict) -> str:
    status = item["status"]
    if status == "error":
        return "MISS" if (item.get("error") or "").startswith(_NOT_RUN) else "ERROR"
    return {"pass": "PASS", "fail": "FAIL", "skipped": "SKIP"}[status]


def _test(tid: str, bid: str, origin: str, item: dict, props: dict) -> dict:
    titles = [s["title"] for s in item.get("splats", [])]
    why = titles or item.get("violations") or [(item.get("error") or "").split("\n")[0]]
    test = {
        "id": tid,
        "build_id": bid,
        "origin": origin,
        "path": f"lifetime.{item['scenario']}",
        "status": _status(item),
        "environment": _environment(props),
        "misc": {"item": item["id"], "seed": item.get("seed"), "boot": item.get("boot")},
    }
    if comment := "; ".join(w for w in dict.fromkeys(why) if w):
        test["comment"] = comment
    if item.get("duration_s"):
        test["duration"] = float(item["duration_s"])
    _attach_console(test, item.get("console"))
    if item.get("repro"):
        test["misc"]["reproduce"] = item["repro"]
    return test


def _attach_console(test: dict, console: str | None) -> None:
    """The console log as the test's log and output file, where it was kept."""
    if console and Path(console).is_file():
        test["log_url"] = _uri(console)
        test["output_files"] = [{"name": "console.log", "url": _uri(console)}]


def _environment(props: dict) -> dict:
    return {
        "comment": f"QEMU, {props.get('accelerator', 'accelerator unknown')}",
        "misc": {"qemu_command": props.get("qemu_command") or ""},
    }


def _outside_test(
    tid: str, bid: str, origin: str, boot: dict, titles: list[str], props: dict
) -> dict:
    """Reports a boot's kernel printed outside every item (booting, between items, at
    power-off): they count too, as the JUnit testcase "kernel log outside scenarios" does."""
    test = {
        "id": tid,
        "build_id": bid,
        "origin": origin,
        "path": "lifetime.kernel_log",
        "status": "FAIL",
        "comment": "; ".join(dict.fromkeys(titles)),
        "environment": _environment(props),
        "misc": {
            "boot": boot["index"],
            "outside_scenarios": True,
            **({"shard": boot["shard"]} if "shard" in boot else {}),
        },
    }
    _attach_console(test, boot.get("console"))
    return test


def validate(doc: dict) -> dict:
    """The document, if KCIDB's schema (kcidb-io) takes it; KcidbError naming what is wrong."""
    try:
        LATEST.validate_exactly(doc)
    except jsonschema.exceptions.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise KcidbError(f"not valid KCIDB {LATEST}: {where}: {exc.message}") from exc
    return doc


def write(path: Path, doc: Document) -> None:
    path.write_text(json.dumps(validate(doc.to_json()), indent=1) + "\n")
