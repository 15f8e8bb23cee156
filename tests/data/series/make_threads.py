"""Build the mailing-list threads in tests/data/series/ from the nvmem series' own patches,
as lore would archive them (run by hand; the outputs are committed).

nvmem-survive-unbind.thread.mbox: v1 (the first patch alone, with a cover letter), v2 (both
patches, a cover with a changelog), a review of v2 1/2 that quotes a hunk and suggests a
change as a bare diff fragment, ending in Reviewed-by, and a Tested-by to the v2 cover.
nvmem-survive-unbind-incomplete.thread.mbox.gz: the same, then a v3 announced as three
patches of which the list has only 1/3 and 2/3 (gzip'd, as lore's t.mbox.gz).

    python3 tests/data/series/make_threads.py
"""

from __future__ import annotations

import email.policy
import email.utils
import gzip
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
PATCHES = sorted((HERE / "nvmem-survive-unbind").glob("*.patch"))
AUTHOR = "Harness Dev <harness@localhost>"
LIST = "linux-kernel@vger.kernel.org"
DAY = 86400
START = 1795000000  # 2026-11-17


class Thread:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.clock = START

    def post(
        self,
        sender: str,
        subject: str,
        body: str,
        reply_to: EmailMessage | None = None,
        ident: str = "",
    ) -> EmailMessage:
        self.clock += 600
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = sender
        msg["To"] = LIST
        msg["Subject"] = subject
        msg["Date"] = email.utils.formatdate(self.clock, usegmt=True)
        msg["Message-ID"] = f"<{ident or self.clock}.{len(self.messages)}@lifetime-harness.test>"
        if reply_to is not None:
            msg["In-Reply-To"] = reply_to["Message-ID"]
            msg["References"] = reply_to["Message-ID"]
        msg.set_content(body)
        self.messages.append(msg)
        return msg

    def series(
        self, version: int, patches: list[Path], total: int, cover: str
    ) -> list[EmailMessage]:
        tag = "PATCH" if version == 1 else f"PATCH v{version}"
        head = self.post(
            AUTHOR,
            f"[{tag} 0/{total}] nvmem: survive unbind with active consumers",
            cover,
            ident=f"cover-v{version}",
        )
        sent = [head]
        for number, patch in enumerate(patches, 1):
            original = BytesParser(policy=email.policy.default).parsebytes(patch.read_bytes())
            title = str(original["Subject"]).split("] ", 1)[1]
            sent.append(
                self.post(
                    AUTHOR,
                    f"[{tag} {number}/{total}] {title}",
                    original.get_content(),
                    head,
                    f"v{version}-{number}",
                )
            )
        return sent

    def mbox(self) -> bytes:
        out = b""
        for msg in self.messages:
            out += b"From mboxrd@z Thu Jan  1 00:00:00 1970\n"
            body = msg.as_bytes(policy=email.policy.default.clone(linesep="\n"))
            out += (
                b"\n".join(
                    b">" + line if line.startswith(b"From ") else line for line in body.split(b"\n")
                )
                + b"\n"
            )
        return out


COVER_V1 = """\
A provider unbound while an nvmem consumer holds the device stays registered,
and its sysfs files and lookups reach freed provider data. This first step
deletes the device at nvmem_unregister().
"""
COVER_V2 = """\
The nvmem core defers deregistration to the last consumer reference, so a
provider unbound under a consumer leaves a registered device whose callbacks
and data are freed. Patch 1 deletes the device at nvmem_unregister(); patch 2
puts the provider's callbacks behind an SRCU-protected pointer that
unregister clears and synchronizes, so consumers get -ENODEV after it.

Changes in v2:
- keep the provider's callbacks behind SRCU (new patch 2), as the review of
  v1 asked: deleting the device alone does not stop a consumer that already
  holds it
"""


def review(thread: Thread, patch: EmailMessage) -> None:
    """A reviewer quotes the first hunk and suggests a change as an unquoted fragment."""
    body = patch.get_content()
    hunk = body[body.index("@@") :].split("\n@@", 1)[0].splitlines()[:12]
    quoted = "\n".join("> " + line for line in hunk)
    text = (
        f"On the v2 posting, {AUTHOR} wrote:\n{quoted}\n\n"
        "Looks right. If you respin, a comment where the kref goes would help, e.g.:\n\n"
        "@@ -1 +1,2 @@\n"
        "+\t/* consumer references now hold the device itself */\n\n"
        "Either way:\n\n"
        "Reviewed-by: Rita Reviewer <rita@example.org>\n"
    )
    thread.post("Rita Reviewer <rita@example.org>", f"Re: {patch['Subject']}", text, patch)


def main() -> None:
    thread = Thread()
    thread.series(1, PATCHES[:1], 1, COVER_V1)
    thread.clock += 7 * DAY
    v2 = thread.series(2, PATCHES, 2, COVER_V2)
    review(thread, v2[1])
    thread.post(
        "Tess Tester <tess@example.org>",
        f"Re: {v2[0]['Subject']}",
        "Ran the unbind-under-consumers tests on 6.12.\n\n"
        "Tested-by: Tess Tester <tess@example.org>\n",
        v2[0],
    )
    (HERE / "nvmem-survive-unbind.thread.mbox").write_bytes(thread.mbox())
    thread.clock += 7 * DAY
    cover = COVER_V2.replace(
        "Changes in v2", "Changes in v3:\n- patch 2 split in two\n\nChanges in v2"
    )
    v3 = thread.series(3, PATCHES, 3, cover)  # 1/3 and 2/3; 3/3 never reached the list
    assert len(v3) == 3
    (HERE / "nvmem-survive-unbind-incomplete.thread.mbox.gz").write_bytes(
        gzip.compress(thread.mbox(), mtime=0)
    )


if __name__ == "__main__":
    main()
