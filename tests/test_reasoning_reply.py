"""A reasoning model's thinking read from its stream: in a delta field of its own
(each name servers use) or as `<think>…</think>` at the start of the content,
with the tags split across chunks anywhere."""

import pytest

from chat.provider import wire
from chat.provider.reply import Reply


def read_all(chunks: list[dict]) -> tuple[list[tuple[str, str]], Reply]:
    """Each chunk's (reasoning, text) as the reply hands them on, then the end's."""
    reply = Reply()
    pieces = [reply.read(chunk) for chunk in chunks]
    pieces.append(reply.end())
    return [p for p in pieces if p != ("", "")], reply


def content(*pieces: str) -> list[dict]:
    return [wire.role_chunk(), *(wire.text_chunk(p) for p in pieces), wire.finish_chunk("stop")]


@pytest.mark.parametrize("name", ["reasoning_content", "reasoning", "reasoning_text"])
def test_it_reads_reasoning_from_each_field_servers_use(name):
    chunks = [
        wire.role_chunk(),
        wire.chunk({name: "The user greets. "}),
        wire.chunk({name: "Greet back.", "content": None}),
        wire.text_chunk("Hello!"),
        wire.finish_chunk("stop"),
    ]
    pieces, reply = read_all(chunks)
    assert pieces == [("The user greets. ", ""), ("Greet back.", ""), ("", "Hello!")]
    assert reply.reasoning == "The user greets. Greet back."
    assert reply.text == "Hello!"


def test_a_server_sending_two_fields_is_read_once():
    # Some servers send the same thinking as `reasoning` and `reasoning_content`.
    _, reply = read_all([wire.chunk({"reasoning_content": "Hmm.", "reasoning": "Hmm."}), wire.text_chunk("Hi")])
    assert reply.reasoning == "Hmm." and reply.text == "Hi"


def test_reasoning_and_text_in_one_chunk_come_reasoning_first():
    pieces, _ = read_all([wire.chunk({"reasoning_content": "Think.", "content": "Answer."})])
    assert pieces == [("Think.", "Answer.")]


def test_think_tags_whole_in_one_chunk():
    pieces, reply = read_all(content("<think>Plan the answer.</think>\n\nThe answer."))
    assert pieces == [("Plan the answer.", "The answer.")]
    assert reply.reasoning == "Plan the answer." and reply.text == "The answer."


@pytest.mark.parametrize(
    "pieces",
    [
        ["<thi", "nk>Plan", " it.</th", "ink>\n\nDone", " now."],
        # One character a chunk.
        [*"<think>", "Plan it.", *"</think>", "\n", "\n", "Done now."],
        ["<think>", "Plan it.", "</think>", "\n\n", "Done now."],
        ["  \n", "<think>Plan", " it.<", "/think>Done now."],
        ["<think>Plan it.</think", ">\nDone now."],
    ],
)
def test_think_tags_split_across_chunks(pieces):
    _, reply = read_all(content(*pieces))
    assert reply.reasoning == "Plan it."
    assert reply.text == "Done now."


def test_a_partial_closing_tag_inside_the_thinking_is_thinking():
    # "</th" held back until the next chunk shows it is not the tag.
    pieces, reply = read_all(content("<think>a </th", "ere> b</think>c"))
    assert reply.reasoning == "a </there> b" and reply.text == "c"
    assert pieces == [("a ", ""), ("</there> b", "c")]


def test_reasoning_is_handed_on_as_it_comes_not_at_the_closing_tag():
    pieces, _ = read_all(content("<think>", "one ", "two ", "three", "</think>", "Answer"))
    assert pieces == [("one ", ""), ("two ", ""), ("three", ""), ("", "Answer")]


def test_content_that_does_not_start_with_think_is_text_at_once():
    pieces, reply = read_all(content("Hello", " <think>not a tag</think>"))
    assert pieces == [("", "Hello"), ("", " <think>not a tag</think>")]
    assert reply.reasoning == ""


def test_content_held_as_a_possible_tag_is_text_once_it_is_not():
    pieces, reply = read_all(content("<th", "ese are words"))
    assert pieces == [("", "<these are words")]
    assert reply.text == "<these are words"


def test_leading_whitespace_of_plain_text_is_kept():
    _, reply = read_all(content("\n  ", "Hi"))
    assert reply.text == "\n  Hi"


def test_a_stream_ending_mid_tag_keeps_what_it_held():
    # Cut off inside the thinking: the held "</th" was thinking after all.
    _, reply = read_all([wire.text_chunk("<think>almost </th")])
    assert reply.reasoning == "almost </th" and reply.text == ""
    # Cut off before deciding: the held start was text.
    _, reply = read_all([wire.text_chunk("<thi")])
    assert reply.text == "<thi" and reply.reasoning == ""


def test_only_line_breaks_after_the_closing_tag_are_dropped():
    _, reply = read_all(content("<think>x</think>", "\n", "\n", "  indented"))
    assert reply.text == "  indented"


def test_reasoning_is_made_storable():
    _, reply = read_all([wire.chunk({"reasoning_content": "nul\x00here"}), wire.text_chunk("<think>a\ud800</think>b")])
    assert reply.reasoning == "nul\ufffdherea\ufffd"
