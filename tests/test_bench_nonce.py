"""Runs are independent: each run's nonce heads its prompts, and hits on first-seen tokens show."""

from __future__ import annotations

from infer_cli.bench import stats, workloads
from infer_cli.bench.records import RequestRecord
from infer_cli.bench.text import TextSource, run_nonce
from infer_cli.bench.workloads import HEAD_KEY, HEAD_TOKENS, first_seen, with_head


def _keys(turn: workloads.Turn) -> list[str]:
    return [segment.key for segment in turn.prompt]


def test_head_leads_every_prompt_and_keeps_lengths() -> None:
    plain = workloads.random_workload(num_requests=3, input_len=100, output_len=8)
    headed = with_head(plain)
    for before, after in zip(plain.phases[0].sessions, headed.phases[0].sessions, strict=True):
        turn = after.turns[0]
        assert turn.prompt[0].key == HEAD_KEY and turn.prompt[0].tokens == HEAD_TOKENS
        assert turn.target_tokens == before.turns[0].target_tokens == 100


def test_head_keeps_shared_parts_shared_within_the_run() -> None:
    prefix = with_head(
        workloads.shared_prefix_workload(
            prefixes=2, suffixes=2, prefix_len=64, suffix_len=8, output_len=4
        )
    )
    prompts = [s.turns[0].prompt for s in prefix.phases[0].sessions]
    assert {p[1] for p in prompts if p[1].key == "p0"} == {workloads.Segment("p0", 60)}
    assert all(p[0].key == HEAD_KEY for p in prompts)
    turns = with_head(
        workloads.multi_turn_workload(
            users=2, rounds=2, system_len=50, user_context_len=20, question_len=5, answer_len=4
        )
    )
    for session in turns.phases[0].sessions:  # the head goes before the shared system prompt
        assert [s.key for s in session.system] == [HEAD_KEY, "system"]
        assert _keys(session.turns[0]) == [f"{session.group.replace('user-', 'u')}context",
                                           f"{session.group.replace('user-', 'u')}q0"]  # fmt: skip
    docs = with_head(
        workloads.long_doc_workload(
            documents=2, document_len=40, question_len=4, output_len=2,
            repeat_count=1, repeat_mode="tile",
        )
    )  # fmt: skip
    for phase in docs.phases:
        for session in phase.sessions:
            assert _keys(session.turns[0])[:2] == [HEAD_KEY, session.group.replace("doc-", "d")]


def test_nonce_is_fresh_unless_seeded_and_seeds_the_text() -> None:
    assert run_nonce(None) != run_nonce(None)
    assert run_nonce(7) == run_nonce(7) != run_nonce(8)
    one, two = TextSource(0, run_nonce(None)), TextSource(0, run_nonce(None))
    assert one.text(HEAD_KEY, 4) != two.text(HEAD_KEY, 4)
    assert one.text("p0", 50) != two.text("p0", 50)  # nothing of one run's text in another's
    again = TextSource(0, run_nonce(3))
    assert again.text("p0", 50) == TextSource(0, run_nonce(3)).text("p0", 50)


def test_first_seen_is_the_tail_from_the_first_new_segment() -> None:
    head, system = workloads.Segment(HEAD_KEY, 4), workloads.Segment("system", 96)
    context, question = workloads.Segment("u1context", 50), workloads.Segment("u1q0", 10)
    prompt = (head, system, context, question)
    assert first_seen(prompt, set()) == 160
    assert first_seen(prompt, {HEAD_KEY, "system"}) == 60
    assert first_seen(prompt, {HEAD_KEY, "system", "u1context", "u1q0"}) == 0


def _record(prompt: int, cached: int, new: int) -> RequestRecord:
    return RequestRecord(
        index=0, ttft=0.1, chunks=[0.1, 0.2], prompt_tokens=prompt, cached_tokens=cached,
        first_seen=new, output_tokens=2,
    )  # fmt: skip


def test_first_seen_hits_count_only_what_the_run_cannot_explain() -> None:
    # 160-token prompts, the last 60 first seen: 96 cached tokens are the run's own sharing
    own = [_record(160, 96, 60), _record(160, 0, 160)]
    found = stats.first_seen_hits(own)
    assert found == {"requests": 2, "tokens": 220, "cached_tokens": 0, "hit_rate": 0.0}
    assert stats.summarize(own, duration=1.0)["warnings"] == []
    warm = [_record(160, 144, 60), _record(160, 144, 160)]  # a second run with the same prompts
    found = stats.first_seen_hits(warm)
    assert found is not None and found["cached_tokens"] == 44 + 144
    summary = stats.summarize(warm, duration=1.0)
    assert summary["cache"]["first_seen"]["hit_rate"] == round(188 / 220, 4)
    assert "already cached" in summary["warnings"][0]
