"""Token parsing: code 0, a position that never drifts, stray and misplaced tokens, the end."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from orpheus_worker import tokens as T


def frame(codes):
    return T.frame_tokens(codes)


def test_layout_constants_match_orpheus():
    assert T.audio_token(0, 0) == 128266
    assert T.audio_token(6, 4095) == 128266 + 6 * 4096 + 4095 == T.AUDIO_END - 1
    assert T.AUDIO_END <= T.VOCAB_SIZE == 156_940


def test_prompt_wraps_text_ids():
    assert T.build_prompt([5, 6]) == [128259, 5, 6, 128009, 128260, 128261, 128257]


def test_code_zero_is_a_valid_code():
    parser = T.FrameParser()
    frames = parser.feed(frame([0] * 7))
    assert frames == [[0] * 7]
    assert parser.stats.audio_tokens == 7 and parser.stats.stray == 0


def test_frames_split_across_feeds_keep_their_position():
    codes = [[7 * f + i for i in range(7)] for f in range(5)]
    ids = [t for c in codes for t in frame(c)]
    parser = T.FrameParser()
    got = []
    for size in (1, 3, 2, 8, 5, 6, 10):  # arbitrary delta sizes
        got += parser.feed(ids[:size])
        ids = ids[size:]
    got += parser.feed(ids)
    assert got == codes
    assert parser.position == 0


def test_stray_tokens_are_counted_and_skipped_without_moving_the_position():
    ids = frame([1, 2, 3, 4, 5, 6, 7])
    ids.insert(3, 1234)  # a text token inside the frame
    ids.insert(5, T.END_OF_TEXT)  # a special token
    ids += [T.START_OF_SPEECH] + frame([0, 0, 0, 0, 0, 0, 9])
    parser = T.FrameParser()
    assert parser.feed(ids) == [[1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 0, 0, 9]]
    assert parser.stats.stray == 3
    assert parser.stats.misplaced == 0


def test_misplaced_audio_token_keeps_frame_alignment():
    ids = frame([1, 2, 3, 4, 5, 6, 7])
    ids[2] = T.audio_token(5, 33)  # right kind of token, wrong slot
    ids += frame([8, 9, 10, 11, 12, 13, 14])
    parser = T.FrameParser()
    assert parser.feed(ids) == [[1, 2, 33, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14]]
    assert parser.stats.misplaced == 1


def test_stop_token_ends_and_partial_frame_is_reported():
    ids = frame([1] * 7) + frame([2] * 7)[:4] + [T.END_OF_SPEECH] + frame([3] * 7)
    parser = T.FrameParser()
    assert parser.feed(ids) == [[1] * 7]
    assert parser.stats.stopped
    assert parser.feed(frame([4] * 7)) == []
    parser.finish()
    assert parser.stats.incomplete_tokens == 4


@given(st.lists(st.lists(st.integers(0, 4095), min_size=7, max_size=7), max_size=20),
       st.lists(st.integers(0, T.AUDIO_BASE - 1).filter(lambda t: t != T.END_OF_SPEECH),
                max_size=10),
       st.randoms())
def test_any_interleaving_of_stray_tokens_yields_every_frame(codes, strays, rnd):
    ids = [t for c in codes for t in frame(c)]
    for s in strays:
        ids.insert(rnd.randint(0, len(ids)), s)
    parser = T.FrameParser()
    assert parser.feed(ids) == codes
    assert parser.stats.stray == len(strays)


def test_snac_layers_follow_the_frame_layout():
    frames = np.array([[10, 11, 12, 13, 14, 15, 16], [20, 21, 22, 23, 24, 25, 26]])
    l0, l1, l2 = T.frames_to_snac_codes(frames)
    assert l0.tolist() == [10, 20]
    assert l1.tolist() == [11, 14, 21, 24]
    assert l2.tolist() == [12, 13, 15, 16, 22, 23, 25, 26]
