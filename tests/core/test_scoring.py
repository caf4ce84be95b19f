"""Batch scoring helpers without models."""
def test_decoded_stream_keeps_stream_order_with_a_decode_pool():
    from concurrent.futures import ThreadPoolExecutor

    from learnsieve.core.records import DeadLetter, Sample
    from learnsieve.core.scoring import decoded_stream
    items = [Sample(f"k{i}", "s.tar", 0, i, {}) if i % 7 else DeadLetter(f"k{i}", "s.tar", "read", "x", index=i)
             for i in range(100)]
    with ThreadPoolExecutor(3) as pool:
        out = list(decoded_stream(iter(items), lambda s: s.index, pool, lookahead=20, chunk=6))
    assert out == [i if i % 7 else items[i] for i in range(100)]
