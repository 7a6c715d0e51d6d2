"""Idempotence by content, check mode, diff and removal: the same outcome for every provider."""

from kit import MiB


def test_upload_then_unchanged_then_a_same_size_edit_is_sent(contract):
    src, digest = contract.image(3 * MiB + 5, seed=1)
    first, run = contract.upload(src, "basic")
    assert first["changed"] is True and first["bytes_sent"] == 3 * MiB + 5, run.output[-3000:]
    assert first["sha256"] == digest and contract.stored("basic", first) == digest
    before = contract.received()
    second, run = contract.upload(src, "basic")
    assert second["changed"] is False and second["bytes_sent"] == 0, run.output[-3000:]
    assert "nothing sent" in second["msg"] and contract.received() == before
    edited, edited_digest = contract.image(3 * MiB + 5, seed=2)          # same name, same size, other bytes
    third, run = contract.upload(edited, "basic")
    assert third["changed"] is True and third["bytes_sent"] == 3 * MiB + 5, run.output[-3000:]
    assert contract.stored("basic", third) == edited_digest
    assert contract.open_sessions("basic", third) == 0


def test_check_mode_changes_nothing_and_diff_shows_the_change(contract):
    src, digest = contract.image(MiB + 3, seed=3)
    before = contract.received()
    result, run = contract.upload(src, "check", check=True, diff=True)
    assert result["changed"] is True and result["would_send"] == MiB + 3, run.output[-3000:]
    assert result["msg"].startswith("would send %d of %d bytes" % (MiB + 3, MiB + 3))
    assert contract.received() == before and contract.stored("check") is None
    assert result["diff"]["before"] != result["diff"]["after"]
    contract.upload(src, "check")
    again, _ = contract.upload(src, "check", check=True)
    assert again["changed"] is False


def test_state_absent_removes_what_was_uploaded_and_is_idempotent(contract):
    src, digest = contract.image(MiB, seed=4)
    contract.upload(src, "gone")
    assert contract.stored("gone") == digest
    check, _ = contract.upload(None, "gone", check=True, state="absent")
    assert check["changed"] is True and check["msg"].startswith("would remove") and contract.stored("gone") == digest
    removed, run = contract.upload(None, "gone", diff=True, state="absent")
    assert removed["changed"] is True and contract.stored("gone") is None, run.output[-3000:]
    again, _ = contract.upload(None, "gone", state="absent")
    assert again["changed"] is False and "holds nothing" in again["msg"]
    back, _ = contract.upload(src, "gone")
    assert back["changed"] is True and contract.stored("gone") == digest
