"""A refused Range (issue 14, item 5): a 416 was written to the audit log as a play, "ok"."""

from __future__ import annotations

from tests.test_recordings_http import Site, site_fixture  # noqa: F401  # fixture


async def test_an_unsatisfiable_range_is_audited_as_a_refusal(site: Site) -> None:
    size = len(site.audio)
    for header in (f"bytes={size + 5}-", f"bytes={size}-{size + 10}", "bytes=5-1", "bytes=0-1,4-5"):
        resp = await site.get("/recordings/1/audio", user="anna", Range=header)
        assert resp.status == 416, header
        assert resp.headers["Content-Range"] == f"bytes */{size}"
    plays = await site.audit("recording.play")
    assert [(e.action, e.result) for e in plays] == [("recording.play", "refused")] * 4
    assert plays[0].detail["reason"]
    assert (await site.get("/recordings/1/audio", user="anna", Range="bytes=0-9")).status == 206
    assert (await site.audit("recording.play"))[-1].result == "ok"
